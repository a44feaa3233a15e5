//! The `scmpl` binary: parses flags, builds a validated config, calls the library, and maps
//! the outcome to an exit code (0 all good, 1 could not run, 2 some inputs failed).

use std::path::PathBuf;
use std::process::ExitCode;

#[cfg(feature = "pipeline")]
use anyhow::Context;
use clap::{Args, Parser, Subcommand};

use scmpl::exit;

#[derive(Parser)]
#[command(name = "scmpl", version, about = "Deepfake-detection research: video-to-face extraction and SupCon-MPL training")]
struct Cli {
    /// More log output (-v info, -vv debug); RUST_LOG works too.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    verbose: u8,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Show the native libraries loaded, devices seen and detector files found.
    ///
    /// Example: scmpl doctor
    Doctor,
    /// Videos to face crops and manifests: scan, decode, detect, crop, write (the main job).
    ///
    /// Example: scmpl extract /data/dfdc --out /data/faces --sampling count:32 --device cuda
    ///
    /// Writes DIR/videos.csv, DIR/detections.csv, DIR/faces.csv, crops under DIR/faces/ and
    /// the resolved DIR/config.toml. Re-running the same command resumes: finished videos are
    /// skipped, unfinished ones redone.
    #[cfg(feature = "pipeline")]
    Extract(PipelineArgs),
    /// Scan, decode and detect only: DIR/videos.csv and DIR/detections.csv.
    ///
    /// Example: scmpl detect /data/dfdc --out /data/detections
    #[cfg(feature = "pipeline")]
    Detect(PipelineArgs),
    /// Crops and faces.csv from a saved detections.csv (videos.csv beside it), without detecting again.
    ///
    /// Example: scmpl crop --detections /data/detections/detections.csv --out /data/faces-margin --crop margin:0.33
    #[cfg(feature = "pipeline")]
    Crop(CropArgs),
    /// Image-folder datasets (FF++, Celeb-DF, CelebA, StyleGAN, labelled folders) to a faces.csv.
    ///
    /// Example: scmpl index --layout ffpp /data/ffpp_crops --out /data/ffpp/faces.csv
    Index {
        /// ffpp, celebdf, celeba, stylegan or folders.
        #[arg(long)]
        layout: String,
        /// Dataset root folder.
        root: PathBuf,
        /// faces.csv to write (paths relative to its folder).
        #[arg(long)]
        out: PathBuf,
        /// For --layout folders: TOP_FOLDER=LABEL (0 real, 1 fake), repeatable.
        #[arg(long = "label-map")]
        label_map: Vec<String>,
    },
    /// Leak-free splits: whole groups (a fake and its original) go to one split.
    ///
    /// Example: scmpl split faces.csv --by original --ratios 0.8,0.1,0.1 --seed 777 --out split.csv
    Split {
        /// faces.csv to split; with --preset paper, every manifest of the protocol.
        #[arg(required = true)]
        faces: Vec<PathBuf>,
        /// paper: the paper's data protocol; --out is then a folder receiving labelled.csv,
        /// unlabelled.csv, test_known.csv, test_same_gen.csv and test_post_gen.csv.
        #[arg(long)]
        preset: Option<String>,
        /// Group key: original, video or part.
        #[arg(long, default_value = "original")]
        by: String,
        /// Fractions of rows: train,test or train,val,test.
        #[arg(long, conflicts_with = "parts")]
        ratios: Option<String>,
        /// NAME=PART,PART (repeatable), e.g. --parts train=0,4,17 --parts test=10.
        #[arg(long)]
        parts: Vec<String>,
        #[arg(long, default_value_t = 777)]
        seed: u64,
        #[arg(long)]
        out: PathBuf,
    },
    /// Manifest tools: merge, validate, stats, export.
    #[command(subcommand)]
    Manifest(ManifestCommand),
    /// Evaluate a trained run on a manifest: accuracy, AUC, EER, AP, log loss; frame and video level.
    ///
    /// Example: scmpl eval --checkpoint runs/ft1 --manifest test.csv --by dataset
    #[cfg(feature = "train")]
    Eval {
        /// Run folder (recipe.toml + checkpoints/).
        #[arg(long)]
        checkpoint: PathBuf,
        /// faces.csv with labels.
        #[arg(long)]
        manifest: PathBuf,
        /// Group results by dataset, part or domain (the split column).
        #[arg(long)]
        by: Option<String>,
        /// paper: also the reference's scoring (mean accuracy of 100 shuffled batches of 512, AUC from hard labels).
        #[arg(long)]
        protocol: Option<String>,
        #[arg(long, default_value = "cpu")]
        device: String,
        /// Where metrics.csv and metrics.json go (default RUN/eval).
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Fake probability per face, frame and video (JSON lines), with a trained run.
    ///
    /// Example: scmpl predict clip.mp4 photo.png --checkpoint runs/ft1
    #[cfg(all(feature = "pipeline", feature = "train"))]
    Predict {
        #[arg(required = true)]
        inputs: Vec<PathBuf>,
        /// Run folder (recipe.toml + checkpoints/).
        #[arg(long)]
        checkpoint: PathBuf,
        /// Pipeline config for detection and crops (default pipeline/default.toml).
        #[arg(long)]
        config: Option<PathBuf>,
        /// Frames of a video to score: all, stride:N, count:N.
        #[arg(long)]
        sampling: Option<String>,
        #[arg(long, default_value = "cpu")]
        device: String,
    },
    /// Training curves of a run as a PNG (RUN/curves.png), from its metrics.csv.
    ///
    /// Example: scmpl report runs/t1
    #[cfg(feature = "pipeline")]
    Report { run: PathBuf },
    /// Export a trained run: torchvision-named safetensors weights and a traced TorchScript model.
    ///
    /// Example: scmpl export --checkpoint runs/ft1 --out exported/
    #[cfg(feature = "train")]
    Export {
        #[arg(long)]
        checkpoint: PathBuf,
        #[arg(long)]
        out: PathBuf,
    },
    /// Train detectors from faces.csv manifests.
    #[cfg(feature = "train")]
    #[command(subcommand)]
    Train(TrainCommand),
}

#[derive(Subcommand)]
enum ManifestCommand {
    /// Merge faces.csv files (shard outputs) into one; conflicting duplicates are refused.
    ///
    /// Example: scmpl manifest merge s0/faces.csv s1/faces.csv --out all/faces.csv
    Merge {
        #[arg(required = true)]
        files: Vec<PathBuf>,
        #[arg(long)]
        out: PathBuf,
    },
    /// Check schema, paths (inside the root, existing, decoding), labels and split leaks; exit 2 on problems.
    ///
    /// Example: scmpl manifest validate out/faces.csv out/videos.csv
    Validate {
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Only check that image files exist, without decoding them.
        #[arg(long)]
        no_decode: bool,
    },
    /// Counts by dataset, part, label and split.
    Stats { file: PathBuf },
    /// A contact sheet (PNG grid of crops with detector scores) per video.
    ///
    /// Example: scmpl manifest sheet out/faces.csv --out out/sheets
    #[cfg(feature = "pipeline")]
    Sheet {
        file: PathBuf,
        #[arg(long)]
        out: PathBuf,
        /// Crops per sheet (evenly spread over the video's faces).
        #[arg(long, default_value_t = 24)]
        per_video: usize,
        /// A trained run: captions also show each face's fake probability.
        #[arg(long)]
        checkpoint: Option<PathBuf>,
    },
    /// Export to folds.csv (DFDC winners' code) or DeepfakeBench JSON.
    ///
    /// Example: scmpl manifest export faces.csv --format folds --out folds.csv
    Export {
        file: PathBuf,
        /// folds or deepfakebench.
        #[arg(long)]
        format: String,
        /// Number of folds for --format folds.
        #[arg(long, default_value_t = 5)]
        folds: u64,
        #[arg(long)]
        out: PathBuf,
    },
}

fn run_index(layout: &str, root: &std::path::Path, out: &std::path::Path, label_map: &[String]) -> anyhow::Result<i32> {
    let layout: scmpl::index::Layout = layout.parse().map_err(anyhow::Error::msg)?;
    let mut map = std::collections::BTreeMap::new();
    for m in label_map {
        let (dir, label) = m.split_once('=').ok_or_else(|| anyhow::anyhow!("invalid --label-map '{m}': expected DIR=LABEL"))?;
        let label: u8 = label.parse().ok().filter(|l| *l <= 1).ok_or_else(|| anyhow::anyhow!("invalid label in '{m}': 0 or 1"))?;
        map.insert(dir.to_string(), label);
    }
    if layout == scmpl::index::Layout::Folders && map.is_empty() {
        anyhow::bail!("--layout folders needs at least one --label-map DIR=LABEL");
    }
    let r = scmpl::index::index(root, layout, &map, out).map_err(anyhow::Error::msg)?;
    for u in &r.unreadable {
        eprintln!("failed: {u}");
    }
    eprintln!("indexed {} images into {} ({} unreadable, {} outside the layout)", r.rows, out.display(), r.unreadable.len(), r.unlabelled);
    Ok(if r.unreadable.is_empty() { exit::OK } else { exit::SOME_FAILED })
}

fn run_split(faces: &std::path::Path, by: &str, ratios: Option<&str>, parts: &[String], seed: u64, out: &std::path::Path) -> anyhow::Result<i32> {
    let by: scmpl::split::GroupBy = by.parse().map_err(anyhow::Error::msg)?;
    let spec = match (ratios, parts.is_empty()) {
        (Some(r), true) => scmpl::split::parse_ratios(r),
        (None, false) => scmpl::split::parse_parts(parts),
        _ => Err("give --ratios or --parts".to_string()),
    }
    .map_err(anyhow::Error::msg)?;
    let mut rows: Vec<scmpl::manifest::FaceRow> = scmpl::manifest::read_rows(faces)?;
    scmpl::split::assign(&mut rows, by, &spec, seed).map_err(anyhow::Error::msg)?;
    // Paths stay valid when the split manifest is written elsewhere.
    let base = faces.parent().unwrap_or(std::path::Path::new("."));
    let out_dir = out.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(std::path::Path::new("."));
    std::fs::create_dir_all(out_dir)?;
    for r in rows.iter_mut() {
        r.path = scmpl::manifest_ops::rebase(&base.join(&r.path), out_dir).map_err(anyhow::Error::msg)?;
    }
    scmpl::index::write_faces(out, &rows).map_err(anyhow::Error::msg)?;
    println!("{:<8} {:<14} {:>5} {:>8}", "split", "dataset", "label", "faces");
    for ((s, d, l), n) in scmpl::split::counts(&rows) {
        println!("{:<8} {:<14} {:>5} {:>8}", if s.is_empty() { "-" } else { &s }, d, l, n);
    }
    eprintln!("no group straddles two splits; written {}", out.display());
    Ok(exit::OK)
}

fn run_paper_split(inputs: &[PathBuf], seed: u64, out: &std::path::Path) -> anyhow::Result<i32> {
    std::fs::create_dir_all(out)?;
    let mut rows = Vec::new();
    for f in inputs {
        let base = f.parent().unwrap_or(std::path::Path::new("."));
        for mut r in scmpl::manifest::read_rows::<scmpl::manifest::FaceRow>(f)? {
            r.path = scmpl::manifest_ops::rebase(&base.join(&r.path), out).map_err(anyhow::Error::msg)?;
            rows.push(r);
        }
    }
    for (name, set) in scmpl::split::paper_sets(&rows, seed) {
        let path = out.join(format!("{name}.csv"));
        scmpl::index::write_faces(&path, &set).map_err(anyhow::Error::msg)?;
        let fake = set.iter().filter(|r| r.label == Some(1)).count();
        println!("{name:<14} {:>8} faces ({} real, {fake} fake) -> {}", set.len(), set.len() - fake, path.display());
    }
    Ok(exit::OK)
}

fn run_manifest(cmd: ManifestCommand) -> anyhow::Result<i32> {
    match cmd {
        ManifestCommand::Merge { files, out } => {
            let n = scmpl::manifest_ops::merge_faces(&files, &out).map_err(anyhow::Error::msg)?;
            eprintln!("merged {} files: {n} rows in {}", files.len(), out.display());
            Ok(exit::OK)
        }
        ManifestCommand::Validate { files, no_decode } => {
            let mut bad = 0;
            for f in &files {
                let problems = scmpl::manifest_ops::validate(f, !no_decode);
                for p in &problems {
                    println!("{p}");
                }
                if problems.is_empty() {
                    println!("{}: ok", f.display());
                }
                bad += problems.len();
            }
            Ok(if bad == 0 { exit::OK } else { exit::SOME_FAILED })
        }
        #[cfg(feature = "pipeline")]
        ManifestCommand::Sheet { file, out, per_video, checkpoint } => {
            let probs = match checkpoint {
                None => None,
                #[cfg(feature = "train")]
                Some(run) => {
                    let det = scmpl::train::eval::load(&run, "cpu")?;
                    let rows: Vec<scmpl::manifest::FaceRow> = scmpl::manifest::read_rows(&file)?;
                    let base = file.parent().unwrap_or(std::path::Path::new("."));
                    let samples = std::sync::Arc::new(
                        rows.iter()
                            .map(|r| scmpl::train::data::Sample { path: base.join(&r.path), label: 0, video_id: r.video_id.clone() })
                            .collect::<Vec<_>>(),
                    );
                    let p = det.probabilities(&samples)?;
                    Some(rows.iter().zip(p).filter_map(|(r, p)| Some((r.path.clone(), p?))).collect::<std::collections::HashMap<_, _>>())
                }
                #[cfg(not(feature = "train"))]
                Some(_) => anyhow::bail!("--checkpoint needs the train feature"),
            };
            let written = scmpl::report::manifest_sheets(&file, &out, per_video.max(1), probs.as_ref()).map_err(anyhow::Error::msg)?;
            eprintln!("{} contact sheets in {}", written.len(), out.display());
            Ok(exit::OK)
        }
        ManifestCommand::Stats { file } => {
            print!("{}", scmpl::manifest_ops::stats(&file).map_err(anyhow::Error::msg)?);
            Ok(exit::OK)
        }
        ManifestCommand::Export { file, format, folds, out } => {
            let n = match format.as_str() {
                "folds" => scmpl::manifest_ops::export_folds(&file, folds, &out),
                "deepfakebench" => scmpl::manifest_ops::export_deepfakebench(&file, &out),
                other => Err(format!("unknown format '{other}': expected folds or deepfakebench")),
            }
            .map_err(anyhow::Error::msg)?;
            eprintln!("exported {n} rows to {}", out.display());
            Ok(exit::OK)
        }
    }
}

#[cfg(feature = "train")]
#[derive(Subcommand)]
enum TrainCommand {
    /// The SupCon teacher: SupCon on encoder + head, then a linear classifier on the frozen encoder.
    ///
    /// Example: scmpl train teacher --config models/supcon-mpl.toml --manifest out/faces.csv --out runs/t1
    Teacher(TeacherArgs),
    /// SupCon-MPL: the meta-pseudo-label loop (teacher from mpl.teacher, student new).
    ///
    /// Example: scmpl train mpl --config models/supcon-mpl.toml --teacher runs/t1 --out runs/mpl1
    Mpl {
        #[command(flatten)]
        common: TeacherArgs,
        /// Teacher run folder (mpl.teacher).
        #[arg(long)]
        teacher: Option<PathBuf>,
        /// MPL steps (mpl.steps).
        #[arg(long)]
        mpl_steps: Option<usize>,
        /// Labelled and unlabelled batch sizes, e.g. 64,448 (mpl.labelled_batch, mpl.unlabelled_batch).
        #[arg(long)]
        mpl_batch: Option<String>,
    },
    /// Student fine-tuning: SupCon with true labels, then the classifier with CE (from finetune.student).
    ///
    /// Example: scmpl train finetune --student runs/mpl1 --out runs/ft1
    Finetune {
        #[command(flatten)]
        common: TeacherArgs,
        /// MPL run folder (finetune.student).
        #[arg(long)]
        student: Option<PathBuf>,
    },
    /// Baselines: ce (backbone + fc, CE), supcon (the teacher alone), mpl (classic MPL, no SupCon).
    ///
    /// Example: scmpl train baseline ce --manifest faces.csv --out runs/ce
    Baseline {
        /// ce, supcon or mpl.
        kind: String,
        #[command(flatten)]
        common: TeacherArgs,
    },
    /// Throughput of a SupCon teacher step on synthetic inputs, and of the data loader (for scripts/bench-train).
    ///
    /// Example: scmpl train bench --backbone resnet50 --batch 64 --size 64 --manifest out/fixture/faces.csv
    Bench {
        #[arg(long, default_value = "resnet50")]
        backbone: String,
        #[arg(long, default_value_t = 64)]
        batch: i64,
        #[arg(long, default_value_t = 64)]
        size: i64,
        #[arg(long, default_value_t = 5)]
        steps: usize,
        /// Also time the loader on this faces.csv (split train).
        #[arg(long)]
        manifest: Option<PathBuf>,
        /// Loader worker threads.
        #[arg(long, default_value_t = 2)]
        workers: usize,
    },
    /// Build the small real-face training fixture (LFW faces and their face-swap-like manipulations).
    ///
    /// Example: scmpl train fixture --lfw tests/media/lfw_subset.npy --out out/fixture
    Fixture {
        /// scikit-image's lfw_subset.npy.
        #[arg(long)]
        lfw: PathBuf,
        /// Also use the crops of this faces.csv as real faces.
        #[arg(long)]
        extra: Option<PathBuf>,
        #[arg(long)]
        out: PathBuf,
        #[arg(long, default_value_t = 64)]
        size: usize,
        #[arg(long, default_value_t = 777)]
        seed: u64,
    },
}

#[cfg(feature = "train")]
#[derive(Args)]
struct TeacherArgs {
    /// Training recipe (TOML) overlaid on models/supcon-mpl.toml.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Continue the run in --out from its latest checkpoint.
    #[arg(long)]
    resume: bool,
    /// faces.csv to train on (data.manifest).
    #[arg(long)]
    manifest: Option<PathBuf>,
    /// Run folder (run.out).
    #[arg(long)]
    out: Option<PathBuf>,
    /// resnet18, resnet34, resnet50, efficientnet_b0 (model.backbone).
    #[arg(long)]
    backbone: Option<String>,
    /// Torchvision-named encoder weights, safetensors (model.init).
    #[arg(long)]
    init: Option<String>,
    /// cpu, cuda, cuda:N (run.device).
    #[arg(long)]
    device: Option<String>,
    /// paper or default (run.preset).
    #[arg(long)]
    preset: Option<String>,
    /// Steps of each SupCon and linear stage (teacher.* and finetune.*).
    #[arg(long)]
    steps: Option<usize>,
    /// Batch size of each SupCon and linear stage (teacher.* and finetune.*).
    #[arg(long)]
    batch: Option<usize>,
    /// Learning rate of every optimizer (teacher.lr).
    #[arg(long)]
    lr: Option<f64>,
    /// Input side in pixels (data.image_size).
    #[arg(long)]
    image_size: Option<usize>,
    /// Stop after this many steps, checkpointed (run.stop_after).
    #[arg(long)]
    stop_after: Option<usize>,
    /// No progress bar.
    #[arg(long)]
    no_progress: bool,
}

#[cfg(feature = "train")]
fn run_train(cmd: TrainCommand) -> anyhow::Result<i32> {
    match cmd {
        TrainCommand::Bench { backbone, batch, size, steps, manifest, workers } => {
            let bb: scmpl::train::model::Backbone = backbone.parse().map_err(anyhow::Error::msg)?;
            let step = scmpl::train::bench::supcon_step(bb, batch, size, 2, steps, tch::Device::Cpu);
            println!("supcon_step_images_per_s {step:.1}");
            if let Some(m) = manifest {
                let ips = scmpl::train::bench::loader(&m, "train", batch as usize, size as usize, workers, steps.max(4))?;
                println!("loader_images_per_s {ips:.1}");
            }
            Ok(exit::OK)
        }
        TrainCommand::Fixture { lfw, extra, out, size, seed } => {
            let path = scmpl::train::fixture::build(&lfw, extra.as_deref(), &out, size, seed).map_err(anyhow::Error::msg)?;
            eprintln!("fixture manifest: {}", path.display());
            Ok(exit::OK)
        }
        TrainCommand::Mpl { common, teacher, mpl_steps, mpl_batch } => {
            let (mut r, resume, progress) = recipe_of(common)?;
            if let Some(v) = teacher { r.mpl.teacher = v; }
            if let Some(v) = mpl_steps { r.mpl.steps = v; }
            if let Some(v) = mpl_batch {
                let (l, u) = v.split_once(',').ok_or_else(|| anyhow::anyhow!("--mpl-batch takes LABELLED,UNLABELLED"))?;
                r.mpl.labelled_batch = l.parse()?;
                r.mpl.unlabelled_batch = u.parse()?;
            }
            report(scmpl::train::mpl::run(&r, resume, progress)?)
        }
        TrainCommand::Finetune { common, student } => {
            let (mut r, resume, progress) = recipe_of(common)?;
            if let Some(v) = student { r.finetune.student = v; }
            let stages = scmpl::train::teacher::Stages::finetune(&r)?;
            report(scmpl::train::teacher::run_stages(&r, &stages, resume, progress)?)
        }
        TrainCommand::Baseline { kind, common } => {
            let (r, resume, progress) = recipe_of(common)?;
            match kind.as_str() {
                "supcon" => report(scmpl::train::teacher::run(&r, resume, progress)?),
                other => report(scmpl::train::baseline::run(other, &r, progress)?),
            }
        }
        TrainCommand::Teacher(a) => {
            let (r, resume, progress) = recipe_of(a)?;
            report(scmpl::train::teacher::run(&r, resume, progress)?)
        }
    }
}

/// The recipe with the shared training flags applied; (recipe, resume, progress).
#[cfg(feature = "train")]
fn recipe_of(a: TeacherArgs) -> anyhow::Result<(scmpl::train::config::Recipe, bool, bool)> {
    use std::io::IsTerminal;
    let mut r = scmpl::train::config::Recipe::load(a.config.as_deref())?;
    if let Some(v) = a.manifest { r.data.manifest = v; }
    if let Some(v) = a.out { r.run.out = v; }
    if let Some(v) = a.backbone { r.model.backbone = v; }
    if let Some(v) = a.init { r.model.init = v; }
    if let Some(v) = a.device { r.run.device = v; }
    if let Some(v) = a.preset { r.run.preset = v; }
    if let Some(v) = a.steps {
        (r.teacher.supcon_steps, r.teacher.linear_steps, r.finetune.supcon_steps, r.finetune.linear_steps) = (v, v, v, v);
    }
    if let Some(v) = a.batch {
        (r.teacher.supcon_batch, r.teacher.linear_batch, r.finetune.supcon_batch, r.finetune.linear_batch) = (v, v, v, v);
    }
    if let Some(v) = a.image_size { r.data.image_size = v; }
    if let Some(v) = a.lr { r.teacher.lr = v; r.mpl.lr = v; }
    if let Some(v) = a.stop_after { r.run.stop_after = v; }
    let progress = !a.no_progress && std::io::stderr().is_terminal();
    Ok((r, a.resume, progress))
}

/// Prints how a training run ended.
#[cfg(feature = "train")]
fn report(rep: scmpl::train::teacher::TeacherReport) -> anyhow::Result<i32> {
    if rep.skipped_images > 0 {
        eprintln!("warning: {} unreadable images skipped (listed above)", rep.skipped_images);
    }
    match rep.eval_accuracy {
        Some(acc) => eprintln!(
            "done at step {}: held-out accuracy {:.4} on {} images; run in {}",
            rep.last_step, acc, rep.eval_images, rep.run.display()
        ),
        None => eprintln!("stopped at step {} (checkpointed); continue with --resume; run in {}", rep.last_step, rep.run.display()),
    }
    Ok(exit::OK)
}

/// How faces are cut and stored; each overrides the same key of the config file.
#[cfg(feature = "pipeline")]
#[derive(Args)]
struct CropFlags {
    /// Crop rule: reference or margin:F.
    #[arg(long)]
    crop: Option<String>,
    /// Resize crops to SIZE x SIZE (0: native size).
    #[arg(long)]
    size: Option<u32>,
    /// png, jpeg or jpeg:Q.
    #[arg(long)]
    format: Option<String>,
}

#[cfg(feature = "pipeline")]
impl CropFlags {
    fn apply(&self, e: &mut scmpl::config::ExtractSection) {
        if let Some(v) = &self.crop { e.crop = v.clone(); }
        if let Some(v) = &self.format { e.format = v.clone(); }
        if let Some(v) = self.size { e.size = v; }
    }
}

/// Flags of `crop`.
#[cfg(feature = "pipeline")]
#[derive(Args)]
struct CropArgs {
    /// detections.csv written by detect or extract (videos.csv must be beside it).
    #[arg(long)]
    detections: PathBuf,
    /// Output folder (not the detections' folder).
    #[arg(long)]
    out: PathBuf,
    /// Pipeline config (TOML) overlaid on pipeline/default.toml (crop keys are used).
    #[arg(long)]
    config: Option<PathBuf>,
    #[command(flatten)]
    crops: CropFlags,
    /// Videos decoded at once.
    #[arg(long)]
    workers: Option<usize>,
    /// Process only shard K of N.
    #[arg(long)]
    shard: Option<String>,
    /// Re-run the videos an earlier run into --out failed on (their rows are replaced).
    #[arg(long)]
    retry_failed: bool,
    /// No progress bar.
    #[arg(long)]
    no_progress: bool,
}

/// Flags of `extract` and `detect`; each overrides the same key of the config file.
#[derive(Args)]
struct PipelineArgs {
    /// Video files or folders (walked recursively; DFDC metadata.json is read when present).
    #[arg(required = true)]
    videos: Vec<PathBuf>,
    /// Output folder.
    #[arg(long)]
    out: PathBuf,
    /// Pipeline config (TOML) overlaid on pipeline/default.toml.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Frames to sample: all, stride:N, count:N.
    #[arg(long)]
    sampling: Option<String>,
    /// cpu, cuda or cuda:N.
    #[arg(long)]
    device: Option<String>,
    #[command(flatten)]
    crops: CropFlags,
    /// all, or largest (one face per frame).
    #[arg(long)]
    faces: Option<String>,
    /// Dataset name in the manifests (default: dfdc when a metadata.json is present, else videos).
    #[arg(long)]
    dataset: Option<String>,
    /// Face detector: retinaface | mtcnn (facenet-pytorch's cascade; see pipeline/reference.toml).
    #[arg(long)]
    detector: Option<String>,
    /// Minimum face score.
    #[arg(long)]
    score_threshold: Option<f32>,
    /// Frames per detector call.
    #[arg(long)]
    batch_size: Option<usize>,
    /// Detector input side (frames are letterboxed into it).
    #[arg(long)]
    input_size: Option<u32>,
    /// Videos decoded at once.
    #[arg(long)]
    decode_workers: Option<usize>,
    /// Threads cropping and encoding faces.
    #[arg(long)]
    crop_workers: Option<usize>,
    /// Process only shard K of N (K/N, stable hash of the video id).
    #[arg(long)]
    shard: Option<String>,
    /// Folder with the detector model files (default: models/).
    #[arg(long)]
    models: Option<PathBuf>,
    /// Re-run the videos an earlier run into --out failed on (their rows are replaced).
    #[arg(long)]
    retry_failed: bool,
    /// No progress bar.
    #[arg(long)]
    no_progress: bool,
}

#[cfg(feature = "pipeline")]
impl PipelineArgs {
    fn config(&self) -> anyhow::Result<scmpl::config::PipelineConfig> {
        let mut c = scmpl::config::PipelineConfig::load(self.config.as_deref())?;
        let e = &mut c.extract;
        let set = |dst: &mut String, v: &Option<String>| {
            if let Some(v) = v {
                *dst = v.clone();
            }
        };
        set(&mut e.sampling, &self.sampling);
        set(&mut e.device, &self.device);
        set(&mut e.faces, &self.faces);
        set(&mut e.dataset, &self.dataset);
        self.crops.apply(e);
        if let Some(v) = self.decode_workers {
            e.decode_workers = v;
        }
        if let Some(v) = self.crop_workers {
            e.crop_workers = v;
        }
        let d = &mut c.detector;
        set(&mut d.name, &self.detector);
        if let Some(v) = self.score_threshold {
            d.score_threshold = v;
        }
        if let Some(v) = self.batch_size {
            d.batch_size = v;
        }
        if let Some(v) = self.input_size {
            d.input_size = v;
        }
        c.validate()?;
        Ok(c)
    }
}

#[cfg(feature = "pipeline")]
fn run_crop(args: CropArgs) -> anyhow::Result<i32> {
    use std::io::IsTerminal;
    let mut config = scmpl::config::PipelineConfig::load(args.config.as_deref())?;
    let e = &mut config.extract;
    args.crops.apply(e);
    if let Some(v) = args.workers { e.decode_workers = v; e.crop_workers = v; }
    config.validate()?;
    let shard = args.shard.as_deref().map(str::parse).transpose().map_err(anyhow::Error::msg)?;
    let opts = scmpl::extract::RunOptions {
        config,
        out: args.out.clone(),
        shard,
        stages: scmpl::extract::Stages::Extract,
        models: scmpl::runtime::models_dir(),
        progress: !args.no_progress && std::io::stderr().is_terminal(),
        retry_failed: args.retry_failed,
    };
    let s = scmpl::extract::from_detections::run(&args.detections, &opts)
        .with_context(|| format!("scmpl cannot crop into {}", args.out.display()))?;
    Ok(print_summary(&s, &args.out))
}

#[cfg(feature = "pipeline")]
fn run_pipeline(args: PipelineArgs, stages: scmpl::extract::Stages) -> anyhow::Result<i32> {
    use std::io::IsTerminal;
    let config = args.config()?;
    let shard = args.shard.as_deref().map(str::parse).transpose().map_err(anyhow::Error::msg)?;
    let opts = scmpl::extract::RunOptions {
        config,
        out: args.out.clone(),
        shard,
        stages,
        models: args.models.clone().unwrap_or_else(scmpl::runtime::models_dir),
        progress: !args.no_progress && std::io::stderr().is_terminal(),
        retry_failed: args.retry_failed,
    };
    let s = scmpl::extract::run(&args.videos, &opts).with_context(|| format!("scmpl cannot run into {}", args.out.display()))?;
    Ok(print_summary(&s, &args.out))
}

/// Prints a run's warnings, failures and totals; returns the exit code.
#[cfg(feature = "pipeline")]
fn print_summary(s: &scmpl::extract::Summary, out: &std::path::Path) -> i32 {
    for w in &s.warnings {
        eprintln!("warning: {w}");
    }
    for f in &s.failures {
        eprintln!("failed: {f}");
    }
    eprintln!(
        "videos: {} ok ({} without faces), {} failed, {} already done; {} frames, {} faces in {:.1}s ({:.1} frames/s)",
        s.videos_ok,
        s.videos_without_faces,
        s.failures.len(),
        s.videos_skipped,
        s.frames,
        s.faces,
        s.elapsed.as_secs_f64(),
        s.frames as f64 / s.elapsed.as_secs_f64().max(1e-9),
    );
    eprintln!("manifests: {}", out.display());
    if s.any_failed() { exit::SOME_FAILED } else { exit::OK }
}

fn run(cli: Cli) -> anyhow::Result<i32> {
    match cli.command {
        Command::Doctor => {
            #[cfg(feature = "pipeline")]
            {
                let r = scmpl::doctor::run();
                print!("{}", r.text);
                Ok(if r.problems == 0 { exit::OK } else { exit::CANNOT_RUN })
            }
            #[cfg(not(feature = "pipeline"))]
            {
                println!("scmpl {} (train-only build: no FFmpeg, OpenCV or ONNX Runtime)", env!("CARGO_PKG_VERSION"));
                Ok(exit::OK)
            }
        }
        #[cfg(feature = "pipeline")]
        Command::Extract(args) => run_pipeline(args, scmpl::extract::Stages::Extract),
        #[cfg(feature = "pipeline")]
        Command::Detect(args) => run_pipeline(args, scmpl::extract::Stages::Detect),
        #[cfg(feature = "pipeline")]
        Command::Crop(args) => run_crop(args),
        Command::Index { layout, root, out, label_map } => run_index(&layout, &root, &out, &label_map),
        Command::Split { faces, preset, by, ratios, parts, seed, out } => match preset.as_deref() {
            Some("paper") => run_paper_split(&faces, seed, &out),
            Some(other) => Err(anyhow::anyhow!("unknown preset '{other}': expected paper")),
            None if faces.len() == 1 => run_split(&faces[0], &by, ratios.as_deref(), &parts, seed, &out),
            None => Err(anyhow::anyhow!("split takes one faces.csv (several only with --preset paper)")),
        },
        Command::Manifest(cmd) => run_manifest(cmd),
        #[cfg(feature = "pipeline")]
        Command::Report { run } => {
            let p = scmpl::report::training_curves(&run).map_err(anyhow::Error::msg)?;
            eprintln!("training curves: {}", p.display());
            Ok(exit::OK)
        }
        #[cfg(feature = "train")]
        Command::Train(cmd) => run_train(cmd),
        #[cfg(all(feature = "pipeline", feature = "train"))]
        Command::Predict { inputs, checkpoint, config, sampling, device } => {
            let mut c = scmpl::config::PipelineConfig::load(config.as_deref())?;
            if let Some(s) = sampling { c.extract.sampling = s; }
            c.extract.device = device.clone();
            let settings = c.validate()?;
            let clf = scmpl::train::eval::load(&checkpoint, &device)?;
            let mut det = scmpl::detect::build(&settings.detector, settings.device, &scmpl::runtime::models_dir())?;
            let mut failed = 0;
            for input in &inputs {
                match scmpl::predict::predict(input, &settings, &mut det, &clf) {
                    Ok(v) => println!("{v}"),
                    Err(e) => {
                        failed += 1;
                        eprintln!("failed: {e}");
                        println!("{}", serde_json::json!({ "input": input, "error": e }));
                    }
                }
            }
            Ok(if failed == 0 { exit::OK } else { exit::SOME_FAILED })
        }
        #[cfg(feature = "train")]
        Command::Export { checkpoint, out } => {
            for p in scmpl::train::eval::export(&checkpoint, &out)? {
                eprintln!("written {}", p.display());
            }
            Ok(exit::OK)
        }
        #[cfg(feature = "train")]
        Command::Eval { checkpoint, manifest, by, protocol, device, out } => {
            let paper = match protocol.as_deref() {
                None => false,
                Some("paper") => true,
                Some(other) => anyhow::bail!("unknown protocol '{other}': expected paper"),
            };
            if let Some(b) = by.as_deref().filter(|b| !["dataset", "part", "domain", "split"].contains(b)) {
                anyhow::bail!("invalid --by '{b}': expected dataset, part or domain");
            }
            let out = out.unwrap_or_else(|| checkpoint.join("eval"));
            let reports = scmpl::train::eval::run(&checkpoint, &manifest, by.as_deref(), paper, &device, &out)?;
            let f = |v: Option<f64>| v.map(|x| format!("{x:.4}")).unwrap_or_else(|| "undefined".into());
            println!("{:<16} {:<10} {:>6} {:>8} {:>9} {:>9} {:>9} {:>8}", "domain", "level", "n", "accuracy", "auc", "eer", "ap", "logloss");
            for r in &reports {
                for (level, m) in [("frame", &r.frame), ("video_mean", &r.video_mean), ("video_max", &r.video_max)] {
                    println!("{:<16} {:<10} {:>6} {:>8.4} {:>9} {:>9} {:>9} {:>8.4}", r.domain, level, m.n, m.accuracy, f(m.auc), f(m.eer), f(m.ap), m.log_loss);
                }
                if r.frame.auc.is_none() {
                    println!("{:<16} AUC, EER and AP are undefined: the labels are all one class ({} real, {} fake)", r.domain, r.frame.real, r.frame.fake);
                }
                if let Some(a) = r.paper_accuracy {
                    println!("{:<16} paper protocol: accuracy {:.4} (100 batches of 512), hard-label AUC {}", r.domain, a, f(r.paper_hard_auc));
                }
            }
            #[cfg(feature = "pipeline")]
            {
                let curves: Vec<(String, Vec<(f64, f64)>)> =
                    reports.iter().filter(|r| r.frame.auc.is_some()).map(|r| (r.domain.clone(), r.roc.clone())).collect();
                if !curves.is_empty() {
                    scmpl::report::roc_chart(&curves, &out.join("roc.png")).map_err(anyhow::Error::msg)?;
                }
            }
            eprintln!("written {}/metrics.csv, metrics.json and roc.png", out.display());
            Ok(exit::OK)
        }
    }
}

fn main() -> ExitCode {
    // Bad flags are "could not run" (1), not clap's default 2, which means "some inputs failed" here.
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { exit::CANNOT_RUN as u8 } else { exit::OK as u8 });
        }
    };
    let default = match cli.verbose {
        0 => "warn",
        1 => "info",
        _ => "debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).without_time().init();
    match run(cli) {
        Ok(code) => ExitCode::from(code as u8),
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(exit::CANNOT_RUN as u8)
        }
    }
}
