//! `vitalwatch model score|info`: scores a CSV with a model file, or shows a model file's
//! metadata. The scoring logic is `vitalwatch_core::detect`; this module reads the files.

use crate::model::read_model_file;
use anyhow::Context;
use clap::{Args, Subcommand};
use std::io::Write;
use std::path::{Path, PathBuf};
use vitalwatch_core::detect::{Dataset, Model};

#[derive(Debug, Args)]
pub struct ModelArgs {
    #[command(subcommand)]
    pub command: ModelCommand,
}

#[derive(Debug, Subcommand)]
pub enum ModelCommand {
    /// Print one anomaly score per CSV row, one per line, no header (higher = more
    /// anomalous; NaN for a row lacking a feature the model needs).
    Score {
        /// The model file.
        #[arg(long, value_name = "FILE")]
        model: PathBuf,
        /// CSV with a header naming the model's features.
        #[arg(long, value_name = "CSV")]
        input: PathBuf,
    },
    /// Print a model file's metadata (refuses a damaged or incompatible file).
    Info {
        /// The model file.
        file: PathBuf,
    },
}

pub async fn run(args: ModelArgs) -> anyhow::Result<()> {
    match args.command {
        ModelCommand::Info { file } => {
            let model = load(&file).await?;
            println!("file:           {}", file.display());
            println!("{}", model.info());
            Ok(())
        }
        ModelCommand::Score { model, input } => {
            let model = load(&model).await?;
            let text = std::fs::read_to_string(&input)
                .with_context(|| format!("reading {}", input.display()))?;
            let data =
                Dataset::from_csv(&text).with_context(|| format!("in {}", input.display()))?;
            let scores = model.score_dataset(&data).map_err(|feature| {
                anyhow::anyhow!(
                    "{} has no {} column, which the model needs (it reads {})",
                    input.display(),
                    feature.as_str(),
                    model.info().features.join(", ")
                )
            })?;
            let mut out = std::io::BufWriter::new(std::io::stdout().lock());
            for score in scores {
                match score {
                    Some(score) => writeln!(out, "{}", score.value)?,
                    None => writeln!(out, "NaN")?,
                }
            }
            out.flush()?;
            Ok(())
        }
    }
}

async fn load(path: &Path) -> anyhow::Result<Model> {
    let path = path.to_owned();
    let model = tokio::task::spawn_blocking(move || read_model_file(&path))
        .await
        .context("the model loading task failed")??;
    Ok(model)
}
