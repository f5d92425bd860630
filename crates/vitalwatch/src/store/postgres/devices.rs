//! SQL for the device registry and the quarantine on PostgreSQL: registering and changing
//! devices (each change audited in its transaction), which devices may report, their
//! counters, and keeping apart the readings of devices that may not.

use super::{Tx, audit, now_text, pg, to_utc};
use crate::store::{
    AuditEntry, DeviceRecord, DeviceRegistration, DeviceUpdate, PreparedReading, StoreError,
    StoreOptions,
};
use deadpool_postgres::GenericClient;
use std::collections::HashMap;
use tokio_postgres::Row;
use vitalwatch_core::telemetry::Timestamp;

/// The columns `device_from_row` reads, in its order.
const DEVICE_COLUMNS: &str = "device_id, patient_label, location, expected_interval_s, active, \
    registered_at, registered_by, updated_at, last_seen, total_readings";

fn device_from_row(row: &Row) -> Result<DeviceRecord, StoreError> {
    Ok(DeviceRecord {
        device_id: row.try_get(0).map_err(pg)?,
        patient_label: row.try_get(1).map_err(pg)?,
        location: row.try_get(2).map_err(pg)?,
        expected_interval_s: row.try_get(3).map_err(pg)?,
        status: if row.try_get::<_, bool>(4).map_err(pg)? {
            "active".to_owned()
        } else {
            "inactive".to_owned()
        },
        registered_at: row.try_get(5).map_err(pg)?,
        registered_by: row.try_get(6).map_err(pg)?,
        updated_at: row.try_get(7).map_err(pg)?,
        last_seen: row.try_get(8).map_err(pg)?,
        total_readings: row.try_get(9).map_err(pg)?,
    })
}

/// Whether each of `device_ids` is registered (absent if not) and active.
pub(super) async fn states(
    tx: &Tx<'_>,
    device_ids: &[String],
) -> Result<HashMap<String, bool>, StoreError> {
    let stmt = tx
        .prepare_cached("SELECT device_id, active FROM devices WHERE device_id = ANY($1)")
        .await
        .map_err(pg)?;
    let rows = tx.query(&stmt, &[&device_ids]).await.map_err(pg)?;
    Ok(rows.iter().map(|row| (row.get(0), row.get(1))).collect())
}

pub(super) async fn load(
    client: &impl GenericClient,
    device_id: &str,
) -> Result<Option<DeviceRecord>, StoreError> {
    let stmt = client
        .prepare_cached(&format!(
            "SELECT {DEVICE_COLUMNS} FROM devices WHERE device_id = $1"
        ))
        .await
        .map_err(pg)?;
    client
        .query_opt(&stmt, &[&device_id])
        .await
        .map_err(pg)?
        .map(|row| device_from_row(&row))
        .transpose()
}

/// Every registered device, by id.
pub(super) async fn list(client: &impl GenericClient) -> Result<Vec<DeviceRecord>, StoreError> {
    let rows = client
        .query(
            &format!("SELECT {DEVICE_COLUMNS} FROM devices ORDER BY device_id"),
            &[],
        )
        .await
        .map_err(pg)?;
    rows.iter().map(device_from_row).collect()
}

/// Inserts a device; false when its id is taken.
async fn insert(
    tx: &Tx<'_>,
    registration: &DeviceRegistration,
    actor: &str,
    interval: f64,
) -> Result<bool, StoreError> {
    let now = now_text();
    let stmt = tx
        .prepare_cached(
            "INSERT INTO devices (device_id, patient_label, location, expected_interval_s, active, \
             registered_at, registered_by, updated_at) VALUES ($1, $2, $3, $4, TRUE, $5, $6, $5) \
             ON CONFLICT (device_id) DO NOTHING",
        )
        .await
        .map_err(pg)?;
    let inserted = tx
        .execute(
            &stmt,
            &[
                &registration.device_id,
                &registration.patient_label,
                &registration.location,
                &interval,
                &now,
                &actor,
            ],
        )
        .await
        .map_err(pg)?;
    if inserted == 0 {
        return Ok(false);
    }
    audit::append(
        tx,
        &AuditEntry {
            actor: actor.to_owned(),
            action: "device.register".to_owned(),
            target: registration.device_id.clone(),
            details: serde_json::json!({
                "expected_interval_s": interval,
                "patient_label_set": registration.patient_label.is_some(),
                "location_set": registration.location.is_some(),
            }),
        },
    )
    .await?;
    Ok(true)
}

/// Registers a device (audited); [`StoreError::DeviceExists`] when its id is taken.
pub(super) async fn register(
    tx: &Tx<'_>,
    registration: &DeviceRegistration,
    actor: &str,
    default_interval_s: f64,
) -> Result<DeviceRecord, StoreError> {
    audit::lock(tx).await?;
    let interval = registration
        .expected_interval_s
        .unwrap_or(default_interval_s);
    if !insert(tx, registration, actor, interval).await? {
        return Err(StoreError::DeviceExists(registration.device_id.clone()));
    }
    load(tx, &registration.device_id)
        .await?
        .ok_or_else(|| StoreError::Other("device vanished after insert".to_owned()))
}

/// Registers a device on its first reading (auto-register policy); false when it was
/// registered meanwhile by someone else.
pub(super) async fn auto_register(
    tx: &Tx<'_>,
    device_id: &str,
    actor: &str,
    options: &StoreOptions,
) -> Result<bool, StoreError> {
    audit::lock(tx).await?;
    let registration = DeviceRegistration {
        device_id: device_id.to_owned(),
        ..DeviceRegistration::default()
    };
    insert(
        tx,
        &registration,
        actor,
        options.default_expected_interval_s,
    )
    .await
}

pub(super) async fn update(
    tx: &Tx<'_>,
    device_id: &str,
    update: &DeviceUpdate,
    actor: &str,
) -> Result<DeviceRecord, StoreError> {
    audit::lock(tx).await?;
    let Some(current) = load(tx, device_id).await? else {
        return Err(StoreError::DeviceNotFound(device_id.to_owned()));
    };
    let patient_label = update
        .patient_label
        .clone()
        .unwrap_or(current.patient_label.clone());
    let location = update.location.clone().unwrap_or(current.location.clone());
    let interval = update
        .expected_interval_s
        .unwrap_or(current.expected_interval_s);
    let active = update.active.unwrap_or(current.status == "active");
    let stmt = tx
        .prepare_cached(
            "UPDATE devices SET patient_label = $2, location = $3, expected_interval_s = $4, \
             active = $5, updated_at = $6 WHERE device_id = $1",
        )
        .await
        .map_err(pg)?;
    tx.execute(
        &stmt,
        &[
            &device_id,
            &patient_label,
            &location,
            &interval,
            &active,
            &now_text(),
        ],
    )
    .await
    .map_err(pg)?;
    audit::append(tx, &update.audit_entry(&current.status, device_id, actor)).await?;
    load(tx, device_id)
        .await?
        .ok_or_else(|| StoreError::DeviceNotFound(device_id.to_owned()))
}

/// Adds each device's newly stored readings to its counters (`n`, latest `received_at`).
pub(super) async fn count_readings(
    tx: &Tx<'_>,
    counters: &HashMap<&str, (i64, Timestamp)>,
) -> Result<(), StoreError> {
    if counters.is_empty() {
        return Ok(());
    }
    // In device order, so concurrent writers lock the rows in the same order.
    let mut rows: Vec<(&str, i64, String)> = counters
        .iter()
        .map(|(device_id, (n, seen))| (*device_id, *n, seen.to_rfc3339()))
        .collect();
    rows.sort_unstable();
    let device_ids: Vec<&str> = rows.iter().map(|r| r.0).collect();
    let counts: Vec<i64> = rows.iter().map(|r| r.1).collect();
    let seen: Vec<&str> = rows.iter().map(|r| r.2.as_str()).collect();
    let stmt = tx
        .prepare_cached(
            "UPDATE devices d SET total_readings = d.total_readings + u.n, \
             last_seen = CASE WHEN d.last_seen IS NULL OR d.last_seen < u.seen THEN u.seen \
             ELSE d.last_seen END \
             FROM unnest($1::text[], $2::int8[], $3::text[]) AS u(device_id, n, seen) \
             WHERE d.device_id = u.device_id",
        )
        .await
        .map_err(pg)?;
    tx.execute(&stmt, &[&device_ids, &counts, &seen])
        .await
        .map_err(pg)?;
    Ok(())
}

/// Keeps a reading of a device that may not report apart from patient data; its id.
pub(super) async fn quarantine(
    tx: &Tx<'_>,
    item: &PreparedReading,
    reason: &str,
) -> Result<i64, StoreError> {
    let reading = &item.reading;
    let stmt = tx
        .prepare_cached(
            "INSERT INTO quarantine (device_id, timestamp, received_at, reason, reading, source) \
             VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
        )
        .await
        .map_err(pg)?;
    let row = tx
        .query_one(
            &stmt,
            &[
                &reading.device_id.as_str(),
                &to_utc(reading.timestamp),
                &to_utc(reading.received_at),
                &reason,
                &crate::store::quarantine_payload(reading).to_string(),
                &item.source.as_str(),
            ],
        )
        .await
        .map_err(pg)?;
    Ok(row.get(0))
}
