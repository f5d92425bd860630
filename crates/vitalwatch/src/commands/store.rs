//! `vitalwatch store copy`: move a box to PostgreSQL. Every row of a SQLite store (readings,
//! anomalies, quarantine, devices, alerts and their history, thresholds, webhook deliveries,
//! tokens, users, the audit chain) is copied as it is; a re-run resumes; the counts and the
//! audit chain are verified on the target before it reports success.

use super::StoreArgs;
use crate::store::Store;
use crate::store::postgres::PostgresStore;
use crate::store::postgres::copy::copy_from_sqlite;
use crate::store::sqlite::SqliteStore;
use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use std::path::PathBuf;

#[derive(Debug, Args)]
pub struct StoreCommandArgs {
    #[command(subcommand)]
    pub command: StoreCommand,
}

#[derive(Debug, Subcommand)]
pub enum StoreCommand {
    /// Copy a SQLite store into a PostgreSQL database; re-run it to resume. Stop the server
    /// first: rows written during the copy would make the counts differ.
    Copy {
        /// The SQLite store to copy from (e.g. data/anomalies.db).
        #[arg(long, value_name = "FILE")]
        from: PathBuf,
        /// The PostgreSQL database to copy to (postgres://user:password@host:port/db).
        #[arg(long, value_name = "URL")]
        to: String,
        #[command(flatten)]
        store: StoreArgs,
    },
}

pub async fn run(args: StoreCommandArgs) -> anyhow::Result<()> {
    match args.command {
        StoreCommand::Copy { from, to, store } => copy(from, to, store).await,
    }
}

async fn anchor_copied_chain(
    config: &crate::config::Config,
    target: &PostgresStore,
) -> anyhow::Result<()> {
    use crate::store::audit;
    let key =
        audit::AuditKey::load(&config.audit_key_path(), true).context("loading the audit key")?;
    let path = audit::anchors_path(&config.data_dir);
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    audit::anchor_head(target, &path, &key).await;
    Ok(())
}

async fn copy(from: PathBuf, to: String, store: StoreArgs) -> anyhow::Result<()> {
    if !from.is_file() {
        bail!("{} is not a SQLite store (no such file)", from.display());
    }
    let mut config = store.config()?;
    config.store.url = Some(crate::secret::Secret::new(to));
    let target_name = config.database_name();
    // Opening the source brings its schema to this build's version.
    let source = SqliteStore::open(&from, config.store_options())
        .with_context(|| format!("opening {}", from.display()))?;
    source.close().await;
    let url = config
        .store
        .url
        .as_ref()
        .map(|url| url.expose().to_owned())
        .unwrap_or_default();
    let target = PostgresStore::open(&url, config.store_options(), config.postgres_settings())
        .await
        .context("opening the PostgreSQL store")?;
    let report = copy_from_sqlite(&from, &target).await;
    // The verified chain is anchored where `audit verify` on this box looks for it, signed
    // with the box's audit key, as every server start does.
    let anchored = match &report {
        Ok(_) => anchor_copied_chain(&config, &target).await,
        Err(_) => Ok(()),
    };
    target.close().await;
    let report = report.with_context(|| format!("copying {} to {target_name}", from.display()))?;
    anchored?;
    for table in &report.tables {
        println!(
            "{}: {} rows in the source, {} copied now, {} on the target",
            table.table, table.source, table.copied, table.target
        );
    }
    println!(
        "copied {} to {target_name}: counts match, audit chain verified on the target ({} entries)",
        from.display(),
        report.audit_verified
    );
    Ok(())
}
