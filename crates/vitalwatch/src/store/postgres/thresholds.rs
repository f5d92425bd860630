//! SQL for per-patient threshold overrides on PostgreSQL: the one place that lists their
//! columns (add a column here and in a migration).

use super::copy::Kind;
use super::{Tx, audit, now_text, pg};
use crate::store::{AuditEntry, StoreError, ThresholdsRecord};
use deadpool_postgres::GenericClient;
use vitalwatch_core::rules::PatientThresholds;
use vitalwatch_core::telemetry::Spo2Scale;

/// Every column of `patient_thresholds`, the key first, for `store copy`.
pub(super) const COPY_COLUMNS: [(&str, Kind); 15] = [
    ("device_id", Kind::Text),
    ("heart_rate_min", Kind::Float),
    ("heart_rate_max", Kind::Float),
    ("body_temp_min", Kind::Float),
    ("body_temp_max", Kind::Float),
    ("author", Kind::Text),
    ("reason", Kind::Text),
    ("effective_from", Kind::Text),
    ("updated_at", Kind::Text),
    ("spo2_scale", Kind::Text),
    ("spo2_min", Kind::Float),
    ("respiratory_rate_min", Kind::Float),
    ("respiratory_rate_max", Kind::Float),
    ("systolic_bp_min", Kind::Float),
    ("systolic_bp_max", Kind::Float),
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
         body_temp_min, body_temp_max, author, reason, effective_from, updated_at, \
         spo2_scale, spo2_min, respiratory_rate_min, respiratory_rate_max, systolic_bp_min, \
         systolic_bp_max) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15) \
         ON CONFLICT (device_id) DO UPDATE SET heart_rate_min = excluded.heart_rate_min, \
         heart_rate_max = excluded.heart_rate_max, body_temp_min = excluded.body_temp_min, \
         body_temp_max = excluded.body_temp_max, author = excluded.author, \
         reason = excluded.reason, effective_from = excluded.effective_from, \
         updated_at = excluded.updated_at, spo2_scale = excluded.spo2_scale, \
         spo2_min = excluded.spo2_min, respiratory_rate_min = excluded.respiratory_rate_min, \
         respiratory_rate_max = excluded.respiratory_rate_max, \
         systolic_bp_min = excluded.systolic_bp_min, systolic_bp_max = excluded.systolic_bp_max",
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
            &t.spo2_scale.map(Spo2Scale::as_str),
            &t.spo2_min,
            &t.respiratory_rate_min,
            &t.respiratory_rate_max,
            &t.systolic_bp_min,
            &t.systolic_bp_max,
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

/// The columns [`record_of`] reads, in its order.
const SELECT: &str = "SELECT device_id, heart_rate_min, heart_rate_max, body_temp_min, \
     body_temp_max, author, reason, effective_from, updated_at, spo2_scale, spo2_min, \
     respiratory_rate_min, respiratory_rate_max, systolic_bp_min, systolic_bp_max \
     FROM patient_thresholds";

/// Overrides of one device, or of every device, by device id.
pub(super) async fn list(
    client: &impl GenericClient,
    device_id: Option<String>,
) -> Result<Vec<ThresholdsRecord>, StoreError> {
    let rows = client
        .query(
            &format!("{SELECT} WHERE $1::text IS NULL OR device_id = $1 ORDER BY device_id"),
            &[&device_id],
        )
        .await
        .map_err(pg)?;
    Ok(rows.iter().map(record_of).collect())
}

/// Overrides of the given devices, by device id.
pub(super) async fn of_devices(
    client: &impl GenericClient,
    devices: &[String],
) -> Result<Vec<ThresholdsRecord>, StoreError> {
    let statement = client
        .prepare_cached(&format!(
            "{SELECT} WHERE device_id = ANY($1) ORDER BY device_id"
        ))
        .await
        .map_err(pg)?;
    let rows = client.query(&statement, &[&devices]).await.map_err(pg)?;
    Ok(rows.iter().map(record_of).collect())
}

fn record_of(row: &tokio_postgres::Row) -> ThresholdsRecord {
    ThresholdsRecord {
        device_id: row.get(0),
        thresholds: PatientThresholds {
            heart_rate_min: row.get(1),
            heart_rate_max: row.get(2),
            body_temp_min: row.get(3),
            body_temp_max: row.get(4),
            spo2_scale: row
                .get::<_, Option<String>>(9)
                .as_deref()
                .and_then(Spo2Scale::parse),
            spo2_min: row.get(10),
            respiratory_rate_min: row.get(11),
            respiratory_rate_max: row.get(12),
            systolic_bp_min: row.get(13),
            systolic_bp_max: row.get(14),
        },
        author: row.get(5),
        reason: row.get(6),
        effective_from: row.get(7),
        updated_at: row.get(8),
    }
}
