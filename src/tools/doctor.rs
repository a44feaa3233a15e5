//! `scmpl doctor`: what scmpl loaded, what devices it sees, which detector files it has, and
//! for everything missing, the command that fixes it.

use std::fmt::Write;

use crate::pipeline::runtime;

/// The doctor's findings: a printable report, and whether anything is missing.
pub struct Report {
    pub text: String,
    pub problems: usize,
}

/// Version of the libtorch this process loaded, read from the `version.py` beside it.
#[cfg(feature = "train")]
pub fn libtorch_version() -> Option<(String, std::path::PathBuf)> {
    // Make sure libtorch is loaded and initialised before looking for it.
    let _ = tch::Tensor::zeros([1], (tch::Kind::Float, tch::Device::Cpu));
    let maps = std::fs::read_to_string("/proc/self/maps").ok()?;
    let lib = maps.lines().filter_map(|l| l.split_whitespace().nth(5)).find(|p| p.ends_with("libtorch_cpu.so"))?;
    let dir = std::path::Path::new(lib).parent()?.parent()?.to_path_buf();
    let text = std::fs::read_to_string(dir.join("version.py")).ok()?;
    let v = text.lines().find_map(|l| l.strip_prefix("__version__ = "))?.trim_matches(['\'', '"']).to_string();
    Some((v, dir))
}

pub fn run() -> Report {
    let mut t = String::new();
    let mut problems = 0;
    let _ = writeln!(t, "scmpl {}", env!("CARGO_PKG_VERSION"));

    crate::pipeline::decode::init();
    let _ = writeln!(t, "FFmpeg       {}", crate::pipeline::decode::ffmpeg_versions());
    let _ = writeln!(t, "OpenCV       {}", crate::pipeline::crop::opencv_version());
    match runtime::init_onnxruntime(None) {
        Ok((_, path)) => {
            let info = ort::info();
            let version = info
                .split(',')
                .find_map(|kv| kv.trim().strip_prefix("git-branch=rel-"))
                .map(str::to_string)
                .unwrap_or_else(|| path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default());
            let _ = writeln!(t, "ONNX Runtime {version} ({})", path.display());
        }
        Err(e) => {
            problems += 1;
            let _ = writeln!(t, "ONNX Runtime MISSING: {e}");
        }
    }
    #[cfg(feature = "train")]
    match libtorch_version() {
        Some((v, dir)) => {
            let _ = writeln!(t, "libtorch     {v} ({})", dir.display());
        }
        None => {
            let _ = writeln!(t, "libtorch     loaded (version unknown)");
        }
    }

    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    let _ = writeln!(t, "devices      cpu ({cores} cores)");
    #[cfg(feature = "train")]
    {
        let n = tch::Cuda::device_count();
        if tch::Cuda::is_available() {
            let _ = writeln!(t, "             cuda: {n} device(s) for training (libtorch)");
        } else {
            let _ = writeln!(t, "             cuda: none for training (libtorch sees no GPU)");
        }
    }
    #[cfg(feature = "cuda")]
    {
        use ort::ep::ExecutionProvider;
        let cuda = runtime::init_onnxruntime(None).ok().and_then(|_| <ort::ep::CUDA as ExecutionProvider>::is_available().ok());
        let state = if cuda == Some(true) {
            "available"
        } else {
            "not available (onnxruntime-gpu and a GPU are needed: scripts/setup --gpu)"
        };
        let _ = writeln!(t, "             cuda for detection (ONNX Runtime): {state}");
    }
    #[cfg(not(feature = "cuda"))]
    let _ = writeln!(t, "             cuda for detection (ONNX Runtime): not built in (cargo build --features cuda)");

    let dir = runtime::models_dir();
    let _ = writeln!(t, "models       {}", dir.display());
    for m in runtime::known_models() {
        let path = dir.join(&m.name);
        let state = match runtime::sha256_file(&path) {
            Ok(sum) if sum == m.sha256 => format!("ok  sha256 {sum}"),
            Ok(sum) => {
                problems += 1;
                format!("BAD sha256 {sum} (expected {}): delete it and run scripts/setup", m.sha256)
            }
            Err(_) => {
                problems += 1;
                "MISSING: run scripts/setup".to_string()
            }
        };
        let _ = writeln!(t, "  {:<26} {state}", m.name);
    }
    if problems == 0 {
        let _ = writeln!(t, "all good");
    } else {
        let _ = writeln!(t, "{problems} problem(s); scripts/setup fixes them");
    }
    Report { text: t, problems }
}
