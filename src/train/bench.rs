//! Throughput measurements for `scripts/bench-train`: a SupCon teacher step on synthetic
//! inputs (model + loss + Adam, no data loading), and the data loader alone.

use std::sync::Arc;
use std::time::Instant;

use tch::{nn, Device, Kind, Tensor};

use super::data::{self, Loader, LoaderSpec, Plan};
use super::loss;
use super::model::{Backbone, SupConNet};
use super::optim::Adam;

/// Seconds per part of a SupCon step, summed over the timed steps.
#[derive(Debug, Default, Clone, Copy)]
pub struct StepParts {
    pub forward: f64,
    pub loss: f64,
    pub backward: f64,
    pub optimizer: f64,
}

/// Images per second of SupCon teacher steps (two views of `batch` images at `size` px),
/// after `warmup` untimed steps, and where the time went.
pub fn supcon_step(backbone: Backbone, batch: i64, size: i64, warmup: usize, steps: usize, device: Device) -> (f64, StepParts) {
    tch::manual_seed(0);
    let vs = nn::VarStore::new(device);
    let net = SupConNet::new(&vs.root(), backbone, 128);
    let mut opt = Adam::new(&vs, 1e-4);
    let y = Tensor::from_slice(&(0..batch).map(|i| i % 2).collect::<Vec<i64>>()).to_device(device);
    let x = Tensor::rand([2 * batch, 3, size, size], (Kind::Float, device));
    let mut parts = StepParts::default();
    // On a GPU the parts are timed to their kernels' end, not their launch.
    let now = || {
        if let Device::Cuda(i) = device {
            tch::Cuda::synchronize(i as i64);
        }
        Instant::now()
    };
    let mut run = |parts: &mut StepParts| {
        let t0 = now();
        let z = net.project(&net.features(&x, true));
        let t1 = now();
        let f = Tensor::stack(&[z.narrow(0, 0, batch), z.narrow(0, batch, batch)], 1);
        let l = loss::supcon(&f, &y, 0.1, 0.07).expect("shapes are right");
        let t2 = now();
        opt.zero_grad();
        l.backward();
        let t3 = now();
        opt.step();
        let _ = l.double_value(&[]);
        let t4 = now();
        parts.forward += (t1 - t0).as_secs_f64();
        parts.loss += (t2 - t1).as_secs_f64();
        parts.backward += (t3 - t2).as_secs_f64();
        parts.optimizer += (t4 - t3).as_secs_f64();
    };
    for _ in 0..warmup {
        run(&mut StepParts::default());
    }
    let t = Instant::now();
    for _ in 0..steps {
        run(&mut parts);
    }
    let total = t.elapsed().as_secs_f64();
    ((2 * batch) as f64 * steps as f64 / total, parts)
}

/// Images per second the loader delivers (two augmented views each) from `manifest`'s `split`,
/// decoding the crops or, with `cache`, reading them from the decoded-crop cache there (built
/// first, untimed, if needed).
pub fn loader(
    manifest: &std::path::Path,
    split: &str,
    batch: usize,
    size: usize,
    workers: usize,
    batches: usize,
    cache: Option<&std::path::Path>,
) -> Result<f64, data::DataError> {
    let mut samples = data::load_samples(manifest, split, &[])?;
    if let Some(dir) = cache {
        data::cache::attach(dir, manifest, &mut samples, workers)?;
    }
    let samples = Arc::new(samples);
    let spec = LoaderSpec {
        plan: Plan { seed: 1, batch: batch.min(samples.len()), samples: samples.len(), shuffle: true, per_track: 0 },
        views: 2,
        augment: true,
        size,
        workers,
        prefetch: 2,
    };
    let t = Instant::now();
    let mut images = 0;
    for b in Loader::new(samples, spec, 0, batches) {
        images += b.views * b.n;
    }
    Ok(images as f64 / t.elapsed().as_secs_f64())
}

/// Views per second of SupCon-MPL steps ([`crate::train::run::mpl::step`]: teacher and student
/// ResNet/EfficientNet, four Adams) on random inputs: `labelled` images x 2 views and
/// `unlabelled` x 2 views per step, after `warmup` untimed steps.
pub fn mpl_step(backbone: Backbone, labelled: i64, unlabelled: i64, size: i64, warmup: usize, steps: usize, device: Device) -> Result<f64, crate::train::TrainError> {
    tch::manual_seed(0);
    let mut recipe = crate::train::recipe::Recipe::load(None)?;
    recipe.model.backbone = backbone.as_str().into();
    let settings = recipe.validate()?;
    let mut m = crate::train::run::mpl::MplModels::new(backbone, 128, 1e-4, device);
    let y = Tensor::from_slice(&(0..labelled).map(|i| i % 2).collect::<Vec<i64>>()).to_device(device);
    let la = Tensor::rand([2 * labelled, 3, size, size], (Kind::Float, device));
    let ua = Tensor::rand([2 * unlabelled, 3, size, size], (Kind::Float, device));
    for _ in 0..warmup {
        crate::train::run::mpl::step(&mut m, &la, &y, &ua, &settings)?;
    }
    let t = Instant::now();
    for _ in 0..steps {
        crate::train::run::mpl::step(&mut m, &la, &y, &ua, &settings)?;
    }
    Ok((2 * (labelled + unlabelled)) as f64 * steps as f64 / t.elapsed().as_secs_f64())
}
