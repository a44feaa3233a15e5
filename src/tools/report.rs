//! Pictures people would rather look at than read, drawn with OpenCV into PNGs: line charts
//! (training curves from a run's `metrics.csv`, ROC curves per domain) and contact sheets
//! (a grid of a video's crops with their detector scores).

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use opencv::core::{Mat, Point, Rect, Scalar, Vec3b, CV_8UC3};
use opencv::imgproc::{self, FONT_HERSHEY_SIMPLEX, LINE_AA};
use opencv::prelude::*;

use super::ToolError;
use crate::manifest::{self, FaceRow};
use crate::pipeline::crop::{encode, ImageFormat};
use crate::pipeline::image::BgrImage;

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

/// Ticks for an axis of whole numbers (steps) from `x0` to `x1`: integers, 1, 2 or 5 times a
/// power of ten apart, at most 6 of them.
pub fn integer_ticks(x0: f64, x1: f64) -> Vec<f64> {
    let span = (x1 - x0).max(1.0);
    let mut step = 1.0;
    'search: for p in 0..12 {
        for m in [1.0, 2.0, 5.0] {
            step = m * 10f64.powi(p);
            if span / step <= 5.0 {
                break 'search;
            }
        }
    }
    let first = (x0 / step).ceil() * step;
    (0..).map(|k| first + k as f64 * step).take_while(|t| *t <= x1 + 1e-9).collect()
}

/// How a chart's axes are drawn.
#[derive(Debug, Clone, Copy, Default)]
pub struct Axes {
    /// (x0, x1, y0, y1); None: the data's range.
    pub fixed: Option<(f64, f64, f64, f64)>,
    /// The x values are whole numbers (steps): integer ticks only.
    pub integer_x: bool,
}

/// A line chart of named series of (x, y) points, `w`×`h` pixels, with axes, ticks and legend.
pub fn line_chart(title: &str, xlabel: &str, series: &[(String, Vec<(f64, f64)>)], w: i32, h: i32, axes: Axes) -> opencv::Result<Mat> {
    let fixed = axes.fixed;
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
    let x_ticks: Vec<f64> =
        if axes.integer_x { integer_ticks(x0, x1) } else { (0..=4).map(|k| x0 + (x1 - x0) * k as f64 / 4.0).collect() };
    for fx in x_ticks {
        imgproc::line_def(&mut img, Point::new(px(fx), t), Point::new(px(fx), t + ph), grid)?;
        text(&mut img, &fmt_tick(fx), px(fx) - 15, t + ph + 18, 0.4, black())?;
    }
    for k in 0..=4 {
        let fy = y0 + (y1 - y0) * k as f64 / 4.0;
        imgproc::line_def(&mut img, Point::new(l, py(fy)), Point::new(l + pw, py(fy)), grid)?;
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

pub fn write_png(img: &Mat, path: &Path) -> Result<(), ToolError> {
    let bytes = encode(img, ImageFormat::Png).map_err(|e| ToolError::Image { path: path.into(), reason: e.to_string() })?;
    std::fs::write(path, bytes).map_err(ToolError::io(path))
}

/// One panel of the training curves: a stage's losses, and its accuracies on their own axis.
#[derive(Debug, Default)]
struct Panel {
    stage: String,
    losses: Vec<(String, Vec<(f64, f64)>)>,
    accuracies: Vec<(String, Vec<(f64, f64)>)>,
}

impl Panel {
    fn push(&mut self, column: &str, point: (f64, f64)) {
        let list = if column.contains("acc") { &mut self.accuracies } else { &mut self.losses };
        match list.iter_mut().find(|(n, _)| n == column) {
            Some((_, pts)) => pts.push(point),
            None => list.push((column.to_string(), vec![point])),
        }
    }
}

/// The panels of a run's `metrics.csv`: one per value of its `stage` column (one in all when
/// it has none), in the order the stages ran.
fn curve_panels(path: &Path) -> Result<Vec<Panel>, ToolError> {
    let csv_err = |e: csv::Error| ToolError::Image { path: path.into(), reason: format!("{e} (not a training run?)") };
    let mut r = csv::Reader::from_path(path).map_err(csv_err)?;
    let headers: Vec<String> = r.headers().map_err(csv_err)?.iter().map(str::to_string).collect();
    let stage_col = headers.iter().position(|h| h == "stage");
    let mut panels: Vec<Panel> = Vec::new();
    for rec in r.records() {
        let rec = rec.map_err(csv_err)?;
        let Ok(step) = rec[0].parse::<f64>() else { continue };
        let stage = stage_col.map_or("training", |i| &rec[i]);
        if panels.last().is_none_or(|p| p.stage != stage) {
            panels.push(Panel { stage: stage.to_string(), ..Default::default() });
        }
        let panel = panels.last_mut().expect("pushed above");
        for (i, name) in headers.iter().enumerate().skip(1) {
            if Some(i) == stage_col || name == "images_per_s" {
                continue;
            }
            if let Ok(v) = rec[i].parse::<f64>() {
                panel.push(name, (step, v));
            }
        }
    }
    panels.retain(|p| !p.losses.is_empty() || !p.accuracies.is_empty());
    Ok(panels)
}

/// Copies `src` into `dst` with its top-left corner at (x, y).
fn paste(dst: &mut Mat, src: &Mat, x: i32, y: i32) -> opencv::Result<()> {
    let mut roi = Mat::roi_mut(dst, Rect::new(x, y, src.cols(), src.rows()))?;
    src.copy_to(&mut roi)
}

/// Width of the curves image, and height of one stage's panel.
pub const CURVES_WIDTH: i32 = 900;
pub const CURVES_PANEL_HEIGHT: i32 = 500;

/// Training curves of a run (`RUN/curves.png`): one panel per stage, its losses against the
/// step on one chart and its accuracies on another, integer step ticks.
pub fn training_curves(run: &Path) -> Result<PathBuf, ToolError> {
    let path = run.join("metrics.csv");
    let panels = curve_panels(&path)?;
    if panels.is_empty() {
        return Err(ToolError::Image { path, reason: "no steps logged yet".into() });
    }
    let cv = |e: opencv::Error| ToolError::Image { path: run.join("curves.png"), reason: e.to_string() };
    let (w, h) = (CURVES_WIDTH, CURVES_PANEL_HEIGHT);
    let mut img = Mat::new_rows_cols_with_default(h * panels.len() as i32, w, CV_8UC3, Scalar::all(255.0)).map_err(cv)?;
    let axes = Axes { fixed: None, integer_x: true };
    for (k, p) in panels.iter().enumerate() {
        let y = h * k as i32;
        let loss_w = if p.accuracies.is_empty() { w } else { w * 3 / 5 };
        if !p.losses.is_empty() {
            let chart = line_chart(&format!("{}: loss", p.stage), "step", &p.losses, loss_w, h, axes).map_err(cv)?;
            paste(&mut img, &chart, 0, y).map_err(cv)?;
        }
        if !p.accuracies.is_empty() {
            let chart = line_chart(&format!("{}: accuracy", p.stage), "step", &p.accuracies, w - loss_w, h, axes).map_err(cv)?;
            paste(&mut img, &chart, loss_w, y).map_err(cv)?;
        }
    }
    let out = run.join("curves.png");
    write_png(&img, &out)?;
    Ok(out)
}

/// ROC curves, one per (domain, points).
pub fn roc_chart(curves: &[(String, Vec<(f64, f64)>)], out: &Path) -> Result<(), ToolError> {
    let mut series = curves.to_vec();
    series.push(("chance".into(), vec![(0.0, 0.0), (1.0, 1.0)]));
    let axes = Axes { fixed: Some((0.0, 1.0, 0.0, 1.0)), integer_x: false };
    let img = line_chart("ROC (true positive rate vs false positive rate)", "false positive rate", &series, 700, 560, axes)
        .map_err(|e| ToolError::Image { path: out.into(), reason: e.to_string() })?;
    write_png(&img, out)
}

/// A contact sheet with one row of tiles per entry of `rows` (at most `cols` tiles each).
pub fn contact_sheet(title: &str, rows: &[Vec<(PathBuf, String)>], cell: i32, cols: i32) -> opencv::Result<Mat> {
    let n = rows.len().max(1) as i32;
    let (head, cap) = (30, 18);
    let mut img = Mat::new_rows_cols_with_default(head + n * (cell + cap), cols * cell, CV_8UC3, Scalar::all(255.0))?;
    text(&mut img, title, 5, 20, 0.5, black())?;
    let tiles = rows.iter().enumerate().flat_map(|(r, row)| row.iter().take(cols as usize).enumerate().map(move |(c, t)| (r as i32, c as i32, t)));
    for (r, c, (path, caption)) in tiles {
        let (cx, cy) = (c * cell, head + r * (cell + cap));
        let tile = std::fs::read(path).ok().and_then(|b| BgrImage::decode(&b));
        if let Some(t) = tile {
            let src = Mat::new_rows_cols_with_bytes::<Vec3b>(t.height as i32, t.width as i32, &t.data)?;
            let mut small = Mat::default();
            imgproc::resize(&src, &mut small, opencv::core::Size::new(cell - 4, cell - 4), 0.0, 0.0, imgproc::INTER_AREA)?;
            let mut roi = Mat::roi_mut(&mut img, Rect::new(cx + 2, cy + 2, cell - 4, cell - 4))?;
            small.copy_to(&mut roi)?;
        } else {
            text(&mut img, "unreadable", cx + 5, cy + cell / 2, 0.4, Scalar::new(0.0, 0.0, 200.0, 0.0))?;
        }
        text(&mut img, caption, cx + 3, cy + cell + 13, 0.34, black())?;
    }
    Ok(img)
}

/// One contact sheet per video of a faces.csv, into `out/<dataset>__<video_id>.png`: one row
/// per face track, its crops spread evenly along it (`per_video` crops in all at most, 6 a row).
/// Captions: frame, track, detector score and, with `fake_probability` (row path ->
/// probability), the model's score.
pub fn manifest_sheets(
    faces: &Path,
    out: &Path,
    per_video: usize,
    fake_probability: Option<&HashMap<String, f64>>,
) -> Result<Vec<PathBuf>, ToolError> {
    let rows: Vec<FaceRow> = manifest::read_rows(faces)?;
    let base = manifest::paths::folder_of(faces);
    let mut by_video: BTreeMap<(String, String), Vec<&FaceRow>> = Default::default();
    for r in &rows {
        by_video.entry((r.dataset.clone(), r.video_id.clone())).or_default().push(r);
    }
    std::fs::create_dir_all(out).map_err(ToolError::io(out))?;
    let mut written = Vec::new();
    const COLS: usize = 6;
    for ((ds, vid), rs) in by_video {
        let mut tracks: BTreeMap<u32, Vec<&FaceRow>> = BTreeMap::new();
        for r in &rs {
            tracks.entry(r.track).or_default().push(r);
        }
        let per_track = (per_video / tracks.len()).clamp(1, COLS);
        let rows: Vec<Vec<(PathBuf, String)>> = tracks
            .values()
            .take(per_video.max(1))
            .map(|t| {
                let step = (t.len() as f64 / per_track as f64).ceil().max(1.0) as usize;
                t.iter()
                    .step_by(step)
                    .take(per_track)
                    .map(|r| {
                        let p = fake_probability.and_then(|m| m.get(&r.path)).map(|p| format!(" p{p:.2}")).unwrap_or_default();
                        (base.join(&r.path), format!("{} t{} s{:.2}{p}", r.frame, r.track, r.score))
                    })
                    .collect()
            })
            .collect();
        let label = match rs[0].label {
            Some(0) => "real",
            Some(1) => "fake",
            _ => "unlabelled",
        };
        let p = out.join(format!("{ds}__{vid}.png"));
        let img = contact_sheet(&format!("{ds}/{vid} ({label}, {} faces, {} tracks)", rs.len(), tracks.len()), &rows, 112, COLS as i32)
            .map_err(|e| ToolError::Image { path: p.clone(), reason: e.to_string() })?;
        write_png(&img, &p)?;
        written.push(p);
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn step_ticks_are_whole_numbers() {
        for (a, b) in [(1.0, 31.0), (0.0, 7.0), (15.0, 16.0), (1.0, 5000.0)] {
            let t = integer_ticks(a, b);
            assert!(!t.is_empty() && t.len() <= 6, "{a}..{b}: {t:?}");
            assert!(t.iter().all(|x| x.fract() == 0.0 && *x >= a && *x <= b), "{a}..{b}: {t:?}");
        }
        assert_eq!(integer_ticks(1.0, 31.0), vec![10.0, 20.0, 30.0]);
    }

    #[test]
    fn curves_png_has_one_panel_per_stage_with_accuracy_on_its_own_chart() {
        let dir = tempfile::tempdir().unwrap();
        let mut csv = String::from("step,stage,loss,accuracy,images_per_s\n");
        for s in 1..=15 {
            csv.push_str(&format!("{s},supcon,{},,100\n", 7.0 - s as f64 * 0.1));
        }
        for s in 16..=30 {
            csv.push_str(&format!("{s},linear,{},{},100\n", 0.7 - s as f64 * 0.01, 0.5 + s as f64 * 0.01));
        }
        std::fs::write(dir.path().join("metrics.csv"), csv).unwrap();
        let panels = curve_panels(&dir.path().join("metrics.csv")).unwrap();
        let names: Vec<(&str, usize, usize)> = panels.iter().map(|p| (p.stage.as_str(), p.losses.len(), p.accuracies.len())).collect();
        assert_eq!(names, vec![("supcon", 1, 0), ("linear", 1, 1)]);
        let png = training_curves(dir.path()).unwrap();
        let img = image::open(png).unwrap();
        assert_eq!((img.width() as i32, img.height() as i32), (CURVES_WIDTH, 2 * CURVES_PANEL_HEIGHT));
    }
}
