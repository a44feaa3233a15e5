//! The run journal: what makes `extract` and `detect` resumable after any crash.
//!
//! A video is committed by appending its rows to the manifests, syncing them, then appending
//! one journal line `video_id \t status \t len(videos.csv) \t len(detections.csv) \t len(faces.csv)`
//! and syncing it. On start, [`Journal::recover`] keeps the complete lines, cuts each manifest
//! back to the lengths of the last one (dropping rows of a commit that was cut short) and
//! deletes crop folders of videos that were never committed (their crops are redone).
//!
//! `--retry-failed` forgets the failed videos (their only trace is one `videos.csv` row each)
//! so the run does them again: the new `videos.csv` and journal are written under `retry/`,
//! a `retry/ready` marker is synced, and only then are both renamed into place; a crash in
//! between is finished by the next start. [`lock`] keeps a second run out of a folder in use.

use std::collections::HashSet;
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};

use crate::manifest::{self, DetectionRow, FaceRow, VideoRow};

pub const JOURNAL: &str = "journal.tsv";

#[derive(Debug, thiserror::Error)]
#[error("{path}: {source}")]
pub struct JournalError {
    pub path: PathBuf,
    pub source: std::io::Error,
}

fn io(path: &Path) -> impl Fn(std::io::Error) -> JournalError + '_ {
    move |source| JournalError { path: path.to_path_buf(), source }
}

/// An output folder held by this run (`DIR/.lock`, an OS file lock released on exit).
pub struct OutputLock {
    _file: std::fs::File,
}

/// Takes the output folder `dir` for this process, or says it is in use.
pub fn lock(dir: &Path) -> Result<OutputLock, JournalError> {
    let path = dir.join(".lock");
    let mut file = std::fs::OpenOptions::new().create(true).truncate(false).read(true).write(true).open(&path).map_err(io(&path))?;
    match file.try_lock() {
        Ok(()) => {
            file.set_len(0).map_err(io(&path))?;
            writeln!(file, "{}", std::process::id()).map_err(io(&path))?;
            Ok(OutputLock { _file: file })
        }
        Err(std::fs::TryLockError::WouldBlock) => {
            let pid = std::fs::read_to_string(&path).ok().filter(|p| !p.trim().is_empty()).unwrap_or_else(|| "unknown".into());
            Err(JournalError {
                path: dir.to_path_buf(),
                source: std::io::Error::other(format!(
                    "in use by another scmpl run (pid {}); wait for it or use another --out",
                    pid.trim()
                )),
            })
        }
        Err(std::fs::TryLockError::Error(e)) => Err(io(&path)(e)),
    }
}

/// One complete journal line.
struct Entry {
    video_id: String,
    ok: bool,
    lengths: [u64; 3],
}

/// The complete lines of the journal at `path` and their byte length.
fn read_entries(path: &Path) -> Result<(Vec<Entry>, u64), JournalError> {
    let mut entries = Vec::new();
    let mut good_len = 0u64;
    if let Ok(f) = std::fs::File::open(path) {
        let mut reader = std::io::BufReader::new(f);
        let mut line = String::new();
        loop {
            line.clear();
            let n = reader.read_line(&mut line).map_err(io(path))?;
            if n == 0 || !line.ends_with('\n') {
                break; // end, or a line cut short by a crash
            }
            let cols: Vec<&str> = line.trim_end_matches('\n').split('\t').collect();
            let parsed: Option<[u64; 3]> = (cols.len() == 5)
                .then(|| Some([cols[2].parse().ok()?, cols[3].parse().ok()?, cols[4].parse().ok()?]))
                .flatten();
            let Some(lengths) = parsed else { break };
            entries.push(Entry { video_id: unescape_id(cols[0]), ok: cols[1] != "failed", lengths });
            good_len += n as u64;
        }
    }
    Ok((entries, good_len))
}

fn entry_line(e: &Entry) -> String {
    let [v, d, f] = e.lengths;
    format!("{}\t{}\t{v}\t{d}\t{f}\n", escape_id(&e.video_id), if e.ok { "ok" } else { "failed" })
}

/// A video id as one journal field: `\`, tab, newline and carriage return escaped, so any id
/// round-trips and one odd name never hides the lines after it.
fn escape_id(id: &str) -> String {
    let mut out = String::with_capacity(id.len());
    for c in id.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\t' => out.push_str("\\t"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            c => out.push(c),
        }
    }
    out
}

/// The inverse of [`escape_id`].
fn unescape_id(field: &str) -> String {
    let mut out = String::with_capacity(field.len());
    let mut chars = field.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('t') => out.push('\t'),
            Some('n') => out.push('\n'),
            Some('r') => out.push('\r'),
            Some(other) => out.push(other),
            None => out.push('\\'),
        }
    }
    out
}

/// Moves a prepared retry (`retry/` with its `ready` marker) into place; no-op without one.
fn finish_retry(dir: &Path) -> Result<(), JournalError> {
    let staging = dir.join("retry");
    if !staging.join("ready").exists() {
        if staging.exists() {
            std::fs::remove_dir_all(&staging).map_err(io(&staging))?; // never got ready: drop it
        }
        return Ok(());
    }
    for name in [manifest::VIDEOS, JOURNAL] {
        let from = staging.join(name);
        if from.exists() {
            std::fs::rename(&from, dir.join(name)).map_err(io(&from))?;
        }
    }
    std::fs::remove_dir_all(&staging).map_err(io(&staging))
}

/// Writes `retry/` without the failed videos' videos.csv rows and journal lines, marks it
/// ready, and moves it into place. Returns how many videos will be retried.
fn forget_failed(dir: &Path, entries: &[Entry]) -> Result<usize, JournalError> {
    let failed = entries.iter().filter(|e| !e.ok).count();
    if failed == 0 {
        return Ok(0);
    }
    let videos_path = dir.join(manifest::VIDEOS);
    let videos = std::fs::read(&videos_path).map_err(io(&videos_path))?;
    let header = manifest::header::<VideoRow>().len() as u64;
    let corrupt = |why: String| JournalError { path: videos_path.clone(), source: std::io::Error::other(why) };
    if (videos.len() as u64) < header {
        return Err(corrupt("shorter than its header, though the journal lists videos".into()));
    }
    let mut new_videos = videos[..header as usize].to_vec();
    let mut journal = String::new();
    let mut start = header;
    for e in entries {
        let end = e.lengths[0];
        if end < start || end as usize > videos.len() {
            return Err(corrupt(format!("journal entry of {} does not match the file", e.video_id)));
        }
        if e.ok {
            new_videos.extend_from_slice(&videos[start as usize..end as usize]);
            let kept = Entry { video_id: e.video_id.clone(), ok: true, lengths: [new_videos.len() as u64, e.lengths[1], e.lengths[2]] };
            journal.push_str(&entry_line(&kept));
        }
        start = end;
    }
    let staging = dir.join("retry");
    std::fs::create_dir_all(&staging).map_err(io(&staging))?;
    for (name, bytes) in [(manifest::VIDEOS, new_videos.as_slice()), (JOURNAL, journal.as_bytes()), ("ready", b"".as_slice())] {
        let p = staging.join(name);
        let mut f = std::fs::File::create(&p).map_err(io(&p))?;
        f.write_all(bytes).map_err(io(&p))?;
        f.sync_all().map_err(io(&p))?;
    }
    finish_retry(dir)?;
    Ok(failed)
}

/// Writes committed videos; knows which are done.
pub struct Journal {
    dir: PathBuf,
    file: std::fs::File,
    videos: std::fs::File,
    detections: std::fs::File,
    faces: Option<std::fs::File>,
    finished: HashSet<String>,
}

/// Length of a file, 0 when it does not exist.
fn len_of(path: &Path) -> u64 {
    std::fs::metadata(path).map(|m| m.len()).unwrap_or(0)
}

fn truncate_to(path: &Path, len: u64) -> Result<(), JournalError> {
    if len_of(path) > len {
        let f = std::fs::OpenOptions::new().write(true).open(path).map_err(io(path))?;
        f.set_len(len).map_err(io(path))?;
        f.sync_all().map_err(io(path))?;
    }
    Ok(())
}

impl Journal {
    /// Opens the journal of output folder `dir`, repairing what a crash left behind.
    /// `with_faces`: whether this stage writes crops and `faces.csv`.
    /// `retry_failed`: forget the videos that failed so that this run does them again.
    pub fn recover(dir: &Path, with_faces: bool, retry_failed: bool) -> Result<Journal, JournalError> {
        let path = dir.join(JOURNAL);
        finish_retry(dir)?;
        let (mut entries, mut good_len) = read_entries(&path)?;
        if retry_failed {
            // Cut a commit left half-done first, so the rows line up with the journal.
            truncate_to(&path, good_len)?;
            if let Some(last) = entries.last() {
                truncate_to(&dir.join(manifest::VIDEOS), last.lengths[0])?;
            }
            if forget_failed(dir, &entries)? > 0 {
                (entries, good_len) = read_entries(&path)?;
            }
        }
        let lengths = entries.last().map(|e| e.lengths).unwrap_or([0; 3]);
        let finished: HashSet<String> = entries.into_iter().map(|e| e.video_id).collect();
        truncate_to(&path, good_len)?;
        let names = [manifest::VIDEOS, manifest::DETECTIONS, manifest::FACES];
        for (name, len) in names.iter().zip(lengths) {
            truncate_to(&dir.join(name), len)?;
        }
        remove_orphan_crops(&dir.join("faces"), &finished)?;
        let file = std::fs::OpenOptions::new().create(true).append(true).open(&path).map_err(io(&path))?;
        let open = |name: &str, header: Vec<u8>| {
            let p = dir.join(name);
            manifest::open_append(&p, &header).map_err(|e| JournalError { path: p, source: std::io::Error::other(e.to_string()) })
        };
        Ok(Journal {
            dir: dir.to_path_buf(),
            file,
            videos: open(manifest::VIDEOS, manifest::header::<VideoRow>())?,
            detections: open(manifest::DETECTIONS, manifest::header::<DetectionRow>())?,
            faces: if with_faces { Some(open(manifest::FACES, manifest::header::<FaceRow>())?) } else { None },
            finished,
        })
    }

    pub fn is_finished(&self, video_id: &str) -> bool {
        self.finished.contains(video_id)
    }

    pub fn finished_count(&self) -> usize {
        self.finished.len()
    }

    /// Appends one video's rows and marks it finished, durably.
    pub fn commit(&mut self, video: &VideoRow, detections: &[DetectionRow], faces: &[FaceRow]) -> Result<(), JournalError> {
        let dir = self.dir.clone();
        let write = |f: &mut std::fs::File, bytes: &[u8], name: &str| -> Result<(), JournalError> {
            let p = dir.join(name);
            f.write_all(bytes).map_err(io(&p))?;
            f.sync_data().map_err(io(&p))
        };
        write(&mut self.videos, &manifest::rows_to_csv(std::slice::from_ref(video)), manifest::VIDEOS)?;
        write(&mut self.detections, &manifest::rows_to_csv(detections), manifest::DETECTIONS)?;
        if let Some(f) = self.faces.as_mut() {
            write(f, &manifest::rows_to_csv(faces), manifest::FACES)?;
        }
        let line = format!(
            "{}\t{}\t{}\t{}\t{}\n",
            escape_id(&video.video_id),
            video.status.as_str(),
            len_of(&self.dir.join(manifest::VIDEOS)),
            len_of(&self.dir.join(manifest::DETECTIONS)),
            len_of(&self.dir.join(manifest::FACES)),
        );
        let p = self.dir.join(JOURNAL);
        self.file.write_all(line.as_bytes()).map_err(io(&p))?;
        self.file.sync_data().map_err(io(&p))?;
        self.finished.insert(video.video_id.clone());
        Ok(())
    }
}

/// Deletes `faces/<dataset>/<video_id>/` folders whose video is not finished.
fn remove_orphan_crops(faces: &Path, finished: &HashSet<String>) -> Result<(), JournalError> {
    let Ok(datasets) = std::fs::read_dir(faces) else { return Ok(()) };
    for ds in datasets.flatten() {
        let Ok(videos) = std::fs::read_dir(ds.path()) else { continue };
        for v in videos.flatten() {
            let id = v.file_name().to_string_lossy().into_owned();
            if !finished.contains(&id) {
                let p = v.path();
                if p.is_dir() {
                    std::fs::remove_dir_all(&p).map_err(io(&p))?;
                } else {
                    std::fs::remove_file(&p).map_err(io(&p))?;
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Bug: a tab or newline in a video id broke `journal.tsv` at that line, so every rerun redid
    /// that video and all committed after it.
    #[test]
    fn any_video_id_round_trips_through_the_journal() {
        let dir = tempfile::tempdir().unwrap();
        let ids = ["tab\there", "new\nline", "cr\rx", "comma,\"quote\"", "back\\slash\\t", "plain"];
        let mut j = Journal::recover(dir.path(), false, false).unwrap();
        for id in ids {
            j.commit(&video(id), &[], &[]).unwrap();
        }
        drop(j);
        let j = Journal::recover(dir.path(), false, false).unwrap();
        assert_eq!(j.finished_count(), ids.len());
        assert!(ids.iter().all(|id| j.is_finished(id)), "every id is finished after reopening");
        let back: Vec<VideoRow> = manifest::read_rows(&dir.path().join(manifest::VIDEOS)).unwrap();
        assert_eq!(back.iter().map(|v| v.video_id.as_str()).collect::<Vec<_>>(), ids);
    }

    fn video(id: &str) -> VideoRow {
        VideoRow { video_id: id.into(), ..Default::default() }
    }

    #[test]
    fn a_commit_cut_short_is_rolled_back_and_its_crops_removed() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let mut j = Journal::recover(d, true, false).unwrap();
        let face = FaceRow { path: "faces/x/a/0_0.png".into(), video_id: "a".into(), ..Default::default() };
        j.commit(&video("a"), &[], &[face.clone()]).unwrap();
        drop(j);
        let committed = std::fs::read(d.join(manifest::FACES)).unwrap();
        // A crash mid-commit of video b: rows half written, crops on disk, journal line partial.
        std::fs::OpenOptions::new().append(true).open(d.join(manifest::FACES)).unwrap().write_all(b"faces/x/b/0_0.png,b,").unwrap();
        std::fs::create_dir_all(d.join("faces/x/b")).unwrap();
        std::fs::create_dir_all(d.join("faces/x/a")).unwrap();
        std::fs::write(d.join("faces/x/b/0_0.png"), b"png").unwrap();
        std::fs::OpenOptions::new().append(true).open(d.join(JOURNAL)).unwrap().write_all(b"b\tok\t12").unwrap();

        let j = Journal::recover(d, true, false).unwrap();
        assert!(j.is_finished("a"));
        assert!(!j.is_finished("b"));
        assert_eq!(std::fs::read(d.join(manifest::FACES)).unwrap(), committed);
        assert!(!d.join("faces/x/b").exists());
        assert!(d.join("faces/x/a").exists());
        let rows: Vec<FaceRow> = manifest::read_rows(&d.join(manifest::FACES)).unwrap();
        assert_eq!(rows, vec![face]);
        let text = std::fs::read_to_string(d.join(JOURNAL)).unwrap();
        assert_eq!(text.lines().count(), 1);
    }

    #[test]
    fn retry_failed_drops_failed_rows_and_keeps_lengths_consistent() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let mut j = Journal::recover(d, true, false).unwrap();
        let failed = VideoRow { status: manifest::VideoStatus::Failed, error: "x.mp4: garbage".into(), ..video("b") };
        let face = |v: &str| FaceRow { path: format!("faces/x/{v}/0_0.png"), video_id: v.into(), ..Default::default() };
        j.commit(&video("a"), &[], &[face("a")]).unwrap();
        j.commit(&failed, &[], &[]).unwrap();
        j.commit(&video("c"), &[], &[face("c")]).unwrap();
        drop(j);
        // A plain restart keeps the failed video as done.
        assert!(Journal::recover(d, true, false).unwrap().is_finished("b"));
        let mut j = Journal::recover(d, true, true).unwrap();
        assert!(!j.is_finished("b") && j.is_finished("a") && j.is_finished("c"));
        j.commit(&video("b"), &[], &[face("b")]).unwrap();
        drop(j);
        let j = Journal::recover(d, true, false).unwrap();
        assert_eq!(j.finished_count(), 3);
        let ids = |rows: Vec<VideoRow>| rows.into_iter().map(|r| (r.video_id, r.status)).collect::<Vec<_>>();
        let ok = manifest::VideoStatus::Ok;
        assert_eq!(ids(manifest::read_rows(&d.join(manifest::VIDEOS)).unwrap()), vec![("a".into(), ok), ("c".into(), ok), ("b".into(), ok)]);
        let faces: Vec<FaceRow> = manifest::read_rows(&d.join(manifest::FACES)).unwrap();
        assert_eq!(faces, vec![face("a"), face("c"), face("b")]);
        assert!(!d.join("retry").exists());
    }

    #[test]
    fn a_retry_interrupted_after_its_marker_is_finished_by_the_next_start() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let mut j = Journal::recover(d, true, false).unwrap();
        j.commit(&VideoRow { status: manifest::VideoStatus::Failed, ..video("a") }, &[], &[]).unwrap();
        j.commit(&video("b"), &[], &[]).unwrap();
        drop(j);
        // The state a crash right after forget_failed's `ready` leaves: staged, not moved.
        let staged_videos = [manifest::header::<VideoRow>(), manifest::rows_to_csv(&[video("b")])].concat();
        std::fs::create_dir_all(d.join("retry")).unwrap();
        std::fs::write(d.join("retry").join(manifest::VIDEOS), &staged_videos).unwrap();
        std::fs::write(d.join("retry").join(JOURNAL), format!("b\tok\t{}\t0\t0\n", staged_videos.len())).unwrap();
        std::fs::write(d.join("retry/ready"), b"").unwrap();
        let j = Journal::recover(d, true, false).unwrap();
        assert!(!j.is_finished("a") && j.is_finished("b"));
        assert_eq!(std::fs::read(d.join(manifest::VIDEOS)).unwrap(), staged_videos);
        // A staging folder without its marker is dropped: the old files stand.
        std::fs::create_dir_all(d.join("retry")).unwrap();
        std::fs::write(d.join("retry").join(JOURNAL), b"junk").unwrap();
        let j = Journal::recover(d, true, false).unwrap();
        assert!(j.is_finished("b") && !d.join("retry").exists());
    }

    #[test]
    fn a_folder_is_locked_by_one_run_at_a_time() {
        let dir = tempfile::tempdir().unwrap();
        let held = lock(dir.path()).unwrap();
        let err = lock(dir.path()).err().expect("second lock refused").to_string();
        assert!(err.contains("in use by another scmpl run") && err.contains(&std::process::id().to_string()), "{err}");
        drop(held);
        assert!(lock(dir.path()).is_ok());
    }
}
