//! `vitalwatch certs …`: the PKI from the command line. Issuing and revoking certificates is
//! written to the audit trail.

use crate::cli::CertsCommand;
use crate::cli::actor;
use crate::config::Config;
use crate::pki::{self, CertsDir};
use crate::serve::open_store;
use crate::store::{AuditEntry, Store};
use vitalwatch_core::telemetry::DeviceId;

async fn audit(
    config: &Config,
    action: &str,
    target: &str,
    details: serde_json::Value,
) -> anyhow::Result<()> {
    let store = open_store(config)?;
    let res = store
        .audit(AuditEntry {
            actor: actor(),
            action: action.to_owned(),
            target: target.to_owned(),
            details,
        })
        .await;
    store.close().await;
    Ok(res?)
}

pub async fn run(config: Config, command: CertsCommand) -> anyhow::Result<()> {
    let certs = CertsDir::new(config.certs_dir());
    match command {
        CertsCommand::Init { san, force } => {
            let report = pki::init(&certs, &san, force)?;
            for file in &report.files {
                println!("wrote {}", file.display());
            }
            println!("server names: {}", report.sans.join(", "));
            audit(
                &config,
                "certificate.init",
                "ca",
                serde_json::json!({ "sans": report.sans, "replaced": force }),
            )
            .await?;
        }
        CertsCommand::Device { id, force } => {
            let id = DeviceId::parse(&id, config.limits.max_device_id_len).map_err(|_| {
                anyhow::anyhow!(
                    "invalid device id {id:?}: use 1 to 64 characters of A-Z a-z 0-9 _ . : -"
                )
            })?;
            let issued = pki::issue_device(&certs, id.as_str(), force)?;
            println!("wrote {}", certs.device_cert(id.as_str()).display());
            println!("wrote {}", certs.device_key(id.as_str()).display());
            println!("{}", serde_json::to_string(&issued)?);
            audit(
                &config,
                "certificate.issue",
                id.as_str(),
                serde_json::json!({ "serial": issued.serial, "not_after": issued.not_after }),
            )
            .await?;
        }
        CertsCommand::Consumer { name, force } => {
            let name = DeviceId::parse(&name, config.limits.max_device_id_len).map_err(|_| {
                anyhow::anyhow!(
                    "invalid consumer name {name:?}: use 1 to 64 characters of A-Z a-z 0-9 _ . : -"
                )
            })?;
            let issued = pki::issue_consumer(&certs, name.as_str(), force)?;
            println!("wrote {}", certs.device_cert(name.as_str()).display());
            println!("wrote {}", certs.device_key(name.as_str()).display());
            println!("{}", serde_json::to_string(&issued)?);
            audit(
                &config,
                "certificate.issue",
                name.as_str(),
                serde_json::json!({ "serial": issued.serial, "not_after": issued.not_after, "role": "consumer" }),
            )
            .await?;
        }
        CertsCommand::Secret { id } => {
            let id = DeviceId::parse(&id, config.limits.max_device_id_len).map_err(|_| {
                anyhow::anyhow!(
                    "invalid device id {id:?}: use 1 to 64 characters of A-Z a-z 0-9 _ . : -"
                )
            })?;
            let secret = pki::issue_secret(&certs, id.as_str())?;
            println!("{secret}");
            eprintln!(
                "This secret is shown once; VitalWatch keeps only its hash. MQTT username: {id}"
            );
            audit(
                &config,
                "device.secret",
                id.as_str(),
                serde_json::json!({ "issued": true }),
            )
            .await?;
        }
        CertsCommand::List => {
            for cert in pki::list(&certs)? {
                println!("{}", serde_json::to_string(&cert)?);
            }
        }
        CertsCommand::Revoke { id } => {
            let revoked = pki::revoke(&certs, &id)?;
            for cert in &revoked {
                println!("revoked {} serial {}", cert.device_id, cert.serial);
            }
            audit(
                &config,
                "certificate.revoke",
                &id,
                serde_json::json!({ "serials": revoked.iter().map(|c| &c.serial).collect::<Vec<_>>() }),
            )
            .await?;
        }
    }
    Ok(())
}
