//! Models: a backbone encoder (torchvision ResNets and EfficientNet-B0, torchvision parameter
//! names), the SupCon
//! projection head, and the linear classifier.
//!
//! Parameter names read like the reference's PyTorch modules: `encoder.conv1.weight`,
//! `encoder.layer1.0.bn1.running_mean`, `head.0.weight`, `head.2.weight`, `fc.weight`.

pub mod efficientnet;
pub mod resnet;

use std::path::Path;
use std::str::FromStr;

use tch::nn::{self, Module, ModuleT};
use tch::{TchError, Tensor};

use crate::config::ParseError;

/// The backbones scmpl can build.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Backbone {
    Resnet18,
    Resnet34,
    Resnet50,
    #[serde(rename = "efficientnet_b0")]
    #[value(name = "efficientnet_b0")]
    EfficientnetB0,
}

impl FromStr for Backbone {
    type Err = ParseError;
    fn from_str(s: &str) -> Result<Self, ParseError> {
        match s {
            "resnet18" => Ok(Backbone::Resnet18),
            "resnet34" => Ok(Backbone::Resnet34),
            "resnet50" => Ok(Backbone::Resnet50),
            "efficientnet_b0" => Ok(Backbone::EfficientnetB0),
            _ => Err(ParseError(format!("unknown backbone '{s}': expected resnet18, resnet34, resnet50 or efficientnet_b0"))),
        }
    }
}

impl Backbone {
    /// The name in recipes and flags.
    pub fn as_str(&self) -> &'static str {
        match self {
            Backbone::Resnet18 => "resnet18",
            Backbone::Resnet34 => "resnet34",
            Backbone::Resnet50 => "resnet50",
            Backbone::EfficientnetB0 => "efficientnet_b0",
        }
    }

    /// Width of the pooled features.
    pub fn feature_dim(&self) -> i64 {
        match self {
            Backbone::Resnet18 | Backbone::Resnet34 => 512,
            Backbone::Resnet50 => 2048,
            Backbone::EfficientnetB0 => efficientnet::FEATURES,
        }
    }

    /// The encoder (everything up to and including global pooling) under `p`.
    pub fn build(&self, p: &nn::Path) -> Box<dyn ModuleT> {
        match self {
            Backbone::Resnet18 => Box::new(resnet::ResNet::new(p, [2, 2, 2, 2], false)),
            Backbone::Resnet34 => Box::new(resnet::ResNet::new(p, [3, 4, 6, 3], false)),
            Backbone::Resnet50 => Box::new(resnet::ResNet::new(p, [3, 4, 6, 3], true)),
            Backbone::EfficientnetB0 => Box::new(efficientnet::EfficientNetB0::new(p)),
        }
    }
}

/// A linear layer initialised like PyTorch's `nn.Linear` (weights and bias uniform in
/// ±1/sqrt(fan_in)); tch's default weight init differs.
pub fn torch_linear(p: nn::Path, in_dim: i64, out_dim: i64) -> nn::Linear {
    let bound = 1.0 / (in_dim as f64).sqrt();
    let init = nn::Init::Uniform { lo: -bound, up: bound };
    nn::linear(p, in_dim, out_dim, nn::LinearConfig { ws_init: init, bs_init: Some(init), bias: true })
}

/// Encoder + SupCon head: Linear(F,F)-ReLU-Linear(F,dim), output L2-normalised.
pub struct SupConNet {
    pub encoder: Box<dyn ModuleT>,
    head0: nn::Linear,
    head2: nn::Linear,
    pub backbone: Backbone,
}

impl SupConNet {
    pub fn new(root: &nn::Path, backbone: Backbone, feat_dim: i64) -> Self {
        let f = backbone.feature_dim();
        SupConNet {
            encoder: backbone.build(&(root / "encoder")),
            head0: torch_linear(root / "head" / "0", f, f),
            head2: torch_linear(root / "head" / "2", f, feat_dim),
            backbone,
        }
    }

    /// Pooled encoder features [B, F], fp32 (under the run's autocast, `train::accel`, the
    /// encoder itself runs in bf16).
    pub fn features(&self, x: &Tensor, train: bool) -> Tensor {
        crate::train::accel::autocast(x.device(), || self.encoder.forward_t(x, train)).to_kind(tch::Kind::Float)
    }

    /// Unit-norm projections [B, dim].
    pub fn project(&self, features: &Tensor) -> Tensor {
        let z = self.head2.forward(&self.head0.forward(features).relu());
        let norm = z.norm_scalaropt_dim(2.0, [1], true).clamp_min(1e-12);
        z / norm
    }
}

/// The linear classifier on encoder features: Linear(F, 2), named `fc`.
pub struct Classifier {
    fc: nn::Linear,
}

impl Classifier {
    pub fn new(root: &nn::Path, in_dim: i64, classes: i64) -> Self {
        Classifier { fc: torch_linear(root / "fc", in_dim, classes) }
    }
    pub fn forward(&self, features: &Tensor) -> Tensor {
        self.fc.forward(features)
    }
}

/// Loads torchvision-named encoder weights (`conv1.weight`, `layer1.0.bn1.weight`, ...; an
/// `fc.*` is ignored) from a safetensors file into the `encoder.*` variables of `vs`.
/// Every encoder variable must be present with the right shape.
pub fn load_torchvision_init(vs: &mut nn::VarStore, path: &Path) -> Result<usize, TchError> {
    let tensors = Tensor::read_safetensors(path)?;
    let by_name: std::collections::HashMap<String, Tensor> = tensors.into_iter().collect();
    let mut loaded = 0;
    let mut missing = Vec::new();
    let vars = vs.variables();
    tch::no_grad(|| -> Result<(), TchError> {
        for (name, var) in &vars {
            let Some(tv) = name.strip_prefix("encoder.") else { continue };
            match by_name.get(tv) {
                Some(t) if t.size() == var.size() => {
                    let mut v = var.shallow_clone();
                    v.f_copy_(&t.to_kind(var.kind()))?;
                    loaded += 1;
                }
                Some(t) => missing.push(format!("{tv} (shape {:?}, expected {:?})", t.size(), var.size())),
                None => missing.push(tv.to_string()),
            }
        }
        Ok(())
    })?;
    if !missing.is_empty() {
        missing.sort();
        return Err(TchError::FileFormat(format!(
            "{}: not a torchvision checkpoint of this backbone; missing or mismatched: {}",
            path.display(),
            missing.join(", ")
        )));
    }
    Ok(loaded)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{Device, Kind};

    #[test]
    fn names_follow_torchvision_and_the_reference() {
        let vs = nn::VarStore::new(Device::Cpu);
        let net = SupConNet::new(&vs.root(), Backbone::Resnet18, 128);
        let names = vs.variables();
        for n in ["encoder.conv1.weight", "encoder.layer4.1.bn2.running_var", "head.0.weight", "head.2.bias"] {
            assert!(names.contains_key(n), "{n}");
        }
        assert_eq!(names["head.2.weight"].size(), [128, 512]);
        let x = Tensor::randn([2, 3, 64, 64], (Kind::Float, Device::Cpu));
        let z = net.project(&net.features(&x, false));
        assert_eq!(z.size(), [2, 128]);
        let norms = z.norm_scalaropt_dim(2.0, [1], false);
        assert!((norms - 1.0).abs().max().double_value(&[]) < 1e-5);
    }

    #[test]
    fn efficientnet_b0_has_torchvision_names_and_shapes() {
        // `torchvision.models.efficientnet_b0().state_dict()` without the classifier and
        // BatchNorm's num_batches_tracked (written by the reference venv).
        let golden: Vec<(String, Vec<i64>)> = include_str!("../../../tests/golden/efficientnet_b0_names.txt")
            .lines()
            .filter(|l| !l.contains("num_batches_tracked"))
            .map(|l| {
                let (name, shape) = l.split_once(' ').unwrap();
                (format!("encoder.{name}"), shape.split('x').map(|d| d.parse().unwrap()).collect())
            })
            .collect();
        let vs = nn::VarStore::new(Device::Cpu);
        let net = SupConNet::new(&vs.root(), Backbone::EfficientnetB0, 128);
        let vars = vs.variables();
        let ours: std::collections::BTreeMap<String, Vec<i64>> =
            vars.iter().filter(|(n, _)| n.starts_with("encoder.")).map(|(n, t)| (n.clone(), t.size())).collect();
        assert_eq!(ours, golden.into_iter().collect(), "encoder variables vs torchvision");
        let x = Tensor::randn([2, 3, 64, 64], (Kind::Float, Device::Cpu));
        let f = net.features(&x, true);
        assert_eq!(f.size(), [2, 1280]);
        assert_eq!(net.project(&f).size(), [2, 128]);
    }

    #[test]
    fn linear_init_is_pytorch_uniform() {
        tch::manual_seed(1);
        let vs = nn::VarStore::new(Device::Cpu);
        let _ = torch_linear(vs.root() / "l", 400, 300);
        let w = &vs.variables()["l.weight"];
        let bound = 1.0 / 20.0;
        // f32 weights: allow the rounding of the bound itself.
        assert!(w.abs().max().double_value(&[]) <= bound * (1.0 + 1e-6));
        // Uniform in ±b has standard deviation b/sqrt(3).
        let std = w.std(true).double_value(&[]);
        assert!((std - bound / 3f64.sqrt()).abs() < 0.002, "{std}");
    }

    #[test]
    fn a_checkpoint_of_another_backbone_is_refused_with_the_names() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("r34.safetensors");
        let vs34 = nn::VarStore::new(Device::Cpu);
        let _ = Backbone::Resnet34.build(&vs34.root());
        vs34.save(&p).unwrap();
        let mut vs = nn::VarStore::new(Device::Cpu);
        let _ = SupConNet::new(&vs.root(), Backbone::Resnet50, 128);
        let err = load_torchvision_init(&mut vs, &p).unwrap_err().to_string();
        assert!(err.contains("layer1.0.conv3.weight") || err.contains("shape"), "{err}");
        // The right backbone loads.
        let mut vs18 = nn::VarStore::new(Device::Cpu);
        let _ = SupConNet::new(&vs18.root(), Backbone::Resnet34, 128);
        assert!(load_torchvision_init(&mut vs18, &p).unwrap() > 100);
    }
}
