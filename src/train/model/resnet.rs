//! ResNet-18/34/50 encoders with torchvision parameter names, built exactly as
//! `tch::vision::resnet::*_no_final_layer` builds them (same variables, created in the same
//! order with the same initialisers), with two differences:
//! the pooled features are flattened with `flatten(1, -1)` rather than a view of the batch
//! size seen at the time (so a traced `model.pt` takes any batch size), and ReLUs after a
//! BatchNorm run in place, as torchvision's do (fewer allocations per step).

use tch::nn::{self, ModuleT};
use tch::Tensor;

fn conv(p: nn::Path, c_in: i64, c_out: i64, k: i64, padding: i64, stride: i64) -> nn::Conv2D {
    nn::conv2d(p, c_in, c_out, k, nn::ConvConfig { stride, padding, bias: false, ..Default::default() })
}

fn bn(p: nn::Path, c: i64) -> nn::BatchNorm {
    nn::batch_norm2d(p, c, Default::default())
}

/// The 1×1 conv + BN of a block whose shape changes (`downsample.0`, `downsample.1`).
fn downsample(p: nn::Path, c_in: i64, c_out: i64, stride: i64) -> Option<(nn::Conv2D, nn::BatchNorm)> {
    (stride != 1 || c_in != c_out).then(|| (conv(&p / "0", c_in, c_out, 1, 0, stride), bn(&p / "1", c_out)))
}

/// conv -> BN (-> in-place ReLU).
fn conv_bn(xs: &Tensor, c: &nn::Conv2D, b: &nn::BatchNorm, train: bool, relu: bool) -> Tensor {
    let mut y = xs.apply(c).apply_t(b, train);
    if relu {
        let _ = y.relu_();
    }
    y
}

#[derive(Debug)]
struct Block {
    convs: Vec<(nn::Conv2D, nn::BatchNorm)>,
    downsample: Option<(nn::Conv2D, nn::BatchNorm)>,
}

impl Block {
    /// Basic block (two 3×3 convs), torchvision's `BasicBlock`.
    fn basic(p: nn::Path, c_in: i64, c_out: i64, stride: i64) -> Block {
        let convs = vec![
            (conv(&p / "conv1", c_in, c_out, 3, 1, stride), bn(&p / "bn1", c_out)),
            (conv(&p / "conv2", c_out, c_out, 3, 1, 1), bn(&p / "bn2", c_out)),
        ];
        Block { convs, downsample: downsample(&p / "downsample", c_in, c_out, stride) }
    }

    /// Bottleneck (1×1, 3×3 with the stride, 1×1 ×4), torchvision's `Bottleneck` (v1.5).
    fn bottleneck(p: nn::Path, c_in: i64, c_mid: i64, stride: i64) -> Block {
        let c_out = 4 * c_mid;
        let convs = vec![
            (conv(&p / "conv1", c_in, c_mid, 1, 0, 1), bn(&p / "bn1", c_mid)),
            (conv(&p / "conv2", c_mid, c_mid, 3, 1, stride), bn(&p / "bn2", c_mid)),
            (conv(&p / "conv3", c_mid, c_out, 1, 0, 1), bn(&p / "bn3", c_out)),
        ];
        Block { convs, downsample: downsample(&p / "downsample", c_in, c_out, stride) }
    }
}

impl ModuleT for Block {
    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        let last = self.convs.len() - 1;
        let mut y = xs.shallow_clone();
        for (i, (c, b)) in self.convs.iter().enumerate() {
            y = conv_bn(&y, c, b, train, i < last);
        }
        let shortcut = match &self.downsample {
            Some((c, b)) => conv_bn(xs, c, b, train, false),
            None => xs.shallow_clone(),
        };
        // In place, as torchvision's `out += identity`: one allocation less per block.
        let _ = y.g_add_(&shortcut);
        let _ = y.relu_();
        y
    }
}

/// A ResNet encoder: images [B,3,H,W] -> pooled features [B, 512 or 2048].
#[derive(Debug)]
pub struct ResNet {
    conv1: nn::Conv2D,
    bn1: nn::BatchNorm,
    blocks: Vec<Block>,
}

impl ResNet {
    /// `depths`: blocks per stage; `bottleneck`: ResNet-50-style blocks.
    pub fn new(p: &nn::Path, depths: [i64; 4], bottleneck: bool) -> ResNet {
        let conv1 = conv(p / "conv1", 3, 64, 7, 3, 2);
        let bn1 = bn(p / "bn1", 64);
        let mut blocks = Vec::new();
        let mut c_in = 64;
        for (stage, (&n, width)) in depths.iter().zip([64, 128, 256, 512]).enumerate() {
            let layer = p / format!("layer{}", stage + 1);
            for b in 0..n {
                let stride = if b == 0 && stage > 0 { 2 } else { 1 };
                let path = &layer / b.to_string();
                if bottleneck {
                    blocks.push(Block::bottleneck(path, c_in, width, stride));
                    c_in = 4 * width;
                } else {
                    blocks.push(Block::basic(path, c_in, width, stride));
                    c_in = width;
                }
            }
        }
        ResNet { conv1, bn1, blocks }
    }
}

impl ModuleT for ResNet {
    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        let mut y = conv_bn(xs, &self.conv1, &self.bn1, train, true).max_pool2d([3, 3], [2, 2], [1, 1], [1, 1], false);
        for b in &self.blocks {
            y = b.forward_t(&y, train);
        }
        y.adaptive_avg_pool2d([1, 1]).flatten(1, -1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{Device, Kind};

    /// The same variables (names, shapes) as tch's ResNets, and with tch's weights copied in,
    /// the same outputs in training and eval mode, for any batch size. (Weights are not
    /// compared from a shared seed: tests in other threads draw from the same global RNG.)
    #[test]
    fn equals_tch_resnets_name_for_name_and_output_for_output() {
        type Theirs = fn(&nn::Path) -> nn::FuncT<'static>;
        let cases: [([i64; 4], bool, Theirs); 2] = [
            ([2, 2, 2, 2], false, tch::vision::resnet::resnet18_no_final_layer),
            ([3, 4, 6, 3], false, tch::vision::resnet::resnet34_no_final_layer),
        ];
        let check = |a: &dyn ModuleT, vs_a: &mut nn::VarStore, b: &dyn ModuleT, vs_b: &nn::VarStore| {
            let shapes = |vs: &nn::VarStore| {
                vs.variables().into_iter().map(|(n, t)| (n, t.size())).collect::<std::collections::BTreeMap<_, _>>()
            };
            assert_eq!(shapes(vs_a), shapes(vs_b));
            vs_a.copy(vs_b).unwrap();
            for (batch, train) in [(3, false), (3, true), (1, false)] {
                let x = Tensor::randn([batch, 3, 64, 64], (Kind::Float, Device::Cpu));
                let (ya, yb) = (a.forward_t(&x, train), b.forward_t(&x, train));
                assert_eq!(ya.size(), yb.size());
                assert!((ya - yb).abs().max().double_value(&[]) < 1e-5, "batch {batch}, train {train}");
            }
        };
        for (depths, bottleneck, theirs) in cases {
            let (mut vs_a, vs_b) = (nn::VarStore::new(Device::Cpu), nn::VarStore::new(Device::Cpu));
            let a = ResNet::new(&vs_a.root(), depths, bottleneck);
            let b = theirs(&vs_b.root());
            check(&a, &mut vs_a, &b, &vs_b);
        }
        let (mut vs_a, vs_b) = (nn::VarStore::new(Device::Cpu), nn::VarStore::new(Device::Cpu));
        let a = ResNet::new(&vs_a.root(), [3, 4, 6, 3], true);
        let b = tch::vision::resnet::resnet50_no_final_layer(&vs_b.root());
        check(&a, &mut vs_a, &b, &vs_b);
    }
}
