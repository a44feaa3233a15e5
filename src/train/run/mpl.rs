//! `scmpl train mpl`: the SupCon-MPL loop (Moon, Ok & Lee 2024), step by step as the reference.
//!
//! Four models, four Adams: teacher encoder+head (from the teacher run), teacher classifier,
//! student encoder+head (`model.init` or random), student classifier (new). Per step, with a
//! labelled batch (views a, b, labels y) and an unlabelled batch (views uw, us):
//! 1. teacher encoder (eval, no grad) on cat[a, uw, us]; teacher classifier (with grad) ->
//!    t_l, t_uw, t_us; t_loss_l = CE(t_l, y);
//! 2. s_old = CE(student classifier(student encoder eval, no grad, (a)), y), a constant;
//! 3. pseudo = argmax(t_uw); SupCon(student head(encoder(cat[uw, us])) as 2 views, pseudo);
//!    step student encoder + head;
//! 4. CE(student classifier(student encoder eval, no grad, (a)), y); step student classifier;
//! 5. s_new as in 2; h = s_new - s_old (a constant);
//! 6. SupCon(teacher head(encoder(cat[a, b])) as 2 views, y); step teacher encoder + head;
//! 7. t_loss = t_loss_l + h · CE(t_us, argmax(t_us)); step the teacher classifier only.
//! The MPL feedback reaches only the teacher classifier: its inputs are detached features.

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use tch::{nn, Device, Tensor};

use super::{finish, progress_bar, report_skipped, stop_step, tensors, train_spec, RunDir, RunReport};
use crate::train::checkpoint;
use crate::train::data::{self, Loader};
use crate::train::loss;
use crate::train::model::{self, Backbone, Classifier, SupConNet};
use crate::train::optim::Adam;
use crate::train::recipe::TrainSettings;
use crate::train::TrainError;

/// The four models and their optimizers.
pub struct MplModels {
    pub vs_t: nn::VarStore,
    pub vs_tc: nn::VarStore,
    pub vs_s: nn::VarStore,
    pub vs_sc: nn::VarStore,
    pub teacher: SupConNet,
    pub teacher_cls: Classifier,
    pub student: SupConNet,
    pub student_cls: Classifier,
    pub opt_t: Adam,
    pub opt_tc: Adam,
    pub opt_s: Adam,
    pub opt_sc: Adam,
}

const FILES: [&str; 4] = ["teacher.safetensors", "teacher_classifier.safetensors", "student.safetensors", "student_classifier.safetensors"];

impl MplModels {
    pub fn new(backbone: Backbone, feat_dim: i64, lr: f64, device: Device) -> MplModels {
        let vs_t = nn::VarStore::new(device);
        let vs_tc = nn::VarStore::new(device);
        let vs_s = nn::VarStore::new(device);
        let vs_sc = nn::VarStore::new(device);
        let teacher = SupConNet::new(&vs_t.root(), backbone, feat_dim);
        let teacher_cls = Classifier::new(&vs_tc.root(), backbone.feature_dim(), 2);
        let student = SupConNet::new(&vs_s.root(), backbone, feat_dim);
        let student_cls = Classifier::new(&vs_sc.root(), backbone.feature_dim(), 2);
        let (opt_t, opt_tc, opt_s, opt_sc) = (Adam::new(&vs_t, lr), Adam::new(&vs_tc, lr), Adam::new(&vs_s, lr), Adam::new(&vs_sc, lr));
        MplModels { vs_t, vs_tc, vs_s, vs_sc, teacher, teacher_cls, student, student_cls, opt_t, opt_tc, opt_s, opt_sc }
    }

    fn stores(&mut self) -> [(&mut nn::VarStore, &mut Adam); 4] {
        [
            (&mut self.vs_t, &mut self.opt_t),
            (&mut self.vs_tc, &mut self.opt_tc),
            (&mut self.vs_s, &mut self.opt_s),
            (&mut self.vs_sc, &mut self.opt_sc),
        ]
    }
}

/// What one MPL step measured.
#[derive(Debug, Clone, Copy)]
pub struct StepLosses {
    pub t_loss: f64,
    pub t_loss_l: f64,
    pub h: f64,
    pub s_supcon: f64,
    pub s_ce: f64,
    pub t_supcon: f64,
    pub t_acc: f64,
}

fn ce(logits: &Tensor, y: &Tensor) -> Result<Tensor, TrainError> {
    Ok(loss::cross_entropy(logits, y)?)
}

/// The student's labelled loss with its encoder frozen (eval, no grad), as a number.
fn student_labelled_loss(m: &MplModels, a: &Tensor, y: &Tensor) -> Result<f64, TrainError> {
    let v = tch::no_grad(|| -> Result<f64, TrainError> {
        let f = m.student.features(a, false);
        Ok(ce(&m.student_cls.forward(&f), y)?.double_value(&[]))
    })?;
    Ok(v)
}

/// Sub-step 4: one step of the student classifier on labelled data, the student encoder frozen
/// in eval mode under every preset, as the authors' `main.py` does (`student.eval()` under
/// `no_grad`): its BatchNorm statistics do not move. Returns the CE loss.
fn student_classifier_step(m: &mut MplModels, a: &Tensor, y: &Tensor) -> Result<Tensor, TrainError> {
    let s_f = tch::no_grad(|| m.student.features(a, false));
    let s_ce = ce(&m.student_cls.forward(&s_f), y)?;
    m.opt_sc.backward_step(&s_ce);
    Ok(s_ce)
}

/// Two views [2n, ...] (view-major) -> SupCon features [n, 2, d] from `net` in train mode.
fn supcon_of(net: &SupConNet, x: &Tensor, y: &Tensor, settings: &TrainSettings) -> Result<Tensor, TrainError> {
    let n = y.size()[0];
    let z = net.project(&net.features(x, true));
    let f = Tensor::stack(&[z.narrow(0, 0, n), z.narrow(0, n, n)], 1);
    let t = &settings.recipe.teacher;
    Ok(loss::supcon(&f, y, t.temperature, t.base_temperature)?)
}

/// One SupCon-MPL step on labelled views `la` = cat[a, b] with labels `y` and unlabelled
/// views `ua` = cat[uw, us].
pub fn step(m: &mut MplModels, la: &Tensor, y: &Tensor, ua: &Tensor, settings: &TrainSettings) -> Result<StepLosses, TrainError> {
    let nl = y.size()[0];
    let nu = ua.size()[0] / 2;
    let a = la.narrow(0, 0, nl);
    let (uw, us) = (ua.narrow(0, 0, nu), ua.narrow(0, nu, nu));
    // 1. teacher logits; gradients only into the teacher classifier.
    let t_feats = tch::no_grad(|| m.teacher.features(&Tensor::cat(&[&a, &uw, &us], 0), false));
    let t_logits = m.teacher_cls.forward(&t_feats);
    let t_l = t_logits.narrow(0, 0, nl);
    let t_uw = t_logits.narrow(0, nl, nu);
    let t_us = t_logits.narrow(0, nl + nu, nu);
    let t_loss_l = ce(&t_l, y)?;
    let t_acc = loss::accuracy(&t_l, y);
    // 2. the student's labelled loss before its update.
    let s_old = student_labelled_loss(m, &a, y)?;
    // 3. student SupCon on the teacher's hard pseudo labels.
    let pseudo = t_uw.detach().argmax(-1, false);
    let s_supcon = supcon_of(&m.student, ua, &pseudo, settings)?;
    m.opt_s.backward_step(&s_supcon);
    // 4. student classifier on labelled data, encoder frozen.
    let s_ce = student_classifier_step(m, &a, y)?;
    // 5. h: how much the student's labelled loss moved.
    let s_new = student_labelled_loss(m, &a, y)?;
    let h = s_new - s_old;
    // 6. teacher SupCon on labelled views.
    let t_supcon = supcon_of(&m.teacher, la, y, settings)?;
    m.opt_t.backward_step(&t_supcon);
    // 7. teacher classifier with the MPL term.
    let t_loss = loss::mpl_teacher_loss(&t_l, y, &t_us, h)?;
    m.opt_tc.backward_step(&t_loss);
    Ok(StepLosses {
        t_loss: t_loss.double_value(&[]),
        t_loss_l: t_loss_l.double_value(&[]),
        h,
        s_supcon: s_supcon.double_value(&[]),
        s_ce: s_ce.double_value(&[]),
        t_supcon: t_supcon.double_value(&[]),
        t_acc,
    })
}

/// Refuses a teacher run made with another preset, image size or backbone than this run, or
/// one that did not finish its two stages.
fn check_teacher(settings: &TrainSettings, ck: &checkpoint::Checkpoint) -> Result<(), TrainError> {
    let dir = &settings.recipe.mpl.teacher;
    let recipe_path = dir.join("recipe.toml");
    if !recipe_path.is_file() {
        return Err(TrainError::NotARun(dir.clone()));
    }
    let theirs = crate::train::recipe::Recipe::load(Some(&recipe_path))?;
    let ours = &settings.recipe;
    let mismatch = |what: &'static str, a: String, b: String| TrainError::TeacherMismatch { teacher: dir.clone(), what, theirs: a, ours: b };
    if theirs.model.backbone != ours.model.backbone {
        return Err(mismatch("backbone", theirs.model.backbone, ours.model.backbone.clone()));
    }
    if theirs.run.preset != ours.run.preset {
        return Err(mismatch("preset", theirs.run.preset, ours.run.preset.clone()));
    }
    if theirs.data.image_size != ours.data.image_size {
        return Err(mismatch("image size", theirs.data.image_size.to_string(), ours.data.image_size.to_string()));
    }
    let total = theirs.teacher.supcon_steps + theirs.teacher.linear_steps;
    if ck.step < total {
        return Err(TrainError::TeacherUnfinished { teacher: dir.clone(), step: ck.step, total });
    }
    Ok(())
}

fn save(dir: &RunDir, m: &MplModels, step: usize) -> Result<String, TrainError> {
    dir.save(step, |dir| {
        let stores = [(&m.vs_t, &m.opt_t), (&m.vs_tc, &m.opt_tc), (&m.vs_s, &m.opt_s), (&m.vs_sc, &m.opt_sc)];
        for ((vs, opt), file) in stores.into_iter().zip(FILES) {
            checkpoint::save_weights(vs, &dir.join(file))?;
            opt.save(&dir.join(format!("adam_{file}")))?;
        }
        Ok(())
    })
}

const METRICS_HEADER: &str = "step,t_loss,t_loss_l,h,s_supcon,s_ce,t_supcon,t_acc,images_per_s";

/// Runs (or resumes) SupCon-MPL.
pub fn run(settings: &TrainSettings, resume: bool, progress: bool) -> Result<RunReport, TrainError> {
    let recipe = &settings.recipe;
    let (preset, device) = (settings.preset, settings.torch_device()?);
    let mp = &recipe.mpl;
    let labelled = super::cached(settings, &recipe.data.manifest, data::load_samples(&recipe.data.manifest, &recipe.data.train_split, &recipe.data.datasets)?)?;
    let eval = Arc::new(data::load_samples(&recipe.data.manifest, &recipe.data.eval_split, &recipe.data.datasets)?);
    let unlabelled = super::cached(settings, &settings.unlabelled_manifest, data::load_unlabelled(&settings.unlabelled_manifest, &recipe.data.unlabelled_split, &recipe.data.datasets)?)?;
    let dir = RunDir::open(settings, resume)?;

    tch::manual_seed(recipe.run.seed as i64);
    let mut m = MplModels::new(settings.backbone, recipe.model.feat_dim, mp.lr, device);
    match &dir.resumed {
        Some(ck) => {
            for ((vs, opt), file) in m.stores().into_iter().zip(FILES) {
                checkpoint::load_vars(vs, &ck.dir.join(file))?;
                opt.load(&ck.dir.join(format!("adam_{file}")))?;
            }
        }
        None => {
            let tck = checkpoint::latest(&mp.teacher)?
                .ok_or_else(|| TrainError::NoCheckpoint { run: mp.teacher.clone(), hint: "no teacher; run `scmpl train teacher` first" })?;
            check_teacher(settings, &tck)?;
            checkpoint::load_vars(&mut m.vs_t, &tck.dir.join("teacher.safetensors"))
                .map_err(|e| TrainError::TeacherBackbone { backbone: recipe.model.backbone.clone(), source: Box::new(e) })?;
            checkpoint::load_vars(&mut m.vs_tc, &tck.dir.join("teacher_classifier.safetensors"))?;
            if !recipe.model.init.is_empty() {
                model::load_torchvision_init(&mut m.vs_s, Path::new(&recipe.model.init))?;
            }
        }
    }
    let start = dir.start();
    let mut metrics = dir.metrics(METRICS_HEADER)?.learning_rate(mp.lr);
    let stop = stop_step(settings, start, mp.steps);
    let lab = Loader::new(labelled.clone(), train_spec(settings, &labelled, mp.labelled_batch, 2, recipe.run.seed), start, stop);
    // The unlabelled stream restarts (a new epoch) whenever it is exhausted: Plan does that.
    let unl_spec = train_spec(settings, &unlabelled, mp.unlabelled_batch, 2, recipe.run.seed ^ 0x5eed);
    let unl = Loader::new(unlabelled.clone(), unl_spec, start, stop);
    let bar = progress_bar(mp.steps, start, progress);
    let mut last_ck = "none".to_string();
    let mut skipped = 0;
    for (lb, ub) in lab.zip(unl) {
        let step_no = lb.step + 1;
        let began = Instant::now();
        skipped += report_skipped(&lb) + report_skipped(&ub);
        let (la, y) = tensors(&lb, device, preset);
        let (ua, _) = tensors(&ub, device, preset);
        let s = step(&mut m, &la, &y, &ua, settings)?;
        for (what, v) in [("teacher loss", s.t_loss), ("student SupCon", s.s_supcon), ("teacher SupCon", s.t_supcon)] {
            if !v.is_finite() {
                return Err(TrainError::NotFinite { step: step_no, what, value: v, checkpoint: last_ck });
            }
        }
        let ips = ((lb.n + ub.n) * 2) as f64 / began.elapsed().as_secs_f64();
        metrics.row(format_args!(
            "{step_no},{:.9},{:.9},{:.9},{:.9},{:.9},{:.9},{:.6},{ips:.1}",
            s.t_loss, s.t_loss_l, s.h, s.s_supcon, s.s_ce, s.t_supcon, s.t_acc
        ))?;
        if step_no % recipe.run.log_every.max(1) == 0 {
            tracing::info!("step {step_no}: t_loss {:.4} h {:+.5} s_supcon {:.4} t_supcon {:.4} t_acc {:.3}", s.t_loss, s.h, s.s_supcon, s.t_supcon, s.t_acc);
        }
        bar.set_position(step_no as u64);
        if step_no % recipe.run.checkpoint_every.max(1) == 0 || step_no == stop {
            last_ck = save(&dir, &m, step_no)?;
        }
    }
    bar.finish_and_clear();
    let finished = stop == mp.steps;
    let mut report =
        RunReport { run: dir.out.clone(), last_step: stop, finished, eval_accuracy: None, eval_images: 0, skipped_images: skipped };
    if finished {
        finish(&dir, &mut report, (&m.student, &m.student_cls), &eval, settings, device, serde_json::json!({ "model": "student" }))?;
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Kind;

    fn recipe() -> TrainSettings {
        crate::train::recipe::Recipe::load(None).unwrap().validate().unwrap()
    }

    fn models() -> MplModels {
        tch::manual_seed(5);
        MplModels::new(Backbone::Resnet18, 16, 1e-3, Device::Cpu)
    }

    fn batch(n: i64) -> Tensor {
        Tensor::rand([2 * n, 3, 32, 32], (Kind::Float, Device::Cpu))
    }

    #[test]
    fn the_mpl_term_never_touches_the_teacher_encoder_and_h_is_the_student_loss_change() {
        let mut m = models();
        let r = recipe();
        let (la, ua) = (batch(4), batch(6));
        let y = Tensor::from_slice(&[0i64, 1, 0, 1]);
        // Record what the teacher encoder+head would become from its SupCon step alone.
        let before_t: Vec<(String, Tensor)> = m.vs_t.variables().into_iter().map(|(k, v)| (k, v.copy())).collect();
        let a = la.narrow(0, 0, 4);
        let s_old = student_labelled_loss(&m, &a, &y).unwrap();
        let s = step(&mut m, &la, &y, &ua, &r).unwrap();
        let s_new = student_labelled_loss(&m, &a, &y).unwrap();
        // h was measured right after the student's updates, which are the last student changes.
        assert!((s.h - (s_new - s_old)).abs() < 1e-9, "h {} vs {}", s.h, s_new - s_old);
        // The teacher classifier's gradient came from t_loss only; the encoder's from SupCon only:
        // after the step the encoder grads equal those of its SupCon loss recomputed on the old weights.
        let mut fresh = models();
        for (name, t) in &before_t {
            let mut v = fresh.vs_t.variables()[name].shallow_clone();
            tch::no_grad(|| v.copy_(t));
        }
        let _ = &mut fresh;
        let t_supcon = supcon_of(&fresh.teacher, &la, &y, &r).unwrap();
        fresh.opt_t.zero_grad();
        t_supcon.backward();
        for (name, v) in m.vs_t.variables() {
            let g = v.grad();
            let g2 = fresh.vs_t.variables()[&name].grad();
            if g.defined() && g2.defined() {
                assert!((g - g2).abs().max().double_value(&[]) < 1e-4, "{name}: the MPL term leaked into the teacher encoder");
            }
        }
    }

    /// Bug: under `paper`, sub-step 4 ran the student encoder with BatchNorm in train mode, so
    /// its running statistics moved on every MPL step.
    #[test]
    fn the_student_classifier_step_leaves_the_students_batchnorm_statistics_alone() {
        let mut m = models();
        let running = |m: &MplModels| -> Vec<(String, Tensor)> {
            let mut v: Vec<(String, Tensor)> =
                m.vs_s.variables().into_iter().filter(|(k, _)| k.contains("running_")).map(|(k, t)| (k, t.copy())).collect();
            v.sort_by(|a, b| a.0.cmp(&b.0));
            v
        };
        let y = Tensor::from_slice(&[0i64, 1, 0, 1]);
        let a = batch(4).narrow(0, 0, 4) * 3.0 + 1.0;
        let before = running(&m);
        assert!(!before.is_empty());
        let _ = student_classifier_step(&mut m, &a, &y).unwrap();
        for ((name, b), (_, after)) in before.iter().zip(running(&m)) {
            assert!(b.equal(&after), "{name} moved in sub-step 4");
        }
        // It takes no preset: `step` calls it the same way under `default` and `paper`.
    }

    #[test]
    fn pseudo_labels_are_the_argmax_of_the_teachers_weak_view_logits() {
        let m = models();
        let uw = batch(3).narrow(0, 0, 3);
        let logits = tch::no_grad(|| m.teacher_cls.forward(&m.teacher.features(&uw, false)));
        let pseudo = logits.argmax(-1, false);
        for i in 0..3 {
            let row = [logits.double_value(&[i, 0]), logits.double_value(&[i, 1])];
            assert_eq!(pseudo.int64_value(&[i]), if row[1] > row[0] { 1 } else { 0 });
        }
    }

    #[test]
    fn h_sign_follows_the_student_change() {
        // A constructed case: a student loss that falls gives h < 0, which scales the teacher's
        // pseudo-label term down (the reference's sign convention).
        let tl = Tensor::from_slice(&[2.0f64, -1.0, 0.5, 0.3]).view([2, 2]);
        let y = Tensor::from_slice(&[0i64, 1]);
        let tus = Tensor::from_slice(&[0.2f64, 1.2, -0.4, 0.1, 0.9, 0.4]).view([3, 2]);
        let base = loss::cross_entropy(&tl, &y).unwrap().double_value(&[]);
        let down = loss::mpl_teacher_loss(&tl, &y, &tus, 0.65 - 0.70).unwrap().double_value(&[]);
        let up = loss::mpl_teacher_loss(&tl, &y, &tus, 0.75 - 0.70).unwrap().double_value(&[]);
        assert!(down < base && up > base);
    }
}
