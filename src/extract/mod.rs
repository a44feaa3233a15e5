//! The streaming extraction pipeline: `scan -> decode -> detect -> crop/encode -> write`.
//!
//! Each stage is a pool of threads joined by bounded channels, so memory stays flat however
//! many videos there are: decode workers (one video each) feed one detector thread, which
//! batches frames of the same video (batches do not depend on timing, so reruns give the same
//! numbers), crop workers cut and encode faces, and the calling thread writes: when every
//! sampled frame of a video has arrived it commits the video's manifest rows through the
//! [`journal`], which is what makes a killed run resumable.
//!
//! `scmpl detect` is the same pipeline without the crop stage.

pub mod from_detections;
pub mod journal;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{bounded, Receiver, Sender};

use crate::config::{ConfigError, ExtractSettings, PipelineConfig};
use crate::crop;
use crate::detect::{self, DetectError, Face};
use crate::image::BgrImage;
use crate::manifest::{self, round2, DetectionRow, FaceRow, VideoRow, VideoStatus};
use crate::scan::{self, Shard, VideoJob};
use crate::video::{self, VideoInfo};
use journal::{Journal, JournalError};

/// Why a whole run could not go on (one bad video never ends up here).
#[derive(Debug, thiserror::Error)]
pub enum ExtractError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Detector(#[from] DetectError),
    #[error(transparent)]
    Journal(#[from] JournalError),
    #[error("{path}: {reason}")]
    Output { path: PathBuf, reason: String },
    #[error("{dir} holds a run made with other settings (see its config.toml); use another --out, or the same settings")]
    SettingsChanged { dir: PathBuf },
}

/// Which stages run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stages {
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
    pub stages: Stages,
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
    /// One line per failed input: path and reason.
    pub failures: Vec<String>,
    /// Problems that did not fail a video (broken metadata, truncated streams).
    pub warnings: Vec<String>,
}

impl Summary {
    pub fn any_failed(&self) -> bool {
        !self.failures.is_empty()
    }
}

/// A video travelling through the stages.
pub(crate) struct VideoCtx {
    job: VideoJob,
    info: Option<VideoInfo>,
}

enum Msg {
    Frame {
        video: Arc<VideoCtx>,
        index: u64,
        pts: f64,
        full: BgrImage,
        small: BgrImage,
        small_scale: f32,
    },
    Detected {
        video: Arc<VideoCtx>,
        index: u64,
        pts: f64,
        full: BgrImage,
        faces: Result<Vec<Face>, String>,
    },
    Cropped {
        video: Arc<VideoCtx>,
        index: u64,
        pts: f64,
        faces: Vec<(Face, Option<String>)>,
        error: Option<String>,
    },
    /// Sent by the decoder after a video's last frame: how many frames it sent, and why it stopped.
    End { video: Arc<VideoCtx>, sent: u64, error: Option<String>, warning: Option<String> },
}

/// Runs `extract` or `detect` over `inputs`.
pub fn run(inputs: &[PathBuf], opts: &RunOptions) -> Result<Summary, ExtractError> {
    let start = Instant::now();
    let settings = opts.config.validate()?;
    let out = &opts.out;
    std::fs::create_dir_all(out).map_err(|e| ExtractError::Output { path: out.clone(), reason: e.to_string() })?;
    let _lock = journal::lock(out)?;
    check_settings(out, &opts.config)?;

    // Fail before touching anything when the detector cannot start (missing model, no CUDA).
    let detector = detect::build(&settings.detector, settings.device, &opts.models)?;
    let mut journal = Journal::recover(out, opts.stages == Stages::Extract, opts.retry_failed)?;
    write_config(out, &opts.config)?;

    let found = scan::scan(inputs, settings.dataset.as_deref());
    let mut summary = Summary { warnings: found.warnings, failures: found.errors, ..Default::default() };
    let mut jobs = Vec::new();
    for v in found.videos {
        if opts.shard.is_some_and(|s| !s.keeps(&v.video_id)) {
            continue;
        }
        summary.videos_found += 1;
        if journal.is_finished(&v.video_id) {
            summary.videos_skipped += 1;
        } else {
            jobs.push(v);
        }
    }
    for w in &summary.warnings {
        tracing::warn!("{w}");
    }
    for e in &summary.failures {
        tracing::error!("{e}");
    }

    let bar = progress_bar(jobs.len() as u64, opts.progress);
    let q = settings.queue_frames;
    let (job_tx, job_rx) = bounded::<VideoJob>(q);
    let (frame_tx, frame_rx) = bounded::<Msg>(q);
    let (det_tx, det_rx) = bounded::<Msg>(q);
    let (crop_tx, crop_rx) = bounded::<Msg>(q);

    let result = std::thread::scope(|s| -> Result<(), ExtractError> {
        s.spawn(move || {
            for j in jobs {
                if job_tx.send(j).is_err() {
                    break;
                }
            }
        });
        for _ in 0..settings.decode_workers {
            let (rx, tx, st) = (job_rx.clone(), frame_tx.clone(), &settings);
            s.spawn(move || decode_worker(rx, tx, st));
        }
        drop((job_rx, frame_tx));
        let st = &settings;
        s.spawn(move || detect_worker(detector, frame_rx, det_tx, st));
        for _ in 0..settings.crop_workers {
            let (rx, tx) = (det_rx.clone(), crop_tx.clone());
            let write_crops = opts.stages == Stages::Extract;
            s.spawn(move || crop_worker(rx, tx, st, out, write_crops));
        }
        drop((det_rx, crop_tx));
        let r = write_stage(crop_rx.clone(), &mut journal, &settings, opts, &mut summary, &bar);
        // On a write error, drain so the other stages can finish and the scope can join.
        for _ in crop_rx {}
        r
    });
    bar.finish_and_clear();
    result?;
    summary.elapsed = start.elapsed();
    Ok(summary)
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

fn decode_worker(jobs: Receiver<VideoJob>, frames: Sender<Msg>, settings: &ExtractSettings) {
    for job in jobs {
        let info = match video::probe(&job.path) {
            Ok(info) => info,
            Err(e) => {
                let video = Arc::new(VideoCtx { job, info: None });
                if frames.send(Msg::End { video, sent: 0, error: Some(e.to_string()), warning: None }).is_err() {
                    return;
                }
                continue;
            }
        };
        let video = Arc::new(VideoCtx { job, info: Some(info.clone()) });
        let mut sent = 0u64;
        let mut closed = false;
        let picker = settings.sampling.pick(info.frames);
        let result = video::decode(&video.job.path, &info, &picker, settings.detector.copy(), 1, |f| {
            let msg = Msg::Frame {
                video: video.clone(),
                index: f.index,
                pts: f.pts,
                full: f.full,
                small: f.small,
                small_scale: f.small_scale,
            };
            if frames.send(msg).is_err() {
                closed = true;
                return false;
            }
            sent += 1;
            true
        });
        if closed {
            return;
        }
        let (error, warning) = match result {
            Ok(s) => (None, s.warning),
            Err(e) => (Some(e.to_string()), None),
        };
        if frames.send(Msg::End { video, sent, error, warning }).is_err() {
            return;
        }
    }
}

/// Runs the detector over batches of frames of one video at a time; frames of videos decoded
/// in parallel wait in per-video queues (at most one batch each).
fn detect_worker(
    mut detector: Box<dyn detect::Detector>,
    frames: Receiver<Msg>,
    out: Sender<Msg>,
    settings: &ExtractSettings,
) {
    let batch = settings.detector.batch_size;
    let mut pending: HashMap<*const VideoCtx, Vec<Msg>> = HashMap::new();
    let run_batch = |msgs: Vec<Msg>, detector: &mut Box<dyn detect::Detector>| -> bool {
        let smalls: Vec<&BgrImage> = msgs
            .iter()
            .map(|m| match m {
                Msg::Frame { small, .. } => small,
                _ => unreachable!("only frames are batched"),
            })
            .collect();
        let result = detector.detect(&smalls).map_err(|e| e.to_string());
        for (i, m) in msgs.into_iter().enumerate() {
            let Msg::Frame { video, index, pts, full, small_scale, .. } = m else { unreachable!() };
            let faces = match &result {
                Ok(all) => Ok(select_faces(&all[i], small_scale, &full, settings)),
                Err(e) => Err(e.clone()),
            };
            if out.send(Msg::Detected { video, index, pts, full, faces }).is_err() {
                return false;
            }
        }
        true
    };
    for msg in frames {
        match msg {
            Msg::Frame { ref video, .. } => {
                let key = Arc::as_ptr(video);
                let q = pending.entry(key).or_default();
                q.push(msg);
                if q.len() >= batch {
                    let msgs = pending.remove(&key).expect("just inserted");
                    if !run_batch(msgs, &mut detector) {
                        return;
                    }
                }
            }
            Msg::End { ref video, .. } => {
                if let Some(msgs) = pending.remove(&Arc::as_ptr(video)) {
                    if !run_batch(msgs, &mut detector) {
                        return;
                    }
                }
                if out.send(msg).is_err() {
                    return;
                }
            }
            _ => unreachable!("the decoder sends frames and ends"),
        }
    }
}

/// Faces of one frame in full-frame pixels, filtered by size, largest only when asked.
fn select_faces(faces: &[Face], small_scale: f32, full: &BgrImage, settings: &ExtractSettings) -> Vec<Face> {
    let (w, h) = (full.width as f32, full.height as f32);
    let mut faces: Vec<Face> = faces
        .iter()
        .map(|f| rounded(&f.scaled(1.0 / small_scale, w, h)))
        .filter(|f| f.width() >= 1.0 && f.height() >= 1.0 && f.width() >= settings.detector.min_face_size)
        .collect();
    if settings.largest_only && faces.len() > 1 {
        let best = faces.iter().enumerate().max_by(|a, b| a.1.area().total_cmp(&b.1.area())).map(|(i, _)| i).unwrap_or(0);
        faces = vec![faces[best]];
    }
    faces
}

/// A face with the precision the manifests keep (1/100 px, score 1e-4), so crops made now and
/// crops re-made later from detections.csv are cut from the very same box.
fn rounded(f: &Face) -> Face {
    let mut lm = f.landmarks;
    lm.iter_mut().for_each(|v| *v = round2(*v));
    Face { x1: round2(f.x1), y1: round2(f.y1), x2: round2(f.x2), y2: round2(f.y2), score: round_score(f.score), landmarks: lm }
}

fn round_score(s: f32) -> f32 {
    (s * 1e4).round() / 1e4
}

/// Where the crop of face `face` of frame `index` goes, relative to the output folder.
pub fn crop_path(job: &VideoJob, index: u64, face: usize, ext: &str) -> String {
    format!("faces/{}/{}/{:06}_{}.{}", job.dataset, job.video_id, index, face, ext)
}

/// Cuts, encodes and writes the crop of face `i` of frame `index`; returns its manifest path.
pub(crate) fn write_crop(
    dir: &Path,
    job: &VideoJob,
    index: u64,
    i: usize,
    frame: &BgrImage,
    face: &Face,
    settings: &ExtractSettings,
) -> Result<String, String> {
    let rel = crop_path(job, index, i, settings.format.extension());
    let bytes = crop::crop_and_encode(frame, face, settings.crop, settings.size, settings.format)
        .map_err(|e| format!("frame {index}: cannot crop or encode face {i}: {e}"))?;
    let path = dir.join(&rel);
    std::fs::create_dir_all(path.parent().expect("crop path has a folder"))
        .and_then(|_| std::fs::write(&path, bytes))
        .map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(rel)
}

fn crop_worker(frames: Receiver<Msg>, out: Sender<Msg>, settings: &ExtractSettings, dir: &Path, write_crops: bool) {
    for msg in frames {
        let msg = match msg {
            Msg::Detected { video, index, pts, full, faces: Err(e) } => {
                drop(full);
                Msg::Cropped { video, index, pts, faces: Vec::new(), error: Some(e) }
            }
            Msg::Detected { video, index, pts, full, faces: Ok(faces) } => {
                let mut done = Vec::with_capacity(faces.len());
                let mut error = None;
                for (i, face) in faces.into_iter().enumerate() {
                    if !write_crops {
                        done.push((face, None));
                        continue;
                    }
                    match write_crop(dir, &video.job, index, i, &full, &face, settings) {
                        Ok(rel) => done.push((face, Some(rel))),
                        Err(e) => {
                            error = Some(e);
                            break;
                        }
                    }
                }
                Msg::Cropped { video, index, pts, faces: done, error }
            }
            end @ Msg::End { .. } => end,
            _ => unreachable!("the detector sends detections and ends"),
        };
        if out.send(msg).is_err() {
            return;
        }
    }
}

/// A video whose frames are still arriving at the writer.
#[derive(Default)]
pub(crate) struct Pending {
    frames: Vec<(u64, f64, Vec<(Face, Option<String>)>)>,
    error: Option<String>,
    end: Option<(u64, Option<String>, Option<String>)>,
}

fn write_stage(
    rx: Receiver<Msg>,
    journal: &mut Journal,
    settings: &ExtractSettings,
    opts: &RunOptions,
    summary: &mut Summary,
    bar: &indicatif::ProgressBar,
) -> Result<(), ExtractError> {
    let mut pending: HashMap<*const VideoCtx, (Arc<VideoCtx>, Pending)> = HashMap::new();
    let started = Instant::now();
    for msg in rx {
        let (video, key) = match &msg {
            Msg::Cropped { video, .. } | Msg::End { video, .. } => (video.clone(), Arc::as_ptr(video)),
            _ => unreachable!("the crop stage sends crops and ends"),
        };
        let entry = &mut pending.entry(key).or_insert_with(|| (video.clone(), Pending::default())).1;
        match msg {
            Msg::Cropped { index, pts, faces, error, .. } => {
                if let Some(e) = error {
                    entry.error.get_or_insert(e);
                }
                entry.frames.push((index, pts, faces));
            }
            Msg::End { sent, error, warning, .. } => entry.end = Some((sent, error, warning)),
            _ => unreachable!(),
        }
        let complete = entry.end.as_ref().is_some_and(|(sent, ..)| entry.frames.len() as u64 == *sent);
        if complete {
            let (video, p) = pending.remove(&key).expect("present");
            commit(&video, p, journal, settings, opts, summary)?;
            bar.inc(1);
            let fps = summary.frames as f64 / started.elapsed().as_secs_f64().max(1e-6);
            bar.set_message(format!("{:.1} frames/s, {} faces, {} failed", fps, summary.faces, summary.videos_failed));
        }
    }
    Ok(())
}

pub(crate) fn commit(
    video: &VideoCtx,
    mut p: Pending,
    journal: &mut Journal,
    settings: &ExtractSettings,
    opts: &RunOptions,
    summary: &mut Summary,
) -> Result<(), ExtractError> {
    let job = &video.job;
    let (_, end_error, warning) = p.end.take().expect("complete videos have ended");
    let error = end_error.or(p.error.take());
    let info = video.info.clone();
    let mut row = VideoRow {
        video_id: job.video_id.clone(),
        path: manifest::relative_path(&job.path, &opts.out),
        dataset: job.dataset.clone(),
        part: job.part.clone(),
        label: job.label,
        original: job.original.clone(),
        frames: info.as_ref().map_or(0, |i| i.frames),
        fps: info.as_ref().map_or(0.0, |i| (i.fps * 1000.0).round() / 1000.0),
        width: info.as_ref().map_or(0, |i| i.width),
        height: info.as_ref().map_or(0, |i| i.height),
        codec: info.as_ref().map_or(String::new(), |i| i.codec.clone()),
        status: VideoStatus::Ok,
        error: warning.clone().unwrap_or_default(),
        faces: 0,
    };
    let mut detections = Vec::new();
    let mut faces = Vec::new();
    if let Some(e) = error {
        // A failed video keeps no detection or face rows and no crops, only its videos.csv row.
        row.status = VideoStatus::Failed;
        row.error = e.clone();
        let crops = opts.out.join("faces").join(&job.dataset).join(&job.video_id);
        let _ = std::fs::remove_dir_all(crops);
        summary.videos_failed += 1;
        summary.failures.push(if e.contains(&*job.path.to_string_lossy()) { e } else { format!("{}: {e}", job.path.display()) });
    } else {
        p.frames.sort_by_key(|f| f.0);
        for (index, pts, frame_faces) in &p.frames {
            for (i, (face, crop)) in frame_faces.iter().enumerate() {
                detections.push(DetectionRow {
                    video_id: job.video_id.clone(),
                    frame: *index,
                    pts: (*pts * 1e6).round() / 1e6,
                    face: i as u32,
                    x1: round2(face.x1),
                    y1: round2(face.y1),
                    x2: round2(face.x2),
                    y2: round2(face.y2),
                    score: face.score,
                    lm: face.landmarks.iter().map(|v| round2(*v).to_string()).collect::<Vec<_>>().join(" "),
                    detector: settings.detector.name.clone(),
                });
                if let Some(path) = crop {
                    faces.push(FaceRow {
                        path: path.clone(),
                        video_id: job.video_id.clone(),
                        original: job.original.clone(),
                        dataset: job.dataset.clone(),
                        part: job.part.clone(),
                        label: job.label,
                        frame: *index,
                        face: i as u32,
                        x1: round2(face.x1),
                        y1: round2(face.y1),
                        x2: round2(face.x2),
                        y2: round2(face.y2),
                        score: face.score,
                        split: job.split.clone(),
                    });
                }
            }
        }
        row.faces = detections.len() as u64;
        summary.videos_ok += 1;
        summary.frames += p.frames.len() as u64;
        summary.faces += detections.len() as u64;
        if detections.is_empty() {
            summary.videos_without_faces += 1;
        }
        if let Some(w) = warning {
            summary.warnings.push(format!("{}: {w}", job.path.display()));
        }
    }
    journal.commit(&row, &detections, &faces)?;
    Ok(())
}
