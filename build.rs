//! Bakes libtorch's directory into the binaries' rpath, so neither the binary nor the tests
//! need LD_LIBRARY_PATH (tch's own rpath flag has no effect).
fn main() {
    println!("cargo:rerun-if-env-changed=DEP_TCH_LIBTORCH_LIB");
    if let Ok(dir) = std::env::var("DEP_TCH_LIBTORCH_LIB") {
        println!("cargo:rustc-link-arg=-Wl,-rpath,{dir}");
        // Without this the linker drops libtorch.so (nothing references it directly) and
        // libtorch_cuda is never loaded: CUDA would never be seen. GPU builds only: the slim
        // CPU install lacks the CUDA libraries that libtorch.so pulls in.
        if std::env::var_os("CARGO_FEATURE_CUDA").is_some() {
            println!("cargo:rustc-link-arg=-Wl,--no-as-needed,-ltorch,--as-needed");
        }
    }
}
