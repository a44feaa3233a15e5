//! Image augmentations of the reference, on RGB images in [0,1] (HWC, f32):
//! RandomResizedCrop(size, scale 0.5-1, ratio 3/4-4/3, torchvision's fallback) ->
//! HorizontalFlip(0.5) -> ColorJitter(0.4, 0.4, 0.4, 0.1) in random order, with p 0.8 ->
//! Grayscale p 0.2. Eval: resize to size.
//!
//! Randomness comes from a [`SampleRng`] seeded by (seed, epoch, index, view), so a sample
//! is augmented the same way whichever worker thread handles it.

/// An RGB image, HWC, values in [0,1].
#[derive(Clone, Debug, PartialEq)]
pub struct RgbF32 {
    pub width: usize,
    pub height: usize,
    pub data: Vec<f32>,
}

impl RgbF32 {
    pub fn from_rgb8(width: usize, height: usize, rgb: &[u8]) -> Self {
        RgbF32 { width, height, data: rgb.iter().map(|v| *v as f32 / 255.0).collect() }
    }
}

/// SplitMix64: small, fast, and the same on every machine.
pub struct SampleRng(u64);

impl SampleRng {
    pub fn new(seed: u64, epoch: u64, index: u64, view: u64) -> Self {
        let mut r = SampleRng(seed ^ 0x9E37_79B9_7F4A_7C15);
        for v in [epoch, index, view] {
            r.0 ^= v.wrapping_mul(0xBF58_476D_1CE4_E5B9);
            r.next_u64();
        }
        r
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in [0, 1).
    pub fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
    pub fn range(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * self.uniform()
    }
    /// Integer in [lo, hi] inclusive.
    pub fn int(&mut self, lo: usize, hi: usize) -> usize {
        lo + (self.next_u64() % (hi - lo + 1) as u64) as usize
    }
    /// A permutation of 0..n.
    pub fn permutation(&mut self, n: usize) -> Vec<usize> {
        let mut v: Vec<usize> = (0..n).collect();
        for i in (1..n).rev() {
            let j = self.int(0, i);
            v.swap(i, j);
        }
        v
    }
}

/// Crops (x, y, w, h) out of `img` and resizes it to size×size, bilinear with half-pixel
/// centres; when shrinking, each output pixel averages the source area it covers.
pub fn resized_crop(img: &RgbF32, x: usize, y: usize, w: usize, h: usize, size: usize) -> RgbF32 {
    let mut out = vec![0f32; size * size * 3];
    let sx = w as f32 / size as f32;
    let sy = h as f32 / size as f32;
    // Supersampling factor: enough taps to cover the source area when shrinking.
    let tx = sx.ceil().max(1.0) as usize;
    let ty = sy.ceil().max(1.0) as usize;
    // A tap's two neighbours and weight along one axis depend only on that axis's output
    // index and tap number: computed once per axis, not per pixel and channel.
    let taps = |n: usize, t: usize, scale: f32, len: usize| -> Vec<(usize, usize, f32)> {
        let mut v = Vec::with_capacity(n * t);
        for o in 0..n {
            for k in 0..t {
                let pos = (o as f32 + (k as f32 + 0.5) / t as f32) * scale;
                let f = (pos - 0.5).clamp(0.0, (len - 1) as f32);
                let i0 = f.floor() as usize;
                v.push((i0, (i0 + 1).min(len - 1), f - i0 as f32));
            }
        }
        v
    };
    let (xt, yt) = (taps(size, tx, sx, w), taps(size, ty, sy, h));
    let row = |yi: usize| (y + yi) * img.width;
    for oy in 0..size {
        for ox in 0..size {
            let mut acc = [0f32; 3];
            for &(y0, y1, ay) in &yt[oy * ty..(oy + 1) * ty] {
                let (r0, r1) = (row(y0), row(y1));
                for &(x0, x1, ax) in &xt[ox * tx..(ox + 1) * tx] {
                    let (a, b, c, d) = ((r0 + x + x0) * 3, (r0 + x + x1) * 3, (r1 + x + x0) * 3, (r1 + x + x1) * 3);
                    for (ch, sum) in acc.iter_mut().enumerate() {
                        let px = &img.data;
                        *sum += (px[a + ch] * (1.0 - ax) + px[b + ch] * ax) * (1.0 - ay) + (px[c + ch] * (1.0 - ax) + px[d + ch] * ax) * ay;
                    }
                }
            }
            for (ch, sum) in acc.iter().enumerate() {
                out[(oy * size + ox) * 3 + ch] = sum / (tx * ty) as f32;
            }
        }
    }
    RgbF32 { width: size, height: size, data: out }
}

/// torchvision's RandomResizedCrop box: 10 tries at a random area and aspect ratio, else a
/// centre crop with the ratio clamped.
pub fn random_resized_crop_box(w: usize, h: usize, rng: &mut SampleRng) -> (usize, usize, usize, usize) {
    let (scale, ratio) = ((0.5, 1.0), (3.0f64 / 4.0, 4.0f64 / 3.0));
    let area = (w * h) as f64;
    for _ in 0..10 {
        let target = area * rng.range(scale.0, scale.1);
        let ar = rng.range(ratio.0.ln(), ratio.1.ln()).exp();
        let cw = (target * ar).sqrt().round() as usize;
        let ch = (target / ar).sqrt().round() as usize;
        if cw > 0 && ch > 0 && cw <= w && ch <= h {
            let y = rng.int(0, h - ch);
            let x = rng.int(0, w - cw);
            return (x, y, cw, ch);
        }
    }
    let in_ratio = w as f64 / h as f64;
    let (cw, ch) = if in_ratio < ratio.0 {
        (w, (w as f64 / ratio.0).round() as usize)
    } else if in_ratio > ratio.1 {
        ((h as f64 * ratio.1).round() as usize, h)
    } else {
        (w, h)
    };
    ((w - cw) / 2, (h - ch) / 2, cw, ch)
}

fn gray(r: f32, g: f32, b: f32) -> f32 {
    0.299 * r + 0.587 * g + 0.114 * b
}

fn blend(img: &mut RgbF32, other: impl Fn(usize) -> f32, factor: f32) {
    for (i, v) in img.data.iter_mut().enumerate() {
        *v = (factor * *v + (1.0 - factor) * other(i)).clamp(0.0, 1.0);
    }
}

fn adjust_brightness(img: &mut RgbF32, f: f32) {
    blend(img, |_| 0.0, f);
}

fn adjust_contrast(img: &mut RgbF32, f: f32) {
    let n = img.width * img.height;
    let mean = img.data.chunks(3).map(|p| gray(p[0], p[1], p[2])).sum::<f32>() / n as f32;
    blend(img, |_| mean, f);
}

fn adjust_saturation(img: &mut RgbF32, f: f32) {
    let g: Vec<f32> = img.data.chunks(3).map(|p| gray(p[0], p[1], p[2])).collect();
    blend(img, |i| g[i / 3], f);
}

fn adjust_hue(img: &mut RgbF32, shift: f32) {
    for p in img.data.chunks_mut(3) {
        let (r, g, b) = (p[0], p[1], p[2]);
        let max = r.max(g).max(b);
        let min = r.min(g).min(b);
        let d = max - min;
        let v = max;
        let s = if max > 0.0 { d / max } else { 0.0 };
        let mut h = if d == 0.0 {
            0.0
        } else if max == r {
            ((g - b) / d).rem_euclid(6.0)
        } else if max == g {
            (b - r) / d + 2.0
        } else {
            (r - g) / d + 4.0
        } / 6.0;
        h = (h + shift).rem_euclid(1.0);
        let i = (h * 6.0).floor();
        let f = h * 6.0 - i;
        let (pp, q, t) = (v * (1.0 - s), v * (1.0 - s * f), v * (1.0 - s * (1.0 - f)));
        let (nr, ng, nb) = match i as i32 % 6 {
            0 => (v, t, pp),
            1 => (q, v, pp),
            2 => (pp, v, t),
            3 => (pp, q, v),
            4 => (t, pp, v),
            _ => (v, pp, q),
        };
        p[0] = nr;
        p[1] = ng;
        p[2] = nb;
    }
}

/// The reference's training augmentation of one view.
pub fn train_view(img: &RgbF32, size: usize, rng: &mut SampleRng) -> RgbF32 {
    let (x, y, w, h) = random_resized_crop_box(img.width, img.height, rng);
    let mut out = resized_crop(img, x, y, w, h, size);
    if rng.uniform() < 0.5 {
        for row in out.data.chunks_mut(size * 3) {
            for i in 0..size / 2 {
                for c in 0..3 {
                    row.swap(i * 3 + c, (size - 1 - i) * 3 + c);
                }
            }
        }
    }
    if rng.uniform() < 0.8 {
        let b = rng.range(0.6, 1.4) as f32;
        let c = rng.range(0.6, 1.4) as f32;
        let s = rng.range(0.6, 1.4) as f32;
        let hshift = rng.range(-0.1, 0.1) as f32;
        for op in rng.permutation(4) {
            match op {
                0 => adjust_brightness(&mut out, b),
                1 => adjust_contrast(&mut out, c),
                2 => adjust_saturation(&mut out, s),
                _ => adjust_hue(&mut out, hshift),
            }
        }
    }
    if rng.uniform() < 0.2 {
        for p in out.data.chunks_mut(3) {
            let g = gray(p[0], p[1], p[2]);
            p.fill(g);
        }
    }
    out
}

/// Evaluation transform: resize to size×size.
pub fn eval_view(img: &RgbF32, size: usize) -> RgbF32 {
    resized_crop(img, 0, 0, img.width, img.height, size)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The straightforward form of [`resized_crop`]: every tap computed per pixel and channel.
    fn resized_crop_per_tap(img: &RgbF32, x: usize, y: usize, w: usize, h: usize, size: usize) -> RgbF32 {
        let mut out = vec![0f32; size * size * 3];
        let (sx, sy) = (w as f32 / size as f32, h as f32 / size as f32);
        let (tx, ty) = (sx.ceil().max(1.0) as usize, sy.ceil().max(1.0) as usize);
        let px = |xx: f32, yy: f32, c: usize| -> f32 {
            let fx = (xx - 0.5).clamp(0.0, (w - 1) as f32);
            let fy = (yy - 0.5).clamp(0.0, (h - 1) as f32);
            let (x0, y0) = (fx.floor() as usize, fy.floor() as usize);
            let (x1, y1) = ((x0 + 1).min(w - 1), (y0 + 1).min(h - 1));
            let (ax, ay) = (fx - x0 as f32, fy - y0 as f32);
            let at = |xi: usize, yi: usize| img.data[((y + yi) * img.width + (x + xi)) * 3 + c];
            (at(x0, y0) * (1.0 - ax) + at(x1, y0) * ax) * (1.0 - ay) + (at(x0, y1) * (1.0 - ax) + at(x1, y1) * ax) * ay
        };
        for oy in 0..size {
            for ox in 0..size {
                for c in 0..3 {
                    let mut acc = 0.0;
                    for j in 0..ty {
                        for i in 0..tx {
                            let xx = (ox as f32 + (i as f32 + 0.5) / tx as f32) * sx;
                            let yy = (oy as f32 + (j as f32 + 0.5) / ty as f32) * sy;
                            acc += px(xx, yy, c);
                        }
                    }
                    out[(oy * size + ox) * 3 + c] = acc / (tx * ty) as f32;
                }
            }
        }
        RgbF32 { width: size, height: size, data: out }
    }

    #[test]
    fn resized_crop_equals_its_per_tap_form_bit_for_bit() {
        let mut rng = SampleRng::new(1, 2, 3, 4);
        let data = (0..97 * 83 * 3).map(|_| rng.uniform() as f32).collect();
        let img = RgbF32 { width: 97, height: 83, data };
        for (x, y, w, h, size) in [(0, 0, 97, 83, 64), (5, 7, 60, 41, 64), (10, 3, 20, 30, 64), (0, 0, 97, 83, 25), (30, 20, 1, 1, 8)] {
            assert_eq!(resized_crop(&img, x, y, w, h, size), resized_crop_per_tap(&img, x, y, w, h, size), "{x},{y} {w}x{h} -> {size}");
        }
    }

    fn gradient(w: usize, h: usize) -> RgbF32 {
        let data = (0..w * h).flat_map(|i| [(i % w) as f32 / w as f32, (i / w) as f32 / h as f32, 0.5]).collect();
        RgbF32 { width: w, height: h, data }
    }

    #[test]
    fn same_seed_epoch_index_same_view_and_different_index_different_view() {
        let img = gradient(80, 70);
        let a = train_view(&img, 64, &mut SampleRng::new(777, 0, 5, 0));
        let b = train_view(&img, 64, &mut SampleRng::new(777, 0, 5, 0));
        let c = train_view(&img, 64, &mut SampleRng::new(777, 0, 6, 0));
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert!(a.data.iter().all(|v| (0.0..=1.0).contains(v)));
        assert_eq!(a.data.len(), 64 * 64 * 3);
    }

    #[test]
    fn random_resized_crops_keep_area_and_ratio_bounds() {
        let mut rng = SampleRng::new(1, 2, 3, 4);
        for _ in 0..500 {
            let (x, y, w, h) = random_resized_crop_box(100, 60, &mut rng);
            assert!(x + w <= 100 && y + h <= 60);
            let area = (w * h) as f64 / 6000.0;
            assert!(area > 0.45 && area <= 1.0, "{area}");
        }
        // A very thin image falls back to a centre crop with the ratio clamped.
        let mut rng = SampleRng::new(0, 0, 0, 0);
        let (x, y, w, h) = random_resized_crop_box(400, 10, &mut rng);
        assert!(w <= 400 && h <= 10 && x + w <= 400 && y + h <= 10);
    }

    #[test]
    fn hue_shift_of_zero_and_full_turn_is_identity_and_gray_has_no_hue() {
        let img = gradient(8, 8);
        let mut a = img.clone();
        adjust_hue(&mut a, 0.0);
        assert!(a.data.iter().zip(&img.data).all(|(x, y)| (x - y).abs() < 1e-5));
        let mut g = RgbF32 { width: 1, height: 1, data: vec![0.3, 0.3, 0.3] };
        adjust_hue(&mut g, 0.07);
        assert!(g.data.iter().all(|v| (v - 0.3).abs() < 1e-6));
    }

    #[test]
    fn resizing_a_flat_image_keeps_its_value() {
        let img = RgbF32 { width: 30, height: 20, data: vec![0.25; 600 * 3] };
        let out = eval_view(&img, 64);
        assert!(out.data.iter().all(|v| (v - 0.25).abs() < 1e-6));
        let small = eval_view(&gradient(200, 200), 16);
        assert_eq!(small.data.len(), 16 * 16 * 3);
    }
}
