//! Baselines the paper compares against, under the same step budget and data:
//! - `ce`: backbone + linear classifier trained end to end with cross-entropy;
//! - `mpl`: classic Meta Pseudo Labels (Pham et al.): teacher and student are classifiers;
//!   the student learns from the teacher's hard pseudo labels with CE, the teacher from
//!   CE(labelled) + h · CE(t_us, argmax t_us); no SupCon.
//! (`supcon` is the teacher of `scmpl train teacher`.)

use std::sync::Arc;

use tch::{nn, Tensor};

use super::{finish, progress_bar, tensors, to_input, train_spec, MetricsLog, RunDir, RunReport};
use crate::train::data::{self, Loader, Sample};
use crate::train::loss;
use crate::train::model::{Backbone, Classifier, SupConNet};
use crate::train::optim::Adam;
use crate::train::recipe::TrainSettings;
use crate::train::TrainError;

/// The baselines `scmpl train baseline` runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Baseline {
    /// Backbone + classifier trained end to end with cross-entropy.
    Ce,
    /// The SupCon teacher alone (`scmpl train teacher`).
    Supcon,
    /// Classic Meta Pseudo Labels, no SupCon.
    Mpl,
}

impl Baseline {
    fn name(&self) -> &'static str {
        match self {
            Baseline::Ce => "ce",
            Baseline::Supcon => "supcon",
            Baseline::Mpl => "mpl",
        }
    }
}

/// An encoder + classifier trained together. Two VarStores (and Adams: Adam is per
/// parameter, so this is one optimizer over both) named like the teacher's, so the run's
/// checkpoint loads in `scmpl eval`, `predict` and `export`.
struct Net {
    vs_net: nn::VarStore,
    vs_cls: nn::VarStore,
    enc: SupConNet,
    cls: Classifier,
    opt_net: Adam,
    opt_cls: Adam,
}

impl Net {
    fn new(bb: Backbone, feat_dim: i64, lr: f64, device: tch::Device) -> Net {
        let (vs_net, vs_cls) = (nn::VarStore::new(device), nn::VarStore::new(device));
        let enc = SupConNet::new(&vs_net.root(), bb, feat_dim);
        let cls = Classifier::new(&vs_cls.root(), bb.feature_dim(), 2);
        let (opt_net, opt_cls) = (Adam::new(&vs_net, lr), Adam::new(&vs_cls, lr));
        Net { vs_net, vs_cls, enc, cls, opt_net, opt_cls }
    }
    fn logits(&self, x: &Tensor, train: bool) -> Tensor {
        self.cls.forward(&self.enc.features(x, train))
    }
    fn backward_step(&mut self, loss: &Tensor) {
        self.opt_net.zero_grad();
        self.opt_cls.zero_grad();
        loss.backward();
        self.opt_net.step();
        self.opt_cls.step();
    }
    /// The final checkpoint, as `(net, classifier)` files `scmpl eval` finds.
    fn save(&self, dir: &RunDir, step: usize, files: (&str, &str)) -> Result<(), TrainError> {
        dir.save(step, |dir| {
            crate::train::checkpoint::save_weights(&self.vs_net, &dir.join(files.0))?;
            crate::train::checkpoint::save_weights(&self.vs_cls, &dir.join(files.1))
        })?;
        Ok(())
    }
}

/// Runs baseline `kind` for `teacher.supcon_steps + teacher.linear_steps` steps (`supcon`
/// is the teacher run itself, and the only one `resume` continues; `ce` and `mpl` are short
/// and always start anew).
pub fn run(kind: Baseline, settings: &TrainSettings, resume: bool, progress: bool) -> Result<RunReport, TrainError> {
    if kind == Baseline::Supcon {
        return super::supcon::run(settings, resume, progress);
    }
    let recipe = &settings.recipe;
    let device = settings.torch_device()?;
    let dir = RunDir::open(settings, false)?;
    let labelled = super::cached(settings, &recipe.data.manifest, data::load_samples(&recipe.data.manifest, &recipe.data.train_split, &recipe.data.datasets)?)?;
    let eval = Arc::new(data::load_samples(&recipe.data.manifest, &recipe.data.eval_split, &recipe.data.datasets)?);
    let steps = recipe.teacher.supcon_steps + recipe.teacher.linear_steps;
    tch::manual_seed(recipe.run.seed as i64);
    let mut metrics = dir.metrics("step,loss,accuracy")?.learning_rate(if kind == Baseline::Mpl { recipe.mpl.lr } else { recipe.teacher.lr });
    let bar = progress_bar(steps, 0, progress);
    let mut work = Work { settings, dir: &dir, labelled, steps, metrics: &mut metrics, bar: &bar };
    let net = if kind == Baseline::Ce { work.ce()? } else { work.mpl()? };
    bar.finish_and_clear();
    let mut report = RunReport { run: dir.out.clone(), last_step: steps, finished: true, eval_accuracy: None, eval_images: 0, skipped_images: 0 };
    let fields = serde_json::json!({ "model": format!("baseline {}", kind.name()) });
    finish(&dir, &mut report, (&net.enc, &net.cls), &eval, settings, device, fields)?;
    Ok(report)
}

/// What a baseline's training loop works with.
struct Work<'a> {
    settings: &'a TrainSettings,
    dir: &'a RunDir,
    labelled: Arc<Vec<Sample>>,
    steps: usize,
    metrics: &'a mut MetricsLog,
    bar: &'a indicatif::ProgressBar,
}

impl Work<'_> {
    /// The CE baseline: one network, labelled batches, cross-entropy.
    fn ce(&mut self) -> Result<Net, TrainError> {
        let (settings, dir, steps, labelled) = (self.settings, self.dir, self.steps, self.labelled.clone());
        let recipe = &settings.recipe;
        let device = settings.torch_device()?;
        let mut net = Net::new(settings.backbone, recipe.model.feat_dim, recipe.teacher.lr, device);
        let spec = train_spec(settings, &labelled, recipe.teacher.linear_batch, 1, recipe.run.seed);
        for b in Loader::new(labelled.clone(), spec, 0, steps) {
            let (x, y) = tensors(&b, device, settings.preset);
            let logits = net.logits(&x, true);
            let l = loss::cross_entropy(&logits, &y)?;
            net.backward_step(&l);
            self.metrics.row(format_args!("{},{:.9},{:.6}", b.step + 1, l.double_value(&[]), loss::accuracy(&logits, &y)))?;
            self.bar.inc(1);
        }
        net.save(dir, steps, ("teacher.safetensors", "teacher_classifier.safetensors"))?;
        Ok(net)
    }

    /// Classic MPL: teacher and student classifiers; returns the student.
    fn mpl(&mut self) -> Result<Net, TrainError> {
        let (settings, dir, steps, labelled) = (self.settings, self.dir, self.steps, self.labelled.clone());
        let recipe = &settings.recipe;
        let (device, preset) = (settings.torch_device()?, settings.preset);
        let unlabelled = super::cached(settings, &settings.unlabelled_manifest, data::load_unlabelled(&settings.unlabelled_manifest, &recipe.data.unlabelled_split, &recipe.data.datasets)?)?;
        let feat_dim = recipe.model.feat_dim;
        let mut t = Net::new(settings.backbone, feat_dim, recipe.mpl.lr, device);
        let mut s = Net::new(settings.backbone, feat_dim, recipe.mpl.lr, device);
        let lab = Loader::new(labelled.clone(), train_spec(settings, &labelled, recipe.mpl.labelled_batch, 1, recipe.run.seed), 0, steps);
        let unl_spec = train_spec(settings, &unlabelled, recipe.mpl.unlabelled_batch, 2, recipe.run.seed ^ 0x5eed);
        let unl = Loader::new(unlabelled.clone(), unl_spec, 0, steps);
        for (lb, ub) in lab.zip(unl) {
            let (a, y) = tensors(&lb, device, preset);
            let u = to_input(&ub, device, preset);
            let nu = ub.n as i64;
            let (uw, us) = (u.narrow(0, 0, nu), u.narrow(0, nu, nu));
            let nl = lb.n as i64;
            let t_logits = t.logits(&Tensor::cat(&[&a, &uw, &us], 0), true);
            let (t_l, t_uw, t_us) = (t_logits.narrow(0, 0, nl), t_logits.narrow(0, nl, nu), t_logits.narrow(0, nl + nu, nu));
            let s_old = tch::no_grad(|| loss::cross_entropy(&s.logits(&a, false), &y))?.double_value(&[]);
            let pseudo = t_uw.detach().argmax(-1, false);
            let s_loss = loss::cross_entropy(&s.logits(&us, true), &pseudo)?;
            s.backward_step(&s_loss);
            let s_new = tch::no_grad(|| loss::cross_entropy(&s.logits(&a, false), &y))?.double_value(&[]);
            let t_loss = loss::mpl_teacher_loss(&t_l, &y, &t_us, s_new - s_old)?;
            t.backward_step(&t_loss);
            self.metrics.row(format_args!("{},{:.9},{:.6}", lb.step + 1, t_loss.double_value(&[]), loss::accuracy(&t_l, &y)))?;
            self.bar.inc(1);
        }
        s.save(dir, steps, ("student.safetensors", "student_classifier.safetensors"))?;
        Ok(s)
    }
}
