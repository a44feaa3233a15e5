//! Pipeline configuration: `pipeline/default.toml` (compiled in), overlaid by `--config FILE`,
//! overridden by flags. [`PipelineConfig`] is the raw, serialisable form written next to the
//! outputs; [`ExtractSettings`] is the validated one the pipeline runs on.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub use crate::config::ConfigError;
use crate::config::{merge, read_toml};
use crate::device::Device;
use crate::pipeline::crop::{CropRule, ImageFormat};
use crate::pipeline::decode::Sampling;
use crate::pipeline::detect::DetectorConfig;
use crate::pipeline::layouts::{FfppSplits, VideoLayout};
use crate::pipeline::scan::ScanOptions;

pub const DEFAULT_PIPELINE: &str = include_str!("../../pipeline/default.toml");

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ExtractSection {
    pub sampling: String,
    pub device: String,
    pub crop: String,
    pub size: u32,
    pub format: String,
    pub faces: String,
    pub dataset: String,
    pub decode_workers: usize,
    pub crop_workers: usize,
    pub queue_frames: usize,
    /// "" (found from the folders), dfdc, ffpp, celebdf or videos.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub layout: String,
    /// FaceForensics++'s official `splits/` folder (`train.json`, `val.json`, `test.json`).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub ffpp_splits: String,
    /// DFDC fakes go through the detector too, instead of being cropped at their original's
    /// boxes (the reference's behaviour).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub detect_fakes: bool,
}

/// The raw pipeline config, as in the TOML files.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct PipelineConfig {
    pub extract: ExtractSection,
    pub detector: DetectorConfig,
}

impl PipelineConfig {
    /// The compiled-in defaults overlaid with `file` when given.
    pub fn load(file: Option<&Path>) -> Result<Self, ConfigError> {
        let mut value: toml::Value = toml::from_str(DEFAULT_PIPELINE).expect("pipeline/default.toml parses");
        let origin = match file {
            Some(f) => {
                merge(&mut value, read_toml(f)?);
                f.to_path_buf()
            }
            None => PathBuf::from("pipeline/default.toml"),
        };
        value.try_into().map_err(|e: toml::de::Error| ConfigError::File { path: origin, reason: e.to_string() })
    }

    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).expect("config serialises")
    }

    /// Checks every value and returns the typed settings.
    pub fn validate(&self) -> Result<ExtractSettings, ConfigError> {
        let e = &self.extract;
        let value = |key: &'static str, value: &str, reason: String| ConfigError::Value { key, value: value.into(), reason };
        let sampling = e.sampling.parse::<Sampling>().map_err(|r| value("sampling", &e.sampling, r.to_string()))?;
        let device = e.device.parse::<Device>().map_err(|r| value("device", &e.device, r.to_string()))?;
        let crop = e.crop.parse::<CropRule>().map_err(|r| value("crop", &e.crop, r.to_string()))?;
        let format = e.format.parse::<ImageFormat>().map_err(|r| value("format", &e.format, r.to_string()))?;
        let largest_only = match e.faces.as_str() {
            "all" => false,
            "largest" => true,
            other => return Err(value("faces", other, "expected all or largest".into())),
        };
        let d = &self.detector;
        if !(0.0..=1.0).contains(&d.score_threshold) {
            return Err(value("detector.score_threshold", &d.score_threshold.to_string(), "must be in 0..1".into()));
        }
        if !(0.0..=1.0).contains(&d.nms_threshold) {
            return Err(value("detector.nms_threshold", &d.nms_threshold.to_string(), "must be in 0..1".into()));
        }
        if d.input_size < 32 || d.input_size % 32 != 0 {
            return Err(value("detector.input_size", &d.input_size.to_string(), "must be a multiple of 32".into()));
        }
        if d.keyframe_interval == 0 {
            return Err(value("detector.keyframe_interval", "0", "must be at least 1 (1 = detect every sampled frame)".into()));
        }
        if !(d.track_iou > 0.0 && d.track_iou < 1.0) {
            return Err(value("detector.track_iou", &d.track_iou.to_string(), "must be in (0, 1)".into()));
        }
        if d.batch_size == 0 {
            return Err(value("detector.batch_size", "0", "must be at least 1".into()));
        }
        if let Some(k) = d.frame_scale.filter(|k| !(0.0..=1.0).contains(k)) {
            return Err(value("detector.frame_scale", &k.to_string(), "must be in 0..1 (0 = fit into input_size)".into()));
        }
        let m = &d.mtcnn;
        if m.min_face_size < 12.0 {
            return Err(value("detector.mtcnn.min_face_size", &m.min_face_size.to_string(), "must be at least 12 (P-Net's window)".into()));
        }
        if !(m.factor > 0.0 && m.factor < 1.0) {
            return Err(value("detector.mtcnn.factor", &m.factor.to_string(), "must be in (0, 1)".into()));
        }
        if m.thresholds.iter().any(|t| !(0.0..=1.0).contains(t)) {
            return Err(value("detector.mtcnn.thresholds", &format!("{:?}", m.thresholds), "each must be in 0..1".into()));
        }
        let layout = match e.layout.as_str() {
            "" => None,
            l => Some(<VideoLayout as clap::ValueEnum>::from_str(l, true).map_err(|_| value("layout", l, "expected dfdc, ffpp, celebdf or videos".into()))?),
        };
        let ffpp_splits = match e.ffpp_splits.as_str() {
            "" => None,
            dir => Some(FfppSplits::read(Path::new(dir)).map_err(|r| value("ffpp_splits", dir, r.to_string()))?),
        };
        let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2);
        Ok(ExtractSettings {
            sampling,
            device,
            crop,
            size: e.size,
            format,
            largest_only,
            scan: ScanOptions { dataset: Some(e.dataset.clone()).filter(|d| !d.is_empty()), layout, ffpp_splits },
            decode_workers: if e.decode_workers == 0 { (cores / 2).clamp(1, 8) } else { e.decode_workers },
            crop_workers: if e.crop_workers == 0 { (cores / 2).clamp(1, 8) } else { e.crop_workers },
            queue_frames: e.queue_frames.max(1),
            detect_fakes: e.detect_fakes,
            // RetinaFace: half the cores, the other half decode and crop; MTCNN: every core, its
            // cascade is most of the work (both measured, README).
            detector: DetectorConfig {
                threads: match d.threads {
                    0 if d.name == "mtcnn" => cores,
                    0 => (cores / 2).max(1),
                    n => n,
                },
                ..d.clone()
            },
        })
    }

    /// What must match between a run and its resumption: everything that changes outputs.
    pub fn fingerprint(&self) -> String {
        let mut c = self.clone();
        c.extract.device.clear();
        c.extract.decode_workers = 0;
        c.extract.crop_workers = 0;
        c.extract.queue_frames = 0;
        c.detector.batch_size = 0;
        c.detector.threads = 0;
        c.to_toml()
    }
}

/// Validated extraction settings.
#[derive(Debug, Clone)]
pub struct ExtractSettings {
    pub sampling: Sampling,
    pub device: Device,
    pub crop: CropRule,
    pub size: u32,
    pub format: ImageFormat,
    pub largest_only: bool,
    /// Dataset name, layout and FF++ splits for the scan.
    pub scan: ScanOptions,
    pub decode_workers: usize,
    pub crop_workers: usize,
    pub queue_frames: usize,
    pub detector: DetectorConfig,
    pub detect_fakes: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_load_and_validate() {
        let c = PipelineConfig::load(None).unwrap();
        let s = c.validate().unwrap();
        assert_eq!(s.sampling, Sampling::Count(32));
        assert_eq!(s.device, Device::Cpu);
        assert_eq!(c.detector.name, "retinaface");
    }

    #[test]
    fn a_config_file_overlays_only_its_keys_and_typos_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.toml");
        std::fs::write(&p, "[extract]\nsampling = \"all\"\n[detector]\nscore_threshold = 0.5\n").unwrap();
        let c = PipelineConfig::load(Some(&p)).unwrap();
        assert_eq!(c.extract.sampling, "all");
        assert_eq!(c.extract.crop, "reference");
        assert_eq!(c.detector.score_threshold, 0.5);
        std::fs::write(&p, "[extract]\nsamplng = \"all\"\n").unwrap();
        let err = PipelineConfig::load(Some(&p)).unwrap_err().to_string();
        assert!(err.contains("c.toml") && err.contains("samplng"), "{err}");
    }

    #[test]
    fn bad_values_name_the_key() {
        let mut c = PipelineConfig::load(None).unwrap();
        c.extract.sampling = "every:2".into();
        assert!(c.validate().unwrap_err().to_string().contains("sampling"));
        let mut c = PipelineConfig::load(None).unwrap();
        c.detector.input_size = 100;
        assert!(c.validate().unwrap_err().to_string().contains("input_size"));
    }
}
