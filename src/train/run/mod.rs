//! The training stages, and the run folder they share.
//!
//! - [`supcon`]: SupCon on encoder + head, then a linear classifier (the teacher, and the
//!   student's fine-tune);
//! - [`mpl`]: the SupCon-MPL loop;
//! - [`baseline`]: CE and classic MPL, under the same budget.
//!
//! Every stage writes into one [`RunDir`]: `recipe.toml`, `metrics.csv` (rows after the
//! resumed step dropped), `checkpoints/` and `latest`, `eval.json`. A folder that already holds
//! a run is refused unless `--resume` continues it with the same recipe.

pub mod baseline;
pub mod mpl;
pub mod supcon;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tch::{Device, Tensor};

use super::checkpoint::{self, Checkpoint};
use super::data::{Batch, Loader, LoaderSpec, Plan, Sample};
use super::model::{Classifier, SupConNet};
use super::recipe::{Preset, TrainSettings};
use super::tensorboard::EventWriter;
use super::{io_err, loss, TrainError};

/// How a training run ended.
#[derive(Debug)]
pub struct RunReport {
    pub run: PathBuf,
    pub last_step: usize,
    pub finished: bool,
    /// Held-out accuracy of the final classifier (None when stopped early).
    pub eval_accuracy: Option<f64>,
    pub eval_images: usize,
    pub skipped_images: usize,
}

/// The folder of one training run (`run.out`).
pub struct RunDir {
    pub out: PathBuf,
    /// The checkpoint a resumed run continues from (None: a new run).
    pub resumed: Option<Checkpoint>,
    fingerprint: String,
}

impl RunDir {
    /// Opens `run.out` for `settings`: with `resume`, its latest checkpoint (refused when made
    /// with another recipe); without, refused when it already holds a run. Writes `recipe.toml`.
    pub fn open(settings: &TrainSettings, resume: bool) -> Result<RunDir, TrainError> {
        let recipe = &settings.recipe;
        let out = recipe.run.out.clone();
        std::fs::create_dir_all(&out).map_err(io_err(&out))?;
        let fingerprint = recipe.fingerprint();
        let resumed = match (resume, checkpoint::latest(&out)?) {
            (true, Some(ck)) if ck.recipe_fingerprint != fingerprint => {
                return Err(TrainError::RecipeChanged { dir: ck.dir, recipe: out.join("recipe.toml") });
            }
            (true, Some(ck)) => {
                tracing::info!("resuming from {} (step {})", ck.dir.display(), ck.step);
                Some(ck)
            }
            (true, None) => {
                tracing::warn!("--resume: no checkpoint in {}; starting from scratch", out.display());
                None
            }
            (false, Some(_)) => return Err(TrainError::RunExists(out)),
            (false, None) => None,
        };
        let path = out.join("recipe.toml");
        std::fs::write(&path, recipe.to_toml()).map_err(io_err(&path))?;
        for w in settings.warnings() {
            tracing::warn!("{w}");
        }
        Ok(RunDir { out, resumed, fingerprint })
    }

    /// The last step done before this process (0 for a new run).
    pub fn start(&self) -> usize {
        self.resumed.as_ref().map_or(0, |c| c.step)
    }

    /// Opens `metrics.csv` with `header`, keeping only the rows up to the resumed step (the
    /// steps after it are redone).
    pub fn metrics(&self, header: &str) -> Result<MetricsLog, TrainError> {
        let path = self.out.join("metrics.csv");
        let start = self.start();
        let kept: String = match std::fs::read_to_string(&path) {
            Ok(text) => text
                .lines()
                .skip(1)
                .filter(|l| l.split(',').next().and_then(|s| s.parse::<usize>().ok()).is_some_and(|s| s <= start))
                .map(|l| format!("{l}\n"))
                .collect(),
            Err(_) => String::new(),
        };
        std::fs::write(&path, format!("{header}\n{kept}")).map_err(io_err(&path))?;
        let file = std::fs::OpenOptions::new().append(true).open(&path).map_err(io_err(&path))?;
        let tb_dir = self.out.join("tb");
        let tb = EventWriter::create(&tb_dir).map_err(io_err(&tb_dir))?;
        Ok(MetricsLog { file, path, header: header.split(',').map(str::to_string).collect(), tb, lr: None })
    }

    /// Writes a checkpoint of `step`, `fill` saving the weights; returns its folder.
    pub fn save(&self, step: usize, fill: impl FnOnce(&Path) -> Result<(), tch::TchError>) -> Result<String, TrainError> {
        let ck = Checkpoint { dir: PathBuf::new(), step, recipe_fingerprint: self.fingerprint.clone() };
        Ok(checkpoint::write(&self.out, &ck, fill)?.display().to_string())
    }

    /// Writes `eval.json`: the held-out evaluation of the run's final model.
    /// Writes `eval.json`: the held-out evaluation of the run's final model; its accuracy also
    /// goes to TensorBoard (`eval/accuracy` at the last step).
    pub fn write_eval(&self, json: &serde_json::Value) -> Result<(), TrainError> {
        let path = self.out.join("eval.json");
        std::fs::write(&path, serde_json::to_string_pretty(json).expect("json")).map_err(io_err(&path))?;
        let tb_dir = self.out.join("tb");
        let step = json["step"].as_i64().unwrap_or(0);
        let mut tb = EventWriter::create(&tb_dir).map_err(io_err(&tb_dir))?;
        for key in ["accuracy", "images"] {
            if let Some(v) = json[key].as_f64() {
                tb.scalar(&format!("eval/{key}"), step, v as f32).map_err(io_err(&tb.path))?;
            }
        }
        tb.flush().map_err(io_err(&tb.path))
    }
}

/// `metrics.csv`, appended one row per step, and the same scalars as TensorBoard events in
/// `tb/` ([`crate::train::tensorboard`]).
pub struct MetricsLog {
    file: std::fs::File,
    path: PathBuf,
    header: Vec<String>,
    tb: EventWriter,
    /// The optimizers' learning rate, logged to TensorBoard as `lr` at every row's step (the
    /// recipes have no schedule, so it is one number per run).
    lr: Option<f32>,
}

impl MetricsLog {
    /// Also logs `lr` to TensorBoard with every row.
    pub fn learning_rate(mut self, lr: f64) -> Self {
        self.lr = Some(lr as f32);
        self
    }

    /// Appends one row (the values, comma-separated, without a newline).
    pub fn row(&mut self, values: std::fmt::Arguments) -> Result<(), TrainError> {
        let line = values.to_string();
        writeln!(self.file, "{line}").map_err(io_err(&self.path))?;
        let header: Vec<&str> = self.header.iter().map(String::as_str).collect();
        if let Some((step, scalars)) = crate::train::tensorboard::row_scalars(&header, &line) {
            for (tag, v) in scalars.into_iter().chain(self.lr.map(|lr| ("lr".to_string(), lr))) {
                self.tb.scalar(&tag, step, v).map_err(io_err(&self.tb.path))?;
            }
            self.tb.flush().map_err(io_err(&self.tb.path))?;
        }
        Ok(())
    }
}

/// Points `samples` (rows of `manifest`) at the decoded-crop cache when the recipe has one
/// (`data.cache`), building or updating it first; returns them shared.
pub fn cached(settings: &TrainSettings, manifest: &Path, mut samples: Vec<crate::train::data::Sample>) -> Result<Arc<Vec<crate::train::data::Sample>>, TrainError> {
    let dir = &settings.recipe.data.cache;
    if !dir.as_os_str().is_empty() {
        let t = std::time::Instant::now();
        let r = crate::train::data::cache::attach(dir, manifest, &mut samples, settings.recipe.data.workers.max(1))?;
        tracing::info!(
            "crop cache {}: {} crops reused, {} decoded, {} unreadable, {} MB ({:.1} s)",
            dir.display(),
            r.reused,
            r.decoded,
            r.unreadable,
            r.bytes >> 20,
            t.elapsed().as_secs_f64()
        );
    }
    Ok(Arc::new(samples))
}

/// The step a run stops at: `total`, or earlier with `run.stop_after`.
pub fn stop_step(settings: &TrainSettings, start: usize, total: usize) -> usize {
    let after = settings.recipe.run.stop_after;
    if after > 0 {
        (start + after).min(total)
    } else {
        total
    }
}

/// The augmented training batches of `samples` (`batch` each, `views` views per image; at most
/// `data.per_track` faces of a track per epoch when set).
pub fn train_spec(settings: &TrainSettings, samples: &[crate::train::data::Sample], batch: usize, views: usize, seed: u64) -> LoaderSpec {
    let d = &settings.recipe.data;
    let per_track = d.per_track;
    let samples = if per_track > 0 { crate::train::data::PerTrack::new(samples).epoch_size(per_track) } else { samples.len() };
    LoaderSpec {
        plan: Plan { seed, batch: batch.min(samples), samples, shuffle: true, per_track },
        views,
        augment: true,
        size: d.image_size,
        workers: d.workers,
        prefetch: d.prefetch,
    }
}

/// Every sample once, in order, with the eval transform (evaluation and inference).
pub fn eval_spec(samples: usize, image_size: usize, workers: usize) -> LoaderSpec {
    LoaderSpec {
        plan: Plan { seed: 0, batch: 256, samples, shuffle: false, per_track: 0 },
        views: 1,
        augment: false,
        size: image_size,
        workers,
        prefetch: 2,
    }
}

/// A progress bar over `total` steps, at `start`; hidden unless `show`.
pub fn progress_bar(total: usize, start: usize, show: bool) -> indicatif::ProgressBar {
    let bar = if show { indicatif::ProgressBar::new(total as u64) } else { indicatif::ProgressBar::hidden() };
    bar.set_style(
        indicatif::ProgressStyle::with_template("{bar:30} step {pos}/{len} {msg} [{elapsed_precise}, ETA {eta}]").expect("static template"),
    );
    bar.set_position(start as u64);
    bar
}

/// NHWC [0,1] pixels -> NCHW tensor on `device`, scaled as the preset says.
pub fn to_input(batch: &Batch, device: Device, preset: Preset) -> Tensor {
    let n = (batch.views * batch.n) as i64;
    let s = batch.size as i64;
    let host = Tensor::from_slice(&batch.pixels).view([n, s, s, 3]);
    // To a GPU from pinned memory without waiting (the copy overlaps the step's queue), and
    // laid out as NCHW there.
    let x = if device.is_cuda() {
        host.pin_memory(device).to_device_(device, tch::Kind::Float, true, false).permute([0, 3, 1, 2]).contiguous()
    } else {
        host.permute([0, 3, 1, 2]).contiguous()
    };
    match preset {
        Preset::Paper => x / 255.0,
        Preset::Default => {
            let mean = Tensor::from_slice(&[0.485f32, 0.456, 0.406]).view([1, 3, 1, 1]).to_device(device);
            let std = Tensor::from_slice(&[0.229f32, 0.224, 0.225]).view([1, 3, 1, 1]).to_device(device);
            (x - mean) / std
        }
    }
}

/// Inputs and labels of a batch on `device`.
pub fn tensors(b: &Batch, device: Device, preset: Preset) -> (Tensor, Tensor) {
    (to_input(b, device, preset), Tensor::from_slice(&b.labels).to_device(device))
}

/// Logs the images a batch skipped (missing or unreadable); returns how many.
pub fn report_skipped(batch: &Batch) -> usize {
    for p in &batch.skipped {
        tracing::warn!("{}: missing or not a readable image; skipped", p.display());
    }
    batch.skipped.len()
}

/// Accuracy of encoder + classifier on `samples` with the eval transform; (accuracy, images).
pub fn evaluate(net: &SupConNet, cls: &Classifier, samples: &Arc<Vec<Sample>>, settings: &TrainSettings, device: Device) -> (f64, usize) {
    let spec = eval_spec(samples.len(), settings.recipe.data.image_size, settings.recipe.data.workers);
    let (mut right, mut n) = (0.0, 0usize);
    for batch in Loader::new(samples.clone(), spec, 0, spec.plan.steps_per_epoch()) {
        if batch.n == 0 {
            continue;
        }
        let (x, y) = tensors(&batch, device, settings.preset);
        let logits = tch::no_grad(|| cls.forward(&net.features(&x, false)));
        right += loss::accuracy(&logits, &y) * batch.n as f64;
        n += batch.n;
    }
    (if n == 0 { 0.0 } else { right / n as f64 }, n)
}

/// Evaluates the final model on the eval split, writes `eval.json` (with `fields` added) and
/// completes `report`.
pub fn finish(
    dir: &RunDir,
    report: &mut RunReport,
    (net, cls): (&SupConNet, &Classifier),
    eval: &Arc<Vec<Sample>>,
    settings: &TrainSettings,
    device: Device,
    fields: serde_json::Value,
) -> Result<(), TrainError> {
    let (acc, n) = evaluate(net, cls, eval, settings, device);
    report.eval_accuracy = Some(acc);
    report.eval_images = n;
    let mut json = fields;
    let obj = json.as_object_mut().expect("fields are a JSON object");
    obj.insert("split".into(), settings.recipe.data.eval_split.clone().into());
    obj.insert("images".into(), n.into());
    obj.insert("accuracy".into(), acc.into());
    obj.insert("step".into(), report.last_step.into());
    let warnings = settings.warnings();
    if !warnings.is_empty() {
        obj.insert("warnings".into(), warnings.into());
    }
    dir.write_eval(&json)
}
