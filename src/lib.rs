//! scmpl: deepfake-detection research tooling. Two halves that meet only at the CSV manifests:
//!
//! - [`pipeline`] (feature `pipeline`: FFmpeg, OpenCV, ONNX Runtime), videos to face crops:
//!   `scan -> decode -> detect -> faces -> crop -> write`, each a folder or file of its own;
//! - [`train`] (feature `train`: libtorch), SupCon-MPL detectors from manifests:
//!   `recipe -> data -> model -> loss -> optim -> stages -> checkpoint`, then eval and export.
//!
//! Between and around them:
//! - [`manifest`]: the CSV contract (rows, atomic writers, path rules);
//! - [`tools`]: index, split, merge, validate, stats, export, report, doctor;
//! - [`predict`]: a trained run applied to new videos and images (both halves);
//! - shared pieces: [`config`] (TOML overlays), [`device`], [`hash`], [`metrics`], [`shard`]
//!   (splitting a dataset over machines, and the marker of a finished shard).
//!
//! The `scmpl` binary (`src/main.rs`, `src/cli/`) only parses flags, calls these, and maps the result to an
//! exit code ([`exit`]).

pub mod config;
pub mod device;
pub mod hash;
pub mod manifest;
pub mod metrics;
pub mod shard;
pub mod tools;

#[cfg(feature = "pipeline")]
pub mod pipeline;

#[cfg(feature = "train")]
pub mod train;

#[cfg(all(feature = "pipeline", feature = "train"))]
pub mod predict;

/// Exit codes shared by every command.
pub mod exit {
    /// Everything went well.
    pub const OK: i32 = 0;
    /// The command could not run (bad flags, missing libraries, unreadable config).
    pub const CANNOT_RUN: i32 = 1;
    /// The command ran, but some inputs failed; they are listed in the output.
    pub const SOME_FAILED: i32 = 2;
}
