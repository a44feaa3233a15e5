//! Finding what the pipeline loads at run time: the ONNX Runtime library and the detector
//! model files (the compute device is [`crate::device`]).
//!
//! ONNX Runtime is loaded with `dlopen` (ort's `load-dynamic`), and `ort::init()` panics when it
//! cannot find the library, so scmpl looks for it first and answers with a sentence instead.
//! libtorch is linked with an rpath (see build.rs) and needs no search.

use std::path::{Path, PathBuf};

pub use crate::device::{Device, DeviceError};

/// What went wrong while locating run-time pieces.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("ONNX Runtime library not found (looked in: {}); run scripts/setup, or set ORT_DYLIB_PATH to libonnxruntime.so.*", .searched.join(", "))]
    OnnxRuntimeNotFound { searched: Vec<String> },
    #[error("could not load ONNX Runtime from {path}: {reason}; run scripts/setup (rm -rf .venv first if it is broken)")]
    OnnxRuntimeLoad { path: PathBuf, reason: String },
    #[error("model file {path} not found; run scripts/setup (it fetches the detector files into models/)")]
    ModelMissing { path: PathBuf },
    #[error("model file {path} has sha256 {actual}, expected {expected}; delete it and run scripts/setup")]
    ModelChecksum { path: PathBuf, actual: String, expected: String },
    #[error(transparent)]
    Device(#[from] DeviceError),
}

/// The folder scmpl was built from: the default home of `.venv/` and `models/`.
pub fn source_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Places where the ONNX Runtime library may be, in the order they are tried.
fn onnxruntime_candidates() -> Vec<PathBuf> {
    let mut c = Vec::new();
    if let Some(p) = std::env::var_os("ORT_DYLIB_PATH") {
        c.push(PathBuf::from(p));
    }
    if let Ok(cwd) = std::env::current_dir() {
        c.push(cwd.join(".venv/onnxruntime"));
    }
    c.push(source_root().join(".venv/onnxruntime"));
    if let Some(dir) = std::env::current_exe().ok().as_deref().and_then(Path::parent) {
        c.push(dir.to_path_buf());
    }
    c
}

/// Finds `libonnxruntime.so*` in `path` (a file, or a folder holding one; highest version wins).
fn onnxruntime_in(path: &Path) -> Option<PathBuf> {
    if path.is_file() {
        return Some(path.to_path_buf());
    }
    let mut found: Vec<PathBuf> = std::fs::read_dir(path)
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("libonnxruntime.so") && !n.contains("providers"))
        })
        .collect();
    found.sort();
    found.pop()
}

/// Locates the ONNX Runtime shared library: `explicit` (config key or flag), then
/// `ORT_DYLIB_PATH`, then `.venv/onnxruntime` in the current folder and in the source tree,
/// then the binary's folder.
pub fn find_onnxruntime(explicit: Option<&Path>) -> Result<PathBuf, RuntimeError> {
    let mut candidates = Vec::new();
    if let Some(p) = explicit {
        candidates.push(p.to_path_buf());
    }
    candidates.extend(onnxruntime_candidates());
    for c in &candidates {
        if let Some(found) = onnxruntime_in(c) {
            return Ok(found);
        }
    }
    Err(RuntimeError::OnnxRuntimeNotFound {
        searched: candidates.iter().map(|p| p.display().to_string()).collect(),
    })
}

/// Loads ONNX Runtime once per process and returns its environment (sessions are built from
/// it) and the library path; later calls return the same.
#[cfg(feature = "pipeline")]
pub fn init_onnxruntime(explicit: Option<&Path>) -> Result<(ort::environment::Environment, PathBuf), RuntimeError> {
    use std::sync::OnceLock;
    static LOADED: OnceLock<Result<(ort::environment::Environment, PathBuf), (PathBuf, String)>> = OnceLock::new();
    if let Some(loaded) = LOADED.get() {
        return loaded.clone().map_err(|(path, reason)| RuntimeError::OnnxRuntimeLoad { path, reason });
    }
    let path = find_onnxruntime(explicit)?;
    let loaded = LOADED.get_or_init(|| {
        let fail = |e: String| (path.clone(), e);
        let builder = ort::init_from(&path).map_err(|e| fail(e.to_string()))?;
        let env = builder.with_name("scmpl").build().map_err(|e| fail(e.to_string()))?;
        Ok((env, path.clone()))
    });
    loaded.clone().map_err(|(path, reason)| RuntimeError::OnnxRuntimeLoad { path, reason })
}

/// The folder holding the detector files: `SCMPL_MODELS`, else `models/` in the current
/// folder, else `models/` in the source tree.
pub fn models_dir() -> PathBuf {
    if let Some(p) = std::env::var_os("SCMPL_MODELS") {
        return PathBuf::from(p);
    }
    let local = PathBuf::from("models");
    if local.join("SHA256SUMS").is_file() {
        return local;
    }
    source_root().join("models")
}

/// One line of `models/SHA256SUMS`.
#[derive(Debug, Clone)]
pub struct ModelFile {
    pub name: String,
    pub sha256: String,
}

/// The model files scmpl knows, with their expected checksums (from `models/SHA256SUMS`,
/// compiled in so a moved binary still checks them).
pub fn known_models() -> Vec<ModelFile> {
    include_str!("../../models/SHA256SUMS")
        .lines()
        .filter_map(|l| {
            let mut it = l.split_whitespace();
            Some(ModelFile { sha256: it.next()?.to_string(), name: it.next()?.to_string() })
        })
        .collect()
}

/// sha256 of a file, hex.
pub fn sha256_file(path: &Path) -> std::io::Result<String> {
    use sha2::Digest;
    let mut f = std::fs::File::open(path)?;
    let mut h = sha2::Sha256::new();
    std::io::copy(&mut f, &mut h)?;
    Ok(format!("{:x}", h.finalize()))
}

/// Path of the model file `name` in `dir`, after checking it exists and has the listed sha256.
pub fn checked_model(dir: &Path, name: &str) -> Result<PathBuf, RuntimeError> {
    let path = dir.join(name);
    if !path.is_file() {
        return Err(RuntimeError::ModelMissing { path });
    }
    if let Some(known) = known_models().into_iter().find(|m| m.name == name) {
        let actual = sha256_file(&path).map_err(|_| RuntimeError::ModelMissing { path: path.clone() })?;
        if actual != known.sha256 {
            return Err(RuntimeError::ModelChecksum { path, actual, expected: known.sha256 });
        }
    }
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_onnxruntime_is_a_sentence_naming_the_fix() {
        let dir = tempfile::tempdir().unwrap();
        assert!(onnxruntime_in(dir.path()).is_none());
        let err = RuntimeError::OnnxRuntimeNotFound { searched: vec![dir.path().display().to_string()] };
        assert!(err.to_string().contains("scripts/setup"));
    }

    #[test]
    fn wrong_checksum_is_refused_with_the_path() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("retinaface_mnet025.onnx"), b"not a model").unwrap();
        let err = checked_model(dir.path(), "retinaface_mnet025.onnx").unwrap_err();
        assert!(matches!(err, RuntimeError::ModelChecksum { .. }), "{err}");
        assert!(err.to_string().contains("retinaface_mnet025.onnx"));
        let err = checked_model(dir.path(), "mtcnn_pnet.onnx").unwrap_err();
        assert!(matches!(err, RuntimeError::ModelMissing { .. }));
    }
}
