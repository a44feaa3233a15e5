//! Bakes libtorch's directory into the binaries' rpath, so neither the binary nor the tests
//! need LD_LIBRARY_PATH (tch's own rpath flag has no effect), and compiles the few libtorch
//! calls tch does not wrap (src/train/accel.cpp: TF32, bf16 autocast).
fn main() {
    println!("cargo:rerun-if-env-changed=DEP_TCH_LIBTORCH_LIB");
    println!("cargo:rerun-if-changed=src/train/accel.cpp");
    if let Ok(dir) = std::env::var("DEP_TCH_LIBTORCH_LIB") {
        // libtorch's headers sit beside its lib/ folder, in the wheel as in a libtorch zip.
        let root = std::path::Path::new(&dir).parent().expect("libtorch lib has a parent").to_path_buf();
        cc::Build::new()
            .cpp(true)
            .file("src/train/accel.cpp")
            .include(root.join("include"))
            .include(root.join("include/torch/csrc/api/include"))
            .flag("-std=c++17")
            .flag("-D_GLIBCXX_USE_CXX11_ABI=1")
            .warnings(false)
            .compile("scmpl_accel");
        // libtorch_cuda.so is not linked: `cuda` builds load it at start (train::accel), so
        // the same binary also runs where torch's CUDA libraries are missing.
        println!("cargo:rustc-link-arg=-Wl,-rpath,{dir}");
    }
}
