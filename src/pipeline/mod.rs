//! The streaming extraction pipeline: `scan -> decode -> detect -> crop/encode -> write`.
//!
//! Each stage is a pool of threads joined by bounded channels, so memory stays flat however
//! many videos there are: decode workers (one video each) feed one detector thread, which
//! batches frames of the same video (batches do not depend on timing, so reruns give the same
//! numbers), crop workers cut and encode faces, and the calling thread writes: when every
//! sampled frame of a video has arrived it commits the video's manifest rows through the
//! [`journal`], which is what makes a killed run resumable.
//!
//! `scmpl detect` is the same pipeline without the crop stage; `scmpl crop` ([`recrop`]) is
//! the crop and write stages fed from a saved `detections.csv`.
//!
//! The files, in the order data flows through them:
//! - [`config`]: `pipeline/*.toml` -> validated [`config::ExtractSettings`];
//! - [`scan`]: input paths -> videos with ids, labels, shards;
//! - [`decode`]: FFmpeg decoding, frame sampling, the detector's copy of each frame
//!   ([`image`]: the BGR frame type);
//! - [`detect`]: the [`detect::Detector`] trait, RetinaFace and MTCNN over ONNX Runtime
//!   ([`runtime`]: finding ONNX Runtime and the model files);
//! - [`faces`]: the one face selection every command uses (scale back, round, filter);
//! - [`crop`]: crop rules and encoding (OpenCV);
//! - [`workers`]: the decode, detect and crop threads; [`write`]: commits finished videos
//!   through the [`journal`].

pub mod config;
pub mod crop;
pub mod decode;
pub mod detect;
pub mod faces;
pub mod image;
pub mod journal;
pub mod layouts;
pub mod originals;
pub mod recrop;
pub mod runtime;
pub mod scan;
pub mod tracks;
mod workers;
mod write;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crossbeam_channel::bounded;

use config::{ConfigError, PipelineConfig};
use detect::DetectError;
use journal::{Journal, JournalError};
use scan::VideoJob;
use crate::shard::{self, Shard};
use workers::Msg;
pub use write::crop_path;

/// Why a whole run could not go on (one bad video never ends up here).
#[derive(Debug, thiserror::Error)]
pub enum ExtractError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Detector(#[from] DetectError),
    #[error(transparent)]
    Journal(#[from] JournalError),
    #[error(transparent)]
    Manifest(#[from] crate::manifest::ManifestError),
    #[error("{path}: {reason}")]
    Output { path: PathBuf, reason: String },
    #[error("{dir} holds a run made with other settings (see its config.toml); use another --out, or the same settings")]
    SettingsChanged { dir: PathBuf },
}

/// Which outputs a run makes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// decode + detect + crop: videos.csv, detections.csv, faces.csv, crops.
    Extract,
    /// decode + detect: videos.csv, detections.csv.
    Detect,
}

/// Everything a run needs besides the inputs.
pub struct RunOptions {
    pub config: PipelineConfig,
    pub out: PathBuf,
    pub shard: Option<Shard>,
    pub mode: Mode,
    /// Folder with the detector files.
    pub models: PathBuf,
    pub progress: bool,
    /// Do the videos a previous run into `out` failed on again.
    pub retry_failed: bool,
}

/// What a run did.
#[derive(Debug, Default)]
pub struct Summary {
    pub videos_found: usize,
    pub videos_skipped: usize,
    pub videos_ok: usize,
    pub videos_failed: usize,
    pub videos_without_faces: usize,
    pub frames: u64,
    pub faces: u64,
    pub elapsed: Duration,
    /// One line per input that failed in this run: path and reason.
    pub failures: Vec<String>,
    /// One line per video of this run that was truncated or corrupt (its first frames kept).
    pub partial: Vec<String>,
    /// Videos an earlier run into the same folder left failed (`--retry-failed` redoes them).
    pub failed_earlier: Vec<String>,
    /// Problems that did not fail a video (broken metadata, ids made unique, symlink loops).
    pub warnings: Vec<String>,
    /// What the scan recognised per dataset (videos, real, fake, originals).
    pub recognised: Vec<String>,
    /// DFDC fakes cropped at their original's boxes, and those detected themselves.
    pub reuse: originals::Reuse,
}

impl Summary {
    /// Whether the output folder holds failures, from this run or an earlier one: a rerun
    /// that had nothing left to do still says so.
    pub fn any_failed(&self) -> bool {
        !self.failures.is_empty() || !self.failed_earlier.is_empty()
    }

    /// Lists the failed rows of `out/videos.csv` this run did not make (earlier runs').
    pub(crate) fn add_earlier_failures(&mut self, out: &Path, this_run: &std::collections::HashSet<String>) {
        let rows: Vec<crate::manifest::VideoRow> = crate::manifest::read_rows(&out.join(crate::manifest::VIDEOS)).unwrap_or_default();
        for r in rows.iter().filter(|r| r.status == crate::manifest::VideoStatus::Failed && !this_run.contains(&r.video_id)) {
            self.failed_earlier.push(if r.error.is_empty() { r.video_id.clone() } else { r.error.clone() });
        }
    }
}

/// Runs `extract` or `detect` over `inputs`.
pub fn run(inputs: &[PathBuf], opts: &RunOptions) -> Result<Summary, ExtractError> {
    let start = Instant::now();
    let settings = opts.config.validate()?;
    let out = &opts.out;
    std::fs::create_dir_all(out).map_err(|e| ExtractError::Output { path: out.clone(), reason: e.to_string() })?;
    let _lock = journal::lock(out)?;
    check_settings(out, &opts.config)?;
    if opts.shard.is_some() {
        shard::Marker::clear(out).map_err(|e| ExtractError::Output { path: out.join(shard::MARKER), reason: e.to_string() })?;
    }

    // Fail before touching anything when the detector cannot start (missing model, no CUDA).
    let detector = detect::build(&settings.detector, settings.device, &opts.models)?;
    let mut journal = Journal::recover(out, opts.mode == Mode::Extract, opts.retry_failed)?;
    write_config(out, &opts.config)?;

    let found = scan::scan(inputs, &settings.scan);
    let mut summary = Summary { warnings: found.warnings, failures: found.errors, recognised: found.recognised, ..Default::default() };
    let mut jobs = Vec::new();
    let mut this_run = std::collections::HashSet::new();
    for v in found.videos {
        if opts.shard.is_some_and(|s| !s.keeps(&v.original)) {
            continue;
        }
        summary.videos_found += 1;
        if journal.is_finished(&v.video_id) {
            summary.videos_skipped += 1;
        } else {
            this_run.insert(v.video_id.clone());
            jobs.push(v);
        }
    }
    // Said again in the summary at the end; logged now for long runs (-v).
    for w in summary.warnings.iter().chain(&summary.failures) {
        tracing::info!("{w}");
    }

    let bar = progress_bar(jobs.len() as u64, opts.progress);
    // DFDC fakes wait for their original's detections, unless asked to be detected themselves.
    let (now, fakes) = if settings.detect_fakes { (jobs, Vec::new()) } else { originals::defer_fakes(jobs, &journal) };
    let result = (|| -> Result<(), ExtractError> {
        let detector = stream(now, detector, &settings, opts, &mut journal, &mut summary, &bar)?;
        let mismatched = originals::reuse(fakes, &settings, opts, &mut journal, &mut summary, &bar)?;
        if !mismatched.is_empty() {
            stream(mismatched, detector, &settings, opts, &mut journal, &mut summary, &bar)?;
        }
        Ok(())
    })();
    bar.finish_and_clear();
    result?;
    summary.add_earlier_failures(out, &this_run);
    finish_shard(out, opts)?;
    summary.elapsed = start.elapsed();
    Ok(summary)
}

/// Streams `jobs` through decode -> detect -> crop -> write, committing each video as it
/// completes; gives the detector back for another round.
fn stream(
    jobs: Vec<VideoJob>,
    detector: Box<dyn detect::Detector>,
    settings: &config::ExtractSettings,
    opts: &RunOptions,
    journal: &mut Journal,
    summary: &mut Summary,
    bar: &indicatif::ProgressBar,
) -> Result<Box<dyn detect::Detector>, ExtractError> {
    let out = &opts.out;
    let q = settings.queue_frames;
    // Full frames wait between decode and detect (`queue_frames` of them); after detection only
    // the faces' pixels travel, and the detector hands on a batch of keyframes and the frames
    // between at once: that queue holds two such bursts.
    let burst = settings.detector.batch_size * settings.detector.keyframe_interval as usize + 1;
    let (job_tx, job_rx) = bounded::<VideoJob>(q);
    let (frame_tx, frame_rx) = bounded::<Msg>(q);
    let (det_tx, det_rx) = bounded::<Msg>(2 * burst.max(q));
    let (crop_tx, crop_rx) = bounded::<Msg>(2 * burst.max(q));
    std::thread::scope(|s| -> Result<Box<dyn detect::Detector>, ExtractError> {
        s.spawn(move || {
            for j in jobs {
                if job_tx.send(j).is_err() {
                    break;
                }
            }
        });
        for _ in 0..settings.decode_workers {
            let (rx, tx) = (job_rx.clone(), frame_tx.clone());
            s.spawn(move || workers::decode(rx, tx, settings));
        }
        drop((job_rx, frame_tx));
        let write_crops = opts.mode == Mode::Extract;
        let detecting = s.spawn(move || workers::detect(detector, frame_rx, det_tx, settings, write_crops));
        for _ in 0..settings.crop_workers {
            let (rx, tx) = (det_rx.clone(), crop_tx.clone());
            s.spawn(move || workers::crop(rx, tx, settings, out, write_crops));
        }
        drop((det_rx, crop_tx));
        let r = write::write_stage(crop_rx.clone(), journal, settings, opts, summary, bar);
        // On a write error, drain so the other stages can finish and the scope can join.
        for _ in crop_rx {}
        r?;
        detecting.join().map_err(|p| ExtractError::Output { path: out.clone(), reason: format!("the detector thread failed: {}", workers::panic_message(p)) })
    })
}

pub(crate) fn progress_bar(len: u64, show: bool) -> indicatif::ProgressBar {
    if !show {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new(len);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{bar:30} {pos}/{len} videos  {msg}  [{elapsed_precise}, ETA {eta}]")
            .expect("static template"),
    );
    bar
}

/// Marks a sharded run's folder complete (`shard.json`), with its counts from the manifests.
pub(crate) fn finish_shard(out: &Path, opts: &RunOptions) -> Result<(), ExtractError> {
    let Some(s) = opts.shard else { return Ok(()) };
    let videos: Vec<crate::manifest::VideoRow> = crate::manifest::read_rows(&out.join(crate::manifest::VIDEOS))?;
    let detections = std::fs::read(out.join(crate::manifest::DETECTIONS)).map(|b| b.iter().filter(|c| **c == b'\n').count().saturating_sub(1)).unwrap_or(0);
    let marker = shard::Marker {
        index: s.index,
        count: s.count,
        config: shard::config_hash(&opts.config.fingerprint()),
        videos: videos.len(),
        failed: videos.iter().filter(|v| v.status == crate::manifest::VideoStatus::Failed).count(),
        faces: detections as u64,
    };
    marker.write(out).map_err(|e| ExtractError::Output { path: out.join(shard::MARKER), reason: e.to_string() })
}

/// Refuses to resume a run made with settings that change the outputs.
pub(crate) fn check_settings(out: &Path, config: &PipelineConfig) -> Result<(), ExtractError> {
    let path = out.join("config.toml");
    if !path.exists() || !out.join(journal::JOURNAL).exists() {
        return Ok(());
    }
    let previous = PipelineConfig::load(Some(&path))?;
    if previous.fingerprint() != config.fingerprint() {
        return Err(ExtractError::SettingsChanged { dir: out.to_path_buf() });
    }
    Ok(())
}

pub(crate) fn write_config(out: &Path, config: &PipelineConfig) -> Result<(), ExtractError> {
    let path = out.join("config.toml");
    let tmp = out.join("config.toml.tmp");
    std::fs::write(&tmp, config.to_toml())
        .and_then(|_| std::fs::rename(&tmp, &path))
        .map_err(|e| ExtractError::Output { path, reason: e.to_string() })
}
