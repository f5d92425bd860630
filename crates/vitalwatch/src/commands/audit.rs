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
    /// edited, deleted or reordered.
    Verify,
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
        AuditCommand::Verify => verify(config).await,
        AuditCommand::Export { since } => {
            let since = since
                .map(|raw| super::time_or_epoch(&raw, "--since"))
                .transpose()?;
            export(config, since).await
        }
    }
}

/// Verifies the whole chain; an error names the first bad entry.
async fn verify(config: Config) -> anyhow::Result<()> {
    let store = open_store(&config).await?;
    let anchors =
        crate::store::audit::read_anchors(&crate::store::audit::anchors_path(&config.data_dir))?;
    let res = verify_store(&*store, &anchors).await;
    store.close().await;
    let verified = res?;
    println!("audit log verified: {verified} entries, hash chain intact");
    Ok(())
}

async fn verify_store(store: &dyn Store, anchors: &[Anchor]) -> anyhow::Result<u64> {
    let mut check = ChainCheck::default();
    let mut after = 0;
    let anchored: std::collections::HashSet<i64> = anchors.iter().map(|a| a.id).collect();
    let mut seen = std::collections::HashMap::new();
    let mut first_id = None;
    loop {
        let rows = store.audit_log(after, PAGE).await?;
        let Some(last) = rows.last() else { break };
        after = last.id;
        first_id.get_or_insert(rows[0].id);
        for row in rows.iter().filter(|row| anchored.contains(&row.id)) {
            seen.insert(row.id, row.hash.clone());
        }
        check.feed(&rows).map_err(|brk| {
            anyhow::anyhow!(
                "audit log verification FAILED at entry #{}: {}",
                brk.id,
                brk.reason
            )
        })?;
    }
    check
        .finish()
        .and_then(|()| check_anchors(anchors, &seen, first_id, (after > 0).then_some(after)))
        .map_err(|brk| {
            anyhow::anyhow!(
                "audit log verification FAILED at entry #{}: {}",
                brk.id,
                brk.reason
            )
        })?;
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
