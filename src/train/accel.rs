//! Training settings that live in libtorch's process-wide context: TF32 for CUDA matmuls and
//! convolutions, cuDNN's autotuner, and bfloat16 autocast of the encoder's forward pass.
//!
//! As in PyTorch recipes that allow it, TF32 is on by default on CUDA (`run.tf32`, off with
//! `--no-tf32`: fp32 matmuls then keep their 24-bit mantissa), cuDNN picks its fastest kernels
//! for the (fixed) input shapes, and `--amp bf16` (`run.amp`) runs the encoder under autocast;
//! the heads, losses and optimizer stay fp32. Autocast works on CPU too (that is how the tests
//! exercise it); TF32 and cuDNN only mean something on CUDA.

use std::os::raw::c_int;
use std::sync::atomic::{AtomicU8, Ordering};

use tch::Device;

extern "C" {
    fn scmpl_set_tf32(on: c_int) -> c_int;
    fn scmpl_tf32_matmul() -> c_int;
    fn scmpl_autocast_bf16(cuda: c_int, enabled: c_int) -> c_int;
    fn scmpl_autocast_increment_nesting() -> c_int;
    fn scmpl_autocast_decrement_nesting() -> c_int;
    fn scmpl_autocast_clear_cache();
}

/// Mixed precision of the encoder's forward pass (`run.amp`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Amp {
    /// fp32 throughout.
    None,
    /// Autocast to bfloat16 (same exponent range as fp32: no loss scaling needed).
    Bf16,
}

impl Amp {
    pub fn as_str(&self) -> &'static str {
        match self {
            Amp::None => "none",
            Amp::Bf16 => "bf16",
        }
    }

    pub fn parse(s: &str) -> Option<Amp> {
        match s {
            "none" => Some(Amp::None),
            "bf16" => Some(Amp::Bf16),
            _ => None,
        }
    }
}

static AMP: AtomicU8 = AtomicU8::new(0);

/// What loading libtorch's CUDA half said (`None`: not tried, this build has no `cuda`).
static CUDA_LIBRARY: std::sync::OnceLock<Result<(), String>> = std::sync::OnceLock::new();

/// Loads `libtorch_cuda.so` into the process (builds with the `cuda` feature; call before
/// anything asks libtorch about CUDA: it registers CUDA with libtorch as it loads).
///
/// libtorch is split into a CPU and a CUDA library, and nothing in scmpl calls the CUDA one
/// directly, so linking alone would drop it. Loading it at run time instead means one binary
/// trains on a GPU node (the Python wheel's torch/lib and nvidia libraries on its library
/// path) and still runs on a CPU machine whose torch lacks the CUDA libraries: there the load
/// fails, is remembered, and `--device cuda` says why.
pub fn load_cuda_library() {
    CUDA_LIBRARY.get_or_init(|| {
        let name = c"libtorch_cuda.so";
        // SAFETY: dlopen/dlerror with a valid C string; the handle is kept for the process.
        unsafe {
            if libc::dlopen(name.as_ptr(), libc::RTLD_NOW | libc::RTLD_GLOBAL).is_null() {
                let e = libc::dlerror();
                let why = if e.is_null() { "unknown error".to_string() } else { std::ffi::CStr::from_ptr(e).to_string_lossy().into_owned() };
                tracing::debug!("libtorch_cuda.so not loaded: {why}");
                return Err(why);
            }
        }
        Ok(())
    });
}

/// Why CUDA may be missing, for error messages: "" unless loading libtorch_cuda.so failed
/// or was never built in.
pub fn cuda_library_note() -> String {
    match CUDA_LIBRARY.get() {
        Some(Err(why)) => format!("; libtorch_cuda.so could not be loaded: {why}"),
        Some(Ok(())) => String::new(),
        None if cfg!(feature = "cuda") => String::new(),
        None => "; this scmpl was built without the `cuda` feature".into(),
    }
}

/// Keeps the memory libtorch frees in the process for its next step instead of giving it back
/// to the system (glibc: large blocks from the heap, not one mmap each; no trimming).
///
/// A training step frees and re-allocates the same large activation and gradient buffers every
/// step; with glibc's defaults each one above 32 MB is a fresh mmap whose pages the kernel zeroes
/// again, and freed heap tops are trimmed. Measured on this 2-core CPU, ResNet50 SupCon step at
/// 64 px, batch 64 x 2: 61-66 -> 79-90 images/s, system time 5.6-9.0 -> 2.7-2.9 s (PyTorch in
/// Python: 68-73 images/s). Only training processes call it: extraction's memory bound stays.
pub fn keep_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes glibc's allocation policy; called before the heavy work.
    unsafe {
        libc::mallopt(libc::M_MMAP_MAX, 0);
        libc::mallopt(libc::M_TRIM_THRESHOLD, i32::MAX);
    }
}

/// Applies a run's settings for `device`: TF32 and cuDNN benchmark mode on CUDA, and the
/// autocast the encoder's forward pass uses from now on in this process.
pub fn configure(device: Device, tf32: bool, amp: Amp) {
    if device.is_cuda() {
        set_tf32(tf32);
        tch::Cuda::cudnn_set_benchmark(true);
    }
    AMP.store(amp as u8, Ordering::Relaxed);
}

/// TF32 for cuBLAS matmuls and cuDNN convolutions (a no-op without CUDA).
pub fn set_tf32(on: bool) {
    // SAFETY: plain setters of libtorch's global context; errors are caught in C++.
    let rc = unsafe { scmpl_set_tf32(c_int::from(on)) };
    if rc != 0 {
        tracing::warn!("could not set TF32 to {on}");
    }
}

/// Whether cuBLAS matmuls may use TF32.
pub fn tf32_matmul() -> bool {
    // SAFETY: a getter of libtorch's global context.
    unsafe { scmpl_tf32_matmul() == 1 }
}

/// The autocast this process's training runs use.
pub fn amp() -> Amp {
    if AMP.load(Ordering::Relaxed) == Amp::Bf16 as u8 {
        Amp::Bf16
    } else {
        Amp::None
    }
}

/// Runs `f` under the autocast the run asked for ([`configure`]) on `device`'s type.
pub fn autocast<T>(device: Device, f: impl FnOnce() -> T) -> T {
    autocast_as(amp(), device, f)
}

/// Runs `f` under bf16 autocast for `device`'s type when `amp` says so; else runs it as it is.
/// Nests like torch.autocast: the cast cache is cleared when the outermost ends.
pub fn autocast_as<T>(amp: Amp, device: Device, f: impl FnOnce() -> T) -> T {
    if amp == Amp::None {
        return f();
    }
    let cuda = c_int::from(device.is_cuda());
    // SAFETY: libtorch's thread-local autocast state, restored below.
    let before = unsafe {
        let b = scmpl_autocast_bf16(cuda, 1);
        scmpl_autocast_increment_nesting();
        b
    };
    let out = f();
    // SAFETY: as above.
    unsafe {
        if scmpl_autocast_decrement_nesting() == 0 {
            scmpl_autocast_clear_cache();
        }
        scmpl_autocast_bf16(cuda, c_int::from(before == 1));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{Kind, Tensor};

    /// On CPU, a matmul under autocast comes out in bfloat16 and close to fp32's; outside it,
    /// and with amp none, fp32 as before.
    #[test]
    fn autocast_runs_matmuls_in_bf16_only_when_asked() {
        let a = Tensor::randn([64, 64], (Kind::Float, Device::Cpu));
        let exact = a.matmul(&a);
        let cast = autocast_as(Amp::Bf16, Device::Cpu, || a.matmul(&a));
        assert_eq!(cast.kind(), Kind::BFloat16);
        let err = (cast.to_kind(Kind::Float) - &exact).abs().max().double_value(&[]);
        let scale = exact.abs().max().double_value(&[]);
        assert!(err < scale * 0.02, "bf16 error {err} vs scale {scale}");
        assert_eq!(a.matmul(&a).kind(), Kind::Float, "autocast ends with the closure");
        assert_eq!(autocast_as(Amp::None, Device::Cpu, || a.matmul(&a)).kind(), Kind::Float);
    }

    #[test]
    fn tf32_can_be_switched() {
        set_tf32(false);
        assert!(!tf32_matmul());
        set_tf32(true);
        assert!(tf32_matmul());
        set_tf32(false);
    }
}
