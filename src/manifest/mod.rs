//! The CSV manifests: the contract between stages and with users (schema: `manifests/README.md`).
//!
//! - `videos.csv`: one row per video, ok or failed;
//! - `detections.csv`: one row per detected face per sampled frame;
//! - `faces.csv`: one row per written crop, labelled, ready for training.
//!
//! Paths in a manifest are relative to the manifest's folder ([`paths`]). Rows are appended
//! per finished video by the pipeline's journal ([`open_append`]), or a whole manifest is
//! written at once, atomically ([`write_all`]).

pub mod paths;

pub use paths::{path_inside, rebase, relative_path};

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Status of a video in `videos.csv`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum VideoStatus {
    Ok,
    /// Truncated or corrupt: the frames before the damage were processed (`error` says where).
    Partial,
    Failed,
}

impl VideoStatus {
    /// The name in `videos.csv` and the journal.
    pub fn as_str(&self) -> &'static str {
        match self {
            VideoStatus::Ok => "ok",
            VideoStatus::Partial => "partial",
            VideoStatus::Failed => "failed",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VideoRow {
    pub video_id: String,
    pub path: String,
    pub dataset: String,
    pub part: String,
    /// 0 real, 1 fake, empty when unknown.
    pub label: Option<u8>,
    pub original: String,
    pub frames: u64,
    pub fps: f64,
    pub width: u32,
    pub height: u32,
    pub codec: String,
    pub status: VideoStatus,
    pub error: String,
    pub faces: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DetectionRow {
    pub video_id: String,
    pub frame: u64,
    pub pts: f64,
    pub face: u32,
    /// The face's track in its video (from 0): the same face in consecutive frames, until it
    /// leaves or the scene cuts. Manifests made before tracks read as 0.
    #[serde(default)]
    pub track: u32,
    pub x1: f32,
    pub y1: f32,
    pub x2: f32,
    pub y2: f32,
    pub score: f32,
    /// Ten numbers separated by spaces: x, y of left eye, right eye, nose, left and right mouth corner.
    pub lm: String,
    pub detector: String,
    /// `detected` (the detector ran on this frame) or `interpolated` (between two keyframes
    /// along the face's track); empty in manifests made before keyframes.
    #[serde(default)]
    pub source: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FaceRow {
    pub path: String,
    pub video_id: String,
    pub original: String,
    pub dataset: String,
    pub part: String,
    pub label: Option<u8>,
    pub frame: u64,
    pub face: u32,
    /// The face's track in its video (see [`DetectionRow::track`]).
    #[serde(default)]
    pub track: u32,
    pub x1: f32,
    pub y1: f32,
    pub x2: f32,
    pub y2: f32,
    pub score: f32,
    pub split: String,
    /// With `--crop aligned`: the 2x3 transform from frame pixels to crop pixels,
    /// `a b tx c d ty` (x' = a x + b y + tx, y' = c x + d y + ty); empty otherwise.
    #[serde(default)]
    pub align: String,
}

pub const VIDEOS: &str = "videos.csv";
pub const DETECTIONS: &str = "detections.csv";
pub const FACES: &str = "faces.csv";

/// Manifest errors name the file and, where there is one, the line.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{path}:{line}: {reason}")]
    Row { path: PathBuf, line: u64, reason: String },
    #[error("{path}:1: {reason}")]
    Header { path: PathBuf, reason: String },
    #[error("{target} is outside {base}: write the manifest in a folder that contains the images")]
    Outside { target: PathBuf, base: PathBuf },
}

/// Rounds a coordinate to 1/100 pixel so manifests stay readable.
pub fn round2(v: f32) -> f32 {
    (v * 100.0).round() / 100.0
}

/// Serialises rows as CSV without a header (rows are appended to files that have one).
pub fn rows_to_csv<T: Serialize>(rows: &[T]) -> Vec<u8> {
    let mut w = csv::WriterBuilder::new().has_headers(false).from_writer(Vec::new());
    for r in rows {
        w.serialize(r).expect("manifest rows serialise");
    }
    w.into_inner().expect("in-memory writer")
}

/// The CSV header line of a row type.
pub fn header<T: Serialize + Default>() -> Vec<u8> {
    let mut w = csv::WriterBuilder::new().has_headers(true).from_writer(Vec::new());
    w.serialize(T::default()).expect("header serialises");
    let bytes = w.into_inner().expect("in-memory writer");
    let end = bytes.iter().position(|b| *b == b'\n').map_or(bytes.len(), |p| p + 1);
    bytes[..end].to_vec()
}

impl Default for VideoStatus {
    fn default() -> Self {
        VideoStatus::Ok
    }
}
impl Default for VideoRow {
    fn default() -> Self {
        VideoRow {
            video_id: String::new(),
            path: String::new(),
            dataset: String::new(),
            part: String::new(),
            label: None,
            original: String::new(),
            frames: 0,
            fps: 0.0,
            width: 0,
            height: 0,
            codec: String::new(),
            status: VideoStatus::Ok,
            error: String::new(),
            faces: 0,
        }
    }
}
impl Default for DetectionRow {
    fn default() -> Self {
        DetectionRow {
            video_id: String::new(),
            frame: 0,
            pts: 0.0,
            face: 0,
            track: 0,
            x1: 0.0,
            y1: 0.0,
            x2: 0.0,
            y2: 0.0,
            score: 0.0,
            lm: String::new(),
            detector: String::new(),
            source: String::new(),
        }
    }
}
impl Default for FaceRow {
    fn default() -> Self {
        FaceRow {
            path: String::new(),
            video_id: String::new(),
            original: String::new(),
            dataset: String::new(),
            part: String::new(),
            label: None,
            frame: 0,
            face: 0,
            track: 0,
            x1: 0.0,
            y1: 0.0,
            x2: 0.0,
            y2: 0.0,
            score: 0.0,
            split: String::new(),
            align: String::new(),
        }
    }
}

/// Reads every row of a manifest, naming the file and line of the first bad row.
pub fn read_rows<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<Vec<T>, ManifestError> {
    let mut r = csv::Reader::from_path(path).map_err(|e| ManifestError::Io {
        path: path.into(),
        source: std::io::Error::other(e.to_string()),
    })?;
    let mut out = Vec::new();
    for (i, row) in r.deserialize().enumerate() {
        let row = row.map_err(|e| ManifestError::Row { path: path.into(), line: i as u64 + 2, reason: e.to_string() })?;
        out.push(row);
    }
    Ok(out)
}

/// Writes a complete manifest (header and `rows`) atomically: a reader sees the old file or the
/// new one, never half of one. Creates the folder.
pub fn write_all<T: Serialize + Default>(out: &Path, rows: &[T]) -> Result<(), ManifestError> {
    let mut text = header::<T>();
    text.extend(rows_to_csv(rows));
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| ManifestError::Io { path, source }
    };
    if let Some(d) = out.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(d).map_err(io(d))?;
    }
    let mut tmp = out.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    std::fs::write(&tmp, text).and_then(|_| std::fs::rename(&tmp, out)).map_err(io(out))
}

/// Opens `path` for appending, writing the header first if the file is new or empty.
pub fn open_append(path: &Path, header: &[u8]) -> Result<std::fs::File, ManifestError> {
    let io = |e| ManifestError::Io { path: path.into(), source: e };
    let mut f = std::fs::OpenOptions::new().create(true).append(true).read(true).open(path).map_err(io)?;
    if f.metadata().map_err(io)?.len() == 0 {
        f.write_all(header).map_err(io)?;
        f.sync_data().map_err(io)?;
    }
    Ok(f)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_carry_the_documented_columns() {
        let h = String::from_utf8(header::<FaceRow>()).unwrap();
        assert_eq!(h.trim_end(), "path,video_id,original,dataset,part,label,frame,face,track,x1,y1,x2,y2,score,split,align");
        let h = String::from_utf8(header::<VideoRow>()).unwrap();
        assert_eq!(
            h.trim_end(),
            "video_id,path,dataset,part,label,original,frames,fps,width,height,codec,status,error,faces"
        );
        let h = String::from_utf8(header::<DetectionRow>()).unwrap();
        assert_eq!(h.trim_end(), "video_id,frame,pts,face,track,x1,y1,x2,y2,score,lm,detector,source");
    }

    #[test]
    fn rows_round_trip_through_a_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("faces.csv");
        let row = FaceRow { path: "faces/x/1.png".into(), label: Some(1), x1: 1.5, ..Default::default() };
        let mut f = open_append(&p, &header::<FaceRow>()).unwrap();
        f.write_all(&rows_to_csv(&[row.clone(), row.clone()])).unwrap();
        drop(f);
        let back: Vec<FaceRow> = read_rows(&p).unwrap();
        assert_eq!(back, vec![row.clone(), row]);
    }

    #[test]
    fn a_bad_row_is_reported_with_its_line() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("faces.csv");
        let mut text = String::from_utf8(header::<FaceRow>()).unwrap();
        text.push_str("a,v,o,d,p,0,1,0,0,1,1,2,2,0.9,train,\n");
        text.push_str("a,v,o,d,p,zero,1,0,0,1,1,2,2,0.9,train,\n");
        std::fs::write(&p, text).unwrap();
        let err = read_rows::<FaceRow>(&p).unwrap_err().to_string();
        assert!(err.contains("faces.csv:3"), "{err}");
    }

    #[test]
    fn manifests_written_before_tracks_read_as_track_0() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("faces.csv");
        std::fs::write(&p, "path,video_id,original,dataset,part,label,frame,face,x1,y1,x2,y2,score,split\na,v,o,d,p,1,3,0,1,1,2,2,0.9,train\n").unwrap();
        let rows: Vec<FaceRow> = read_rows(&p).unwrap();
        assert_eq!((rows[0].frame, rows[0].track, rows[0].label), (3, 0, Some(1)));
    }
}
