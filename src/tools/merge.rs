//! `scmpl manifest merge`: shard outputs into one manifest, exactly: paths rebased on the output's
//! folder, exact duplicates kept once, two different rows for the same crop refused.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use super::validate::{kind_of, Kind};
use super::ToolError;
use crate::manifest::{self, paths, FaceRow};

/// Merges faces.csv files into `out`; returns the number of rows written.
pub fn merge_faces(inputs: &[PathBuf], out: &Path) -> Result<usize, ToolError> {
    let out_dir = paths::folder_of(out).to_path_buf();
    let mut rows: Vec<FaceRow> = Vec::new();
    let mut by_path: HashMap<PathBuf, usize> = HashMap::new();
    for input in inputs {
        if kind_of(input)? != Kind::Faces {
            return Err(ToolError::WrongManifest { path: input.clone(), expected: "merge takes faces.csv manifests" });
        }
        let base = paths::folder_of(input);
        for mut r in manifest::read_rows::<FaceRow>(input)? {
            let abs = base.join(&r.path);
            let key = abs.canonicalize().unwrap_or(abs.clone());
            r.path = paths::rebase(&abs, &out_dir)?;
            match by_path.get(&key) {
                Some(&i) if rows[i] == r => {}
                Some(&i) => {
                    return Err(ToolError::Conflict {
                        path: input.clone(),
                        crop: r.path.clone(),
                        ours: format!("{:?}", rows[i]),
                        theirs: format!("{r:?}"),
                    });
                }
                None => {
                    by_path.insert(key, rows.len());
                    rows.push(r);
                }
            }
        }
    }
    manifest::write_all(out, &rows)?;
    Ok(rows.len())
}
