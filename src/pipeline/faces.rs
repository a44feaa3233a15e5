//! The one face selection of every command (`extract`, `detect`, `crop`'s source, `predict`):
//! a detector's faces, found on the detector's copy of a frame, scaled back to the frame,
//! rounded to the precision the manifests keep, filtered by size, and reduced to the largest
//! when the config says `faces = "largest"`.

use super::config::ExtractSettings;
use super::detect::Face;
use crate::manifest::round2;

/// Faces of one frame in full-frame pixels, filtered by size, largest only when asked.
pub fn select(faces: &[Face], small_scale: f32, width: usize, height: usize, settings: &ExtractSettings) -> Vec<Face> {
    let (w, h) = (width as f32, height as f32);
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
pub fn rounded(f: &Face) -> Face {
    let mut lm = f.landmarks;
    lm.iter_mut().for_each(|v| *v = round2(*v));
    Face { x1: round2(f.x1), y1: round2(f.y1), x2: round2(f.x2), y2: round2(f.y2), score: round_score(f.score), landmarks: lm }
}

fn round_score(s: f32) -> f32 {
    (s * 1e4).round() / 1e4
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::config::PipelineConfig;

    fn face(x1: f32, y1: f32, x2: f32, y2: f32, score: f32) -> Face {
        Face { x1, y1, x2, y2, score, landmarks: [x1; 10] }
    }

    #[test]
    fn faces_are_scaled_back_rounded_filtered_and_reduced_to_the_largest() {
        let mut settings = PipelineConfig::load(None).unwrap().validate().unwrap();
        // Found on a copy at half size: a big face, a small one, one on the frame's edge.
        let found = [face(10.123, 10.0, 60.0, 70.0, 0.987654), face(100.0, 100.0, 108.0, 110.0, 0.9), face(190.0, 0.0, 220.0, 30.0, 0.95)];
        let all = select(&found, 0.5, 400, 300, &settings);
        assert_eq!(all.len(), 3);
        assert_eq!((all[0].x1, all[0].x2, all[0].score), (20.25, 120.0, 0.9877));
        assert_eq!(all[2].x2, 400.0, "clipped to the frame");
        settings.detector.min_face_size = 20.0;
        assert_eq!(select(&found, 0.5, 400, 300, &settings).len(), 2, "the 16 px face is dropped");
        settings.largest_only = true;
        let largest = select(&found, 0.5, 400, 300, &settings);
        assert_eq!(largest.len(), 1);
        assert_eq!(largest[0].x1, 20.25);
    }
}
