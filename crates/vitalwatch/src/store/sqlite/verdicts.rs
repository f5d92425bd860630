//! Clinicians' verdicts on alert episodes (schema V4), and the readings those episodes cover,
//! labelled with the verdict, as training data for the anomaly model.

use super::{audit, now_text, readings};
use crate::store::{AuditEntry, ReadingRecord, StoreError};
use rusqlite::{Connection, params};
use vitalwatch_core::telemetry::Timestamp;

/// Records the verdict and its audit entry in the caller's transaction.
pub(super) fn set_verdict(
    tx: &rusqlite::Transaction<'_>,
    alert_id: i64,
    true_alarm: bool,
    by: &str,
) -> Result<(), StoreError> {
    let verdict = if true_alarm {
        "true_alarm"
    } else {
        "false_alarm"
    };
    let changed = tx.execute(
        "UPDATE alerts SET verdict = ?2, verdict_by = ?3, verdict_at = ?4 WHERE id = ?1",
        params![alert_id, verdict, by, now_text()],
    )?;
    if changed == 0 {
        return Err(StoreError::AlertNotFound(alert_id));
    }
    audit::append(
        tx,
        &AuditEntry {
            actor: by.to_owned(),
            action: "alert.verdict".to_owned(),
            target: alert_id.to_string(),
            details: serde_json::json!({ "verdict": verdict }),
        },
    )
}

/// Readings received during episodes with a verdict (true = a true alarm), oldest episode
/// first, at most `limit`.
pub(super) fn labelled_readings(
    conn: &Connection,
    limit: usize,
) -> Result<Vec<(ReadingRecord, bool)>, StoreError> {
    let episodes: Vec<(String, String, Option<String>, String)> = conn
        .prepare_cached(
            "SELECT device_id, opened_at, resolved_at, verdict FROM alerts \
             WHERE verdict IS NOT NULL ORDER BY id",
        )?
        .query_map([], |row| {
            Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?))
        })?
        .collect::<rusqlite::Result<_>>()?;
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {} FROM readings WHERE device_id = ?1 AND received_at >= ?2 AND received_at <= ?3 \
         ORDER BY id LIMIT ?4",
        readings::select_columns()
    ))?;
    let mut out = Vec::new();
    for (device_id, opened_at, resolved_at, verdict) in episodes {
        // The reading that opened the episode was committed just before the engine saw
        // it, so the window starts a little before `opened_at`.
        let from = Timestamp::parse_text(&opened_at)
            .map(|t| t.saturating_add_micros(-10_000_000).to_rfc3339())
            .unwrap_or(opened_at);
        let until = resolved_at.unwrap_or_else(|| "9999-12-31T23:59:59.999999Z".to_owned());
        let remaining = i64::try_from(limit.saturating_sub(out.len())).unwrap_or(i64::MAX);
        if remaining == 0 {
            break;
        }
        let rows = stmt.query_map(
            params![device_id, from, until, remaining],
            readings::reading_from_row,
        )?;
        for row in rows {
            out.push((row?, verdict == "true_alarm"));
        }
    }
    Ok(out)
}
