//! Helpers shared by the integration tests: where the real media is, and running the binary.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The real test media fetched by scripts/setup (never committed).
pub fn media(name: &str) -> PathBuf {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/media").join(name);
    assert!(p.exists(), "{} is missing: run scripts/setup", p.display());
    p
}

pub fn generated(name: &str) -> PathBuf {
    media(&format!("generated/{name}"))
}

pub fn scmpl() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_scmpl"));
    c.current_dir(env!("CARGO_MANIFEST_DIR"));
    c
}

/// Runs scmpl with `args`, returning its output (stderr echoed on failure to ease debugging).
pub fn run(args: &[&str]) -> Output {
    let out = scmpl().args(args).output().expect("scmpl runs");
    if !out.status.success() {
        eprintln!("scmpl {args:?} -> {:?}\n{}", out.status.code(), String::from_utf8_lossy(&out.stderr));
    }
    out
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Rows of a CSV file as records (header excluded).
pub fn records(path: &Path) -> Vec<csv::StringRecord> {
    let mut r = csv::Reader::from_path(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    r.records().map(|r| r.unwrap()).collect()
}

/// The header row of a CSV file.
pub fn headers(path: &Path) -> csv::StringRecord {
    csv::Reader::from_path(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())).headers().unwrap().clone()
}

/// The value of column `name` in `r`.
pub fn col<'a>(r: &'a csv::StringRecord, headers: &csv::StringRecord, name: &str) -> &'a str {
    &r[headers.iter().position(|h| h == name).unwrap_or_else(|| panic!("no column {name}"))]
}

/// Rows as sorted lines, for comparing two runs.
pub fn sorted_lines(path: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut lines: Vec<String> = text.lines().skip(1).map(str::to_string).collect();
    lines.sort();
    lines
}

/// Every file under `dir`, relative, sorted.
pub fn files_under(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = walkdir::WalkDir::new(dir)
        .into_iter()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_type().is_file())
        .map(|e| e.path().strip_prefix(dir).unwrap().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

/// The rows of a CSV file as maps from column name to value (header row excluded), so tests
/// read columns by name.
pub fn named_rows(path: &Path) -> Vec<std::collections::HashMap<String, String>> {
    let h = headers(path);
    records(path).iter().map(|r| h.iter().zip(r.iter()).map(|(k, v)| (k.to_string(), v.to_string())).collect()).collect()
}

/// The pipeline's default detector config (pipeline/default.toml) for detector `name`; MTCNN
/// with facenet-pytorch's defaults and every face it returns kept (score threshold 0).
#[cfg(feature = "pipeline")]
pub fn detector_config(name: &str) -> scmpl::pipeline::detect::DetectorConfig {
    let mut c = scmpl::pipeline::config::PipelineConfig::load(None).unwrap().detector;
    c.name = name.into();
    if name == "mtcnn" {
        c.score_threshold = 0.0;
        c.threads = 2;
    }
    c
}

/// A real test image (PNG/JPEG) as BGR, decoded with OpenCV.
#[cfg(feature = "pipeline")]
pub fn load(name: &str) -> scmpl::pipeline::image::BgrImage {
    decode_file(&media(name))
}

/// Any image file as BGR, decoded with OpenCV; panics naming the file if it does not decode.
#[cfg(feature = "pipeline")]
pub fn decode_file(path: &Path) -> scmpl::pipeline::image::BgrImage {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    scmpl::pipeline::image::BgrImage::decode(&bytes).unwrap_or_else(|| panic!("{} does not decode", path.display()))
}

/// Runs scmpl with `args`, killing it and failing the test if it takes over `secs` seconds
/// (a hang is a bug like any other).
pub fn run_within(secs: u64, args: &[&std::ffi::OsStr]) -> Output {
    use std::io::Read;
    let mut child = scmpl()
        .args(args)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("scmpl runs");
    let (mut so, mut se) = (child.stdout.take().unwrap(), child.stderr.take().unwrap());
    let out = std::thread::spawn(move || {
        let mut o = Vec::new();
        let _ = so.read_to_end(&mut o);
        o
    });
    let err = std::thread::spawn(move || {
        let mut e = Vec::new();
        let _ = se.read_to_end(&mut e);
        e
    });
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("scmpl {args:?} did not end within {secs} s");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    Output { status, stdout: out.join().unwrap(), stderr: err.join().unwrap() }
}
