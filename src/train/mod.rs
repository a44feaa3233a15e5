//! The trainer (libtorch through `tch`), split the way people think about it:
//! - [`recipe`]: the TOML recipe, validated once into [`recipe::TrainSettings`];
//! - [`data`]: manifest rows -> decoded, augmented, prefetched batches ([`data::augment`]),
//!   and the small real-face [`data::fixture`] for tests and the demo;
//! - [`model`]: backbones ([`model::resnet`], [`model::efficientnet`]), SupCon head, classifier;
//! - [`loss`] (SupCon, CE, MPL), [`optim`] (Adam with savable state), [`checkpoint`];
//! - [`run`]: the training stages sharing one run folder: [`run::supcon`] (teacher and
//!   fine-tune), [`run::mpl`] (SupCon-MPL), [`run::baseline`] (CE, classic MPL);
//! - [`infer`] (a trained run as a classifier), [`eval`], [`export`], [`import`] (weights
//!   trained elsewhere, e.g. the authors' released models, as a run), [`bench`].

pub mod accel;
pub mod bench;
pub mod checkpoint;
pub mod data;
pub mod eval;
pub mod export;
pub mod import;
pub mod infer;
pub mod loss;
pub mod model;
pub mod optim;
pub mod recipe;
pub mod run;
pub mod tensorboard;

use std::path::PathBuf;

use tch::TchError;

use crate::config::ConfigError;
use crate::device::DeviceError;
use crate::manifest::ManifestError;
use data::DataError;

/// Why training, evaluation or export could not go on.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    // Inputs: recipe, manifests, images, device.
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Data(#[from] DataError),
    #[error(transparent)]
    Cache(#[from] data::cache::CacheError),
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    #[error(transparent)]
    Device(#[from] DeviceError),
    #[error("{0}: no labelled rows to evaluate")]
    NothingToEvaluate(PathBuf),
    // Run folders and checkpoints.
    #[error("{0}: no recipe.toml; not a training run folder")]
    NotARun(PathBuf),
    #[error("{run}: no checkpoint ({hint})")]
    NoCheckpoint { run: PathBuf, hint: &'static str },
    #[error("{path}: {reason}; the checkpoint is incomplete")]
    IncompleteCheckpoint { path: PathBuf, reason: String },
    #[error("{path}: made for another architecture: {diffs}")]
    OtherArchitecture { path: PathBuf, diffs: String },
    #[error("teacher of another backbone than model.backbone = {backbone}: {source}")]
    TeacherBackbone { backbone: String, source: Box<TrainError> },
    #[error("{teacher}: a teacher with another {what} ({theirs}) than this run's ({ours}); train a teacher with the same settings")]
    TeacherMismatch { teacher: PathBuf, what: &'static str, theirs: String, ours: String },
    #[error("{teacher}: the teacher did not finish its stages (step {step} of {total}); resume it first (scmpl train teacher --resume)")]
    TeacherUnfinished { teacher: PathBuf, step: usize, total: usize },
    #[error("{dir}: made with another recipe (model, data or schedule differ); resume with the saved recipe {recipe}")]
    RecipeChanged { dir: PathBuf, recipe: PathBuf },
    #[error("{0} already holds a run; pass --resume to continue it, or choose another run.out")]
    RunExists(PathBuf),
    // Doing the work.
    #[error("libtorch: {0}")]
    Torch(#[from] TchError),
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("step {step}: {what} is {value}; stopped, the last good checkpoint ({checkpoint}) is kept")]
    NotFinite { step: usize, what: &'static str, value: f64, checkpoint: String },
}

/// An I/O error naming `path`.
pub(crate) fn io_err(path: &std::path::Path) -> impl Fn(std::io::Error) -> TrainError + '_ {
    move |source| TrainError::Io { path: path.to_path_buf(), source }
}
