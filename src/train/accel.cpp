// What libtorch's C API (tch) does not reach: TF32 for CUDA matmuls and convolutions, and
// autocast to bfloat16 on a given device type. Compiled by build.rs with the train feature.
#include <ATen/Context.h>
#include <ATen/autocast_mode.h>

extern "C" {

// TF32 on or off for cuBLAS matmuls and cuDNN convolutions; 0, or -1 on an error.
int scmpl_set_tf32(int on) {
  try {
    at::globalContext().setAllowTF32CuBLAS(on != 0);
    at::globalContext().setAllowTF32CuDNN(on != 0);
    return 0;
  } catch (...) {
    return -1;
  }
}

// Whether TF32 is allowed for cuBLAS matmuls (1) or not (0).
int scmpl_tf32_matmul() {
  return at::globalContext().allowTF32CuBLAS() ? 1 : 0;
}

// Autocast to bfloat16 on (enabled != 0) or off for CUDA (cuda != 0) or CPU; returns whether it
// was on before (1/0), or -1 on an error.
int scmpl_autocast_bf16(int cuda, int enabled) {
  try {
    auto device = cuda ? at::kCUDA : at::kCPU;
    bool before = at::autocast::is_autocast_enabled(device);
    at::autocast::set_autocast_dtype(device, at::kBFloat16);
    at::autocast::set_autocast_enabled(device, enabled != 0);
    return before ? 1 : 0;
  } catch (...) {
    return -1;
  }
}

int scmpl_autocast_increment_nesting() { return at::autocast::increment_nesting(); }

int scmpl_autocast_decrement_nesting() { return at::autocast::decrement_nesting(); }

void scmpl_autocast_clear_cache() { at::autocast::clear_cache(); }
}
