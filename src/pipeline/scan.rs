//! Scan: turning the paths a user gives into a list of videos with ids, labels and shards.
//!
//! Folders are walked (`walkdir`, sorted); a folder holding a DFDC `metadata.json`
//! (`{file: {label: REAL|FAKE, split, original}}`) labels its videos and makes them dataset
//! `dfdc`, with `part` taken from `dfdc_train_part_N`. Ids are stable: the file stem for DFDC
//! (unique across the dataset, and what `original` refers to), else the path relative to the
//! input folder with `/` turned into `__`.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};

use super::layouts::{self, FfppSplits, VideoLayout};


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
    /// Why this input cannot be decoded, known already at scan time (a dangling symlink, a
    /// FIFO): the video gets a `failed` row with this reason instead of being decoded.
    pub problem: Option<String>,
}

/// The videos found, and what was wrong on the way (each message names the file).
#[derive(Debug, Default)]
pub struct Scan {
    pub videos: Vec<VideoJob>,
    /// Problems that stop nothing (a video missing from metadata.json, a broken metadata.json,
    /// an id made unique, a symlink loop).
    pub warnings: Vec<String>,
    /// Inputs given on the command line that do not exist (counted as failures).
    pub errors: Vec<String>,
    /// What was recognised, per dataset: videos, real, fake, unlabelled, originals.
    pub recognised: Vec<String>,
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

impl Metadata {
    /// This metadata where the folder is read as DFDC, else none.
    fn filter_dfdc(&self, is_dfdc: bool) -> &Metadata {
        if is_dfdc { self } else { &Metadata::None }
    }
}

/// `s` made safe as one path component, stably and reversibly: `%`, `/`, `\` and control
/// characters become `%XX` (their UTF-8 bytes); an id that is empty, `.` or `..` has its dots
/// escaped too (`_` for the empty one). Ids name crop folders, so they must never climb out.
pub fn safe_component(s: &str) -> String {
    if s.is_empty() {
        return "_".into();
    }
    let all_dots = s.chars().all(|c| c == '.');
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if c == '%' || c == '/' || c == '\\' || c.is_control() || (all_dots && s.len() <= 2) {
            let mut buf = [0u8; 4];
            for b in c.encode_utf8(&mut buf).bytes() {
                out.push_str(&format!("%{b:02X}"));
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// A file-name part made safe by [`safe_component`]; bytes that are not UTF-8 become `%XX`,
/// so two names that differ only there still get different ids.
fn safe_os(s: &std::ffi::OsStr) -> String {
    use std::os::unix::ffi::OsStrExt;
    let mut out = String::new();
    for chunk in s.as_bytes().utf8_chunks() {
        if !chunk.valid().is_empty() {
            out.push_str(&safe_component(chunk.valid()));
        }
        for b in chunk.invalid() {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    if out.is_empty() || out == "." || out == ".." {
        return safe_component(&out);
    }
    out
}

fn stem(p: &Path) -> String {
    p.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default()
}

/// Whether a file name ends like a video (`.mp4` alone counts: a file named `.mp4`).
fn is_video(p: &Path) -> bool {
    let name = p.file_name().map(|n| n.to_string_lossy().to_ascii_lowercase()).unwrap_or_default();
    VIDEO_EXTENSIONS.iter().any(|e| name.ends_with(&format!(".{e}")))
}

/// Number N of a `dfdc_train_part_N` folder name.
fn dfdc_part(dir: &Path) -> Option<String> {
    let name = dir.file_name()?.to_str()?;
    let n = name.strip_prefix("dfdc_train_part_")?;
    n.parse::<u32>().ok().map(|n| n.to_string())
}

/// A file the walk found, with why it cannot be read when that is known already.
struct Found {
    path: PathBuf,
    problem: Option<String>,
}

/// The video files under folder `input` (sorted), and problems as warnings or failed files.
fn walk(input: &Path, warnings: &mut Vec<String>) -> Vec<Found> {
    let mut files = Vec::new();
    for entry in walkdir::WalkDir::new(input).sort_by_file_name().follow_links(true) {
        match entry {
            Ok(e) if e.file_type().is_file() && is_video(e.path()) => files.push(Found { path: e.into_path(), problem: None }),
            Ok(e) if !e.file_type().is_dir() && is_video(e.path()) => {
                let kind = std::fs::metadata(e.path()).map(|m| super::decode::file_kind(&m)).unwrap_or("not a file");
                let problem = Some(format!("not a regular file ({kind})"));
                files.push(Found { path: e.into_path(), problem });
            }
            Ok(_) => {}
            Err(e) => {
                let path = e.path().unwrap_or(input).to_path_buf();
                let dangling = e.io_error().is_some_and(|io| io.kind() == std::io::ErrorKind::NotFound);
                if dangling && is_video(&path) {
                    files.push(Found { path, problem: Some("a symlink to nothing (dangling)".into()) });
                } else if e.loop_ancestor().is_some() {
                    warnings.push(format!("{}: symlink loop; not followed", path.display()));
                } else {
                    warnings.push(format!("{}: cannot read: {e}; skipped", path.display()));
                }
            }
        }
    }
    files
}

/// The id of `path` found under `root`: the file stem for DFDC, else the path relative to the
/// root without its extension, folders joined by `__`; every part made safe.
fn video_id(path: &Path, root: &Path, is_dfdc: bool) -> String {
    use std::os::unix::ffi::OsStrExt;
    if is_dfdc {
        return safe_os(path.file_stem().unwrap_or_default());
    }
    let rel = path.strip_prefix(root).unwrap_or(path);
    let name = rel.file_name().unwrap_or_default().as_bytes();
    // The extension goes; a name that is only an extension (".mp4") stays whole.
    let base = match name.iter().rposition(|b| *b == b'.') {
        Some(i) if i > 0 => &name[..i],
        _ => name,
    };
    let mut parts: Vec<String> = rel.parent().into_iter().flat_map(|p| p.components()).map(|c| safe_os(c.as_os_str())).collect();
    parts.push(safe_os(std::ffi::OsStr::from_bytes(base)));
    parts.join("__")
}

/// How inputs are read: the dataset name to use, a forced layout, FF++'s official splits.
#[derive(Debug, Clone, Default)]
pub struct ScanOptions {
    pub dataset: Option<String>,
    pub layout: Option<VideoLayout>,
    pub ffpp_splits: Option<FfppSplits>,
}

/// Labels `job` by the FF++ or Celeb-DF release layout when its path follows one (and the
/// layout is not forced to another); true when it did.
fn label_from_layout(job: &mut VideoJob, opts: &ScanOptions, celeb_tests: &mut BTreeMap<PathBuf, Option<HashMap<String, u8>>>, warnings: &mut Vec<String>) -> bool {
    let parts: Vec<String> = job.path.components().map(|c| c.as_os_str().to_string_lossy().into_owned()).collect();
    let want = |l: VideoLayout| opts.layout.is_none_or(|f| f == l);
    let found = if want(VideoLayout::Ffpp) { layouts::ffpp(&parts, opts.ffpp_splits.as_ref()) } else { None };
    let found = found.or_else(|| {
        if !want(VideoLayout::CelebDf) {
            return None;
        }
        let root = job.path.parent()?.parent()?.to_path_buf();
        let tests = celeb_tests.entry(root.clone()).or_insert_with(|| match layouts::celebdf_tests(&root) {
            Some(Ok(t)) => Some(t),
            Some(Err(e)) => {
                warnings.push(format!("{e}; Celeb-DF splits left empty"));
                None
            }
            None => None,
        });
        layouts::celebdf(&parts, tests.as_ref())
    });
    let Some(l) = found else { return false };
    job.video_id = safe_component(&l.video_id);
    job.original = safe_component(&l.original);
    job.label = Some(l.label);
    job.part = l.part;
    job.split = l.split;
    if opts.dataset.is_none() {
        job.dataset = l.dataset.into();
    }
    true
}

/// Per dataset: "NAME: V videos (R real, F fake, O originals)".
fn recognised(videos: &[VideoJob]) -> Vec<String> {
    let mut by: BTreeMap<&str, (usize, usize, usize, HashSet<&str>)> = BTreeMap::new();
    for v in videos {
        let e = by.entry(v.dataset.as_str()).or_default();
        e.0 += 1;
        match v.label {
            Some(0) => e.1 += 1,
            Some(_) => e.2 += 1,
            None => {}
        }
        e.3.insert(v.original.as_str());
    }
    by.into_iter().map(|(d, (n, r, f, o))| format!("{d}: {n} videos ({r} real, {f} fake, {} unlabelled; {} originals)", n - r - f, o.len())).collect()
}

/// Walks `inputs` and labels what it finds.
pub fn scan(inputs: &[PathBuf], opts: &ScanOptions) -> Scan {
    let dataset = opts.dataset.as_deref();
    let mut celeb_tests = BTreeMap::new();
    let mut out = Scan::default();
    let mut metadata: BTreeMap<PathBuf, Metadata> = BTreeMap::new();
    let mut seen: HashMap<String, PathBuf> = HashMap::new();
    let mut listed_seen: BTreeMap<PathBuf, HashSet<String>> = BTreeMap::new();
    for input in inputs {
        let (root, files): (PathBuf, Vec<Found>) = match std::fs::metadata(input) {
            Ok(m) if m.is_dir() => (input.clone(), walk(input, &mut out.warnings)),
            Ok(m) => {
                let problem = (!m.is_file()).then(|| format!("not a regular file ({})", super::decode::file_kind(&m)));
                (input.parent().map(Path::to_path_buf).unwrap_or_default(), vec![Found { path: input.clone(), problem }])
            }
            Err(e) if input.symlink_metadata().is_ok() => {
                let root = input.parent().map(Path::to_path_buf).unwrap_or_default();
                (root, vec![Found { path: input.clone(), problem: Some(format!("a symlink to nothing ({e})")) }])
            }
            Err(_) => {
                out.errors.push(format!("{}: no such file or folder", input.display()));
                continue;
            }
        };
        for Found { path, problem } in files {
            let dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
            let meta = metadata.entry(dir.clone()).or_insert_with(|| read_metadata(&dir, &mut out.warnings));
            let file_name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            listed_seen.entry(dir.clone()).or_default().insert(file_name.clone());
            let is_dfdc = opts.layout.is_none_or(|l| l == VideoLayout::Dfdc) && (!matches!(meta, Metadata::None) || dfdc_part(&dir).is_some());
            let mut id = video_id(&path, &root, is_dfdc);
            let part = dfdc_part(&dir).unwrap_or_else(|| {
                if is_dfdc {
                    String::new()
                } else {
                    dir.strip_prefix(&root).map(|p| p.components().map(|c| safe_os(c.as_os_str())).collect::<Vec<_>>().join("__")).unwrap_or_default()
                }
            });
            let mut job = VideoJob { path: path.clone(), video_id: id.clone(), dataset: String::new(), part, label: None, original: id.clone(), split: String::new(), problem };
            let by_layout = !is_dfdc && label_from_layout(&mut job, opts, &mut celeb_tests, &mut out.warnings);
            id = job.video_id.clone();
            if let Some(other) = seen.get(&id) {
                let base = id.clone();
                id = (2..).map(|n| format!("{base}~{n}")).find(|c| !seen.contains_key(c)).expect("a free id");
                out.warnings.push(format!("{}: video id '{base}' is taken by {}; this video is '{id}'", path.display(), other.display()));
            }
            seen.insert(id.clone(), path.clone());
            job.video_id = id.clone();
            if !by_layout {
                job.original = id;
                job.dataset = dataset.map(str::to_string).unwrap_or_else(|| if is_dfdc { "dfdc" } else { "videos" }.to_string());
            } else if job.dataset.is_empty() {
                job.dataset = dataset.unwrap_or_default().to_string();
            }
            if let Metadata::Dfdc(entries) = meta.filter_dfdc(is_dfdc) {
                label_from_metadata(&mut job, entries.get(&file_name), &dir, &mut out.warnings);
            }
            out.videos.push(job);
        }
    }
    out.recognised = recognised(&out.videos);
    for (dir, meta) in &metadata {
        if let Metadata::Dfdc(entries) = meta {
            let seen = listed_seen.get(dir);
            for name in entries.keys().filter(|n| !seen.is_some_and(|s| s.contains(*n))) {
                out.warnings.push(format!("{}: lists {name}, which is not in the folder", dir.join("metadata.json").display()));
            }
        }
    }
    out
}

/// Labels a DFDC video from its `metadata.json` entry, warning about what is missing or odd.
fn label_from_metadata(job: &mut VideoJob, entry: Option<&DfdcEntry>, dir: &Path, warnings: &mut Vec<String>) {
    let path = job.path.clone();
    let Some(e) = entry else {
        warnings.push(format!("{}: not listed in {}; label left empty", path.display(), dir.join("metadata.json").display()));
        return;
    };
    job.label = match e.label.as_deref() {
        Some("REAL") => Some(0),
        Some("FAKE") => Some(1),
        other => {
            warnings.push(format!("{}: label {:?} in metadata.json is neither REAL nor FAKE; left empty", path.display(), other));
            None
        }
    };
    job.split = e.split.clone().unwrap_or_default();
    if let Some(o) = e.original.as_deref().filter(|o| !o.is_empty()) {
        job.original = safe_component(&stem(Path::new(o)));
        if !dir.join(o).exists() {
            warnings.push(format!("{}: its original {o} (metadata.json) is not in the folder", path.display()));
        }
    } else if job.label == Some(1) {
        warnings.push(format!("{}: FAKE without an original in metadata.json", path.display()));
    }
}

/// The DFDC `split` of one video, from the `metadata.json` of its folder.
pub fn dfdc_split(video: &Path) -> Option<String> {
    let dir = video.parent()?;
    let bytes = std::fs::read(dir.join("metadata.json")).ok()?;
    let meta: HashMap<String, DfdcEntry> = serde_json::from_slice(&bytes).ok()?;
    meta.get(video.file_name()?.to_str()?)?.split.clone()
}

/// The `metadata.json` of `dir`: absent, broken (a warning naming it), or DFDC entries.
fn read_metadata(dir: &Path, warnings: &mut Vec<String>) -> Metadata {
    let path = dir.join("metadata.json");
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Metadata::None,
        Err(e) => {
            warnings.push(format!("{}: cannot read ({e}); labels of its videos left empty", path.display()));
            return Metadata::Broken;
        }
    };
    match serde_json::from_slice::<HashMap<String, DfdcEntry>>(&bytes) {
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

    /// Bug: `..mp4` and `...mp4` got the id `..`, and a failing one's cleanup deleted `faces/`.
    #[test]
    fn video_ids_are_safe_path_components() {
        for (raw, safe) in [("..", "%2E%2E"), (".", "%2E"), ("", "_"), ("a/b", "a%2Fb"), ("a\tb", "a%09b"), ("50%", "50%25"), ("...", "...")] {
            assert_eq!(safe_component(raw), safe, "{raw:?}");
        }
        use std::os::unix::ffi::OsStrExt;
        let odd = safe_os(std::ffi::OsStr::from_bytes(b"\xff\xfeclip"));
        assert_eq!(odd, "%FF%FEclip");
        let root = Path::new("/v");
        assert_eq!(video_id(Path::new("/v/..mp4"), root, false), "%2E");
        assert_eq!(video_id(Path::new("/v/...mp4"), root, false), "%2E%2E");
        assert_eq!(video_id(Path::new("/v/.mp4"), root, false), ".mp4");
        assert_eq!(video_id(Path::new("/v/x/clip.tar.mp4"), root, false), "x__clip.tar");
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
        let s = scan(&[dir.path().to_path_buf()], &ScanOptions::default());
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
        let s = scan(&[dir.path().to_path_buf(), dir.path().join("nope")], &ScanOptions::default());
        assert_eq!(s.videos.len(), 1);
        assert_eq!(s.videos[0].video_id, "x__y__clip");
        assert_eq!(s.videos[0].dataset, "videos");
        assert_eq!(s.errors.len(), 1);
        assert!(s.errors[0].contains("nope"));
    }
}
