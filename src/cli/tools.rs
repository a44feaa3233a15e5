//! `index`, `split`, `manifest ...`, `report` and `doctor`.

use std::path::PathBuf;

use clap::{Args, Subcommand, ValueEnum};

use super::output;
use scmpl::exit;
use scmpl::tools::export::Format;
use scmpl::tools::index::Layout;
use scmpl::tools::split::{self, GroupBy};

/// Flags of `index`.
#[derive(Args)]
pub struct IndexArgs {
    #[arg(long, value_enum)]
    layout: Layout,
    /// Dataset root folder.
    root: PathBuf,
    /// faces.csv to write (paths relative to its folder).
    #[arg(long)]
    out: PathBuf,
    /// For --layout folders: TOP_FOLDER=LABEL (0 real, 1 fake), repeatable.
    #[arg(long = "label-map")]
    label_map: Vec<String>,
}

/// Data protocols `split` knows by name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SplitPreset {
    /// The paper's: labelled, unlabelled and three test sets (DESIGN.md section 5).
    Paper,
}

/// Flags of `split`.
#[derive(Args)]
pub struct SplitArgs {
    /// faces.csv to split; with --preset paper, every manifest of the protocol.
    #[arg(required = true)]
    faces: Vec<PathBuf>,
    /// paper: the paper's data protocol; --out is then a folder receiving labelled.csv,
    /// unlabelled.csv, test_known.csv, test_same_gen.csv and test_post_gen.csv.
    #[arg(long, value_enum)]
    preset: Option<SplitPreset>,
    /// Group key.
    #[arg(long, value_enum, default_value = "original")]
    by: GroupBy,
    /// Fractions of rows: train,test or train,val,test.
    #[arg(long, conflicts_with = "parts")]
    ratios: Option<String>,
    /// NAME=PART,PART (repeatable), e.g. --parts train=0,4,17 --parts test=10.
    #[arg(long)]
    parts: Vec<String>,
    #[arg(long, default_value_t = 777)]
    seed: u64,
    /// With --preset paper: NAME=N frames for a sampled source (ffpp 256000, dfdc 128000,
    /// celebdf 128000, celebdf_test 51200, post_gen 25600 by default), repeatable.
    #[arg(long = "paper-size")]
    paper_size: Vec<String>,
    #[arg(long)]
    out: PathBuf,
}

#[derive(Subcommand)]
pub enum ManifestCommand {
    /// Merge shard folders (all three manifests; only a complete set of finished shards made
    /// with one config), or faces.csv files, into one; conflicting duplicates are refused.
    ///
    /// Example: scmpl manifest merge OUT/shards/* --out OUT/merged
    ///
    /// Example: scmpl manifest merge s0/faces.csv s1/faces.csv --out all/faces.csv
    Merge {
        /// Shard folders (OUT/shards/K-of-N) or faces.csv files.
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// A folder for shard folders, a faces.csv for faces.csv files.
        #[arg(long)]
        out: PathBuf,
        /// Merge the finished shards of an incomplete set, listing what is left out.
        #[arg(long)]
        allow_partial: bool,
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
    /// Export to folds.csv (DFDC winners' code) or DeepfakeBench's layout (JSON per dataset and a
    /// frames tree; see README).
    ///
    /// Example: scmpl manifest export faces.csv --format folds --out folds.csv
    ///
    /// Example: scmpl manifest export split.csv --format deepfakebench --out dfb/
    Export {
        file: PathBuf,
        #[arg(long, value_enum)]
        format: Format,
        /// Number of folds for --format folds.
        #[arg(long, default_value_t = 5)]
        folds: u64,
        /// --format deepfakebench: the folder DeepfakeBench finds OUT/rgb at, relative to its
        /// own folder (frame paths start with ./PREFIX/).
        #[arg(long, default_value = "datasets/scmpl")]
        root_prefix: String,
        /// --format deepfakebench: the FF++ compression level the rows are filed under.
        #[arg(long, default_value = "c23")]
        compression: String,
        /// folds.csv, or a folder for deepfakebench.
        #[arg(long)]
        out: PathBuf,
    },
}

/// `scmpl index`.
pub fn index(a: IndexArgs) -> anyhow::Result<i32> {
    let map = scmpl::tools::index::label_map(a.layout, &a.label_map)?;
    let r = scmpl::tools::index::index(&a.root, a.layout, &map, &a.out)?;
    for u in &r.unreadable {
        eprintln!("failed: {u}");
    }
    eprintln!("indexed {} images into {} ({} unreadable, {} outside the layout)", r.rows, a.out.display(), r.unreadable.len(), r.unlabelled);
    Ok(super::exit_code(!r.unreadable.is_empty()))
}

/// `scmpl split`.
pub fn split(a: SplitArgs) -> anyhow::Result<i32> {
    match a.preset {
        Some(SplitPreset::Paper) => {
            let mut sizes = scmpl::tools::paper::PaperSizes::default();
            for item in &a.paper_size {
                sizes.set(item)?;
            }
            let (sets, files) = scmpl::tools::paper::paper_files(&a.faces, a.seed, sizes, &a.out)?;
            output::line(format_args!("{:<14} {:<22} {:>9} {:>9}", "set", "source", "available", "taken"))?;
            for (set, source, available, taken) in &sets.sources {
                output::line(format_args!("{set:<14} {source:<22} {available:>9} {taken:>9}"))?;
            }
            for ((name, set), path) in sets.sets.iter().zip(&files) {
                let fake = set.iter().filter(|r| r.label == Some(1)).count();
                output::line(format_args!("{name:<14} {:>8} faces ({} real, {fake} fake) -> {}", set.len(), set.len() - fake, path.display()))?;
            }
        }
        None => {
            let [faces] = a.faces.as_slice() else {
                anyhow::bail!("split takes one faces.csv (several only with --preset paper)");
            };
            let spec = match (&a.ratios, a.parts.is_empty()) {
                (Some(r), true) => split::parse_ratios(r)?,
                (None, false) => split::parse_parts(&a.parts)?,
                _ => anyhow::bail!("give --ratios or --parts"),
            };
            let rows = split::split_file(faces, a.by, &spec, a.seed, &a.out)?;
            output::line(format_args!("{:<8} {:<14} {:>5} {:>8}", "split", "dataset", "label", "faces"))?;
            for ((s, d, l), n) in split::counts(&rows) {
                output::line(format_args!("{:<8} {:<14} {:>5} {:>8}", if s.is_empty() { "-" } else { &s }, d, l, n))?;
            }
            eprintln!("no group straddles two splits; written {}", a.out.display());
        }
    }
    Ok(exit::OK)
}

/// `scmpl manifest ...`.
pub fn manifest(cmd: ManifestCommand) -> anyhow::Result<i32> {
    match cmd {
        ManifestCommand::Merge { files, out, allow_partial } if files.iter().all(|f| f.is_dir()) => {
            let r = scmpl::tools::merge::merge_shards(&files, &out, allow_partial)?;
            for l in &r.left_out {
                eprintln!("left out: {l}");
            }
            eprintln!(
                "merged shards {:?} of {}: {} videos, {} detections, {} faces in {}",
                r.shards, r.count, r.videos, r.detections, r.faces, out.display()
            );
            Ok(super::exit_code(!r.left_out.is_empty()))
        }
        ManifestCommand::Merge { files, out, .. } => {
            let n = scmpl::tools::merge::merge_faces(&files, &out)?;
            eprintln!("merged {} files: {n} rows in {}", files.len(), out.display());
            Ok(exit::OK)
        }
        ManifestCommand::Validate { files, no_decode } => {
            let mut bad = 0;
            for f in &files {
                let problems = scmpl::tools::validate::validate(f, !no_decode);
                for p in &problems {
                    output::line(p)?;
                }
                if problems.is_empty() {
                    output::line(format_args!("{}: ok", f.display()))?;
                }
                bad += problems.len();
            }
            Ok(super::exit_code(bad > 0))
        }
        #[cfg(feature = "pipeline")]
        ManifestCommand::Sheet { file, out, per_video, checkpoint } => {
            let probs = match checkpoint {
                None => None,
                #[cfg(feature = "train")]
                Some(run) => Some(scmpl::train::infer::Classifier::load(&run, "cpu")?.probabilities_of_manifest(&file)?),
                #[cfg(not(feature = "train"))]
                Some(_) => anyhow::bail!("--checkpoint needs the train feature"),
            };
            let written = scmpl::tools::report::manifest_sheets(&file, &out, per_video.max(1), probs.as_ref())?;
            eprintln!("{} contact sheets in {}", written.len(), out.display());
            Ok(exit::OK)
        }
        ManifestCommand::Stats { file } => {
            output::print(scmpl::tools::stats::stats(&file)?)?;
            Ok(exit::OK)
        }
        ManifestCommand::Export { file, format: Format::Folds, folds, out, .. } => {
            let n = scmpl::tools::export::export_folds(&file, folds, &out)?;
            eprintln!("exported {n} rows to {}", out.display());
            Ok(exit::OK)
        }
        ManifestCommand::Export { file, format: Format::DeepfakeBench, out, root_prefix, compression, .. } => {
            let r = scmpl::tools::export::export_deepfakebench(&file, &out, &root_prefix, &compression)?;
            eprintln!("exported {} frames (one face per frame) to {}", r.frames, out.display());
            for (n, what) in [
                (r.extra_faces, "faces left out: one face per frame, from the video's main track (most faces), else the largest"),
                (r.off_track, "frames took a face off their video's main track (it has none there)"),
                (r.unlabelled, "unlabelled rows left out"),
                (r.other_split, "rows of splits DeepfakeBench has no mode for (e.g. unlabelled) left out"),
            ] {
                if n > 0 {
                    eprintln!("  {n} {what}");
                }
            }
            let root = root_prefix.trim_matches('/');
            eprintln!("In DeepfakeBench's folder: ln -s {} {root}", std::path::absolute(out.join("rgb"))?.display());
            eprintln!("In its config: lmdb: false, dataset_json_folder: {}", std::path::absolute(out.join("dataset_json"))?.display());
            if !r.label_dict.is_empty() {
                eprintln!("and these lines under label_dict (in train_config.yaml / test_config.yaml):");
                for l in &r.label_dict {
                    output::line(format_args!("  {l}"))?;
                }
            }
            Ok(exit::OK)
        }
    }
}

/// `scmpl report RUN`.
#[cfg(feature = "pipeline")]
pub fn report(run: &std::path::Path) -> anyhow::Result<i32> {
    let p = scmpl::tools::report::training_curves(run)?;
    eprintln!("training curves: {}", p.display());
    Ok(exit::OK)
}

/// `scmpl doctor`.
pub fn doctor() -> anyhow::Result<i32> {
    #[cfg(feature = "pipeline")]
    {
        let r = scmpl::tools::doctor::run();
        output::print(&r.text)?;
        Ok(if r.problems == 0 { exit::OK } else { exit::CANNOT_RUN })
    }
    #[cfg(not(feature = "pipeline"))]
    {
        output::line(format_args!("scmpl {} (train-only build: no FFmpeg, OpenCV or ONNX Runtime)", env!("CARGO_PKG_VERSION")))?;
        let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
        output::line(format_args!("devices      cpu ({cores} cores)"))?;
        #[cfg(feature = "train")]
        {
            let cudnn = if tch::Cuda::cudnn_is_available() { "cuDNN available" } else { "no cuDNN" };
            output::line(format_args!("             cuda: {} device(s) for training (libtorch), {cudnn}", tch::Cuda::device_count()))?;
        }
        Ok(exit::OK)
    }
}
