//! SQL for the audit trail on PostgreSQL: appending to the hash chain inside the caller's
//! transaction, and reading it back. The hash itself is backend-neutral (`store/audit.rs`).
//!
//! Several processes may write at once (a server and the CLI, or several nodes). The chain's
//! head is read and extended under a transaction-scoped advisory lock, so two transactions
//! never extend the same head. Every transaction that audits takes the lock before any row
//! lock ([`lock`]), so the lock cannot take part in a deadlock.

use super::{Tx, now_text, pg};
use crate::store::audit::{GENESIS, entry_hash};
use crate::store::{AuditEntry, AuditRecord, StoreError};
use deadpool_postgres::GenericClient;
use tokio_postgres::Row;

/// The columns `audit_from_row` reads, in its order.
const AUDIT_COLUMNS: &str = "id, at, actor, action, target, details, prev_hash, hash";

/// The advisory lock of the chain's head, held until the transaction ends.
const CHAIN_LOCK: i64 = 0x5657_0000_0000_0002;

/// Takes the chain's lock for the rest of the transaction (a no-op when already held).
pub(super) async fn lock(tx: &Tx<'_>) -> Result<(), StoreError> {
    let stmt = tx
        .prepare_cached("SELECT pg_advisory_xact_lock($1)")
        .await
        .map_err(pg)?;
    tx.execute(&stmt, &[&CHAIN_LOCK]).await.map_err(pg)?;
    Ok(())
}

/// Appends one entry to the hash chain, under the chain's lock.
pub(super) async fn append(tx: &Tx<'_>, entry: &AuditEntry) -> Result<(), StoreError> {
    lock(tx).await?;
    let head = tx
        .prepare_cached("SELECT id + 1, hash FROM audit_log ORDER BY id DESC LIMIT 1")
        .await
        .map_err(pg)?;
    let (id, prev_hash): (i64, String) = tx
        .query_opt(&head, &[])
        .await
        .map_err(pg)?
        .map(|row| (row.get(0), row.get(1)))
        .unwrap_or_else(|| (1, GENESIS.to_owned()));
    let at = now_text();
    let details = entry.details.to_string();
    let hash = entry_hash(
        &prev_hash,
        id,
        &at,
        &entry.actor,
        &entry.action,
        &entry.target,
        &details,
    );
    insert(
        tx,
        &AuditRecord {
            id,
            at,
            actor: entry.actor.clone(),
            action: entry.action.clone(),
            target: entry.target.clone(),
            details,
            prev_hash,
            hash,
        },
    )
    .await
}

/// Inserts a row exactly as given (appending computes it; `store copy` copies it).
pub(super) async fn insert(tx: &Tx<'_>, row: &AuditRecord) -> Result<(), StoreError> {
    let stmt = tx
        .prepare_cached(&format!(
            "INSERT INTO audit_log ({AUDIT_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
        ))
        .await
        .map_err(pg)?;
    tx.execute(
        &stmt,
        &[
            &row.id,
            &row.at,
            &row.actor,
            &row.action,
            &row.target,
            &row.details,
            &row.prev_hash,
            &row.hash,
        ],
    )
    .await
    .map_err(pg)?;
    Ok(())
}

fn audit_from_row(row: &Row) -> AuditRecord {
    AuditRecord {
        id: row.get(0),
        at: row.get(1),
        actor: row.get(2),
        action: row.get(3),
        target: row.get(4),
        details: row.get(5),
        prev_hash: row.get(6),
        hash: row.get(7),
    }
}

/// Rows with `id > after_id`, in id order, at most `limit`.
pub(super) async fn log(
    client: &impl GenericClient,
    after_id: i64,
    limit: usize,
) -> Result<Vec<AuditRecord>, StoreError> {
    let stmt = client
        .prepare_cached(&format!(
            "SELECT {AUDIT_COLUMNS} FROM audit_log WHERE id > $1 ORDER BY id LIMIT $2"
        ))
        .await
        .map_err(pg)?;
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let rows = client
        .query(&stmt, &[&after_id, &limit])
        .await
        .map_err(pg)?;
    Ok(rows.iter().map(audit_from_row).collect())
}

/// The id and hash of the newest row.
pub(super) async fn head(client: &impl GenericClient) -> Result<Option<(i64, String)>, StoreError> {
    let stmt = client
        .prepare_cached("SELECT id, hash FROM audit_log ORDER BY id DESC LIMIT 1")
        .await
        .map_err(pg)?;
    Ok(client
        .query_opt(&stmt, &[])
        .await
        .map_err(pg)?
        .map(|row| (row.get(0), row.get(1))))
}

/// The newest row with this action.
pub(super) async fn last(
    client: &impl GenericClient,
    action: &str,
) -> Result<Option<AuditRecord>, StoreError> {
    let stmt = client
        .prepare_cached(&format!(
            "SELECT {AUDIT_COLUMNS} FROM audit_log WHERE action = $1 ORDER BY id DESC LIMIT 1"
        ))
        .await
        .map_err(pg)?;
    Ok(client
        .query_opt(&stmt, &[&action])
        .await
        .map_err(pg)?
        .map(|row| audit_from_row(&row)))
}
