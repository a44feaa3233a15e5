//! A trained run as a classifier: the latest checkpoint's encoder + classifier (the student
//! when the run has one, else the teacher), scoring images with the run's eval transform.
//! Used by `eval`, `predict`, `export` and `manifest sheet --checkpoint`.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use tch::{nn, Tensor};

use super::checkpoint;
use super::data::{Batch, Loader, Sample};
use super::model::{Classifier as Linear, SupConNet};
use super::recipe::{torch_device, Recipe, TrainSettings};
use super::run::{eval_spec, to_input};
use super::TrainError;
use crate::device::Device;
use crate::manifest::{self, paths, FaceRow};

/// A trained encoder + classifier loaded from a run folder.
pub struct Classifier {
    pub settings: TrainSettings,
    pub net: SupConNet,
    pub cls: Linear,
    pub device: tch::Device,
    /// `student` or `teacher`: which model of the run this is.
    pub which: &'static str,
    pub(crate) stores: (nn::VarStore, nn::VarStore),
}

impl Classifier {
    /// Loads the latest checkpoint of `run` on `device` (cpu, cuda, cuda:N).
    pub fn load(run: &Path, device: &str) -> Result<Classifier, TrainError> {
        let recipe_path = run.join("recipe.toml");
        if !recipe_path.is_file() {
            return Err(TrainError::NotARun(run.to_path_buf()));
        }
        let settings = Recipe::load(Some(&recipe_path))?.validate()?;
        let device = torch_device(device.parse::<Device>()?)?;
        let ck = checkpoint::latest(run)?
            .ok_or_else(|| TrainError::NoCheckpoint { run: run.to_path_buf(), hint: "latest missing: the run is incomplete" })?;
        let (net_file, cls_file, which) = if ck.dir.join("student.safetensors").is_file() {
            ("student.safetensors", "student_classifier.safetensors", "student")
        } else {
            ("teacher.safetensors", "teacher_classifier.safetensors", "teacher")
        };
        for f in [net_file, cls_file] {
            if !ck.dir.join(f).is_file() {
                return Err(TrainError::IncompleteCheckpoint { path: ck.dir.join(f), reason: "missing".into() });
            }
        }
        let backbone = settings.backbone;
        let mut vs_net = nn::VarStore::new(device);
        let mut vs_cls = nn::VarStore::new(device);
        let net = SupConNet::new(&vs_net.root(), backbone, settings.recipe.model.feat_dim);
        let cls = Linear::new(&vs_cls.root(), backbone.feature_dim(), 2);
        checkpoint::load_vars(&mut vs_net, &ck.dir.join(net_file))?;
        checkpoint::load_vars(&mut vs_cls, &ck.dir.join(cls_file))?;
        Ok(Classifier { settings, net, cls, device, which, stores: (vs_net, vs_cls) })
    }

    /// The input side the model was trained at.
    pub fn image_size(&self) -> usize {
        self.settings.recipe.data.image_size
    }

    /// Fake probabilities of a batch of images (already resized, RGB in [0,1]).
    pub fn probabilities_of_batch(&self, batch: &Batch) -> Result<Vec<f64>, TrainError> {
        let x = to_input(batch, self.device, self.settings.preset);
        let p = tch::no_grad(|| self.cls.forward(&self.net.features(&x, false)).softmax(-1, tch::Kind::Double));
        Ok(Vec::<f64>::try_from(p.select(1, 1).to_device(tch::Device::Cpu))?)
    }

    /// Fake probability of each sample (None where the image is unreadable).
    pub fn probabilities(&self, samples: &Arc<Vec<Sample>>) -> Result<Vec<Option<f64>>, TrainError> {
        let spec = eval_spec(samples.len(), self.image_size(), self.settings.recipe.data.workers);
        let mut out = vec![None; samples.len()];
        for b in Loader::new(samples.clone(), spec, 0, spec.plan.steps_per_epoch()) {
            if b.n == 0 {
                continue;
            }
            for (i, v) in b.indices.iter().zip(self.probabilities_of_batch(&b)?) {
                out[*i] = Some(v);
            }
        }
        Ok(out)
    }

    /// Fake probability of every readable crop of a faces.csv, by its `path` column.
    pub fn probabilities_of_manifest(&self, faces: &Path) -> Result<HashMap<String, f64>, TrainError> {
        let rows: Vec<FaceRow> = manifest::read_rows(faces)?;
        let base = paths::folder_of(faces);
        let samples =
            Arc::new(rows.iter().map(|r| Sample { path: base.join(&r.path), label: 0, video_id: r.video_id.clone(), track: r.track, cached: None }).collect::<Vec<_>>());
        let p = self.probabilities(&samples)?;
        Ok(rows.iter().zip(p).filter_map(|(r, p)| Some((r.path.clone(), p?))).collect())
    }

    /// Probabilities of a batch given as a tensor of inputs (for tracing).
    pub(crate) fn forward(&self, x: &Tensor) -> Tensor {
        self.cls.forward(&self.net.features(x, false)).softmax(-1, tch::Kind::Float).select(1, 1)
    }
}
