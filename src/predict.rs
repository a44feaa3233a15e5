//! `scmpl predict`: fake probability per face, frame and video, for videos and images.
//!
//! Faces are found and selected exactly as `extract` does ([`crate::pipeline::faces::select`]:
//! the same scaling back, rounding, minimum size and `faces = "largest"`), cut with the same
//! crop rule, then scored by a trained run ([`crate::train::infer::Classifier`]). A video or
//! image without faces says so instead of getting a made-up score.

use std::path::{Path, PathBuf};

use serde_json::json;

use crate::manifest::paths;
use crate::pipeline::config::ExtractSettings;
use crate::pipeline::crop::crop_rect;
use crate::pipeline::decode::{self, VideoError};
use crate::pipeline::detect::{DetectError, Detector, Face};
use crate::pipeline::faces;
use crate::pipeline::image::BgrImage;
use crate::train::data::augment::{resized_crop, RgbF32};
use crate::train::data::Batch;
use crate::train::infer::Classifier;
use crate::train::TrainError;

/// Why one input could not be scored (the others still are).
#[derive(Debug, thiserror::Error)]
pub enum PredictError {
    #[error(transparent)]
    Video(#[from] VideoError),
    #[error(transparent)]
    Detect(#[from] DetectError),
    #[error(transparent)]
    Classifier(#[from] TrainError),
    #[error("{path}: {reason}")]
    Image { path: PathBuf, reason: String },
}

/// The face `rect` of a BGR frame as an RGB [0,1] image resized to `size`.
fn face_input(frame: &BgrImage, rect: (i32, i32, i32, i32), size: usize) -> RgbF32 {
    let (x, y, w, h) = (rect.0 as usize, rect.1 as usize, rect.2 as usize, rect.3 as usize);
    let mut data = Vec::with_capacity(w * h * 3);
    for yy in y..y + h {
        for xx in x..x + w {
            let i = (yy * frame.width + xx) * 3;
            data.extend_from_slice(&[frame.data[i + 2] as f32 / 255.0, frame.data[i + 1] as f32 / 255.0, frame.data[i] as f32 / 255.0]);
        }
    }
    resized_crop(&RgbF32 { width: w, height: h, data }, 0, 0, w, h, size)
}

/// Scores the faces of one frame: (box, detector score, fake probability) each.
fn score_faces(frame: &BgrImage, faces: &[Face], settings: &ExtractSettings, clf: &Classifier) -> Result<Vec<serde_json::Value>, TrainError> {
    if faces.is_empty() {
        return Ok(Vec::new());
    }
    let size = clf.image_size();
    let mut pixels = Vec::new();
    for f in faces {
        pixels.extend(face_input(frame, crop_rect(f, settings.crop, frame.width, frame.height), size).data);
    }
    let n = faces.len();
    let batch = Batch { step: 0, views: 1, n, size, pixels, labels: vec![0; n], indices: (0..n).collect(), skipped: Vec::new() };
    let p = clf.probabilities_of_batch(&batch)?;
    Ok(faces
        .iter()
        .zip(p)
        .map(|(f, prob)| json!({ "box": [f.x1, f.y1, f.x2, f.y2], "score": f.score, "fake_probability": (prob * 1e4).round() / 1e4 }))
        .collect())
}

/// A frame on its way to the detector: index, pts, the frame, the detector's copy and its scale.
type Pending = (u64, f64, BgrImage, BgrImage, f32);

/// Frames, and the probabilities of their faces, as they are scored.
struct Scored<'a> {
    settings: &'a ExtractSettings,
    clf: &'a Classifier,
    frames: Vec<serde_json::Value>,
    probs: Vec<f64>,
}

impl Scored<'_> {
    /// Detects, selects and scores the faces of a batch of frames.
    fn add(&mut self, batch: &[Pending], det: &mut dyn Detector) -> Result<(), PredictError> {
        let smalls: Vec<&BgrImage> = batch.iter().map(|b| &b.3).collect();
        let found = det.detect(&smalls)?;
        for ((index, pts, frame, _, scale), found) in batch.iter().zip(found) {
            let selected = faces::select(&found, *scale, frame.width, frame.height, self.settings);
            let scored = score_faces(frame, &selected, self.settings, self.clf)?;
            self.probs.extend(scored.iter().filter_map(|f| f["fake_probability"].as_f64()));
            self.frames.push(json!({ "frame": index, "pts": pts, "faces": scored }));
        }
        Ok(())
    }

    /// The verdict over every face seen.
    fn verdict(&self) -> serde_json::Value {
        let with_faces = self.frames.iter().filter(|f| f["faces"].as_array().is_some_and(|a| !a.is_empty())).count();
        if self.probs.is_empty() {
            return json!({ "faces": 0, "frames_with_faces": 0, "verdict": "no face found" });
        }
        let mean = self.probs.iter().sum::<f64>() / self.probs.len() as f64;
        let max = self.probs.iter().cloned().fold(0.0, f64::max);
        json!({
            "faces": self.probs.len(),
            "frames_with_faces": with_faces,
            "fake_probability_mean": (mean * 1e4).round() / 1e4,
            "fake_probability_max": (max * 1e4).round() / 1e4,
            "verdict": if mean >= 0.5 { "fake" } else { "real" },
        })
    }
}

/// One image: decoded, its detector copy made as the config says, scored.
fn predict_image(input: &Path, scored: &mut Scored, det: &mut dyn Detector) -> Result<(), PredictError> {
    let bad = |reason: String| PredictError::Image { path: input.into(), reason };
    let bytes = std::fs::read(input).map_err(|e| bad(e.to_string()))?;
    let img = BgrImage::decode(&bytes).ok_or_else(|| bad("not a readable image".into()))?;
    let (w, h, scale) = scored.settings.detector.copy().size(img.width as u32, img.height as u32);
    let small = img.resized_area(w as usize, h as usize).map_err(|e| bad(e.to_string()))?;
    scored.add(&[(0, 0.0, img, small, scale)], det)
}

/// One video: its sampled frames go to the detector in batches of `detector.batch_size`.
fn predict_video(input: &Path, scored: &mut Scored, det: &mut dyn Detector) -> Result<(), PredictError> {
    let settings = scored.settings;
    let info = decode::probe(input)?;
    let picker = settings.sampling.pick(info.frames);
    let size = settings.detector.batch_size.max(1);
    let mut pending: Vec<Pending> = Vec::with_capacity(size);
    let mut err = None;
    decode::decode(input, &info, &picker, settings.detector.copy(), 1, |f| {
        pending.push((f.index, f.pts, f.full, f.small, f.small_scale));
        if pending.len() < size {
            return true;
        }
        let batch = std::mem::take(&mut pending);
        match scored.add(&batch, det) {
            Ok(()) => true,
            Err(e) => {
                err = Some(e);
                false
            }
        }
    })?;
    if let Some(e) = err {
        return Err(e);
    }
    if !pending.is_empty() {
        scored.add(&pending, det)?;
    }
    Ok(())
}

/// One JSON object describing `input`: its frames with their faces' probabilities, and a verdict.
pub fn predict(input: &Path, settings: &ExtractSettings, det: &mut dyn Detector, clf: &Classifier) -> Result<serde_json::Value, PredictError> {
    let mut scored = Scored { settings, clf, frames: Vec::new(), probs: Vec::new() };
    if paths::is_image(input) {
        predict_image(input, &mut scored, det)?;
    } else {
        predict_video(input, &mut scored, det)?;
    }
    Ok(json!({ "input": input, "frames": scored.frames, "video": scored.verdict() }))
}
