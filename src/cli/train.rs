//! `train ...`, `eval` and `export`: the training flags overlaid on the recipe, and how a run
//! ended.

use std::path::{Path, PathBuf};

use clap::{Args, Subcommand, ValueEnum};

use super::output;
use scmpl::exit;
use scmpl::shard::ShardSpec;
use scmpl::train::accel::Amp;
use scmpl::train::eval::GroupBy;
use scmpl::train::model::Backbone;
use scmpl::train::recipe::{Preset, Recipe, TrainSettings};
use scmpl::train::run::baseline::Baseline;
use scmpl::train::run::{self, RunReport};

#[derive(Subcommand)]
pub enum TrainCommand {
    /// The SupCon teacher: SupCon on encoder + head, then a linear classifier on the frozen encoder.
    ///
    /// Example: scmpl train teacher --config models/supcon-mpl.toml --manifest out/faces.csv --out runs/t1
    Teacher(TrainArgs),
    /// SupCon-MPL: the meta-pseudo-label loop (teacher from mpl.teacher, student new).
    ///
    /// Example: scmpl train mpl --config models/supcon-mpl.toml --teacher runs/t1 --out runs/mpl1
    Mpl {
        #[command(flatten)]
        common: TrainArgs,
        /// Teacher run folder (mpl.teacher).
        #[arg(long)]
        teacher: Option<PathBuf>,
        /// MPL steps (mpl.steps).
        #[arg(long)]
        mpl_steps: Option<usize>,
        /// Labelled and unlabelled batch sizes, e.g. 64,448 (mpl.labelled_batch, mpl.unlabelled_batch).
        #[arg(long, value_parser = parse_pair)]
        mpl_batch: Option<(usize, usize)>,
    },
    /// Student fine-tuning: SupCon with true labels, then the classifier with CE (from finetune.student).
    ///
    /// Example: scmpl train finetune --student runs/mpl1 --out runs/ft1
    Finetune {
        #[command(flatten)]
        common: TrainArgs,
        /// MPL run folder (finetune.student).
        #[arg(long)]
        student: Option<PathBuf>,
    },
    /// Baselines: ce (backbone + fc, CE), supcon (the teacher alone), mpl (classic MPL, no SupCon).
    ///
    /// Example: scmpl train baseline ce --manifest faces.csv --out runs/ce
    Baseline {
        #[arg(value_enum)]
        kind: Baseline,
        #[command(flatten)]
        common: TrainArgs,
    },
    /// Throughput of a SupCon teacher step or a SupCon-MPL step on synthetic inputs, or of the
    /// data loader (for scripts/bench-train and scripts/gpu-check).
    ///
    /// Example: scmpl train bench --backbone resnet50 --batch 64 --size 64
    Bench {
        /// What to time.
        #[arg(long, value_enum, default_value = "supcon")]
        what: BenchWhat,
        #[arg(long, value_enum, default_value = "resnet50")]
        backbone: Backbone,
        /// SupCon batch (x 2 views), and the loader's batch.
        #[arg(long, default_value_t = 64)]
        batch: i64,
        #[arg(long, default_value_t = 64)]
        size: i64,
        /// Timed steps (after 2 untimed).
        #[arg(long, default_value_t = 5)]
        steps: usize,
        /// MPL's labelled,unlabelled batch sizes (x 2 views each).
        #[arg(long, value_parser = parse_pair, default_value = "8,56")]
        mpl: (usize, usize),
        /// The loader's faces.csv (split train).
        #[arg(long)]
        manifest: Option<PathBuf>,
        /// Loader worker threads.
        #[arg(long, default_value_t = 2)]
        workers: usize,
        /// Batches the loader is timed on.
        #[arg(long, default_value_t = 16)]
        loader_batches: usize,
        /// Read the crops from this decoded-crop cache folder (built first, untimed, if needed).
        #[arg(long)]
        cache: Option<PathBuf>,
        /// cpu, cuda or cuda:N.
        #[arg(long, default_value = "cpu")]
        device: String,
        /// Autocast of the encoder: none or bf16.
        #[arg(long, value_enum, default_value = "none")]
        amp: Amp,
        /// Full fp32 on CUDA (TF32 is on by default, as in training).
        #[arg(long)]
        no_tf32: bool,
    },
    /// Build (or update) the decoded-crop cache of a manifest ahead of training (data.cache).
    ///
    /// Example: scmpl train cache --manifest out/faces.csv --cache out/crop-cache
    Cache {
        #[arg(long)]
        manifest: PathBuf,
        /// Cache folder (the same as the runs' --cache).
        #[arg(long)]
        cache: PathBuf,
        /// Decoding threads.
        #[arg(long, default_value_t = 4)]
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

/// What `train bench` times.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum BenchWhat {
    Supcon,
    Mpl,
    Loader,
}

/// `A,B` as two numbers.
fn parse_pair(s: &str) -> Result<(usize, usize), String> {
    let (a, b) = s.split_once(',').ok_or("expected LABELLED,UNLABELLED")?;
    Ok((a.trim().parse().map_err(|e| format!("{a}: {e}"))?, b.trim().parse().map_err(|e| format!("{b}: {e}"))?))
}

/// Flags every training stage takes; each overrides its recipe key.
#[derive(Args)]
pub struct TrainArgs {
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
    /// Encoder (model.backbone).
    #[arg(long, value_enum)]
    backbone: Option<Backbone>,
    /// Torchvision-named encoder weights, safetensors (model.init).
    #[arg(long)]
    init: Option<String>,
    /// cpu, cuda, cuda:N (run.device).
    #[arg(long)]
    device: Option<String>,
    /// Input scaling and reference quirks (run.preset).
    #[arg(long, value_enum)]
    preset: Option<Preset>,
    /// Autocast of the encoder's forward pass (run.amp): none or bf16.
    #[arg(long, value_enum)]
    amp: Option<Amp>,
    /// Full fp32 matmuls and convolutions on CUDA (run.tf32 = false; TF32 is on by default).
    #[arg(long)]
    no_tf32: bool,
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
    /// Draw at most K faces of each face track per epoch, so long tracks do not dominate
    /// (data.per_track; 0 = every face).
    #[arg(long)]
    per_track: Option<usize>,
    /// Decoded-crop cache folder, built or updated at the start (data.cache).
    #[arg(long)]
    cache: Option<PathBuf>,
    /// Stop after this many steps, checkpointed (run.stop_after).
    #[arg(long)]
    stop_after: Option<usize>,
    /// Run K of N independent runs (K/N, or auto/N: K from SLURM_ARRAY_TASK_ID or
    /// JOB_COMPLETION_INDEX): seed run.seed + K, run folder OUT/run-K.
    #[arg(long)]
    run_index: Option<ShardSpec>,
    /// No progress bar.
    #[arg(long)]
    no_progress: bool,
}

impl TrainArgs {
    /// The recipe with these flags applied (`extra` sets a stage's own keys), validated.
    fn settings(&self, extra: impl FnOnce(&mut Recipe)) -> anyhow::Result<TrainSettings> {
        let mut r = Recipe::load(self.config.as_deref())?;
        if let Some(v) = &self.manifest { r.data.manifest = v.clone(); }
        if let Some(v) = &self.out { r.run.out = v.clone(); }
        if let Some(v) = self.backbone { r.model.backbone = v.as_str().into(); }
        if let Some(v) = &self.init { r.model.init = v.clone(); }
        if let Some(v) = &self.device { r.run.device = v.clone(); }
        if let Some(v) = self.preset { r.run.preset = v.as_str().into(); }
        if let Some(v) = self.amp { r.run.amp = v.as_str().into(); }
        if self.no_tf32 { r.run.tf32 = false; }
        if let Some(v) = self.steps {
            (r.teacher.supcon_steps, r.teacher.linear_steps, r.finetune.supcon_steps, r.finetune.linear_steps) = (v, v, v, v);
        }
        if let Some(v) = self.batch {
            (r.teacher.supcon_batch, r.teacher.linear_batch, r.finetune.supcon_batch, r.finetune.linear_batch) = (v, v, v, v);
        }
        if let Some(v) = self.image_size { r.data.image_size = v; }
        if let Some(v) = self.per_track { r.data.per_track = v; }
        if let Some(v) = &self.cache { r.data.cache = v.clone(); }
        if let Some(v) = self.lr { r.teacher.lr = v; r.mpl.lr = v; }
        if let Some(v) = self.stop_after { r.run.stop_after = v; }
        if let Some(spec) = self.run_index {
            let k = spec.resolve_for("--run-index", |name| std::env::var(name).ok())?.index;
            r.run.seed += k;
            r.run.out = r.run.out.join(format!("run-{k}"));
        }
        extra(&mut r);
        Ok(r.validate()?)
    }

    fn progress(&self) -> bool {
        super::show_progress(self.no_progress)
    }
}

/// `scmpl train ...`.
pub fn train(cmd: TrainCommand) -> anyhow::Result<i32> {
    scmpl::train::accel::keep_freed_memory();
    let report = match cmd {
        TrainCommand::Bench { what, backbone, batch, size, steps, manifest, workers, mpl, loader_batches, cache, device, amp, no_tf32 } => {
            let device = scmpl::train::recipe::torch_device(device.parse()?)?;
            scmpl::train::accel::configure(device, !no_tf32, amp);
            match what {
                BenchWhat::Supcon => {
                    let (step, parts) = scmpl::train::bench::supcon_step(backbone, batch, size, 2, steps, device);
                    output::line(format_args!("supcon_step_images_per_s {step:.1}"))?;
                    let ms = |s: f64| s * 1000.0 / steps.max(1) as f64;
                    output::line(format_args!(
                        "step_ms forward {:.1} loss {:.1} backward {:.1} optimizer {:.1}",
                        ms(parts.forward),
                        ms(parts.loss),
                        ms(parts.backward),
                        ms(parts.optimizer)
                    ))?;
                }
                BenchWhat::Mpl => {
                    let (l, u) = mpl;
                    let ips = scmpl::train::bench::mpl_step(backbone, l as i64, u as i64, size, 2, steps, device)?;
                    output::line(format_args!("mpl_step_images_per_s {ips:.1}"))?;
                }
                BenchWhat::Loader => {
                    let m = manifest.ok_or_else(|| anyhow::anyhow!("--what loader needs --manifest"))?;
                    let ips = scmpl::train::bench::loader(&m, "train", batch as usize, size as usize, workers, loader_batches, cache.as_deref())?;
                    output::line(format_args!("loader_images_per_s {ips:.1}"))?;
                }
            }
            return Ok(exit::OK);
        }
        TrainCommand::Cache { manifest, cache, workers } => {
            let r = scmpl::train::data::cache::build_for_manifest(&cache, &manifest, workers)?;
            output::line(format_args!(
                "crop cache {}: {} crops reused, {} decoded, {} unreadable, {} MB",
                cache.display(),
                r.reused,
                r.decoded,
                r.unreadable,
                r.bytes >> 20
            ))?;
            return Ok(if r.unreadable > 0 { exit::SOME_FAILED } else { exit::OK });
        }
        TrainCommand::Fixture { lfw, extra, out, size, seed } => {
            let path = scmpl::train::data::fixture::build(&lfw, extra.as_deref(), &out, size, seed)?;
            eprintln!("fixture manifest: {}", path.display());
            return Ok(exit::OK);
        }
        TrainCommand::Teacher(a) => run::supcon::run(&a.settings(|_| {})?, a.resume, a.progress())?,
        TrainCommand::Mpl { common: a, teacher, mpl_steps, mpl_batch } => {
            let settings = a.settings(|r| {
                if let Some(v) = teacher { r.mpl.teacher = v; }
                if let Some(v) = mpl_steps { r.mpl.steps = v; }
                if let Some((l, u)) = mpl_batch { (r.mpl.labelled_batch, r.mpl.unlabelled_batch) = (l, u); }
            })?;
            run::mpl::run(&settings, a.resume, a.progress())?
        }
        TrainCommand::Finetune { common: a, student } => {
            let settings = a.settings(|r| {
                if let Some(v) = student { r.finetune.student = v; }
            })?;
            let plan = run::supcon::SupconPlan::finetune(&settings)?;
            run::supcon::run_plan(&settings, &plan, a.resume, a.progress())?
        }
        TrainCommand::Baseline { kind, common: a } => run::baseline::run(kind, &a.settings(|_| {})?, a.resume, a.progress())?,
    };
    print_report(&report);
    Ok(exit::OK)
}

/// Prints how a training run ended.
fn print_report(rep: &RunReport) {
    if rep.skipped_images > 0 {
        eprintln!("warning: {} unreadable images skipped (listed above)", rep.skipped_images);
    }
    match rep.eval_accuracy {
        Some(acc) => eprintln!("done at step {}: held-out accuracy {:.4} on {} images; run in {}", rep.last_step, acc, rep.eval_images, rep.run.display()),
        None => eprintln!("stopped at step {} (checkpointed); continue with --resume; run in {}", rep.last_step, rep.run.display()),
    }
}

/// Scoring protocols `eval` knows by name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Protocol {
    /// Also the reference's scoring: mean accuracy of 100 shuffled batches of 512, AUC from hard labels.
    Paper,
}

/// Flags of `eval`.
#[derive(Args)]
pub struct EvalArgs {
    /// Run folder (recipe.toml + checkpoints/); repeat it for several runs (seeds, folds):
    /// each is evaluated, then the mean and spread of every metric are printed.
    #[arg(long, required = true)]
    checkpoint: Vec<PathBuf>,
    /// faces.csv with labels.
    #[arg(long)]
    manifest: PathBuf,
    /// Group results by dataset, part or domain (the split column; `split` is accepted too).
    #[arg(long, value_enum)]
    by: Option<GroupBy>,
    #[arg(long, value_enum)]
    protocol: Option<Protocol>,
    #[arg(long, default_value = "cpu")]
    device: String,
    /// Where metrics.csv and metrics.json go (default RUN/eval); with several runs, RUN's
    /// folder name under it, and summary.csv.
    #[arg(long)]
    out: Option<PathBuf>,
}

/// `scmpl eval`: one run, or several and their summary.
pub fn eval(a: EvalArgs) -> anyhow::Result<i32> {
    scmpl::train::accel::keep_freed_memory();
    if let [run] = a.checkpoint.as_slice() {
        let out = a.out.clone().unwrap_or_else(|| run.join("eval"));
        return eval_one(&a, run, &out);
    }
    let mut all = Vec::new();
    for run in &a.checkpoint {
        let name = run.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "run".into());
        let out = a.out.as_ref().map_or_else(|| run.join("eval"), |o| o.join(&name));
        output::line(format_args!("== {}", run.display()))?;
        eval_one(&a, run, &out)?;
        all.push(scmpl::train::eval::read_reports(&out)?);
    }
    let rows = scmpl::train::eval::summarize(&all);
    output::line(format_args!("== {} runs: mean and standard deviation", all.len()))?;
    output::line(format_args!("{:<16} {:<10} {:<9} {:>8} {:>8} {:>5}", "domain", "level", "metric", "mean", "sd", "runs"))?;
    for r in &rows {
        output::line(format_args!("{:<16} {:<10} {:<9} {:>8.4} {:>8.4} {:>5}", r.domain, r.level, r.metric, r.mean, r.sd, r.runs))?;
    }
    if let Some(out) = &a.out {
        let path = scmpl::train::eval::write_summary(&rows, out)?;
        eprintln!("written {}", path.display());
    }
    Ok(exit::OK)
}

/// Evaluates one run into `out` and prints its table.
fn eval_one(a: &EvalArgs, run: &Path, out: &Path) -> anyhow::Result<i32> {
    let paper = a.protocol == Some(Protocol::Paper);
    let reports = scmpl::train::eval::run(run, &a.manifest, a.by, paper, &a.device, out)?;
    let f = |v: Option<f64>| v.map(|x| format!("{x:.4}")).unwrap_or_else(|| "undefined".into());
    output::line(format_args!("{:<16} {:<15} {:>6} {:>8} {:>9} {:>9} {:>9} {:>8}", "domain", "level", "n", "accuracy", "auc", "eer", "ap", "logloss"))?;
    for r in &reports {
        for (level, m) in r.levels() {
            output::line(format_args!(
                "{:<16} {:<15} {:>6} {:>8.4} {:>9} {:>9} {:>9} {:>8.4}",
                r.domain, level, m.n, m.accuracy, f(m.auc), f(m.eer), f(m.ap), m.log_loss
            ))?;
        }
        if r.frame.auc.is_none() {
            output::line(format_args!(
                "{:<16} AUC, EER and AP are undefined: the labels are all one class ({} real, {} fake)",
                r.domain, r.frame.real, r.frame.fake
            ))?;
        }
        if let Some(acc) = r.paper_accuracy {
            output::line(format_args!("{:<16} paper protocol: accuracy {:.4} (100 batches of 512), hard-label AUC {}", r.domain, acc, f(r.paper_hard_auc)))?;
        }
    }
    #[cfg(feature = "pipeline")]
    {
        let curves: Vec<(String, Vec<(f64, f64)>)> = reports.iter().filter(|r| r.frame.auc.is_some()).map(|r| (r.domain.clone(), r.roc.clone())).collect();
        if !curves.is_empty() {
            scmpl::tools::report::roc_chart(&curves, &out.join("roc.png"))?;
        }
    }
    eprintln!("written {}/metrics.csv, metrics.json and roc.png", out.display());
    Ok(exit::OK)
}

/// `scmpl export`.
pub fn export(checkpoint: &Path, out: &Path) -> anyhow::Result<i32> {
    for p in scmpl::train::export::export(checkpoint, out)? {
        eprintln!("written {}", p.display());
    }
    Ok(exit::OK)
}

/// Flags of `import`.
#[derive(Args)]
pub struct ImportArgs {
    /// Encoder + head weights (encoder.*, head.0.*, head.2.*), safetensors.
    #[arg(long)]
    encoder: PathBuf,
    /// Classifier weights (fc.weight, fc.bias), safetensors.
    #[arg(long)]
    classifier: PathBuf,
    /// The run folder to make.
    #[arg(long)]
    out: PathBuf,
    #[arg(long, value_enum, default_value = "resnet50")]
    backbone: Backbone,
    /// How the weights were trained to see their inputs (the authors': paper).
    #[arg(long, value_enum, default_value = "paper")]
    preset: Preset,
    #[arg(long, default_value_t = 64)]
    image_size: usize,
    /// Which model of the run they become.
    #[arg(long = "as", value_enum, default_value = "teacher")]
    role: scmpl::train::import::Role,
    /// Recipe (TOML) overlaid on models/supcon-mpl.toml (e.g. model.feat_dim).
    #[arg(long)]
    config: Option<PathBuf>,
}

/// `scmpl import`.
pub fn import(a: ImportArgs) -> anyhow::Result<i32> {
    let mut r = Recipe::load(a.config.as_deref())?;
    r.run.out = a.out.clone();
    r.model.backbone = a.backbone.as_str().into();
    r.run.preset = a.preset.as_str().into();
    r.data.image_size = a.image_size;
    // Where the run's weights came from.
    r.model.init = std::path::absolute(&a.encoder)?.to_string_lossy().into_owned();
    let settings = r.validate()?;
    let ck = scmpl::train::import::import(&settings, &a.encoder, &a.classifier, a.role)?;
    eprintln!("imported {} and {} as the {:?} of {} ({})", a.encoder.display(), a.classifier.display(), a.role, a.out.display(), ck.display());
    Ok(exit::OK)
}
