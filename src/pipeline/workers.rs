//! The pipeline's threads: decode workers (one video each), one detector thread batching frames
//! of one video at a time, crop workers cutting and encoding faces. Messages carry each frame's
//! video along, so the writer knows when a video is complete.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use crossbeam_channel::{Receiver, Sender};

use super::config::ExtractSettings;
use super::decode::{self, VideoInfo};
use super::detect::{self, Face};
use super::image::BgrImage;
use super::scan::VideoJob;
use super::tracks::{FrameFaces, Keyframes, Thumb, TrackSettings, TrackedFace};
use super::write::{CropError, OutputFault};
use super::{faces, write};

/// A video travelling through the stages.
pub(crate) struct VideoCtx {
    pub job: VideoJob,
    pub info: Option<VideoInfo>,
}

pub(crate) enum Msg {
    Frame {
        video: Arc<VideoCtx>,
        index: u64,
        pts: f64,
        full: BgrImage,
        small: BgrImage,
        small_scale: f32,
        thumb: Thumb,
    },
    /// A frame's faces, with their crops' pixels already cut (when crops are written): the
    /// full frame stays behind, so the queue to the crop workers is light.
    Detected {
        video: Arc<VideoCtx>,
        index: u64,
        pts: f64,
        cuts: Vec<BgrImage>,
        faces: FrameFaces,
    },
    Cropped {
        video: Arc<VideoCtx>,
        index: u64,
        pts: f64,
        faces: Vec<(TrackedFace, Option<String>)>,
        error: Option<String>,
        /// The output could not take a crop (disk full, read-only): the run must stop.
        output: Option<OutputFault>,
    },
    /// Sent by the decoder after a video's last frame: how many frames it sent, and why it stopped.
    End { video: Arc<VideoCtx>, sent: u64, error: Option<String>, warning: Option<String> },
}

/// The text of a caught panic.
pub(crate) fn panic_message(p: Box<dyn std::any::Any + Send>) -> String {
    p.downcast_ref::<&str>().map(|s| s.to_string()).or_else(|| p.downcast_ref::<String>().cloned()).unwrap_or_else(|| "unknown panic".into())
}

/// Runs `f`; a panic in it becomes an error naming `what` (one input never takes a worker down).
pub(crate) fn guarded<T>(what: &str, f: impl FnOnce() -> Result<T, String>) -> Result<T, String> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).unwrap_or_else(|p| Err(format!("internal error while {what}: {}", panic_message(p))))
}

pub(crate) fn decode(jobs: Receiver<VideoJob>, frames: Sender<Msg>, settings: &ExtractSettings) {
    for job in jobs {
        let probed = match &job.problem {
            Some(p) => Err(format!("{}: {p}", job.path.display())),
            None => guarded("opening the video", || decode::probe(&job.path).map_err(|e| e.to_string())),
        };
        let info = match probed {
            Ok(info) => info,
            Err(e) => {
                let video = Arc::new(VideoCtx { job, info: None });
                if frames.send(Msg::End { video, sent: 0, error: Some(e), warning: None }).is_err() {
                    return;
                }
                continue;
            }
        };
        let video = Arc::new(VideoCtx { job, info: Some(info.clone()) });
        let mut sent = 0u64;
        let mut closed = false;
        let picker = settings.sampling.pick(info.frames);
        let path = video.job.path.clone();
        let result = guarded("decoding", || {
            decode::decode(&path, &info, &picker, settings.detector.copy(), 1, |f| {
            let msg = Msg::Frame {
                video: video.clone(),
                index: f.index,
                pts: f.pts,
                thumb: Thumb::of(&f.small),
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
            })
            .map_err(|e| e.to_string())
        });
        if closed {
            return;
        }
        let (error, warning) = match result {
            Ok(s) => (None, s.warning),
            Err(e) if e.contains(&*path.to_string_lossy()) => (Some(e), None),
            Err(e) => (Some(format!("{}: {e}", path.display())), None),
        };
        if frames.send(Msg::End { video, sent, error, warning }).is_err() {
            return;
        }
    }
}

/// Runs the detector over the keyframes of one video at a time, in batches, and resolves the
/// frames between them along face tracks ([`Keyframes`]); frames of videos decoded in parallel
/// wait in per-video queues (a batch of keyframes and the frames between them at most).
/// Gives the detector back when its input ends (for another round of videos).
pub(crate) fn detect(
    mut detector: Box<dyn detect::Detector>,
    frames: Receiver<Msg>,
    out: Sender<Msg>,
    settings: &ExtractSettings,
    write_crops: bool,
) -> Box<dyn detect::Detector> {
    let batch = settings.detector.batch_size;
    let tracking = TrackSettings::of(&settings.detector);
    let mut pending: HashMap<*const VideoCtx, Keyframes<Msg>> = HashMap::new();
    // Sends resolved frames on; false when the next stage has gone.
    let resolve = |kf: &mut Keyframes<Msg>, end: bool, detector: &mut Box<dyn detect::Detector>| -> bool {
        let mut find = |msgs: &[&Msg]| detect_frames(detector.as_mut(), msgs, batch, settings);
        for (msg, faces) in kf.resolve(end, &mut find) {
            let Msg::Frame { video, index, pts, full, .. } = msg else { unreachable!("only frames wait") };
            let (cuts, faces) = match faces {
                Ok(found) if write_crops => {
                    let cut = || found.iter().map(|f| super::crop::cut(&full, &f.face, settings.crop)).collect::<opencv::Result<Vec<_>>>().map_err(|e| e.to_string());
                    match guarded("cropping", cut) {
                        Ok(cuts) => (cuts, Ok(found)),
                        Err(e) => (Vec::new(), Err(format!("frame {index}: cannot crop: {e}"))),
                    }
                }
                other => (Vec::new(), other),
            };
            drop(full);
            if out.send(Msg::Detected { video, index, pts, cuts, faces }).is_err() {
                return false;
            }
        }
        true
    };
    for msg in frames {
        match msg {
            Msg::Frame { ref video, thumb, .. } => {
                let key = Arc::as_ptr(video);
                let kf = pending.entry(key).or_insert_with(|| Keyframes::new(tracking));
                kf.push(msg, thumb);
                if kf.keyframes_waiting() >= batch && !resolve(kf, false, &mut detector) {
                    return detector;
                }
            }
            Msg::End { ref video, .. } => {
                if let Some(mut kf) = pending.remove(&Arc::as_ptr(video)) {
                    if !resolve(&mut kf, true, &mut detector) {
                        return detector;
                    }
                    tracing::debug!("{}: detector on {} frames, {} interpolated", video.job.video_id, kf.detected, kf.interpolated);
                }
                if out.send(msg).is_err() {
                    return detector;
                }
            }
            _ => unreachable!("the decoder sends frames and ends"),
        }
    }
    detector
}

/// The selected faces of each frame, the detector called on at most `batch` frames at a time.
fn detect_frames(detector: &mut dyn detect::Detector, msgs: &[&Msg], batch: usize, settings: &ExtractSettings) -> Result<Vec<Vec<Face>>, String> {
    let mut all = Vec::with_capacity(msgs.len());
    for chunk in msgs.chunks(batch.max(1)) {
        let smalls: Vec<&BgrImage> = chunk
            .iter()
            .map(|m| match m {
                Msg::Frame { small, .. } => small,
                _ => unreachable!("only frames are detected"),
            })
            .collect();
        let found = guarded("detecting faces", || detector.detect(&smalls).map_err(|e| e.to_string()))?;
        for (m, found) in chunk.iter().zip(found) {
            let Msg::Frame { full, small_scale, .. } = m else { unreachable!() };
            all.push(faces::select(&found, *small_scale, full.width, full.height, settings));
        }
    }
    Ok(all)
}

pub(crate) fn crop(frames: Receiver<Msg>, out: Sender<Msg>, settings: &ExtractSettings, dir: &Path, write_crops: bool) {
    for msg in frames {
        let msg = match msg {
            Msg::Detected { video, index, pts, faces: Err(e), .. } => {
                Msg::Cropped { video, index, pts, faces: Vec::new(), error: Some(e), output: None }
            }
            Msg::Detected { video, index, pts, cuts, faces: Ok(faces) } => {
                let mut done = Vec::with_capacity(faces.len());
                let (mut error, mut output) = (None, None);
                for (i, face) in faces.into_iter().enumerate() {
                    if !write_crops {
                        done.push((face, None));
                        continue;
                    }
                    let written = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| write::write_crop(dir, &video.job, index, i, &cuts[i], settings)))
                        .unwrap_or_else(|p| Err(CropError::Video(format!("internal error while cropping: {}", panic_message(p)))));
                    match written {
                        Ok(rel) => done.push((face, Some(rel))),
                        Err(CropError::Video(e)) => {
                            error = Some(e);
                            break;
                        }
                        Err(CropError::Output(fault)) => {
                            output = Some(fault);
                            break;
                        }
                    }
                }
                Msg::Cropped { video, index, pts, faces: done, error, output }
            }
            end @ Msg::End { .. } => end,
            _ => unreachable!("the detector sends detections and ends"),
        };
        if out.send(msg).is_err() {
            return;
        }
    }
}
