//! Stage tools: what users run on manifests and runs between and after the pipeline stages.
//!
//! - [`index`]: image-folder datasets (FF++, Celeb-DF, CelebA, StyleGAN, folders) -> `faces.csv`;
//! - [`split`]: leak-free splits; [`paper`]: the paper's data protocol;
//! - [`merge`], [`validate`], [`stats`], [`export`]: `scmpl manifest ...`;
//! - [`report`]: training curves, ROC charts, contact sheets (OpenCV);
//! - [`doctor`]: what scmpl loads and finds at run time.

use std::path::PathBuf;

use crate::manifest::ManifestError;

pub mod export;
pub mod index;
pub mod merge;
pub mod paper;
pub mod split;
pub mod stats;
pub mod validate;

#[cfg(feature = "pipeline")]
pub mod doctor;
#[cfg(feature = "pipeline")]
pub mod report;

/// Why a tool could not do its job (a bad row found by `validate` is a finding, not an error).
#[derive(Debug, thiserror::Error)]
pub enum ToolError {
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{0}: not a folder")]
    NotAFolder(PathBuf),
    #[error("{path}: {expected}")]
    WrongManifest { path: PathBuf, expected: &'static str },
    #[error("{path}: conflicting rows for {crop}: {ours} vs {theirs}")]
    Conflict { path: PathBuf, crop: String, ours: String, theirs: String },
    #[error("invalid {what} '{value}': {expected}")]
    BadValue { what: &'static str, value: String, expected: String },
    #[error("groups straddle splits (with --parts, group by part or give each part to one split): {0}")]
    Leak(String),
    #[error("{path}: {reason}")]
    Image { path: PathBuf, reason: String },
    #[error("{0}")]
    Shards(String),
}

impl ToolError {
    pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> ToolError {
        let path = path.into();
        move |source| ToolError::Io { path, source }
    }
}
