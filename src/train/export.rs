//! `scmpl export`: a trained run in the shapes other tools load: torchvision-named
//! safetensors and a traced TorchScript model.

use std::path::{Path, PathBuf};

use tch::nn;

use super::infer::Classifier;
use super::{io_err, TrainError};

/// Exports a run's model: `encoder.safetensors` (torchvision names: load into a torchvision
/// ResNet with `strict=False`, only `fc` missing), `head.safetensors`, `classifier.safetensors`
/// (`fc.weight`, `fc.bias`), and `model.pt`, a traced TorchScript module mapping images
/// [B,3,S,S] (already scaled as the run's preset says; any B) to their fake probabilities [B].
pub fn export(run: &Path, out: &Path) -> Result<Vec<PathBuf>, TrainError> {
    let mut det = Classifier::load(run, "cpu")?;
    // Tracing records weights as constants, which must not require gradients.
    det.stores.0.freeze();
    det.stores.1.freeze();
    std::fs::create_dir_all(out).map_err(io_err(out))?;
    let mut written = Vec::new();
    let groups: [(&str, &nn::VarStore, &str); 3] =
        [("encoder.safetensors", &det.stores.0, "encoder."), ("head.safetensors", &det.stores.0, "head."), ("classifier.safetensors", &det.stores.1, "")];
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
    let s = det.image_size() as i64;
    let example = tch::Tensor::zeros([2, 3, s, s], (tch::Kind::Float, tch::Device::Cpu));
    let module = tch::CModule::create_by_tracing("scmpl_detector", "forward", &[example], &mut |xs: &[tch::Tensor]| {
        vec![det.forward(&xs[0])]
    })?;
    let path = out.join("model.pt");
    module.save(&path)?;
    written.push(path);
    Ok(written)
}
