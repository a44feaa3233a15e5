//! `scmpl extract` and `scmpl detect` driven as a user would, on real media.

#![cfg(feature = "pipeline")]

mod common;

use std::collections::HashMap;
use std::path::Path;

use common::{col, files_under, generated, headers, media, records, run, sorted_lines, stderr};

#[test]
fn carphone_every_frame_has_one_face_inside_the_frame() {
    let out = tempfile::tempdir().unwrap();
    let o = run(&["extract", media("carphone_pristine.mp4").to_str().unwrap(), "--out", out.path().to_str().unwrap(), "--sampling", "all"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let det = out.path().join("detections.csv");
    let h = headers(&det);
    let rows = records(&det);
    let mut per_frame: HashMap<u64, usize> = HashMap::new();
    for r in &rows {
        *per_frame.entry(col(r, &h, "frame").parse().unwrap()).or_default() += 1;
        let (x1, y1, x2, y2): (f32, f32, f32, f32) = (
            col(r, &h, "x1").parse().unwrap(),
            col(r, &h, "y1").parse().unwrap(),
            col(r, &h, "x2").parse().unwrap(),
            col(r, &h, "y2").parse().unwrap(),
        );
        assert!(0.0 <= x1 && x1 < x2 && x2 <= 176.0 && 0.0 <= y1 && y1 < y2 && y2 <= 144.0, "{r:?}");
        assert_eq!(col(r, &h, "lm").split(' ').count(), 10);
    }
    assert!(per_frame.len() >= 118, "faces in {} of 120 frames", per_frame.len());
    assert!(per_frame.values().all(|n| *n == 1), "one face per frame");
    // Every face row's crop exists, decodes, and is square (reference rule).
    let faces = out.path().join("faces.csv");
    let fh = headers(&faces);
    let frows = records(&faces);
    assert_eq!(frows.len(), rows.len());
    for r in &frows {
        let img = common::decode_file(&out.path().join(col(r, &fh, "path")));
        assert_eq!(img.width, img.height);
    }
    let videos = records(&out.path().join("videos.csv"));
    assert_eq!(videos.len(), 1);
    assert!(out.path().join("config.toml").exists());
}

#[test]
fn dfdc_fixture_manifests_match_the_metadata_and_every_path_decodes() {
    let out = tempfile::tempdir().unwrap();
    let o = run(&["extract", generated("dfdc").to_str().unwrap(), "--out", out.path().to_str().unwrap(), "--sampling", "count:8", "--size", "64"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let v = out.path().join("videos.csv");
    let vh = headers(&v);
    let expect: HashMap<&str, (&str, &str, &str)> = [
        ("aaaaaaaaaa", ("0", "aaaaaaaaaa", "0")),
        ("bbbbbbbbbb", ("1", "aaaaaaaaaa", "0")),
        ("cccccccccc", ("0", "cccccccccc", "1")),
        ("dddddddddd", ("1", "cccccccccc", "1")),
    ]
    .into_iter()
    .collect();
    let vrows = records(&v);
    assert_eq!(vrows.len(), 4);
    for r in &vrows {
        let (label, original, part) = expect[col(r, &vh, "video_id")];
        assert_eq!(col(r, &vh, "label"), label);
        assert_eq!(col(r, &vh, "original"), original);
        assert_eq!(col(r, &vh, "part"), part);
        assert_eq!(col(r, &vh, "dataset"), "dfdc");
        assert_eq!(col(r, &vh, "status"), "ok");
        assert!(out.path().join(col(r, &vh, "path")).is_file(), "video path relative to the manifest");
    }
    let f = out.path().join("faces.csv");
    let fh = headers(&f);
    let frows = records(&f);
    assert!(frows.len() >= 30, "{} faces", frows.len());
    for r in &frows {
        let (label, original, _) = expect[col(r, &fh, "video_id")];
        assert_eq!(col(r, &fh, "label"), label);
        assert_eq!(col(r, &fh, "original"), original);
        assert_eq!(col(r, &fh, "split"), "train");
        let p = col(r, &fh, "path");
        assert!(p.starts_with(&format!("faces/dfdc/{}/", col(r, &fh, "video_id"))), "{p}");
        let img = common::decode_file(&out.path().join(p));
        assert_eq!((img.width, img.height), (64, 64));
    }
    // The two-faces clip gives two faces per sampled frame.
    let two = frows.iter().filter(|r| col(r, &fh, "video_id") == "dddddddddd").count();
    assert_eq!(two, 16);
    // Crops on disk are exactly those in the manifest.
    let on_disk: Vec<String> = files_under(&out.path().join("faces")).into_iter().map(|p| format!("faces/{p}")).collect();
    let mut listed: Vec<String> = frows.iter().map(|r| col(r, &fh, "path").to_string()).collect();
    listed.sort();
    assert_eq!(on_disk, listed);
}

#[test]
fn broken_inputs_become_failed_rows_and_exit_code_2() {
    let out = tempfile::tempdir().unwrap();
    let o = run(&["extract", generated("broken").to_str().unwrap(), media("carphone_pristine.mp4").to_str().unwrap(), "--out", out.path().to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    let v = out.path().join("videos.csv");
    let h = headers(&v);
    let rows = records(&v);
    assert_eq!(rows.len(), 5);
    for r in &rows {
        let id = col(r, &h, "video_id");
        if id == "carphone_pristine" {
            assert_eq!(col(r, &h, "status"), "ok");
            assert_eq!(col(r, &h, "faces"), "32");
        } else {
            assert_eq!(col(r, &h, "status"), "failed", "{id}");
            assert!(col(r, &h, "error").contains(".mp4"), "error names the file: {}", col(r, &h, "error"));
        }
    }
    let err = stderr(&o);
    for name in ["zero_bytes.mp4", "truncated.mp4", "garbage.mp4", "audio_only.mp4"] {
        assert!(err.contains(name), "summary names {name}:\n{err}");
    }
    assert!(err.contains("4 failed"), "{err}");
    assert_eq!(records(&out.path().join("faces.csv")).len(), 32);
}

/// A video that failed (here: a garbage file, then replaced by a real clip, as after a flaky
/// copy) is skipped by a plain rerun and done again with --retry-failed: its failed row is
/// replaced, nothing else is touched or duplicated. A second run into a folder in use is refused.
#[test]
fn retry_failed_redoes_only_the_failed_videos_and_a_busy_folder_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let videos = dir.path().join("videos");
    std::fs::create_dir_all(&videos).unwrap();
    std::fs::copy(generated("broken/garbage.mp4"), videos.join("clip.mp4")).unwrap();
    std::fs::copy(media("carphone_pristine.mp4"), videos.join("carphone.mp4")).unwrap();
    let out = dir.path().join("out");
    let args = |extra: &[&str]| {
        let mut a = vec!["extract", videos.to_str().unwrap(), "--out", out.to_str().unwrap(), "--sampling", "count:4"];
        a.extend(extra);
        a.iter().map(|s| s.to_string()).collect::<Vec<_>>()
    };
    let o = common::scmpl().args(args(&[])).output().unwrap();
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    let faces_before = std::fs::read(out.join("faces.csv")).unwrap();
    std::fs::copy(media("carphone_distorted.mp4"), videos.join("clip.mp4")).unwrap();
    // Without the flag the failed video counts as done, and the rerun still says the folder
    // holds a failure (exit 2, listed again).
    let o = common::scmpl().args(args(&[])).output().unwrap();
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("failed (earlier run") && stderr(&o).contains("clip.mp4"), "{}", stderr(&o));
    assert_eq!(std::fs::read(out.join("faces.csv")).unwrap(), faces_before);
    // While another process holds the folder, a run is refused before touching anything.
    let lock = std::fs::OpenOptions::new().write(true).open(out.join(".lock")).unwrap();
    lock.lock().unwrap();
    let o = common::scmpl().args(args(&["--retry-failed"])).output().unwrap();
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).contains("in use by another scmpl run"), "{}", stderr(&o));
    drop(lock);
    let o = common::scmpl().args(args(&["--retry-failed"])).output().unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let v = out.join("videos.csv");
    let h = headers(&v);
    let rows = records(&v);
    let status: Vec<(String, String)> = rows.iter().map(|r| (col(r, &h, "video_id").into(), col(r, &h, "status").into())).collect();
    assert_eq!(status, vec![("carphone".into(), "ok".into()), ("clip".into(), "ok".into())]);
    let faces = records(&out.join("faces.csv"));
    assert_eq!(faces.len(), 8, "4 faces of each clip, none twice");
    assert!(faces.iter().all(|r| out.join(&r[0]).is_file()));
    assert!(std::fs::read(out.join("faces.csv")).unwrap().starts_with(&faces_before));
    // The journal agrees: a plain rerun has nothing left to do and changes nothing.
    let o = common::scmpl().args(args(&[])).output().unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(records(&out.join("faces.csv")).len(), 8);
}

#[test]
fn bad_metadata_and_unlisted_videos_are_warnings_not_crashes() {
    let dir = tempfile::tempdir().unwrap();
    let part = dir.path().join("dfdc_train_part_3");
    std::fs::create_dir_all(&part).unwrap();
    std::fs::copy(media("carphone_distorted.mp4"), part.join("eeeeeeeeee.mp4")).unwrap();
    std::fs::write(part.join("metadata.json"), "{this is not json").unwrap();
    let part2 = dir.path().join("dfdc_train_part_4");
    std::fs::create_dir_all(&part2).unwrap();
    std::fs::copy(media("carphone_distorted.mp4"), part2.join("ffffffffff.mp4")).unwrap();
    std::fs::write(part2.join("metadata.json"), r#"{"other.mp4": {"label": "REAL"}}"#).unwrap();
    let out = dir.path().join("out");
    let o = run(&["detect", dir.path().to_str().unwrap(), "--out", out.to_str().unwrap(), "--sampling", "count:4"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(err.contains("dfdc_train_part_3/metadata.json") && err.contains("not valid"), "{err}");
    assert!(err.contains("ffffffffff.mp4") && err.contains("not listed"), "{err}");
    let v = out.join("videos.csv");
    let h = headers(&v);
    for r in records(&v) {
        assert_eq!(col(&r, &h, "label"), "");
        assert_eq!(col(&r, &h, "status"), "ok");
    }
    assert!(!out.join("faces.csv").exists(), "detect writes no crops");
    assert!(!out.join("faces").exists());
}

#[test]
fn odd_sizes_rotation_vfr_10bit_and_vp9_all_decode_and_find_the_face() {
    let out = tempfile::tempdir().unwrap();
    let inputs = ["rotated.mp4", "vfr.mkv", "odd_331x247.mp4", "tenbit.mp4", "vp9.webm", "no_face.mp4", "zoom_astronaut.mp4"];
    let mut args = vec!["extract".to_string()];
    args.extend(inputs.iter().map(|n| generated(n).to_string_lossy().into_owned()));
    args.extend(["--out".into(), out.path().to_string_lossy().into_owned(), "--sampling".into(), "all".into()]);
    let o = run(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let v = out.path().join("videos.csv");
    let h = headers(&v);
    let by_id: HashMap<String, csv::StringRecord> = records(&v).into_iter().map(|r| (col(&r, &h, "video_id").to_string(), r)).collect();
    let get = |id: &str, c: &str| col(&by_id[id], &h, c).to_string();
    // The rotated clip is stored 240x320 and displayed 320x240: the face is found upright.
    assert_eq!((get("rotated", "width"), get("rotated", "height")), ("320".into(), "240".into()));
    assert_eq!(get("rotated", "faces"), "12");
    assert_eq!((get("odd_331x247", "width"), get("odd_331x247", "height")), ("331".into(), "247".into()));
    assert_eq!(get("odd_331x247", "faces"), "10");
    assert_eq!(get("vfr", "frames"), "20");
    assert_eq!(get("vfr", "faces"), "20");
    assert_eq!(get("tenbit", "faces"), "10");
    assert_eq!(get("vp9", "codec"), "vp9");
    assert_eq!(get("vp9", "faces"), "10");
    assert_eq!(get("no_face", "faces"), "0");
    assert!(get("zoom_astronaut", "faces").parse::<u32>().unwrap() >= 46);
    // VFR: the pts column keeps the real, uneven timestamps.
    let d = out.path().join("detections.csv");
    let dh = headers(&d);
    let mut pts: Vec<f64> = records(&d).iter().filter(|r| col(r, &dh, "video_id") == "vfr").map(|r| col(r, &dh, "pts").parse().unwrap()).collect();
    pts.sort_by(f64::total_cmp);
    let gaps: Vec<f64> = pts.windows(2).map(|w| ((w[1] - w[0]) * 25.0).round()).collect();
    assert!(gaps.contains(&1.0) && gaps.contains(&3.0), "{gaps:?}");
    // The rotated clip's crop is upright: same box as a frame of the same picture unrotated would give,
    // i.e. the face is taller than wide, in the top half.
    let rot: Vec<_> = records(&d).into_iter().filter(|r| col(r, &dh, "video_id") == "rotated").collect();
    let y2: f32 = col(&rot[0], &dh, "y2").parse().unwrap();
    assert!(y2 < 160.0, "face in the upper part of the upright picture, y2 = {y2}");
}

#[test]
fn a_killed_run_resumes_to_the_same_manifests_with_no_orphans() {
    let inputs = [generated("dfdc"), generated("zoom_astronaut.mp4"), media("carphone_pristine.mp4")];
    let base = tempfile::tempdir().unwrap();
    let full = base.path().join("full");
    let killed = base.path().join("killed");
    let args = |out: &Path| -> Vec<String> {
        let mut a = vec!["extract".to_string()];
        a.extend(inputs.iter().map(|p| p.to_string_lossy().into_owned()));
        a.extend(["--out", out.to_str().unwrap(), "--sampling", "stride:2", "--decode-workers", "1", "--no-progress"].map(String::from));
        a
    };
    let o = common::scmpl().args(args(&full)).output().unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));

    // Kill -9 once some videos are committed and others are in flight.
    let mut child = common::scmpl().args(args(&killed)).stderr(std::process::Stdio::null()).spawn().unwrap();
    let journal = killed.join("journal.tsv");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    loop {
        let lines = std::fs::read_to_string(&journal).map(|t| t.lines().count()).unwrap_or(0);
        if lines >= 2 || std::time::Instant::now() > deadline {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let committed = std::fs::read_to_string(&journal).unwrap().lines().count();
    assert!((2..6).contains(&committed), "killed after {committed} of 6 videos");

    let o = common::scmpl().args(args(&killed)).output().unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(stderr(&o).contains(&format!("{committed} already done")), "{}", stderr(&o));
    for m in ["videos.csv", "detections.csv", "faces.csv"] {
        let a = sorted_lines(&full.join(m));
        let b = sorted_lines(&killed.join(m));
        assert_eq!(a.len(), b.len(), "{m}");
        assert!(a == b, "{m} differs after resume");
    }
    assert_eq!(files_under(&full.join("faces")), files_under(&killed.join("faces")), "no orphan or missing crops");
    // A third run has nothing to do.
    let o = common::scmpl().args(args(&killed)).output().unwrap();
    assert!(stderr(&o).contains("6 already done"), "{}", stderr(&o));
    assert_eq!(sorted_lines(&full.join("faces.csv")), sorted_lines(&killed.join("faces.csv")));
}

#[test]
fn shards_together_equal_the_unsharded_run_and_detect_equals_extract_detections() {
    let base = tempfile::tempdir().unwrap();
    let input = generated("dfdc");
    let go = |out: &str, extra: &[&str]| {
        let mut a = vec!["extract", input.to_str().unwrap(), "--out", out, "--sampling", "count:6"];
        a.extend_from_slice(extra);
        let o = run(&a);
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    };
    let all = base.path().join("all");
    go(all.to_str().unwrap(), &[]);
    let mut merged = Vec::new();
    for k in 0..3 {
        let out = base.path().join(format!("s{k}"));
        go(out.to_str().unwrap(), &["--shard", &format!("{k}/3")]);
        merged.extend(sorted_lines(&out.join(format!("shards/{k}-of-3/faces.csv"))));
    }
    merged.sort();
    assert_eq!(merged, sorted_lines(&all.join("faces.csv")));

    let det = base.path().join("det");
    let o = run(&["detect", input.to_str().unwrap(), "--out", det.to_str().unwrap(), "--sampling", "count:6"]);
    assert_eq!(o.status.code(), Some(0));
    assert_eq!(sorted_lines(&det.join("detections.csv")), sorted_lines(&all.join("detections.csv")));
}

#[test]
fn resuming_with_other_settings_is_refused_and_bad_flags_exit_1() {
    let out = tempfile::tempdir().unwrap();
    let video = media("carphone_distorted.mp4");
    let o = run(&["detect", video.to_str().unwrap(), "--out", out.path().to_str().unwrap(), "--sampling", "count:2"]);
    assert_eq!(o.status.code(), Some(0));
    let o = run(&["detect", video.to_str().unwrap(), "--out", out.path().to_str().unwrap(), "--sampling", "count:3"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("other settings"), "{}", stderr(&o));
    let o = run(&["detect", video.to_str().unwrap(), "--out", out.path().to_str().unwrap(), "--sampling", "every:3"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("sampling"), "{}", stderr(&o));
    let o = run(&["detect", video.to_str().unwrap(), "--out", out.path().to_str().unwrap(), "--sampling", "count:2", "--device", "cuda"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).to_lowercase().contains("cuda"), "{}", stderr(&o));
}

/// FaceForensics++ and Celeb-DF as their releases ship them (made here from the real media):
/// labels, originals, methods and official splits come from the layout, and the paper's
/// protocol then holds NeuralTextures out and keeps Celeb-DF's halves apart.
#[test]
fn ffpp_and_celebdf_release_layouts_are_labelled_from_their_folders() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("releases");
    let put = |rel: &str, src: std::path::PathBuf| {
        let p = root.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::copy(src, p).unwrap();
    };
    put("FF/original_sequences/youtube/c23/videos/000.mp4", media("carphone_pristine.mp4"));
    put("FF/original_sequences/youtube/c23/videos/003.mp4", generated("zoom_astronaut.mp4"));
    put("FF/manipulated_sequences/Deepfakes/c23/videos/000_003.mp4", media("carphone_distorted.mp4"));
    put("FF/manipulated_sequences/NeuralTextures/c23/videos/003_000.mp4", generated("two_faces.mp4"));
    put("FF/original_sequences/actors/raw/videos/01__walking.mp4", media("carphone_pristine.mp4"));
    put("FF/manipulated_sequences/DeepFakeDetection/raw/videos/01_02__walking__ABCD1234.mp4", media("carphone_distorted.mp4"));
    put("CDF/Celeb-real/id0_0000.mp4", media("carphone_pristine.mp4"));
    put("CDF/Celeb-synthesis/id0_id16_0000.mp4", media("carphone_distorted.mp4"));
    put("CDF/YouTube-real/00170.mp4", generated("zoom_astronaut.mp4"));
    let splits = root.join("FF/splits");
    std::fs::create_dir_all(&splits).unwrap();
    for (name, pairs) in [("train", r#"[["000", "003"]]"#), ("val", "[]"), ("test", "[]")] {
        std::fs::write(splits.join(format!("{name}.json")), pairs).unwrap();
    }
    std::fs::write(root.join("CDF/List_of_testing_videos.txt"), "1 YouTube-real/00170.mp4\n0 Celeb-synthesis/id0_id16_0000.mp4\n").unwrap();
    let out = dir.path().join("out");
    let o = run(&["extract", root.to_str().unwrap(), "--out", out.to_str().unwrap(), "--sampling", "count:2", "--ffpp-splits", splits.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(stderr(&o).contains("found ffpp: 6 videos (3 real, 3 fake") && stderr(&o).contains("found celebdf: 3 videos (2 real, 1 fake"), "{}", stderr(&o));
    let rows: HashMap<String, HashMap<String, String>> =
        common::named_rows(&out.join("videos.csv")).into_iter().map(|r| (r["video_id"].clone(), r)).collect();
    let check = |id: &str, dataset: &str, label: &str, original: &str, part: &str| {
        let r = rows.get(id).unwrap_or_else(|| panic!("no row {id}: {:?}", rows.keys().collect::<Vec<_>>()));
        assert_eq!((r["dataset"].as_str(), r["label"].as_str(), r["original"].as_str(), r["part"].as_str()), (dataset, label, original, part), "{id}");
    };
    check("c23__Original__000", "ffpp", "0", "000", "Original");
    check("c23__Deepfakes__000_003", "ffpp", "1", "000", "Deepfakes");
    check("c23__NeuralTextures__003_000", "ffpp", "1", "003", "NeuralTextures");
    check("raw__DeepFakeDetection__01_02__walking__ABCD1234", "ffpp", "1", "01__walking", "DeepFakeDetection");
    check("raw__DeepFakeDetection_original__01__walking", "ffpp", "0", "01__walking", "DeepFakeDetection_original");
    check("Celeb-synthesis__id0_id16_0000", "celebdf", "1", "id0_0000", "Celeb-synthesis");
    check("YouTube-real__00170", "celebdf", "0", "00170", "YouTube-real");
    let faces = common::named_rows(&out.join("faces.csv"));
    let split_of = |id: &str| faces.iter().find(|f| f["video_id"] == id).map(|f| f["split"].clone()).unwrap();
    assert_eq!(split_of("c23__Deepfakes__000_003"), "train", "FF++ official split");
    assert_eq!(split_of("Celeb-synthesis__id0_id16_0000"), "test", "Celeb-DF's list of testing videos");
    assert_eq!(split_of("Celeb-real__id0_0000"), "train");
    // The paper's protocol on them (sets written beside faces.csv): NT never labelled.
    let paper = out.clone();
    let o = run(&["split", "--preset", "paper", out.join("faces.csv").to_str().unwrap(), "--out", paper.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let labelled = common::named_rows(&paper.join("labelled.csv"));
    assert!(labelled.iter().any(|r| r["part"] == "Deepfakes") && !labelled.iter().any(|r| r["part"] == "NeuralTextures"));
}

/// DFDC: a fake of its original's size and length is cropped at the original's boxes (no
/// detector pass); a fake of another size is detected itself, and the run says so;
/// `--detect-fakes` detects every fake, as the reference does.
#[test]
fn dfdc_fakes_are_cropped_at_their_originals_boxes() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let o = run(&["extract", generated("dfdc").to_str().unwrap(), "--out", out.to_str().unwrap(), "--sampling", "count:6"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(err.contains("DFDC: 1 fakes cropped at their original's boxes (6 detector frames saved); 1 fakes detected themselves"), "{err}");
    assert!(err.contains("detected itself") && err.contains("dddddddddd.mp4: 640x320"), "{err}");
    let boxes = |folder: &Path, id: &str| -> Vec<String> {
        common::named_rows(&folder.join("detections.csv"))
            .into_iter()
            .filter(|r| r["video_id"] == id)
            .map(|r| format!("{} {} {} {} {} {} {} {}", r["frame"], r["face"], r["x1"], r["y1"], r["x2"], r["y2"], r["score"], r["lm"]))
            .collect()
    };
    assert!(!boxes(&out, "aaaaaaaaaa").is_empty());
    assert_eq!(boxes(&out, "bbbbbbbbbb"), boxes(&out, "aaaaaaaaaa"), "the fake's boxes are its original's");
    let crops: Vec<HashMap<String, String>> = common::named_rows(&out.join("faces.csv")).into_iter().filter(|r| r["video_id"] == "bbbbbbbbbb").collect();
    assert_eq!(crops.len(), 6);
    assert!(crops.iter().all(|r| out.join(&r["path"]).is_file()));
    // The reference's way: every fake through the detector.
    let all = dir.path().join("all");
    let o = run(&["extract", generated("dfdc").to_str().unwrap(), "--out", all.to_str().unwrap(), "--sampling", "count:6", "--detect-fakes"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(!stderr(&o).contains("DFDC:"), "{}", stderr(&o));
    assert_ne!(boxes(&all, "bbbbbbbbbb"), boxes(&all, "aaaaaaaaaa"), "the distorted clip's own boxes differ a little");
    assert_eq!(boxes(&all, "aaaaaaaaaa"), boxes(&out, "aaaaaaaaaa"));
}
