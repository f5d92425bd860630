//! `vitalwatch devices …`: the registry from the command line, through the same store (and the
//! same audit trail) as the API. Safe to run beside a running server: SQLite serialises the
//! writers, and the audit chain is extended inside each transaction.

use super::{StoreArgs, actor};
use crate::config::Config;
use crate::server::open_store;
use crate::store::{DeviceRegistration, DeviceUpdate, Store};
use anyhow::{Context, bail};
use clap::{Args, Subcommand};

#[derive(Debug, Args)]
pub struct DevicesArgs {
    #[command(flatten)]
    pub store: StoreArgs,

    #[command(subcommand)]
    pub command: DevicesCommand,
}

#[derive(Debug, Subcommand)]
pub enum DevicesCommand {
    /// List registered devices as JSON lines.
    List,
    /// Show one device as JSON.
    Show {
        /// The device id.
        id: String,
    },
    /// Register a device.
    Register {
        /// The device id: 1 to 64 characters of A-Z a-z 0-9 _ . : -
        id: String,
        #[command(flatten)]
        fields: DeviceFields,
    },
    /// Change a device's label, location or expected interval.
    Update {
        /// The device id.
        id: String,
        #[command(flatten)]
        fields: DeviceFields,
        /// Remove the patient label.
        #[arg(long, conflicts_with = "patient_label")]
        clear_patient_label: bool,
        /// Remove the location.
        #[arg(long, conflicts_with = "location")]
        clear_location: bool,
    },
    /// Deactivate a device: its history stays, its new readings are quarantined.
    Deactivate {
        /// The device id.
        id: String,
    },
    /// Reactivate a deactivated device.
    Reactivate {
        /// The device id.
        id: String,
    },
}

#[derive(Debug, Args, Default)]
pub struct DeviceFields {
    /// A label that identifies the patient to clinicians (e.g. bed and initials).
    #[arg(long, value_name = "TEXT")]
    pub patient_label: Option<String>,
    /// Where the device is (ward, room).
    #[arg(long, value_name = "TEXT")]
    pub location: Option<String>,
    /// Seconds expected between two readings (used to detect an offline device).
    #[arg(long, value_name = "SECONDS")]
    pub expected_interval: Option<f64>,
}

fn check_id(raw: &str, config: &Config) -> anyhow::Result<String> {
    super::device_id(raw, config).map(|id| id.as_str().to_owned())
}

fn check_fields(fields: &DeviceFields) -> anyhow::Result<()> {
    if let Some(interval) = fields.expected_interval
        && !(interval.is_finite() && interval > 0.0 && interval <= 86_400.0)
    {
        bail!("--expected-interval must be a number of seconds in (0, 86400]");
    }
    for (name, value) in [
        ("--patient-label", &fields.patient_label),
        ("--location", &fields.location),
    ] {
        if value.as_ref().is_some_and(|v| v.chars().count() > 128) {
            bail!("{name} must be at most 128 characters");
        }
    }
    Ok(())
}

pub async fn run(args: DevicesArgs) -> anyhow::Result<()> {
    let config = args.store.config()?;
    let store = open_store(&config).await?;
    let res = dispatch(&config, &*store, args.command).await;
    store.close().await;
    res
}

async fn dispatch(
    config: &Config,
    store: &dyn Store,
    command: DevicesCommand,
) -> anyhow::Result<()> {
    match command {
        DevicesCommand::List => {
            for device in store.list_devices().await? {
                println!("{}", serde_json::to_string(&device)?);
            }
        }
        DevicesCommand::Show { id } => {
            let id = check_id(&id, config)?;
            let device = store
                .get_device(id.clone())
                .await?
                .with_context(|| format!("device {id} is not registered"))?;
            println!("{}", serde_json::to_string_pretty(&device)?);
        }
        DevicesCommand::Register { id, fields } => {
            check_fields(&fields)?;
            let registration = DeviceRegistration {
                device_id: check_id(&id, config)?,
                patient_label: fields.patient_label,
                location: fields.location,
                expected_interval_s: fields.expected_interval,
            };
            let device = store.register_device(registration, actor()).await?;
            println!("{}", serde_json::to_string_pretty(&device)?);
        }
        DevicesCommand::Update {
            id,
            fields,
            clear_patient_label,
            clear_location,
        } => {
            check_fields(&fields)?;
            let update = DeviceUpdate {
                patient_label: if clear_patient_label {
                    Some(None)
                } else {
                    fields.patient_label.map(Some)
                },
                location: if clear_location {
                    Some(None)
                } else {
                    fields.location.map(Some)
                },
                expected_interval_s: fields.expected_interval,
                active: None,
            };
            let device = store
                .update_device(check_id(&id, config)?, update, actor())
                .await?;
            println!("{}", serde_json::to_string_pretty(&device)?);
        }
        DevicesCommand::Deactivate { id } => set_active(config, store, &id, false).await?,
        DevicesCommand::Reactivate { id } => set_active(config, store, &id, true).await?,
    }
    Ok(())
}

async fn set_active(
    config: &Config,
    store: &dyn Store,
    id: &str,
    active: bool,
) -> anyhow::Result<()> {
    let update = DeviceUpdate {
        active: Some(active),
        ..DeviceUpdate::default()
    };
    let device = store
        .update_device(check_id(id, config)?, update, actor())
        .await?;
    println!("{}", serde_json::to_string_pretty(&device)?);
    Ok(())
}
