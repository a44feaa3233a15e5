//! Face detection: one [`Detector`] trait, one file per detector.
//!
//! Detectors take packed BGR images (the decoder's downscaled copies) and return faces in
//! those images' pixel coordinates; the caller scales them back to the full frame.

use std::path::PathBuf;

use crate::pipeline::decode::DetectorCopy;
use crate::pipeline::image::BgrImage;
use crate::device::Device;
use crate::device::DeviceError;
use crate::pipeline::runtime::RuntimeError;

pub mod mtcnn;
pub mod retinaface;

/// One detected face: box corners, score, and five landmarks (x, y pairs: eyes, nose, mouth corners).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Face {
    pub x1: f32,
    pub y1: f32,
    pub x2: f32,
    pub y2: f32,
    pub score: f32,
    pub landmarks: [f32; 10],
}

impl Face {
    pub fn width(&self) -> f32 {
        self.x2 - self.x1
    }
    pub fn height(&self) -> f32 {
        self.y2 - self.y1
    }
    pub fn area(&self) -> f32 {
        self.width().max(0.0) * self.height().max(0.0)
    }
    /// Intersection over union of two boxes.
    pub fn iou(&self, other: &Face) -> f32 {
        let w = (self.x2.min(other.x2) - self.x1.max(other.x1)).max(0.0);
        let h = (self.y2.min(other.y2) - self.y1.max(other.y1)).max(0.0);
        let inter = w * h;
        let union = self.area() + other.area() - inter;
        if union <= 0.0 { 0.0 } else { inter / union }
    }
    /// The face with every coordinate multiplied by `k`, clipped to a `width`×`height` frame.
    pub fn scaled(&self, k: f32, width: f32, height: f32) -> Face {
        let mut lm = self.landmarks;
        for (i, v) in lm.iter_mut().enumerate() {
            *v = (*v * k).clamp(0.0, if i % 2 == 0 { width } else { height });
        }
        Face {
            x1: (self.x1 * k).clamp(0.0, width),
            y1: (self.y1 * k).clamp(0.0, height),
            x2: (self.x2 * k).clamp(0.0, width),
            y2: (self.y2 * k).clamp(0.0, height),
            score: self.score,
            landmarks: lm,
        }
    }
}

/// Greedy non-maximum suppression: keeps the best-scoring faces, dropping any that overlaps a
/// kept one by more than `iou_threshold`. Returns faces best first.
pub fn nms(mut faces: Vec<Face>, iou_threshold: f32) -> Vec<Face> {
    faces.sort_by(|a, b| b.score.total_cmp(&a.score));
    let mut kept: Vec<Face> = Vec::new();
    for f in faces {
        if kept.iter().all(|k| k.iou(&f) <= iou_threshold) {
            kept.push(f);
        }
    }
    kept
}

/// What went wrong in detection.
#[derive(Debug, thiserror::Error)]
pub enum DetectError {
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    #[error("{path}: cannot load the ONNX model: {reason}")]
    Model { path: PathBuf, reason: String },
    #[error("{detector}: inference failed: {reason}")]
    Inference { detector: &'static str, reason: String },
    #[error("unknown detector '{0}': expected retinaface or mtcnn")]
    Unknown(String),
}

/// Settings every detector understands.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct DetectorConfig {
    /// `retinaface` | `mtcnn`.
    pub name: String,
    /// Faces scoring below this are dropped.
    pub score_threshold: f32,
    /// Overlap above which the weaker of two faces is dropped.
    pub nms_threshold: f32,
    /// Side of the square the frames are letterboxed into (RetinaFace), and the square the
    /// detector's copy of a frame is fitted into when `frame_scale` is 0.
    pub input_size: u32,
    /// > 0: the detector sees every frame scaled by this factor (the reference: 0.5, boxes
    /// scaled back by 1 / factor); 0: frames fitted into `input_size`². Unset: each detector's
    /// own default (see [`DetectorConfig::copy`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub frame_scale: Option<f32>,
    /// Frames per inference call.
    pub batch_size: usize,
    /// Faces narrower than this (pixels, in the full frame) are dropped.
    pub min_face_size: f32,
    /// ONNX Runtime intra-op threads on CPU (0 = ONNX Runtime's default: all cores).
    pub threads: usize,
    /// Detect every Nth sampled frame of a video and interpolate faces along tracks between
    /// (1 = detect every sampled frame). See [`crate::pipeline::tracks`].
    #[serde(default = "one")]
    pub keyframe_interval: u64,
    /// Two boxes of consecutive frames are the same face at this IoU or more (tracks, and
    /// whether two keyframes agree enough to interpolate between them).
    #[serde(default = "track_iou")]
    pub track_iou: f32,
    /// Two consecutive sampled frames are a scene cut when their 8x8 brightness grids differ by
    /// more than this on average (0-255): no box is interpolated across, and tracks end.
    #[serde(default = "cut_threshold")]
    pub cut_threshold: f32,
    /// MTCNN's own parameters (facenet-pytorch's names and defaults).
    #[serde(default)]
    pub mtcnn: mtcnn::MtcnnConfig,
}

fn one() -> u64 {
    1
}
fn track_iou() -> f32 {
    0.5
}
fn cut_threshold() -> f32 {
    25.0
}

impl DetectorConfig {
    /// How the decoder sizes the detector's copy of each frame. Unless `frame_scale` says
    /// otherwise, RetinaFace sees the frame fitted into `input_size`², or smaller when
    /// `min_face_size` says the smallest face kept is large (its cost grows with the area), and
    /// MTCNN the frame as it is: its pyramid takes any size, and a resized frame moves its boxes.
    pub fn copy(&self) -> DetectorCopy {
        match self.frame_scale {
            Some(k) if k > 0.0 => DetectorCopy::Scale(k),
            Some(_) => DetectorCopy::Fit(self.input_size),
            None if self.name == "mtcnn" => DetectorCopy::Scale(1.0),
            // No larger than needed to see the smallest face kept at RETINAFACE_MIN_FACE pixels.
            None if self.min_face_size > 0.0 => {
                DetectorCopy::FitAtMost { side: self.input_size, max_scale: retinaface::MIN_FACE / self.min_face_size }
            }
            None => DetectorCopy::Fit(self.input_size),
        }
    }
}

/// A face detector: images in, faces per image out (best first, in the image's pixels).
pub trait Detector: Send {
    /// The name written to `detections.csv`.
    fn name(&self) -> &'static str;
    fn detect(&mut self, images: &[&BgrImage]) -> Result<Vec<Vec<Face>>, DetectError>;
}

/// Builds the detector `config.name` on `device`, loading its model files from `models`.
pub fn build(config: &DetectorConfig, device: Device, models: &std::path::Path) -> Result<Box<dyn Detector>, DetectError> {
    match config.name.as_str() {
        "retinaface" => Ok(Box::new(retinaface::RetinaFace::new(config, device, models)?)),
        "mtcnn" => Ok(Box::new(mtcnn::Mtcnn::new(config, device, models)?)),
        other => Err(DetectError::Unknown(other.to_string())),
    }
}

/// Opens an ONNX model on `device`. With CUDA, the CUDA provider must start: no silent CPU run.
pub(crate) fn onnx_session(
    path: &std::path::Path,
    device: Device,
    threads: usize,
) -> Result<ort::session::Session, DetectError> {
    let (env, _) = crate::pipeline::runtime::init_onnxruntime(None)?;
    let err = |e: ort::Error| DetectError::Model { path: path.into(), reason: e.to_string() };
    let mut builder = ort::session::Session::builder(&env).map_err(err)?;
    match device {
        Device::Cpu => {
            if threads > 0 {
                builder = builder.with_intra_threads(threads).map_err(|e| err(e.into()))?;
            }
            // ONNX Runtime's pool threads spin between calls by default, taking CPU the decode,
            // crop and encode threads of the same run need (and MTCNN's single-threaded resizing
            // between its calls): off, reference.toml on a 1080p 5-face clip went from 18-21 s
            // to 15-17 s (2-core AMD EPYC, identical detections); RetinaFace's defaults unchanged.
            builder = builder.with_intra_op_spinning(false).map_err(|e| err(e.into()))?;
        }
        #[cfg(feature = "cuda")]
        Device::Cuda(n) => {
            let cuda = ort::ep::CUDA::default().with_device_id(n as i32).build().error_on_failure();
            builder = builder.with_execution_providers([cuda]).map_err(|e| {
                DetectError::Runtime(RuntimeError::Device(DeviceError::CudaUnavailable {
                    what: format!("--device cuda:{n}"),
                    reason: e.to_string(),
                }))
            })?;
        }
        #[cfg(not(feature = "cuda"))]
        Device::Cuda(n) => {
            return Err(DetectError::Runtime(RuntimeError::Device(DeviceError::CudaUnavailable {
                what: format!("--device cuda:{n}"),
                reason: "this scmpl was built without the `cuda` feature (scripts/setup --gpu, then cargo build --release --features cuda)".into(),
            })))
        }
    }
    builder.commit_from_file(path).map_err(err)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn face(x1: f32, y1: f32, x2: f32, y2: f32, score: f32) -> Face {
        Face { x1, y1, x2, y2, score, landmarks: [0.0; 10] }
    }

    #[test]
    fn iou_of_known_boxes() {
        let a = face(0.0, 0.0, 10.0, 10.0, 1.0);
        let b = face(5.0, 0.0, 15.0, 10.0, 1.0);
        assert!((a.iou(&b) - 50.0 / 150.0).abs() < 1e-6);
        assert_eq!(a.iou(&face(20.0, 20.0, 30.0, 30.0, 1.0)), 0.0);
        assert!((a.iou(&a) - 1.0).abs() < 1e-6);
    }

    #[test]
    fn nms_keeps_the_best_of_overlapping_boxes_and_separate_ones() {
        let kept = nms(
            vec![
                face(0.0, 0.0, 10.0, 10.0, 0.8),
                face(1.0, 1.0, 11.0, 11.0, 0.9),
                face(50.0, 50.0, 60.0, 60.0, 0.7),
            ],
            0.4,
        );
        assert_eq!(kept.len(), 2);
        assert_eq!(kept[0].score, 0.9);
        assert_eq!(kept[1].score, 0.7);
    }

    #[test]
    fn scaling_back_clips_to_the_frame() {
        let f = face(-2.0, 10.0, 60.0, 20.0, 0.9).scaled(2.0, 100.0, 100.0);
        assert_eq!((f.x1, f.y1, f.x2, f.y2), (0.0, 20.0, 100.0, 40.0));
    }
}
