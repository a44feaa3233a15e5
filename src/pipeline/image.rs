//! Packed 8-bit BGR images: the frames that flow from decode to detect and crop.

use opencv::core::{Mat, Vec3b, Vector};
use opencv::prelude::*;

/// A packed BGR24 image (row stride = 3 × width).
#[derive(Clone)]
pub struct BgrImage {
    pub width: usize,
    pub height: usize,
    pub data: Vec<u8>,
}

impl std::fmt::Debug for BgrImage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "BgrImage({}x{})", self.width, self.height)
    }
}

impl BgrImage {
    pub fn new(width: usize, height: usize, data: Vec<u8>) -> Self {
        assert_eq!(data.len(), width * height * 3, "BGR buffer size");
        BgrImage { width, height, data }
    }

    /// Copies rows out of a buffer whose rows are `stride` bytes apart (FFmpeg frames pad rows).
    pub fn from_strided(width: usize, height: usize, stride: usize, src: &[u8]) -> Self {
        let row = width * 3;
        let mut data = Vec::with_capacity(row * height);
        for y in 0..height {
            data.extend_from_slice(&src[y * stride..y * stride + row]);
        }
        BgrImage { width, height, data }
    }

    /// The image turned clockwise by `degrees` (0, 90, 180 or 270), as a video's display matrix asks.
    pub fn rotated_clockwise(self, degrees: u32) -> Self {
        let (w, h) = (self.width, self.height);
        let px = |x: usize, y: usize| {
            let i = (y * w + x) * 3;
            [self.data[i], self.data[i + 1], self.data[i + 2]]
        };
        let (nw, nh) = match degrees % 360 {
            0 => return self,
            90 | 270 => (h, w),
            _ => (w, h),
        };
        let mut out = Vec::with_capacity(nw * nh * 3);
        for y in 0..nh {
            for x in 0..nw {
                let p = match degrees % 360 {
                    90 => px(y, h - 1 - x),
                    180 => px(w - 1 - x, h - 1 - y),
                    _ => px(w - 1 - y, x),
                };
                out.extend_from_slice(&p);
            }
        }
        BgrImage { width: nw, height: nh, data: out }
    }
}

impl BgrImage {
    /// Decodes an encoded image (PNG, JPEG, ...) with OpenCV. `None` when the bytes do not decode.
    pub fn decode(bytes: &[u8]) -> Option<BgrImage> {
        let buf = Vector::<u8>::from_slice(bytes);
        let mat = opencv::imgcodecs::imdecode(&buf, opencv::imgcodecs::IMREAD_COLOR).ok()?;
        if mat.empty() {
            return None;
        }
        let mat = if mat.is_continuous() { mat } else { mat.try_clone().ok()? };
        let (w, h) = (mat.cols() as usize, mat.rows() as usize);
        Some(BgrImage::new(w, h, mat.data_bytes().ok()?.to_vec()))
    }

    /// The image resized to `width` x `height` by area averaging (OpenCV `INTER_AREA`).
    pub fn resized_area(&self, width: usize, height: usize) -> opencv::Result<BgrImage> {
        let src = Mat::new_rows_cols_with_bytes::<Vec3b>(self.height as i32, self.width as i32, &self.data)?;
        let mut dst = Mat::default();
        opencv::imgproc::resize(&src, &mut dst, opencv::core::Size::new(width as i32, height as i32), 0.0, 0.0, opencv::imgproc::INTER_AREA)?;
        Ok(BgrImage::new(width, height, dst.data_bytes()?.to_vec()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn numbered(w: usize, h: usize) -> BgrImage {
        let data = (0..w * h).flat_map(|i| [i as u8, 0, 0]).collect();
        BgrImage::new(w, h, data)
    }

    #[test]
    fn rotation_moves_the_top_left_corner_where_it_should() {
        // 3x2 image, pixels numbered 0..6 row-major.
        let img = numbered(3, 2);
        let r90 = img.clone().rotated_clockwise(90);
        assert_eq!((r90.width, r90.height), (2, 3));
        // Clockwise: the bottom-left pixel (3) becomes the top-left one.
        assert_eq!(r90.data[0], 3);
        assert_eq!(r90.data[3], 0);
        let r180 = img.clone().rotated_clockwise(180);
        assert_eq!(r180.data[0], 5);
        let r270 = img.clone().rotated_clockwise(270);
        assert_eq!((r270.width, r270.height), (2, 3));
        assert_eq!(r270.data[0], 2);
        let back = img.clone().rotated_clockwise(90).rotated_clockwise(270);
        assert_eq!(back.data, img.data);
    }

    #[test]
    fn strided_rows_drop_the_padding() {
        let src = [1, 2, 3, 9, 9, 4, 5, 6, 9, 9];
        let img = BgrImage::from_strided(1, 2, 5, &src);
        assert_eq!(img.data, vec![1, 2, 3, 4, 5, 6]);
    }
}
