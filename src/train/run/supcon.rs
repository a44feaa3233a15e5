//! `scmpl train teacher` and `scmpl train finetune`: stage 1, SupCon on two augmented views with true labels (encoder +
//! head); stage 2, a linear classifier with cross-entropy on the frozen encoder (eval mode).
//!
//! Steps are numbered globally: 1..=S1 are SupCon steps, S1+1..=S1+S2 linear steps. Every
//! `checkpoint_every` steps (and at the end) a checkpoint is written; `--resume` continues
//! from the latest one and, on CPU, reproduces the uninterrupted run's losses exactly.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use tch::nn::{self};
use tch::{Device, Tensor};

use super::{finish, progress_bar, report_skipped, stop_step, tensors, train_spec, RunDir, RunReport};
use crate::train::checkpoint;
use crate::train::data::{self, Batch, Loader};
use crate::train::loss;
use crate::train::model::{self, Classifier, SupConNet};
use crate::train::optim::Adam;
use crate::train::recipe::{Preset, TrainSettings};
use crate::train::TrainError;

struct Models {
    vs_net: nn::VarStore,
    vs_cls: nn::VarStore,
    net: SupConNet,
    cls: Classifier,
    opt_net: Adam,
    opt_cls: Adam,
}

fn build_models(settings: &TrainSettings, device: Device, lr: f64) -> Result<Models, TrainError> {
    let (recipe, backbone) = (&settings.recipe, settings.backbone);
    tch::manual_seed(recipe.run.seed as i64);
    let mut vs_net = nn::VarStore::new(device);
    let net = SupConNet::new(&vs_net.root(), backbone, recipe.model.feat_dim);
    if !recipe.model.init.is_empty() {
        model::load_torchvision_init(&mut vs_net, Path::new(&recipe.model.init))?;
    }
    let vs_cls = nn::VarStore::new(device);
    let cls = Classifier::new(&vs_cls.root(), backbone.feature_dim(), 2);
    let opt_net = Adam::new(&vs_net, lr);
    let opt_cls = Adam::new(&vs_cls, lr);
    Ok(Models { vs_net, vs_cls, net, cls, opt_net, opt_cls })
}

/// Which model the two stages train, and from what.
#[derive(Debug, Clone)]
pub struct SupconPlan {
    /// File names of the (encoder + head) and classifier weights in checkpoints.
    pub net_file: &'static str,
    pub cls_file: &'static str,
    pub supcon_steps: usize,
    pub supcon_batch: usize,
    pub linear_steps: usize,
    pub linear_batch: usize,
    pub lr: f64,
    /// Weights to start from (encoder + head, classifier), e.g. the MPL student.
    pub start: Option<(PathBuf, PathBuf)>,
    /// The student of the paper preset keeps BatchNorm in train mode in the linear stage.
    pub bn_train_in_linear: bool,
}

impl SupconPlan {
    /// The teacher: SupCon then linear, from `model.init` or random.
    pub fn teacher(settings: &TrainSettings) -> SupconPlan {
        let t = &settings.recipe.teacher;
        SupconPlan {
            net_file: "teacher.safetensors",
            cls_file: "teacher_classifier.safetensors",
            supcon_steps: t.supcon_steps,
            supcon_batch: t.supcon_batch,
            linear_steps: t.linear_steps,
            linear_batch: t.linear_batch,
            lr: t.lr,
            start: None,
            bn_train_in_linear: false,
        }
    }

    /// Student fine-tuning: the same two stages from the MPL run's student.
    pub fn finetune(settings: &TrainSettings) -> Result<SupconPlan, TrainError> {
        let recipe = &settings.recipe;
        let f = &recipe.finetune;
        let ck = checkpoint::latest(&f.student)?
            .ok_or_else(|| TrainError::NoCheckpoint { run: f.student.clone(), hint: "run `scmpl train mpl` first" })?;
        Ok(SupconPlan {
            net_file: "student.safetensors",
            cls_file: "student_classifier.safetensors",
            supcon_steps: f.supcon_steps,
            supcon_batch: f.supcon_batch,
            linear_steps: f.linear_steps,
            linear_batch: f.linear_batch,
            lr: recipe.teacher.lr,
            start: Some((ck.dir.join("student.safetensors"), ck.dir.join("student_classifier.safetensors"))),
            bn_train_in_linear: settings.preset == Preset::Paper,
        })
    }
}

/// Runs (or resumes) the teacher stages.
pub fn run(settings: &TrainSettings, resume: bool, progress: bool) -> Result<RunReport, TrainError> {
    run_plan(settings, &SupconPlan::teacher(settings), resume, progress)
}

/// Runs (or resumes) SupCon + linear stages as `plan` says.
pub fn run_plan(settings: &TrainSettings, plan: &SupconPlan, resume: bool, progress: bool) -> Result<RunReport, TrainError> {
    let recipe = &settings.recipe;
    let device = settings.torch_device()?;
    let t = plan;
    let total = t.supcon_steps + t.linear_steps;

    let train = super::cached(settings, &recipe.data.manifest, data::load_samples(&recipe.data.manifest, &recipe.data.train_split, &recipe.data.datasets)?)?;
    let eval = Arc::new(data::load_samples(&recipe.data.manifest, &recipe.data.eval_split, &recipe.data.datasets)?);

    let dir = RunDir::open(settings, resume)?;
    let mut m = build_models(settings, device, t.lr)?;
    if let Some((net, cls)) = &t.start {
        checkpoint::load_vars(&mut m.vs_net, net)?;
        checkpoint::load_vars(&mut m.vs_cls, cls)?;
    }
    if let Some(ck) = &dir.resumed {
        checkpoint::load_vars(&mut m.vs_net, &ck.dir.join(t.net_file))?;
        checkpoint::load_vars(&mut m.vs_cls, &ck.dir.join(t.cls_file))?;
        m.opt_net.load(&ck.dir.join(format!("adam_{}", t.net_file)))?;
        m.opt_cls.load(&ck.dir.join(format!("adam_{}", t.cls_file)))?;
    }
    let start = dir.start();
    let mut metrics = dir.metrics(METRICS_HEADER)?.learning_rate(t.lr);
    let stop = stop_step(settings, start, total);
    let spec = |batch: usize, views: usize| train_spec(settings, &train, batch, views, recipe.run.seed);
    let bar = progress_bar(total, start, progress);
    let mut skipped = 0usize;
    let mut last_ck = dir.resumed.as_ref().map(|c| c.dir.display().to_string()).unwrap_or_else(|| "none".into());

    // Stage 1: SupCon on encoder + head.
    let s1_end = stop.min(t.supcon_steps);
    if start < s1_end {
        let loader = Loader::new(train.clone(), spec(t.supcon_batch, 2), start, s1_end);
        for batch in loader {
            let step = batch.step + 1;
            let began = Instant::now();
            skipped += report_skipped(&batch);
            let value = supcon_step(&mut m, &batch, settings, device)?;
            if !value.is_finite() {
                return Err(TrainError::NotFinite { step, what: "SupCon loss", value, checkpoint: last_ck });
            }
            let ips = (2 * batch.n) as f64 / began.elapsed().as_secs_f64();
            metrics.row(format_args!("{step},supcon,{value:.9},,{ips:.1}"))?;
            bar.set_position(step as u64);
            bar.set_message(format!("supcon {value:.4} {ips:.0} img/s"));
            if step % recipe.run.checkpoint_every.max(1) == 0 || step == s1_end {
                last_ck = save(&dir, &m, step, t)?;
            }
        }
    }

    // Stage 2: linear classifier on the frozen encoder (eval mode: BN statistics fixed).
    let s2_start = start.max(t.supcon_steps);
    if s2_start < stop {
        let loader = Loader::new(train.clone(), spec(t.linear_batch, 1), s2_start - t.supcon_steps, stop - t.supcon_steps);
        for batch in loader {
            let step = batch.step + 1 + t.supcon_steps;
            let began = Instant::now();
            skipped += report_skipped(&batch);
            let (value, acc) = linear_step(&mut m, &batch, settings, device, t.bn_train_in_linear)?;
            if !value.is_finite() {
                return Err(TrainError::NotFinite { step, what: "cross-entropy", value, checkpoint: last_ck });
            }
            let ips = batch.n as f64 / began.elapsed().as_secs_f64();
            metrics.row(format_args!("{step},linear,{value:.9},{acc:.6},{ips:.1}"))?;
            bar.set_position(step as u64);
            bar.set_message(format!("ce {value:.4} acc {acc:.3} {ips:.0} img/s"));
            if step % recipe.run.checkpoint_every.max(1) == 0 || step == stop {
                last_ck = save(&dir, &m, step, t)?;
            }
        }
    }
    bar.finish_and_clear();
    let finished = stop == total;
    let mut report =
        RunReport { run: dir.out.clone(), last_step: stop, finished, eval_accuracy: None, eval_images: 0, skipped_images: skipped };
    if finished {
        finish(&dir, &mut report, (&m.net, &m.cls), &eval, settings, device, serde_json::json!({}))?;
    }
    Ok(report)
}

/// One SupCon step on the two views of `batch` (encoder + head); the optimizer steps only on a
/// finite loss, which is returned.
fn supcon_step(m: &mut Models, batch: &Batch, settings: &TrainSettings, device: Device) -> Result<f64, TrainError> {
    let (x, y) = tensors(batch, device, settings.preset);
    let z = m.net.project(&m.net.features(&x, true));
    let n = batch.n as i64;
    // [2n, d] view-major -> [n, 2, d]
    let features = Tensor::stack(&[z.narrow(0, 0, n), z.narrow(0, n, n)], 1);
    let t = &settings.recipe.teacher;
    let l = loss::supcon(&features, &y, t.temperature, t.base_temperature)?;
    let value = l.double_value(&[]);
    if value.is_finite() {
        m.opt_net.backward_step(&l);
    }
    Ok(value)
}

/// One step of the linear classifier on the frozen encoder; (loss, accuracy). The optimizer
/// steps only on a finite loss.
fn linear_step(m: &mut Models, batch: &Batch, settings: &TrainSettings, device: Device, bn_train: bool) -> Result<(f64, f64), TrainError> {
    let (x, y) = tensors(batch, device, settings.preset);
    let f = tch::no_grad(|| m.net.features(&x, bn_train));
    let logits = m.cls.forward(&f);
    let l = loss::cross_entropy(&logits, &y)?;
    let value = l.double_value(&[]);
    if value.is_finite() {
        m.opt_cls.backward_step(&l);
    }
    Ok((value, loss::accuracy(&logits, &y)))
}

fn save(dir: &RunDir, m: &Models, step: usize, t: &SupconPlan) -> Result<String, TrainError> {
    dir.save(step, |dir| {
        checkpoint::save_weights(&m.vs_net, &dir.join(t.net_file))?;
        checkpoint::save_weights(&m.vs_cls, &dir.join(t.cls_file))?;
        m.opt_net.save(&dir.join(format!("adam_{}", t.net_file)))?;
        m.opt_cls.save(&dir.join(format!("adam_{}", t.cls_file)))?;
        Ok(())
    })
}

const METRICS_HEADER: &str = "step,stage,loss,accuracy,images_per_s";

#[cfg(test)]
mod tests {
    use super::*;
    use crate::train::model::Backbone;
    use tch::Kind;

    /// SupCon training on an easy two-class problem must pull the classes apart: the loss
    /// falls clearly below the collapsed value (τ/τ_base)·log(2B-1).
    #[test]
    fn supcon_steps_separate_an_easy_two_class_problem() {
        tch::manual_seed(0);
        let vs = nn::VarStore::new(Device::Cpu);
        let net = SupConNet::new(&vs.root(), Backbone::Resnet18, 128);
        let mut opt = Adam::new(&vs, 1e-3);
        let b = 16i64;
        let y = Tensor::from_slice(&(0..b).map(|i| i % 2).collect::<Vec<i64>>());
        let mut last = 0.0;
        for _ in 0..15 {
            // Class 1 has a bright square in the top-left corner.
            let x = Tensor::rand([2 * b, 3, 32, 32], (Kind::Float, Device::Cpu));
            let marks = y.repeat([2]).to_kind(Kind::Float).view([2 * b, 1, 1, 1]);
            let square = Tensor::zeros([1, 3, 32, 32], (Kind::Float, Device::Cpu));
            let _ = square.narrow(2, 0, 12).narrow(3, 0, 12).fill_(2.0);
            let x = x + marks * square;
            let z = net.project(&net.features(&x, true));
            let f = Tensor::stack(&[z.narrow(0, 0, b), z.narrow(0, b, b)], 1);
            let l = loss::supcon(&f, &y, 0.1, 0.07).unwrap();
            last = l.double_value(&[]);
            opt.backward_step(&l);
        }
        let collapsed = 0.1 / 0.07 * ((2 * b - 1) as f64).ln();
        assert!(last < collapsed - 0.3, "loss {last} vs collapsed {collapsed}");
    }
}
