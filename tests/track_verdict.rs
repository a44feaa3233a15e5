//! Video verdicts from face tracks, end to end: a two-person clip in which only one face is
//! swapped, and only for the last quarter of the clip (the second person walks in late), is
//! called real by the plain per-video mean of face probabilities and fake by the track rule
//! (`video_track_max` in `scmpl eval`, the verdict of `scmpl predict`).
//!
//! Everything goes through the real toolchain: the clips are made from the real media (the
//! astronaut photo as two people, faces of scikit-image's LFW subset as the swapped-in
//! identities, pasted with the fixture's face-swap traces: no camera grain, blur, a soft seam,
//! JPEG inside the face) and encoded losslessly with the ffmpeg CLI; `scmpl extract` finds and
//! tracks the faces of a DFDC-shaped folder; a SupCon teacher is trained on those crops
//! (resnet18, 64 px, CPU, about a minute); `scmpl eval` and `scmpl predict` score unseen clips.

#![cfg(all(feature = "pipeline", feature = "train"))]

mod common;

use std::path::Path;

use common::{media, named_rows, run, stderr};
use scmpl::train::data::augment::{resized_crop, RgbF32, SampleRng};
use scmpl::train::data::fixture::{add_grain, manipulate, read_lfw};
use scmpl::train::data::read_image;

const W: usize = 400;
const H: usize = 240;
const FACE: usize = 128;

/// One person in a clip: a face picture, where it stands, in which frames, and the identity
/// swapped over it in the fake (None: never swapped).
struct Person<'a> {
    face: &'a RgbF32,
    x: usize,
    y: usize,
    frames: std::ops::Range<usize>,
    swap: Option<&'a RgbF32>,
}

fn paste(frame: &mut RgbF32, img: &RgbF32, x: usize, y: usize) {
    for yy in 0..img.height {
        let src = &img.data[yy * img.width * 3..(yy + 1) * img.width * 3];
        let o = ((y + yy) * W + x) * 3;
        frame.data[o..o + src.len()].copy_from_slice(src);
    }
}

fn region(frame: &RgbF32, x: usize, y: usize) -> RgbF32 {
    let mut data = Vec::with_capacity(FACE * FACE * 3);
    for yy in 0..FACE {
        let o = ((y + yy) * W + x) * 3;
        data.extend_from_slice(&frame.data[o..o + FACE * 3]);
    }
    RgbF32 { width: FACE, height: FACE, data }
}

/// Writes `frames` frames of the people (drifting right by a pixel every 4 frames, over grey
/// with camera grain) to `path`, losslessly, with the swaps applied when `fake`. An original
/// and its fake share the seed: they differ only inside the swapped faces, as in DFDC.
fn write_clip(path: &Path, people: &[Person], frames: usize, seed: u64, fake: bool) {
    let dir = tempfile::tempdir().unwrap();
    for n in 0..frames {
        let mut frame = RgbF32 { width: W, height: H, data: vec![0.5; W * H * 3] };
        let here: Vec<&Person> = people.iter().filter(|p| p.frames.contains(&n)).collect();
        for p in &here {
            paste(&mut frame, p.face, p.x + n / 4, p.y);
        }
        let mut rng = SampleRng::new(seed, 0, n as u64, 1);
        let mut frame = add_grain(&frame, 0.04, &mut rng);
        for p in here.iter().filter(|_| fake) {
            if let Some(source) = p.swap {
                let swapped = manipulate(&region(&frame, p.x + n / 4, p.y), source, &mut rng);
                paste(&mut frame, &swapped, p.x + n / 4, p.y);
            }
        }
        let rgb: Vec<u8> = frame.data.iter().map(|v| (v * 255.0).round().clamp(0.0, 255.0) as u8).collect();
        image::RgbImage::from_raw(W as u32, H as u32, rgb).unwrap().save(dir.path().join(format!("{n:03}.png"))).unwrap();
    }
    let o = std::process::Command::new("ffmpeg")
        .args(["-nostdin", "-loglevel", "error", "-y", "-framerate", "24", "-i"])
        .arg(dir.path().join("%03d.png"))
        .args(["-c:v", "libx264", "-preset", "veryfast", "-qp", "0", "-pix_fmt", "yuv444p"])
        .arg(path)
        .output()
        .unwrap();
    assert!(o.status.success(), "ffmpeg: {}", String::from_utf8_lossy(&o.stderr));
}

fn hflip(img: &RgbF32) -> RgbF32 {
    let mut out = img.clone();
    for y in 0..img.height {
        for x in 0..img.width {
            let (d, s) = ((y * img.width + x) * 3, (y * img.width + img.width - 1 - x) * 3);
            out.data[d..d + 3].copy_from_slice(&img.data[s..s + 3]);
        }
    }
    out
}

/// (metadata.json entry, clip) pairs: an original and its fake per entry.
fn metadata(entries: &[(&str, &str, &str)]) -> String {
    let items: Vec<String> = entries
        .iter()
        .map(|(name, split, original)| {
            if original.is_empty() {
                format!("\"{name}.mp4\": {{\"label\": \"REAL\", \"split\": \"{split}\"}}")
            } else {
                format!("\"{name}.mp4\": {{\"label\": \"FAKE\", \"split\": \"{split}\", \"original\": \"{original}.mp4\"}}")
            }
        })
        .collect();
    format!("{{{}}}", items.join(",\n"))
}

fn metric(metrics_csv: &Path, level: &str, name: &str) -> f64 {
    let row = named_rows(metrics_csv).into_iter().find(|r| r["level"] == level).unwrap_or_else(|| panic!("no {level} row"));
    row[name].parse().unwrap()
}

#[test]
fn one_swapped_face_among_real_ones_is_flagged_by_its_track_not_by_the_video_mean() {
    let dir = tempfile::tempdir().unwrap();
    let astronaut = read_image(&media("astronaut.png")).unwrap();
    let a = resized_crop(&astronaut, 150, 30, 220, 240, FACE);
    let b = hflip(&resized_crop(&astronaut, 110, 0, 290, 310, FACE));
    let lfw: Vec<RgbF32> = read_lfw(&media("lfw_subset.npy"), 100).unwrap().iter().map(|f| resized_crop(f, 0, 0, 25, 25, FACE)).collect();

    // Training clips: eight originals with both people (seven train, one test), each with a
    // fake in which both faces are swapped (so no real face is labelled fake).
    let train = dir.path().join("train");
    std::fs::create_dir_all(&train).unwrap();
    let mut entries = Vec::new();
    let names: Vec<(String, String)> = (0..8).map(|i| (format!("orig{i}"), format!("fake{i}"))).collect();
    for (i, (orig, fake)) in names.iter().enumerate() {
        let people = [
            Person { face: &a, x: 10 + 9 * i, y: 20 + 10 * i, frames: 0..12, swap: Some(&lfw[2 * i]) },
            Person { face: &b, x: 230 - 7 * i, y: 90 - 10 * i, frames: 0..12, swap: Some(&lfw[2 * i + 1]) },
        ];
        write_clip(&train.join(format!("{orig}.mp4")), &people, 12, i as u64, false);
        write_clip(&train.join(format!("{fake}.mp4")), &people, 12, i as u64, true);
        let split = if i == 7 { "test" } else { "train" };
        entries.push((orig.as_str(), split, ""));
        entries.push((fake.as_str(), split, orig.as_str()));
    }
    std::fs::write(train.join("metadata.json"), metadata(&entries)).unwrap();

    // The clips under test: the first person all 48 frames, the second from frame 36 on; in
    // the fake only the second person's face is swapped, with an identity no training clip has.
    let test = dir.path().join("test");
    std::fs::create_dir_all(&test).unwrap();
    let people = [
        Person { face: &a, x: 30, y: 50, frames: 0..48, swap: None },
        Person { face: &b, x: 210, y: 70, frames: 36..48, swap: Some(&lfw[60]) },
    ];
    write_clip(&test.join("pair.mp4"), &people, 48, 99, false);
    write_clip(&test.join("pairswap.mp4"), &people, 48, 99, true);
    std::fs::write(test.join("metadata.json"), metadata(&[("pair", "test", ""), ("pairswap", "test", "pair")])).unwrap();

    let s = |p: &Path| p.to_str().unwrap().to_string();
    let (train_out, test_out) = (dir.path().join("train_faces"), dir.path().join("test_faces"));
    for (videos, out) in [(&train, &train_out), (&test, &test_out)] {
        let o = run(&["extract", &s(videos), "--sampling", "all", "--detect-fakes", "--out", &s(out)]);
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    }
    // Each test clip: 48 faces of the first person and 12 of the second, on two tracks.
    let rows = named_rows(&test_out.join("faces.csv"));
    for video in ["pair", "pairswap"] {
        let faces: Vec<_> = rows.iter().filter(|r| r["video_id"] == video).collect();
        let tracks: std::collections::BTreeSet<&str> = faces.iter().map(|r| r["track"].as_str()).collect();
        assert_eq!((faces.len(), tracks.len()), (60, 2), "{video}: faces and tracks");
    }

    let teacher = dir.path().join("teacher");
    let o = run(&[
        "train", "teacher", "--manifest", &s(&train_out.join("faces.csv")), "--out", &s(&teacher), "--steps", "40", "--backbone", "resnet18",
        "--batch", "32", "--lr", "1e-3", "--no-progress",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));

    let eval = dir.path().join("eval");
    let o = run(&["eval", "--checkpoint", &s(&teacher), "--manifest", &s(&test_out.join("faces.csv")), "--out", &s(&eval)]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let metrics = eval.join("metrics.csv");
    eprintln!("{}", std::fs::read_to_string(&metrics).unwrap());
    // Two videos: the mean calls both real (one of two right), the track rule gets both.
    assert_eq!(metric(&metrics, "video_mean", "accuracy"), 0.5);
    assert_eq!(metric(&metrics, "video_track_max", "accuracy"), 1.0);

    for (video, verdict) in [("pair", "real"), ("pairswap", "fake")] {
        let o = run(&["predict", &s(&test.join(format!("{video}.mp4"))), "--checkpoint", &s(&teacher), "--sampling", "all"]);
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        let summary = &v["video"];
        eprintln!("{video}: {summary}");
        assert_eq!(summary["verdict"], verdict, "{video}: {summary}");
        assert_eq!(summary["tracks"].as_array().unwrap().len(), 2, "{video}: {summary}");
        assert!(summary["fake_probability_mean"].as_f64().unwrap() < 0.5, "{video}: the plain mean says real: {summary}");
    }
}
