//! `vitalwatch train`: trains the anomaly model and writes the model file.
//!
//! The training logic is `vitalwatch_core::detect`; this module reads CSV files, queries the
//! store for `--from-db` and `--from-alerts`, draws the progress bar and writes the model file
//! atomically (a temporary file renamed over the target, so a running server reloading it
//! never sees half a file). Training runs on `spawn_blocking`.

use super::StoreArgs;
use crate::config::Config;
use crate::server::open_store;
use crate::store::ReadingRecord;
use anyhow::{Context, bail};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use std::io::Write;
use std::path::{Path, PathBuf};
use vitalwatch_core::detect::{
    DEFAULT_CONTAMINATION, Dataset, Feature, LABEL_COLUMN, PopulationOptions, Progress, Stage,
    TrainOptions, normal_population,
};
use vitalwatch_core::telemetry::Timestamp;

/// The `trained_at` written when none is asked for: a fixed time, so the same data, options
/// and seed give a byte-identical model file (`--trained-at now` stamps the clock instead).
const DETERMINISTIC_TRAINED_AT: i64 = 0;

#[derive(Debug, Args)]
pub struct TrainArgs {
    #[command(flatten)]
    pub store: StoreArgs,

    /// Training data as CSV with a header; columns are named like the payload fields
    /// (heart_rate, body_temp, signal_strength, battery_level, …). Without it (and without
    /// --from-db) the built-in synthetic normal population is used.
    #[arg(long, value_name = "CSV", conflicts_with = "from_db")]
    pub input: Option<PathBuf>,

    /// Train on readings stored in the database that raised no anomaly.
    #[arg(long)]
    pub from_db: bool,

    /// Train on stored readings labelled by clinicians' verdicts on alert episodes
    /// (POST /api/alerts/{id}/verdict): readings of true alarms are anomalous, of false alarms
    /// normal, plus readings that raised no anomaly. Also trains the supervised random forest
    /// and reports its held-out precision and recall.
    #[arg(long, conflicts_with_all = ["input", "from_db"])]
    pub from_alerts: bool,

    /// With --from-db: only readings at or after this time (RFC 3339, e.g. 2026-01-01T00:00:00Z).
    #[arg(long, value_name = "TIME", requires = "from_db")]
    pub since: Option<String>,

    /// With --from-db: at most this many readings (oldest first).
    #[arg(
        long,
        value_name = "N",
        default_value_t = 1_000_000,
        requires = "from_db"
    )]
    pub max_rows: usize,

    /// Where to write the model file [default: the configured model path,
    /// <data-dir>/model.json].
    #[arg(long, value_name = "FILE")]
    pub output: Option<PathBuf>,

    /// Seeds every random choice: the same data, options and seed give a byte-identical file.
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub seed: u64,

    /// Number of isolation trees.
    #[arg(long, value_name = "N", default_value_t = 100)]
    pub trees: u32,

    /// Rows drawn for each tree (ψ).
    #[arg(long, value_name = "N", default_value_t = 256)]
    pub sample_size: u32,

    /// Share of training rows scored above the threshold [default: 0.005, see docs/MODEL.md].
    #[arg(long, value_name = "SHARE")]
    pub contamination: Option<f64>,

    /// Comma-separated features the model reads.
    #[arg(
        long,
        value_name = "LIST",
        value_delimiter = ',',
        default_value = "heart_rate,body_temp,signal_strength,battery_level"
    )]
    pub features: Vec<String>,

    /// A CSV column of 0/1 labels (1 = anomalous): also train the supervised random forest
    /// and report its precision and recall on a held-out 20 %.
    #[arg(long, value_name = "NAME", requires = "input")]
    pub label_column: Option<String>,

    /// Trees of the supervised random forest (with --label-column).
    #[arg(long, value_name = "N", default_value_t = 100)]
    pub rf_trees: u16,

    /// Patients in the built-in synthetic population (each contributes
    /// --readings-per-patient readings).
    #[arg(long, value_name = "N", default_value_t = 100)]
    pub patients: usize,

    /// Readings per synthetic patient.
    #[arg(long, value_name = "N", default_value_t = 1000)]
    pub readings_per_patient: usize,

    /// The training time recorded in the file: an RFC 3339 time or "now" [default:
    /// 1970-01-01T00:00:00Z, so the same inputs give a byte-identical file].
    #[arg(long, value_name = "TIME")]
    pub trained_at: Option<String>,
}

pub async fn run(args: TrainArgs) -> anyhow::Result<()> {
    let config = args.store.config()?;
    train(config, args).await
}

/// Trains with `args` under `config` (`demo` trains its first model this way).
pub async fn train(config: Config, args: TrainArgs) -> anyhow::Result<()> {
    let features = parse_features(&args.features)?;
    let (data, from) = training_data(&config, &args).await?;
    let options = TrainOptions {
        trees: args.trees,
        sample_size: args.sample_size,
        contamination: args.contamination.unwrap_or(DEFAULT_CONTAMINATION),
        seed: args.seed,
        random_forest_trees: (args.label_column.is_some() || args.from_alerts)
            .then_some(args.rf_trees),
    };
    let trained_at = match args.trained_at.as_deref() {
        None => Timestamp::from_secs(DETERMINISTIC_TRAINED_AT),
        Some("now") => crate::clock::now(),
        Some(text) => Timestamp::parse_text(text)
            .with_context(|| format!("--trained-at {text:?} is not an RFC 3339 time or \"now\""))?,
    };
    let output = args.output.clone().unwrap_or_else(|| config.model_path());
    eprintln!(
        "Training on {} rows from {from}: {} trees, sample size {}, contamination {}, seed {}.",
        data.n_rows(),
        options.trees,
        options.sample_size,
        options.contamination,
        options.seed
    );
    let bar = progress_bar(u64::from(options.trees));
    let model = {
        let bar = bar.clone();
        tokio::task::spawn_blocking(move || {
            vitalwatch_core::detect::train(
                &data,
                &features,
                &options,
                trained_at,
                &mut |progress| show(&bar, progress),
            )
        })
        .await
        .context("the training task failed")?
        .context("training refused")?
    };
    bar.finish_and_clear();
    write_atomically(&output, &model.to_bytes())?;
    println!("model written to {}", output.display());
    println!("{}", model.info());
    Ok(())
}

fn parse_features(names: &[String]) -> anyhow::Result<Vec<Feature>> {
    names
        .iter()
        .map(|name| {
            Feature::from_name(name.trim()).with_context(|| {
                format!(
                    "unknown feature {name:?}; choose from {}",
                    Feature::ALL.map(Feature::as_str).join(", ")
                )
            })
        })
        .collect()
}

async fn training_data(config: &Config, args: &TrainArgs) -> anyhow::Result<(Dataset, String)> {
    if let Some(input) = &args.input {
        let mut text = std::fs::read_to_string(input)
            .with_context(|| format!("reading {}", input.display()))?;
        if let Some(label_column) = &args.label_column {
            text = rename_label_column(&text, label_column)
                .with_context(|| format!("in {}", input.display()))?;
        }
        let data = Dataset::from_csv(&text).with_context(|| format!("in {}", input.display()))?;
        return Ok((data, input.display().to_string()));
    }
    if args.from_alerts {
        let store = open_store(config).await?;
        let labelled = store.verdict_readings(args.max_rows).await;
        let normal = store.normal_readings(None, args.max_rows).await;
        store.close().await;
        let mut labelled = labelled.context("reading alert verdicts")?;
        if !labelled.iter().any(|(_, true_alarm)| *true_alarm) {
            bail!(
                "no alert has a true-alarm verdict yet: record verdicts with POST /api/alerts/{{id}}/verdict"
            );
        }
        let seen: std::collections::HashSet<i64> = labelled.iter().map(|(r, _)| r.id).collect();
        labelled.extend(
            normal
                .context("reading stored readings")?
                .into_iter()
                .filter(|r| !seen.contains(&r.id))
                .map(|r| (r, false)),
        );
        let (records, labels): (Vec<ReadingRecord>, Vec<bool>) = labelled.into_iter().unzip();
        let n_true = labels.iter().filter(|l| **l).count();
        let data = dataset_of(&records, Some(labels))?;
        return Ok((
            data,
            format!(
                "{} (alert verdicts: {n_true} readings of true alarms)",
                config.database_name()
            ),
        ));
    }
    if args.from_db {
        let since = match &args.since {
            None => None,
            Some(text) => Some(
                Timestamp::parse_text(text)
                    .with_context(|| format!("--since {text:?} is not an RFC 3339 time"))?,
            ),
        };
        let store = open_store(config).await?;
        let records = store.normal_readings(since, args.max_rows).await;
        store.close().await;
        let records = records.context("reading stored readings")?;
        let data = dataset_of(&records, None)?;
        return Ok((
            data,
            format!("{} (readings without anomalies)", config.database_name()),
        ));
    }
    let options = PopulationOptions {
        patients: args.patients,
        readings_per_patient: args.readings_per_patient,
        seed: args.seed,
        ..PopulationOptions::default()
    };
    Ok((
        normal_population(&options),
        "the built-in synthetic normal population".to_owned(),
    ))
}

/// Renames the header cell `label_column` to `label`, the name the dataset reader expects.
fn rename_label_column(text: &str, label_column: &str) -> anyhow::Result<String> {
    let (header, rest) = text.split_once('\n').unwrap_or((text, ""));
    let mut found = false;
    let cells: Vec<&str> = header
        .trim_end_matches('\r')
        .split(',')
        .map(|cell| {
            if cell.trim() == label_column {
                found = true;
                LABEL_COLUMN
            } else {
                cell
            }
        })
        .collect();
    if !found {
        bail!("the CSV header has no {label_column:?} column");
    }
    Ok(format!("{}\n{rest}", cells.join(",")))
}

fn dataset_of(records: &[ReadingRecord], labels: Option<Vec<bool>>) -> anyhow::Result<Dataset> {
    let columns = Feature::ALL
        .into_iter()
        .map(|feature| {
            let values = records
                .iter()
                .map(|record| match feature {
                    Feature::HeartRate => record.heart_rate,
                    Feature::BodyTemp => record.body_temp,
                    Feature::SignalStrength => record.signal_strength,
                    Feature::BatteryLevel => record.battery_level,
                    Feature::Spo2 => record.spo2,
                    Feature::RespiratoryRate => record.respiratory_rate,
                    Feature::SystolicBp => record.systolic_bp,
                    Feature::DiastolicBp => record.diastolic_bp,
                })
                .collect();
            (feature, values)
        })
        .collect();
    Dataset::new(columns, labels).context("building the training data from stored readings")
}

fn progress_bar(trees: u64) -> ProgressBar {
    // indicatif draws on standard error and hides itself when that is not a terminal.
    let bar = ProgressBar::new(trees);
    bar.set_style(
        ProgressStyle::with_template("{msg:>16} [{bar:40}] {pos}/{len} ({elapsed})")
            .expect("the template is valid")
            .progress_chars("=> "),
    );
    bar.set_message("isolation trees");
    bar
}

fn show(bar: &ProgressBar, progress: Progress) {
    match progress.stage {
        Stage::Trees => bar.set_position(progress.done as u64),
        Stage::Threshold => bar.set_message("threshold"),
        Stage::RandomForest => bar.set_message("random forest"),
    }
}

/// Writes `bytes` to a temporary file beside `path` (created 0600), syncs it, and renames it
/// over `path`.
fn write_atomically(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.to_owned(),
        _ => std::path::PathBuf::from("."),
    };
    if !dir.exists() {
        // Like the data directory the store creates: private to the service's user.
        let mut builder = std::fs::DirBuilder::new();
        builder.recursive(true);
        #[cfg(unix)]
        std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
        builder
            .create(&dir)
            .with_context(|| format!("creating {}", dir.display()))?;
    }
    let mut file = tempfile::NamedTempFile::new_in(&dir)
        .with_context(|| format!("creating a temporary file in {}", dir.display()))?;
    file.write_all(bytes)
        .and_then(|()| file.as_file().sync_all())
        .with_context(|| format!("writing {}", path.display()))?;
    file.persist(path)
        .with_context(|| format!("replacing {}", path.display()))?;
    Ok(())
}

/// `vitalwatch train`'s flags, parsed the way the command line would be.
#[derive(clap::Parser)]
struct TrainFlags {
    #[command(flatten)]
    train: TrainArgs,
}

/// Trains a small model on the synthetic population into `path` when there is none there yet
/// (`demo` and `bench ingest` run the whole path, model included, from an empty directory).
pub async fn train_small_if_missing(path: &Path, config: &Config) -> anyhow::Result<()> {
    if path.exists() {
        return Ok(());
    }
    eprintln!(
        "No model at {}: training a small one on the synthetic population.",
        path.display()
    );
    let flags = <TrainFlags as clap::Parser>::try_parse_from([
        "train".as_ref(),
        "--patients".as_ref(),
        "50".as_ref(),
        "--readings-per-patient".as_ref(),
        "200".as_ref(),
        "--output".as_ref(),
        path.as_os_str(),
    ])
    .context("building the training flags")?;
    train(config.clone(), flags.train).await
}
