//! `vitalwatch fhir export`: the store as FHIR R4 resources in NDJSON (FHIR Bulk Data's
//! format: one resource per line) on standard output, for loading into a FHIR server.
//!
//! Devices and patients first, then every matching reading's Observations (paged from the
//! store through `fhir::search`, a page at a time, newest first), then the alerts as Flags.
//! Nothing is held in memory beyond a page. The export is recorded in the audit trail as
//! `phi.export`.

use super::{StoreArgs, actor};
use crate::fhir::search::{self, ObservationQuery};
use crate::server::open_store;
use crate::store::{AlertQuery, AuditEntry, Store};
use clap::{Args, Subcommand};
use std::io::Write;

/// Observations per store page.
const PAGE: usize = 1000;
/// At most this many alerts are exported as Flags (the store's alert query has no cursor).
const MAX_FLAGS: usize = 100_000;

#[derive(Debug, Args)]
pub struct FhirArgs {
    #[command(flatten)]
    pub store: StoreArgs,

    #[command(subcommand)]
    pub command: FhirCommand,
}

#[derive(Debug, Subcommand)]
pub enum FhirCommand {
    /// Write Device, Patient, Observation and Flag resources as NDJSON (one per line) on
    /// standard output: `vitalwatch fhir export --since 2026-01-01T00:00:00Z > bundle.ndjson`.
    Export {
        /// Only readings (device timestamps) and alerts at or after this time (RFC 3339 or
        /// epoch seconds).
        #[arg(long, value_name = "TIME")]
        since: Option<String>,
        /// Only readings before or at this time (RFC 3339 or epoch seconds).
        #[arg(long, value_name = "TIME")]
        until: Option<String>,
        /// Only this device (repeat for several).
        #[arg(long, value_name = "ID")]
        device: Vec<String>,
    },
}

pub async fn run(args: FhirArgs) -> anyhow::Result<()> {
    let config = args.store.config()?;
    let FhirCommand::Export {
        since,
        until,
        device,
    } = args.command;
    let since = since
        .map(|raw| super::time_or_epoch(&raw, "--since"))
        .transpose()?;
    let until = until
        .map(|raw| super::time_or_epoch(&raw, "--until"))
        .transpose()?;
    let wanted: Vec<String> = device
        .iter()
        .map(|raw| super::device_id(raw, &config).map(|id| id.as_str().to_owned()))
        .collect::<anyhow::Result<_>>()?;
    let store = open_store(&config).await?;
    let res = export(&*store, since, until, &wanted).await;
    if let Ok(lines) = &res {
        store
            .audit(AuditEntry {
                actor: actor(),
                action: "phi.export".to_owned(),
                target: "fhir".to_owned(),
                details: serde_json::json!({
                    "devices": wanted,
                    "since": since.map(|t| t.to_rfc3339()),
                    "until": until.map(|t| t.to_rfc3339()),
                    "resources": lines,
                }),
            })
            .await?;
    }
    store.close().await;
    res.map(|_| ())
}

/// Writes the resources; returns how many lines it wrote.
async fn export(
    store: &dyn Store,
    since: Option<vitalwatch_core::telemetry::Timestamp>,
    until: Option<vitalwatch_core::telemetry::Timestamp>,
    wanted: &[String],
) -> anyhow::Result<u64> {
    let devices: Vec<_> = store
        .list_devices()
        .await?
        .into_iter()
        .filter(|d| wanted.is_empty() || wanted.contains(&d.device_id))
        .collect();
    for id in wanted {
        if !devices.iter().any(|d| &d.device_id == id) {
            anyhow::bail!("device {id} is not registered");
        }
    }
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let mut lines = 0u64;
    let mut write = |out: &mut std::io::BufWriter<std::io::StdoutLock<'_>>,
                     resource: &serde_json::Value|
     -> anyhow::Result<()> {
        writeln!(out, "{resource}")?;
        lines += 1;
        Ok(())
    };
    let mut labels: Vec<&str> = Vec::new();
    for device in &devices {
        write(&mut out, &crate::fhir::device(device))?;
        if let Some(label) = device.patient_label.as_deref()
            && !labels.contains(&label)
        {
            labels.push(label);
            write(&mut out, &crate::fhir::patient(label))?;
        }
    }
    let mut query = ObservationQuery {
        devices: (!wanted.is_empty()).then(|| {
            devices
                .iter()
                .map(|d| (d.device_id.clone(), d.patient_label.clone()))
                .collect()
        }),
        labels: devices
            .iter()
            .map(|d| (d.device_id.clone(), d.patient_label.clone()))
            .collect(),
        since,
        until,
        count: PAGE,
        ..ObservationQuery::default()
    };
    loop {
        let page = search::observations(store, &query).await?;
        for observation in &page.observations {
            write(&mut out, observation)?;
        }
        match page.next {
            Some(next) => query.cursor = Some(next),
            None => break,
        }
    }
    let device_ids: Vec<Option<String>> = if wanted.is_empty() {
        vec![None]
    } else {
        wanted.iter().cloned().map(Some).collect()
    };
    for device_id in device_ids {
        let alerts = store
            .alerts(AlertQuery {
                device_id,
                since,
                limit: MAX_FLAGS,
                ..AlertQuery::default()
            })
            .await?;
        if alerts.len() == MAX_FLAGS {
            tracing::warn!(
                event = "fhir.export_truncated",
                message = "Flag export truncated; narrow it with --since or --device.",
                limit = MAX_FLAGS
            );
        }
        for record in &alerts {
            let label = devices
                .iter()
                .find(|d| d.device_id == record.alert.device_id.as_str())
                .and_then(|d| d.patient_label.as_deref());
            write(&mut out, &crate::fhir::flag(record, label))?;
        }
    }
    out.flush()?;
    Ok(lines)
}
