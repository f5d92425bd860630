//! `vitalwatch certs …`: the PKI from the command line. Issuing and revoking certificates is
//! written to the audit trail.

use super::{StoreArgs, actor, device_id};
use crate::config::Config;
use crate::pki::{self, CertsDir};
use crate::server::open_store;
use crate::store::AuditEntry;
use clap::{Args, Subcommand};
use std::path::PathBuf;
use vitalwatch_core::telemetry::DeviceId;

#[derive(Debug, Args)]
pub struct CertsArgs {
    #[command(flatten)]
    pub store: StoreArgs,

    /// The PKI directory [default: <data-dir>/certs].
    #[arg(long, global = true, env = "VITALWATCH_CERTS_DIR", value_name = "DIR")]
    pub certs_dir: Option<PathBuf>,

    #[command(subcommand)]
    pub command: CertsCommand,
}

#[derive(Debug, Subcommand)]
pub enum CertsCommand {
    /// Create the CA (ca.crt, ca.key), the server certificate (server.crt, server.key) and an
    /// empty revocation list. ECDSA P-256; keys are written 0600.
    Init {
        /// An extra subject alternative name for the server (host name or IP); repeatable.
        /// localhost, 127.0.0.1, ::1 and this machine's host name are always included.
        #[arg(long, value_name = "NAME")]
        san: Vec<String>,
        /// Replace an existing CA (every device certificate issued so far stops working).
        #[arg(long)]
        force: bool,
    },
    /// Issue a client certificate for a device (subject CN = the device id) into
    /// <certs-dir>/devices/ID.crt and ID.key.
    Device {
        /// The device id.
        id: String,
        /// Replace the device's current certificate (the old one is revoked).
        #[arg(long)]
        force: bool,
    },
    /// Issue a consumer certificate (OU = consumer) for a system that subscribes to
    /// vitalwatch/alerts/# and vitalwatch/telemetry/# on the embedded broker.
    Consumer {
        /// The consumer's name (same characters as a device id).
        name: String,
        /// Replace its current certificate (the old one is revoked).
        #[arg(long)]
        force: bool,
    },
    /// Issue a per-device secret for the plaintext MQTT listener (printed once; only its
    /// Argon2id hash is kept). Issuing again replaces it.
    Secret {
        /// The device id (the MQTT username).
        id: String,
    },
    /// List issued device certificates as JSON lines.
    List,
    /// Revoke a device's (or consumer's) certificates and remove its plaintext-MQTT secret: it
    /// is refused at CONNECT at once, and a running broker closes its live sessions within
    /// seconds.
    Revoke {
        /// The device id.
        id: String,
    },
}

/// Where `certs` writes its audit rows: the store of the server these certificates belong to.
/// With `--certs-dir` and no `--data-dir`, that is the directory holding the certs dir (the
/// default layout, `<data-dir>/certs`); otherwise the data dir. A database that does not
/// exist is created only by `certs init` (and said so); every other command refuses, rather
/// than writing the trail to a stray database where it was run.
fn audit_config(
    config: &Config,
    certs_dir_given: bool,
    data_dir_given: bool,
    may_create: bool,
) -> anyhow::Result<Config> {
    let mut config = config.clone();
    if certs_dir_given
        && !data_dir_given
        && let Some(parent) = config.certs_dir().parent()
        && !parent.as_os_str().is_empty()
    {
        config.data_dir = parent.to_path_buf();
    }
    if config.store.url.is_some() {
        // A database server's store (`--database`): it exists or opening it says why.
        return Ok(config);
    }
    let database = config.database_path();
    if !database.exists() {
        if !may_create {
            anyhow::bail!(
                "no database at {}: certificate changes are audited in the server's store; pass --data-dir (the server's data directory)",
                database.display()
            );
        }
        eprintln!(
            "audit trail: creating a new database at {}",
            database.display()
        );
    }
    Ok(config)
}

async fn audit(
    config: &Config,
    action: &str,
    target: &str,
    details: serde_json::Value,
) -> anyhow::Result<()> {
    let store = open_store(config).await?;
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

pub async fn run(args: CertsArgs) -> anyhow::Result<()> {
    let certs_dir_given = args.certs_dir.is_some();
    let data_dir_given = args.store.data_dir.is_some();
    let config = args.store.config_with(|config| {
        if let Some(dir) = args.certs_dir {
            config.mqtt.certs_dir = Some(dir);
        }
    })?;
    let certs = CertsDir::new(config.certs_dir());
    let is_init = matches!(args.command, CertsCommand::Init { .. });
    let needs_audit = !matches!(args.command, CertsCommand::List);
    let config = if needs_audit {
        audit_config(&config, certs_dir_given, data_dir_given, is_init)?
    } else {
        config
    };
    match args.command {
        CertsCommand::Init { san, force } => {
            let report = pki::init(&certs, &san, force)?;
            for file in &report.files {
                println!("wrote {}", file.display());
            }
            println!("server names: {}", report.sans.join(", "));
            // The key that signs the audit trail's anchors lives beside the CA's, so a PKI
            // made here can be mounted read-only (a Kubernetes Secret) with everything in it.
            let audit_key = config.audit_key_path();
            if !audit_key.exists() {
                crate::store::audit::AuditKey::load(&audit_key, true)?;
                println!("wrote {}", audit_key.display());
            }
            audit(
                &config,
                "certificate.init",
                "ca",
                serde_json::json!({ "sans": report.sans, "replaced": force }),
            )
            .await?;
        }
        CertsCommand::Device { id, force } => {
            let id = device_id(&id, &config)?;
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
            let id = device_id(&id, &config)?;
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
            // Everything the device could connect with: its certificates and its plaintext
            // secret. A running broker ends their live sessions within seconds; on a shared
            // database, every node's broker does.
            let store = open_store(&config).await?;
            let revoked =
                crate::ingest::revocation::revoke_device(certs.clone(), &*store, &id, actor())
                    .await;
            store.close().await;
            let Some(revoked) = revoked? else {
                anyhow::bail!("device {id} has no unrevoked certificate");
            };
            for serial in &revoked.serials {
                println!("revoked {id} serial {serial}");
            }
            if revoked.secret_removed {
                println!("removed {id}'s MQTT secret");
            }
        }
    }
    Ok(())
}
