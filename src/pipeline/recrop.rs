//! `scmpl crop`: crops and `faces.csv` from a saved `detections.csv`, without detecting again.
//!
//! Reads `videos.csv` beside the detections, re-decodes only the frames that have
//! detections, cuts each face with the crop rule and size of this run, and commits each video
//! through the same journal as `extract` (resumable; same row and crop layout). `extract` is
//! exactly `detect` followed by `crop`: the boxes in the manifests are the boxes crops are cut
//! from.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::time::Instant;

use crossbeam_channel::bounded;

use super::config::ExtractSettings;
use super::decode::{self, FramePicker};
use super::detect::Face;
use super::tracks::{Source, TrackedFace};
use super::journal::Journal;
use super::scan::{self, VideoJob};
use super::workers::VideoCtx;
use super::write::{commit, write_crop, CropError, Pending};
use super::{ExtractError, RunOptions, Summary};
use crate::manifest::{self, DetectionRow, ManifestError, VideoRow, VideoStatus};

/// The face of a detections.csv row (`line` of `path`, for the error).
pub(crate) fn face_of(d: &DetectionRow, path: &Path, line: u64) -> Result<Face, ManifestError> {
    let bad = |reason: String| ManifestError::Row { path: path.into(), line, reason };
    let lm: Vec<f32> = d.lm.split_whitespace().map(|v| v.parse::<f32>()).collect::<Result<_, _>>().map_err(|e| bad(format!("lm: {e}")))?;
    let landmarks: [f32; 10] = lm.try_into().map_err(|v: Vec<f32>| bad(format!("lm has {} numbers, expected 10", v.len())))?;
    Ok(Face { x1: d.x1, y1: d.y1, x2: d.x2, y2: d.y2, score: d.score, landmarks })
}

/// The face, track and source of a detections.csv row (`line` of `path`, for the error).
pub(crate) fn tracked_of(d: &DetectionRow, path: &Path, line: u64) -> Result<TrackedFace, ManifestError> {
    let source = match d.source.as_str() {
        "interpolated" => Source::Interpolated,
        _ => Source::Detected,
    };
    Ok(TrackedFace { face: face_of(d, path, line)?, track: d.track, source })
}

/// A video to re-crop: its row and its detections by frame.
pub(crate) struct Work {
    pub row: VideoRow,
    pub job: VideoJob,
    pub frames: BTreeMap<u64, Vec<TrackedFace>>,
}

/// Runs `scmpl crop` on `detections` (a `detections.csv` with `videos.csv` beside it).
pub fn run(detections: &Path, opts: &RunOptions) -> Result<Summary, ExtractError> {
    let start = Instant::now();
    let settings = opts.config.validate()?;
    let src = manifest::paths::folder_of(detections);
    let videos_path = src.join(manifest::VIDEOS);
    let input_err = |path: &Path, reason: String| ExtractError::Output { path: path.to_path_buf(), reason };
    let videos: Vec<VideoRow> = manifest::read_rows(&videos_path)?;
    let dets: Vec<DetectionRow> = manifest::read_rows(detections)?;
    let out = &opts.out;
    if out.canonicalize().ok().is_some_and(|o| src.canonicalize().ok() == Some(o)) {
        return Err(input_err(out, "--out must differ from the folder of the detections (its manifests would be overwritten)".into()));
    }
    std::fs::create_dir_all(out).map_err(|e| input_err(out, e.to_string()))?;
    let _lock = super::journal::lock(out)?;
    super::check_settings(out, &opts.config)?;
    if opts.shard.is_some() {
        crate::shard::Marker::clear(out).map_err(|e| input_err(out, e.to_string()))?;
    }
    let mut journal = Journal::recover(out, true, opts.retry_failed)?;
    super::write_config(out, &opts.config)?;

    let mut by_video: HashMap<String, BTreeMap<u64, Vec<(u32, TrackedFace)>>> = HashMap::new();
    for (i, d) in dets.iter().enumerate() {
        let face = tracked_of(d, detections, i as u64 + 2)?;
        by_video.entry(d.video_id.clone()).or_default().entry(d.frame).or_default().push((d.face, face));
    }
    let mut summary = Summary::default();
    let work = plan(videos, by_video, src, detections, opts, &journal, &mut summary);
    let this_run: std::collections::HashSet<String> = work.iter().map(|w| w.row.video_id.clone()).collect();
    let bar = super::progress_bar(work.len() as u64, opts.progress);
    let result = crop_all(work, true, &settings, opts, &mut journal, &mut summary, &bar);
    bar.finish_and_clear();
    result?;
    summary.add_earlier_failures(out, &this_run);
    super::finish_shard(out, opts)?;
    summary.elapsed = start.elapsed();
    Ok(summary)
}

/// Crops (`write_crops`) or just re-decodes the frames of each video of `work` that have
/// detections, on the decode workers, and commits each video as it is done.
pub(crate) fn crop_all(
    work: Vec<Work>,
    write_crops: bool,
    settings: &ExtractSettings,
    opts: &RunOptions,
    journal: &mut Journal,
    summary: &mut Summary,
    bar: &indicatif::ProgressBar,
) -> Result<(), ExtractError> {
    let out = &opts.out;
    let (job_tx, job_rx) = bounded::<Work>(settings.queue_frames);
    let (done_tx, done_rx) = bounded::<(VideoCtx, Pending)>(settings.queue_frames);
    let workers = settings.decode_workers.max(settings.crop_workers);
    std::thread::scope(|s| -> Result<(), ExtractError> {
        s.spawn(move || {
            for w in work {
                if job_tx.send(w).is_err() {
                    return;
                }
            }
        });
        for _ in 0..workers {
            let (rx, tx) = (job_rx.clone(), done_tx.clone());
            s.spawn(move || {
                for w in rx {
                    if tx.send(crop_video(w, settings, out, write_crops)).is_err() {
                        return;
                    }
                }
            });
        }
        drop((job_rx, done_tx));
        for (video, pending) in done_rx.iter() {
            if let Err(e) = commit(&video, pending, journal, settings, opts, summary) {
                for _ in done_rx.iter() {}
                return Err(e);
            }
            bar.inc(1);
        }
        Ok(())
    })
}

/// The videos of `videos.csv` this run re-crops (in this shard, not finished yet), each with
/// its detections by frame. Detections of videos `videos.csv` does not list are warned about.
fn plan(
    videos: Vec<VideoRow>,
    mut by_video: HashMap<String, BTreeMap<u64, Vec<(u32, TrackedFace)>>>,
    src: &Path,
    detections: &Path,
    opts: &RunOptions,
    journal: &Journal,
    summary: &mut Summary,
) -> Vec<Work> {
    let mut work = Vec::new();
    for row in videos {
        if opts.shard.is_some_and(|s| !s.keeps(&row.original)) {
            continue;
        }
        summary.videos_found += 1;
        if journal.is_finished(&row.video_id) {
            summary.videos_skipped += 1;
            continue;
        }
        let path = src.join(&row.path);
        let job = VideoJob {
            split: scan::dfdc_split(&path).unwrap_or_default(),
            path,
            video_id: row.video_id.clone(),
            dataset: row.dataset.clone(),
            part: row.part.clone(),
            label: row.label,
            original: row.original.clone(),
            problem: None,
        };
        let frames = by_video
            .remove(&row.video_id)
            .unwrap_or_default()
            .into_iter()
            .map(|(f, mut faces)| {
                faces.sort_by_key(|(i, _)| *i);
                (f, faces.into_iter().map(|(_, face)| face).collect())
            })
            .collect();
        work.push(Work { row, job, frames });
    }
    for id in by_video.keys() {
        summary.warnings.push(format!("{}: detections of video '{id}', which videos.csv does not list; ignored", detections.display()));
    }
    work
}

/// Decodes the frames of one video that have detections and crops their faces.
fn crop_video(w: Work, settings: &ExtractSettings, out: &Path, write_crops: bool) -> (VideoCtx, Pending) {
    let Work { row, job, frames } = w;
    let mut pending = Pending::default();
    let carried_warning = Some(row.error.clone()).filter(|e| !e.is_empty());
    if row.status == VideoStatus::Failed {
        pending.end = Some((0, Some(row.error.clone()), None));
        return (VideoCtx { job, info: None }, pending);
    }
    let info = match decode::probe(&job.path) {
        Ok(i) => i,
        Err(e) => {
            pending.end = Some((0, Some(e.to_string()), None));
            return (VideoCtx { job, info: None }, pending);
        }
    };
    let picker = FramePicker::List(frames.keys().copied().collect());
    let (mut error, mut output) = (None, None);
    let mut seen = 0u64;
    let result = decode::decode(&job.path, &info, &picker, settings.detector.copy(), 1, |f| {
        seen += 1;
        let faces = frames.get(&f.index).cloned().unwrap_or_default();
        let mut done = Vec::with_capacity(faces.len());
        for (i, face) in faces.into_iter().enumerate() {
            if !write_crops {
                done.push((face, None));
                continue;
            }
            let written = super::crop::cut(&f.full, &face.face, settings.crop)
                .map_err(|e| CropError::Video(format!("frame {}: cannot crop face {i}: {e}", f.index)))
                .and_then(|cut| write_crop(out, &job, f.index, i, &cut, settings));
            match written {
                Ok(rel) => done.push((face, Some(rel))),
                Err(CropError::Video(e)) => {
                    error.get_or_insert(e);
                }
                Err(CropError::Output(fault)) => {
                    output = Some(fault);
                    break;
                }
            }
        }
        pending.frames.push((f.index, f.pts, done));
        output.is_none()
    });
    let decode_error = match result {
        Err(e) => Some(e.to_string()),
        Ok(_) if output.is_some() => None,
        Ok(_) if seen < frames.len() as u64 => {
            Some(format!("{}: {} frames with detections could not be decoded again", job.path.display(), frames.len() as u64 - seen))
        }
        Ok(_) => None,
    };
    pending.error = error;
    pending.output = output;
    pending.end = Some((pending.frames.len() as u64, decode_error, carried_warning));
    (VideoCtx { job, info: Some(info) }, pending)
}
