//! `scmpl predict`: fake probability per face, frame and video, for videos and images.
//!
//! Faces are found with the pipeline's detector and cut with its crop rule (pipeline config),
//! then scored by a trained run's encoder + classifier. A video or image without faces says
//! so instead of getting a made-up score.

use std::path::Path;

use serde_json::json;

use crate::config::ExtractSettings;
use crate::crop::crop_rect;
use crate::detect::{self, Detector};
use crate::image::BgrImage;
use crate::train::augment::{resized_crop, RgbF32};
use crate::train::eval::Detector as Classifier;
use crate::train::teacher::to_input;
use crate::video::{self, DetectorCopy};

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
fn score_faces(frame: &BgrImage, faces: &[detect::Face], settings: &ExtractSettings, clf: &Classifier) -> Result<Vec<serde_json::Value>, String> {
    if faces.is_empty() {
        return Ok(Vec::new());
    }
    let size = clf.recipe.data.image_size;
    let mut pixels = Vec::new();
    for f in faces {
        pixels.extend(face_input(frame, crop_rect(f, settings.crop, frame.width, frame.height), size).data);
    }
    let batch = crate::train::data::Batch {
        step: 0,
        views: 1,
        n: faces.len(),
        size,
        pixels,
        labels: vec![0; faces.len()],
        indices: (0..faces.len()).collect(),
        skipped: Vec::new(),
    };
    let preset = clf.recipe.preset().map_err(|e| e.to_string())?;
    let x = to_input(&batch, clf.device, preset);
    let p = tch::no_grad(|| clf.cls.forward(&clf.net.features(&x, false)).softmax(-1, tch::Kind::Double));
    let p: Vec<f64> = Vec::<f64>::try_from(p.select(1, 1).to_device(tch::Device::Cpu)).map_err(|e| e.to_string())?;
    Ok(faces
        .iter()
        .zip(p)
        .map(|(f, prob)| {
            json!({ "box": [f.x1, f.y1, f.x2, f.y2], "score": f.score, "fake_probability": (prob * 1e4).round() / 1e4 })
        })
        .collect())
}

/// The detector's copy of `img` (OpenCV area resize).
fn detector_copy(img: &BgrImage, copy: DetectorCopy) -> Result<(BgrImage, f32), String> {
    let (w, h, scale) = copy.size(img.width as u32, img.height as u32);
    use opencv::prelude::*;
    let src = opencv::core::Mat::new_rows_cols_with_bytes::<opencv::core::Vec3b>(img.height as i32, img.width as i32, &img.data).map_err(|e| e.to_string())?;
    let mut dst = opencv::core::Mat::default();
    opencv::imgproc::resize(&src, &mut dst, opencv::core::Size::new(w as i32, h as i32), 0.0, 0.0, opencv::imgproc::INTER_AREA).map_err(|e| e.to_string())?;
    let bytes = dst.data_bytes().map_err(|e| e.to_string())?.to_vec();
    Ok((BgrImage::new(w as usize, h as usize, bytes), scale))
}

/// One JSON object describing `input`.
pub fn predict(input: &Path, settings: &ExtractSettings, det: &mut Box<dyn Detector>, clf: &Classifier) -> Result<serde_json::Value, String> {
    let is_image = input
        .extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| crate::index::IMAGE_EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()));
    let copy = settings.detector.copy();
    let mut frames_out = Vec::new();
    let mut probs = Vec::new();
    // Frames go to the detector in batches of detector.batch_size.
    let mut handle = |batch: &[(u64, f64, BgrImage, BgrImage, f32)], det: &mut Box<dyn Detector>| -> Result<(), String> {
        let smalls: Vec<&BgrImage> = batch.iter().map(|b| &b.3).collect();
        let found = det.detect(&smalls).map_err(|e| e.to_string())?;
        for ((index, pts, frame, _, scale), faces) in batch.iter().zip(found) {
            let faces: Vec<detect::Face> = faces
                .iter()
                .map(|f| f.scaled(1.0 / scale, frame.width as f32, frame.height as f32))
                .filter(|f| f.width() >= 1.0 && f.height() >= 1.0)
                .collect();
            let scored = score_faces(frame, &faces, settings, clf)?;
            probs.extend(scored.iter().filter_map(|f| f["fake_probability"].as_f64()));
            frames_out.push(json!({ "frame": index, "pts": pts, "faces": scored }));
        }
        Ok(())
    };
    if is_image {
        let bytes = std::fs::read(input).map_err(|e| format!("{}: {e}", input.display()))?;
        let img = crate::crop::decode_image(&bytes).ok_or_else(|| format!("{}: not a readable image", input.display()))?;
        let (small, scale) = detector_copy(&img, copy)?;
        handle(&[(0, 0.0, img, small, scale)], det)?;
    } else {
        let info = video::probe(input).map_err(|e| e.to_string())?;
        let picker = settings.sampling.pick(info.frames);
        let size = settings.detector.batch_size.max(1);
        let mut pending = Vec::with_capacity(size);
        let mut err = None;
        video::decode(input, &info, &picker, copy, 1, |f| {
            pending.push((f.index, f.pts, f.full, f.small, f.small_scale));
            if pending.len() < size {
                return true;
            }
            let batch = std::mem::take(&mut pending);
            match handle(&batch, det) {
                Ok(()) => true,
                Err(e) => {
                    err = Some(e);
                    false
                }
            }
        })
        .map_err(|e| e.to_string())?;
        if let Some(e) = err {
            return Err(e);
        }
        if !pending.is_empty() {
            handle(&pending, det)?;
        }
    }
    let with_faces = frames_out.iter().filter(|f| f["faces"].as_array().is_some_and(|a| !a.is_empty())).count();
    let verdict = if probs.is_empty() {
        json!({ "faces": 0, "frames_with_faces": 0, "verdict": "no face found" })
    } else {
        let mean = probs.iter().sum::<f64>() / probs.len() as f64;
        let max = probs.iter().cloned().fold(0.0, f64::max);
        json!({
            "faces": probs.len(),
            "frames_with_faces": with_faces,
            "fake_probability_mean": (mean * 1e4).round() / 1e4,
            "fake_probability_max": (max * 1e4).round() / 1e4,
            "verdict": if mean >= 0.5 { "fake" } else { "real" },
        })
    };
    Ok(json!({ "input": input, "frames": frames_out, "video": verdict }))
}
