//! Retention on PostgreSQL: readings go by whole daily partitions (`DROP TABLE`, no `DELETE`
//! of millions of rows), plus those in the default partition; every other kind of row by its
//! own cutoff. The purge is recorded, with the audit chain's new anchor, in the chain itself.
//!
//! A daily partition goes once its whole day is past the cutoff (its readings arrived within a
//! day or two of their time: partitions exist only around today), so they are kept up to a day
//! or two longer than `readings_days`. Readings in the default partition (times outside every
//! daily one: an old backlog, a wrong clock) go by when they arrived, as on SQLite.

use super::schema::{existing_partitions, partition_of};
use super::{Tx, audit, pg, to_utc};
use crate::store::{AuditEntry, PurgeCounts, Retention, StoreError};
use vitalwatch_core::telemetry::Timestamp;

pub(super) async fn purge(
    tx: &Tx<'_>,
    now: Timestamp,
    retention: Retention,
) -> Result<PurgeCounts, StoreError> {
    audit::lock(tx).await?;
    let cutoff = |days: u32| now.saturating_add_micros(-(i64::from(days) * 86_400 * 1_000_000));
    let readings_cutoff = to_utc(cutoff(retention.readings_days));
    let anomalies = tx
        .execute(
            "DELETE FROM anomalies WHERE detected_at < $1",
            &[&to_utc(cutoff(retention.anomalies_days))],
        )
        .await
        .map_err(pg)?;
    let mut readings = 0u64;
    for day in existing_partitions(tx).await? {
        let (name, upper) = partition_of(day);
        if upper > readings_cutoff {
            continue;
        }
        // The name is made from a date, never from input.
        readings += orphan_anomalies(tx, &format!("SELECT id FROM {name}"), &[]).await?;
        tx.batch_execute(&format!("DROP TABLE {name}"))
            .await
            .map_err(pg)?;
    }
    readings += orphan_anomalies(
        tx,
        "DELETE FROM readings_default WHERE received_at < $1 RETURNING id",
        &[&readings_cutoff],
    )
    .await?;
    let quarantine = tx
        .execute(
            "DELETE FROM quarantine WHERE received_at < $1",
            &[&readings_cutoff],
        )
        .await
        .map_err(pg)?;
    let audit_cutoff = cutoff(retention.audit_days).to_rfc3339();
    let audit_rows = tx
        .execute("DELETE FROM audit_log WHERE at < $1", &[&audit_cutoff])
        .await
        .map_err(pg)?;
    let counts = PurgeCounts {
        readings,
        quarantine,
        anomalies,
        audit: audit_rows,
    };
    if counts != PurgeCounts::default() {
        // When audit rows go, the oldest remaining one becomes the chain's anchor: recorded
        // here, inside the chain, so `audit verify` can tell retention from deletion.
        let anchor = tx
            .query_opt(
                "SELECT id, prev_hash FROM audit_log ORDER BY id LIMIT 1",
                &[],
            )
            .await
            .map_err(pg)?
            .map(|row| (row.get::<_, i64>(0), row.get::<_, String>(1)));
        let mut details = serde_json::to_value(counts).unwrap_or_default();
        if counts.audit > 0
            && let Some((id, prev_hash)) = anchor
        {
            details["anchor"] = serde_json::json!({ "id": id, "prev_hash": prev_hash });
            // What `audit verify` checks against the retention period.
            details["audit_cutoff"] = serde_json::json!(audit_cutoff);
        }
        audit::append(
            tx,
            &AuditEntry {
                actor: "system:retention".to_owned(),
                action: "retention.purge".to_owned(),
                target: "store".to_owned(),
                details,
            },
        )
        .await?;
    }
    Ok(counts)
}

/// Detaches the anomalies of the readings `ids_sql` selects (or deletes) from them, as a
/// foreign key's `ON DELETE SET NULL` would; returns how many readings it named.
async fn orphan_anomalies(
    tx: &Tx<'_>,
    ids_sql: &str,
    params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
) -> Result<u64, StoreError> {
    let row = tx
        .query_one(
            &format!(
                "WITH gone AS ({ids_sql}), \
                 detached AS (UPDATE anomalies SET reading_id = NULL \
                   WHERE reading_id IN (SELECT id FROM gone)) \
                 SELECT COUNT(*) FROM gone"
            ),
            params,
        )
        .await
        .map_err(pg)?;
    Ok(row.get::<_, i64>(0) as u64)
}
