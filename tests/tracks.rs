//! Keyframes and tracks on real clips (made from the real media by scripts/make-fixtures): a
//! face that pans out of the frame and back, a hard cut between two clips, two faces crossing.
//! Detecting every 4th frame and interpolating must find the same faces, frame by frame, as
//! detecting every frame.
#![cfg(feature = "pipeline")]

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use common::*;

type Frames = BTreeMap<(String, u64), Vec<([f32; 4], u32, String)>>;

/// Boxes, tracks and sources by (video, frame) from a detections.csv.
fn by_frame(path: &Path) -> Frames {
    let mut out = Frames::new();
    for r in named_rows(path) {
        let b = ["x1", "y1", "x2", "y2"].map(|k| r[k].parse::<f32>().unwrap());
        out.entry((r["video_id"].clone(), r["frame"].parse().unwrap())).or_default().push((b, r["track"].parse().unwrap(), r["source"].clone()));
    }
    out
}

fn iou(a: &[f32; 4], b: &[f32; 4]) -> f32 {
    let w = (a[2].min(b[2]) - a[0].max(b[0])).max(0.0);
    let h = (a[3].min(b[3]) - a[1].max(b[1])).max(0.0);
    let inter = w * h;
    inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)
}

fn detect(out: &Path, interval: &str) -> Frames {
    let clips = ["pan_out.mp4", "cut.mp4", "crossing.mp4"].map(|c| generated(c).to_string_lossy().into_owned());
    let o = out.to_str().unwrap();
    let mut args = vec!["detect", "--sampling", "all", "--keyframe-interval", interval, "--out", o, "--no-progress"];
    args.extend(clips.iter().map(String::as_str));
    assert!(run(&args).status.success());
    by_frame(&out.join("detections.csv"))
}

#[test]
fn keyframes_find_the_faces_every_frame_detection_finds_and_tracks_end_at_cuts() {
    let tmp = tempfile::tempdir().unwrap();
    let every = detect(&tmp.path().join("every"), "1");
    let keyed = detect(&tmp.path().join("keyed"), "4");

    // Every frame with a face in one run has the same faces in the other, matched at IoU >= 0.7.
    let frames: BTreeSet<_> = every.keys().chain(keyed.keys()).cloned().collect();
    let (mut faces, mut interpolated) = (0, 0);
    for key in &frames {
        let (a, b) = (every.get(key).cloned().unwrap_or_default(), keyed.get(key).cloned().unwrap_or_default());
        assert_eq!(a.len(), b.len(), "{key:?}: {} faces detecting every frame, {} with keyframes", a.len(), b.len());
        for (fa, ..) in &a {
            let best = b.iter().map(|(fb, ..)| iou(fa, fb)).fold(0.0, f32::max);
            assert!(best >= 0.7, "{key:?}: face {fa:?} found at IoU {best} only");
        }
        faces += a.len();
        interpolated += b.iter().filter(|f| f.2 == "interpolated").count();
        assert!(a.iter().all(|f| f.2 == "detected"));
    }
    assert!(faces > 150, "the clips hold faces: {faces}");
    assert!(interpolated * 3 > faces, "keyframes save detector passes: {interpolated} of {faces} interpolated");

    let tracks = |video: &str, frames: std::ops::Range<u64>| -> BTreeSet<u32> {
        frames.filter_map(|f| keyed.get(&(video.to_string(), f))).flatten().map(|f| f.1).collect()
    };
    // The astronaut pans out (from about frame 19) and back in (from about 76): two tracks,
    // each one id all along.
    let pan = keyed.keys().filter(|k| k.0 == "pan_out").map(|k| k.1).collect::<Vec<_>>();
    assert!(pan.windows(2).any(|w| w[1] - w[0] > 30), "the face leaves the frame: {pan:?}");
    let (first, second) = (tracks("pan_out", 0..48), tracks("pan_out", 48..96));
    assert_eq!((first.len(), second.len()), (1, 1), "{first:?} {second:?}");
    assert_ne!(first, second, "a face that comes back starts a new track");
    // The cut at frame 24: one track before, another after.
    let (before, after) = (tracks("cut", 0..24), tracks("cut", 24..48));
    assert_eq!((before.len(), after.len()), (1, 1), "{before:?} {after:?}");
    assert_ne!(before, after, "tracks end at the cut");
    assert!(keyed[&("cut".to_string(), 24)][0].2 == "detected", "the first frame after the cut is detected");
    // Two faces crossing: two faces in most frames, tracks from both runs.
    let two = keyed.iter().filter(|(k, v)| k.0 == "crossing" && v.len() == 2).count();
    assert!(two >= 30, "{two} frames with both faces");

    // Reruns give the same tracks.
    let again = detect(&tmp.path().join("again"), "4");
    assert_eq!(again, keyed);
}
