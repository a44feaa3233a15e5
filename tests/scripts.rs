//! The scripts users run around scmpl: when scmpl fails inside one, the user sees why.

#![cfg(feature = "train")]

mod common;

use std::process::Command;

/// Bug: `scripts/compare-fixture` sent scmpl's stderr to /dev/null under `set -e`, so a failing
/// step ended the script silently. It must print scmpl's error and exit non-zero.
#[test]
fn compare_fixture_shows_why_scmpl_failed() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("no_such_lfw.npy");
    let o = Command::new("scripts/compare-fixture")
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("SCMPL_BIN", env!("CARGO_BIN_EXE_scmpl"))
        .env("LFW", &missing)
        .output()
        .unwrap();
    let err = common::stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("failed") && err.contains("no_such_lfw.npy"), "{err}");
}
