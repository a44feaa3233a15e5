//! `scmpl manifest export`: a faces.csv in the shapes other tools read: `folds.csv` (the
//! DFDC-winning code) and DeepfakeBench's dataset JSON.

use std::path::Path;

use super::ToolError;
use crate::hash::stable_hash;
use crate::manifest::{self, FaceRow};

/// The export formats (`--format`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Folds,
    #[value(name = "deepfakebench")]
    DeepfakeBench,
}

/// Exports `path` to `out` in `format`; returns the number of rows exported.
pub fn export(path: &Path, format: Format, folds: u64, out: &Path) -> Result<usize, ToolError> {
    match format {
        Format::Folds => export_folds(path, folds, out),
        Format::DeepfakeBench => export_deepfakebench(path, out),
    }
}

/// `folds.csv` of the DFDC-winning code: `video,file,label,original,frame,fold`, with the fold
/// of a row fixed by its original (a fake and its source share a fold).
pub fn export_folds(path: &Path, folds: u64, out: &Path) -> Result<usize, ToolError> {
    let rows: Vec<FaceRow> = manifest::read_rows(path)?;
    let csv_err = |e: csv::Error| ToolError::Io { path: out.to_path_buf(), source: e.into() };
    let mut w = csv::Writer::from_path(out).map_err(csv_err)?;
    w.write_record(["video", "file", "label", "original", "frame", "fold"]).map_err(csv_err)?;
    for r in &rows {
        let original = if r.original.is_empty() { &r.video_id } else { &r.original };
        let fold = stable_hash(&format!("{}/{}", r.dataset, original)) % folds.max(1);
        let file = Path::new(&r.path).file_name().map(|f| f.to_string_lossy().into_owned()).unwrap_or_default();
        w.write_record([
            r.video_id.as_str(),
            file.as_str(),
            &r.label.map(|l| l.to_string()).unwrap_or_default(),
            original,
            &r.frame.to_string(),
            &fold.to_string(),
        ])
        .map_err(csv_err)?;
    }
    w.flush().map_err(ToolError::io(out))?;
    Ok(rows.len())
}

/// DeepfakeBench's dataset JSON: `{dataset: {"<dataset>_Real"|"<dataset>_Fake": {split: {video:
/// {label, frames: [paths]}}}}}`, frame paths relative to the manifest's folder.
pub fn export_deepfakebench(path: &Path, out: &Path) -> Result<usize, ToolError> {
    let rows: Vec<FaceRow> = manifest::read_rows(path)?;
    let mut root = serde_json::Map::new();
    for r in &rows {
        let class = format!("{}_{}", r.dataset, if r.label == Some(1) { "Fake" } else { "Real" });
        let split = if r.split.is_empty() { "all".to_string() } else { r.split.clone() };
        let ds = root.entry(r.dataset.clone()).or_insert_with(|| serde_json::json!({}));
        let video = &mut ds[&class][&split][&r.video_id];
        if video.is_null() {
            *video = serde_json::json!({ "label": class, "frames": [] });
        }
        video["frames"].as_array_mut().expect("array").push(serde_json::Value::String(r.path.clone()));
    }
    let text = serde_json::to_string_pretty(&serde_json::Value::Object(root)).expect("json");
    std::fs::write(out, text).map_err(ToolError::io(out))?;
    Ok(rows.len())
}
