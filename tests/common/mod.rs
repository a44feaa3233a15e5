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
