//! `vitalwatch devices …`: the registry from the command line, through the same store (and the
//! same audit trail) as the API. Safe to run beside a running server: SQLite serialises the
//! writers, and the audit chain is extended inside each transaction.

use crate::cli::actor;
use crate::cli::{DeviceFields, DevicesCommand};
use crate::config::Config;
use crate::serve::open_store;
use crate::store::{DeviceRegistration, DeviceUpdate, Store};
use anyhow::{Context, bail};
use vitalwatch_core::telemetry::DeviceId;

fn check_id(raw: &str, config: &Config) -> anyhow::Result<String> {
    DeviceId::parse(raw, config.limits.max_device_id_len)
        .map(|id| id.as_str().to_owned())
        .map_err(|_| {
            anyhow::anyhow!(
                "invalid device id {raw:?}: use 1 to 64 characters of A-Z a-z 0-9 _ . : -"
            )
        })
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

pub async fn run(config: Config, command: DevicesCommand) -> anyhow::Result<()> {
    let store = open_store(&config)?;
    let res = dispatch(&config, &*store, command).await;
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
