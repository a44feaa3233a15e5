//! One smoke test per native piece, on real media: FFmpeg decodes, ONNX Runtime runs
//! RetinaFace, OpenCV encodes and decodes. (libtorch's is in src/train/checkpoint.rs.)

#![cfg(feature = "pipeline")]

mod common;

use common::load;

use scmpl::pipeline::detect::{self, DetectorConfig};
use scmpl::pipeline::runtime::Device;
use scmpl::pipeline::decode::{self, Sampling};

#[test]
fn ffmpeg_decodes_all_120_frames_of_carphone() {
    let path = common::media("carphone_pristine.mp4");
    let info = decode::probe(&path).unwrap();
    assert_eq!((info.width, info.height, info.frames), (176, 144, 120));
    assert_eq!(info.codec, "h264");
    let mut indices = Vec::new();
    let summary = decode::decode(&path, &info, &Sampling::All.pick(info.frames), decode::DetectorCopy::Fit(640), 1, |f| {
        assert_eq!((f.full.width, f.full.height), (176, 144));
        indices.push(f.index);
        true
    })
    .unwrap();
    assert_eq!(summary.decoded, 120);
    assert_eq!(indices, (0..120).collect::<Vec<_>>());
    assert!(summary.warning.is_none());
}

fn detector_config() -> DetectorConfig {
    common::detector_config("retinaface")
}

#[test]
fn onnxruntime_runs_retinaface_on_a_batch_of_astronaut_frames() {
    let img = load("astronaut.png");
    assert_eq!((img.width, img.height), (512, 512));
    let mut det = detect::build(&detector_config(), Device::Cpu, &scmpl::pipeline::runtime::models_dir()).unwrap();
    let faces = det.detect(&[&img, &img, &img]).unwrap();
    assert_eq!(faces.len(), 3);
    for f in &faces {
        assert_eq!(f.len(), 1, "one face in astronaut.png");
        assert!(f[0].score > 0.9, "score {}", f[0].score);
        // Eileen Collins' face is in the upper middle of the picture.
        let (cx, cy) = ((f[0].x1 + f[0].x2) / 2.0, (f[0].y1 + f[0].y2) / 2.0);
        assert!((150.0..300.0).contains(&cx) && (50.0..200.0).contains(&cy), "centre {cx},{cy}");
    }
    assert_eq!(faces[0], faces[2], "same frame, same answer");
}

#[test]
fn retinaface_finds_no_face_in_coffee_or_rocket() {
    let mut det = detect::build(&detector_config(), Device::Cpu, &scmpl::pipeline::runtime::models_dir()).unwrap();
    for name in ["coffee.png", "rocket.jpg"] {
        let img = load(name);
        let faces = det.detect(&[&img]).unwrap();
        assert!(faces[0].is_empty(), "{name}: {:?}", faces[0]);
    }
}

#[test]
fn opencv_png_round_trip_is_bit_exact() {
    let path = common::media("carphone_pristine.mp4");
    let info = decode::probe(&path).unwrap();
    let mut frame = None;
    decode::decode(&path, &info, &Sampling::Count(1).pick(info.frames), decode::DetectorCopy::Fit(640), 1, |f| {
        frame = Some(f.full);
        false
    })
    .unwrap();
    let frame = frame.unwrap();
    let mat = opencv::core::Mat::new_rows_cols_with_bytes::<opencv::core::Vec3b>(
        frame.height as i32,
        frame.width as i32,
        &frame.data,
    )
    .unwrap();
    let png = scmpl::pipeline::crop::encode(&mat, scmpl::pipeline::crop::ImageFormat::Png).unwrap();
    assert_eq!(&png[1..4], b"PNG");
    let back = scmpl::pipeline::image::BgrImage::decode(&png).unwrap();
    assert_eq!((back.width, back.height), (176, 144));
    assert!(back.data == frame.data, "PNG is lossless");
}

#[test]
#[cfg(not(feature = "cuda"))]
fn cuda_asked_for_and_absent_is_an_error_not_a_cpu_run() {
    let err = detect::build(&detector_config(), Device::Cuda(0), &scmpl::pipeline::runtime::models_dir()).err().expect("no CUDA here");
    let msg = err.to_string();
    assert!(msg.contains("cuda") || msg.contains("CUDA"), "{msg}");
}

#[test]
fn a_malformed_model_file_is_a_clear_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("retinaface_mnet025.onnx"), b"garbage").unwrap();
    let err = detect::build(&detector_config(), Device::Cpu, dir.path()).err().unwrap().to_string();
    assert!(err.contains("retinaface_mnet025.onnx") && err.contains("sha256"), "{err}");
}
