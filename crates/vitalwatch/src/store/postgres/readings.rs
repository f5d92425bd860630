//! SQL for readings and their anomalies on PostgreSQL: the one list of the `readings` columns,
//! writing a whole batch in a few set-based statements (multi-row `INSERT … SELECT FROM
//! unnest(…) ON CONFLICT DO NOTHING`) inside the writer's transaction, and the list queries.
//!
//! A batch is decided in order, exactly as SQLite decides it one reading at a time: a reading
//! of a device that may not report is quarantined, an unknown device is registered first
//! (auto-register), and a reading is a duplicate when the same device + timestamp, or the
//! same device + `seq` within the redelivery window, is already stored — earlier in the same
//! batch included.

use super::{Tx, devices, pg, text_time, to_utc};
use crate::store::{
    AnomalyQuery, AnomalyRecord, ItemOutcome, PreparedReading, ReadingQuery, ReadingRecord,
    RegistryPolicy, StoreError, StoreOptions,
};
use chrono::{DateTime, Utc};
use deadpool_postgres::GenericClient;
use std::collections::{HashMap, HashSet};
use std::sync::LazyLock;
use tokio_postgres::Row;
use tokio_postgres::types::ToSql;
use vitalwatch_core::rules::{AnomalyType, Finding, Severity};
use vitalwatch_core::telemetry::{Timestamp, VitalKey, VitalKind, VitalValue};

/// Columns before the vitals and after them; the vitals' own come from core's table.
const LEADING: [(&str, &str); 5] = [
    ("id", "int8"),
    ("device_id", "text"),
    ("timestamp", "timestamptz"),
    ("timestamp_from_device", "bool"),
    ("received_at", "timestamptz"),
];
const TRAILING: [(&str, &str); 4] = [
    ("seq", "int8"),
    ("extra", "text"),
    ("ml_score", "float8"),
    ("source", "text"),
];

/// The SQL type of a vital's column.
fn vital_type(kind: VitalKind) -> &'static str {
    match kind {
        VitalKind::Number => "float8",
        VitalKind::Acvpu => "text",
        VitalKind::Bool => "bool",
    }
}

/// Every column of `readings` with its type, in the order the INSERT binds them.
pub(super) fn columns() -> Vec<(&'static str, &'static str)> {
    LEADING
        .into_iter()
        .chain(
            VitalKey::ALL
                .into_iter()
                .map(|vital| (vital.info().column, vital_type(vital.info().kind))),
        )
        .chain(TRAILING)
        .collect()
}

/// Every column, for `SELECT … FROM readings` ([`reading_from_row`] reads them by name).
static SELECT_COLUMNS: LazyLock<String> = LazyLock::new(|| {
    columns()
        .iter()
        .map(|(name, _)| *name)
        .collect::<Vec<_>>()
        .join(", ")
});

/// The batch INSERT: one array per column; a reading whose device and timestamp are already
/// stored is skipped (and found again by [`existing_ids`]).
static INSERT_READINGS: LazyLock<String> = LazyLock::new(|| {
    let columns = columns();
    let names: Vec<&str> = columns.iter().map(|(name, _)| *name).collect();
    let arrays: Vec<String> = columns
        .iter()
        .enumerate()
        .map(|(idx, (_, kind))| format!("${}::{kind}[]", idx + 1))
        .collect();
    format!(
        "INSERT INTO readings ({}) SELECT * FROM unnest({}) \
         ON CONFLICT (device_id, timestamp) DO NOTHING RETURNING id",
        names.join(", "),
        arrays.join(", ")
    )
});

/// The columns [`reading_from_row`] reads.
pub(super) fn select_columns() -> &'static str {
    &SELECT_COLUMNS
}

/// The columns [`anomaly_from_row`] reads, in its order.
pub(super) const ANOMALY_COLUMNS: &str =
    "id, device_id, reading_id, type, severity, value, threshold, detected_at, details";

/// Reads a row selected with [`select_columns`].
pub(super) fn reading_from_row(row: &Row) -> Result<ReadingRecord, StoreError> {
    let extra: Option<String> = row.try_get("extra").map_err(pg)?;
    let get_f = |name: &str| row.try_get::<_, Option<f64>>(name).map_err(pg);
    Ok(ReadingRecord {
        id: row.try_get("id").map_err(pg)?,
        device_id: row.try_get("device_id").map_err(pg)?,
        timestamp: text_time(row.try_get("timestamp").map_err(pg)?),
        timestamp_from_device: row.try_get("timestamp_from_device").map_err(pg)?,
        received_at: text_time(row.try_get("received_at").map_err(pg)?),
        heart_rate: get_f("heart_rate")?,
        body_temp: get_f("body_temp")?,
        signal_strength: get_f("signal_strength")?,
        battery_level: get_f("battery_level")?,
        spo2: get_f("spo2")?,
        respiratory_rate: get_f("respiratory_rate")?,
        systolic_bp: get_f("systolic_bp")?,
        diastolic_bp: get_f("diastolic_bp")?,
        consciousness: row.try_get("consciousness").map_err(pg)?,
        on_oxygen: row.try_get("on_oxygen").map_err(pg)?,
        seq: row.try_get("seq").map_err(pg)?,
        extra: extra.and_then(|text| serde_json::from_str(&text).ok()),
        ml_score: get_f("ml_score")?,
        source: row.try_get("source").map_err(pg)?,
    })
}

pub(super) fn readings_from_rows(rows: &[Row]) -> Result<Vec<ReadingRecord>, StoreError> {
    rows.iter().map(reading_from_row).collect()
}

/// Reads a row selected with [`ANOMALY_COLUMNS`].
pub(super) fn anomaly_from_row(row: &Row) -> Result<AnomalyRecord, StoreError> {
    let kind: String = row.try_get(3).map_err(pg)?;
    let severity: String = row.try_get(4).map_err(pg)?;
    Ok(AnomalyRecord {
        id: row.try_get(0).map_err(pg)?,
        device_id: row.try_get(1).map_err(pg)?,
        reading_id: row.try_get(2).map_err(pg)?,
        kind: AnomalyType::parse(&kind)
            .ok_or_else(|| StoreError::InvalidData(format!("unknown anomaly type {kind:?}")))?,
        severity: Severity::parse(&severity)
            .ok_or_else(|| StoreError::InvalidData(format!("unknown severity {severity:?}")))?,
        value: row.try_get(5).map_err(pg)?,
        threshold: row.try_get(6).map_err(pg)?,
        detected_at: text_time(row.try_get(7).map_err(pg)?),
        details: row
            .try_get::<_, Option<String>>(8)
            .map_err(pg)?
            .unwrap_or_default(),
    })
}

pub(super) fn anomalies_from_rows(rows: &[Row]) -> Result<Vec<AnomalyRecord>, StoreError> {
    rows.iter().map(anomaly_from_row).collect()
}

/// One column's values for the batch INSERT, of the column's type.
enum Array {
    Number(Vec<Option<f64>>),
    Text(Vec<Option<String>>),
    Bool(Vec<Option<bool>>),
}

impl Array {
    fn of(kind: VitalKind, capacity: usize) -> Array {
        match kind {
            VitalKind::Number => Array::Number(Vec::with_capacity(capacity)),
            VitalKind::Acvpu => Array::Text(Vec::with_capacity(capacity)),
            VitalKind::Bool => Array::Bool(Vec::with_capacity(capacity)),
        }
    }

    fn push(&mut self, value: Option<VitalValue>) {
        match (self, value) {
            (Array::Number(values), Some(VitalValue::Number(v))) => values.push(Some(v)),
            (Array::Text(values), Some(VitalValue::Acvpu(level))) => {
                values.push(Some(level.letter().to_owned()))
            }
            (Array::Bool(values), Some(VitalValue::Bool(flag))) => values.push(Some(flag)),
            (Array::Number(values), _) => values.push(None),
            (Array::Text(values), _) => values.push(None),
            (Array::Bool(values), _) => values.push(None),
        }
    }

    fn as_sql(&self) -> &(dyn ToSql + Sync) {
        match self {
            Array::Number(values) => values,
            Array::Text(values) => values,
            Array::Bool(values) => values,
        }
    }
}

/// What the batch decided for one reading before anything is inserted.
enum Plan {
    Quarantine(&'static str),
    /// Insert (its index among the inserted rows).
    Insert(usize),
    /// A duplicate of a stored row.
    DuplicateOf(i64),
    /// A duplicate of an earlier reading of this batch (by its index in the batch).
    DuplicateOfItem(usize),
}

/// Takes `n` ids from a sequence, in increasing order.
pub(super) async fn take_ids(
    tx: &Tx<'_>,
    sequence: &str,
    n: usize,
) -> Result<Vec<i64>, StoreError> {
    if n == 0 {
        return Ok(Vec::new());
    }
    let stmt = tx
        .prepare_cached("SELECT nextval($1::text::regclass) FROM generate_series(1, $2::int8)")
        .await
        .map_err(pg)?;
    let rows = tx
        .query(&stmt, &[&sequence, &(n as i64)])
        .await
        .map_err(pg)?;
    let mut ids: Vec<i64> = rows.iter().map(|row| row.get(0)).collect();
    ids.sort_unstable();
    Ok(ids)
}

/// Stores a batch in the writer's transaction; one outcome per item, in order.
pub(super) async fn write_batch(
    tx: &Tx<'_>,
    items: &[&PreparedReading],
    options: &StoreOptions,
) -> Result<Vec<ItemOutcome>, StoreError> {
    // Which devices may report.
    let device_ids: Vec<String> = items
        .iter()
        .map(|item| item.reading.device_id.as_str().to_owned())
        .collect::<HashSet<_>>()
        .into_iter()
        .collect();
    // What the batch needs to know before deciding, in one round trip (the statements are
    // pipelined): which devices may report, the redeliveries by seq already stored (for every
    // device: those that may not report are not looked at), and ids for every reading and
    // every finding that could be stored. Ids a duplicate does not use are left unused, as a
    // rolled-back transaction leaves them.
    let n_findings: usize = items.iter().map(|item| item.findings.len()).sum();
    let (mut active, stored_seq, ids, finding_ids) = tokio::try_join!(
        devices::states(tx, &device_ids),
        stored_seq_duplicates(tx, items, options),
        take_ids(tx, "readings_id_seq", items.len()),
        take_ids(tx, "anomalies_id_seq", n_findings),
    )?;
    let mut registered_by: HashMap<String, usize> = HashMap::new();
    for (idx, item) in items.iter().enumerate() {
        let device_id = item.reading.device_id.as_str();
        if active.contains_key(device_id) || options.policy == RegistryPolicy::Strict {
            continue;
        }
        let actor = format!("auto-register:{}", item.source.as_str());
        match devices::auto_register(tx, device_id, &actor, options).await? {
            true => {
                registered_by.insert(device_id.to_owned(), idx);
                active.insert(device_id.to_owned(), true);
            }
            // Registered by someone else meanwhile: its state decides.
            false => {
                let state = devices::states(tx, &[device_id.to_owned()]).await?;
                active.extend(state);
            }
        }
    }

    // Decide each reading in order, against the store and the batch before it.
    let window_micros = (options.redelivery_window_s as i64).saturating_mul(1_000_000);
    let mut by_timestamp: HashMap<(&str, i64), usize> = HashMap::new();
    let mut by_seq: HashMap<(&str, u64), usize> = HashMap::new();
    let mut plans = Vec::with_capacity(items.len());
    let mut inserts: Vec<usize> = Vec::new();
    for (idx, item) in items.iter().enumerate() {
        let reading = &item.reading;
        let device_id = reading.device_id.as_str();
        let plan = match active.get(device_id) {
            Some(false) => Plan::Quarantine("device is deactivated"),
            None => Plan::Quarantine("device is not registered"),
            Some(true) => {
                let seq_earlier = reading.seq.and_then(|seq| {
                    by_seq.get(&(device_id, seq)).copied().filter(|&earlier| {
                        items[earlier].reading.received_at.micros()
                            >= reading.received_at.micros().saturating_sub(window_micros)
                    })
                });
                if let Some(reading_id) = stored_seq.get(&idx) {
                    Plan::DuplicateOf(*reading_id)
                } else if let Some(earlier) = seq_earlier {
                    Plan::DuplicateOfItem(earlier)
                } else if let Some(&earlier) =
                    by_timestamp.get(&(device_id, reading.timestamp.micros()))
                {
                    Plan::DuplicateOfItem(earlier)
                } else {
                    by_timestamp.insert((device_id, reading.timestamp.micros()), idx);
                    if let Some(seq) = reading.seq {
                        by_seq.insert((device_id, seq), idx);
                    }
                    inserts.push(idx);
                    Plan::Insert(inserts.len() - 1)
                }
            }
        };
        plans.push(plan);
    }

    // Insert the new readings in one statement; the ones already stored by device and
    // timestamp are found by key.
    let inserted = insert_readings(tx, items, &inserts, &ids[..inserts.len()]).await?;
    let missing: Vec<usize> = (0..inserts.len())
        .filter(|n| !inserted.contains(&ids[*n]))
        .collect();
    let existing = existing_ids(tx, items, &inserts, &missing).await?;
    // The id each inserted-or-present reading ended up with.
    let reading_id_of = |n: usize| -> Option<i64> {
        if inserted.contains(&ids[n]) {
            Some(ids[n])
        } else {
            existing.get(&n).copied()
        }
    };

    // Quarantined readings, then every anomaly, in the batch's order.
    let mut quarantine_ids = HashMap::new();
    for (idx, plan) in plans.iter().enumerate() {
        if let Plan::Quarantine(reason) = plan {
            let id = devices::quarantine(tx, items[idx], reason).await?;
            quarantine_ids.insert(idx, id);
        }
    }
    let mut anomaly_rows: Vec<NewAnomaly> = Vec::new();
    let unknown = |reason: &str| Finding::unknown_device(options.unknown_device_severity, reason);
    for (idx, plan) in plans.iter().enumerate() {
        let item = items[idx];
        match plan {
            Plan::Quarantine(reason) => anomaly_rows.push(NewAnomaly {
                item: idx,
                reading_id: None,
                finding: unknown(reason),
            }),
            Plan::Insert(n) if inserted.contains(&ids[*n]) => {
                for finding in &item.findings {
                    anomaly_rows.push(NewAnomaly {
                        item: idx,
                        reading_id: Some(ids[*n]),
                        finding: finding.clone(),
                    });
                }
            }
            _ => {}
        }
    }

    // Device counters: one row per device.
    let mut counters: HashMap<&str, (i64, Timestamp)> = HashMap::new();
    for plan in &plans {
        if let Plan::Insert(n) = plan
            && inserted.contains(&ids[*n])
        {
            let reading = &items[inserts[*n]].reading;
            let entry = counters
                .entry(reading.device_id.as_str())
                .or_insert((0, reading.received_at));
            entry.0 += 1;
            entry.1 = entry.1.max(reading.received_at);
        }
    }
    // The anomalies and the device counters in one round trip.
    let (anomalies, ()) = tokio::try_join!(
        insert_anomalies(tx, items, &anomaly_rows, finding_ids),
        devices::count_readings(tx, &counters),
    )?;
    let mut anomalies_of: HashMap<usize, Vec<AnomalyRecord>> = HashMap::new();
    for (row, record) in anomaly_rows.iter().zip(anomalies) {
        anomalies_of.entry(row.item).or_default().push(record);
    }

    // The outcomes, in order.
    let mut outcomes: Vec<ItemOutcome> = Vec::with_capacity(items.len());
    for (idx, plan) in plans.iter().enumerate() {
        let device_id = items[idx].reading.device_id.as_str();
        let outcome = match plan {
            Plan::Quarantine(_) => ItemOutcome::Quarantined {
                quarantine_id: quarantine_ids.get(&idx).copied().unwrap_or_default(),
                anomalies: anomalies_of.remove(&idx).unwrap_or_default(),
            },
            Plan::Insert(n) if inserted.contains(&ids[*n]) => ItemOutcome::Stored {
                reading_id: ids[*n],
                anomalies: anomalies_of.remove(&idx).unwrap_or_default(),
                registered: registered_by.get(device_id) == Some(&idx),
            },
            Plan::Insert(n) => ItemOutcome::Duplicate {
                reading_id: reading_id_of(*n).ok_or_else(|| {
                    StoreError::Other("a conflicting reading vanished".to_owned())
                })?,
            },
            Plan::DuplicateOf(reading_id) => ItemOutcome::Duplicate {
                reading_id: *reading_id,
            },
            Plan::DuplicateOfItem(earlier) => ItemOutcome::Duplicate {
                reading_id: match &outcomes[*earlier] {
                    ItemOutcome::Stored { reading_id, .. }
                    | ItemOutcome::Duplicate { reading_id } => *reading_id,
                    ItemOutcome::Quarantined { .. } => {
                        return Err(StoreError::Other(
                            "a duplicate of a quarantined reading".to_owned(),
                        ));
                    }
                },
            },
        };
        outcomes.push(outcome);
    }
    Ok(outcomes)
}

/// For each reading with a `seq`, the id of a stored reading of its device with that `seq`
/// received within the redelivery window before it (keyed by the item's index).
async fn stored_seq_duplicates(
    tx: &Tx<'_>,
    items: &[&PreparedReading],
    options: &StoreOptions,
) -> Result<HashMap<usize, i64>, StoreError> {
    let window_micros = (options.redelivery_window_s as i64).saturating_mul(1_000_000);
    let mut ords = Vec::new();
    let mut device_ids = Vec::new();
    let mut seqs = Vec::new();
    let mut since = Vec::new();
    for (idx, item) in items.iter().enumerate() {
        let reading = &item.reading;
        if let Some(seq) = reading.seq {
            ords.push(idx as i32);
            device_ids.push(reading.device_id.as_str().to_owned());
            seqs.push(seq as i64);
            since.push(to_utc(
                reading.received_at.saturating_add_micros(-window_micros),
            ));
        }
    }
    if ords.is_empty() {
        return Ok(HashMap::new());
    }
    let stmt = tx
        .prepare_cached(
            "SELECT u.ord, (SELECT min(r.id) FROM readings r WHERE r.device_id = u.device_id \
             AND r.seq = u.seq AND r.received_at >= u.since) \
             FROM unnest($1::int4[], $2::text[], $3::int8[], $4::timestamptz[]) \
             AS u(ord, device_id, seq, since)",
        )
        .await
        .map_err(pg)?;
    let rows = tx
        .query(&stmt, &[&ords, &device_ids, &seqs, &since])
        .await
        .map_err(pg)?;
    Ok(rows
        .iter()
        .filter_map(|row| {
            let id: Option<i64> = row.get(1);
            id.map(|id| (row.get::<_, i32>(0) as usize, id))
        })
        .collect())
}

/// Inserts the readings `inserts` (indexes into `items`) with `ids`; returns the ids that
/// were inserted (the others' device and timestamp were already stored).
async fn insert_readings(
    tx: &Tx<'_>,
    items: &[&PreparedReading],
    inserts: &[usize],
    ids: &[i64],
) -> Result<HashSet<i64>, StoreError> {
    if inserts.is_empty() {
        return Ok(HashSet::new());
    }
    let n = inserts.len();
    let mut device_id = Vec::with_capacity(n);
    let mut timestamp = Vec::with_capacity(n);
    let mut from_device = Vec::with_capacity(n);
    let mut received_at = Vec::with_capacity(n);
    let mut vitals: Vec<Array> = VitalKey::ALL
        .into_iter()
        .map(|vital| Array::of(vital.info().kind, n))
        .collect();
    let mut seq = Vec::with_capacity(n);
    let mut extra = Vec::with_capacity(n);
    let mut ml_score = Vec::with_capacity(n);
    let mut source = Vec::with_capacity(n);
    for &idx in inserts {
        let item = items[idx];
        let reading = &item.reading;
        device_id.push(reading.device_id.as_str().to_owned());
        timestamp.push(to_utc(reading.timestamp));
        from_device.push(reading.timestamp_from_device);
        received_at.push(to_utc(reading.received_at));
        for (array, vital) in vitals.iter_mut().zip(VitalKey::ALL) {
            array.push(reading.vital_value(vital));
        }
        seq.push(reading.seq.map(|s| s as i64));
        extra.push(reading.extra.clone());
        ml_score.push(item.ml_score);
        source.push(item.source.as_str().to_owned());
    }
    let ids: Vec<i64> = ids.to_vec();
    let mut params: Vec<&(dyn ToSql + Sync)> =
        vec![&ids, &device_id, &timestamp, &from_device, &received_at];
    params.extend(vitals.iter().map(Array::as_sql));
    params.extend([&seq as &(dyn ToSql + Sync), &extra, &ml_score, &source]);
    let stmt = tx.prepare_cached(&INSERT_READINGS).await.map_err(pg)?;
    let rows = tx.query(&stmt, &params).await.map_err(pg)?;
    Ok(rows.iter().map(|row| row.get(0)).collect())
}

/// The stored ids of readings whose device and timestamp were already there (keyed by their
/// position in `inserts`).
async fn existing_ids(
    tx: &Tx<'_>,
    items: &[&PreparedReading],
    inserts: &[usize],
    missing: &[usize],
) -> Result<HashMap<usize, i64>, StoreError> {
    if missing.is_empty() {
        return Ok(HashMap::new());
    }
    let ords: Vec<i32> = missing.iter().map(|n| *n as i32).collect();
    let device_ids: Vec<String> = missing
        .iter()
        .map(|n| items[inserts[*n]].reading.device_id.as_str().to_owned())
        .collect();
    let timestamps: Vec<DateTime<Utc>> = missing
        .iter()
        .map(|n| to_utc(items[inserts[*n]].reading.timestamp))
        .collect();
    let stmt = tx
        .prepare_cached(
            "SELECT u.ord, r.id FROM unnest($1::int4[], $2::text[], $3::timestamptz[]) \
             AS u(ord, device_id, ts) \
             JOIN readings r ON r.device_id = u.device_id AND r.timestamp = u.ts",
        )
        .await
        .map_err(pg)?;
    let rows = tx
        .query(&stmt, &[&ords, &device_ids, &timestamps])
        .await
        .map_err(pg)?;
    Ok(rows
        .iter()
        .map(|row| (row.get::<_, i32>(0) as usize, row.get(1)))
        .collect())
}

/// One anomaly to store: of which item, for which stored reading (none when quarantined).
struct NewAnomaly {
    item: usize,
    reading_id: Option<i64>,
    finding: Finding,
}

/// Stores the anomalies in one statement, ids in order (`ids`, taken before, then more from
/// the sequence if the rows need them); returns their records.
async fn insert_anomalies(
    tx: &Tx<'_>,
    items: &[&PreparedReading],
    rows: &[NewAnomaly],
    mut ids: Vec<i64>,
) -> Result<Vec<AnomalyRecord>, StoreError> {
    if rows.is_empty() {
        return Ok(Vec::new());
    }
    if ids.len() < rows.len() {
        ids.extend(take_ids(tx, "anomalies_id_seq", rows.len() - ids.len()).await?);
    }
    ids.truncate(rows.len());
    let records: Vec<AnomalyRecord> = rows
        .iter()
        .zip(&ids)
        .map(|(row, id)| {
            let reading = &items[row.item].reading;
            AnomalyRecord {
                id: *id,
                device_id: reading.device_id.as_str().to_owned(),
                reading_id: row.reading_id,
                kind: row.finding.kind,
                severity: row.finding.severity,
                value: row.finding.value,
                threshold: row.finding.threshold,
                detected_at: reading.received_at.to_rfc3339(),
                details: row.finding.details(),
            }
        })
        .collect();
    let device_id: Vec<&str> = records.iter().map(|r| r.device_id.as_str()).collect();
    let reading_id: Vec<Option<i64>> = records.iter().map(|r| r.reading_id).collect();
    let kind: Vec<&str> = records.iter().map(|r| r.kind.as_str()).collect();
    let severity: Vec<&str> = records.iter().map(|r| r.severity.as_str()).collect();
    let value: Vec<Option<f64>> = records.iter().map(|r| r.value).collect();
    let threshold: Vec<Option<f64>> = records.iter().map(|r| r.threshold).collect();
    let detected_at: Vec<DateTime<Utc>> = rows
        .iter()
        .map(|row| to_utc(items[row.item].reading.received_at))
        .collect();
    let details: Vec<&str> = records.iter().map(|r| r.details.as_str()).collect();
    let stmt = tx
        .prepare_cached(
            "INSERT INTO anomalies (id, device_id, reading_id, type, severity, value, threshold, \
             detected_at, details) SELECT * FROM unnest($1::int8[], $2::text[], $3::int8[], \
             $4::text[], $5::text[], $6::float8[], $7::float8[], $8::timestamptz[], $9::text[])",
        )
        .await
        .map_err(pg)?;
    tx.execute(
        &stmt,
        &[
            &ids,
            &device_id,
            &reading_id,
            &kind,
            &severity,
            &value,
            &threshold,
            &detected_at,
            &details,
        ],
    )
    .await
    .map_err(pg)?;
    Ok(records)
}

/// `WHERE a AND b …` with numbered parameters; clauses are the caller's constants, values are
/// always bound.
pub(super) struct Filter {
    clauses: Vec<String>,
    pub(super) values: Vec<Box<dyn ToSql + Sync + Send>>,
}

impl Filter {
    pub(super) fn new() -> Filter {
        Filter {
            clauses: Vec::new(),
            values: Vec::new(),
        }
    }

    /// Adds `clause`, whose one `?` stands for `value`.
    pub(super) fn add(&mut self, clause: &str, value: impl ToSql + Sync + Send + 'static) {
        self.values.push(Box::new(value));
        self.clauses
            .push(clause.replace('?', &format!("${}", self.values.len())));
    }

    pub(super) fn sql(&self) -> String {
        if self.clauses.is_empty() {
            String::new()
        } else {
            format!("WHERE {}", self.clauses.join(" AND "))
        }
    }

    pub(super) fn params(&self) -> Vec<&(dyn ToSql + Sync)> {
        self.values
            .iter()
            .map(|value| value.as_ref() as &(dyn ToSql + Sync))
            .collect()
    }
}

/// Readings matching `query`, newest first.
pub(super) async fn query(
    client: &impl GenericClient,
    query: ReadingQuery,
) -> Result<Vec<ReadingRecord>, StoreError> {
    let mut filter = Filter::new();
    if let Some(device_id) = query.device_id {
        filter.add("device_id = ?", device_id);
    }
    if let Some(since) = query.since {
        filter.add("timestamp >= ?", to_utc(since));
    }
    if let Some(until) = query.until {
        filter.add("timestamp <= ?", to_utc(until));
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
    let rows = client.query(&sql, &filter.params()).await.map_err(pg)?;
    readings_from_rows(&rows)
}

/// Readings at or after `since` that raised no anomaly, oldest first.
pub(super) async fn normal(
    client: &impl GenericClient,
    since: Option<Timestamp>,
    limit: usize,
) -> Result<Vec<ReadingRecord>, StoreError> {
    let since = to_utc(since.unwrap_or(Timestamp::from_micros(0)));
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let stmt = client
        .prepare_cached(&format!(
            "SELECT {} FROM readings r WHERE r.timestamp >= $1 \
             AND NOT EXISTS (SELECT 1 FROM anomalies a WHERE a.reading_id = r.id) \
             ORDER BY r.id LIMIT $2",
            select_columns()
        ))
        .await
        .map_err(pg)?;
    let rows = client.query(&stmt, &[&since, &limit]).await.map_err(pg)?;
    readings_from_rows(&rows)
}

/// Anomalies matching `query`, newest first.
pub(super) async fn anomalies(
    client: &impl GenericClient,
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
        filter.add("detected_at >= ?", to_utc(since));
    }
    if let Some(until) = query.until {
        filter.add("detected_at <= ?", to_utc(until));
    }
    if let Some(before_id) = query.before_id {
        filter.add("id < ?", before_id);
    }
    let sql = format!(
        "SELECT {ANOMALY_COLUMNS} FROM anomalies {} ORDER BY id DESC LIMIT {}",
        filter.sql(),
        query.limit
    );
    let rows = client.query(&sql, &filter.params()).await.map_err(pg)?;
    anomalies_from_rows(&rows)
}
