//! SQL for the device registry and the quarantine: registering and changing devices (each
//! change audited in its transaction), whether a device may report, and keeping apart the
//! readings of devices that may not.

use super::{audit, now_text, readings};
use crate::store::{
    AuditEntry, DeviceRecord, DeviceRegistration, DeviceUpdate, ItemOutcome, PreparedReading,
    StoreError, StoreOptions,
};
use rusqlite::{Connection, OptionalExtension, Row, params};
use vitalwatch_core::rules::Finding;

/// The columns `device_from_row` reads, in its order.
const DEVICE_COLUMNS: &str = "device_id, patient_label, location, expected_interval_s, active, \
    registered_at, registered_by, updated_at, last_seen, total_readings";

fn device_from_row(row: &Row<'_>) -> rusqlite::Result<DeviceRecord> {
    Ok(DeviceRecord {
        device_id: row.get(0)?,
        patient_label: row.get(1)?,
        location: row.get(2)?,
        expected_interval_s: row.get(3)?,
        status: if row.get::<_, bool>(4)? {
            "active".to_owned()
        } else {
            "inactive".to_owned()
        },
        registered_at: row.get(5)?,
        registered_by: row.get(6)?,
        updated_at: row.get(7)?,
        last_seen: row.get(8)?,
        total_readings: row.get(9)?,
    })
}

/// Whether a device is registered and, if so, active.
pub(super) fn state(
    tx: &rusqlite::Transaction<'_>,
    device_id: &str,
) -> Result<Option<bool>, StoreError> {
    Ok(tx
        .prepare_cached("SELECT active FROM devices WHERE device_id = ?1")?
        .query_row([device_id], |row| row.get::<_, bool>(0))
        .optional()?)
}

pub(super) fn load(conn: &Connection, device_id: &str) -> Result<Option<DeviceRecord>, StoreError> {
    Ok(conn
        .prepare_cached(&format!(
            "SELECT {DEVICE_COLUMNS} FROM devices WHERE device_id = ?1"
        ))?
        .query_row([device_id], device_from_row)
        .optional()?)
}

/// Every registered device, by id.
pub(super) fn list(conn: &Connection) -> Result<Vec<DeviceRecord>, StoreError> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {DEVICE_COLUMNS} FROM devices ORDER BY device_id"
    ))?;
    let rows = stmt.query_map([], device_from_row)?;
    Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
}

pub(super) fn register(
    tx: &rusqlite::Transaction<'_>,
    registration: &DeviceRegistration,
    actor: &str,
    default_interval_s: f64,
) -> Result<DeviceRecord, StoreError> {
    let now = now_text();
    let interval = registration
        .expected_interval_s
        .unwrap_or(default_interval_s);
    let inserted = tx
        .prepare_cached(
            "INSERT INTO devices (device_id, patient_label, location, expected_interval_s, active, \
             registered_at, registered_by, updated_at) VALUES (?1, ?2, ?3, ?4, 1, ?5, ?6, ?5) \
             ON CONFLICT (device_id) DO NOTHING",
        )?
        .execute(params![
            registration.device_id,
            registration.patient_label,
            registration.location,
            interval,
            now,
            actor
        ])?;
    if inserted == 0 {
        return Err(StoreError::DeviceExists(registration.device_id.clone()));
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
    )?;
    load(tx, &registration.device_id)?
        .ok_or_else(|| StoreError::Other("device vanished after insert".to_owned()))
}

pub(super) fn update(
    tx: &rusqlite::Transaction<'_>,
    device_id: &str,
    update: &DeviceUpdate,
    actor: &str,
) -> Result<DeviceRecord, StoreError> {
    let Some(current) = load(tx, device_id)? else {
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
    tx.prepare_cached(
        "UPDATE devices SET patient_label = ?2, location = ?3, expected_interval_s = ?4, \
         active = ?5, updated_at = ?6 WHERE device_id = ?1",
    )?
    .execute(params![
        device_id,
        patient_label,
        location,
        interval,
        active,
        now_text()
    ])?;
    audit::append(tx, &update.audit_entry(&current.status, device_id, actor))?;
    load(tx, device_id)?.ok_or_else(|| StoreError::DeviceNotFound(device_id.to_owned()))
}

/// Keeps a reading of a device that may not report apart from patient data, and raises
/// UNKNOWN_DEVICE for it.
pub(super) fn quarantine(
    tx: &rusqlite::Transaction<'_>,
    statements: &mut readings::ReadingStatements<'_>,
    item: &PreparedReading,
    reason: &str,
    options: &StoreOptions,
) -> Result<ItemOutcome, StoreError> {
    let reading = &item.reading;
    let received_at = reading.received_at.to_rfc3339();
    tx.prepare_cached(
        "INSERT INTO quarantine (device_id, timestamp, received_at, reason, reading, source) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?
    .execute(params![
        reading.device_id.as_str(),
        reading.timestamp.to_rfc3339(),
        received_at,
        reason,
        crate::store::quarantine_payload(reading).to_string(),
        item.source.as_str(),
    ])?;
    let quarantine_id = tx.last_insert_rowid();
    let finding = Finding::unknown_device(options.unknown_device_severity, reason);
    let anomalies = readings::insert_anomalies(
        tx,
        statements.anomaly(),
        reading.device_id.as_str(),
        None,
        std::slice::from_ref(&finding),
        &received_at,
    )?;
    Ok(ItemOutcome::Quarantined {
        quarantine_id,
        anomalies,
    })
}
