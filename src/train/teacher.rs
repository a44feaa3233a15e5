//! `scmpl train teacher`: stage 1, SupCon on two augmented views with true labels (encoder +
//! head); stage 2, a linear classifier with cross-entropy on the frozen encoder (eval mode).
//!
//! Steps are numbered globally: 1..=S1 are SupCon steps, S1+1..=S1+S2 linear steps. Every
//! `checkpoint_every` steps (and at the end) a checkpoint is written; `--resume` continues
//! from the latest one and, on CPU, reproduces the uninterrupted run's losses exactly.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use tch::nn::{self};
use tch::{Device, TchError, Tensor};

use super::checkpoint::{self, Checkpoint};
use super::config::{Preset, Recipe};
use super::data::{self, Batch, DataError, Loader, LoaderSpec, Plan};
use super::loss;
use super::model::{self, Backbone, Classifier, SupConNet};
use super::optim::Adam;
use crate::config::ConfigError;
use crate::runtime::{Device as UserDevice, RuntimeError};

#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Data(#[from] DataError),
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    #[error("libtorch: {0}")]
    Torch(#[from] TchError),
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{0}")]
    Checkpoint(String),
    #[error("step {step}: {what} is {value}; stopped, the last good checkpoint ({checkpoint}) is kept")]
    NotFinite { step: usize, what: &'static str, value: f64, checkpoint: String },
}

/// What a teacher run reports.
#[derive(Debug)]
pub struct TeacherReport {
    pub run: PathBuf,
    pub last_step: usize,
    pub finished: bool,
    /// Held-out accuracy of the final classifier (None when stopped early).
    pub eval_accuracy: Option<f64>,
    pub eval_images: usize,
    pub skipped_images: usize,
}

/// The torch device for a user device; CUDA asked for and absent is an error.
pub fn torch_device(d: UserDevice) -> Result<Device, RuntimeError> {
    match d {
        UserDevice::Cpu => Ok(Device::Cpu),
        UserDevice::Cuda(n) => {
            if tch::Cuda::is_available() && (n as i64) < tch::Cuda::device_count() {
                Ok(Device::Cuda(n))
            } else {
                Err(RuntimeError::CudaUnavailable {
                    what: format!("--device cuda:{n}"),
                    reason: format!("libtorch sees {} CUDA device(s)", tch::Cuda::device_count()),
                })
            }
        }
    }
}

/// NHWC [0,1] pixels -> NCHW tensor on `device`, scaled as the preset says.
pub fn to_input(batch: &Batch, device: Device, preset: Preset) -> Tensor {
    let n = (batch.views * batch.n) as i64;
    let s = batch.size as i64;
    let x = Tensor::from_slice(&batch.pixels).view([n, s, s, 3]).permute([0, 3, 1, 2]).contiguous().to_device(device);
    match preset {
        Preset::Paper => x / 255.0,
        Preset::Default => {
            let mean = Tensor::from_slice(&[0.485f32, 0.456, 0.406]).view([1, 3, 1, 1]).to_device(device);
            let std = Tensor::from_slice(&[0.229f32, 0.224, 0.225]).view([1, 3, 1, 1]).to_device(device);
            (x - mean) / std
        }
    }
}

struct Models {
    vs_net: nn::VarStore,
    vs_cls: nn::VarStore,
    net: SupConNet,
    cls: Classifier,
    opt_net: Adam,
    opt_cls: Adam,
}

fn build_models(recipe: &Recipe, device: Device, lr: f64) -> Result<Models, TrainError> {
    let backbone: Backbone = recipe
        .model
        .backbone
        .parse()
        .map_err(|r| ConfigError::Value { key: "model.backbone", value: recipe.model.backbone.clone(), reason: r })?;
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

pub(crate) fn io_err(path: &Path) -> impl Fn(std::io::Error) -> TrainError + '_ {
    move |source| TrainError::Io { path: path.to_path_buf(), source }
}

/// Which model the two stages train, and from what.
#[derive(Debug, Clone)]
pub struct Stages {
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

impl Stages {
    /// The teacher: SupCon then linear, from `model.init` or random.
    pub fn teacher(recipe: &Recipe) -> Stages {
        let t = &recipe.teacher;
        Stages {
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
    pub fn finetune(recipe: &Recipe) -> Result<Stages, TrainError> {
        let f = &recipe.finetune;
        let ck = checkpoint::latest(&f.student)?.ok_or_else(|| {
            TrainError::Checkpoint(format!("{}: no checkpoint (run `scmpl train mpl` first)", f.student.display()))
        })?;
        Ok(Stages {
            net_file: "student.safetensors",
            cls_file: "student_classifier.safetensors",
            supcon_steps: f.supcon_steps,
            supcon_batch: f.supcon_batch,
            linear_steps: f.linear_steps,
            linear_batch: f.linear_batch,
            lr: recipe.teacher.lr,
            start: Some((ck.dir.join("student.safetensors"), ck.dir.join("student_classifier.safetensors"))),
            bn_train_in_linear: recipe.preset()? == Preset::Paper,
        })
    }
}

/// Runs (or resumes) the teacher stages of `recipe`.
pub fn run(recipe: &Recipe, resume: bool, progress: bool) -> Result<TeacherReport, TrainError> {
    run_stages(recipe, &Stages::teacher(recipe), resume, progress)
}

/// Runs (or resumes) SupCon + linear stages as `stages` says.
pub fn run_stages(recipe: &Recipe, stages: &Stages, resume: bool, progress: bool) -> Result<TeacherReport, TrainError> {
    let preset = recipe.preset()?;
    let user_device: UserDevice = recipe.run.device.parse()?;
    let device = torch_device(user_device)?;
    let out = recipe.run.out.clone();
    let t = stages;
    let total = t.supcon_steps + t.linear_steps;

    let train = Arc::new(data::load_samples(&recipe.data.manifest, &recipe.data.train_split, &recipe.data.datasets)?);
    let eval = Arc::new(data::load_samples(&recipe.data.manifest, &recipe.data.eval_split, &recipe.data.datasets)?);

    std::fs::create_dir_all(&out).map_err(io_err(&out))?;
    let mut m = build_models(recipe, device, t.lr)?;
    if let Some((net, cls)) = &t.start {
        checkpoint::load_vars(&mut m.vs_net, net)?;
        checkpoint::load_vars(&mut m.vs_cls, cls)?;
    }
    let mut start = 0usize;
    if resume {
        match checkpoint::latest(&out)? {
            Some(ck) => {
                if ck.recipe_fingerprint != fingerprint(recipe) {
                    return Err(TrainError::Checkpoint(format!(
                        "{}: made with another recipe (model, data or schedule differ); resume with the saved recipe {}",
                        ck.dir.display(),
                        out.join("recipe.toml").display()
                    )));
                }
                checkpoint::load_vars(&mut m.vs_net, &ck.dir.join(t.net_file))?;
                checkpoint::load_vars(&mut m.vs_cls, &ck.dir.join(t.cls_file))?;
                m.opt_net.load(&ck.dir.join(format!("adam_{}", t.net_file)))?;
                m.opt_cls.load(&ck.dir.join(format!("adam_{}", t.cls_file)))?;
                start = ck.step;
                tracing::info!("resuming from {} (step {start})", ck.dir.display());
            }
            None => tracing::warn!("--resume: no checkpoint in {}; starting from scratch", out.display()),
        }
    } else if checkpoint::latest(&out)?.is_some() {
        return Err(TrainError::Checkpoint(format!(
            "{} already holds a run; pass --resume to continue it, or choose another run.out",
            out.display()
        )));
    }
    std::fs::write(out.join("recipe.toml"), recipe.to_toml()).map_err(io_err(&out))?;
    let metrics_path = out.join("metrics.csv");
    let mut metrics = open_metrics(&metrics_path, start)?;

    let stop = if recipe.run.stop_after > 0 { (start + recipe.run.stop_after).min(total) } else { total };
    let spec = |batch: usize, views: usize| LoaderSpec {
        plan: Plan { seed: recipe.run.seed, batch: batch.min(train.len()), samples: train.len(), shuffle: true },
        views,
        augment: true,
        size: recipe.data.image_size,
        workers: recipe.data.workers,
        prefetch: recipe.data.prefetch,
    };
    let bar = if progress { indicatif::ProgressBar::new(total as u64) } else { indicatif::ProgressBar::hidden() };
    bar.set_style(
        indicatif::ProgressStyle::with_template("{bar:30} step {pos}/{len} {msg} [{elapsed_precise}, ETA {eta}]")
            .expect("static template"),
    );
    bar.set_position(start as u64);
    let mut skipped = 0usize;
    let mut last_ck = checkpoint::latest(&out)?.map(|c| c.dir.display().to_string()).unwrap_or_else(|| "none".into());

    // Stage 1: SupCon on encoder + head.
    let s1_end = stop.min(t.supcon_steps);
    if start < s1_end {
        let loader = Loader::new(train.clone(), spec(t.supcon_batch, 2), start, s1_end);
        for batch in loader {
            let step = batch.step + 1;
            let began = Instant::now();
            skipped += report_skipped(&batch);
            let x = to_input(&batch, device, preset);
            let y = Tensor::from_slice(&batch.labels).to_device(device);
            let z = m.net.project(&m.net.features(&x, true));
            let n = batch.n as i64;
            // [2n, d] view-major -> [n, 2, d]
            let features = Tensor::stack(&[z.narrow(0, 0, n), z.narrow(0, n, n)], 1);
            let l = loss::supcon(&features, &y, recipe.teacher.temperature, recipe.teacher.base_temperature)?;
            let value = l.double_value(&[]);
            if !value.is_finite() {
                return Err(TrainError::NotFinite { step, what: "SupCon loss", value, checkpoint: last_ck });
            }
            m.opt_net.backward_step(&l);
            let ips = (2 * batch.n) as f64 / began.elapsed().as_secs_f64();
            log_step(&mut metrics, &metrics_path, step, "supcon", value, None, ips)?;
            bar.set_position(step as u64);
            bar.set_message(format!("supcon {value:.4} {ips:.0} img/s"));
            if step % recipe.run.checkpoint_every.max(1) == 0 || step == s1_end {
                last_ck = save(&out, &m, step, recipe, t)?;
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
            let x = to_input(&batch, device, preset);
            let y = Tensor::from_slice(&batch.labels).to_device(device);
            let f = tch::no_grad(|| m.net.features(&x, t.bn_train_in_linear));
            let logits = m.cls.forward(&f);
            let l = loss::cross_entropy(&logits, &y)?;
            let value = l.double_value(&[]);
            if !value.is_finite() {
                return Err(TrainError::NotFinite { step, what: "cross-entropy", value, checkpoint: last_ck });
            }
            m.opt_cls.backward_step(&l);
            let acc = loss::accuracy(&logits, &y);
            let ips = batch.n as f64 / began.elapsed().as_secs_f64();
            log_step(&mut metrics, &metrics_path, step, "linear", value, Some(acc), ips)?;
            bar.set_position(step as u64);
            bar.set_message(format!("ce {value:.4} acc {acc:.3} {ips:.0} img/s"));
            if step % recipe.run.checkpoint_every.max(1) == 0 || step == stop {
                last_ck = save(&out, &m, step, recipe, t)?;
            }
        }
    }
    bar.finish_and_clear();
    let finished = stop == total;
    let mut report = TeacherReport {
        run: out.clone(),
        last_step: stop,
        finished,
        eval_accuracy: None,
        eval_images: 0,
        skipped_images: skipped,
    };
    if finished {
        let (acc, n) = evaluate(&m.net, &m.cls, &eval, recipe, device, preset);
        report.eval_accuracy = Some(acc);
        report.eval_images = n;
        let json = serde_json::json!({ "split": recipe.data.eval_split, "images": n, "accuracy": acc, "step": stop });
        std::fs::write(out.join("eval.json"), serde_json::to_string_pretty(&json).expect("json")).map_err(io_err(&out))?;
    }
    Ok(report)
}

pub(crate) fn report_skipped(batch: &Batch) -> usize {
    for p in &batch.skipped {
        tracing::warn!("{}: missing or not a readable image; skipped", p.display());
    }
    batch.skipped.len()
}

/// Accuracy of encoder + classifier on `samples` with the eval transform.
pub fn evaluate(
    net: &SupConNet,
    cls: &Classifier,
    samples: &Arc<Vec<data::Sample>>,
    recipe: &Recipe,
    device: Device,
    preset: Preset,
) -> (f64, usize) {
    let plan = Plan { seed: 0, batch: 256, samples: samples.len(), shuffle: false };
    let spec = LoaderSpec {
        plan,
        views: 1,
        augment: false,
        size: recipe.data.image_size,
        workers: recipe.data.workers,
        prefetch: 2,
    };
    let (mut right, mut n) = (0.0, 0usize);
    for batch in Loader::new(samples.clone(), spec, 0, plan.steps_per_epoch()) {
        if batch.n == 0 {
            continue;
        }
        let x = to_input(&batch, device, preset);
        let y = Tensor::from_slice(&batch.labels).to_device(device);
        let logits = tch::no_grad(|| cls.forward(&net.features(&x, false)));
        right += loss::accuracy(&logits, &y) * batch.n as f64;
        n += batch.n;
    }
    (if n == 0 { 0.0 } else { right / n as f64 }, n)
}

/// What must not change between a run and its resumption.
pub(crate) fn fingerprint(recipe: &Recipe) -> String {
    let mut r = recipe.clone();
    r.run.stop_after = 0;
    r.run.device.clear();
    r.run.log_every = 0;
    r.data.workers = 0;
    r.data.prefetch = 0;
    r.to_toml()
}

fn save(out: &Path, m: &Models, step: usize, recipe: &Recipe, t: &Stages) -> Result<String, TrainError> {
    let ck = Checkpoint { dir: PathBuf::new(), step, recipe_fingerprint: fingerprint(recipe) };
    let dir = checkpoint::write(out, &ck, |dir| {
        checkpoint::save_weights(&m.vs_net, &dir.join(t.net_file))?;
        checkpoint::save_weights(&m.vs_cls, &dir.join(t.cls_file))?;
        m.opt_net.save(&dir.join(format!("adam_{}", t.net_file)))?;
        m.opt_cls.save(&dir.join(format!("adam_{}", t.cls_file)))?;
        Ok(())
    })?;
    Ok(dir.display().to_string())
}

const METRICS_HEADER: &str = "step,stage,loss,accuracy,images_per_s\n";

/// Opens metrics.csv, dropping rows after `start` (steps a crash made us redo).
pub(crate) fn open_metrics(path: &Path, start: usize) -> Result<std::fs::File, TrainError> {
    let kept: String = match std::fs::read_to_string(path) {
        Ok(text) => text
            .lines()
            .skip(1)
            .filter(|l| l.split(',').next().and_then(|s| s.parse::<usize>().ok()).is_some_and(|s| s <= start))
            .map(|l| format!("{l}\n"))
            .collect(),
        Err(_) => String::new(),
    };
    std::fs::write(path, format!("{METRICS_HEADER}{kept}")).map_err(io_err(path))?;
    std::fs::OpenOptions::new().append(true).open(path).map_err(io_err(path))
}

pub(crate) fn log_step(
    f: &mut std::fs::File,
    path: &Path,
    step: usize,
    stage: &str,
    loss: f64,
    acc: Option<f64>,
    ips: f64,
) -> Result<(), TrainError> {
    let acc = acc.map(|a| format!("{a:.6}")).unwrap_or_default();
    writeln!(f, "{step},{stage},{loss:.9},{acc},{ips:.1}").map_err(io_err(path))
}

#[cfg(test)]
mod tests {
    use super::*;
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
