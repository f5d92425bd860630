//! SQL for per-patient threshold overrides on PostgreSQL: the one place that lists their
//! columns (add a column here and in a migration).

use super::copy::Kind;
use super::{Tx, audit, now_text, pg};
use crate::store::{AuditEntry, StoreError, ThresholdsRecord};
use deadpool_postgres::GenericClient;
use vitalwatch_core::rules::PatientThresholds;

/// Every column of `patient_thresholds`, the key first, for `store copy`.
pub(super) const COPY_COLUMNS: [(&str, Kind); 9] = [
    ("device_id", Kind::Text),
    ("heart_rate_min", Kind::Float),
    ("heart_rate_max", Kind::Float),
    ("body_temp_min", Kind::Float),
    ("body_temp_max", Kind::Float),
    ("author", Kind::Text),
    ("reason", Kind::Text),
    ("effective_from", Kind::Text),
    ("updated_at", Kind::Text),
];

/// Sets (replaces) a device's overrides, audited in the same transaction.
pub(super) async fn set(
    tx: &Tx<'_>,
    mut record: ThresholdsRecord,
) -> Result<ThresholdsRecord, StoreError> {
    audit::lock(tx).await?;
    record.updated_at = now_text();
    let t = record.thresholds;
    tx.execute(
        "INSERT INTO patient_thresholds (device_id, heart_rate_min, heart_rate_max, \
         body_temp_min, body_temp_max, author, reason, effective_from, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
         ON CONFLICT (device_id) DO UPDATE SET heart_rate_min = excluded.heart_rate_min, \
         heart_rate_max = excluded.heart_rate_max, body_temp_min = excluded.body_temp_min, \
         body_temp_max = excluded.body_temp_max, author = excluded.author, \
         reason = excluded.reason, effective_from = excluded.effective_from, \
         updated_at = excluded.updated_at",
        &[
            &record.device_id,
            &t.heart_rate_min,
            &t.heart_rate_max,
            &t.body_temp_min,
            &t.body_temp_max,
            &record.author,
            &record.reason,
            &record.effective_from,
            &record.updated_at,
        ],
    )
    .await
    .map_err(pg)?;
    audit::append(
        tx,
        &AuditEntry {
            actor: record.author.clone(),
            action: "thresholds.set".to_owned(),
            target: record.device_id.clone(),
            details: serde_json::json!({
                "thresholds": t,
                "reason": record.reason,
                "effective_from": record.effective_from,
            }),
        },
    )
    .await?;
    Ok(record)
}

/// Removes a device's overrides (audited); false when it had none.
pub(super) async fn clear(
    tx: &Tx<'_>,
    device_id: &str,
    actor: &str,
    reason: Option<String>,
) -> Result<bool, StoreError> {
    audit::lock(tx).await?;
    let removed = tx
        .execute(
            "DELETE FROM patient_thresholds WHERE device_id = $1",
            &[&device_id],
        )
        .await
        .map_err(pg)?;
    if removed > 0 {
        audit::append(
            tx,
            &AuditEntry {
                actor: actor.to_owned(),
                action: "thresholds.clear".to_owned(),
                target: device_id.to_owned(),
                details: serde_json::json!({ "reason": reason }),
            },
        )
        .await?;
    }
    Ok(removed > 0)
}

/// Overrides of one device, or of every device, by device id.
pub(super) async fn list(
    client: &impl GenericClient,
    device_id: Option<String>,
) -> Result<Vec<ThresholdsRecord>, StoreError> {
    let rows = client
        .query(
            "SELECT device_id, heart_rate_min, heart_rate_max, body_temp_min, body_temp_max, \
             author, reason, effective_from, updated_at FROM patient_thresholds \
             WHERE $1::text IS NULL OR device_id = $1 ORDER BY device_id",
            &[&device_id],
        )
        .await
        .map_err(pg)?;
    Ok(rows
        .iter()
        .map(|row| ThresholdsRecord {
            device_id: row.get(0),
            thresholds: PatientThresholds {
                heart_rate_min: row.get(1),
                heart_rate_max: row.get(2),
                body_temp_min: row.get(3),
                body_temp_max: row.get(4),
            },
            author: row.get(5),
            reason: row.get(6),
            effective_from: row.get(7),
            updated_at: row.get(8),
        })
        .collect())
}
