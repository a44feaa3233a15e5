//! Cropping faces out of frames and encoding them (OpenCV).
//!
//! Crop rules: `reference` (the SupCon-MPL reference: square, made by extending the short side
//! around the box centre, no margin) and `margin:F` (F × the box size added on each side, as
//! the DFDC winner selimsef did with F = 1/3). Crops are clipped to the frame.

use std::str::FromStr;

use opencv::core::{Mat, Vec3b, Vector};
use opencv::prelude::*;

use crate::config::ParseError;
use crate::pipeline::detect::Face;
use crate::pipeline::image::BgrImage;

/// How a detection box becomes a crop rectangle.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum CropRule {
    Reference,
    Margin(f32),
    /// The face warped by the similarity transform that takes its five landmarks closest (least
    /// squares) to a fixed five-point template in a `size`² crop; `margin` widens the view
    /// (the template shrunk towards the centre by 1 / (1 + 2 margin)).
    Aligned { size: u32, margin: f32 },
}

/// The five-point template of a 112x112 aligned face (ArcFace's): eyes, nose, mouth corners,
/// as the detectors order their landmarks (the subject's right eye, on the image's left, first).
pub const ALIGN_TEMPLATE: [[f64; 2]; 5] = [[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366], [41.5493, 92.3655], [70.7299, 92.2041]];

/// The template's points in a `size`² crop with `margin`.
pub fn template_points(size: u32, margin: f32) -> [[f64; 2]; 5] {
    ALIGN_TEMPLATE.map(|[x, y]| {
        let k = 1.0 / (1.0 + 2.0 * margin as f64);
        [((x / 112.0 - 0.5) * k + 0.5) * size as f64, ((y / 112.0 - 0.5) * k + 0.5) * size as f64]
    })
}

/// The similarity transform (rotation, uniform scale, translation) taking `face`'s landmarks
/// closest, in least squares, to the template of a `size`² crop: `[a, -b, tx, b, a, ty]`, the
/// 2x3 matrix mapping frame pixels to crop pixels (Umeyama's solution, which in 2-D without
/// reflection is this closed form).
pub fn alignment(face: &Face, size: u32, margin: f32) -> [f64; 6] {
    let src: Vec<[f64; 2]> = (0..5).map(|k| [face.landmarks[2 * k] as f64, face.landmarks[2 * k + 1] as f64]).collect();
    let dst = template_points(size, margin);
    let mean = |p: &[[f64; 2]]| p.iter().fold([0.0, 0.0], |m, q| [m[0] + q[0] / 5.0, m[1] + q[1] / 5.0]);
    let (ms, md) = (mean(&src), mean(&dst));
    let (mut a, mut b, mut var) = (0.0, 0.0, 0.0);
    for (p, q) in src.iter().zip(&dst) {
        let (x, y) = ([p[0] - ms[0], p[1] - ms[1]], [q[0] - md[0], q[1] - md[1]]);
        a += x[0] * y[0] + x[1] * y[1];
        b += x[0] * y[1] - x[1] * y[0];
        var += x[0] * x[0] + x[1] * x[1];
    }
    if var <= 0.0 {
        return [1.0, 0.0, md[0] - ms[0], 0.0, 1.0, md[1] - ms[1]];
    }
    let (a, b) = (a / var, b / var);
    [a, -b, md[0] - (a * ms[0] - b * ms[1]), b, a, md[1] - (b * ms[0] + a * ms[1])]
}

impl FromStr for CropRule {
    type Err = ParseError;
    fn from_str(s: &str) -> Result<Self, ParseError> {
        match s.split_once(':') {
            None if s == "reference" => Ok(CropRule::Reference),
            Some(("margin", f)) => f
                .parse::<f32>()
                .ok()
                .filter(|f| f.is_finite() && *f >= 0.0)
                .map(CropRule::Margin)
                .ok_or_else(|| ParseError(format!("invalid crop margin '{f}': expected a number >= 0"))),
            None if s == "aligned" => Ok(CropRule::Aligned { size: 112, margin: 0.0 }),
            Some(("aligned", rest)) => {
                let bad = || ParseError(format!("invalid crop rule '{s}': expected aligned, aligned:SIZE or aligned:SIZE:MARGIN (SIZE 16-4096, MARGIN >= 0)"));
                let (size, margin) = rest.split_once(':').unwrap_or((rest, "0"));
                let size = size.parse::<u32>().ok().filter(|v| (16..=4096).contains(v)).ok_or_else(bad)?;
                let margin = margin.parse::<f32>().ok().filter(|m| m.is_finite() && *m >= 0.0).ok_or_else(bad)?;
                Ok(CropRule::Aligned { size, margin })
            }
            _ => Err(ParseError(format!("invalid crop rule '{s}': expected reference, margin:F or aligned[:SIZE[:MARGIN]]"))),
        }
    }
}

impl std::fmt::Display for CropRule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CropRule::Reference => write!(f, "reference"),
            CropRule::Margin(m) => write!(f, "margin:{m}"),
            CropRule::Aligned { size, margin } => write!(f, "aligned:{size}:{margin}"),
        }
    }
}

/// Encoded image format of the crops.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ImageFormat {
    /// PNG written by the `png` crate's fdeflate encoder: lossless, and fast to write.
    Png,
    /// PNG written by OpenCV (libpng) at this zlib level (0-9): the same pixels.
    PngLevel(u8),
    Jpeg(u8),
}


impl FromStr for ImageFormat {
    type Err = ParseError;
    fn from_str(s: &str) -> Result<Self, ParseError> {
        match s {
            "png" => Ok(ImageFormat::Png),
            "jpeg" | "jpg" => Ok(ImageFormat::Jpeg(95)),
            other if other.starts_with("png:") => other[4..]
                .parse::<u8>()
                .ok()
                .filter(|l| *l <= 9)
                .map(ImageFormat::PngLevel)
                .ok_or_else(|| ParseError(format!("invalid image format '{s}': expected png:L with L the zlib level 0-9"))),
            other => other
                .strip_prefix("jpeg:")
                .and_then(|q| q.parse::<u8>().ok())
                .filter(|q| (1..=100).contains(q))
                .map(ImageFormat::Jpeg)
                .ok_or_else(|| ParseError(format!("invalid image format '{s}': expected png, png:L (zlib level 0-9), jpeg or jpeg:Q (1-100)"))),
        }
    }
}

impl ImageFormat {
    pub fn extension(&self) -> &'static str {
        match self {
            ImageFormat::Png | ImageFormat::PngLevel(_) => "png",
            ImageFormat::Jpeg(_) => "jpg",
        }
    }
}

/// The pixel rectangle (x, y, width, height) cut out of a `width`×`height` frame for `face`.
/// Never empty for a face inside the frame.
pub fn crop_rect(face: &Face, rule: CropRule, width: usize, height: usize) -> (i32, i32, i32, i32) {
    let (mut x1, mut y1, mut x2, mut y2) =
        (face.x1.round() as i64, face.y1.round() as i64, face.x2.round() as i64, face.y2.round() as i64);
    match rule {
        CropRule::Reference => {
            let (w, h) = (x2 - x1, y2 - y1);
            if w > h {
                let d = w - h;
                y1 -= d / 2;
                y2 += d - d / 2;
            } else {
                let d = h - w;
                x1 -= d / 2;
                x2 += d - d / 2;
            }
        }
        // The box around the face (the aligned crop itself is warped, see `cut`).
        CropRule::Aligned { .. } => {}
        CropRule::Margin(m) => {
            let pw = ((x2 - x1) as f32 * m).round() as i64;
            let ph = ((y2 - y1) as f32 * m).round() as i64;
            x1 -= pw;
            x2 += pw;
            y1 -= ph;
            y2 += ph;
        }
    }
    let (w, h) = (width as i64, height as i64);
    let x1 = x1.clamp(0, w - 1);
    let y1 = y1.clamp(0, h - 1);
    let x2 = x2.clamp(x1 + 1, w);
    let y2 = y2.clamp(y1 + 1, h);
    (x1 as i32, y1 as i32, (x2 - x1) as i32, (y2 - y1) as i32)
}

/// The `align` column of a face's `faces.csv` row: the aligned crop's 2x3 transform from frame
/// to crop pixels (`a b tx c d ty`), empty for the other rules.
pub fn alignment_text(face: &Face, rule: CropRule) -> String {
    match rule {
        CropRule::Aligned { size, margin } => alignment(face, size, margin).iter().map(|v| format!("{:.6}", v)).collect::<Vec<_>>().join(" "),
        _ => String::new(),
    }
}

/// The pixels of `face`'s crop under `rule` (a copy: the frame can go): its rectangle, or for
/// `aligned` the face warped onto the template (bilinear, borders replicated).
pub fn cut(frame: &BgrImage, face: &Face, rule: CropRule) -> opencv::Result<BgrImage> {
    if let CropRule::Aligned { size, margin } = rule {
        let m = alignment(face, size, margin);
        let src = Mat::new_rows_cols_with_bytes::<Vec3b>(frame.height as i32, frame.width as i32, &frame.data)?;
        let matrix = Mat::from_slice_2d(&[&m[0..3], &m[3..6]])?;
        let mut out = Mat::default();
        let side = opencv::core::Size::new(size as i32, size as i32);
        opencv::imgproc::warp_affine(&src, &mut out, &matrix, side, opencv::imgproc::INTER_LINEAR, opencv::core::BORDER_REPLICATE, opencv::core::Scalar::default())?;
        return Ok(BgrImage::new(size as usize, size as usize, out.data_bytes()?.to_vec()));
    }
    let (x, y, w, h) = crop_rect(face, rule, frame.width, frame.height);
    let (x, y, w, h) = (x as usize, y as usize, w as usize, h as usize);
    let mut data = Vec::with_capacity(w * h * 3);
    for row in y..y + h {
        let start = (row * frame.width + x) * 3;
        data.extend_from_slice(&frame.data[start..start + w * 3]);
    }
    Ok(BgrImage::new(w, h, data))
}

/// Resizes a cut crop to `size`² when `size` > 0, and encodes it.
pub fn resize_and_encode(cut: &BgrImage, size: u32, format: ImageFormat) -> opencv::Result<Vec<u8>> {
    let mat = Mat::new_rows_cols_with_bytes::<Vec3b>(cut.height as i32, cut.width as i32, &cut.data)?;
    let (w, h) = (cut.width as i32, cut.height as i32);
    if size > 0 && (w != size as i32 || h != size as i32) {
        let shrink = w > size as i32 || h > size as i32;
        let interp = if shrink { opencv::imgproc::INTER_AREA } else { opencv::imgproc::INTER_CUBIC };
        let mut resized = Mat::default();
        opencv::imgproc::resize(&mat, &mut resized, opencv::core::Size::new(size as i32, size as i32), 0.0, 0.0, interp)?;
        return encode(&resized, format);
    }
    encode(&mat, format)
}

/// Cuts `face` out of `frame` with `rule`, resizes it to `size`² when `size` > 0, and encodes it.
pub fn crop_and_encode(frame: &BgrImage, face: &Face, rule: CropRule, size: u32, format: ImageFormat) -> opencv::Result<Vec<u8>> {
    resize_and_encode(&cut(frame, face, rule)?, size, format)
}

/// PNG through the `png` crate's fdeflate encoder (lossless like every PNG; several times
/// faster than libpng at zlib level 1, files of about the same size: README).
fn encode_png_fast(mat: &impl opencv::core::ToInputArray) -> opencv::Result<Vec<u8>> {
    use image::ImageEncoder;
    let input = mat.input_array()?;
    let m = input.get_mat(-1)?;
    let (w, h) = (m.cols() as usize, m.rows() as usize);
    let mut rgb = Vec::with_capacity(w * h * 3);
    for y in 0..h as i32 {
        let row = m.at_row::<Vec3b>(y)?;
        for px in row {
            rgb.extend_from_slice(&[px[2], px[1], px[0]]);
        }
    }
    // Adaptive filtering: files as small as libpng's level 1 (Up and Sub are 25 % larger and
    // barely faster; measured on the bench-reference crops).
    let mut out = Vec::new();
    image::codecs::png::PngEncoder::new_with_quality(&mut out, image::codecs::png::CompressionType::Fast, image::codecs::png::FilterType::Adaptive)
        .write_image(&rgb, w as u32, h as u32, image::ExtendedColorType::Rgb8)
        .map_err(|e| opencv::Error::new(opencv::core::StsError, e.to_string()))?;
    Ok(out)
}

/// Encodes a BGR Mat as PNG or JPEG.
pub fn encode(mat: &impl opencv::core::ToInputArray, format: ImageFormat) -> opencv::Result<Vec<u8>> {
    let mut buf = Vector::<u8>::new();
    let (ext, params) = match format {
        ImageFormat::Png => return encode_png_fast(mat),
        ImageFormat::PngLevel(l) => (".png", Vector::from_slice(&[opencv::imgcodecs::IMWRITE_PNG_COMPRESSION, l as i32])),
        ImageFormat::Jpeg(q) => (".jpg", Vector::from_slice(&[opencv::imgcodecs::IMWRITE_JPEG_QUALITY, q as i32])),
    };
    opencv::imgcodecs::imencode(ext, mat, &mut buf, &params)?;
    Ok(buf.to_vec())
}

/// OpenCV's version, for `scmpl doctor`.
pub fn opencv_version() -> String {
    opencv::core::get_version_string().unwrap_or_else(|_| "?".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn face(x1: f32, y1: f32, x2: f32, y2: f32) -> Face {
        Face { x1, y1, x2, y2, score: 1.0, landmarks: [0.0; 10] }
    }

    #[test]
    fn rules_parse() {
        assert_eq!("reference".parse::<CropRule>().unwrap(), CropRule::Reference);
        assert_eq!("margin:0.25".parse::<CropRule>().unwrap(), CropRule::Margin(0.25));
        assert!("margin:-1".parse::<CropRule>().is_err());
        assert!("square".parse::<CropRule>().is_err());
        assert_eq!("jpeg:80".parse::<ImageFormat>().unwrap(), ImageFormat::Jpeg(80));
        assert!("gif".parse::<ImageFormat>().is_err());
    }

    #[test]
    fn fast_png_keeps_every_pixel_of_a_real_crop() {
        let bytes = std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/media/astronaut.png")).unwrap();
        let img = crate::pipeline::image::BgrImage::decode(&bytes).unwrap();
        let f = face(150.0, 40.0, 330.0, 260.0);
        for format in [ImageFormat::Png, ImageFormat::PngLevel(1)] {
            let png = crop_and_encode(&img, &f, CropRule::Reference, 0, format).unwrap();
            let back = crate::pipeline::image::BgrImage::decode(&png).unwrap();
            let (x, y, w, h) = crop_rect(&f, CropRule::Reference, img.width, img.height);
            assert_eq!((back.width, back.height), (w as usize, h as usize));
            for row in 0..h as usize {
                let src = &img.data[((y as usize + row) * img.width + x as usize) * 3..][..w as usize * 3];
                assert_eq!(&back.data[row * w as usize * 3..][..w as usize * 3], src, "{format:?} row {row}");
            }
        }
    }

    #[test]
    fn reference_rule_squares_by_extending_the_short_side() {
        // 40 wide, 60 tall: extend width by 20, 10 each side.
        assert_eq!(crop_rect(&face(100.0, 100.0, 140.0, 160.0), CropRule::Reference, 640, 480), (90, 100, 60, 60));
        // 61 wide, 40 tall: height grows by 21 (10 above, 11 below).
        assert_eq!(crop_rect(&face(10.0, 50.0, 71.0, 90.0), CropRule::Reference, 640, 480), (10, 40, 61, 61));
    }

    #[test]
    fn margin_rule_adds_a_fraction_per_side_and_clips() {
        assert_eq!(crop_rect(&face(100.0, 100.0, 160.0, 190.0), CropRule::Margin(1.0 / 3.0), 640, 480), (80, 70, 100, 150));
        // Near the corner, clipped to the frame.
        assert_eq!(crop_rect(&face(0.0, 0.0, 30.0, 30.0), CropRule::Margin(0.5), 100, 100), (0, 0, 45, 45));
    }
}
