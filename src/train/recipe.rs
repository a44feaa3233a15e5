//! Training recipes (TOML, `models/*.toml`): [`Recipe`] is the plain, serialisable struct with
//! the reference's defaults, overridden by flags and saved next to the run's outputs as
//! `recipe.toml`; [`TrainSettings`] is the same recipe checked once, with its closed sets
//! (backbone, device, preset) parsed, which every stage runs on.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::accel::Amp;
use super::model::Backbone;
use crate::config::{merge, read_toml, ConfigError};
use crate::device::{Device, DeviceError};

pub const DEFAULT_RECIPE: &str = include_str!("../../models/supcon-mpl.toml");

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct DataSection {
    pub manifest: PathBuf,
    pub train_split: String,
    pub eval_split: String,
    pub datasets: Vec<String>,
    pub unlabelled_manifest: PathBuf,
    pub unlabelled_split: String,
    pub image_size: usize,
    pub workers: usize,
    pub prefetch: usize,
    /// At most this many faces of each face track (video, track) per epoch, drawn anew each
    /// epoch (0 = every face).
    #[serde(default)]
    pub per_track: usize,
    /// Folder of the decoded-crop cache (`train::data::cache`); empty: decode every epoch.
    #[serde(default)]
    pub cache: PathBuf,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ModelSection {
    pub backbone: String,
    pub init: String,
    pub feat_dim: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TeacherSection {
    pub supcon_steps: usize,
    pub supcon_batch: usize,
    pub linear_steps: usize,
    pub linear_batch: usize,
    pub lr: f64,
    pub temperature: f64,
    pub base_temperature: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct MplSection {
    pub teacher: PathBuf,
    pub steps: usize,
    pub labelled_batch: usize,
    pub unlabelled_batch: usize,
    pub lr: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct FinetuneSection {
    pub student: PathBuf,
    pub supcon_steps: usize,
    pub supcon_batch: usize,
    pub linear_steps: usize,
    pub linear_batch: usize,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RunSection {
    pub out: PathBuf,
    pub seed: u64,
    pub device: String,
    pub preset: String,
    pub checkpoint_every: usize,
    pub log_every: usize,
    pub stop_after: usize,
    /// TF32 for CUDA matmuls and convolutions (see `train::accel`); recipes written before
    /// it read as true.
    #[serde(default = "default_tf32")]
    pub tf32: bool,
    /// Autocast of the encoder: none or bf16.
    #[serde(default = "default_amp")]
    pub amp: String,
}

fn default_tf32() -> bool {
    true
}

fn default_amp() -> String {
    "none".into()
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Recipe {
    pub data: DataSection,
    pub model: ModelSection,
    pub teacher: TeacherSection,
    pub mpl: MplSection,
    pub finetune: FinetuneSection,
    pub run: RunSection,
}

/// How inputs are scaled before the network, and which of the reference's quirks are kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Preset {
    /// Inputs in [0,1], ImageNet mean/std normalisation.
    Default,
    /// The reference's quirk: [0,1] inputs divided by 255 again, no normalisation.
    Paper,
}

impl Recipe {
    /// The compiled-in recipe overlaid by `file`.
    pub fn load(file: Option<&Path>) -> Result<Recipe, ConfigError> {
        let mut value: toml::Value = toml::from_str(DEFAULT_RECIPE).expect("models/supcon-mpl.toml parses");
        let origin = file.map(Path::to_path_buf).unwrap_or_else(|| "models/supcon-mpl.toml".into());
        if let Some(f) = file {
            merge(&mut value, read_toml(f)?);
        }
        value.try_into().map_err(|e: toml::de::Error| ConfigError::File { path: origin, reason: e.to_string() })
    }

    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).expect("recipe serialises")
    }

    /// Checks the recipe once and parses its closed sets.
    pub fn validate(&self) -> Result<TrainSettings, ConfigError> {
        let value = |key: &'static str, value: &str, reason: String| ConfigError::Value { key, value: value.into(), reason };
        let backbone = self.model.backbone.parse::<Backbone>().map_err(|e| value("model.backbone", &self.model.backbone, e.to_string()))?;
        let preset = match self.run.preset.as_str() {
            "default" => Preset::Default,
            "paper" => Preset::Paper,
            other => return Err(value("run.preset", other, "expected default or paper".into())),
        };
        let device = self.run.device.parse::<Device>().map_err(|e| value("run.device", &self.run.device, e.to_string()))?;
        let amp = Amp::parse(&self.run.amp).ok_or_else(|| value("run.amp", &self.run.amp, "expected none or bf16".into()))?;
        let d = &self.data;
        let unlabelled_manifest = if d.unlabelled_manifest.as_os_str().is_empty() { d.manifest.clone() } else { d.unlabelled_manifest.clone() };
        Ok(TrainSettings { recipe: self.clone(), backbone, preset, device, amp, unlabelled_manifest })
    }

    /// What must not change between a run and its resumption (not the device or its
    /// precision settings, the worker count or where to stop).
    pub fn fingerprint(&self) -> String {
        let mut r = self.clone();
        r.run.stop_after = 0;
        r.run.device.clear();
        r.run.tf32 = true;
        r.run.amp.clear();
        r.run.log_every = 0;
        r.data.workers = 0;
        r.data.prefetch = 0;
        r.data.cache = PathBuf::new();
        r.to_toml()
    }
}

impl Preset {
    /// The name in recipes and flags.
    pub fn as_str(&self) -> &'static str {
        match self {
            Preset::Default => "default",
            Preset::Paper => "paper",
        }
    }
}

/// A validated recipe: what the training stages run on.
#[derive(Debug, Clone)]
pub struct TrainSettings {
    /// The recipe as given (saved as the run's `recipe.toml`).
    pub recipe: Recipe,
    pub backbone: Backbone,
    pub preset: Preset,
    pub device: Device,
    pub amp: Amp,
    /// Where MPL's unlabelled stream comes from (`data.unlabelled_manifest`, else `data.manifest`).
    pub unlabelled_manifest: PathBuf,
}

impl TrainSettings {
    /// What is off about this recipe without being an error: said at the start of a run and
    /// kept in its `eval.json`.
    pub fn warnings(&self) -> Vec<String> {
        let mut w = Vec::new();
        if self.preset == Preset::Paper && self.recipe.model.init.is_empty() {
            w.push(
                "preset paper with an empty model.init: the encoder starts from random weights, the authors start from ImageNet \
                 (convert torchvision's weights with scripts/convert-torchvision and pass --init); results will not be the paper's"
                    .to_string(),
            );
        }
        w
    }

    /// The libtorch device, with the run's precision settings applied (TF32, cuDNN benchmark,
    /// autocast: `train::accel`); CUDA asked for and absent is an error, never a CPU run.
    pub fn torch_device(&self) -> Result<tch::Device, DeviceError> {
        let device = torch_device(self.device)?;
        super::accel::configure(device, self.recipe.run.tf32, self.amp);
        Ok(device)
    }
}

/// The libtorch device for a user's device; CUDA asked for and absent is an error.
pub fn torch_device(d: Device) -> Result<tch::Device, DeviceError> {
    match d {
        Device::Cpu => Ok(tch::Device::Cpu),
        Device::Cuda(n) => {
            if tch::Cuda::is_available() && (n as i64) < tch::Cuda::device_count() {
                Ok(tch::Device::Cuda(n))
            } else {
                Err(DeviceError::CudaUnavailable {
                    what: format!("--device cuda:{n}"),
                    reason: format!("libtorch sees {} CUDA device(s){}", tch::Cuda::device_count(), super::accel::cuda_library_note()),
                })
            }
        }
    }
}
