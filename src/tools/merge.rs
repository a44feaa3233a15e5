//! `scmpl manifest merge`: shard outputs into one, exactly: paths rebased on the output's
//! folder, exact duplicates kept once, two different rows for the same crop refused. Either
//! `faces.csv` files, or whole shard folders (`OUT/shards/K-of-N`: all three manifests, and
//! only a complete set of finished shards made with one config).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use super::validate::{kind_of, Kind};
use super::ToolError;
use crate::manifest::{self, paths, DetectionRow, FaceRow, VideoRow};
use crate::shard::Marker;

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

/// What [`merge_shards`] merged, and what it had to leave out (with `allow_partial`).
#[derive(Debug, Default)]
pub struct ShardMerge {
    pub shards: Vec<u64>,
    pub count: u64,
    pub videos: usize,
    pub detections: usize,
    pub faces: usize,
    /// Shards of the set that are missing or unfinished, and why (empty: a complete set).
    pub left_out: Vec<String>,
}

/// Merges the shard folders `dirs` (`OUT/shards/K-of-N`, each marked complete by its
/// `shard.json`) into the folder `out`: `videos.csv` (video paths rebased on `out`),
/// `detections.csv`, and `faces.csv` with the crops linked into `out/faces/` at the paths an
/// unsharded run gives them, so the merged folder stands alone like one. Refuses a set with missing or unfinished shards, or shards made with another config
/// or another N, naming them; with `allow_partial`, merges the complete ones and lists the rest.
pub fn merge_shards(dirs: &[PathBuf], out: &Path, allow_partial: bool) -> Result<ShardMerge, ToolError> {
    let mut complete: Vec<(PathBuf, Marker)> = Vec::new();
    let mut problems: Vec<String> = Vec::new();
    for d in dirs {
        match Marker::read(d) {
            Some(m) => complete.push((d.clone(), m)),
            None => problems.push(format!("{}: unfinished (no {})", d.display(), crate::shard::MARKER)),
        }
    }
    let Some((first_dir, first)) = complete.first().cloned() else {
        return Err(ToolError::Shards(format!("no finished shard among {} folders: {}", dirs.len(), problems.join("; "))));
    };
    let mut kept: Vec<(PathBuf, Marker)> = Vec::new();
    for (d, m) in complete {
        if m.count != first.count {
            problems.push(format!("{}: shard {} of {}, not of {} like {}", d.display(), m.index, m.count, first.count, first_dir.display()));
        } else if m.config != first.config {
            problems.push(format!("{}: made with another config ({} vs {} of {})", d.display(), m.config, first.config, first_dir.display()));
        } else if kept.iter().any(|(_, k)| k.index == m.index) {
            problems.push(format!("{}: shard {} given twice", d.display(), m.index));
        } else {
            kept.push((d, m));
        }
    }
    kept.sort_by_key(|(_, m)| m.index);
    for k in (0..first.count).filter(|k| !kept.iter().any(|(_, m)| m.index == *k)) {
        if !problems.iter().any(|p| p.contains(&format!("{k}-of-{}", first.count))) {
            problems.push(format!("shard {k} of {}: missing", first.count));
        }
    }
    if !problems.is_empty() && !allow_partial {
        return Err(ToolError::Shards(format!("an incomplete set of shards ({}); merge what is there with --allow-partial", problems.join("; "))));
    }
    std::fs::create_dir_all(out).map_err(ToolError::io(out))?;
    let mut report = ShardMerge { count: first.count, left_out: problems, ..Default::default() };
    let (mut videos, mut detections, mut faces) = (Vec::<VideoRow>::new(), Vec::<DetectionRow>::new(), Vec::<FaceRow>::new());
    let mut with_faces = false;
    for (d, m) in &kept {
        for mut v in manifest::read_rows::<VideoRow>(&d.join(manifest::VIDEOS))? {
            v.path = paths::relative_path(&d.join(&v.path), out);
            videos.push(v);
        }
        detections.extend(manifest::read_rows::<DetectionRow>(&d.join(manifest::DETECTIONS))?);
        if d.join(manifest::FACES).is_file() {
            with_faces = true;
            for f in manifest::read_rows::<FaceRow>(&d.join(manifest::FACES))? {
                link_crop(&d.join(&f.path), &out.join(&f.path))?;
                faces.push(f);
            }
        }
        report.shards.push(m.index);
    }
    let mut seen = std::collections::HashSet::new();
    if let Some(v) = videos.iter().find(|v| !seen.insert(v.video_id.clone())) {
        return Err(ToolError::Shards(format!("video {} is in two shards: shards made from other inputs?", v.video_id)));
    }
    manifest::write_all(&out.join(manifest::VIDEOS), &videos)?;
    manifest::write_all(&out.join(manifest::DETECTIONS), &detections)?;
    if with_faces {
        manifest::write_all(&out.join(manifest::FACES), &faces)?;
    }
    (report.videos, report.detections, report.faces) = (videos.len(), detections.len(), faces.len());
    Ok(report)
}

/// Puts a shard's crop at the same relative place in the merged folder: a hard link (no copy,
/// same bytes), or a copy where the two folders are on different file systems.
fn link_crop(from: &Path, to: &Path) -> Result<(), ToolError> {
    if let Some(dir) = to.parent() {
        std::fs::create_dir_all(dir).map_err(ToolError::io(dir))?;
    }
    if to.exists() {
        std::fs::remove_file(to).map_err(ToolError::io(to))?;
    }
    if std::fs::hard_link(from, to).is_err() {
        std::fs::copy(from, to).map_err(ToolError::io(from))?;
    }
    Ok(())
}
