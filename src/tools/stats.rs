//! `scmpl manifest stats`: row counts by dataset, part, label and split.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use super::ToolError;
use crate::manifest::{self, FaceRow};

/// The counts of a faces.csv as a printable table.
pub fn stats(path: &Path) -> Result<String, ToolError> {
    let rows: Vec<FaceRow> = manifest::read_rows(path)?;
    let mut c: BTreeMap<(String, String, String, String), usize> = BTreeMap::new();
    for r in &rows {
        let label = r.label.map(|l| l.to_string()).unwrap_or_else(|| "-".into());
        *c.entry((r.dataset.clone(), r.part.clone(), label, r.split.clone())).or_default() += 1;
    }
    let mut s = format!("{:<14} {:<18} {:>5} {:<8} {:>8}\n", "dataset", "part", "label", "split", "faces");
    for ((d, p, l, sp), n) in &c {
        s.push_str(&format!("{d:<14} {p:<18} {l:>5} {sp:<8} {n:>8}\n"));
    }
    let videos: BTreeSet<&str> = rows.iter().map(|r| r.video_id.as_str()).collect();
    s.push_str(&format!("total: {} faces from {} videos\n", rows.len(), videos.len()));
    Ok(s)
}
