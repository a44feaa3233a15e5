//! scmpl: deepfake-detection research tooling.
//!
//! Two halves that meet only at the CSV manifests:
//! - the extraction pipeline (`pipeline` feature: FFmpeg, OpenCV, ONNX Runtime):
//!   [`scan`] -> [`video`] decode -> [`detect`] -> [`crop`] -> [`manifest`] write, run by [`extract`];
//! - the trainer (`train` feature: libtorch).

pub mod config;
pub mod image;
pub mod index;
pub mod manifest;
pub mod manifest_ops;
pub mod metrics;
#[cfg(feature = "pipeline")]
pub mod report;
pub mod runtime;
pub mod scan;
pub mod split;

#[cfg(feature = "pipeline")]
pub mod crop;
#[cfg(feature = "pipeline")]
pub mod detect;
#[cfg(feature = "pipeline")]
pub mod doctor;
#[cfg(feature = "pipeline")]
pub mod extract;
#[cfg(feature = "pipeline")]
pub mod video;

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
