//! `vitalwatch audit verify|export`: check the audit trail's hash chain, and export it.

use super::StoreArgs;
use crate::config::Config;
use crate::server::open_store;
use crate::store::Store;
use crate::store::audit::{Anchor, ChainCheck, check_anchors};
use clap::{Args, Subcommand};
use vitalwatch_core::telemetry::Timestamp;

const PAGE: usize = 5000;

#[derive(Debug, Args)]
pub struct AuditArgs {
    #[command(flatten)]
    pub store: StoreArgs,

    #[command(subcommand)]
    pub command: AuditCommand,
}

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Recompute the hash chain; exits non-zero and names the first bad entry when a row was
    /// edited, deleted or reordered, the tail or the start was cut (anchors, retention), or
    /// the log is gone while the store holds data.
    Verify {
        /// The audit key (`audit.key`): also check that every anchor is signed by it. Works
        /// on a copy of the data directory, offline.
        #[arg(long, value_name = "FILE")]
        key: Option<std::path::PathBuf>,
    },
    /// Write the audit trail as JSON lines on standard output.
    Export {
        /// Only entries at or after this time (RFC 3339 or epoch seconds).
        #[arg(long, value_name = "TIME")]
        since: Option<String>,
    },
}

pub async fn run(args: AuditArgs) -> anyhow::Result<()> {
    let config = args.store.config()?;
    match args.command {
        AuditCommand::Verify { key } => verify(config, key).await,
        AuditCommand::Export { since } => {
            let since = since
                .map(|raw| super::time_or_epoch(&raw, "--since"))
                .transpose()?;
            export(config, since).await
        }
    }
}

/// Verifies the whole chain; an error names the first bad entry.
async fn verify(config: Config, key: Option<std::path::PathBuf>) -> anyhow::Result<()> {
    let key = key
        .map(|path| crate::store::audit::AuditKey::load(&path, false))
        .transpose()?;
    let store = open_store(&config).await?;
    let path = crate::store::audit::anchors_path(&config.data_dir);
    let anchors_exist = path.exists();
    let anchors = crate::store::audit::read_anchors(&path)?;
    let res = verify_store(
        &*store,
        &anchors,
        anchors_exist,
        key.as_ref(),
        config.store.audit_retention_days,
    )
    .await;
    store.close().await;
    let verified = res?;
    println!("audit log verified: {verified} entries, hash chain intact");
    Ok(())
}

fn failed(brk: crate::store::audit::ChainBreak) -> anyhow::Error {
    anyhow::anyhow!(
        "audit log verification FAILED at entry #{}: {}",
        brk.id,
        brk.reason
    )
}

/// Whether the store holds anything a running server would have audited.
async fn holds_data(store: &dyn Store) -> anyhow::Result<bool> {
    Ok(!store.list_devices().await?.is_empty()
        || !store.list_users().await?.is_empty()
        || !store.list_tokens().await?.is_empty()
        || store.max_event_ids().await? != (0, 0))
}

async fn verify_store(
    store: &dyn Store,
    anchors: &[Anchor],
    anchors_exist: bool,
    key: Option<&crate::store::audit::AuditKey>,
    retention_days: u32,
) -> anyhow::Result<u64> {
    if let Some(key) = key {
        crate::store::audit::check_signatures(anchors, key).map_err(failed)?;
    }
    let mut check = ChainCheck::default();
    let mut after = 0;
    let anchored: std::collections::HashSet<i64> = anchors.iter().map(|a| a.id).collect();
    let mut seen = std::collections::HashMap::new();
    let mut first_id = None;
    let mut purges = Vec::new();
    loop {
        let rows = store.audit_log(after, PAGE).await?;
        let Some(last) = rows.last() else { break };
        after = last.id;
        first_id.get_or_insert(rows[0].id);
        for row in rows.iter().filter(|row| anchored.contains(&row.id)) {
            seen.insert(row.id, row.hash.clone());
        }
        for row in rows.iter().filter(|row| row.action == "retention.purge") {
            let details: serde_json::Value = serde_json::from_str(&row.details).unwrap_or_default();
            if details.get("anchor").is_some() {
                purges.push(crate::store::audit::Purge {
                    id: row.id,
                    at: row.at.clone(),
                    cutoff: details["audit_cutoff"].as_str().map(str::to_owned),
                });
            }
        }
        check.feed(&rows).map_err(failed)?;
    }
    if first_id.is_none() && anchors.is_empty() && holds_data(store).await? {
        anyhow::bail!(
            "audit log verification FAILED: the audit log is empty (and has no anchors) but the store holds devices, users, tokens or readings: the log was deleted"
        );
    }
    if first_id.is_some() && !anchors_exist {
        anyhow::bail!(
            "audit log verification FAILED: the anchors file (audit-anchors.jsonl) is missing; every server start writes one, so it was deleted"
        );
    }
    check
        .finish()
        .and_then(|()| check_anchors(anchors, &seen, first_id, (after > 0).then_some(after)))
        .and_then(|()| {
            crate::store::audit::check_purges(&purges, anchors, first_id, retention_days)
        })
        .map_err(failed)?;
    Ok(check.verified)
}

/// Writes entries at or after `since` as JSON lines on standard output.
async fn export(config: Config, since: Option<Timestamp>) -> anyhow::Result<()> {
    let store = open_store(&config).await?;
    let since = since.map(Timestamp::to_rfc3339);
    let mut after = 0;
    let res: anyhow::Result<()> = async {
        use std::io::Write;
        let stdout = std::io::stdout();
        let mut out = stdout.lock();
        loop {
            let rows = store.audit_log(after, PAGE).await?;
            let Some(last) = rows.last() else { break };
            after = last.id;
            for row in rows
                .iter()
                .filter(|r| since.as_ref().is_none_or(|s| &r.at >= s))
            {
                let details: serde_json::Value = serde_json::from_str(&row.details)
                    .unwrap_or_else(|_| serde_json::Value::String(row.details.clone()));
                let line = serde_json::json!({
                    "id": row.id, "at": row.at, "actor": row.actor, "action": row.action,
                    "target": row.target, "details": details,
                    "prev_hash": row.prev_hash, "hash": row.hash,
                });
                writeln!(out, "{line}")?;
            }
        }
        Ok(())
    }
    .await;
    store.close().await;
    res
}
