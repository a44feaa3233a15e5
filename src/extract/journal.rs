//! The run journal: what makes `extract` and `detect` resumable after any crash.
//!
//! A video is committed by appending its rows to the manifests, syncing them, then appending
//! one journal line `video_id \t status \t len(videos.csv) \t len(detections.csv) \t len(faces.csv)`
//! and syncing it. On start, [`Journal::recover`] keeps the complete lines, cuts each manifest
//! back to the lengths of the last one (dropping rows of a commit that was cut short) and
//! deletes crop folders of videos that were never committed (their crops are redone).

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
    pub fn recover(dir: &Path, with_faces: bool) -> Result<Journal, JournalError> {
        let path = dir.join(JOURNAL);
        let mut finished = HashSet::new();
        let mut lengths = [0u64; 3];
        let mut good_len = 0u64;
        if let Ok(f) = std::fs::File::open(&path) {
            let mut reader = std::io::BufReader::new(f);
            let mut line = String::new();
            loop {
                line.clear();
                let n = reader.read_line(&mut line).map_err(io(&path))?;
                if n == 0 || !line.ends_with('\n') {
                    break; // end, or a line cut short by a crash
                }
                let cols: Vec<&str> = line.trim_end_matches('\n').split('\t').collect();
                let parsed: Option<[u64; 3]> = (cols.len() == 5)
                    .then(|| Some([cols[2].parse().ok()?, cols[3].parse().ok()?, cols[4].parse().ok()?]))
                    .flatten();
                let Some(l) = parsed else { break };
                lengths = l;
                finished.insert(cols[0].to_string());
                good_len += n as u64;
            }
        }
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
            video.video_id,
            if video.status == manifest::VideoStatus::Ok { "ok" } else { "failed" },
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

    fn video(id: &str) -> VideoRow {
        VideoRow { video_id: id.into(), ..Default::default() }
    }

    #[test]
    fn a_commit_cut_short_is_rolled_back_and_its_crops_removed() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let mut j = Journal::recover(d, true).unwrap();
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

        let j = Journal::recover(d, true).unwrap();
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
}
