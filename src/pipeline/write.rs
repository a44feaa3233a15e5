//! The write stage: collects each video's frames as they arrive (in any order), and when all
//! have come, commits the video's rows to the manifests through the journal. Also where crops
//! are written to disk.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use crossbeam_channel::Receiver;

use super::config::ExtractSettings;
use super::crop;
use super::image::BgrImage;
use super::journal::Journal;
use super::scan::VideoJob;
use super::tracks::TrackedFace;
use super::workers::{Msg, VideoCtx};
use super::{ExtractError, RunOptions, Summary};
use crate::manifest::{self, round2, DetectionRow, FaceRow, VideoRow, VideoStatus};

/// Where the crop of face `face` of frame `index` goes, relative to the output folder.
pub fn crop_path(job: &VideoJob, index: u64, face: usize, ext: &str) -> String {
    format!("faces/{}/{}/{:06}_{}.{}", job.dataset, job.video_id, index, face, ext)
}

/// The output could not take a file: not the video's fault, the run stops.
#[derive(Debug, Clone)]
pub(crate) struct OutputFault {
    /// The file that could not be written, relative to the output folder.
    pub rel: String,
    pub bytes: usize,
    pub error: String,
    pub no_space: bool,
}

/// Why a crop was not written.
pub(crate) enum CropError {
    /// This frame or face cannot be cropped or encoded: the video fails.
    Video(String),
    /// The output folder cannot take the file (disk full, read-only, I/O error).
    Output(OutputFault),
}

/// Encodes and writes `cut`, the crop of face `i` of frame `index` ([`crop::cut`]); returns
/// its manifest path.
pub(crate) fn write_crop(dir: &Path, job: &VideoJob, index: u64, i: usize, cut: &BgrImage, settings: &ExtractSettings) -> Result<String, CropError> {
    let rel = crop_path(job, index, i, settings.format.extension());
    let bytes = crop::resize_and_encode(cut, settings.size, settings.format)
        .map_err(|e| CropError::Video(format!("frame {index}: cannot crop or encode face {i}: {e}")))?;
    let path = dir.join(&rel);
    std::fs::create_dir_all(path.parent().expect("crop path has a folder")).and_then(|_| std::fs::write(&path, &bytes)).map_err(|e| {
        let no_space = matches!(e.raw_os_error(), Some(libc::ENOSPC) | Some(libc::EDQUOT));
        CropError::Output(OutputFault { rel: rel.clone(), bytes: bytes.len(), error: e.to_string(), no_space })
    })?;
    Ok(rel)
}

/// Free bytes on the file system holding `dir` (None when it cannot be told).
pub(crate) fn free_space(dir: &Path) -> Option<u64> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(dir.as_os_str().as_bytes()).ok()?;
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: a valid C string and a zeroed struct for statvfs to fill.
    (unsafe { libc::statvfs(c.as_ptr(), &mut st) } == 0).then(|| st.f_bavail as u64 * st.f_frsize as u64)
}

/// The run-stopping error for an output fault, saying how much space was needed.
fn output_error(out: &Path, fault: &OutputFault) -> ExtractError {
    let mut reason = fault.error.clone();
    if fault.no_space {
        let free = free_space(out).map(|b| format!("{} bytes free", b)).unwrap_or_else(|| "free space unknown".into());
        let needed = if fault.bytes > 0 { format!("; this file alone needed {} bytes", fault.bytes) } else { String::new() };
        reason = format!(
            "{reason}: the output's disk is full ({free}{needed}). Nothing committed was lost: free some space and run the same command again to finish"
        );
    } else {
        reason = format!("{reason}: the output folder cannot take the crops; nothing committed was lost");
    }
    ExtractError::Output { path: out.join(&fault.rel), reason }
}

/// A video whose frames are still arriving at the writer.
#[derive(Default)]
pub(crate) struct Pending {
    pub frames: Vec<(u64, f64, Vec<(TrackedFace, Option<String>)>)>,
    pub error: Option<String>,
    /// An output fault while writing one of its crops: the run stops before committing it.
    pub output: Option<OutputFault>,
    pub end: Option<(u64, Option<String>, Option<String>)>,
}

impl Pending {
    /// Removes the crops this video wrote (and the one it was writing), then its folder if it
    /// is empty: never anything another video wrote.
    fn remove_crops(&self, out: &Path, job: &VideoJob) {
        let written = self.frames.iter().flat_map(|f| f.2.iter().filter_map(|(_, c)| c.as_deref()));
        for rel in written.chain(self.output.as_ref().map(|o| o.rel.as_str())) {
            let _ = std::fs::remove_file(out.join(rel));
        }
        let _ = std::fs::remove_dir(out.join("faces").join(&job.dataset).join(&job.video_id));
    }
}

pub(crate) fn write_stage(
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
            Msg::Cropped { index, pts, faces, error, output, .. } => {
                if let Some(e) = error {
                    entry.error.get_or_insert(e);
                }
                if let Some(o) = output {
                    entry.output.get_or_insert(o);
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

/// The `videos.csv` row of a video (status ok, no faces yet).
fn video_row(video: &VideoCtx, out: &Path, warning: Option<&str>) -> VideoRow {
    let (job, info) = (&video.job, video.info.as_ref());
    VideoRow {
        video_id: job.video_id.clone(),
        path: manifest::relative_path(&job.path, out),
        dataset: job.dataset.clone(),
        part: job.part.clone(),
        label: job.label,
        original: job.original.clone(),
        frames: info.map_or(0, |i| i.frames),
        fps: info.map_or(0.0, |i| (i.fps * 1000.0).round() / 1000.0),
        width: info.map_or(0, |i| i.width),
        height: info.map_or(0, |i| i.height),
        codec: info.map_or(String::new(), |i| i.codec.clone()),
        status: VideoStatus::Ok,
        error: warning.unwrap_or_default().to_string(),
        faces: 0,
    }
}

/// The `detections.csv` and `faces.csv` rows of a video's frames (in frame order).
fn face_rows(job: &VideoJob, frames: &[(u64, f64, Vec<(TrackedFace, Option<String>)>)], detector: &str, rule: crop::CropRule) -> (Vec<DetectionRow>, Vec<FaceRow>) {
    let mut detections = Vec::new();
    let mut faces = Vec::new();
    for (index, pts, frame_faces) in frames {
        for (i, (tracked, crop)) in frame_faces.iter().enumerate() {
            let face = &tracked.face;
            let (x1, y1, x2, y2) = (round2(face.x1), round2(face.y1), round2(face.x2), round2(face.y2));
            detections.push(DetectionRow {
                video_id: job.video_id.clone(),
                frame: *index,
                pts: (*pts * 1e6).round() / 1e6,
                face: i as u32,
                track: tracked.track,
                x1,
                y1,
                x2,
                y2,
                score: face.score,
                lm: face.landmarks.iter().map(|v| round2(*v).to_string()).collect::<Vec<_>>().join(" "),
                detector: detector.to_string(),
                source: tracked.source.as_str().to_string(),
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
                    track: tracked.track,
                    x1,
                    y1,
                    x2,
                    y2,
                    score: face.score,
                    split: job.split.clone(),
                    align: crop::alignment_text(face, rule),
                });
            }
        }
    }
    (detections, faces)
}

/// Commits a complete video: its rows to the manifests through the journal, and the summary.
/// A failed video keeps no detection or face rows and no crops, only its `videos.csv` row.
pub(crate) fn commit(
    video: &VideoCtx,
    mut p: Pending,
    journal: &mut Journal,
    settings: &ExtractSettings,
    opts: &RunOptions,
    summary: &mut Summary,
) -> Result<(), ExtractError> {
    let job = &video.job;
    if let Some(fault) = &p.output {
        // Not the video's fault: it stays unfinished (a rerun does it), the run stops here.
        p.remove_crops(&opts.out, job);
        return Err(output_error(&opts.out, fault));
    }
    let (_, end_error, warning) = p.end.take().expect("complete videos have ended");
    let error = end_error.or(p.error.take());
    let mut row = video_row(video, &opts.out, warning.as_deref());
    let (mut detections, mut faces) = (Vec::new(), Vec::new());
    if let Some(e) = error {
        row.status = VideoStatus::Failed;
        row.error = e.clone();
        p.remove_crops(&opts.out, job);
        summary.videos_failed += 1;
        summary.failures.push(if e.contains(&*job.path.to_string_lossy()) { e } else { format!("{}: {e}", job.path.display()) });
    } else {
        p.frames.sort_by_key(|f| f.0);
        (detections, faces) = face_rows(job, &p.frames, &settings.detector.name, settings.crop);
        row.faces = detections.len() as u64;
        summary.videos_ok += 1;
        summary.frames += p.frames.len() as u64;
        summary.faces += detections.len() as u64;
        if detections.is_empty() {
            summary.videos_without_faces += 1;
        }
        if let Some(w) = warning {
            // Truncated or corrupt: the frames before the damage are kept.
            row.status = VideoStatus::Partial;
            summary.partial.push(format!("{}: {w}", job.path.display()));
        }
    }
    journal.commit(&row, &detections, &faces).map_err(|e| match e.source.raw_os_error() {
        Some(libc::ENOSPC) | Some(libc::EDQUOT) => {
            let fault = OutputFault { rel: manifest::paths::relative_path(&e.path, &opts.out), bytes: 0, error: e.source.to_string(), no_space: true };
            output_error(&opts.out, &fault)
        }
        _ => ExtractError::Journal(e),
    })?;
    Ok(())
}
