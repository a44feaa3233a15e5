//! `predict`: a trained run applied to videos and images, one JSON line each.

use std::path::PathBuf;

use clap::Args;

use super::output;
use scmpl::pipeline::config::PipelineConfig;

/// Flags of `predict`.
#[derive(Args)]
pub struct PredictArgs {
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
}

/// `scmpl predict`: exit 2 when some input could not be scored (its line says why).
pub fn predict(a: PredictArgs) -> anyhow::Result<i32> {
    let mut c = PipelineConfig::load(a.config.as_deref())?;
    if let Some(s) = a.sampling {
        c.extract.sampling = s;
    }
    c.extract.device = a.device.clone();
    let settings = c.validate()?;
    let clf = scmpl::train::infer::Classifier::load(&a.checkpoint, &a.device)?;
    let mut det = scmpl::pipeline::detect::build(&settings.detector, settings.device, &scmpl::pipeline::runtime::models_dir())?;
    let mut failed = false;
    for input in &a.inputs {
        match scmpl::predict::predict(input, &settings, det.as_mut(), &clf) {
            Ok(v) => output::line(v)?,
            Err(e) => {
                failed = true;
                eprintln!("failed: {e}");
                output::line(serde_json::json!({ "input": input, "error": e.to_string() }))?;
            }
        }
    }
    Ok(super::exit_code(failed))
}
