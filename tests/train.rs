//! `scmpl train` driven as a user would, on the real-face fixture (LFW crops and their
//! manipulations), on CPU with a small backbone at 64 px.

mod common;

use std::path::Path;

use common::{media, run, stderr};

fn fixture(dir: &Path) -> std::path::PathBuf {
    let out = dir.join("fixture");
    let o = run(&["train", "fixture", "--lfw", media("lfw_subset.npy").to_str().unwrap(), "--out", out.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    out.join("faces.csv")
}

/// Loss column of metrics.csv, by step.
fn losses(run: &Path) -> Vec<(u64, String)> {
    common::named_rows(&run.join("metrics.csv")).iter().map(|r| (r["step"].parse().unwrap(), r["loss"].clone())).collect()
}

/// Every column of metrics.csv but the timing, row by row.
fn logged_values(run: &Path) -> Vec<Vec<(String, String)>> {
    common::named_rows(&run.join("metrics.csv"))
        .into_iter()
        .map(|r| {
            let mut v: Vec<(String, String)> = r.into_iter().filter(|(k, _)| k != "images_per_s").collect();
            v.sort();
            v
        })
        .collect()
}

#[test]
fn an_interrupted_and_resumed_run_gives_the_same_losses() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = fixture(dir.path());
    let args = |out: &Path, extra: &[&str]| {
        let mut a: Vec<String> = [
            "train", "teacher", "--manifest", manifest.to_str().unwrap(), "--out", out.to_str().unwrap(),
            "--backbone", "resnet18", "--steps", "3", "--batch", "16", "--lr", "1e-3", "--no-progress",
        ]
        .map(String::from)
        .to_vec();
        a.extend(extra.iter().map(|s| s.to_string()));
        a
    };
    let straight = dir.path().join("straight");
    let o = common::scmpl().args(args(&straight, &[])).output().unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let resumed = dir.path().join("resumed");
    // Stop inside stage 1 (step 2 of 6), then resume to the end.
    let o = common::scmpl().args(args(&resumed, &["--stop-after", "2"])).output().unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(stderr(&o).contains("stopped at step 2"), "{}", stderr(&o));
    // Without --resume an existing run is not overwritten.
    let o = common::scmpl().args(args(&resumed, &[])).output().unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("--resume"), "{}", stderr(&o));
    let o = common::scmpl().args(args(&resumed, &["--resume"])).output().unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let a = losses(&straight);
    let b = losses(&resumed);
    assert_eq!(a.len(), 6);
    assert_eq!(a, b, "per-step losses after resume");
    assert!(resumed.join("eval.json").exists() && resumed.join("recipe.toml").exists());
    // TensorBoard events hold every logged loss at its step, and the final evaluation.
    let mut events = Vec::new();
    for f in std::fs::read_dir(straight.join("tb")).unwrap() {
        events.extend(scmpl::train::tensorboard::read_scalars(&f.unwrap().path()).unwrap());
    }
    for (step, loss) in &a {
        let logged = events.iter().find(|(tag, s, _)| tag.ends_with("/loss") && *s == *step as i64);
        let logged = logged.unwrap_or_else(|| panic!("no loss at step {step} in {events:?}"));
        assert!((logged.2 - loss.parse::<f32>().unwrap()).abs() < 1e-4, "{logged:?} vs {loss}");
    }
    assert!(events.iter().any(|(tag, s, _)| tag == "eval/accuracy" && *s == 6), "{events:?}");
    assert!(events.iter().any(|(tag, ..)| tag.ends_with("/images_per_s")));
    assert!(events.iter().any(|(tag, s, v)| tag == "lr" && *s == 1 && (*v - 1e-3).abs() < 1e-9), "learning rate: {events:?}");
    // Resuming with another recipe is refused.
    let o = common::scmpl().args(args(&resumed, &["--resume", "--image-size", "32"])).output().unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("another recipe"), "{}", stderr(&o));
}

fn accuracy(run: &Path) -> (f64, u64) {
    let eval: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(run.join("eval.json")).unwrap()).unwrap();
    (eval["accuracy"].as_f64().unwrap(), eval["images"].as_u64().unwrap())
}

/// From random init, resnet18 at 64 px on CPU: the SupCon teacher separates the fixture's
/// manipulated faces from the real ones on the held-out split (measured 1.00 on 38 images in
/// about a minute), and the SupCon-MPL student, trained only on the teacher's pseudo labels
/// of the unlabelled split plus its own classifier, is clearly above chance after 30 MPL steps
/// (measured 0.74-0.79; chance would reach 0.65 on 38 images with probability ~3 %).
#[test]
fn the_teacher_learns_the_fixture_and_the_supcon_mpl_student_beats_chance() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = fixture(dir.path());
    let m = manifest.to_str().unwrap();
    let common = ["--manifest", m, "--backbone", "resnet18", "--batch", "32", "--lr", "1e-3", "--no-progress"];
    let teacher = dir.path().join("teacher");
    let mut a = vec!["train", "teacher", "--out", teacher.to_str().unwrap(), "--steps", "30"];
    a.extend(common);
    let o = run(&a);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let (acc, images) = accuracy(&teacher);
    assert!(images >= 30, "{images} held-out images");
    eprintln!("teacher held-out accuracy {acc} on {images} images");
    assert!(acc >= 0.85, "teacher held-out accuracy {acc}");
    let student = dir.path().join("mpl");
    let mut a = vec!["train", "mpl", "--teacher", teacher.to_str().unwrap(), "--out", student.to_str().unwrap()];
    a.extend(["--mpl-steps", "30", "--mpl-batch", "32,64"]);
    a.extend(common);
    let o = run(&a);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let (acc, _) = accuracy(&student);
    eprintln!("SupCon-MPL student held-out accuracy {acc}");
    assert!(acc >= 0.65, "SupCon-MPL student held-out accuracy {acc}");
}

#[test]
fn bad_training_inputs_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = fixture(dir.path());
    let base = ["train", "teacher", "--manifest", manifest.to_str().unwrap(), "--backbone", "resnet18", "--steps", "1", "--batch", "8", "--no-progress"];
    // No rows in the eval split: refused before training starts.
    let recipe = dir.path().join("r.toml");
    std::fs::write(&recipe, "[data]\neval_split = \"validation\"\n").unwrap();
    let out = dir.path().join("a");
    let mut a = base.to_vec();
    a.extend(["--config", recipe.to_str().unwrap(), "--out", out.to_str().unwrap()]);
    let o = run(&a);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("no labelled rows with split 'validation'"), "{}", stderr(&o));
    assert!(!out.join("metrics.csv").exists());
    // CUDA asked for and absent.
    let mut a = base.to_vec();
    let out = dir.path().join("b");
    a.extend(["--device", "cuda", "--out", out.to_str().unwrap()]);
    let o = run(&a);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("CUDA"), "{}", stderr(&o));
    // Unknown backbone.
    let mut a = base.to_vec();
    let out_c = dir.path().join("c");
    a[5] = "vgg16";
    a.extend(["--out", out_c.to_str().unwrap()]);
    let o = run(&a);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("vgg16"), "{}", stderr(&o));
    // A missing image is skipped and counted, not fatal.
    std::fs::remove_file(manifest.parent().unwrap().join("real/lfw001.png")).unwrap();
    let mut a = base.to_vec();
    let out_d = dir.path().join("d");
    a.extend(["--out", out_d.to_str().unwrap()]);
    let o = run(&a);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
}

#[test]
fn teacher_then_mpl_then_finetune_runs_end_to_end_and_mpl_resumes_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = fixture(dir.path());
    let m = manifest.to_str().unwrap();
    let teacher = dir.path().join("teacher");
    let common = ["--manifest", m, "--backbone", "resnet18", "--steps", "2", "--batch", "16", "--lr", "1e-3", "--no-progress"];
    let mut a = vec!["train", "teacher", "--out", teacher.to_str().unwrap()];
    a.extend(common);
    assert_eq!(run(&a).status.code(), Some(0));
    // MPL straight, and MPL stopped after 2 of 4 steps then resumed.
    let mpl = |out: &Path, extra: &[&str]| {
        let mut a = vec!["train", "mpl", "--teacher", teacher.to_str().unwrap(), "--out", out.to_str().unwrap(), "--mpl-steps", "4", "--mpl-batch", "8,16"];
        a.extend(common);
        a.extend(extra);
        run(&a)
    };
    let straight = dir.path().join("mpl");
    let o = mpl(&straight, &[]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let resumed = dir.path().join("mpl2");
    assert_eq!(mpl(&resumed, &["--stop-after", "2"]).status.code(), Some(0));
    assert_eq!(mpl(&resumed, &["--resume"]).status.code(), Some(0));
    assert_eq!(logged_values(&straight).len(), 4);
    assert_eq!(logged_values(&straight), logged_values(&resumed), "MPL losses, h and accuracy after resume");
    // h is logged and finite; the student's evaluation is written.
    let eval: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(straight.join("eval.json")).unwrap()).unwrap();
    assert_eq!(eval["model"], "student");
    // Fine-tuning starts from the MPL student.
    let ft = dir.path().join("ft");
    let mut a = vec!["train", "finetune", "--student", straight.to_str().unwrap(), "--out", ft.to_str().unwrap()];
    a.extend(common);
    let o = run(&a);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(ft.join("eval.json").exists());
    // Evaluation of the fine-tuned student: frame and video level per domain, CSV and JSON.
    let ev = dir.path().join("eval");
    let o = run(&["eval", "--checkpoint", ft.to_str().unwrap(), "--manifest", m, "--by", "domain", "--protocol", "paper", "--out", ev.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let table = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(table.contains("test") && table.contains("video_mean") && table.contains("paper protocol"), "{table}");
    let json: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(ev.join("metrics.json")).unwrap()).unwrap();
    assert_eq!(json["model"], "student");
    assert!(json["domains"][0]["frame"]["auc"].as_f64().is_some());
    if cfg!(feature = "pipeline") {
        let roc = image::open(ev.join("roc.png")).expect("roc.png");
        assert_eq!((roc.width(), roc.height()), (700, 560));
        // Training curves of the MPL run: one stage, one panel.
        let o = run(&["report", straight.to_str().unwrap()]);
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
        let curves = image::open(straight.join("curves.png")).expect("curves.png").to_rgb8();
        assert_eq!(curves.dimensions(), (900, 500));
        assert!(curves.pixels().any(|p| p.0 != [255, 255, 255]), "something is drawn");
    }
    // One class only: AUC is said to be undefined, not 0.5.
    let one = dir.path().join("fixture/real_only.csv");
    let text = std::fs::read_to_string(&manifest).unwrap();
    let kept: Vec<&str> = text.lines().filter(|l| l.starts_with("path,") || l.starts_with("real/")).collect();
    std::fs::write(&one, kept.join("\n") + "\n").unwrap();
    let o = run(&["eval", "--checkpoint", ft.to_str().unwrap(), "--manifest", one.to_str().unwrap(), "--out", ev.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(String::from_utf8_lossy(&o.stdout).contains("undefined: the labels are all one class"));
    // An incomplete run folder is a clear message.
    std::fs::remove_file(ft.join("latest")).unwrap();
    let o = run(&["eval", "--checkpoint", ft.to_str().unwrap(), "--manifest", m]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("incomplete"), "{}", stderr(&o));
    if cfg!(feature = "pipeline") {
        // Prediction on a real video and photos: one face per frame, a verdict, valid JSON lines.
        let o = run(&[
            "predict", media("carphone_pristine.mp4").to_str().unwrap(), media("astronaut.png").to_str().unwrap(),
            media("coffee.png").to_str().unwrap(), "--checkpoint", straight.to_str().unwrap(), "--sampling", "count:11",
        ]);
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
        let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&o.stdout).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        assert_eq!(lines.len(), 3);
        let frames = lines[0]["frames"].as_array().unwrap();
        // 11 frames: one full detector batch of 8 and a partial one, in order.
        assert_eq!(frames.iter().map(|f| f["frame"].as_u64().unwrap()).collect::<Vec<_>>(), [0, 11, 23, 35, 47, 59, 71, 83, 95, 107, 119]);
        assert!(frames.iter().all(|f| f["faces"].as_array().unwrap().len() == 1), "one face per carphone frame");
        let p = lines[0]["video"]["fake_probability_mean"].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&p));
        assert!(["real", "fake"].contains(&lines[1]["video"]["verdict"].as_str().unwrap()));
        assert_eq!(lines[2]["video"]["verdict"], "no face found");
        // A contact sheet with the model's fake probabilities in the captions.
        let sheets = dir.path().join("sheets");
        let o = run(&["manifest", "sheet", m, "--out", sheets.to_str().unwrap(), "--per-video", "1", "--checkpoint", straight.to_str().unwrap()]);
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
        assert_eq!(std::fs::read_dir(&sheets).unwrap().count(), 200, "one sheet per fixture image");
    }
    // Export: torchvision-named safetensors and a TorchScript model that gives the same probability.
    let exp = dir.path().join("export");
    let o = run(&["export", "--checkpoint", straight.to_str().unwrap(), "--out", exp.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let enc: std::collections::HashMap<String, tch::Tensor> = tch::Tensor::read_safetensors(exp.join("encoder.safetensors")).unwrap().into_iter().collect();
    assert!(enc.contains_key("conv1.weight") && enc.contains_key("layer4.1.bn2.running_var") && !enc.keys().any(|k| k.starts_with("encoder.")));
    let cls: Vec<String> = tch::Tensor::read_safetensors(exp.join("classifier.safetensors")).unwrap().into_iter().map(|(k, _)| k).collect();
    assert!(cls.contains(&"fc.weight".to_string()));
    let module = tch::CModule::load(exp.join("model.pt")).unwrap();
    // Any batch size: the same image gives the same probability alone and among others.
    let x = tch::Tensor::rand([5, 3, 64, 64], (tch::Kind::Float, tch::Device::Cpu));
    let p5 = module.forward_ts(&[&x]).unwrap();
    assert_eq!(p5.size(), [5]);
    let p1 = module.forward_ts(&[x.narrow(0, 3, 1)]).unwrap();
    assert_eq!(p1.size(), [1]);
    let (a, b) = (p5.double_value(&[3]), p1.double_value(&[0]));
    assert!((0.0..=1.0).contains(&a) && (a - b).abs() < 1e-5, "{a} vs {b}");
    // A teacher of another backbone is refused.
    let bad = dir.path().join("bad");
    let mut a = vec!["train", "mpl", "--teacher", teacher.to_str().unwrap(), "--out", bad.to_str().unwrap(), "--mpl-steps", "1"];
    a.extend(["--manifest", m, "--backbone", "resnet34", "--no-progress"]);
    let o = run(&a);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("another backbone"), "{}", stderr(&o));
    // Baselines run under the same command.
    for kind in ["ce", "mpl"] {
        let out = dir.path().join(format!("b_{kind}"));
        let mut a = vec!["train", "baseline", kind, "--out", out.to_str().unwrap()];
        a.extend(common);
        let o = run(&a);
        assert_eq!(o.status.code(), Some(0), "{kind}: {}", stderr(&o));
        assert!(out.join("eval.json").exists());
        // A baseline run is a checkpoint like any other: eval re-scores it the same way.
        let ev = dir.path().join(format!("eval_{kind}"));
        let o = run(&["eval", "--checkpoint", out.to_str().unwrap(), "--manifest", m, "--out", ev.to_str().unwrap()]);
        assert_eq!(o.status.code(), Some(0), "{kind}: {}", stderr(&o));
        let json: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(ev.join("metrics.json")).unwrap()).unwrap();
        assert_eq!(json["model"], if kind == "ce" { "teacher" } else { "student" });
    }
}

/// A teacher run of a few steps (resnet18, 64 px): enough to load and score with.
#[cfg(feature = "pipeline")]
fn tiny_run(dir: &Path) -> std::path::PathBuf {
    let manifest = fixture(dir);
    let out = dir.join("tiny");
    let o = run(&[
        "train", "teacher", "--manifest", manifest.to_str().unwrap(), "--out", out.to_str().unwrap(), "--backbone", "resnet18",
        "--steps", "1", "--batch", "8", "--no-progress",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    out
}

/// Bug: `predict` selected faces its own way (no `min_face_size`, no `faces = "largest"`, no
/// rounding), so with the same config it scored other faces than `extract` wrote.
#[cfg(feature = "pipeline")]
#[test]
fn predict_scores_the_faces_extract_writes() {
    let dir = tempfile::tempdir().unwrap();
    let model = tiny_run(dir.path());
    let config = dir.path().join("largest.toml");
    std::fs::write(&config, "[extract]\nfaces = \"largest\"\nsampling = \"count:5\"\n").unwrap();
    let video = common::generated("two_faces.mp4");
    let out = dir.path().join("extract");
    let o = run(&["extract", video.to_str().unwrap(), "--config", config.to_str().unwrap(), "--out", out.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let mut extracted: Vec<(u64, [f64; 4])> = common::named_rows(&out.join("detections.csv"))
        .iter()
        .map(|r| (r["frame"].parse().unwrap(), ["x1", "y1", "x2", "y2"].map(|k| r[k].parse().unwrap())))
        .collect();
    extracted.sort_by(|a, b| a.partial_cmp(b).unwrap());
    assert_eq!(extracted.len(), 5, "largest face only: one per frame");
    let o = run(&["predict", video.to_str().unwrap(), "--config", config.to_str().unwrap(), "--checkpoint", model.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let line: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let mut predicted: Vec<(u64, [f64; 4])> = Vec::new();
    for f in line["frames"].as_array().unwrap() {
        for face in f["faces"].as_array().unwrap() {
            let b = face["box"].as_array().unwrap();
            predicted.push((f["frame"].as_u64().unwrap(), [0, 1, 2, 3].map(|i| b[i].as_f64().unwrap())));
        }
    }
    assert_eq!(predicted.len(), extracted.len(), "predict {predicted:?}\nextract {extracted:?}");
    for ((fp, bp), (fe, be)) in predicted.iter().zip(&extracted) {
        assert_eq!(fp, fe);
        assert!(bp.iter().zip(be).all(|(a, b)| (a - b).abs() < 1e-3), "frame {fp}: predict {bp:?} vs extract {be:?}");
    }
}

/// Bug: `scmpl predict VIDEO | head -1` panicked on the closed pipe (exit 101); it must end
/// quietly with 0.
#[cfg(feature = "pipeline")]
#[test]
fn a_closed_stdout_ends_predict_quietly_with_exit_0() {
    use std::io::BufRead;
    let dir = tempfile::tempdir().unwrap();
    let model = tiny_run(dir.path());
    let mut child = common::scmpl()
        .args(["predict", media("astronaut.png").to_str().unwrap(), media("carphone_pristine.mp4").to_str().unwrap(), media("camera.png").to_str().unwrap()])
        .args(["--checkpoint", model.to_str().unwrap(), "--sampling", "count:4"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap()).read_line(&mut first).unwrap();
    assert!(first.contains("astronaut.png"), "{first}");
    // The reader is gone (like `head -1`): the next lines meet a closed pipe.
    let o = child.wait_with_output().unwrap();
    assert!(!String::from_utf8_lossy(&o.stderr).contains("panicked"), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(o.status.code(), Some(0));
}

/// Bug: a truncated `.npy` given to `train fixture --lfw` panicked on a slice; it must be an
/// error naming the file.
#[test]
fn a_truncated_lfw_npy_is_an_error_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let bytes = std::fs::read(media("lfw_subset.npy")).unwrap();
    for (name, len) in [("short_pixels.npy", 5000), ("short_header.npy", 40)] {
        let npy = dir.path().join(name);
        std::fs::write(&npy, &bytes[..len]).unwrap();
        let o = run(&["train", "fixture", "--lfw", npy.to_str().unwrap(), "--out", dir.path().join("f").to_str().unwrap()]);
        assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
        assert!(stderr(&o).contains(name) && stderr(&o).contains("truncated"), "{}", stderr(&o));
        assert!(!stderr(&o).contains("panicked"), "{}", stderr(&o));
    }
}

/// Several independent runs as one job array (`--run-index auto/N` reads the scheduler's
/// index: its own folder and seed each), then `eval` over all of them: mean and spread.
#[test]
fn runs_of_a_job_array_get_their_own_folder_and_seed_and_eval_summarises_them() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = fixture(dir.path());
    let out = dir.path().join("sweep");
    for k in 0..2 {
        let o = common::scmpl()
            .args(["train", "teacher", "--manifest", manifest.to_str().unwrap(), "--out", out.to_str().unwrap(), "--backbone", "resnet18"])
            .args(["--steps", "1", "--batch", "8", "--no-progress", "--run-index", "auto/2"])
            .env("SLURM_ARRAY_TASK_ID", k.to_string())
            .output()
            .unwrap();
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
        let recipe = std::fs::read_to_string(out.join(format!("run-{k}/recipe.toml"))).unwrap();
        assert!(recipe.contains(&format!("seed = {}", 777 + k)), "{recipe}");
    }
    let o = run(&["train", "teacher", "--manifest", manifest.to_str().unwrap(), "--out", out.to_str().unwrap(), "--run-index", "auto/2"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("--run-index auto/2") && stderr(&o).contains("SLURM_ARRAY_TASK_ID"), "{}", stderr(&o));
    let summary = dir.path().join("summary");
    let (r0, r1) = (out.join("run-0"), out.join("run-1"));
    let o = run(&["eval", "--checkpoint", r0.to_str().unwrap(), "--checkpoint", r1.to_str().unwrap(), "--manifest", manifest.to_str().unwrap(), "--out", summary.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let rows = common::named_rows(&summary.join("summary.csv"));
    let acc = rows.iter().find(|r| r["level"] == "frame" && r["metric"] == "accuracy").expect("frame accuracy");
    assert_eq!(acc["runs"], "2");
    let each: Vec<f64> = ["run-0", "run-1"]
        .iter()
        .map(|r| common::named_rows(&summary.join(r).join("metrics.csv")).iter().find(|x| x["level"] == "frame").unwrap()["accuracy"].parse().unwrap())
        .collect();
    let mean: f64 = acc["mean"].parse().unwrap();
    assert!((mean - (each[0] + each[1]) / 2.0).abs() < 1e-5, "{mean} vs {each:?}");
}

/// `train mpl` reads its teacher's recipe: another backbone, preset or image size, or a teacher
/// that did not finish its stages, is refused. Under `paper`, no `model.init` is a loud warning
/// at the start and in `eval.json`.
#[test]
fn mpl_refuses_a_teacher_made_otherwise_or_unfinished_and_paper_without_init_warns() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = fixture(dir.path());
    let m = manifest.to_str().unwrap();
    let teacher = dir.path().join("teacher");
    let t = teacher.to_str().unwrap();
    let common = ["--manifest", m, "--backbone", "resnet18", "--steps", "1", "--batch", "8", "--no-progress"];
    let go = |args: &[&str]| {
        let mut a = args.to_vec();
        a.extend(common);
        run(&a)
    };
    assert_eq!(go(&["train", "teacher", "--out", t, "--stop-after", "1"]).status.code(), Some(0));
    let mpl = |extra: &[&str]| {
        let out = dir.path().join("mpl");
        let _ = std::fs::remove_dir_all(&out);
        let mut a = vec!["train", "mpl", "--teacher", t, "--out", out.to_str().unwrap(), "--mpl-steps", "1", "--mpl-batch", "4,8"];
        a.extend(extra);
        go(&a)
    };
    let o = mpl(&[]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("did not finish its stages (step 1 of 2)"), "{}", stderr(&o));
    assert_eq!(go(&["train", "teacher", "--out", t, "--resume"]).status.code(), Some(0));
    for (extra, what) in [(vec!["--image-size", "32"], "another image size"), (vec!["--preset", "paper"], "another preset")] {
        let o = mpl(&extra);
        assert_eq!(o.status.code(), Some(1), "{what}");
        assert!(stderr(&o).contains(what), "{}", stderr(&o));
    }
    assert_eq!(mpl(&[]).status.code(), Some(0));
    // The paper preset from random weights: said at the start and kept with the result.
    let paper = dir.path().join("paper");
    let o = go(&["train", "teacher", "--out", paper.to_str().unwrap(), "--preset", "paper"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(stderr(&o).contains("empty model.init"), "{}", stderr(&o));
    let eval: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(paper.join("eval.json")).unwrap()).unwrap();
    assert!(eval["warnings"][0].as_str().unwrap().contains("ImageNet"), "{eval}");
}

/// `scmpl import` makes a run folder of weights trained elsewhere (here: a teacher's own files,
/// which carry the names the authors' converted weights do): it scores exactly like the run
/// they came from, `train mpl` takes it as a teacher, and weights of another architecture are
/// refused with the names that differ.
#[test]
fn imported_weights_make_a_run_that_scores_like_their_source() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = fixture(dir.path());
    let m = manifest.to_str().unwrap();
    let source = dir.path().join("source");
    let o = run(&["train", "teacher", "--manifest", m, "--out", source.to_str().unwrap(), "--backbone", "resnet18", "--steps", "1", "--batch", "8", "--no-progress"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let ck = source.join(std::fs::read_to_string(source.join("latest")).unwrap().trim());
    let (enc, cls) = (ck.join("teacher.safetensors"), ck.join("teacher_classifier.safetensors"));
    let imported = dir.path().join("imported");
    let import = |out: &Path, backbone: &str| {
        run(&[
            "import", "--encoder", enc.to_str().unwrap(), "--classifier", cls.to_str().unwrap(), "--out", out.to_str().unwrap(),
            "--backbone", backbone, "--preset", "default",
        ])
    };
    let o = import(&imported, "resnet18");
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let metrics = |run_dir: &Path, name: &str| -> String {
        let out = dir.path().join(name);
        let o = run(&["eval", "--checkpoint", run_dir.to_str().unwrap(), "--manifest", m, "--out", out.to_str().unwrap()]);
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
        std::fs::read_to_string(out.join("metrics.csv")).unwrap()
    };
    assert_eq!(metrics(&imported, "e1"), metrics(&source, "e2"), "the same probabilities, hence the same metrics");
    let mpl = dir.path().join("mpl");
    let o = run(&["train", "mpl", "--teacher", imported.to_str().unwrap(), "--out", mpl.to_str().unwrap(), "--manifest", m, "--backbone", "resnet18", "--mpl-steps", "1", "--mpl-batch", "4,8", "--no-progress"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let o = import(&dir.path().join("wrong"), "resnet34");
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("made for another architecture") && stderr(&o).contains("missing encoder.layer1.2"), "{}", stderr(&o));
}

/// bf16 autocast (`--amp bf16`), exercised on the CPU as a GPU run would use it: the teacher
/// trains with finite losses close to fp32's (the encoder runs in bf16, heads and losses in
/// fp32), it stops and resumes, and the recipe records it.
#[test]
fn a_bf16_autocast_run_trains_close_to_fp32() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = fixture(dir.path());
    let teacher = |out: &Path, extra: &[&str]| {
        let mut a = vec!["train", "teacher", "--manifest", manifest.to_str().unwrap(), "--out", out.to_str().unwrap()];
        a.extend(["--backbone", "resnet18", "--steps", "2", "--batch", "8", "--lr", "1e-3", "--no-progress"]);
        a.extend(extra);
        let o = run(&a);
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    };
    let (fp32, bf16) = (dir.path().join("fp32"), dir.path().join("bf16"));
    teacher(&fp32, &[]);
    teacher(&bf16, &["--amp", "bf16", "--stop-after", "1"]);
    teacher(&bf16, &["--amp", "bf16", "--resume"]);
    let (a, b) = (losses(&fp32), losses(&bf16));
    assert_eq!(a.len(), b.len());
    let first = |l: &[(u64, String)]| l[0].1.parse::<f64>().unwrap();
    assert!(b.iter().all(|(_, l)| l.parse::<f64>().unwrap().is_finite()), "{b:?}");
    assert!((first(&a) - first(&b)).abs() < 0.05 * first(&a).abs(), "first loss fp32 {a:?} vs bf16 {b:?}");
    assert_ne!(a, b, "bf16 rounds differently from fp32");
    let recipe = std::fs::read_to_string(bf16.join("recipe.toml")).unwrap();
    assert!(recipe.contains("amp = \"bf16\""), "{recipe}");
}

/// The decoded-crop cache changes nothing but speed: a teacher trained with `--cache` logs the
/// same losses as one decoding every PNG, and `scmpl train cache` built ahead is reused as is.
#[test]
fn a_run_with_the_crop_cache_logs_the_same_losses() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = fixture(dir.path());
    let cache = dir.path().join("crop-cache");
    let o = run(&["train", "cache", "--manifest", manifest.to_str().unwrap(), "--cache", cache.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let said = String::from_utf8_lossy(&o.stdout).to_string();
    assert!(said.contains("0 crops reused") && said.contains("0 unreadable"), "{said}");
    let teacher = |out: &Path, extra: &[&str]| {
        let mut a = vec!["train", "teacher", "--manifest", manifest.to_str().unwrap(), "--out", out.to_str().unwrap()];
        a.extend(["--backbone", "resnet18", "--steps", "2", "--batch", "8", "--lr", "1e-3", "--no-progress", "-v"]);
        a.extend(extra);
        let o = run(&a);
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
        stderr(&o)
    };
    let (plain, cached) = (dir.path().join("plain"), dir.path().join("cached"));
    teacher(&plain, &[]);
    let log = teacher(&cached, &["--cache", cache.to_str().unwrap()]);
    assert!(log.contains("0 decoded"), "the cache built ahead serves the run: {log}");
    assert_eq!(losses(&plain), losses(&cached));
}
