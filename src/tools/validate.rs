//! `scmpl manifest validate`: schema, paths (inside the manifest's folder, existing, decoding),
//! labels and split leaks. Problems are findings, one line each with file and line.

use std::path::Path;

use super::split::{straddling, GroupBy};
use super::ToolError;
use crate::manifest::{self, paths::path_inside, DetectionRow, FaceRow, ManifestError, VideoRow};

/// Which manifest a file is, from its header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Videos,
    Detections,
    Faces,
}

pub fn kind_of(path: &Path) -> Result<Kind, ToolError> {
    let mut r = csv::Reader::from_path(path).map_err(|e| ManifestError::Header { path: path.into(), reason: e.to_string() })?;
    kind_of_reader(path, &mut r)
}

/// The kind of the manifest `r` reads (from its header), `path` naming it in errors.
fn kind_of_reader(path: &Path, r: &mut csv::Reader<std::fs::File>) -> Result<Kind, ToolError> {
    let h: Vec<String> =
        r.headers().map_err(|e| ManifestError::Header { path: path.into(), reason: e.to_string() })?.iter().map(str::to_string).collect();
    let header_of = |bytes: Vec<u8>| String::from_utf8(bytes).expect("utf8").trim_end().split(',').map(str::to_string).collect::<Vec<_>>();
    for (kind, want) in [
        (Kind::Faces, header_of(manifest::header::<FaceRow>())),
        (Kind::Videos, header_of(manifest::header::<VideoRow>())),
        (Kind::Detections, header_of(manifest::header::<DetectionRow>())),
    ] {
        // Manifests written before tracks and aligned crops lack these columns (track 0).
        let before_tracks: Vec<String> = want.iter().filter(|c| !["track", "source", "align"].contains(&c.as_str())).cloned().collect();
        if h == want || h == before_tracks {
            return Ok(kind);
        }
    }
    // Name the missing columns of the closest schema (faces.csv is the usual one).
    let faces = header_of(manifest::header::<FaceRow>());
    let missing: Vec<&String> = faces.iter().filter(|c| !h.contains(c)).collect();
    Err(ManifestError::Header {
        path: path.into(),
        reason: format!("not a videos/detections/faces manifest header; missing faces.csv columns: {missing:?}"),
    }
    .into())
}

/// Validates manifests; returns the problems found (empty: valid). `decode` also decodes every
/// image of a faces.csv (slower).
pub fn validate(path: &Path, decode: bool) -> Vec<String> {
    let mut problems = Vec::new();
    // One reader for the header and the rows: the file is opened once.
    let mut r = match csv::Reader::from_path(path) {
        Ok(r) => r,
        Err(e) => return vec![format!("{}: {e}", path.display())],
    };
    let kind = match kind_of_reader(path, &mut r) {
        Ok(k) => k,
        Err(e) => return vec![e.to_string()],
    };
    let base = crate::manifest::paths::folder_of(path);
    match kind {
        Kind::Faces => {
            let mut rows = Vec::new();
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
