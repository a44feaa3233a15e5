//! `scmpl manifest stats`: row counts by dataset, part, label and split, and face tracks:
//! how many per video and how long.

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
    s.push_str(&tracks(&rows));
    Ok(s)
}

/// Tracks per video (min / median / max) and faces per track (min / median / mean / max).
fn tracks(rows: &[FaceRow]) -> String {
    let mut lengths: BTreeMap<(&str, u32), usize> = BTreeMap::new();
    for r in rows {
        *lengths.entry((r.video_id.as_str(), r.track)).or_default() += 1;
    }
    let mut per_video: BTreeMap<&str, usize> = BTreeMap::new();
    for (video, _) in lengths.keys() {
        *per_video.entry(video).or_default() += 1;
    }
    if lengths.is_empty() {
        return String::new();
    }
    let sorted = |mut v: Vec<usize>| {
        v.sort_unstable();
        v
    };
    let (t, l) = (sorted(per_video.values().copied().collect()), sorted(lengths.values().copied().collect()));
    let mean = l.iter().sum::<usize>() as f64 / l.len() as f64;
    format!(
        "tracks: {} (per video: min {}, median {}, max {}); faces per track: min {}, median {}, mean {:.1}, max {}\n",
        l.len(),
        t[0],
        t[t.len() / 2],
        t[t.len() - 1],
        l[0],
        l[l.len() / 2],
        mean,
        l[l.len() - 1]
    )
}
