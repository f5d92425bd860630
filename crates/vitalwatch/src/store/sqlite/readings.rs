//! SQL for readings and their anomalies: the one list of the `readings` columns, writing one
//! reading (registry check, de-duplication by timestamp and by redelivered `seq`, anomalies,
//! device counters) inside the writer's batch transaction, and the list queries.

use super::devices;
use super::filter::Filter;
use crate::store::{
    AnomalyQuery, AnomalyRecord, DeviceRegistration, ItemOutcome, PreparedReading, ReadingQuery,
    ReadingRecord, RegistryPolicy, StoreError, StoreOptions,
};
use rusqlite::types::Value as SqlValue;
use rusqlite::{CachedStatement, Connection, OptionalExtension, Row, Statement, params};
use std::collections::HashMap;
use std::sync::LazyLock;
use vitalwatch_core::rules::{AnomalyType, Finding, Severity};
use vitalwatch_core::telemetry::Timestamp;
use vitalwatch_core::telemetry::{VitalKey, VitalValue};

/// Every column of `readings` after `id`: the order the INSERT binds them in and
/// [`reading_from_row`] reads them in (at index 1 + position). The only place the table's
/// columns are listed; every statement on `readings` that maps rows is built from it.
/// Columns before the vitals and after them; the vitals' own come from core's table.
const LEADING_COLUMNS: [&str; 4] = [
    "device_id",
    "timestamp",
    "timestamp_from_device",
    "received_at",
];
const TRAILING_COLUMNS: [&str; 4] = ["seq", "extra", "ml_score", "source"];

/// Every column of `readings` but `id`, in the order `write_one` binds them: the fixed ones
/// around the vitals table's columns (`VitalKey::COLUMNS`, the seed's payload names).
const READING_COLUMNS: [&str; LEADING_COLUMNS.len() + VitalKey::COUNT + TRAILING_COLUMNS.len()] = {
    let mut columns = [""; LEADING_COLUMNS.len() + VitalKey::COUNT + TRAILING_COLUMNS.len()];
    let mut idx = 0;
    while idx < LEADING_COLUMNS.len() {
        columns[idx] = LEADING_COLUMNS[idx];
        idx += 1;
    }
    let mut vital = 0;
    while vital < VitalKey::COUNT {
        columns[idx] = VitalKey::COLUMNS[vital];
        idx += 1;
        vital += 1;
    }
    let mut trailing = 0;
    while trailing < TRAILING_COLUMNS.len() {
        columns[idx] = TRAILING_COLUMNS[trailing];
        idx += 1;
        trailing += 1;
    }
    columns
};

/// The INSERT of one anomaly; `reading_id` is NULL for a quarantined reading's.
const INSERT_ANOMALY: &str = "INSERT INTO anomalies \
     (device_id, reading_id, type, severity, value, threshold, detected_at, details) \
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)";

/// The stored reading a redelivered `seq` of the same device within the window points at.
const SELECT_REDELIVERED: &str =
    "SELECT id FROM readings WHERE device_id = ?1 AND seq = ?2 AND received_at >= ?3 LIMIT 1";

/// `id` and [`READING_COLUMNS`], for `SELECT … FROM readings`.
static SELECT_COLUMNS: LazyLock<String> =
    LazyLock::new(|| format!("id, {}", READING_COLUMNS.join(", ")));

/// The INSERT of one reading; a second reading with the same device and timestamp is a no-op.
static INSERT_READING: LazyLock<String> = LazyLock::new(|| {
    let placeholders: Vec<String> = (1..=READING_COLUMNS.len())
        .map(|n| format!("?{n}"))
        .collect();
    format!(
        "INSERT INTO readings ({}) VALUES ({}) ON CONFLICT (device_id, timestamp) DO NOTHING",
        READING_COLUMNS.join(", "),
        placeholders.join(", ")
    )
});

/// The columns [`reading_from_row`] reads, in its order.
pub(super) fn select_columns() -> &'static str {
    &SELECT_COLUMNS
}

/// The columns [`anomaly_from_row`] reads, in its order.
pub(super) const ANOMALY_COLUMNS: &str =
    "id, device_id, reading_id, type, severity, value, threshold, detected_at, details";

/// The index of `name` in a row selected with [`select_columns`]; evaluated at compile time,
/// so a name that is not in [`READING_COLUMNS`] does not build.
const fn col(name: &str) -> usize {
    let mut idx = 0;
    while idx < READING_COLUMNS.len() {
        let column = READING_COLUMNS[idx].as_bytes();
        let wanted = name.as_bytes();
        if column.len() == wanted.len() {
            let mut byte = 0;
            while byte < column.len() && column[byte] == wanted[byte] {
                byte += 1;
            }
            if byte == column.len() {
                return idx + 1;
            }
        }
        idx += 1;
    }
    panic!("not a column of readings")
}

/// Reads a row selected with [`select_columns`].
pub(super) fn reading_from_row(row: &Row<'_>) -> rusqlite::Result<ReadingRecord> {
    let extra: Option<String> = row.get(const { col("extra") })?;
    Ok(ReadingRecord {
        id: row.get(0)?,
        device_id: row.get(const { col("device_id") })?,
        timestamp: row.get(const { col("timestamp") })?,
        timestamp_from_device: row.get(const { col("timestamp_from_device") })?,
        received_at: row.get(const { col("received_at") })?,
        heart_rate: row.get(const { col("heart_rate") })?,
        body_temp: row.get(const { col("body_temp") })?,
        signal_strength: row.get(const { col("signal_strength") })?,
        battery_level: row.get(const { col("battery_level") })?,
        spo2: row.get(const { col("spo2") })?,
        respiratory_rate: row.get(const { col("respiratory_rate") })?,
        systolic_bp: row.get(const { col("systolic_bp") })?,
        diastolic_bp: row.get(const { col("diastolic_bp") })?,
        consciousness: row.get(const { col("consciousness") })?,
        on_oxygen: row.get(const { col("on_oxygen") })?,
        seq: row.get(const { col("seq") })?,
        extra: extra.and_then(|text| serde_json::from_str(&text).ok()),
        ml_score: row.get(const { col("ml_score") })?,
        source: row.get(const { col("source") })?,
    })
}

/// Reads a row selected with [`ANOMALY_COLUMNS`].
pub(super) fn anomaly_from_row(row: &Row<'_>) -> rusqlite::Result<AnomalyRecord> {
    let kind: String = row.get(3)?;
    let severity: String = row.get(4)?;
    let bad_text = |column: usize, text: String| {
        rusqlite::Error::FromSqlConversionFailure(
            column,
            rusqlite::types::Type::Text,
            format!("unknown value {text:?}").into(),
        )
    };
    Ok(AnomalyRecord {
        id: row.get(0)?,
        device_id: row.get(1)?,
        reading_id: row.get(2)?,
        kind: AnomalyType::parse(&kind).ok_or_else(|| bad_text(3, kind.clone()))?,
        severity: Severity::parse(&severity).ok_or_else(|| bad_text(4, severity.clone()))?,
        value: row.get(5)?,
        threshold: row.get(6)?,
        detected_at: row.get(7)?,
        details: row.get::<_, Option<String>>(8)?.unwrap_or_default(),
    })
}

/// What one write transaction has learned of its readings' devices: whether each is
/// registered and active (looked up once per transaction, not per reading), and the readings
/// stored for each, counted into `devices` and, per hour, into `reading_hours` once when the
/// transaction ends ([`BatchDevices::finish`]).
#[derive(Default)]
pub(super) struct BatchDevices {
    seen: HashMap<String, SeenDevice>,
}

struct SeenDevice {
    /// `None` while unregistered.
    active: Option<bool>,
    stored: i64,
    /// The latest `received_at` stored (RFC 3339 UTC, so text order is time order).
    last_seen: Option<String>,
    /// Readings stored per hour of their `timestamp` (its first 13 characters, as V3 keys
    /// `reading_hours`); a device's readings of one transaction rarely span two hours.
    hours: Vec<(String, i64)>,
}

/// The `reading_hours` key of a stored timestamp: `2024-01-16T10` of `2024-01-16T10:30:45.123456Z`.
pub(super) fn hour_of(timestamp: &str) -> &str {
    timestamp.get(..13).unwrap_or(timestamp)
}

impl BatchDevices {
    fn active(
        &mut self,
        tx: &rusqlite::Transaction<'_>,
        device_id: &str,
    ) -> Result<Option<bool>, StoreError> {
        if let Some(seen) = self.seen.get(device_id) {
            return Ok(seen.active);
        }
        let active = devices::state(tx, device_id)?;
        self.seen.insert(
            device_id.to_owned(),
            SeenDevice {
                active,
                stored: 0,
                last_seen: None,
                hours: Vec::new(),
            },
        );
        Ok(active)
    }

    fn registered(&mut self, device_id: &str) {
        if let Some(seen) = self.seen.get_mut(device_id) {
            seen.active = Some(true);
        }
    }

    fn stored(&mut self, device_id: &str, timestamp: &str, received_at: &str) {
        if let Some(seen) = self.seen.get_mut(device_id) {
            seen.stored += 1;
            let hour = hour_of(timestamp);
            match seen.hours.iter_mut().find(|(h, _)| h == hour) {
                Some((_, n)) => *n += 1,
                None => seen.hours.push((hour.to_owned(), 1)),
            }
            // The text is replaced in place: a new `String` per reading otherwise.
            match &mut seen.last_seen {
                Some(last) if last.as_str() >= received_at => {}
                Some(last) => {
                    last.clear();
                    last.push_str(received_at);
                }
                None => seen.last_seen = Some(received_at.to_owned()),
            }
        }
    }

    /// Adds each device's stored readings to its row and to its hours, in the same transaction.
    pub(super) fn finish(self, tx: &rusqlite::Transaction<'_>) -> Result<(), StoreError> {
        let mut update = tx.prepare_cached(
            "UPDATE devices SET total_readings = total_readings + ?3, \
             last_seen = CASE WHEN last_seen IS NULL OR last_seen < ?2 THEN ?2 ELSE last_seen END \
             WHERE device_id = ?1",
        )?;
        let mut count = tx.prepare_cached(
            "INSERT INTO reading_hours (device_id, hour, n) VALUES (?1, ?2, ?3) \
             ON CONFLICT (device_id, hour) DO UPDATE SET n = n + excluded.n",
        )?;
        for (device_id, seen) in self.seen {
            if let Some(last_seen) = seen.last_seen {
                update.execute(params![device_id, last_seen, seen.stored])?;
            }
            for (hour, n) in seen.hours {
                count.execute(params![device_id, hour, n])?;
            }
        }
        Ok(())
    }
}

/// The statements every reading of a write transaction runs, taken from the connection's
/// statement cache once per transaction rather than once per reading (each `prepare_cached`
/// is a cache lookup and, when the statement goes back, an allocation), and the buffers its
/// timestamps are written into as text, reused from one reading to the next.
pub(super) struct ReadingStatements<'tx> {
    redelivered: CachedStatement<'tx>,
    insert: CachedStatement<'tx>,
    anomaly: CachedStatement<'tx>,
    timestamp: String,
    received_at: String,
    since: String,
}

impl<'tx> ReadingStatements<'tx> {
    pub(super) fn new(tx: &'tx rusqlite::Transaction<'_>) -> Result<Self, StoreError> {
        Ok(Self {
            redelivered: tx.prepare_cached(SELECT_REDELIVERED)?,
            insert: tx.prepare_cached(&INSERT_READING)?,
            anomaly: tx.prepare_cached(INSERT_ANOMALY)?,
            timestamp: String::new(),
            received_at: String::new(),
            since: String::new(),
        })
    }

    /// The anomaly INSERT, for a reading stored apart ([`devices::quarantine`]).
    pub(super) fn anomaly(&mut self) -> &mut Statement<'tx> {
        &mut self.anomaly
    }
}

/// Stores one reading in the writer's transaction: quarantined when its device may not
/// report, registered first under the auto-register policy, a duplicate when the same
/// reading (device + timestamp, or device + a `seq` seen within the redelivery window) is
/// already stored.
pub(super) fn write_one(
    tx: &rusqlite::Transaction<'_>,
    statements: &mut ReadingStatements<'_>,
    item: &PreparedReading,
    options: &StoreOptions,
    devices: &mut BatchDevices,
) -> Result<ItemOutcome, StoreError> {
    let reading = &item.reading;
    let device_id = reading.device_id.as_str();
    let mut registered = false;
    match devices.active(tx, device_id)? {
        Some(true) => {}
        Some(false) => {
            return devices::quarantine(tx, statements, item, "device is deactivated", options);
        }
        None if options.policy == RegistryPolicy::Strict => {
            return devices::quarantine(tx, statements, item, "device is not registered", options);
        }
        None => {
            let registration = DeviceRegistration {
                device_id: device_id.to_owned(),
                ..DeviceRegistration::default()
            };
            let actor = format!("auto-register:{}", item.source.as_str());
            devices::register(
                tx,
                &registration,
                &actor,
                options.default_expected_interval_s,
            )?;
            devices.registered(device_id);
            registered = true;
        }
    }

    if let Some(seq) = reading.seq {
        let window_micros = (options.redelivery_window_s as i64).saturating_mul(1_000_000);
        let since = &mut statements.since;
        since.clear();
        reading
            .received_at
            .saturating_add_micros(-window_micros)
            .write_rfc3339(since);
        let existing: Option<i64> = statements
            .redelivered
            .query_row(params![device_id, seq as i64, since.as_str()], |row| {
                row.get(0)
            })
            .optional()?;
        if let Some(reading_id) = existing {
            return Ok(ItemOutcome::Duplicate { reading_id });
        }
    }

    let ReadingStatements {
        insert,
        anomaly,
        timestamp,
        received_at,
        ..
    } = statements;
    timestamp.clear();
    reading.timestamp.write_rfc3339(timestamp);
    received_at.clear();
    reading.received_at.write_rfc3339(received_at);
    // Bound in READING_COLUMNS order: the fixed columns around the vitals table's.
    insert.raw_bind_parameter(const { col("device_id") }, device_id)?;
    insert.raw_bind_parameter(const { col("timestamp") }, timestamp.as_str())?;
    insert.raw_bind_parameter(
        const { col("timestamp_from_device") },
        i64::from(reading.timestamp_from_device),
    )?;
    insert.raw_bind_parameter(const { col("received_at") }, received_at.as_str())?;
    for (offset, vital) in VitalKey::ALL.into_iter().enumerate() {
        let at = LEADING_COLUMNS.len() + 1 + offset;
        match reading.vital_value(vital) {
            None => insert.raw_bind_parameter(at, SqlValue::Null)?,
            Some(VitalValue::Number(value)) => insert.raw_bind_parameter(at, value)?,
            Some(VitalValue::Acvpu(level)) => insert.raw_bind_parameter(at, level.letter())?,
            Some(VitalValue::Bool(flag)) => insert.raw_bind_parameter(at, i64::from(flag))?,
        }
    }
    insert.raw_bind_parameter(const { col("seq") }, reading.seq.map(|seq| seq as i64))?;
    insert.raw_bind_parameter(const { col("extra") }, reading.extra.as_deref())?;
    insert.raw_bind_parameter(const { col("ml_score") }, item.ml_score)?;
    insert.raw_bind_parameter(const { col("source") }, item.source.as_str())?;
    let inserted = insert.raw_execute()?;
    if inserted == 0 {
        let reading_id: i64 = tx
            .prepare_cached("SELECT id FROM readings WHERE device_id = ?1 AND timestamp = ?2")?
            .query_row(params![device_id, timestamp.as_str()], |row| row.get(0))?;
        return Ok(ItemOutcome::Duplicate { reading_id });
    }
    let reading_id = tx.last_insert_rowid();
    let anomalies = insert_anomalies(
        tx,
        anomaly,
        device_id,
        Some(reading_id),
        &item.findings,
        received_at,
    )?;
    devices.stored(device_id, timestamp, received_at);
    Ok(ItemOutcome::Stored {
        reading_id,
        anomalies,
        registered,
    })
}

/// Stores one anomaly per finding; `reading_id` is `None` for a quarantined reading.
pub(super) fn insert_anomalies(
    tx: &rusqlite::Transaction<'_>,
    stmt: &mut Statement<'_>,
    device_id: &str,
    reading_id: Option<i64>,
    findings: &[Finding],
    detected_at: &str,
) -> Result<Vec<AnomalyRecord>, StoreError> {
    let mut out = Vec::with_capacity(findings.len());
    for finding in findings {
        let details = finding.details();
        stmt.execute(params![
            device_id,
            reading_id,
            finding.kind.as_str(),
            finding.severity.as_str(),
            finding.value,
            finding.threshold,
            detected_at,
            details
        ])?;
        out.push(AnomalyRecord {
            id: tx.last_insert_rowid(),
            device_id: device_id.to_owned(),
            reading_id,
            kind: finding.kind,
            severity: finding.severity,
            value: finding.value,
            threshold: finding.threshold,
            detected_at: detected_at.to_owned(),
            details,
        });
    }
    Ok(out)
}

/// Readings matching `query`, newest first.
pub(super) fn query(
    conn: &Connection,
    query: ReadingQuery,
) -> Result<Vec<ReadingRecord>, StoreError> {
    let mut filter = Filter::new();
    if let Some(device_id) = query.device_id {
        filter.add("device_id = ?", device_id);
    }
    if let Some(since) = query.since {
        filter.add("timestamp >= ?", since.to_rfc3339());
    }
    if let Some(until) = query.until {
        filter.add("timestamp <= ?", until.to_rfc3339());
    }
    if let Some(before_id) = query.before_id {
        filter.add("id < ?", before_id);
    }
    let sql = format!(
        "SELECT {} FROM readings {} ORDER BY id DESC LIMIT {}",
        select_columns(),
        filter.sql(),
        query.limit
    );
    let mut stmt = conn.prepare(&sql)?;
    let rows = stmt.query_map(rusqlite::params_from_iter(filter.values), reading_from_row)?;
    Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
}

/// Readings at or after `since` that raised no anomaly, oldest first.
pub(super) fn normal(
    conn: &Connection,
    since: Option<Timestamp>,
    limit: usize,
) -> Result<Vec<ReadingRecord>, StoreError> {
    let since = since.map_or_else(String::new, Timestamp::to_rfc3339);
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {} FROM readings r WHERE r.timestamp >= ?1 \
         AND NOT EXISTS (SELECT 1 FROM anomalies a WHERE a.reading_id = r.id) \
         ORDER BY r.id LIMIT ?2",
        select_columns()
    ))?;
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let rows = stmt.query_map(params![since, limit], reading_from_row)?;
    Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
}

/// Anomalies matching `query`, newest first.
pub(super) fn anomalies(
    conn: &Connection,
    query: AnomalyQuery,
) -> Result<Vec<AnomalyRecord>, StoreError> {
    let mut filter = Filter::new();
    if let Some(device_id) = query.device_id {
        filter.add("device_id = ?", device_id);
    }
    if let Some(kind) = query.kind {
        filter.add("type = ?", kind.as_str().to_owned());
    }
    if let Some(severity) = query.severity {
        filter.add("severity = ?", severity.as_str().to_owned());
    }
    if let Some(since) = query.since {
        filter.add("detected_at >= ?", since.to_rfc3339());
    }
    if let Some(until) = query.until {
        filter.add("detected_at <= ?", until.to_rfc3339());
    }
    if let Some(before_id) = query.before_id {
        filter.add("id < ?", before_id);
    }
    let sql = format!(
        "SELECT {ANOMALY_COLUMNS} FROM anomalies {} ORDER BY id DESC LIMIT {}",
        filter.sql(),
        query.limit
    );
    let mut stmt = conn.prepare(&sql)?;
    let rows = stmt.query_map(rusqlite::params_from_iter(filter.values), anomaly_from_row)?;
    Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
}
