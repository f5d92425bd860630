//! Retention: deleting what has outlived its time, each kind of row by its own cutoff, and
//! recording the purge (with the audit chain's new anchor) in the chain itself.

use super::audit;
use crate::store::{AuditEntry, PurgeCounts, Retention, StoreError};
use rusqlite::OptionalExtension;
use vitalwatch_core::telemetry::Timestamp;

pub(super) fn purge(
    tx: &rusqlite::Transaction<'_>,
    now: Timestamp,
    retention: Retention,
) -> Result<PurgeCounts, StoreError> {
    let cutoff = |days: u32| {
        now.saturating_add_micros(-(i64::from(days) * 86_400 * 1_000_000))
            .to_rfc3339()
    };
    let readings_cutoff = cutoff(retention.readings_days);
    let audit_cutoff = cutoff(retention.audit_days);
    let counts = PurgeCounts {
        anomalies: tx.execute(
            "DELETE FROM anomalies WHERE detected_at < ?1",
            [cutoff(retention.anomalies_days)],
        )? as u64,
        readings: tx.execute(
            "DELETE FROM readings WHERE received_at < ?1",
            [&readings_cutoff],
        )? as u64,
        quarantine: tx.execute(
            "DELETE FROM quarantine WHERE received_at < ?1",
            [&readings_cutoff],
        )? as u64,
        audit: tx.execute("DELETE FROM audit_log WHERE at < ?1", [&audit_cutoff])? as u64,
    };
    if counts != PurgeCounts::default() {
        // When audit rows go, the oldest remaining one becomes the chain's anchor: recorded
        // here, inside the chain, so `audit verify` can tell retention from deletion.
        let anchor: Option<(i64, String)> = tx
            .query_row(
                "SELECT id, prev_hash FROM audit_log ORDER BY id LIMIT 1",
                [],
                |row| Ok((row.get(0)?, row.get(1)?)),
            )
            .optional()?;
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
        )?;
    }
    Ok(counts)
}
