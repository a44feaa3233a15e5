//! Single stages on their own: crop from detections, index, split, manifest tools.

#![cfg(feature = "pipeline")]

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use common::{files_under, generated, media, run, sorted_lines, stderr};
use scmpl::manifest::{read_rows, FaceRow};

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Copies real face pictures into `root/rel` for each rel path.
fn tree(root: &Path, rels: &[&str]) {
    let faces = [media("astronaut.png"), media("camera.png")];
    for (i, rel) in rels.iter().enumerate() {
        let p = root.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::copy(&faces[i % 2], &p).unwrap();
    }
}

fn labels_by_path(faces_csv: &Path) -> BTreeMap<String, (Option<u8>, String, String)> {
    read_rows::<FaceRow>(faces_csv).unwrap().into_iter().map(|r| (r.path, (r.label, r.original, r.split))).collect()
}

#[test]
fn extract_equals_detect_then_crop_and_recrop_leaves_detections_alone() {
    let d = tempfile::tempdir().unwrap();
    let input = generated("dfdc");
    let (ex, dt, cr, m) = (d.path().join("ex"), d.path().join("dt"), d.path().join("cr"), d.path().join("m"));
    assert_eq!(run(&["extract", s(&input), "--out", s(&ex), "--sampling", "count:5"]).status.code(), Some(0));
    assert_eq!(run(&["detect", s(&input), "--out", s(&dt), "--sampling", "count:5"]).status.code(), Some(0));
    let dets_before = std::fs::read(dt.join("detections.csv")).unwrap();
    let o = run(&["crop", "--detections", s(&dt.join("detections.csv")), "--out", s(&cr)]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    for m in ["videos.csv", "detections.csv", "faces.csv"] {
        assert_eq!(sorted_lines(&ex.join(m)), sorted_lines(&cr.join(m)), "{m}");
    }
    let files = files_under(&ex.join("faces"));
    assert!(files.len() >= 20);
    assert_eq!(files, files_under(&cr.join("faces")));
    for f in &files {
        assert!(std::fs::read(ex.join("faces").join(f)).unwrap() == std::fs::read(cr.join("faces").join(f)).unwrap(), "{f} differs");
    }
    // Re-crop with a margin and a size: new crops, the detections untouched.
    let o = run(&["crop", "--detections", s(&dt.join("detections.csv")), "--out", s(&m), "--crop", "margin:0.3", "--size", "48"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(std::fs::read(dt.join("detections.csv")).unwrap() == dets_before);
    for r in read_rows::<FaceRow>(&m.join("faces.csv")).unwrap() {
        let img = image::open(m.join(&r.path)).unwrap();
        assert_eq!((img.width(), img.height()), (48, 48));
    }
    // Cropping into the detections' own folder is refused.
    let o = run(&["crop", "--detections", s(&dt.join("detections.csv")), "--out", s(&dt)]);
    assert_eq!(o.status.code(), Some(1));
}

#[test]
fn shards_merged_equal_the_unsharded_run() {
    let d = tempfile::tempdir().unwrap();
    let input = generated("dfdc");
    let all = d.path().join("all");
    assert_eq!(run(&["extract", s(&input), "--out", s(&all), "--sampling", "count:4"]).status.code(), Some(0));
    let mut parts = Vec::new();
    let sharded = d.path().join("sharded");
    for k in 0..3 {
        assert_eq!(run(&["extract", s(&input), "--out", s(&sharded), "--sampling", "count:4", "--shard", &format!("{k}/3")]).status.code(), Some(0));
        parts.push(sharded.join(format!("shards/{k}-of-3/faces.csv")));
    }
    let merged = d.path().join("faces.csv");
    let mut args = vec!["manifest", "merge"];
    args.extend(parts.iter().map(|p| s(p)));
    args.extend(["--out", s(&merged)]);
    assert_eq!(run(&args).status.code(), Some(0));
    // Same rows once paths are resolved; same crop bytes.
    let key = |csv: &Path| -> Vec<(String, Vec<u8>)> {
        let base = csv.parent().unwrap();
        let mut v: Vec<(String, Vec<u8>)> = read_rows::<FaceRow>(csv)
            .unwrap()
            .into_iter()
            .map(|r| {
                let bytes = std::fs::read(base.join(&r.path)).unwrap();
                (format!("{}|{}|{}|{}|{}|{}|{}", r.video_id, r.original, r.label.unwrap(), r.frame, r.face, r.x1, r.score), bytes)
            })
            .collect();
        v.sort();
        v
    };
    assert_eq!(key(&merged), key(&all.join("faces.csv")));
    // Merging the same file twice keeps one copy; validate passes on the merge.
    let twice = d.path().join("twice.csv");
    assert_eq!(run(&["manifest", "merge", s(&parts[0]), s(&parts[0]), "--out", s(&twice)]).status.code(), Some(0));
    assert_eq!(read_rows::<FaceRow>(&twice).unwrap().len(), read_rows::<FaceRow>(&parts[0]).unwrap().len());
    let o = run(&["manifest", "validate", s(&merged)]);
    assert_eq!(o.status.code(), Some(0), "{}", String::from_utf8_lossy(&o.stdout));
    // Whole shard folders: all three manifests, equal to the unsharded run's once paths are resolved.
    let shard_dirs: Vec<PathBuf> = (0..3).map(|k| sharded.join(format!("shards/{k}-of-3"))).collect();
    let folder = d.path().join("merged");
    let mut args = vec!["manifest", "merge"];
    args.extend(shard_dirs.iter().map(|p| s(p)));
    args.extend(["--out", s(&folder)]);
    let o = run(&args);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(key(&folder.join("faces.csv")), key(&all.join("faces.csv")));
    assert_eq!(sorted_lines(&folder.join("detections.csv")), sorted_lines(&all.join("detections.csv")));
    let video_rows = |csv: &Path| -> Vec<String> {
        let mut v: Vec<String> = common::named_rows(csv).into_iter().map(|r| format!("{}|{}|{}|{}", r["video_id"], r["status"], r["faces"], r["original"])).collect();
        v.sort();
        v
    };
    assert_eq!(video_rows(&folder.join("videos.csv")), video_rows(&all.join("videos.csv")));
    for r in common::named_rows(&folder.join("videos.csv")) {
        assert!(folder.join(&r["path"]).is_file(), "{} resolves from the merged folder", r["path"]);
    }
    // A set with a shard missing, or one not finished, is refused, naming it; --allow-partial merges the rest.
    let o = run(&["manifest", "merge", s(&shard_dirs[0]), s(&shard_dirs[2]), "--out", s(&d.path().join("m2"))]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("shard 1 of 3: missing"), "{}", stderr(&o));
    std::fs::remove_file(shard_dirs[2].join("shard.json")).unwrap();
    let o = run(&["manifest", "merge", s(&shard_dirs[0]), s(&shard_dirs[1]), s(&shard_dirs[2]), "--out", s(&d.path().join("m3"))]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("2-of-3: unfinished"), "{}", stderr(&o));
    let o = run(&["manifest", "merge", s(&shard_dirs[0]), s(&shard_dirs[1]), s(&shard_dirs[2]), "--out", s(&d.path().join("m3")), "--allow-partial"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("left out") && stderr(&o).contains("2-of-3"), "{}", stderr(&o));
}

#[test]
fn index_labels_every_layout_by_its_rules() {
    let d = tempfile::tempdir().unwrap();
    // FF++, both names for the real folder.
    let ff = d.path().join("ffpp");
    tree(&ff, &[
        "train_set/Original/000/0.png", "train_set/Deepfakes/000_003/0.png", "train_set/NeuralTextures/001_002/0.png",
        "test_set/Real/004/0.png", "test_set/FaceSwap/004_009/0.png",
    ]);
    std::fs::write(ff.join("train_set/Original/000/broken.png"), b"not a png").unwrap();
    let out = d.path().join("ffpp.csv");
    // A manifest may not point outside its folder.
    let o = run(&["index", "--layout", "ffpp", s(&ff), "--out", s(&d.path().join("elsewhere/ffpp.csv"))]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("outside"), "{}", stderr(&o));
    let o = run(&["index", "--layout", "ffpp", s(&ff), "--out", s(&out)]);
    assert_eq!(o.status.code(), Some(2), "the broken image is reported");
    assert!(stderr(&o).contains("broken.png"));
    let l = labels_by_path(&out);
    assert_eq!(l.len(), 5);
    assert_eq!(l["ffpp/train_set/Original/000/0.png"], (Some(0), "000".into(), "train".into()));
    assert_eq!(l["ffpp/train_set/Deepfakes/000_003/0.png"], (Some(1), "000".into(), "train".into()));
    assert_eq!(l["ffpp/test_set/Real/004/0.png"], (Some(0), "004".into(), "test".into()));
    assert_eq!(l["ffpp/test_set/FaceSwap/004_009/0.png"].0, Some(1));

    // Celeb-DF: the code layout (fake/real folders per video) and the README one (flat image folders).
    let cd = d.path().join("celebdf");
    tree(&cd, &["fake/id0_id16_0000/0.png", "real/id0_0000/0.png", "fake_imgs/id1_id2_0003_5.png", "youtube_real_imgs/00001_1.png"]);
    let out = d.path().join("celebdf.csv");
    assert_eq!(run(&["index", "--layout", "celebdf", s(&cd), "--out", s(&out)]).status.code(), Some(0));
    let l = labels_by_path(&out);
    assert_eq!(l["celebdf/fake/id0_id16_0000/0.png"], (Some(1), "id0_0000".into(), "".into()));
    assert_eq!(l["celebdf/real/id0_0000/0.png"].0, Some(0));
    assert_eq!(l["celebdf/fake_imgs/id1_id2_0003_5.png"].0, Some(1));
    assert_eq!(l["celebdf/youtube_real_imgs/00001_1.png"].0, Some(0));

    // CelebA all real, StyleGAN all fake, folders by label map.
    for (layout, want) in [("celeba", 0u8), ("stylegan", 1u8)] {
        let root = d.path().join(layout);
        tree(&root, &["a.png", "sub/b.png"]);
        let out = d.path().join(format!("{layout}.csv"));
        assert_eq!(run(&["index", "--layout", layout, s(&root), "--out", s(&out)]).status.code(), Some(0));
        assert!(labels_by_path(&out).values().all(|v| v.0 == Some(want)));
        assert_eq!(run(&["manifest", "validate", s(&out)]).status.code(), Some(0));
    }
    let fo = d.path().join("folders");
    tree(&fo, &["pristine/v1/0.png", "forged/v2/0.png", "ignored/v3/0.png"]);
    let out = d.path().join("folders.csv");
    assert_eq!(run(&["index", "--layout", "folders", s(&fo), "--out", s(&out), "--label-map", "pristine=0", "--label-map", "forged=1"]).status.code(), Some(0));
    let l = labels_by_path(&out);
    assert_eq!(l.len(), 2);
    assert_eq!(l["folders/forged/v2/0.png"].0, Some(1));
    assert_eq!(run(&["index", "--layout", "folders", s(&fo), "--out", s(&out)]).status.code(), Some(1), "folders needs a label map");

    // The paper's protocol from the indexed manifests.
    let sets = d.path().join("paper");
    std::fs::create_dir_all(&sets).unwrap();
    let o = run(&[
        "split", "--preset", "paper", s(&d.path().join("ffpp.csv")), s(&d.path().join("celebdf.csv")),
        s(&d.path().join("stylegan.csv")), "--out", s(d.path()),
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let labelled = read_rows::<FaceRow>(&d.path().join("labelled.csv")).unwrap();
    assert!(labelled.iter().any(|r| r.part == "Deepfakes") && !labelled.iter().any(|r| r.part == "NeuralTextures"));
    let post = read_rows::<FaceRow>(&d.path().join("test_post_gen.csv")).unwrap();
    assert!(post.iter().any(|r| r.dataset == "stylegan") && post.iter().any(|r| r.part == "Real"));
    assert_eq!(run(&["manifest", "validate", s(&d.path().join("test_known.csv"))]).status.code(), Some(0));
}

fn write(path: &Path, text: &str) -> PathBuf {
    std::fs::write(path, text).unwrap();
    path.to_path_buf()
}

#[test]
fn split_never_leaks_and_validate_catches_a_leak_made_by_hand() {
    let d = tempfile::tempdir().unwrap();
    let ex = d.path().join("ex");
    assert_eq!(run(&["extract", s(&generated("dfdc")), "--out", s(&ex), "--sampling", "count:3"]).status.code(), Some(0));
    let out = ex.join("split.csv");
    let o = run(&["split", s(&ex.join("faces.csv")), "--by", "original", "--ratios", "0.5,0.5", "--seed", "3", "--out", s(&out)]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(stdout.contains("dfdc"), "{stdout}");
    let rows = read_rows::<FaceRow>(&out).unwrap();
    let mut split_of: BTreeMap<String, String> = BTreeMap::new();
    for r in &rows {
        let prev = split_of.insert(r.original.clone(), r.split.clone());
        assert!(prev.is_none_or(|p| p == r.split), "{} straddles", r.original);
    }
    assert_eq!(run(&["manifest", "validate", s(&out)]).status.code(), Some(0));
    // Same seed, same split.
    let again = ex.join("again.csv");
    run(&["split", s(&ex.join("faces.csv")), "--by", "original", "--ratios", "0.5,0.5", "--seed", "3", "--out", s(&again)]);
    assert_eq!(std::fs::read(&out).unwrap(), std::fs::read(&again).unwrap());
    // A leak made by hand: the fake in train, its original in test.
    let mut leak = rows.clone();
    for r in leak.iter_mut() {
        r.split = if r.video_id == "bbbbbbbbbb" { "train".into() } else { "test".into() };
    }
    let leak_path = ex.join("leak.csv");
    scmpl::manifest::write_all(&leak_path, &leak).unwrap();
    let o = run(&["manifest", "validate", s(&leak_path)]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stdout).contains("leak"));
    // Contact sheets, one per video, with the crops drawn in.
    let sheets = d.path().join("sheets");
    assert_eq!(run(&["manifest", "sheet", s(&ex.join("faces.csv")), "--out", s(&sheets)]).status.code(), Some(0));
    let files = files_under(&sheets);
    assert_eq!(files.len(), 4, "{files:?}");
    let sheet = image::open(sheets.join("dfdc__dddddddddd.png")).unwrap().to_rgb8();
    assert_eq!(sheet.width(), 6 * 112);
    let colourful = sheet.pixels().filter(|p| p.0[0].abs_diff(p.0[2]) > 40).count();
    assert!(colourful > 1000, "face crops are drawn ({colourful} coloured pixels)");
    // Stats and exports.
    let o = run(&["manifest", "stats", s(&out)]);
    let text = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(text.contains("total:") && text.contains("tracks: "), "{text}");
    let folds = d.path().join("folds.csv");
    assert_eq!(run(&["manifest", "export", s(&out), "--format", "folds", "--out", s(&folds)]).status.code(), Some(0));
    let text = std::fs::read_to_string(&folds).unwrap();
    assert!(text.starts_with("video,file,label,original,frame,fold,track\n"));
    let dfb = d.path().join("dfb");
    assert_eq!(run(&["manifest", "export", s(&out), "--format", "deepfakebench", "--out", s(&dfb)]).status.code(), Some(0));
    let json: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(dfb.join("dataset_json/DFDC.json")).unwrap()).unwrap();
    assert!(json["DFDC"]["DFDC_Fake"]["train"].is_object() && json["DFDC"]["DFDC_Fake"]["test"].is_object());
}

#[test]
fn bad_manifests_are_rejected_with_line_numbers() {
    let d = tempfile::tempdir().unwrap();
    let img = d.path().join("a.png");
    std::fs::copy(media("camera.png"), &img).unwrap();
    let header = "path,video_id,original,dataset,part,label,frame,face,x1,y1,x2,y2,score,split\n";
    let ok_row = "a.png,v,v,d,,0,0,0,0,0,10,10,1,train\n";
    let missing_col = write(&d.path().join("m1.csv"), "path,video_id,original\na.png,v,v\n");
    let o = run(&["manifest", "validate", s(&missing_col)]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stdout).contains("m1.csv:1"), "{}", String::from_utf8_lossy(&o.stdout));
    let wrong_type = write(&d.path().join("m2.csv"), &format!("{header}{ok_row}a.png,v,v,d,,zero,0,0,0,0,10,10,1,train\n"));
    let o = run(&["manifest", "validate", s(&wrong_type)]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stdout).contains("m2.csv:3"));
    let outside = write(&d.path().join("m3.csv"), &format!("{header}{ok_row}../etc.png,v,v,d,,0,0,0,0,0,10,10,1,train\n/etc/passwd,v,v,d,,0,0,0,0,0,10,10,1,train\n"));
    let o = run(&["manifest", "validate", s(&outside)]);
    let out = String::from_utf8_lossy(&o.stdout);
    assert_eq!(o.status.code(), Some(2));
    assert!(out.contains("m3.csv:3") && out.contains("m3.csv:4") && out.contains("outside"), "{out}");
    let bad_label = write(&d.path().join("m4.csv"), &format!("{header}a.png,v,v,d,,7,0,0,0,0,10,10,1,train\n"));
    assert!(String::from_utf8_lossy(&run(&["manifest", "validate", s(&bad_label)]).stdout).contains("m4.csv:2"));
    let good = write(&d.path().join("m5.csv"), &format!("{header}{ok_row}"));
    assert_eq!(run(&["manifest", "validate", s(&good)]).status.code(), Some(0));
}
