//! EfficientNet-B0 as torchvision builds it (`torchvision.models.efficientnet_b0`): the same
//! parameter names (`features.1.0.block.0.0.weight`, ...), symmetric padding, BatchNorm eps
//! 1e-5, SiLU, squeeze-excitation on a quarter of each block's input channels, stochastic depth
//! 0.2·(block / 16) in training, and torchvision's initialisation. The encoder stops after
//! global pooling: features are 1280 wide (the classifier is scmpl's own). tch ships an
//! EfficientNet with TensorFlow's "same" padding and eps 1e-3, which would not reproduce a
//! torchvision checkpoint, hence this file.

use tch::nn::{self, ModuleT};
use tch::Tensor;

/// Width of the pooled features.
pub const FEATURES: i64 = 1280;

/// (expand ratio, kernel, stride, input channels, output channels, blocks) per stage.
const STAGES: [(i64, i64, i64, i64, i64, usize); 7] = [
    (1, 3, 1, 32, 16, 1),
    (6, 3, 2, 16, 24, 2),
    (6, 5, 2, 24, 40, 2),
    (6, 3, 2, 40, 80, 3),
    (6, 5, 1, 80, 112, 3),
    (6, 5, 2, 112, 192, 4),
    (6, 3, 1, 192, 320, 1),
];
const STOCHASTIC_DEPTH: f64 = 0.2;

/// Conv (no bias) + BatchNorm + optional SiLU, named `0` and `1` like torchvision's
/// `Conv2dNormActivation`.
#[derive(Debug)]
struct ConvBn {
    conv: nn::Conv2D,
    bn: nn::BatchNorm,
    silu: bool,
}

/// torchvision's conv init: kaiming normal, fan_out mode (std = sqrt(2 / (out·k·k))).
fn conv(p: nn::Path, i: i64, o: i64, k: i64, stride: i64, groups: i64, bias: bool) -> nn::Conv2D {
    let stdev = (2.0 / (o * k * k) as f64).sqrt();
    let config = nn::ConvConfig {
        stride,
        padding: (k - 1) / 2,
        groups,
        bias,
        ws_init: nn::Init::Randn { mean: 0.0, stdev },
        bs_init: nn::Init::Const(0.0),
        ..Default::default()
    };
    nn::conv2d(p, i, o, k, config)
}

impl ConvBn {
    fn new(p: nn::Path, i: i64, o: i64, k: i64, stride: i64, groups: i64, silu: bool) -> Self {
        let bn = nn::BatchNormConfig { ws_init: nn::Init::Const(1.0), bs_init: nn::Init::Const(0.0), ..Default::default() };
        ConvBn { conv: conv(&p / 0, i, o, k, stride, groups, false), bn: nn::batch_norm2d(&p / 1, o, bn), silu }
    }
}

impl ModuleT for ConvBn {
    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        let y = xs.apply(&self.conv).apply_t(&self.bn, train);
        if self.silu {
            y.silu()
        } else {
            y
        }
    }
}

/// One inverted-residual block (`features.S.B.block.*`).
#[derive(Debug)]
struct MbConv {
    expand: Option<ConvBn>,
    depthwise: ConvBn,
    se_fc1: nn::Conv2D,
    se_fc2: nn::Conv2D,
    project: ConvBn,
    residual: bool,
    drop_prob: f64,
}

impl MbConv {
    fn new(p: nn::Path, expand: i64, k: i64, stride: i64, i: i64, o: i64, drop_prob: f64) -> Self {
        let p = &p / "block";
        let e = i * expand;
        let mut n = 0;
        let expand = (e != i).then(|| {
            n += 1;
            ConvBn::new(&p / 0, i, e, 1, 1, 1, true)
        });
        let depthwise = ConvBn::new(&p / n, e, e, k, stride, e, true);
        let squeeze = (i / 4).max(1);
        let se = &p / (n + 1);
        MbConv {
            expand,
            depthwise,
            se_fc1: conv(&se / "fc1", e, squeeze, 1, 1, 1, true),
            se_fc2: conv(&se / "fc2", squeeze, e, 1, 1, 1, true),
            project: ConvBn::new(&p / (n + 2), e, o, 1, 1, 1, false),
            residual: stride == 1 && i == o,
            drop_prob,
        }
    }
}

impl ModuleT for MbConv {
    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        let y = match &self.expand {
            Some(e) => e.forward_t(xs, train),
            None => xs.shallow_clone(),
        };
        let y = self.depthwise.forward_t(&y, train);
        let scale = y.adaptive_avg_pool2d([1, 1]).apply(&self.se_fc1).silu().apply(&self.se_fc2).sigmoid();
        let y = self.project.forward_t(&(y * scale), train);
        if !self.residual {
            return y;
        }
        // Stochastic depth, "row" mode: drop the whole branch per sample, rescale the survivors.
        let y = if train && self.drop_prob > 0.0 {
            let survival = 1.0 - self.drop_prob;
            let keep = Tensor::empty([y.size()[0], 1, 1, 1], (y.kind(), y.device())).bernoulli_float_(survival) / survival;
            y * keep
        } else {
            y
        };
        y + xs
    }
}

/// The EfficientNet-B0 encoder under `p` (`p / "features"`): images [B,3,H,W] -> [B,1280].
#[derive(Debug)]
pub struct EfficientNetB0 {
    stem: ConvBn,
    blocks: Vec<MbConv>,
    head: ConvBn,
}

impl EfficientNetB0 {
    pub fn new(p: &nn::Path) -> Self {
        let f = p / "features";
        let total: usize = STAGES.iter().map(|s| s.5).sum();
        let mut blocks = Vec::with_capacity(total);
        for (s, &(expand, k, stride, i, o, n)) in STAGES.iter().enumerate() {
            for b in 0..n {
                let (i, stride) = if b == 0 { (i, stride) } else { (o, 1) };
                let drop = STOCHASTIC_DEPTH * blocks.len() as f64 / total as f64;
                blocks.push(MbConv::new(&f / (s + 1) / b, expand, k, stride, i, o, drop));
            }
        }
        EfficientNetB0 {
            stem: ConvBn::new(&f / 0, 3, 32, 3, 2, 1, true),
            blocks,
            head: ConvBn::new(&f / 8, 320, FEATURES, 1, 1, 1, true),
        }
    }
}

impl ModuleT for EfficientNetB0 {
    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        let mut y = self.stem.forward_t(xs, train);
        for b in &self.blocks {
            y = b.forward_t(&y, train);
        }
        self.head.forward_t(&y, train).adaptive_avg_pool2d([1, 1]).flatten(1, -1)
    }
}
