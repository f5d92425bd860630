//! SQL for the audit trail: appending to the hash chain (inside the caller's transaction) and
//! reading it back. The chain's hash itself is backend-neutral (`store/audit.rs`).

use super::now_text;
use crate::store::audit::{GENESIS, entry_hash};
use crate::store::{AuditEntry, AuditRecord, StoreError};
use rusqlite::{Connection, OptionalExtension, Row, params};

/// The columns `audit_from_row` reads, in its order.
const AUDIT_COLUMNS: &str = "id, at, actor, action, target, details, prev_hash, hash";

/// Appends one entry to the hash chain. The previous hash is read inside the (IMMEDIATE)
/// transaction, so a CLI writing beside a running server extends the same chain.
pub(super) fn append(tx: &rusqlite::Transaction<'_>, entry: &AuditEntry) -> Result<(), StoreError> {
    let (id, prev_hash): (i64, String) = tx
        .prepare_cached("SELECT id + 1, hash FROM audit_log ORDER BY id DESC LIMIT 1")?
        .query_row([], |row| Ok((row.get(0)?, row.get(1)?)))
        .optional()?
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
    tx.prepare_cached(&format!(
        "INSERT INTO audit_log ({AUDIT_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)"
    ))?
    .execute(params![
        id,
        at,
        entry.actor,
        entry.action,
        entry.target,
        details,
        prev_hash,
        hash
    ])?;
    Ok(())
}

fn audit_from_row(row: &Row<'_>) -> rusqlite::Result<AuditRecord> {
    Ok(AuditRecord {
        id: row.get(0)?,
        at: row.get(1)?,
        actor: row.get(2)?,
        action: row.get(3)?,
        target: row.get(4)?,
        details: row.get(5)?,
        prev_hash: row.get(6)?,
        hash: row.get(7)?,
    })
}

/// Rows with `id > after_id`, in id order, at most `limit`.
pub(super) fn log(
    conn: &Connection,
    after_id: i64,
    limit: usize,
) -> Result<Vec<AuditRecord>, StoreError> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {AUDIT_COLUMNS} FROM audit_log WHERE id > ?1 ORDER BY id LIMIT ?2"
    ))?;
    let rows = stmt.query_map(params![after_id, limit as i64], audit_from_row)?;
    Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
}

/// The id and hash of the newest row.
pub(super) fn head(conn: &Connection) -> Result<Option<(i64, String)>, StoreError> {
    Ok(conn
        .prepare_cached("SELECT id, hash FROM audit_log ORDER BY id DESC LIMIT 1")?
        .query_row([], |row| Ok((row.get(0)?, row.get(1)?)))
        .optional()?)
}

/// The newest row with this action.
pub(super) fn last(conn: &Connection, action: &str) -> Result<Option<AuditRecord>, StoreError> {
    Ok(conn
        .prepare_cached(&format!(
            "SELECT {AUDIT_COLUMNS} FROM audit_log WHERE action = ?1 ORDER BY id DESC LIMIT 1"
        ))?
        .query_row([action], audit_from_row)
        .optional()?)
}
