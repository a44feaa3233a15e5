//! `scmpl import`: weights trained elsewhere as a run folder that `eval`, `predict`, `export`
//! and `train mpl` (as its teacher) take: the authors' released SupCon-MPL models after
//! `scripts/convert-authors`, or any encoder + head and classifier with scmpl's (their)
//! parameter names (`encoder.*`, `head.0.*`, `head.2.*`; `fc.*`).
//!
//! The weights are loaded into the recipe's architecture first: a file made for another one is
//! refused with the names that differ. The run's checkpoint is marked at the teacher's last
//! step, so it counts as a finished teacher.

use std::path::{Path, PathBuf};

use tch::nn;

use super::checkpoint;
use super::model::{Classifier, SupConNet};
use super::recipe::TrainSettings;
use super::run::RunDir;
use super::TrainError;

/// Which model of a run the imported weights become.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Role {
    /// The teacher (`train mpl --teacher RUN` can start from it).
    Teacher,
    /// The student (what `eval` and `predict` prefer when a run has both).
    Student,
}

/// Makes the run folder `run.out` of `settings` from `encoder` (encoder + head) and
/// `classifier` safetensors; returns the checkpoint folder.
pub fn import(settings: &TrainSettings, encoder: &Path, classifier: &Path, role: Role) -> Result<PathBuf, TrainError> {
    let dir = RunDir::open(settings, false)?;
    let (mut vs_net, mut vs_cls) = (nn::VarStore::new(tch::Device::Cpu), nn::VarStore::new(tch::Device::Cpu));
    let _net = SupConNet::new(&vs_net.root(), settings.backbone, settings.recipe.model.feat_dim);
    let _cls = Classifier::new(&vs_cls.root(), settings.backbone.feature_dim(), 2);
    checkpoint::load_vars(&mut vs_net, encoder)?;
    checkpoint::load_vars(&mut vs_cls, classifier)?;
    let (net_file, cls_file) = match role {
        Role::Teacher => ("teacher.safetensors", "teacher_classifier.safetensors"),
        Role::Student => ("student.safetensors", "student_classifier.safetensors"),
    };
    let t = &settings.recipe.teacher;
    let saved = dir.save(t.supcon_steps + t.linear_steps, |d| {
        checkpoint::save_weights(&vs_net, &d.join(net_file))?;
        checkpoint::save_weights(&vs_cls, &d.join(cls_file))
    })?;
    Ok(PathBuf::from(saved))
}
