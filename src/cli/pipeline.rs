//! `extract`, `detect` and `crop`: their flags, overlaid on the pipeline config, and the run's
//! summary.

use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::Args;

use scmpl::pipeline::config::{ExtractSection, PipelineConfig};
use scmpl::shard::ShardSpec;
use scmpl::pipeline::{self, Mode, RunOptions, Summary};

/// How faces are cut and stored; each overrides the same key of the config file.
#[derive(Args)]
pub struct CropFlags {
    /// Crop rule: reference or margin:F.
    #[arg(long)]
    crop: Option<String>,
    /// Resize crops to SIZE x SIZE (0: native size).
    #[arg(long)]
    size: Option<u32>,
    /// png, jpeg or jpeg:Q.
    #[arg(long)]
    format: Option<String>,
}

impl CropFlags {
    fn apply(&self, e: &mut ExtractSection) {
        set(&mut e.crop, &self.crop);
        set(&mut e.format, &self.format);
        set(&mut e.size, &self.size);
    }
}

/// Which videos a run takes, and how it shows progress: flags shared by every pipeline command.
#[derive(Args)]
pub struct RunFlags {
    /// Process only shard K of N (stable hash of the original's id: a DFDC original and its
    /// fakes share a shard) into OUT/shards/K-of-N/. auto/N: K from SLURM_ARRAY_TASK_ID or
    /// JOB_COMPLETION_INDEX (see scripts/cluster/README.md).
    #[arg(long)]
    shard: Option<ShardSpec>,
    /// Re-run the videos an earlier run into --out failed on (their rows are replaced).
    #[arg(long)]
    retry_failed: bool,
    /// No progress bar.
    #[arg(long)]
    no_progress: bool,
}

/// Flags of `crop`.
#[derive(Args)]
pub struct CropArgs {
    /// detections.csv written by detect or extract (videos.csv must be beside it).
    #[arg(long)]
    detections: PathBuf,
    /// Output folder (not the detections' folder).
    #[arg(long)]
    out: PathBuf,
    /// Pipeline config (TOML) overlaid on pipeline/default.toml (crop keys are used).
    #[arg(long)]
    config: Option<PathBuf>,
    #[command(flatten)]
    crops: CropFlags,
    /// Videos decoded at once.
    #[arg(long)]
    workers: Option<usize>,
    #[command(flatten)]
    run: RunFlags,
}

/// Flags of `extract` and `detect`; each overrides the same key of the config file.
#[derive(Args)]
pub struct PipelineArgs {
    /// Video files or folders (walked recursively; DFDC metadata.json is read when present).
    #[arg(required = true)]
    videos: Vec<PathBuf>,
    /// Output folder.
    #[arg(long)]
    out: PathBuf,
    /// Pipeline config (TOML) overlaid on pipeline/default.toml.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Frames to sample: all, stride:N, count:N.
    #[arg(long)]
    sampling: Option<String>,
    /// cpu, cuda or cuda:N.
    #[arg(long)]
    device: Option<String>,
    #[command(flatten)]
    crops: CropFlags,
    /// all, or largest (one face per frame).
    #[arg(long)]
    faces: Option<String>,
    /// Dataset name in the manifests (default: from the layout: dfdc, ffpp, celebdf, else videos).
    #[arg(long)]
    dataset: Option<String>,
    /// Read the inputs as this release's layout: dfdc, ffpp, celebdf or videos (default: found
    /// from the folders; see README).
    #[arg(long)]
    layout: Option<String>,
    /// FaceForensics++'s official splits folder (train.json, val.json, test.json): the split column.
    #[arg(long)]
    ffpp_splits: Option<PathBuf>,
    /// Detect DFDC fakes too (the reference's behaviour), instead of cropping them at their
    /// original's boxes.
    #[arg(long)]
    detect_fakes: bool,
    /// Face detector: retinaface | mtcnn (facenet-pytorch's cascade; see pipeline/reference.toml).
    #[arg(long)]
    detector: Option<String>,
    /// Minimum face score.
    #[arg(long)]
    score_threshold: Option<f32>,
    /// Frames per detector call.
    #[arg(long)]
    batch_size: Option<usize>,
    /// Detector input side (frames are letterboxed into it).
    #[arg(long)]
    input_size: Option<u32>,
    /// Faces narrower than this (full-frame pixels) are dropped; RetinaFace then sees frames no
    /// larger than that face needs (faster when faces are large, as in DFDC).
    #[arg(long)]
    min_face_size: Option<f32>,
    /// Detect every Nth sampled frame and interpolate faces along tracks between (1 = every frame).
    #[arg(long)]
    keyframe_interval: Option<u64>,
    /// Videos decoded at once.
    #[arg(long)]
    decode_workers: Option<usize>,
    /// Threads cropping and encoding faces.
    #[arg(long)]
    crop_workers: Option<usize>,
    /// Folder with the detector model files (default: models/).
    #[arg(long)]
    models: Option<PathBuf>,
    #[command(flatten)]
    run: RunFlags,
}

/// Overwrites `dst` with the flag's value when the flag was given.
fn set<T: Clone>(dst: &mut T, flag: &Option<T>) {
    if let Some(v) = flag {
        *dst = v.clone();
    }
}

impl PipelineArgs {
    /// The config file (or the defaults) with the flags applied, validated.
    pub fn config(&self) -> anyhow::Result<PipelineConfig> {
        let mut c = PipelineConfig::load(self.config.as_deref())?;
        let e = &mut c.extract;
        set(&mut e.sampling, &self.sampling);
        set(&mut e.device, &self.device);
        set(&mut e.faces, &self.faces);
        set(&mut e.dataset, &self.dataset);
        set(&mut e.layout, &self.layout);
        e.detect_fakes |= self.detect_fakes;
        if let Some(d) = &self.ffpp_splits {
            e.ffpp_splits = std::path::absolute(d)?.to_string_lossy().into_owned();
        }
        set(&mut e.decode_workers, &self.decode_workers);
        set(&mut e.crop_workers, &self.crop_workers);
        self.crops.apply(e);
        let d = &mut c.detector;
        set(&mut d.name, &self.detector);
        set(&mut d.score_threshold, &self.score_threshold);
        set(&mut d.batch_size, &self.batch_size);
        set(&mut d.input_size, &self.input_size);
        set(&mut d.keyframe_interval, &self.keyframe_interval);
        set(&mut d.min_face_size, &self.min_face_size);
        c.validate()?;
        Ok(c)
    }
}

impl RunFlags {
    /// The run's options; a sharded run goes into its shard's folder under `out`.
    fn options(&self, config: PipelineConfig, out: &Path, mode: Mode, models: PathBuf) -> anyhow::Result<RunOptions> {
        let shard = self.shard.map(|s| s.resolve(|name| std::env::var(name).ok())).transpose()?;
        Ok(RunOptions {
            config,
            out: shard.map_or_else(|| out.to_path_buf(), |s| s.folder(out)),
            shard,
            mode,
            models,
            progress: super::show_progress(self.no_progress),
            retry_failed: self.retry_failed,
        })
    }
}

/// `scmpl extract` and `scmpl detect`.
pub fn extract(args: PipelineArgs, mode: Mode) -> anyhow::Result<i32> {
    let models = args.models.clone().unwrap_or_else(scmpl::pipeline::runtime::models_dir);
    let opts = args.run.options(args.config()?, &args.out, mode, models)?;
    let s = pipeline::run(&args.videos, &opts).with_context(|| format!("scmpl cannot run into {}", opts.out.display()))?;
    Ok(print_summary(&s, &opts.out))
}

/// `scmpl crop`.
pub fn crop(args: CropArgs) -> anyhow::Result<i32> {
    let mut config = PipelineConfig::load(args.config.as_deref())?;
    let e = &mut config.extract;
    args.crops.apply(e);
    if let Some(v) = args.workers {
        e.decode_workers = v;
        e.crop_workers = v;
    }
    config.validate()?;
    let opts = args.run.options(config, &args.out, Mode::Extract, scmpl::pipeline::runtime::models_dir())?;
    let s = pipeline::recrop::run(&args.detections, &opts).with_context(|| format!("scmpl cannot crop into {}", opts.out.display()))?;
    Ok(print_summary(&s, &opts.out))
}

/// Prints a run's warnings, failures and totals; returns the exit code.
fn print_summary(s: &Summary, out: &Path) -> i32 {
    for r in &s.recognised {
        eprintln!("found {r}");
    }
    for w in &s.warnings {
        eprintln!("warning: {w}");
    }
    for p in &s.partial {
        eprintln!("partial: {p}");
    }
    for f in &s.failures {
        eprintln!("failed: {f}");
    }
    for f in &s.failed_earlier {
        eprintln!("failed (earlier run; --retry-failed redoes it): {f}");
    }
    let r = &s.reuse;
    if r.fakes > 0 || !r.detected.is_empty() {
        eprintln!(
            "DFDC: {} fakes cropped at their original's boxes ({} detector frames saved); {} fakes detected themselves",
            r.fakes,
            r.frames_saved,
            r.detected.len()
        );
        for d in &r.detected {
            eprintln!("  detected itself: {d}");
        }
    }
    let earlier = if s.failed_earlier.is_empty() { String::new() } else { format!(" (+{} failed in earlier runs)", s.failed_earlier.len()) };
    eprintln!(
        "videos: {} ok ({} without faces, {} partial), {} failed{earlier}, {} already done; {} frames, {} faces in {:.1}s ({:.1} frames/s)",
        s.videos_ok,
        s.videos_without_faces,
        s.partial.len(),
        s.failures.len(),
        s.videos_skipped,
        s.frames,
        s.faces,
        s.elapsed.as_secs_f64(),
        s.frames as f64 / s.elapsed.as_secs_f64().max(1e-9),
    );
    eprintln!("manifests: {}", out.display());
    super::exit_code(s.any_failed())
}
