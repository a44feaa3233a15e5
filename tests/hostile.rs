//! A hostile input corpus, made at test time by ffmpeg, the shell and Rust: odd names, every
//! container and codec at hand, truncations, symlinks, FIFOs, DFDC metadata variants. For
//! each kind: the exit code, the row's status and a reason a user can act on; no panic, no
//! hang (every run under a timeout), no committed file lost. Then the faults found by such a
//! corpus one by one: a full disk, a rerun's exit code, a killed run at many random moments.

#![cfg(feature = "pipeline")]

mod common;

use std::collections::{BTreeMap, HashMap};
use std::ffi::OsStr;
use std::path::{Path, PathBuf};

use common::{files_under, generated, media, named_rows, run_within, sorted_lines, stderr};

/// Builds the corpus under `dir` with bash + ffmpeg (names with bytes that are not UTF-8 are
/// made by the shell's printf).
fn build_corpus(dir: &Path) {
    let script = r#"
set -eu
C=$1; A=$2; G=$3; COFFEE=$4; D=$5
FF="ffmpeg -nostdin -loglevel error -y"
mkdir -p "$D/names" "$D/collisions/a" "$D/links" "$D/broken" "$D/codecs" \
  "$D/dfdc/dfdc_train_part_3" "$D/dfdc/dfdc_train_part_4" "$D/dfdc/dfdc_train_part_5"
# names: every one a copy of the real carphone clip, so every one must come out ok
n="$D/names"
cp "$C" "$n/$(printf '\xff\xfeclip').mp4"
cp "$C" "$n/..mp4"
cp "$G/broken/garbage.mp4" "$n/...mp4"
cp "$C" "$n/.mp4"
cp "$C" "$n/pipe:0.mp4"
cp "$C" "$n/take:1.mp4"
cp "$C" "$n/file:clip.mp4"
cp "$G/broken/garbage.mp4" "$n/clip.mp4"
cp "$C" "$n/$(printf 'a\tb').mp4"
cp "$C" "$n/$(printf 'a\nb').mp4"
cp "$C" "$n/a,\"b\".mp4"
cp "$C" "$n/with space.mp4"
cp "$C" "$n/vidéo 日本.mp4"
cp "$C" "$n/UPPER.MP4"
cp "$C" "$n/100%.mp4"
cp "$C" "$n/back\\slash.mp4"
cp "$C" "$n/$(printf 'l%.0s' $(seq 150)).mp4"
# id collisions
cp "$C" "$D/collisions/a/b.mp4"
cp "$C" "$D/collisions/a__b.mp4"
cp "$C" "$D/collisions/same.avi"
cp "$C" "$D/collisions/same.mp4"
# links and things that are not files
cp "$C" "$D/links/target.mkv.bak"
ln -s target.mkv.bak "$D/links/link.mp4"
ln -s nowhere.mp4 "$D/links/dangling.mp4"
mkfifo "$D/links/fifo.mp4"
ln -s .. "$D/links/loop"
# broken content
b="$D/broken"
: > "$b/zero.mp4"
cp "$G/broken/garbage.mp4" "$b/garbage.mp4"
printf 'this is not a video\n%.0s' $(seq 200) > "$b/text.mp4"
cp "$G/broken/audio_only.mp4" "$b/audio.mp4"
$FF -loop 1 -i "$A" -vf "scale=640:640,zoompan=z='1+0.002*on':d=300:s=320x240:fps=30" -frames:v 300 \
  -c:v libx264 -preset ultrafast -pix_fmt yuv420p -movflags +faststart -f mp4 "$b/long.mp4.src"
size=$(stat -c %s "$b/long.mp4.src")
head -c $((size / 10)) "$b/long.mp4.src" > "$b/cut10.mp4"
head -c $((size / 2)) "$b/long.mp4.src" > "$b/cut50.mp4"
cp "$b/long.mp4.src" "$b/flipped.mp4"
head -c 3000 /dev/urandom | dd of="$b/flipped.mp4" bs=1 seek=$((size / 2)) conv=notrunc status=none
$FF -loop 1 -i "$A" -vf "scale=640:640,zoompan=z='1+0.004*on':d=90:s=320x240:fps=30" -frames:v 90 -c:v libx264 -preset ultrafast \
  -g 1000 -f mpegts "$b/longgop.ts.src"
size=$(stat -c %s "$b/longgop.ts.src")
tail -c +$(( size / 3 / 188 * 188 + 1 )) "$b/longgop.ts.src" > "$b/noidr.ts"
cp "$A" "$b/png.mp4"
rm "$b"/*.src
# codecs and containers (astronaut, a few frames)
c="$D/codecs"
$FF -loop 1 -i "$A" -vf scale=320:320 -frames:v 4 -c:v libx265 -preset ultrafast -x265-params log-level=none "$c/hevc.mp4"
$FF -loop 1 -i "$A" -vf scale=320:320 -frames:v 4 -c:v mpeg2video "$c/mpeg2.mpg"
$FF -loop 1 -i "$A" -vf scale=320:320 -frames:v 4 -c:v mjpeg "$c/mjpeg.avi"
$FF -loop 1 -i "$A" -vf scale=320:320 -frames:v 4 -c:v libx264 -preset ultrafast -pix_fmt gray "$c/grey.mp4"
$FF -loop 1 -i "$A" -vf scale=320:320 -frames:v 2 -c:v libaom-av1 -cpu-used 8 -b:v 200k "$c/av1.mkv"
$FF -loop 1 -i "$A" -vf scale=320:320 -frames:v 4 -c:v ffv1 "$c/ffv1.mkv"
$FF -loop 1 -i "$A" -vf scale=320:320 -frames:v 1 -c:v libx264 -preset ultrafast "$c/one_frame.mp4"
$FF -loop 1 -i "$COFFEE" -vf scale=320:240 -frames:v 4 -c:v libx264 -preset ultrafast "$c/no_face.mp4"
# a stream whose picture size changes midway (two MPEG-TS pieces, one after the other)
$FF -loop 1 -i "$A" -vf scale=320:240 -frames:v 10 -r 10 -c:v libx264 -preset ultrafast -f mpegts "$c/p1.ts.src"
$FF -loop 1 -i "$A" -vf scale=480:360 -frames:v 10 -r 10 -c:v libx264 -preset ultrafast -f mpegts "$c/p2.ts.src"
cat "$c/p1.ts.src" "$c/p2.ts.src" > "$c/resize.ts"
rm "$c"/*.src
# DFDC folders with metadata problems
p3="$D/dfdc/dfdc_train_part_3"
cp "$C" "$p3/real1.mp4"; cp "$C" "$p3/fake1.mp4"; cp "$C" "$p3/fake2.mp4"; cp "$C" "$p3/unlisted.mp4"
cat > "$p3/metadata.json" <<'JSON'
{"real1.mp4": {"label": "REAL", "split": "train"},
 "fake1.mp4": {"label": "FAKE", "split": "train", "original": "real1.mp4"},
 "fake2.mp4": {"label": "FAKE", "split": "train", "original": "gone.mp4"},
 "ghost.mp4": {"label": "REAL", "split": "train"}}
JSON
cp "$C" "$D/dfdc/dfdc_train_part_4/p4a.mp4"
printf '{"p4a.mp4": {"label": "REAL\xff"}}' > "$D/dfdc/dfdc_train_part_4/metadata.json"
cp "$C" "$D/dfdc/dfdc_train_part_5/p5a.mp4"
printf '{not json' > "$D/dfdc/dfdc_train_part_5/metadata.json"
"#;
    let o = std::process::Command::new("bash")
        .args(["-c", script, "corpus"])
        .arg(media("carphone_pristine.mp4"))
        .arg(media("astronaut.png"))
        .arg(generated(""))
        .arg(media("coffee.png"))
        .arg(dir)
        .output()
        .unwrap();
    assert!(o.status.success(), "corpus: {}", String::from_utf8_lossy(&o.stderr));
}

/// What a kind of input must end as: its status (several allowed where the outcome depends on
/// what FFmpeg makes of damaged bytes) and words its error column must hold.
struct Expect {
    id: &'static str,
    status: &'static [&'static str],
    reason: &'static str,
}

const OK: &[&str] = &["ok"];
const FAILED: &[&str] = &["failed"];
const PARTIAL: &[&str] = &["partial"];

fn expectations() -> Vec<Expect> {
    let e = |id, status, reason| Expect { id, status, reason };
    let long: &'static str = Box::leak(format!("names__{}", "l".repeat(150)).into_boxed_str());
    vec![
        e("names__%FF%FEclip", OK, ""),
        e("names__%2E", OK, ""),
        e("names__%2E%2E", FAILED, "cannot open"),
        e("names__.mp4", OK, ""),
        e("names__pipe:0", OK, ""),
        e("names__take:1", OK, ""),
        e("names__file:clip", OK, ""),
        e("names__clip", FAILED, "cannot open"),
        e("names__a%09b", OK, ""),
        e("names__a%0Ab", OK, ""),
        e("names__a,\"b\"", OK, ""),
        e("names__with space", OK, ""),
        e("names__vidéo 日本", OK, ""),
        e("names__UPPER", OK, ""),
        e("names__100%25", OK, ""),
        e("names__back%5Cslash", OK, ""),
        e(long, OK, ""),
        e("collisions__a__b", OK, ""),
        e("collisions__a__b~2", OK, ""),
        e("collisions__same", OK, ""),
        e("collisions__same~2", OK, ""),
        e("links__link", OK, ""),
        e("links__dangling", FAILED, "dangling"),
        e("links__fifo", FAILED, "a FIFO"),
        e("broken__zero", FAILED, "empty"),
        e("broken__garbage", FAILED, "cannot open"),
        e("broken__text", FAILED, "cannot open"),
        e("broken__audio", FAILED, "no video stream"),
        e("broken__cut10", PARTIAL, "frames: stream truncated or corrupt"),
        e("broken__cut50", PARTIAL, "frames: stream truncated or corrupt"),
        e("broken__flipped", &["ok", "partial"], ""),
        e("broken__noidr", FAILED, "no frame"),
        e("broken__png", &["ok", "failed"], ""),
        e("codecs__hevc", OK, ""),
        e("codecs__mpeg2", OK, ""),
        e("codecs__mjpeg", OK, ""),
        e("codecs__grey", OK, ""),
        e("codecs__av1", OK, ""),
        e("codecs__ffv1", OK, ""),
        e("codecs__one_frame", OK, ""),
        e("codecs__no_face", OK, ""),
        e("codecs__resize", OK, ""),
        e("real1", OK, ""),
        e("fake1", OK, ""),
        e("fake2", OK, ""),
        e("unlisted", OK, ""),
        e("p4a", OK, ""),
        e("p5a", OK, ""),
    ]
}

fn os(s: &str) -> &OsStr {
    OsStr::new(s)
}

fn osrefs(a: &[std::ffi::OsString]) -> Vec<&OsStr> {
    a.iter().map(|s| s.as_os_str()).collect()
}

#[test]
fn every_kind_of_hostile_input_ends_as_a_row_or_a_warning_with_a_reason() {
    let dir = tempfile::tempdir().unwrap();
    let corpus = dir.path().join("corpus");
    build_corpus(&corpus);
    let out = dir.path().join("out");
    let args = [os("extract"), corpus.as_os_str(), os("--out"), out.as_os_str(), os("--sampling"), os("count:3"), os("--no-progress")];
    let o = run_within(300, &args);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    let rows: HashMap<String, HashMap<String, String>> =
        named_rows(&out.join("videos.csv")).into_iter().map(|r| (r["video_id"].clone(), r)).collect();
    let expected = expectations();
    assert!(expected.len() >= 40, "{} kinds", expected.len());
    for e in &expected {
        let row = rows.get(e.id).unwrap_or_else(|| panic!("no videos.csv row for {:?}; rows: {:?}", e.id, rows.keys().collect::<Vec<_>>()));
        assert!(e.status.contains(&row["status"].as_str()), "{}: status {} ({}), expected {:?}", e.id, row["status"], row["error"], e.status);
        assert!(row["error"].contains(e.reason), "{}: error {:?} should say {:?}", e.id, row["error"], e.reason);
        if row["status"] != "ok" {
            assert!(!row["error"].is_empty(), "{}: a {} row says why", e.id, row["status"]);
        }
    }
    assert_eq!(rows.len(), expected.len(), "one row per input, no more: {:?}", rows.keys().collect::<Vec<_>>());
    // What has no row is a warning naming it.
    for w in [
        "links/loop: symlink loop",
        "collisions/a__b.mp4: video id 'collisions__a__b' is taken",
        "lists ghost.mp4, which is not in the folder",
        "fake2.mp4: its original gone.mp4",
        "unlisted.mp4: not listed",
        "dfdc_train_part_4/metadata.json: not valid DFDC metadata",
        "dfdc_train_part_5/metadata.json: not valid DFDC metadata",
    ] {
        assert!(err.contains(w), "warning {w:?} missing:\n{err}");
    }
    // Labels: what metadata.json says, empty where it could not be read.
    let label = |id: &str| rows[id]["label"].clone();
    assert_eq!((label("real1"), label("fake1"), label("p4a")), ("0".into(), "1".into(), "".into()));
    assert_eq!(rows["fake1"]["original"], "real1");
    // The resolution change was followed: all 20 frames decoded, the last ones at 480x360.
    assert_eq!(rows["codecs__resize"]["frames"], "20");
    // Every committed crop is on disk, inside faces/<dataset>/<video_id>/, and no other file is.
    let faces = named_rows(&out.join("faces.csv"));
    assert!(faces.len() > 60, "{} faces", faces.len());
    for f in &faces {
        assert!(out.join(&f["path"]).is_file(), "{} is listed but missing", f["path"]);
        let parts: Vec<&str> = f["path"].split('/').collect();
        assert_eq!((parts.len(), parts[0], parts[2]), (4, "faces", f["video_id"].as_str()), "{}", f["path"]);
    }
    assert_eq!(files_under(&out.join("faces")).len(), faces.len(), "no crop without a row");

    // A rerun: nothing to redo (the journal reads past tabs and newlines in ids), the same
    // manifests, and the exit code still says the folder holds failures.
    let before: Vec<Vec<String>> = ["videos.csv", "detections.csv", "faces.csv"].iter().map(|m| sorted_lines(&out.join(m))).collect();
    let o = run_within(120, &args);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains(&format!("{} already done", expected.len())), "{err}");
    assert!(err.contains("failed (earlier run") && err.contains("dangling"), "{err}");
    let after: Vec<Vec<String>> = ["videos.csv", "detections.csv", "faces.csv"].iter().map(|m| sorted_lines(&out.join(m))).collect();
    assert!(before == after, "a rerun changed the manifests");
}

/// Bug: `pipe:0.mp4` passed by its bare name read standard input (the run hung), and a name
/// that is not UTF-8 panicked FFmpeg's wrapper (exit 101, the rest of the run lost).
#[test]
fn names_passed_on_the_command_line_are_files_not_urls() {
    use std::os::unix::ffi::OsStrExt;
    let dir = tempfile::tempdir().unwrap();
    let odd = dir.path().join(OsStr::from_bytes(b"\xff\xfe.mp4"));
    std::fs::copy(media("carphone_pristine.mp4"), &odd).unwrap();
    for name in ["pipe:0.mp4", "take:1.mp4"] {
        std::fs::copy(media("carphone_pristine.mp4"), dir.path().join(name)).unwrap();
    }
    let out = dir.path().join("out");
    let mut cmd = common::scmpl();
    cmd.current_dir(dir.path()).args(["extract", "pipe:0.mp4", "take:1.mp4"]).arg(&odd);
    cmd.args(["--out", out.to_str().unwrap(), "--sampling", "count:2", "--no-progress"]);
    // Standard input stays open: reading it would hang the run.
    let child = cmd.stdin(std::process::Stdio::piped()).stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped()).spawn().unwrap();
    let start = std::time::Instant::now();
    let o = child.wait_with_output().unwrap();
    assert!(start.elapsed().as_secs() < 60);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let rows = named_rows(&out.join("videos.csv"));
    let ids: Vec<&str> = rows.iter().map(|r| r["video_id"].as_str()).collect();
    assert_eq!(ids.len(), 3, "{ids:?}");
    assert!(rows.iter().all(|r| r["status"] == "ok" && r["faces"] == "2"), "{rows:?}");
    assert!(ids.contains(&"%FF%FE") && ids.contains(&"pipe:0") && ids.contains(&"take:1"), "{ids:?}");
}

/// Bug: with the output disk full every remaining video was committed as `failed`, and a plain
/// rerun kept them. Now the run stops (exit 1) after its last good commit, says the disk is
/// full, and once space is freed the same command finishes to what an uninterrupted run gives.
#[test]
fn a_full_output_disk_stops_the_run_and_a_rerun_finishes_it() {
    let dir = tempfile::tempdir().unwrap();
    let videos = dir.path().join("videos");
    std::fs::create_dir_all(&videos).unwrap();
    for i in 0..6 {
        std::fs::copy(generated("zoom_astronaut.mp4"), videos.join(format!("v{i}.mp4"))).unwrap();
    }
    // At the same depth as the output on the small disk, so the relative paths in the manifests match.
    let reference = dir.path().join("big").join("out");
    let args = |out: &Path| -> Vec<PathBuf> {
        ["extract", videos.to_str().unwrap(), "--out", out.to_str().unwrap(), "--sampling", "count:6", "--no-progress"].map(PathBuf::from).to_vec()
    };
    let as_os = |a: &[PathBuf]| a.iter().map(|p| p.clone().into_os_string()).collect::<Vec<_>>();
    let a = as_os(&args(&reference));
    let o = run_within(120, &a.iter().map(|s| s.as_os_str()).collect::<Vec<_>>());
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let crops: u64 = walkdir::WalkDir::new(reference.join("faces")).into_iter().flatten().filter_map(|e| e.metadata().ok()).filter(|m| m.is_file()).map(|m| m.len()).sum();

    // An output disk that holds about half the crops (a tmpfs; root can mount one here).
    let disk = dir.path().join("disk");
    std::fs::create_dir_all(&disk).unwrap();
    let size = crops / 2 + 64 * 1024;
    let mount = std::process::Command::new("mount").args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"]).arg(&disk).status();
    if !mount.is_ok_and(|s| s.success()) {
        panic!("cannot mount a tmpfs at {} (this test needs root, as scripts/test has)", disk.display());
    }
    struct Unmount(PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = std::process::Command::new("umount").arg(&self.0).status();
        }
    }
    let _unmount = Unmount(disk.clone());
    let out = disk.join("out");
    let a = as_os(&args(&out));
    let a: Vec<&OsStr> = a.iter().map(|s| s.as_os_str()).collect();
    let o = run_within(120, &a);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("disk is full") && err.contains("bytes free"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    let done: Vec<HashMap<String, String>> = named_rows(&out.join("videos.csv"));
    assert!(!done.is_empty() && done.len() < 6, "{} videos committed before the disk filled", done.len());
    assert!(done.iter().all(|r| r["status"] == "ok"), "no video blamed for the disk: {done:?}");
    for f in named_rows(&out.join("faces.csv")) {
        assert!(out.join(&f["path"]).is_file(), "{} lost", f["path"]);
    }
    // Space freed: the same command finishes, and the result equals the uninterrupted run.
    let grown = std::process::Command::new("mount").args(["-o", "remount,size=200m"]).arg(&disk).status().unwrap();
    assert!(grown.success());
    let o = run_within(120, &a);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    for m in ["videos.csv", "detections.csv", "faces.csv"] {
        assert_eq!(sorted_lines(&reference.join(m)), sorted_lines(&out.join(m)), "{m}");
    }
    assert_eq!(files_under(&reference.join("faces")), files_under(&out.join("faces")));
}

/// `kill -9` at seeded random moments of a run over several videos (a DFDC group among them),
/// then of a `--retry-failed` run: after each rerun the manifests and crops equal those of an
/// uninterrupted run.
#[test]
fn kill_9_at_random_moments_then_a_rerun_gives_the_uninterrupted_result() {
    let dir = tempfile::tempdir().unwrap();
    let videos = dir.path().join("videos");
    std::fs::create_dir_all(&videos).unwrap();
    let status = std::process::Command::new("cp").arg("-r").arg(generated("dfdc")).arg(&videos).status().unwrap();
    assert!(status.success());
    for name in ["zoom_astronaut.mp4", "two_faces.mp4", "rotated.mp4"] {
        std::fs::copy(generated(name), videos.join(name)).unwrap();
    }
    std::fs::copy(generated("broken/garbage.mp4"), videos.join("flaky.mp4")).unwrap();
    let go = |out: &Path, extra: &[&str]| -> Vec<std::ffi::OsString> {
        let mut a: Vec<std::ffi::OsString> = vec!["extract".into(), videos.clone().into(), "--out".into(), out.into()];
        a.extend(["--sampling", "stride:3", "--decode-workers", "1", "--no-progress"].iter().chain(extra).map(|s| s.into()));
        a
    };
    let manifests = |out: &Path| -> BTreeMap<&str, Vec<String>> {
        ["videos.csv", "detections.csv", "faces.csv"].into_iter().map(|m| (m, sorted_lines(&out.join(m)))).collect()
    };
    // The uninterrupted runs: the first (flaky.mp4 is garbage), then after it is repaired, --retry-failed.
    let reference = dir.path().join("reference");
    assert_eq!(run_within(120, &osrefs(&go(&reference, &[]))).status.code(), Some(2));
    let first = (manifests(&reference), files_under(&reference.join("faces")));
    let timing = std::time::Instant::now();
    let o = run_within(120, &osrefs(&go(dir.path().join("timing").as_path(), &[])));
    assert_eq!(o.status.code(), Some(2));
    let run_ms = timing.elapsed().as_millis() as u64;

    let mut rng = 0x5eed_u64;
    let mut next = |n: u64| {
        rng = rng.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (rng >> 33) % n.max(1)
    };
    for round in 0..8 {
        let out = dir.path().join(format!("killed{round}"));
        let a = go(&out, &[]);
        let mut child = common::scmpl().args(&a).stderr(std::process::Stdio::null()).spawn().unwrap();
        std::thread::sleep(std::time::Duration::from_millis(next(run_ms)));
        child.kill().unwrap();
        child.wait().unwrap();
        let o = run_within(120, &osrefs(&a));
        assert_eq!(o.status.code(), Some(2), "round {round}: {}", stderr(&o));
        assert_eq!((manifests(&out), files_under(&out.join("faces"))), first, "round {round}: killed, then rerun");
    }

    // The same during --retry-failed, once flaky.mp4 is a real clip.
    std::fs::copy(media("carphone_distorted.mp4"), videos.join("flaky.mp4")).unwrap();
    let o = run_within(120, &osrefs(&go(&reference, &["--retry-failed"])));
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let retried = (manifests(&reference), files_under(&reference.join("faces")));
    assert_ne!(retried, first);
    for round in 0..4 {
        let out = dir.path().join(format!("killed{round}"));
        let a = go(&out, &["--retry-failed"]);
        let mut child = common::scmpl().args(&a).stderr(std::process::Stdio::null()).spawn().unwrap();
        std::thread::sleep(std::time::Duration::from_millis(next(run_ms / 3)));
        child.kill().unwrap();
        child.wait().unwrap();
        let o = run_within(120, &osrefs(&go(&out, &["--retry-failed"])));
        assert_eq!(o.status.code(), Some(0), "retry round {round}: {}", stderr(&o));
        assert_eq!((manifests(&out), files_under(&out.join("faces"))), retried, "retry round {round}");
    }
}
