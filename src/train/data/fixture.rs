//! A small training set made from real faces, for tests and the demo: the 100 real 25×25
//! face crops of scikit-image's `lfw_subset.npy` (and optionally the crops of a `faces.csv`,
//! e.g. from `scmpl extract` on the bundled videos), each paired with a manipulated copy:
//! every real face carries camera grain; in its manipulated copy the central face region is
//! replaced by another identity's face, smoother and without the grain, blended over a soft seam
//! and re-compressed (JPEG) inside the face region (the traces face swaps leave). A face and its manipulation share `original`,
//! so a split by original never separates them.

use std::path::{Path, PathBuf};

use super::augment::{resized_crop, RgbF32, SampleRng};
use super::read_image;
use crate::manifest::{self, paths, FaceRow, ManifestError};

/// Why the fixture could not be built.
#[derive(Debug, thiserror::Error)]
pub enum FixtureError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{path}: not scikit-image's lfw_subset.npy: {reason}")]
    NotLfw { path: PathBuf, reason: String },
    #[error("{path}: {reason}")]
    Png { path: PathBuf, reason: String },
    #[error(transparent)]
    Manifest(#[from] ManifestError),
}

/// Bytes of one LFW face: 25 x 25 float64.
const FACE_BYTES: usize = 625 * 8;

/// Reads the first `count` faces of `lfw_subset.npy` ([200, 25, 25] float64 in [0,1]; the
/// first 100 are faces) as grey RGB images. A short or foreign file is an error naming it.
pub fn read_lfw(path: &Path, count: usize) -> Result<Vec<RgbF32>, FixtureError> {
    let bytes = std::fs::read(path).map_err(|source| FixtureError::Io { path: path.into(), source })?;
    let bad = |reason: String| FixtureError::NotLfw { path: path.into(), reason };
    if bytes.len() < 10 || &bytes[..6] != b"\x93NUMPY" {
        return Err(bad("not a .npy file".into()));
    }
    let header_len = u16::from_le_bytes([bytes[8], bytes[9]]) as usize;
    let header = bytes.get(10..10 + header_len).ok_or_else(|| bad(format!("truncated in its header ({} bytes)", bytes.len())))?;
    let header = String::from_utf8_lossy(header);
    if !header.contains("'<f8'") || !header.contains("(200, 25, 25)") {
        return Err(bad(format!("expected float64 [200, 25, 25], header {header}")));
    }
    let data = &bytes[10 + header_len..];
    let count = count.min(200);
    if data.len() < count * FACE_BYTES {
        return Err(bad(format!("truncated: {} bytes of pixels, {} needed for {count} faces", data.len(), count * FACE_BYTES)));
    }
    Ok((0..count)
        .map(|i| {
            let px: Vec<f32> = (0..625)
                .flat_map(|k| {
                    let o = (i * 625 + k) * 8;
                    let v = f64::from_le_bytes(data[o..o + 8].try_into().expect("8 bytes")) as f32;
                    [v, v, v]
                })
                .collect();
            RgbF32 { width: 25, height: 25, data: px }
        })
        .collect())
}

fn blur(img: &RgbF32, radius: usize) -> RgbF32 {
    let (w, h) = (img.width, img.height);
    let mut out = img.clone();
    for y in 0..h {
        for x in 0..w {
            for c in 0..3 {
                let (mut acc, mut n) = (0.0, 0.0);
                for yy in y.saturating_sub(radius)..(y + radius + 1).min(h) {
                    for xx in x.saturating_sub(radius)..(x + radius + 1).min(w) {
                        acc += img.data[(yy * w + xx) * 3 + c];
                        n += 1.0;
                    }
                }
                out.data[(y * w + x) * 3 + c] = acc / n;
            }
        }
    }
    out
}

/// JPEG re-compression of `img` at `quality` (the `image` crate's encoder), decoded back.
fn recompress(img: &RgbF32, quality: u8) -> RgbF32 {
    let rgb: Vec<u8> = img.data.iter().map(|v| (v * 255.0).round().clamp(0.0, 255.0) as u8).collect();
    let mut buf = Vec::new();
    let enc = image::codecs::jpeg::JpegEncoder::new_with_quality(&mut buf, quality);
    if image::ImageEncoder::write_image(enc, &rgb, img.width as u32, img.height as u32, image::ExtendedColorType::Rgb8).is_err() {
        return img.clone();
    }
    match image::load_from_memory(&buf) {
        Ok(d) => RgbF32::from_rgb8(img.width, img.height, d.to_rgb8().as_raw()),
        Err(_) => img.clone(),
    }
}

/// `img` with camera grain: zero-mean Gaussian luminance noise of standard deviation `sigma`.
pub fn add_grain(img: &RgbF32, sigma: f32, rng: &mut SampleRng) -> RgbF32 {
    let mut out = img.clone();
    for px in out.data.chunks_mut(3) {
        // Box-Muller.
        let (u1, u2) = (rng.uniform().max(1e-12), rng.uniform());
        let n = ((-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()) as f32 * sigma;
        for v in px {
            *v = (*v + n).clamp(0.0, 1.0);
        }
    }
    out
}

/// `target` (a real frame, with its camera grain) with the central ellipse replaced by
/// `source`'s face, blended over a soft seam: the swapped face was rendered and warped in, so it
/// is smoother than the frame around it and lacks the frame's sensor noise (the inconsistency
/// face-swap detectors pick up), slightly off in tone, and re-compressed inside the face region.
pub fn manipulate(target: &RgbF32, source: &RgbF32, rng: &mut SampleRng) -> RgbF32 {
    let (w, h) = (target.width, target.height);
    let swapped = blur(source, 1);
    let (cx, cy) = (w as f32 / 2.0 + rng.range(-2.0, 2.0) as f32, h as f32 * 0.55);
    let (rx, ry) = (w as f32 * 0.3, h as f32 * 0.36);
    let tint = rng.range(-0.05, 0.05) as f32;
    let mut blended = target.clone();
    let mut mask = vec![0f32; w * h];
    for y in 0..h {
        for x in 0..w {
            let d = ((x as f32 - cx) / rx).powi(2) + ((y as f32 - cy) / ry).powi(2);
            // Soft mask: 1 inside, fading to 0 over the seam.
            let a = (1.5 - d).clamp(0.0, 1.0);
            mask[y * w + x] = a;
            for c in 0..3 {
                let i = (y * w + x) * 3 + c;
                blended.data[i] = ((1.0 - a) * target.data[i] + a * (swapped.data[i] + tint)).clamp(0.0, 1.0);
            }
        }
    }
    // The swapped face went through another encoder: re-compressed inside the mask only.
    let recompressed = recompress(&blended, rng.int(30, 60) as u8);
    let mut out = blended;
    for (i, v) in out.data.iter_mut().enumerate() {
        let a = mask[i / 3];
        *v = (1.0 - a) * *v + a * recompressed.data[i];
    }
    out
}

/// Standard deviation of the camera grain every real frame carries (in [0, 1] units).
const GRAIN: f32 = 0.04;

fn save_png(img: &RgbF32, path: &Path) -> Result<(), FixtureError> {
    let rgb: Vec<u8> = img.data.iter().map(|v| (v * 255.0).round().clamp(0.0, 255.0) as u8).collect();
    let buf = image::RgbImage::from_raw(img.width as u32, img.height as u32, rgb).expect("size matches");
    buf.save(path).map_err(|e| FixtureError::Png { path: path.into(), reason: e.to_string() })
}

/// Writes the fixture under `out` (`real/`, `fake/`, `faces.csv` with split test / train /
/// unlabelled by original, 1:2:2). `extra` adds the crops listed in another faces.csv.
/// Returns the manifest path.
pub fn build(lfw: &Path, extra: Option<&Path>, out: &Path, size: usize, seed: u64) -> Result<PathBuf, FixtureError> {
    let mut reals: Vec<(String, RgbF32)> = read_lfw(lfw, 100)?
        .into_iter()
        .enumerate()
        .map(|(i, img)| (format!("lfw{i:03}"), resized_crop(&img, 0, 0, 25, 25, size)))
        .collect();
    if let Some(faces) = extra {
        let rows: Vec<FaceRow> = manifest::read_rows(faces)?;
        let base = paths::folder_of(faces);
        for r in rows {
            if let Some(img) = read_image(&base.join(&r.path)) {
                let id = format!("{}_{:06}_{}", r.video_id, r.frame, r.face);
                reals.push((id, resized_crop(&img, 0, 0, img.width, img.height, size)));
            }
        }
    }
    for d in ["real", "fake"] {
        let dir = out.join(d);
        std::fs::create_dir_all(&dir).map_err(|source| FixtureError::Io { path: dir, source })?;
    }
    let mut rows = Vec::new();
    let n = reals.len();
    for (i, (id, img)) in reals.iter().enumerate() {
        let mut rng = SampleRng::new(seed, 0, i as u64, 9);
        let j = (i + 1 + rng.int(0, n - 2)) % n;
        let real = add_grain(img, GRAIN, &mut rng);
        let fake = manipulate(&real, &reals[j].1, &mut rng);
        // 1 in 5 originals held out for testing, 2 in 5 labelled, 2 in 5 unlabelled (for MPL).
        let split = match crate::hash::stable_hash(id) % 5 {
            0 => "test",
            1 | 2 => "train",
            _ => "unlabelled",
        };
        for (label, dir, picture) in [(0u8, "real", &real), (1u8, "fake", &fake)] {
            let rel = format!("{dir}/{id}.png");
            save_png(picture, &out.join(&rel))?;
            rows.push(FaceRow {
                path: rel,
                video_id: format!("{dir}_{id}"),
                original: id.clone(),
                dataset: "fixture".into(),
                label: Some(label),
                split: split.into(),
                x2: size as f32,
                y2: size as f32,
                score: 1.0,
                ..Default::default()
            });
        }
    }
    let path = out.join("faces.csv");
    manifest::write_all(&path, &rows)?;
    Ok(path)
}
