//! Training recipes (TOML, `models/*.toml`): a plain struct with the reference's defaults,
//! overridden by flags, saved next to the run's outputs.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::config::ConfigError;

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

/// How inputs are scaled before the network.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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
            let overlay = crate::config::read_toml(f)?;
            crate::config::merge(&mut value, overlay);
        }
        value.try_into().map_err(|e: toml::de::Error| ConfigError::File { path: origin, reason: e.to_string() })
    }

    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).expect("recipe serialises")
    }

    pub fn preset(&self) -> Result<Preset, ConfigError> {
        match self.run.preset.as_str() {
            "default" => Ok(Preset::Default),
            "paper" => Ok(Preset::Paper),
            other => Err(ConfigError::Value { key: "run.preset", value: other.into(), reason: "expected default or paper".into() }),
        }
    }
}
