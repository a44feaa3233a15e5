//! Baselines the paper compares against, under the same step budget and data:
//! - `ce`: backbone + linear classifier trained end to end with cross-entropy;
//! - `mpl`: classic Meta Pseudo Labels (Pham et al.): teacher and student are classifiers;
//!   the student learns from the teacher's hard pseudo labels with CE, the teacher from
//!   CE(labelled) + h · CE(t_us, argmax t_us); no SupCon.
//! (`supcon` is the teacher of `scmpl train teacher`.)

use std::io::Write;
use std::sync::Arc;

use tch::{nn, Tensor};

use super::checkpoint;
use super::config::Recipe;
use super::data::{self, Loader, LoaderSpec, Plan};
use super::loss;
use super::model::{Backbone, Classifier, SupConNet};
use super::optim::Adam;
use super::teacher::{self, to_input, torch_device, TeacherReport, TrainError};
use crate::config::ConfigError;

fn backbone(recipe: &Recipe) -> Result<Backbone, TrainError> {
    Ok(recipe
        .model
        .backbone
        .parse()
        .map_err(|r| ConfigError::Value { key: "model.backbone", value: recipe.model.backbone.clone(), reason: r })?)
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
    fn new(bb: Backbone, recipe: &Recipe, lr: f64, device: tch::Device) -> Net {
        let (vs_net, vs_cls) = (nn::VarStore::new(device), nn::VarStore::new(device));
        let enc = SupConNet::new(&vs_net.root(), bb, recipe.model.feat_dim);
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
    fn save(&self, out: &std::path::Path, step: usize, recipe: &Recipe, files: (&str, &str)) -> Result<(), TrainError> {
        let ck = checkpoint::Checkpoint { dir: Default::default(), step, recipe_fingerprint: teacher::fingerprint(recipe) };
        checkpoint::write(out, &ck, |dir| {
            checkpoint::save_weights(&self.vs_net, &dir.join(files.0))?;
            checkpoint::save_weights(&self.vs_cls, &dir.join(files.1))
        })?;
        Ok(())
    }
}

/// Runs baseline `kind` (`ce` or `mpl`) for `teacher.supcon_steps + teacher.linear_steps` steps.
pub fn run(kind: &str, recipe: &Recipe, progress: bool) -> Result<TeacherReport, TrainError> {
    let preset = recipe.preset()?;
    let device = torch_device(recipe.run.device.parse()?)?;
    let bb = backbone(recipe)?;
    let out = recipe.run.out.clone();
    std::fs::create_dir_all(&out).map_err(teacher::io_err(&out))?;
    std::fs::write(out.join("recipe.toml"), recipe.to_toml()).map_err(teacher::io_err(&out))?;
    let labelled = Arc::new(data::load_samples(&recipe.data.manifest, &recipe.data.train_split, &recipe.data.datasets)?);
    let eval = Arc::new(data::load_samples(&recipe.data.manifest, &recipe.data.eval_split, &recipe.data.datasets)?);
    let steps = recipe.teacher.supcon_steps + recipe.teacher.linear_steps;
    let batch = recipe.teacher.linear_batch;
    tch::manual_seed(recipe.run.seed as i64);
    let spec = |samples: usize, batch: usize, views: usize, seed: u64| LoaderSpec {
        plan: Plan { seed, batch: batch.min(samples), samples, shuffle: true },
        views,
        augment: true,
        size: recipe.data.image_size,
        workers: recipe.data.workers,
        prefetch: recipe.data.prefetch,
    };
    let metrics_path = out.join("metrics.csv");
    let mut metrics = std::fs::File::create(&metrics_path).map_err(teacher::io_err(&metrics_path))?;
    writeln!(metrics, "step,loss,accuracy").map_err(teacher::io_err(&metrics_path))?;
    let bar = if progress { indicatif::ProgressBar::new(steps as u64) } else { indicatif::ProgressBar::hidden() };
    let net = match kind {
        "ce" => {
            let mut net = Net::new(bb, recipe, recipe.teacher.lr, device);
            for b in Loader::new(labelled.clone(), spec(labelled.len(), batch, 1, recipe.run.seed), 0, steps) {
                let (x, y) = (to_input(&b, device, preset), Tensor::from_slice(&b.labels).to_device(device));
                let logits = net.logits(&x, true);
                let l = loss::cross_entropy(&logits, &y)?;
                net.backward_step(&l);
                writeln!(metrics, "{},{:.9},{:.6}", b.step + 1, l.double_value(&[]), loss::accuracy(&logits, &y))
                    .map_err(teacher::io_err(&metrics_path))?;
                bar.inc(1);
            }
            net.save(&out, steps, recipe, ("teacher.safetensors", "teacher_classifier.safetensors"))?;
            net
        }
        "mpl" => {
            let umanifest = if recipe.data.unlabelled_manifest.as_os_str().is_empty() { &recipe.data.manifest } else { &recipe.data.unlabelled_manifest };
            let unlabelled = Arc::new(data::load_unlabelled(umanifest, &recipe.data.unlabelled_split, &recipe.data.datasets)?);
            let mut t = Net::new(bb, recipe, recipe.mpl.lr, device);
            let mut s = Net::new(bb, recipe, recipe.mpl.lr, device);
            let lab = Loader::new(labelled.clone(), spec(labelled.len(), recipe.mpl.labelled_batch, 1, recipe.run.seed), 0, steps);
            let unl = Loader::new(unlabelled.clone(), spec(unlabelled.len(), recipe.mpl.unlabelled_batch, 2, recipe.run.seed ^ 0x5eed), 0, steps);
            for (lb, ub) in lab.zip(unl) {
                let (a, y) = (to_input(&lb, device, preset), Tensor::from_slice(&lb.labels).to_device(device));
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
                writeln!(metrics, "{},{:.9},{:.6}", lb.step + 1, t_loss.double_value(&[]), loss::accuracy(&t_l, &y))
                    .map_err(teacher::io_err(&metrics_path))?;
                bar.inc(1);
            }
            s.save(&out, steps, recipe, ("student.safetensors", "student_classifier.safetensors"))?;
            s
        }
        other => return Err(TrainError::Checkpoint(format!("unknown baseline '{other}': expected ce, supcon or mpl"))),
    };
    bar.finish_and_clear();
    let (acc, n) = teacher::evaluate(&net.enc, &net.cls, &eval, recipe, device, preset);
    let json = serde_json::json!({ "model": format!("baseline {kind}"), "split": recipe.data.eval_split, "images": n, "accuracy": acc, "step": steps });
    std::fs::write(out.join("eval.json"), serde_json::to_string_pretty(&json).expect("json")).map_err(teacher::io_err(&out))?;
    Ok(TeacherReport { run: out, last_step: steps, finished: true, eval_accuracy: Some(acc), eval_images: n, skipped_images: 0 })
}
