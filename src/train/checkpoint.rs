//! Checkpoint files: safetensors weights, written atomically (temp file + rename).

use std::path::Path;

/// Saves every variable of `vs` to `path` as safetensors, atomically.
pub fn save_weights(vs: &tch::nn::VarStore, path: &Path) -> Result<(), tch::TchError> {
    // tch picks the format from the extension, so the temporary name must end in .safetensors.
    let tmp = path.with_extension("tmp.safetensors");
    vs.save(&tmp)?;
    std::fs::rename(&tmp, path).map_err(|e| tch::TchError::FileFormat(format!("{}: {e}", path.display())))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::nn::{self, ModuleT, OptimizerConfig};
    use tch::{Device, Kind, Tensor};

    /// The libtorch smoke test: a ResNet forward, backward and Adam step on CPU, then a
    /// safetensors round trip that gives back the same weights.
    #[test]
    fn resnet_trains_one_step_and_round_trips_through_safetensors() {
        tch::manual_seed(777);
        let vs = nn::VarStore::new(Device::Cpu);
        let net = tch::vision::resnet::resnet18(&vs.root(), 2);
        let mut opt = nn::Adam::default().build(&vs, 1e-3).unwrap();
        let x = Tensor::randn([4, 3, 64, 64], (Kind::Float, Device::Cpu));
        let y = Tensor::from_slice(&[0i64, 1, 0, 1]);
        let before = net.forward_t(&x, true).cross_entropy_for_logits(&y);
        opt.backward_step(&before);
        let after = net.forward_t(&x, true).cross_entropy_for_logits(&y);
        assert!(after.double_value(&[]) < before.double_value(&[]), "one Adam step lowers the loss on its own batch");

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("w.safetensors");
        save_weights(&vs, &path).unwrap();
        let mut vs2 = nn::VarStore::new(Device::Cpu);
        let _net2 = tch::vision::resnet::resnet18(&vs2.root(), 2);
        vs2.load(&path).unwrap();
        let a = vs.variables();
        let b = vs2.variables();
        assert_eq!(a.len(), b.len());
        for (name, t) in &a {
            assert!(t.equal(&b[name]), "{name} differs after the round trip");
        }
        assert!(a.contains_key("layer1.0.conv1.weight"), "torchvision names");
    }
}
