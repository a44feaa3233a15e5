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

pub(crate) fn decode(jobs: Receiver<VideoJob>, frames: Sender<Msg>, settings: &ExtractSettings) {
    for job in jobs {
        let info = match decode::probe(&job.path) {
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
        let result = decode::decode(&video.job.path, &info, &picker, settings.detector.copy(), 1, |f| {
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
pub(crate) fn detect(
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
                Ok(all) => Ok(faces::select(&all[i], small_scale, full.width, full.height, settings)),
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

pub(crate) fn crop(frames: Receiver<Msg>, out: Sender<Msg>, settings: &ExtractSettings, dir: &Path, write_crops: bool) {
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
                    match write::write_crop(dir, &video.job, index, i, &full, &face, settings) {
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
