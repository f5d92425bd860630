//! `vitalwatch thresholds set|show|clear|preview`: per-patient thresholds through the same
//! store and audit trail as the API.

use super::device_id;
use super::{StoreArgs, actor};
use crate::alerts::{PreviewAnswer, preview_history, validate_thresholds};
use crate::config::Config;
use crate::server::open_store;
use crate::store::Store;
use anyhow::bail;
use clap::{Args, Subcommand};
use serde_json::json;
use std::sync::Arc;
use vitalwatch_core::rules::PatientThresholds;
use vitalwatch_core::telemetry::{DeviceId, Spo2Scale, Timestamp};

#[derive(Debug, Args)]
pub struct ThresholdsArgs {
    #[command(flatten)]
    pub store: StoreArgs,

    #[command(subcommand)]
    pub command: ThresholdsCommand,
}

#[derive(Debug, Subcommand)]
pub enum ThresholdsCommand {
    /// Set a device's overrides (replacing any it had); audited. A running server uses them
    /// within 2 seconds.
    Set {
        /// The device id.
        id: String,
        #[command(flatten)]
        limits: ThresholdLimits,
        /// Why (kept in the store and the audit log).
        #[arg(long, value_name = "TEXT")]
        reason: String,
        /// Who decided (default: cli:$USER).
        #[arg(long, value_name = "NAME")]
        author: Option<String>,
    },
    /// Show a device's overrides as JSON.
    Show {
        /// The device id.
        id: String,
    },
    /// Remove a device's overrides; audited.
    Clear {
        /// The device id.
        id: String,
        /// Why.
        #[arg(long, value_name = "TEXT")]
        reason: Option<String>,
    },
    /// Replay stored history under proposed thresholds and report how many alerts they would
    /// raise against the current settings, and which recorded episodes they would miss.
    /// Changes nothing.
    Preview {
        /// The device id; leave out to propose the thresholds for every device.
        id: Option<String>,
        #[command(flatten)]
        limits: ThresholdLimits,
        /// Start of the window (RFC 3339) [default: a day before --until].
        #[arg(long, value_name = "TIME")]
        since: Option<String>,
        /// End of the window (RFC 3339) [default: now].
        #[arg(long, value_name = "TIME")]
        until: Option<String>,
    },
}

#[derive(Debug, Args, Default, Clone)]
pub struct ThresholdLimits {
    /// Heart rate below this is out of range (bpm; at least 41).
    #[arg(long, value_name = "BPM")]
    pub hr_min: Option<f64>,
    /// Heart rate above this is out of range (bpm; at most 130).
    #[arg(long, value_name = "BPM")]
    pub hr_max: Option<f64>,
    /// Temperature below this is out of range (°C; at least 35.1).
    #[arg(long, value_name = "CELSIUS")]
    pub temp_min: Option<f64>,
    /// Temperature above this is out of range (°C; at most 39.0).
    #[arg(long, value_name = "CELSIUS")]
    pub temp_max: Option<f64>,
    /// The NEWS2 SpO2 scale: scale2 only for hypercapnic respiratory failure with a prescribed
    /// 88-92 % target (a clinician's decision) [default: scale1].
    #[arg(long, value_name = "SCALE", value_parser = ["scale1", "scale2"])]
    pub spo2_scale: Option<String>,
    /// The lower end of the SpO2 target: SPO2_LOW below it (%; at least 92, or 84 on
    /// scale2).
    #[arg(long, value_name = "PCT")]
    pub spo2_min: Option<f64>,
    /// Respiration below this raises RESPIRATORY_RATE_LOW (/min; at least 9).
    #[arg(long, value_name = "PER_MIN")]
    pub rr_min: Option<f64>,
    /// Respiration above this raises RESPIRATORY_RATE_HIGH (/min; at most 24).
    #[arg(long, value_name = "PER_MIN")]
    pub rr_max: Option<f64>,
    /// Systolic below this raises SYSTOLIC_BP_LOW (mmHg; at least 91).
    #[arg(long, value_name = "MMHG")]
    pub sbp_min: Option<f64>,
    /// Systolic above this raises BLOOD_PRESSURE_HIGH (mmHg; at most 219).
    #[arg(long, value_name = "MMHG")]
    pub sbp_max: Option<f64>,
}

fn thresholds_of(limits: ThresholdLimits) -> PatientThresholds {
    PatientThresholds {
        heart_rate_min: limits.hr_min,
        heart_rate_max: limits.hr_max,
        body_temp_min: limits.temp_min,
        body_temp_max: limits.temp_max,
        spo2_scale: limits.spo2_scale.as_deref().and_then(Spo2Scale::parse),
        spo2_min: limits.spo2_min,
        respiratory_rate_min: limits.rr_min,
        respiratory_rate_max: limits.rr_max,
        systolic_bp_min: limits.sbp_min,
        systolic_bp_max: limits.sbp_max,
    }
}

fn time(raw: Option<&str>, flag: &str) -> anyhow::Result<Option<Timestamp>> {
    raw.map(|raw| {
        Timestamp::parse_text(raw).ok_or_else(|| anyhow::anyhow!("{flag} must be an RFC 3339 time"))
    })
    .transpose()
}

pub async fn run(args: ThresholdsArgs) -> anyhow::Result<()> {
    let config = args.store.config()?;
    let store: Arc<dyn Store> = open_store(&config).await?;
    let res = dispatch(&config, Arc::clone(&store), args.command).await;
    store.close().await;
    res
}

async fn require_device(store: &dyn Store, id: &DeviceId) -> anyhow::Result<()> {
    if store.get_device(id.as_str().to_owned()).await?.is_none() {
        bail!("device {} is not registered", id.as_str());
    }
    Ok(())
}

async fn dispatch(
    config: &Config,
    store: Arc<dyn Store>,
    command: ThresholdsCommand,
) -> anyhow::Result<()> {
    match command {
        ThresholdsCommand::Set {
            id,
            limits,
            reason,
            author,
        } => {
            let id = device_id(&id, config)?;
            require_device(&*store, &id).await?;
            let author = author.map_or_else(actor, |name| format!("{name} ({})", actor()));
            let record = validate_thresholds(
                &config.rules,
                &id,
                thresholds_of(limits),
                author,
                reason,
                None,
            )
            .map_err(|err| anyhow::anyhow!("thresholds refused: {err}"))?;
            let record = store.set_thresholds(record).await?;
            println!("{}", serde_json::to_string_pretty(&record)?);
        }
        ThresholdsCommand::Show { id } => {
            let id = device_id(&id, config)?;
            require_device(&*store, &id).await?;
            let record = store
                .thresholds(Some(id.as_str().to_owned()))
                .await?
                .into_iter()
                .next();
            let answer = json!({
                "device_id": id.as_str(),
                "override": record,
                "site": { "heart_rate": config.rules.heart_rate, "body_temp": config.rules.body_temp },
            });
            println!("{}", serde_json::to_string_pretty(&answer)?);
        }
        ThresholdsCommand::Clear { id, reason } => {
            let id = device_id(&id, config)?;
            require_device(&*store, &id).await?;
            let removed = store
                .clear_thresholds(id.as_str().to_owned(), actor(), reason)
                .await?;
            println!(
                "{}",
                json!({ "device_id": id.as_str(), "removed": removed })
            );
        }
        ThresholdsCommand::Preview {
            id,
            limits,
            since,
            until,
        } => {
            let id = id.map(|raw| device_id(&raw, config)).transpose()?;
            if let Some(id) = &id {
                require_device(&*store, id).await?;
            }
            let answer: PreviewAnswer = preview_history(
                store,
                &config.alerting,
                &config.rules,
                id.map(|id| id.as_str().to_owned()),
                thresholds_of(limits),
                time(since.as_deref(), "--since")?,
                time(until.as_deref(), "--until")?,
            )
            .await
            .map_err(|err| anyhow::anyhow!("preview refused: {err}"))?;
            println!("{}", serde_json::to_string_pretty(&answer)?);
        }
    }
    Ok(())
}
