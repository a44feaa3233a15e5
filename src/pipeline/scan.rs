//! Scan: turning the paths a user gives into a list of videos with ids, labels and shards.
//!
//! Folders are walked (`walkdir`, sorted); a folder holding a DFDC `metadata.json`
//! (`{file: {label: REAL|FAKE, split, original}}`) labels its videos and makes them dataset
//! `dfdc`, with `part` taken from `dfdc_train_part_N`. Ids are stable: the file stem for DFDC
//! (unique across the dataset, and what `original` refers to), else the path relative to the
//! input folder with `/` turned into `__`.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};

use crate::config::ParseError;
use crate::hash::stable_hash;

/// Extensions treated as videos when walking folders (files named explicitly are always taken).
pub const VIDEO_EXTENSIONS: &[&str] =
    &["mp4", "mkv", "webm", "avi", "mov", "m4v", "mpg", "mpeg", "flv", "wmv", "ts", "3gp"];

/// One video to process.
#[derive(Debug, Clone, PartialEq)]
pub struct VideoJob {
    pub path: PathBuf,
    pub video_id: String,
    pub dataset: String,
    pub part: String,
    pub label: Option<u8>,
    pub original: String,
    pub split: String,
}

/// The videos found, and what was wrong on the way (each message names the file).
#[derive(Debug, Default)]
pub struct Scan {
    pub videos: Vec<VideoJob>,
    /// Problems that stop nothing (a video missing from metadata.json, a broken metadata.json).
    pub warnings: Vec<String>,
    /// Inputs that could not be read at all (counted as failures).
    pub errors: Vec<String>,
}

/// `--shard K/N`: keep the videos whose stable hash modulo N is K.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    pub index: u64,
    pub count: u64,
}

impl std::str::FromStr for Shard {
    type Err = ParseError;
    fn from_str(s: &str) -> Result<Self, ParseError> {
        let bad = || ParseError(format!("invalid shard '{s}': expected K/N with 0 <= K < N"));
        let (k, n) = s.split_once('/').ok_or_else(bad)?;
        let (index, count) = (k.trim().parse::<u64>().map_err(|_| bad())?, n.trim().parse::<u64>().map_err(|_| bad())?);
        if count == 0 || index >= count {
            return Err(bad());
        }
        Ok(Shard { index, count })
    }
}

impl std::fmt::Display for Shard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

impl Shard {
    pub fn keeps(&self, video_id: &str) -> bool {
        stable_hash(video_id) % self.count == self.index
    }
}

#[derive(Debug, Clone, serde::Deserialize)]
struct DfdcEntry {
    label: Option<String>,
    split: Option<String>,
    original: Option<String>,
}

/// What a folder's `metadata.json` said (None: there is none).
enum Metadata {
    None,
    Broken,
    Dfdc(HashMap<String, DfdcEntry>),
}

fn stem(p: &Path) -> String {
    p.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default()
}

fn is_video(p: &Path) -> bool {
    p.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| VIDEO_EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()))
}

/// Number N of a `dfdc_train_part_N` folder name.
fn dfdc_part(dir: &Path) -> Option<String> {
    let name = dir.file_name()?.to_str()?;
    let n = name.strip_prefix("dfdc_train_part_")?;
    n.parse::<u32>().ok().map(|n| n.to_string())
}

/// Walks `inputs` and labels what it finds. `dataset` overrides the dataset name.
pub fn scan(inputs: &[PathBuf], dataset: Option<&str>) -> Scan {
    let mut out = Scan::default();
    let mut metadata: BTreeMap<PathBuf, Metadata> = BTreeMap::new();
    let mut seen: HashSet<String> = HashSet::new();
    for input in inputs {
        let (root, files): (PathBuf, Vec<PathBuf>) = if input.is_file() {
            (input.parent().map(Path::to_path_buf).unwrap_or_default(), vec![input.clone()])
        } else if input.is_dir() {
            let mut files = Vec::new();
            for entry in walkdir::WalkDir::new(input).sort_by_file_name().follow_links(true) {
                match entry {
                    Ok(e) if e.file_type().is_file() && is_video(e.path()) => files.push(e.into_path()),
                    Ok(_) => {}
                    Err(e) => out.errors.push(format!("{}: cannot read: {e}", e.path().unwrap_or(input).display())),
                }
            }
            (input.clone(), files)
        } else {
            out.errors.push(format!("{}: no such file or folder", input.display()));
            continue;
        };
        for path in files {
            let dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
            let meta = metadata.entry(dir.clone()).or_insert_with(|| read_metadata(&dir, &mut out.warnings));
            let file_name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            let is_dfdc = !matches!(meta, Metadata::None) || dfdc_part(&dir).is_some();
            let video_id = if is_dfdc {
                stem(&path)
            } else {
                let rel = path.strip_prefix(&root).unwrap_or(&path).with_extension("");
                rel.components().map(|c| c.as_os_str().to_string_lossy().into_owned()).collect::<Vec<_>>().join("__")
            };
            let mut job = VideoJob {
                path: path.clone(),
                video_id: video_id.clone(),
                dataset: dataset.map(str::to_string).unwrap_or_else(|| if is_dfdc { "dfdc" } else { "videos" }.to_string()),
                part: dfdc_part(&dir).unwrap_or_else(|| {
                    if is_dfdc { String::new() } else { dir.strip_prefix(&root).map(|p| p.to_string_lossy().replace('/', "__")).unwrap_or_default() }
                }),
                label: None,
                original: video_id.clone(),
                split: String::new(),
            };
            if let Metadata::Dfdc(entries) = meta {
                match entries.get(&file_name) {
                    Some(e) => {
                        job.label = match e.label.as_deref() {
                            Some("REAL") => Some(0),
                            Some("FAKE") => Some(1),
                            other => {
                                out.warnings.push(format!(
                                    "{}: label {:?} in metadata.json is neither REAL nor FAKE; left empty",
                                    path.display(),
                                    other
                                ));
                                None
                            }
                        };
                        job.split = e.split.clone().unwrap_or_default();
                        if let Some(o) = e.original.as_deref().filter(|o| !o.is_empty()) {
                            job.original = stem(Path::new(o));
                        }
                    }
                    None => out.warnings.push(format!(
                        "{}: not listed in {}; label left empty",
                        path.display(),
                        dir.join("metadata.json").display()
                    )),
                }
            }
            if !seen.insert(video_id.clone()) {
                out.errors.push(format!("{}: video id '{video_id}' already taken by another video; skipped", path.display()));
                continue;
            }
            out.videos.push(job);
        }
    }
    out
}

/// The DFDC `split` of one video, from the `metadata.json` of its folder.
pub fn dfdc_split(video: &Path) -> Option<String> {
    let dir = video.parent()?;
    let text = std::fs::read_to_string(dir.join("metadata.json")).ok()?;
    let meta: HashMap<String, DfdcEntry> = serde_json::from_str(&text).ok()?;
    meta.get(video.file_name()?.to_str()?)?.split.clone()
}

fn read_metadata(dir: &Path, warnings: &mut Vec<String>) -> Metadata {
    let path = dir.join("metadata.json");
    let Ok(text) = std::fs::read_to_string(&path) else { return Metadata::None };
    match serde_json::from_str::<HashMap<String, DfdcEntry>>(&text) {
        Ok(m) => Metadata::Dfdc(m),
        Err(e) => {
            warnings.push(format!("{}: not valid DFDC metadata ({e}); labels of its videos left empty", path.display()));
            Metadata::Broken
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_partition_the_videos() {
        let ids: Vec<String> = (0..300).map(|i| format!("video{i}")).collect();
        let shards: Vec<Shard> = (0..3).map(|k| Shard { index: k, count: 3 }).collect();
        for id in &ids {
            assert_eq!(shards.iter().filter(|s| s.keeps(id)).count(), 1);
        }
        // Roughly balanced.
        for s in &shards {
            let n = ids.iter().filter(|id| s.keeps(id)).count();
            assert!((70..130).contains(&n), "{n}");
        }
        assert!("3/3".parse::<Shard>().is_err());
        assert_eq!("1/4".parse::<Shard>().unwrap(), Shard { index: 1, count: 4 });
    }

    #[test]
    fn dfdc_metadata_labels_videos_and_flags_the_unlisted_and_the_broken() {
        let dir = tempfile::tempdir().unwrap();
        let p0 = dir.path().join("dfdc_train_part_7");
        let p1 = dir.path().join("dfdc_train_part_8");
        std::fs::create_dir_all(&p0).unwrap();
        std::fs::create_dir_all(&p1).unwrap();
        for f in ["a.mp4", "b.mp4", "c.mp4"] {
            std::fs::write(p0.join(f), b"x").unwrap();
        }
        std::fs::write(p1.join("d.mp4"), b"x").unwrap();
        std::fs::write(
            p0.join("metadata.json"),
            r#"{"a.mp4": {"label": "REAL", "split": "train"}, "b.mp4": {"label": "FAKE", "split": "train", "original": "a.mp4"}}"#,
        )
        .unwrap();
        std::fs::write(p1.join("metadata.json"), "{not json").unwrap();
        let s = scan(&[dir.path().to_path_buf()], None);
        assert!(s.errors.is_empty(), "{:?}", s.errors);
        let by_id: HashMap<_, _> = s.videos.iter().map(|v| (v.video_id.as_str(), v)).collect();
        assert_eq!(by_id["a"].label, Some(0));
        assert_eq!(by_id["a"].original, "a");
        assert_eq!(by_id["b"].label, Some(1));
        assert_eq!(by_id["b"].original, "a");
        assert_eq!(by_id["b"].part, "7");
        assert_eq!(by_id["b"].dataset, "dfdc");
        assert_eq!(by_id["c"].label, None);
        assert_eq!(by_id["d"].label, None);
        assert_eq!(by_id["d"].part, "8");
        assert_eq!(s.warnings.len(), 2, "{:?}", s.warnings);
        assert!(s.warnings.iter().any(|w| w.contains("c.mp4") && w.contains("not listed")));
        assert!(s.warnings.iter().any(|w| w.contains("dfdc_train_part_8/metadata.json")));
    }

    #[test]
    fn plain_folders_get_path_ids_and_missing_inputs_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("x/y")).unwrap();
        std::fs::write(dir.path().join("x/y/clip.mkv"), b"x").unwrap();
        std::fs::write(dir.path().join("x/notes.txt"), b"x").unwrap();
        let s = scan(&[dir.path().to_path_buf(), dir.path().join("nope")], None);
        assert_eq!(s.videos.len(), 1);
        assert_eq!(s.videos[0].video_id, "x__y__clip");
        assert_eq!(s.videos[0].dataset, "videos");
        assert_eq!(s.errors.len(), 1);
        assert!(s.errors[0].contains("nope"));
    }
}
