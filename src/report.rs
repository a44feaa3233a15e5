//! Pictures people would rather look at than read, drawn with OpenCV into PNGs: line charts
//! (training curves from a run's `metrics.csv`, ROC curves per domain) and contact sheets
//! (a grid of a video's crops with their detector scores).

use std::path::{Path, PathBuf};

use opencv::core::{Mat, Point, Rect, Scalar, Vec3b, CV_8UC3};
use opencv::imgproc::{self, FONT_HERSHEY_SIMPLEX, LINE_AA};
use opencv::prelude::*;

const COLORS: [(f64, f64, f64); 8] = [
    (180.0, 119.0, 31.0),
    (14.0, 127.0, 255.0),
    (44.0, 160.0, 44.0),
    (40.0, 39.0, 214.0),
    (189.0, 103.0, 148.0),
    (75.0, 86.0, 140.0),
    (194.0, 119.0, 227.0),
    (127.0, 127.0, 127.0),
];

fn color(i: usize) -> Scalar {
    let (b, g, r) = COLORS[i % COLORS.len()];
    Scalar::new(b, g, r, 0.0)
}

fn black() -> Scalar {
    Scalar::new(30.0, 30.0, 30.0, 0.0)
}

fn text(img: &mut Mat, s: &str, x: i32, y: i32, scale: f64, c: Scalar) -> opencv::Result<()> {
    imgproc::put_text(img, s, Point::new(x, y), FONT_HERSHEY_SIMPLEX, scale, c, 1, LINE_AA, false)
}

fn fmt_tick(v: f64) -> String {
    if v.abs() >= 1000.0 || (v != 0.0 && v.abs() < 0.01) { format!("{v:.1e}") } else { format!("{v:.3}").trim_end_matches('0').trim_end_matches('.').to_string() }
}

/// A line chart of named series of (x, y) points, `w`×`h` pixels, with axes, ticks and legend.
pub fn line_chart(title: &str, xlabel: &str, series: &[(String, Vec<(f64, f64)>)], w: i32, h: i32, fixed: Option<(f64, f64, f64, f64)>) -> opencv::Result<Mat> {
    let mut img = Mat::new_rows_cols_with_default(h, w, CV_8UC3, Scalar::all(255.0))?;
    let (l, r, t, b) = (70, 170, 40, 50);
    let (pw, ph) = (w - l - r, h - t - b);
    let pts: Vec<(f64, f64)> = series.iter().flat_map(|s| s.1.iter().copied()).filter(|p| p.0.is_finite() && p.1.is_finite()).collect();
    let (mut x0, mut x1, mut y0, mut y1) = fixed.unwrap_or_else(|| {
        let fold = |f: fn(f64, f64) -> f64, init: f64, sel: fn(&(f64, f64)) -> f64| pts.iter().map(sel).fold(init, f);
        (fold(f64::min, f64::INFINITY, |p| p.0), fold(f64::max, f64::NEG_INFINITY, |p| p.0), fold(f64::min, f64::INFINITY, |p| p.1), fold(f64::max, f64::NEG_INFINITY, |p| p.1))
    });
    if !x0.is_finite() || !x1.is_finite() {
        (x0, x1) = (0.0, 1.0);
    }
    if !y0.is_finite() || !y1.is_finite() {
        (y0, y1) = (0.0, 1.0);
    }
    if x1 - x0 <= 0.0 {
        x1 = x0 + 1.0;
    }
    if y1 - y0 <= 0.0 {
        y1 = y0 + 1.0;
    }
    let px = |x: f64| l + ((x - x0) / (x1 - x0) * pw as f64).round() as i32;
    let py = |y: f64| t + ph - ((y - y0) / (y1 - y0) * ph as f64).round() as i32;
    let grid = Scalar::new(225.0, 225.0, 225.0, 0.0);
    for k in 0..=4 {
        let fx = x0 + (x1 - x0) * k as f64 / 4.0;
        let fy = y0 + (y1 - y0) * k as f64 / 4.0;
        imgproc::line_def(&mut img, Point::new(px(fx), t), Point::new(px(fx), t + ph), grid)?;
        imgproc::line_def(&mut img, Point::new(l, py(fy)), Point::new(l + pw, py(fy)), grid)?;
        text(&mut img, &fmt_tick(fx), px(fx) - 15, t + ph + 18, 0.4, black())?;
        text(&mut img, &fmt_tick(fy), 5, py(fy) + 4, 0.4, black())?;
    }
    imgproc::rectangle_def(&mut img, Rect::new(l, t, pw, ph), black())?;
    text(&mut img, title, l, 25, 0.6, black())?;
    text(&mut img, xlabel, l + pw / 2 - 20, h - 12, 0.45, black())?;
    for (i, (name, s)) in series.iter().enumerate() {
        let c = color(i);
        let mut prev: Option<Point> = None;
        for &(x, y) in s.iter().filter(|p| p.0.is_finite() && p.1.is_finite()) {
            let p = Point::new(px(x.clamp(x0, x1)), py(y.clamp(y0, y1)));
            if let Some(q) = prev {
                imgproc::line(&mut img, q, p, c, 2, LINE_AA, 0)?;
            } else if s.len() == 1 {
                imgproc::circle(&mut img, p, 3, c, -1, LINE_AA, 0)?;
            }
            prev = Some(p);
        }
        let ly = t + 15 + 20 * i as i32;
        imgproc::line(&mut img, Point::new(l + pw + 10, ly - 4), Point::new(l + pw + 30, ly - 4), c, 2, LINE_AA, 0)?;
        text(&mut img, name, l + pw + 35, ly, 0.4, black())?;
    }
    Ok(img)
}

pub fn write_png(img: &Mat, path: &Path) -> Result<(), String> {
    let bytes = crate::crop::encode(img, crate::crop::ImageFormat::Png).map_err(|e| format!("{}: {e}", path.display()))?;
    std::fs::write(path, bytes).map_err(|e| format!("{}: {e}", path.display()))
}

/// Training curves of a run: every loss/accuracy column of `metrics.csv` against the step.
pub fn training_curves(run: &Path) -> Result<PathBuf, String> {
    let path = run.join("metrics.csv");
    let mut r = csv::Reader::from_path(&path).map_err(|e| format!("{}: {e} (not a training run?)", path.display()))?;
    let headers: Vec<String> = r.headers().map_err(|e| e.to_string())?.iter().map(str::to_string).collect();
    let cols: Vec<usize> = (1..headers.len()).filter(|i| !matches!(headers[*i].as_str(), "stage" | "images_per_s")).collect();
    let mut series: Vec<(String, Vec<(f64, f64)>)> = cols.iter().map(|i| (headers[*i].clone(), Vec::new())).collect();
    for rec in r.records() {
        let rec = rec.map_err(|e| format!("{}: {e}", path.display()))?;
        let Ok(step) = rec[0].parse::<f64>() else { continue };
        for (k, i) in cols.iter().enumerate() {
            if let Ok(v) = rec[*i].parse::<f64>() {
                series[k].1.push((step, v));
            }
        }
    }
    series.retain(|s| !s.1.is_empty());
    if series.is_empty() {
        return Err(format!("{}: no steps logged yet", path.display()));
    }
    let img = line_chart(&format!("training curves: {}", run.display()), "step", &series, 900, 500, None).map_err(|e| e.to_string())?;
    let out = run.join("curves.png");
    write_png(&img, &out)?;
    Ok(out)
}

/// ROC curves, one per (domain, points).
pub fn roc_chart(curves: &[(String, Vec<(f64, f64)>)], out: &Path) -> Result<(), String> {
    let mut series = curves.to_vec();
    series.push(("chance".into(), vec![(0.0, 0.0), (1.0, 1.0)]));
    let img = line_chart("ROC (true positive rate vs false positive rate)", "false positive rate", &series, 700, 560, Some((0.0, 1.0, 0.0, 1.0)))
        .map_err(|e| e.to_string())?;
    write_png(&img, out)
}

/// A contact sheet: the crops (paths with captions), `cell`-pixel tiles, `cols` per row.
pub fn contact_sheet(title: &str, crops: &[(PathBuf, String)], cell: i32, cols: i32) -> Result<Mat, String> {
    let n = crops.len().max(1) as i32;
    let rows = (n + cols - 1) / cols;
    let (head, cap) = (30, 18);
    let mut img = Mat::new_rows_cols_with_default(head + rows * (cell + cap), cols * cell, CV_8UC3, Scalar::all(255.0)).map_err(|e| e.to_string())?;
    text(&mut img, title, 5, 20, 0.5, black()).map_err(|e| e.to_string())?;
    for (k, (path, caption)) in crops.iter().enumerate() {
        let (cx, cy) = ((k as i32 % cols) * cell, head + (k as i32 / cols) * (cell + cap));
        let tile = std::fs::read(path).ok().and_then(|b| crate::crop::decode_image(&b));
        if let Some(t) = tile {
            let src = Mat::new_rows_cols_with_bytes::<Vec3b>(t.height as i32, t.width as i32, &t.data).map_err(|e| e.to_string())?;
            let mut small = Mat::default();
            imgproc::resize(&src, &mut small, opencv::core::Size::new(cell - 4, cell - 4), 0.0, 0.0, imgproc::INTER_AREA).map_err(|e| e.to_string())?;
            let mut roi = Mat::roi_mut(&mut img, Rect::new(cx + 2, cy + 2, cell - 4, cell - 4)).map_err(|e| e.to_string())?;
            small.copy_to(&mut roi).map_err(|e| e.to_string())?;
        } else {
            text(&mut img, "unreadable", cx + 5, cy + cell / 2, 0.4, Scalar::new(0.0, 0.0, 200.0, 0.0)).map_err(|e| e.to_string())?;
        }
        text(&mut img, caption, cx + 3, cy + cell + 13, 0.34, black()).map_err(|e| e.to_string())?;
    }
    Ok(img)
}

/// One contact sheet per video of a faces.csv, into `out/<dataset>__<video_id>.png`. With
/// `fake_probability` (row path -> probability), each caption also shows the model's score.
pub fn manifest_sheets(
    faces: &Path,
    out: &Path,
    per_video: usize,
    fake_probability: Option<&std::collections::HashMap<String, f64>>,
) -> Result<Vec<PathBuf>, String> {
    let rows: Vec<crate::manifest::FaceRow> = crate::manifest::read_rows(faces).map_err(|e| e.to_string())?;
    let base = faces.parent().unwrap_or(Path::new("."));
    let mut by_video: std::collections::BTreeMap<(String, String), Vec<&crate::manifest::FaceRow>> = Default::default();
    for r in &rows {
        by_video.entry((r.dataset.clone(), r.video_id.clone())).or_default().push(r);
    }
    std::fs::create_dir_all(out).map_err(|e| format!("{}: {e}", out.display()))?;
    let mut written = Vec::new();
    for ((ds, vid), rs) in by_video {
        let step = (rs.len() as f64 / per_video as f64).ceil().max(1.0) as usize;
        let crops: Vec<(PathBuf, String)> = rs
            .iter()
            .step_by(step)
            .take(per_video)
            .map(|r| {
                let p = fake_probability.and_then(|m| m.get(&r.path)).map(|p| format!(" p{p:.2}")).unwrap_or_default();
                (base.join(&r.path), format!("{}.{} s{:.2}{p}", r.frame, r.face, r.score))
            })
            .collect();
        let label = match rs[0].label {
            Some(0) => "real",
            Some(1) => "fake",
            _ => "unlabelled",
        };
        let img = contact_sheet(&format!("{ds}/{vid} ({label}, {} faces)", rs.len()), &crops, 112, 6)?;
        let p = out.join(format!("{ds}__{vid}.png"));
        write_png(&img, &p)?;
        written.push(p);
    }
    Ok(written)
}
