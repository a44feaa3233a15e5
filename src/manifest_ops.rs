//! `scmpl manifest merge|validate|stats|export`: the tools that keep manifests honest.

use std::collections::{BTreeMap, HashMap};
use std::path::{Component, Path, PathBuf};

use crate::manifest::{self, DetectionRow, FaceRow, VideoRow};
use crate::split::{straddling, GroupBy};

/// Which manifest a file is, from its header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Videos,
    Detections,
    Faces,
}

pub fn kind_of(path: &Path) -> Result<Kind, String> {
    let mut r = csv::Reader::from_path(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let h: Vec<String> = r.headers().map_err(|e| format!("{}: {e}", path.display()))?.iter().map(str::to_string).collect();
    let header_of = |bytes: Vec<u8>| String::from_utf8(bytes).expect("utf8").trim_end().split(',').map(str::to_string).collect::<Vec<_>>();
    for (kind, want) in [
        (Kind::Faces, header_of(manifest::header::<FaceRow>())),
        (Kind::Videos, header_of(manifest::header::<VideoRow>())),
        (Kind::Detections, header_of(manifest::header::<DetectionRow>())),
    ] {
        if h == want {
            return Ok(kind);
        }
    }
    // Name the missing columns of the closest schema (faces.csv is the usual one).
    let faces = header_of(manifest::header::<FaceRow>());
    let missing: Vec<&String> = faces.iter().filter(|c| !h.contains(c)).collect();
    Err(format!("{}:1: not a videos/detections/faces manifest header; missing faces.csv columns: {missing:?}", path.display()))
}

/// A path column must stay inside the manifest's folder: relative, no `..` escaping it.
pub fn path_inside(rel: &str) -> bool {
    let p = Path::new(rel);
    if p.is_absolute() {
        return false;
    }
    let mut depth = 0i32;
    for c in p.components() {
        match c {
            Component::ParentDir => depth -= 1,
            Component::Normal(_) => depth += 1,
            Component::CurDir => {}
            _ => return false,
        }
        if depth < 0 {
            return false;
        }
    }
    true
}

/// `target` relative to the folder `base`, refused when it would leave `base` (manifests only
/// point inside their own folder, so they can be moved and validated as a whole).
pub fn rebase(target: &Path, base: &Path) -> Result<String, String> {
    let rel = manifest::relative_path(target, base);
    if path_inside(&rel) {
        Ok(rel)
    } else {
        Err(format!(
            "{} is outside {}: write the manifest in a folder that contains the images",
            target.display(),
            base.display()
        ))
    }
}

/// Validates manifests; returns the problems found (empty: valid). `decode` also decodes every
/// image of a faces.csv (slower).
pub fn validate(path: &Path, decode: bool) -> Vec<String> {
    let mut problems = Vec::new();
    let kind = match kind_of(path) {
        Ok(k) => k,
        Err(e) => return vec![e],
    };
    let base = path.parent().unwrap_or(Path::new("."));
    match kind {
        Kind::Faces => {
            let mut rows = Vec::new();
            let mut r = csv::Reader::from_path(path).expect("opened above");
            for (i, rec) in r.deserialize::<FaceRow>().enumerate() {
                let line = i + 2;
                match rec {
                    Err(e) => problems.push(format!("{}:{line}: {e}", path.display())),
                    Ok(row) => {
                        if !path_inside(&row.path) {
                            problems.push(format!("{}:{line}: path '{}' is outside the manifest's folder", path.display(), row.path));
                        } else if decode {
                            if let Err(e) = image::open(base.join(&row.path)) {
                                problems.push(format!("{}:{line}: {}: {e}", path.display(), row.path));
                            }
                        } else if !base.join(&row.path).is_file() {
                            problems.push(format!("{}:{line}: {} does not exist", path.display(), row.path));
                        }
                        if let Some(l) = row.label.filter(|l| *l > 1) {
                            problems.push(format!("{}:{line}: label {l} is not 0 or 1", path.display()));
                        }
                        rows.push(row);
                    }
                }
            }
            for (group, splits) in straddling(&rows, GroupBy::Original) {
                problems.push(format!("{}: group {group} is in several splits {splits:?} (identity leak)", path.display()));
            }
        }
        Kind::Videos => {
            let mut r = csv::Reader::from_path(path).expect("opened above");
            for (i, rec) in r.deserialize::<VideoRow>().enumerate() {
                match rec {
                    Err(e) => problems.push(format!("{}:{}: {e}", path.display(), i + 2)),
                    Ok(row) => {
                        if row.label.is_some_and(|l| l > 1) {
                            problems.push(format!("{}:{}: label is not 0 or 1", path.display(), i + 2));
                        }
                        if !base.join(&row.path).is_file() {
                            problems.push(format!("{}:{}: {} does not exist", path.display(), i + 2, row.path));
                        }
                    }
                }
            }
        }
        Kind::Detections => {
            let mut r = csv::Reader::from_path(path).expect("opened above");
            for (i, rec) in r.deserialize::<DetectionRow>().enumerate() {
                match rec {
                    Err(e) => problems.push(format!("{}:{}: {e}", path.display(), i + 2)),
                    Ok(d) if d.lm.split_whitespace().count() != 10 => {
                        problems.push(format!("{}:{}: lm must hold 10 numbers", path.display(), i + 2))
                    }
                    Ok(d) if !(d.x1 < d.x2 && d.y1 < d.y2) => problems.push(format!("{}:{}: empty box", path.display(), i + 2)),
                    Ok(_) => {}
                }
            }
        }
    }
    problems
}

/// Merges faces.csv files (e.g. shard outputs) into `out`: paths rebased on `out`'s folder,
/// exact duplicates kept once, two different rows for the same crop path refused.
pub fn merge_faces(inputs: &[PathBuf], out: &Path) -> Result<usize, String> {
    let out_dir = out.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new(".")).to_path_buf();
    let mut rows: Vec<FaceRow> = Vec::new();
    let mut by_path: HashMap<PathBuf, usize> = HashMap::new();
    for input in inputs {
        if kind_of(input)? != Kind::Faces {
            return Err(format!("{}: merge takes faces.csv manifests", input.display()));
        }
        let base = input.parent().unwrap_or(Path::new("."));
        let list: Vec<FaceRow> = manifest::read_rows(input).map_err(|e| e.to_string())?;
        for mut r in list {
            let abs = base.join(&r.path);
            let key = abs.canonicalize().unwrap_or(abs.clone());
            r.path = rebase(&abs, &out_dir)?;
            match by_path.get(&key) {
                Some(&i) if rows[i] == r => {}
                Some(&i) => {
                    return Err(format!("{}: conflicting rows for {}: {:?} vs {:?}", input.display(), r.path, rows[i], r));
                }
                None => {
                    by_path.insert(key, rows.len());
                    rows.push(r);
                }
            }
        }
    }
    crate::index::write_faces(out, &rows)?;
    Ok(rows.len())
}

/// Row counts by dataset, part, label and split.
pub fn stats(path: &Path) -> Result<String, String> {
    let rows: Vec<FaceRow> = manifest::read_rows(path).map_err(|e| e.to_string())?;
    let mut c: BTreeMap<(String, String, String, String), usize> = BTreeMap::new();
    for r in &rows {
        let label = r.label.map(|l| l.to_string()).unwrap_or_else(|| "-".into());
        *c.entry((r.dataset.clone(), r.part.clone(), label, r.split.clone())).or_default() += 1;
    }
    let mut s = format!("{:<14} {:<18} {:>5} {:<8} {:>8}\n", "dataset", "part", "label", "split", "faces");
    for ((d, p, l, sp), n) in &c {
        s.push_str(&format!("{d:<14} {p:<18} {l:>5} {sp:<8} {n:>8}\n"));
    }
    let videos: std::collections::BTreeSet<&str> = rows.iter().map(|r| r.video_id.as_str()).collect();
    s.push_str(&format!("total: {} faces from {} videos\n", rows.len(), videos.len()));
    Ok(s)
}

/// `folds.csv` of the DFDC-winning code: `video,file,label,original,frame,fold`, with the fold
/// of a row fixed by its original (a fake and its source share a fold).
pub fn export_folds(path: &Path, folds: u64, out: &Path) -> Result<usize, String> {
    let rows: Vec<FaceRow> = manifest::read_rows(path).map_err(|e| e.to_string())?;
    let mut w = csv::Writer::from_path(out).map_err(|e| format!("{}: {e}", out.display()))?;
    w.write_record(["video", "file", "label", "original", "frame", "fold"]).map_err(|e| e.to_string())?;
    for r in &rows {
        let original = if r.original.is_empty() { &r.video_id } else { &r.original };
        let fold = crate::scan::stable_hash(&format!("{}/{}", r.dataset, original)) % folds.max(1);
        let file = Path::new(&r.path).file_name().map(|f| f.to_string_lossy().into_owned()).unwrap_or_default();
        w.write_record([
            r.video_id.as_str(),
            file.as_str(),
            &r.label.map(|l| l.to_string()).unwrap_or_default(),
            original,
            &r.frame.to_string(),
            &fold.to_string(),
        ])
        .map_err(|e| e.to_string())?;
    }
    w.flush().map_err(|e| e.to_string())?;
    Ok(rows.len())
}

/// DeepfakeBench's dataset JSON: `{dataset: {"<dataset>_Real"|"<dataset>_Fake": {split: {video:
/// {label, frames: [paths]}}}}}`, frame paths relative to the manifest's folder.
pub fn export_deepfakebench(path: &Path, out: &Path) -> Result<usize, String> {
    let rows: Vec<FaceRow> = manifest::read_rows(path).map_err(|e| e.to_string())?;
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
    std::fs::write(out, text).map_err(|e| format!("{}: {e}", out.display()))?;
    Ok(rows.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_must_stay_inside_the_root() {
        assert!(path_inside("faces/a/1.png"));
        assert!(path_inside("a/../b.png"));
        assert!(!path_inside("../x.png"));
        assert!(!path_inside("a/../../x.png"));
        assert!(!path_inside("/etc/passwd"));
    }
}
