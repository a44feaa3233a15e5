//! `scmpl eval`: a trained run's classifier on a manifest, frame level and video level, per
//! domain, with metrics from scores (see [`crate::metrics`]); `--protocol paper` adds the
//! reference's numbers (mean accuracy of 100 shuffled batches of 512, "AUC" from hard labels)
//! so results compare with the paper's tables.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tch::nn;

use super::checkpoint;
use super::config::Recipe;
use super::data::{Loader, LoaderSpec, Plan, Sample};
use super::model::{Backbone, Classifier, SupConNet};
use super::teacher::{to_input, torch_device, TrainError};
use crate::manifest::{self, FaceRow};
use crate::metrics::{self, Metrics};

/// A trained encoder + classifier loaded from a run folder.
pub struct Detector {
    pub recipe: Recipe,
    pub net: SupConNet,
    pub cls: Classifier,
    pub device: tch::Device,
    pub which: &'static str,
    _vs: (nn::VarStore, nn::VarStore),
}

/// Loads the latest checkpoint of `run` (the student when there is one, else the teacher).
pub fn load(run: &Path, device: &str) -> Result<Detector, TrainError> {
    let recipe_path = run.join("recipe.toml");
    if !recipe_path.is_file() {
        return Err(TrainError::Checkpoint(format!("{}: no recipe.toml; not a training run folder", run.display())));
    }
    let mut recipe = Recipe::load(Some(&recipe_path))?;
    recipe.run.device = device.to_string();
    let device = torch_device(recipe.run.device.parse()?)?;
    let ck = checkpoint::latest(run)?
        .ok_or_else(|| TrainError::Checkpoint(format!("{}: no checkpoint (latest missing): the run is incomplete", run.display())))?;
    let (net_file, cls_file, which) = if ck.dir.join("student.safetensors").is_file() {
        ("student.safetensors", "student_classifier.safetensors", "student")
    } else {
        ("teacher.safetensors", "teacher_classifier.safetensors", "teacher")
    };
    for f in [net_file, cls_file] {
        if !ck.dir.join(f).is_file() {
            return Err(TrainError::Checkpoint(format!("{}: {f} is missing: the checkpoint is incomplete", ck.dir.display())));
        }
    }
    let backbone: Backbone = recipe.model.backbone.parse().map_err(TrainError::Checkpoint)?;
    let mut vs_net = nn::VarStore::new(device);
    let mut vs_cls = nn::VarStore::new(device);
    let net = SupConNet::new(&vs_net.root(), backbone, recipe.model.feat_dim);
    let cls = Classifier::new(&vs_cls.root(), backbone.feature_dim(), 2);
    checkpoint::load_vars(&mut vs_net, &ck.dir.join(net_file))?;
    checkpoint::load_vars(&mut vs_cls, &ck.dir.join(cls_file))?;
    Ok(Detector { recipe, net, cls, device, which, _vs: (vs_net, vs_cls) })
}

impl Detector {
    /// Fake probability of each sample (None where the image is unreadable).
    pub fn probabilities(&self, samples: &Arc<Vec<Sample>>) -> Result<Vec<Option<f64>>, TrainError> {
        let preset = self.recipe.preset()?;
        let plan = Plan { seed: 0, batch: 256, samples: samples.len(), shuffle: false };
        let spec = LoaderSpec { plan, views: 1, augment: false, size: self.recipe.data.image_size, workers: self.recipe.data.workers, prefetch: 2 };
        let mut out = vec![None; samples.len()];
        for b in Loader::new(samples.clone(), spec, 0, plan.steps_per_epoch()) {
            if b.n == 0 {
                continue;
            }
            let x = to_input(&b, self.device, preset);
            let p = tch::no_grad(|| self.cls.forward(&self.net.features(&x, false)).softmax(-1, tch::Kind::Double));
            let p: Vec<f64> = Vec::<f64>::try_from(p.select(1, 1).to_device(tch::Device::Cpu))?;
            for (i, v) in b.indices.iter().zip(p) {
                out[*i] = Some(v);
            }
        }
        Ok(out)
    }
}

/// Metrics of one domain.
#[derive(Debug, serde::Serialize)]
pub struct DomainReport {
    pub domain: String,
    pub frame: Metrics,
    pub video_mean: Metrics,
    pub video_max: Metrics,
    /// The reference's scoring, with --protocol paper.
    pub paper_accuracy: Option<f64>,
    pub paper_hard_auc: Option<f64>,
    /// Frame-level ROC points (fpr, tpr), for the picture.
    #[serde(skip)]
    pub roc: Vec<(f64, f64)>,
}

/// The reference's accuracy: the mean over 100 batches of 512 rows drawn at random.
fn paper_accuracy(labels: &[u8], probs: &[f64], seed: u64) -> f64 {
    let mut acc = 0.0;
    for b in 0..100u64 {
        let mut right = 0;
        let n = 512.min(labels.len());
        for k in 0..n {
            let i = (crate::scan::stable_hash(&format!("{seed}:{b}:{k}")) % labels.len() as u64) as usize;
            if (probs[i] >= 0.5) == (labels[i] == 1) {
                right += 1;
            }
        }
        acc += right as f64 / n as f64;
    }
    acc / 100.0
}

/// Evaluates `run` on the labelled rows of `manifest`, grouped by `by` (dataset, part, split or
/// none). Writes `out/metrics.csv` and `out/metrics.json`; returns the reports.
pub fn run(run: &Path, manifest_path: &Path, by: Option<&str>, paper: bool, device: &str, out: &Path) -> Result<Vec<DomainReport>, TrainError> {
    let det = load(run, device)?;
    let rows: Vec<FaceRow> = manifest::read_rows(manifest_path).map_err(|e| TrainError::Checkpoint(e.to_string()))?;
    let base = manifest_path.parent().unwrap_or(Path::new("."));
    let rows: Vec<FaceRow> = rows.into_iter().filter(|r| r.label.is_some()).collect();
    if rows.is_empty() {
        return Err(TrainError::Checkpoint(format!("{}: no labelled rows to evaluate", manifest_path.display())));
    }
    let samples: Arc<Vec<Sample>> = Arc::new(
        rows.iter().map(|r| Sample { path: base.join(&r.path), label: r.label.unwrap_or(0) as i64, video_id: r.video_id.clone() }).collect(),
    );
    let probs = det.probabilities(&samples)?;
    let domain_of = |r: &FaceRow| -> String {
        match by {
            Some("dataset") => r.dataset.clone(),
            Some("part") => format!("{}/{}", r.dataset, r.part),
            Some("split") | Some("domain") => r.split.clone(),
            _ => "all".into(),
        }
    };
    let mut groups: BTreeMap<String, Vec<(usize, f64)>> = BTreeMap::new();
    let mut unreadable = 0;
    for (i, r) in rows.iter().enumerate() {
        match probs[i] {
            Some(p) => groups.entry(domain_of(r)).or_default().push((i, p)),
            None => unreadable += 1,
        }
    }
    if unreadable > 0 {
        tracing::warn!("{unreadable} images could not be read and were left out");
    }
    let mut reports = Vec::new();
    for (domain, items) in groups {
        let labels: Vec<u8> = items.iter().map(|(i, _)| rows[*i].label.unwrap_or(0)).collect();
        let ps: Vec<f64> = items.iter().map(|(_, p)| *p).collect();
        let mut videos: BTreeMap<&str, (u8, Vec<f64>)> = BTreeMap::new();
        for (i, p) in &items {
            videos.entry(rows[*i].video_id.as_str()).or_insert((rows[*i].label.unwrap_or(0), Vec::new())).1.push(*p);
        }
        let vl: Vec<u8> = videos.values().map(|v| v.0).collect();
        let vmean: Vec<f64> = videos.values().map(|v| v.1.iter().sum::<f64>() / v.1.len() as f64).collect();
        let vmax: Vec<f64> = videos.values().map(|v| v.1.iter().cloned().fold(0.0, f64::max)).collect();
        let hard: Vec<f64> = ps.iter().map(|p| if *p >= 0.5 { 1.0 } else { 0.0 }).collect();
        reports.push(DomainReport {
            domain,
            frame: metrics::compute(&labels, &ps),
            video_mean: metrics::compute(&vl, &vmean),
            video_max: metrics::compute(&vl, &vmax),
            paper_accuracy: paper.then(|| paper_accuracy(&labels, &ps, 777)),
            paper_hard_auc: if paper { metrics::auc(&labels, &hard) } else { None },
            roc: metrics::roc(&labels, &ps),
        });
    }
    std::fs::create_dir_all(out).map_err(|e| TrainError::Io { path: out.into(), source: e })?;
    let json = serde_json::json!({ "run": run, "model": det.which, "manifest": manifest_path, "domains": reports });
    let jp: PathBuf = out.join("metrics.json");
    std::fs::write(&jp, serde_json::to_string_pretty(&json).expect("json")).map_err(|e| TrainError::Io { path: jp, source: e })?;
    let mut csv = String::from("domain,level,n,real,fake,accuracy,auc,eer,ap,log_loss\n");
    let f = |v: Option<f64>| v.map(|x| format!("{x:.6}")).unwrap_or_else(|| "undefined".into());
    for r in &reports {
        for (level, m) in [("frame", &r.frame), ("video_mean", &r.video_mean), ("video_max", &r.video_max)] {
            csv.push_str(&format!(
                "{},{level},{},{},{},{:.6},{},{},{},{:.6}\n",
                r.domain, m.n, m.real, m.fake, m.accuracy, f(m.auc), f(m.eer), f(m.ap), m.log_loss
            ));
        }
    }
    let cp = out.join("metrics.csv");
    std::fs::write(&cp, csv).map_err(|e| TrainError::Io { path: cp, source: e })?;
    Ok(reports)
}

/// Exports a run's model: `encoder.safetensors` (torchvision names: load into a torchvision
/// ResNet with `strict=False`, only `fc` missing), `head.safetensors`, `classifier.safetensors`
/// (`fc.weight`, `fc.bias`), and `model.pt`, a traced TorchScript module mapping images
/// [B,3,S,S] (already scaled as the run's preset says; any B) to their fake probabilities [B].
pub fn export(run: &Path, out: &Path) -> Result<Vec<PathBuf>, TrainError> {
    let mut det = load(run, "cpu")?;
    // Tracing records weights as constants, which must not require gradients.
    det._vs.0.freeze();
    det._vs.1.freeze();
    std::fs::create_dir_all(out).map_err(|e| TrainError::Io { path: out.into(), source: e })?;
    let mut written = Vec::new();
    let groups: [(&str, &nn::VarStore, &str); 3] =
        [("encoder.safetensors", &det._vs.0, "encoder."), ("head.safetensors", &det._vs.0, "head."), ("classifier.safetensors", &det._vs.1, "")];
    for (file, vs, prefix) in groups {
        let named: Vec<(String, tch::Tensor)> = vs
            .variables()
            .into_iter()
            .filter_map(|(k, v)| {
                let name = if prefix.is_empty() { Some(k.as_str()) } else { k.strip_prefix(prefix) };
                let name = if prefix == "head." { name.map(|n| format!("head.{n}")) } else { name.map(str::to_string) };
                name.map(|n| (n, v.detach().contiguous()))
            })
            .collect();
        let path = out.join(file);
        tch::Tensor::write_safetensors(&named, &path)?;
        written.push(path);
    }
    let s = det.recipe.data.image_size as i64;
    let example = tch::Tensor::zeros([2, 3, s, s], (tch::Kind::Float, tch::Device::Cpu));
    let module = tch::CModule::create_by_tracing("scmpl_detector", "forward", &[example], &mut |xs: &[tch::Tensor]| {
        let p = det.cls.forward(&det.net.features(&xs[0], false)).softmax(-1, tch::Kind::Float).select(1, 1);
        vec![p]
    })?;
    let path = out.join("model.pt");
    module.save(&path)?;
    written.push(path);
    Ok(written)
}
