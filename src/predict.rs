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
use crate::pipeline::decode::{self, VideoError};
use crate::pipeline::detect::{DetectError, Detector, Face};
use crate::pipeline::faces;
use crate::pipeline::image::BgrImage;
use crate::pipeline::tracks::{Keyframes, Thumb, TrackSettings, TrackedFace};
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
    #[error("cannot crop a face: {0}")]
    Crop(String),
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

/// Scores the faces of one frame: (box, detector score, track, fake probability) each.
fn score_faces(frame: &BgrImage, faces: &[TrackedFace], settings: &ExtractSettings, clf: &Classifier) -> Result<Vec<serde_json::Value>, PredictError> {
    if faces.is_empty() {
        return Ok(Vec::new());
    }
    let size = clf.image_size();
    let mut pixels = Vec::new();
    for f in faces {
        let cut = crate::pipeline::crop::cut(frame, &f.face, settings.crop).map_err(|e| PredictError::Crop(e.to_string()))?;
        pixels.extend(face_input(&cut, (0, 0, cut.width as i32, cut.height as i32), size).data);
    }
    let n = faces.len();
    let batch = Batch { step: 0, views: 1, n, size, pixels, labels: vec![0; n], indices: (0..n).collect(), skipped: Vec::new() };
    let p = clf.probabilities_of_batch(&batch)?;
    Ok(faces
        .iter()
        .zip(p)
        .map(|(t, prob)| {
            let f = &t.face;
            json!({ "box": [f.x1, f.y1, f.x2, f.y2], "score": f.score, "track": t.track, "source": t.source.as_str(), "fake_probability": (prob * 1e4).round() / 1e4 })
        })
        .collect())
}

/// A frame on its way to the detector: index, pts, the frame, the detector's copy and its scale.
type Pending = (u64, f64, BgrImage, BgrImage, f32);

fn round4(p: f64) -> f64 {
    (p * 1e4).round() / 1e4
}

/// Frames, and the probabilities of their faces by track, as they are scored.
struct Scored<'a> {
    settings: &'a ExtractSettings,
    clf: &'a Classifier,
    frames: Vec<serde_json::Value>,
    probs: Vec<f64>,
    tracks: std::collections::BTreeMap<u32, Vec<f64>>,
}

impl Scored<'_> {
    /// The selected faces of each frame of a batch, in full-frame pixels.
    fn detect(&self, batch: &[&Pending], det: &mut dyn Detector) -> Result<Vec<Vec<Face>>, DetectError> {
        let smalls: Vec<&BgrImage> = batch.iter().map(|b| &b.3).collect();
        let found = det.detect(&smalls)?;
        Ok(batch.iter().zip(found).map(|((_, _, frame, _, scale), found)| faces::select(&found, *scale, frame.width, frame.height, self.settings)).collect())
    }

    /// Scores the faces of one frame.
    fn add(&mut self, (index, pts, frame, ..): &Pending, faces: &[TrackedFace]) -> Result<(), PredictError> {
        let scored = score_faces(frame, faces, self.settings, self.clf)?;
        for (f, s) in faces.iter().zip(&scored) {
            let p = s["fake_probability"].as_f64().unwrap_or(0.0);
            self.probs.push(p);
            self.tracks.entry(f.track).or_default().push(p);
        }
        self.frames.push(json!({ "frame": index, "pts": pts, "faces": scored }));
        Ok(())
    }

    /// The verdict: each track's mean probability, and the video called fake when its most
    /// suspicious track's mean is 0.5 or more (one swapped face among real ones is not
    /// averaged away); the mean and max over every face besides.
    fn verdict(&self) -> serde_json::Value {
        let with_faces = self.frames.iter().filter(|f| f["faces"].as_array().is_some_and(|a| !a.is_empty())).count();
        if self.probs.is_empty() {
            return json!({ "faces": 0, "frames_with_faces": 0, "verdict": "no face found" });
        }
        let mean = self.probs.iter().sum::<f64>() / self.probs.len() as f64;
        let max = self.probs.iter().cloned().fold(0.0, f64::max);
        let tracks: Vec<serde_json::Value> = self
            .tracks
            .iter()
            .map(|(t, p)| json!({ "track": t, "faces": p.len(), "fake_probability_mean": round4(p.iter().sum::<f64>() / p.len() as f64) }))
            .collect();
        let track_max = self.tracks.values().map(|p| p.iter().sum::<f64>() / p.len() as f64).fold(0.0, f64::max);
        json!({
            "faces": self.probs.len(),
            "frames_with_faces": with_faces,
            "fake_probability_mean": round4(mean),
            "fake_probability_max": round4(max),
            "tracks": tracks,
            "fake_probability_track_max": round4(track_max),
            "verdict": if track_max >= 0.5 { "fake" } else { "real" },
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
    let frame = (0, 0.0, img, small, scale);
    let found = scored.detect(&[&frame], det)?.pop().unwrap_or_default();
    let tracked: Vec<TrackedFace> = found.into_iter().enumerate().map(|(i, face)| TrackedFace { face, track: i as u32, source: crate::pipeline::tracks::Source::Detected }).collect();
    scored.add(&frame, &tracked)
}

/// One video: its sampled frames go through keyframes and tracks as in `extract`
/// ([`Keyframes`]), the detector called on `detector.batch_size` frames at a time.
fn predict_video(input: &Path, scored: &mut Scored, det: &mut dyn Detector) -> Result<(), PredictError> {
    let settings = scored.settings;
    let info = decode::probe(input)?;
    let picker = settings.sampling.pick(info.frames);
    let batch = settings.detector.batch_size.max(1);
    let tracking = TrackSettings::of(&settings.detector);
    let mut kf: Keyframes<Pending> = Keyframes::new(tracking);
    let mut err: Option<PredictError> = None;
    let mut resolve = |kf: &mut Keyframes<Pending>, end: bool, scored: &mut Scored| -> Result<(), PredictError> {
        let mut detect_err = None;
        let resolved = kf.resolve(end, &mut |frames: &[&Pending]| {
            let mut all = Vec::with_capacity(frames.len());
            for chunk in frames.chunks(batch) {
                match scored.detect(chunk, det) {
                    Ok(found) => all.extend(found),
                    Err(e) => {
                        let text = e.to_string();
                        detect_err = Some(e);
                        return Err(text);
                    }
                }
            }
            Ok(all)
        });
        if let Some(e) = detect_err {
            return Err(e.into());
        }
        for (frame, faces) in resolved {
            scored.add(&frame, &faces.map_err(|reason| PredictError::Image { path: input.into(), reason })?)?;
        }
        Ok(())
    };
    decode::decode(input, &info, &picker, settings.detector.copy(), 1, |f| {
        let thumb = Thumb::of(&f.small);
        kf.push((f.index, f.pts, f.full, f.small, f.small_scale), thumb);
        if kf.keyframes_waiting() < batch {
            return true;
        }
        match resolve(&mut kf, false, scored) {
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
    resolve(&mut kf, true, scored)
}

/// One JSON object describing `input`: its frames with their faces' probabilities, and a verdict.
pub fn predict(input: &Path, settings: &ExtractSettings, det: &mut dyn Detector, clf: &Classifier) -> Result<serde_json::Value, PredictError> {
    let mut scored = Scored { settings, clf, frames: Vec::new(), probs: Vec::new(), tracks: Default::default() };
    if paths::is_image(input) {
        predict_image(input, &mut scored, det)?;
    } else {
        predict_video(input, &mut scored, det)?;
    }
    Ok(json!({ "input": input, "frames": scored.frames, "video": scored.verdict() }))
}
