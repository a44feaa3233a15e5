//! The command line: clap types (a `ValueEnum` for every closed set of values), the overlay of
//! flags on config files, and the printing of summaries. One file per half of the tool:
//! - [`pipeline`]: `extract`, `detect`, `crop`;
//! - [`tools`]: `index`, `split`, `manifest ...`, `report`, `doctor`;
//! - [`train`]: `train ...`, `eval`, `export`; [`predict`]: `predict`;
//! - [`output`]: standard output that a closed pipe ends quietly.

pub mod output;
#[cfg(feature = "pipeline")]
pub mod pipeline;
#[cfg(all(feature = "pipeline", feature = "train"))]
pub mod predict;
pub mod tools;
#[cfg(feature = "train")]
pub mod train;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use scmpl::exit;

#[derive(Parser)]
#[command(name = "scmpl", version, about = "Deepfake-detection research: video-to-face extraction and SupCon-MPL training")]
pub struct Cli {
    /// More log output (-v info, -vv debug); RUST_LOG works too.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
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
    Extract(pipeline::PipelineArgs),
    /// Scan, decode and detect only: DIR/videos.csv and DIR/detections.csv.
    ///
    /// Example: scmpl detect /data/dfdc --out /data/detections
    #[cfg(feature = "pipeline")]
    Detect(pipeline::PipelineArgs),
    /// Crops and faces.csv from a saved detections.csv (videos.csv beside it), without detecting again.
    ///
    /// Example: scmpl crop --detections /data/detections/detections.csv --out /data/faces-margin --crop margin:0.33
    #[cfg(feature = "pipeline")]
    Crop(pipeline::CropArgs),
    /// Image-folder datasets (FF++, Celeb-DF, CelebA, StyleGAN, labelled folders) to a faces.csv.
    ///
    /// Example: scmpl index --layout ffpp /data/ffpp_crops --out /data/ffpp/faces.csv
    Index(tools::IndexArgs),
    /// Leak-free splits: whole groups (a fake and its original) go to one split.
    ///
    /// Example: scmpl split faces.csv --by original --ratios 0.8,0.1,0.1 --seed 777 --out split.csv
    Split(tools::SplitArgs),
    /// Manifest tools: merge, validate, stats, sheet, export.
    #[command(subcommand)]
    Manifest(tools::ManifestCommand),
    /// Evaluate a trained run on a manifest: accuracy, AUC, EER, AP, log loss; frame and video level.
    ///
    /// Example: scmpl eval --checkpoint runs/ft1 --manifest test.csv --by dataset
    #[cfg(feature = "train")]
    Eval(train::EvalArgs),
    /// Fake probability per face, frame and video (JSON lines), with a trained run.
    ///
    /// Example: scmpl predict clip.mp4 photo.png --checkpoint runs/ft1
    #[cfg(all(feature = "pipeline", feature = "train"))]
    Predict(predict::PredictArgs),
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
    Train(train::TrainCommand),
    /// A run folder from weights trained elsewhere (the authors' released models after
    /// scripts/convert-authors), for eval, predict, export and train mpl.
    ///
    /// Example: scmpl import --encoder authors/encoder.safetensors --classifier authors/classifier.safetensors --out runs/authors
    #[cfg(feature = "train")]
    Import(train::ImportArgs),
}

/// Runs one command; returns its exit code (errors are "could not run").
pub fn run(cli: Cli) -> anyhow::Result<i32> {
    match cli.command {
        Command::Doctor => tools::doctor(),
        #[cfg(feature = "pipeline")]
        Command::Extract(args) => pipeline::extract(args, scmpl::pipeline::Mode::Extract),
        #[cfg(feature = "pipeline")]
        Command::Detect(args) => pipeline::extract(args, scmpl::pipeline::Mode::Detect),
        #[cfg(feature = "pipeline")]
        Command::Crop(args) => pipeline::crop(args),
        Command::Index(args) => tools::index(args),
        Command::Split(args) => tools::split(args),
        Command::Manifest(cmd) => tools::manifest(cmd),
        #[cfg(feature = "pipeline")]
        Command::Report { run } => tools::report(&run),
        #[cfg(feature = "train")]
        Command::Train(cmd) => train::train(cmd),
        #[cfg(feature = "train")]
        Command::Eval(args) => train::eval(args),
        #[cfg(feature = "train")]
        Command::Export { checkpoint, out } => train::export(&checkpoint, &out),
        #[cfg(feature = "train")]
        Command::Import(args) => train::import(args),
        #[cfg(all(feature = "pipeline", feature = "train"))]
        Command::Predict(args) => predict::predict(args),
    }
}

/// Logs to standard error: warnings by default, `-v` info, `-vv` debug; `RUST_LOG` wins.
pub fn init_logging(verbose: u8) {
    let default = match verbose {
        0 => "warn",
        1 => "info",
        _ => "debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).without_time().init();
}

/// Whether progress bars are drawn: not asked away, and standard error is a terminal.
pub fn show_progress(no_progress: bool) -> bool {
    use std::io::IsTerminal;
    !no_progress && std::io::stderr().is_terminal()
}

/// The exit code of a run that went through its inputs: 2 when some failed.
pub fn exit_code(any_failed: bool) -> i32 {
    if any_failed {
        exit::SOME_FAILED
    } else {
        exit::OK
    }
}
