//! `scmpl manifest export`: a faces.csv in the shapes other tools read: `folds.csv` (the
//! DFDC-winning code) and DeepfakeBench's dataset JSON.

use std::path::Path;

use super::ToolError;
use crate::hash::stable_hash;
use crate::manifest::{self, FaceRow};

/// The export formats (`--format`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Folds,
    #[value(name = "deepfakebench")]
    DeepfakeBench,
}


/// `folds.csv` of the DFDC-winning code: `video,file,label,original,frame,fold`, with the fold
/// of a row fixed by its original (a fake and its source share a fold), and the face's `track`
/// as a last column (the winning code reads columns by name, so the extra one is ignored there).
pub fn export_folds(path: &Path, folds: u64, out: &Path) -> Result<usize, ToolError> {
    let rows: Vec<FaceRow> = manifest::read_rows(path)?;
    let csv_err = |e: csv::Error| ToolError::Io { path: out.to_path_buf(), source: e.into() };
    let mut w = csv::Writer::from_path(out).map_err(csv_err)?;
    w.write_record(["video", "file", "label", "original", "frame", "fold", "track"]).map_err(csv_err)?;
    for r in &rows {
        let original = if r.original.is_empty() { &r.video_id } else { &r.original };
        let fold = stable_hash(&format!("{}/{}", r.dataset, original)) % folds.max(1);
        let file = Path::new(&r.path).file_name().map(|f| f.to_string_lossy().into_owned()).unwrap_or_default();
        w.write_record([
            r.video_id.as_str(),
            file.as_str(),
            &r.label.map(|l| l.to_string()).unwrap_or_default(),
            original,
            &r.frame.to_string(),
            &fold.to_string(),
            &r.track.to_string(),
        ])
        .map_err(csv_err)?;
    }
    w.flush().map_err(ToolError::io(out))?;
    Ok(rows.len())
}

/// How a faces.csv dataset is named in DeepfakeBench: its JSON name, and the class of a row.
fn dfb_names(dataset: &str, part: &str, fake: bool) -> (String, String, bool) {
    match dataset {
        "dfdc" => ("DFDC".into(), if fake { "DFDC_Fake" } else { "DFDC_Real" }.into(), true),
        "celebdf" => ("Celeb-DF-v2".into(), if fake { "CelebDFv2_fake" } else { "CelebDFv2_real" }.into(), true),
        "ffpp" => {
            let class = match part {
                "Deepfakes" => "FF-DF",
                "Face2Face" => "FF-F2F",
                "FaceSwap" => "FF-FS",
                "NeuralTextures" => "FF-NT",
                "FaceShifter" => "FF-FH",
                _ if !fake => "FF-real",
                _ => "FF-DF",
            };
            ("FaceForensics++".into(), class.into(), true)
        }
        other => (format!("scmpl-{other}"), format!("scmpl-{other}_{}", if fake { "Fake" } else { "Real" }), false),
    }
}

/// The DeepfakeBench mode of a row's split: train, val or test (paper sets: `labelled` is
/// train, the test sets test; rows without a split are test sets of an external dataset).
fn dfb_mode(split: &str) -> Option<&'static str> {
    match split {
        "train" | "labelled" => Some("train"),
        "val" => Some("val"),
        "test" | "" => Some("test"),
        s if s.starts_with("test") => Some("test"),
        _ => None,
    }
}

/// What a DeepfakeBench export wrote and left out.
#[derive(Debug, Default)]
pub struct DeepfakeBenchExport {
    pub frames: usize,
    /// JSON files written (one per dataset).
    pub files: Vec<std::path::PathBuf>,
    /// `label_dict` lines DeepfakeBench's config needs for datasets it does not know.
    pub label_dict: Vec<String>,
    pub unlabelled: usize,
    /// Faces left out because the frame's face was taken from the video's main track, or
    /// (where that track has no face in the frame, or two) another face was larger.
    pub extra_faces: usize,
    /// Frames whose exported face is not on their video's main track (it has no face there).
    pub off_track: usize,
    /// Rows of splits DeepfakeBench has no mode for (e.g. `unlabelled`).
    pub other_split: usize,
}

/// DeepfakeBench's layout from a faces.csv: `out/dataset_json/<Name>.json` (one file per
/// dataset, every class with `train`, `val` and `test`, FF++ under a compression level) and
/// `out/rgb/<Name>/frames/<video>/<frame>.<ext>` (hard links to the crops, one face per frame),
/// whose paths in the JSON start with `./<root_prefix>/`, so DeepfakeBench, run
/// from its own folder with `ln -s out/rgb <root_prefix>`, resolves them as they are.
pub fn export_deepfakebench(path: &Path, out: &Path, root_prefix: &str, compression: &str) -> Result<DeepfakeBenchExport, ToolError> {
    let rows: Vec<FaceRow> = manifest::read_rows(path)?;
    let base = crate::manifest::paths::folder_of(path);
    let mut report = DeepfakeBenchExport::default();
    // DeepfakeBench reads one face per frame and a label per video, so a video is followed along
    // one person: its main track (most faces, then the larger total area). Frames where that
    // track has no face fall back to the frame's largest face.
    let area = |f: &FaceRow| (f.x2 - f.x1) * (f.y2 - f.y1);
    let mut tracks: std::collections::HashMap<(&str, &str, u32), (usize, f32)> = Default::default();
    for r in rows.iter().filter(|r| r.label.is_some()) {
        let t = tracks.entry((&r.dataset, &r.video_id, r.track)).or_default();
        t.0 += 1;
        t.1 += area(r);
    }
    let mut main: std::collections::HashMap<(&str, &str), (u32, usize, f32)> = Default::default();
    for (&(dataset, video, track), &(n, a)) in &tracks {
        let m = main.entry((dataset, video)).or_insert((track, n, a));
        if (n, a, std::cmp::Reverse(track)) > (m.1, m.2, std::cmp::Reverse(m.0)) {
            *m = (track, n, a);
        }
    }
    let on_main = |r: &FaceRow| main.get(&(r.dataset.as_str(), r.video_id.as_str())).is_some_and(|m| m.0 == r.track);
    let mut best: std::collections::BTreeMap<(String, String, u64), &FaceRow> = Default::default();
    for r in &rows {
        if r.label.is_none() {
            report.unlabelled += 1;
            continue;
        }
        let key = (r.dataset.clone(), r.video_id.clone(), r.frame);
        // Preferred: on the main track, then larger.
        let rank = |f: &FaceRow| (on_main(f), area(f));
        match best.get(&key) {
            Some(b) if rank(b) >= rank(r) => report.extra_faces += 1,
            Some(_) => {
                report.extra_faces += 1;
                best.insert(key, r);
            }
            None => {
                best.insert(key, r);
            }
        }
    }
    report.off_track = best.values().filter(|r| !on_main(r)).count();
    let prefix = root_prefix.trim_matches('/');
    let mut datasets: std::collections::BTreeMap<String, serde_json::Value> = Default::default();
    for ((dataset, video, frame), r) in &best {
        let Some(mode) = dfb_mode(&r.split) else {
            report.other_split += 1;
            continue;
        };
        let (name, class, known) = dfb_names(dataset, &r.part, r.label == Some(1));
        let ext = Path::new(&r.path).extension().and_then(|e| e.to_str()).unwrap_or("png");
        let rel = format!("{name}/frames/{video}/{frame}.{ext}");
        let link = out.join("rgb").join(&rel);
        let src = base.join(&r.path);
        if let Some(dir) = link.parent() {
            std::fs::create_dir_all(dir).map_err(ToolError::io(dir))?;
        }
        let _ = std::fs::remove_file(&link);
        if std::fs::hard_link(&src, &link).is_err() {
            std::fs::copy(&src, &link).map_err(ToolError::io(&src))?;
        }
        let root = datasets.entry(name.clone()).or_insert_with(|| serde_json::json!({ &name: {} }));
        let classes = root[&name].as_object_mut().expect("object");
        // Every class has every mode (DeepfakeBench reads train and test of each), FF++'s under
        // the compression level its loader selects.
        let empty = if name == "FaceForensics++" { serde_json::json!({ compression: {} }) } else { serde_json::json!({}) };
        let entry = classes.entry(class.clone()).or_insert_with(|| serde_json::json!({ "train": empty, "val": empty, "test": empty }));
        let videos = if name == "FaceForensics++" { &mut entry[mode][compression] } else { &mut entry[mode] };
        let v = &mut videos[video.as_str()];
        if v.is_null() {
            *v = serde_json::json!({ "label": class, "frames": [] });
        }
        v["frames"].as_array_mut().expect("array").push(format!("./{prefix}/{rel}").into());
        report.frames += 1;
        if !known {
            for line in [format!("{class}: {}", u8::from(r.label == Some(1)))] {
                if !report.label_dict.contains(&line) {
                    report.label_dict.push(line);
                }
            }
        }
    }
    let json_dir = out.join("dataset_json");
    std::fs::create_dir_all(&json_dir).map_err(ToolError::io(&json_dir))?;
    for (name, value) in datasets {
        let file = json_dir.join(format!("{name}.json"));
        std::fs::write(&file, serde_json::to_string_pretty(&value).expect("json")).map_err(ToolError::io(&file))?;
        report.files.push(file);
    }
    report.label_dict.sort();
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A two-person video: track 1 has the larger face on two frames but track 0 is on all four,
    /// so every frame exports track 0's face; a second video whose frame 1 has only track 5
    /// falls back to it.
    #[test]
    fn deepfakebench_follows_each_video_s_main_track() {
        let dir = tempfile::tempdir().unwrap();
        let header = "path,video_id,original,dataset,part,label,frame,face,track,x1,y1,x2,y2,score,split,align";
        let mut lines = vec![header.to_string()];
        let mut row = |video: &str, frame: u64, face: u32, track: u32, side: f32| {
            let path = format!("crops/{video}_{frame}_{face}.png");
            std::fs::create_dir_all(dir.path().join("crops")).unwrap();
            std::fs::write(dir.path().join(&path), b"png").unwrap();
            lines.push(format!("{path},{video},,fixture,,1,{frame},{face},{track},0,0,{side},{side},0.99,train,"));
        };
        for frame in 0..4 {
            row("two", frame, 0, 0, 50.0);
            if frame < 2 {
                row("two", frame, 1, 1, 80.0);
            }
        }
        row("gap", 0, 0, 3, 60.0);
        row("gap", 1, 0, 5, 40.0);
        row("gap", 2, 0, 3, 60.0);
        let manifest = dir.path().join("faces.csv");
        std::fs::write(&manifest, lines.join("\n") + "\n").unwrap();

        let out = dir.path().join("dfb");
        let r = export_deepfakebench(&manifest, &out, "datasets/scmpl", "c23").unwrap();
        assert_eq!((r.frames, r.extra_faces, r.off_track), (7, 2, 1));
        let json: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(out.join("dataset_json/scmpl-fixture.json")).unwrap()).unwrap();
        let frames = json["scmpl-fixture"]["scmpl-fixture_Fake"]["train"]["two"]["frames"].as_array().unwrap();
        assert_eq!(frames.len(), 4);
        // The linked crop of frame 0 is track 0's face (face 0), not the larger face 1.
        let linked = out.join("rgb/scmpl-fixture/frames/two/0.png");
        let face0 = dir.path().join("crops/two_0_0.png");
        use std::os::unix::fs::MetadataExt;
        assert_eq!(std::fs::metadata(&linked).unwrap().ino(), std::fs::metadata(&face0).unwrap().ino());

        let folds = dir.path().join("folds.csv");
        export_folds(&manifest, 5, &folds).unwrap();
        let text = std::fs::read_to_string(&folds).unwrap();
        assert!(text.starts_with("video,file,label,original,frame,fold,track\n"), "{text}");
        assert!(text.lines().any(|l| l.starts_with("two,two_1_1.png,1,two,1,") && l.ends_with(",1")), "{text}");
    }
}
