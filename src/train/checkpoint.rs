//! Checkpoints: `RUN/checkpoints/step-NNNNNNN/` holding safetensors weights, optimizer
//! moments and `state.json` (step, recipe fingerprint), and `RUN/latest` naming the newest.
//! A checkpoint folder is written under a temporary name and renamed when complete, and
//! `latest` is replaced atomically, so a crash never leaves a half checkpoint in use.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use tch::{nn, TchError, Tensor};

use super::TrainError;

/// A checkpoint found on disk.
#[derive(Debug, Clone)]
pub struct Checkpoint {
    pub dir: PathBuf,
    /// Last completed step.
    pub step: usize,
    pub recipe_fingerprint: String,
}

/// Saves every variable of `vs` to `path` as safetensors, atomically.
pub fn save_weights(vs: &nn::VarStore, path: &Path) -> Result<(), TchError> {
    // tch picks the format from the extension, so the temporary name must end in .safetensors.
    let tmp = path.with_extension("tmp.safetensors");
    vs.save(&tmp)?;
    std::fs::rename(&tmp, path).map_err(|e| TchError::FileFormat(format!("{}: {e}", path.display())))
}

/// Loads `path` into `vs`, refusing (with the names) a file whose variables differ.
pub fn load_vars(vs: &mut nn::VarStore, path: &Path) -> Result<(), TrainError> {
    let saved: BTreeMap<String, Tensor> = Tensor::read_safetensors(path)?.into_iter().collect();
    let vars = vs.variables();
    let mut diffs = Vec::new();
    // In name order, so the message (cut to 12 differences) is the same on every run.
    let ordered: BTreeMap<&String, &Tensor> = vars.iter().collect();
    for (name, var) in ordered {
        match saved.get(name.as_str()) {
            None => diffs.push(format!("missing {name}")),
            Some(t) if t.size() != var.size() => diffs.push(format!("{name}: shape {:?}, expected {:?}", t.size(), var.size())),
            Some(_) => {}
        }
    }
    for name in saved.keys().filter(|n| !vars.contains_key(*n)) {
        diffs.push(format!("unexpected {name}"));
    }
    if !diffs.is_empty() {
        diffs.truncate(12);
        return Err(TrainError::OtherArchitecture { path: path.to_path_buf(), diffs: diffs.join("; ") });
    }
    tch::no_grad(|| -> Result<(), TchError> {
        for (name, var) in &vars {
            let mut v = var.shallow_clone();
            v.f_copy_(&saved[name])?;
        }
        Ok(())
    })?;
    Ok(())
}

/// Writes a checkpoint for `ck.step` with `fill` saving the files into the folder.
pub fn write(
    run: &Path,
    ck: &Checkpoint,
    fill: impl FnOnce(&Path) -> Result<(), TchError>,
) -> Result<PathBuf, TrainError> {
    let io = |p: &Path| {
        let p = p.to_path_buf();
        move |source| TrainError::Io { path: p.clone(), source }
    };
    let root = run.join("checkpoints");
    let name = format!("step-{:07}", ck.step);
    let tmp = root.join(format!("{name}.tmp"));
    let dir = root.join(&name);
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp).map_err(io(&tmp))?;
    fill(&tmp)?;
    let state = serde_json::json!({ "step": ck.step, "recipe_fingerprint": ck.recipe_fingerprint });
    std::fs::write(tmp.join("state.json"), serde_json::to_string_pretty(&state).expect("json")).map_err(io(&tmp))?;
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::rename(&tmp, &dir).map_err(io(&dir))?;
    let latest_tmp = run.join("latest.tmp");
    std::fs::write(&latest_tmp, format!("checkpoints/{name}\n")).map_err(io(&latest_tmp))?;
    std::fs::rename(&latest_tmp, run.join("latest")).map_err(io(run))?;
    // Keep the two newest checkpoints.
    let mut all: Vec<PathBuf> = std::fs::read_dir(&root)
        .map_err(io(&root))?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_none() && p.file_name().is_some_and(|n| n.to_string_lossy().starts_with("step-")))
        .collect();
    all.sort();
    if all.len() > 2 {
        for old in &all[..all.len() - 2] {
            let _ = std::fs::remove_dir_all(old);
        }
    }
    Ok(dir)
}

/// The checkpoint `RUN/latest` names, if any.
pub fn latest(run: &Path) -> Result<Option<Checkpoint>, TrainError> {
    let Ok(text) = std::fs::read_to_string(run.join("latest")) else { return Ok(None) };
    let dir = run.join(text.trim());
    let state_path = dir.join("state.json");
    let state: serde_json::Value = std::fs::read_to_string(&state_path)
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .ok_or_else(|| TrainError::IncompleteCheckpoint { path: state_path.clone(), reason: "missing or unreadable".into() })?;
    let step = state["step"].as_u64().ok_or_else(|| TrainError::IncompleteCheckpoint { path: state_path.clone(), reason: "no step".into() })?;
    Ok(Some(Checkpoint {
        dir,
        step: step as usize,
        recipe_fingerprint: state["recipe_fingerprint"].as_str().unwrap_or_default().to_string(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::nn::{ModuleT, OptimizerConfig};
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
        load_vars(&mut vs2, &path).unwrap();
        let a = vs.variables();
        let b = vs2.variables();
        assert_eq!(a.len(), b.len());
        for (name, t) in &a {
            assert!(t.equal(&b[name]), "{name} differs after the round trip");
        }
        assert!(a.contains_key("layer1.0.conv1.weight"), "torchvision names");

        // Another architecture is refused, naming what differs.
        let mut vs34 = nn::VarStore::new(Device::Cpu);
        let _ = tch::vision::resnet::resnet34(&vs34.root(), 2);
        let err = load_vars(&mut vs34, &path).unwrap_err().to_string();
        assert!(err.contains("another architecture") && err.contains("layer"), "{err}");
    }

    #[test]
    fn latest_points_at_the_newest_complete_checkpoint() {
        let dir = tempfile::tempdir().unwrap();
        assert!(latest(dir.path()).unwrap().is_none());
        for step in [10, 20, 30] {
            let ck = Checkpoint { dir: PathBuf::new(), step, recipe_fingerprint: "r".into() };
            write(dir.path(), &ck, |_| Ok(())).unwrap();
        }
        let l = latest(dir.path()).unwrap().unwrap();
        assert_eq!(l.step, 30);
        assert!(!dir.path().join("checkpoints/step-0000010").exists(), "only the two newest are kept");
        // A failed write leaves the previous checkpoint in use.
        let ck = Checkpoint { dir: PathBuf::new(), step: 40, recipe_fingerprint: "r".into() };
        assert!(write(dir.path(), &ck, |_| Err(TchError::FileFormat("disk full".into()))).is_err());
        assert_eq!(latest(dir.path()).unwrap().unwrap().step, 30);
    }
}
