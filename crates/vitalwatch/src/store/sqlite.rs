//! The SQLite [`Store`]: one writer thread with group commit, a few read-only connections.
//!
//! Durability: WAL with `synchronous=FULL`, asserted when the store opens (NORMAL in WAL mode
//! can lose the last commits on power loss, which would break "acknowledged ⇒ durable").
//! The writer blocks for the first command, drains what is already queued up to
//! `max_batch` readings, writes them in one `BEGIN IMMEDIATE … COMMIT`, and only then answers
//! every caller in the batch.

use super::audit::{GENESIS, entry_hash};
use super::{
    AlertEventRecord, AlertQuery, AlertRecord, NewWebhookDelivery, ThresholdsRecord,
    WebhookDeliveryRecord,
};
use super::{
    AnomalyQuery, AnomalyRecord, AuditEntry, AuditRecord, AuthWrite, DeviceRecord,
    DeviceRegistration, DeviceUpdate, ItemOutcome, PreparedReading, PurgeCounts, ReadingQuery,
    ReadingRecord, RegistryPolicy, Retention, Store, StoreError, StoreHealth, StoreOptions,
    TokenRecord, UserRecord,
};
use async_trait::async_trait;
use rusqlite::{Connection, OpenFlags, OptionalExtension, Row, params};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};
use vitalwatch_core::rules::{AnomalyType, Finding, Severity};
use vitalwatch_core::telemetry::{Reading, Timestamp};

mod alerts;
mod auth;

mod embedded {
    refinery::embed_migrations!("migrations/sqlite");
}

mod dashboard;

const READ_CONNECTIONS: usize = 4;

type Reply<T> = oneshot::Sender<Result<T, StoreError>>;

enum Command {
    Write(Vec<PreparedReading>, Reply<Vec<ItemOutcome>>),
    Register(DeviceRegistration, String, Reply<DeviceRecord>),
    Update(String, DeviceUpdate, String, Reply<DeviceRecord>),
    Audit(Vec<AuditEntry>),
    Auth(AuthWrite, String, Reply<bool>),
    Purge(Timestamp, Retention, Reply<PurgeCounts>),
    Alerting(alerts::AlertCommand),
    Verdict(i64, bool, String, Reply<()>),
}

pub struct SqliteStore {
    commands: Mutex<Option<mpsc::Sender<Command>>>,
    writer: Mutex<Option<std::thread::JoinHandle<()>>>,
    readers: Arc<Vec<Mutex<Connection>>>,
}

impl SqliteStore {
    /// Opens (creating if needed) `path`, applies migrations, checks durability settings and
    /// starts the writer thread.
    pub fn open(path: &Path, options: StoreOptions) -> anyhow::Result<SqliteStore> {
        use anyhow::Context;
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            create_private_dir(dir)
                .with_context(|| format!("creating data directory {}", dir.display()))?;
        }
        let mut conn = Connection::open(path)
            .with_context(|| format!("opening database {}", path.display()))?;
        restrict_file(path)?;
        configure_writer(&conn)?;
        migrate(&mut conn)?;
        let readers = (0..READ_CONNECTIONS)
            .map(|_| open_reader(path).map(Mutex::new))
            .collect::<anyhow::Result<Vec<_>>>()?;
        let (tx, rx) = mpsc::channel(options.queue_capacity);
        let writer = Writer { conn, options };
        let handle = std::thread::Builder::new()
            .name("vitalwatch-sqlite-writer".to_owned())
            .spawn(move || writer.run(rx))
            .context("starting the database writer thread")?;
        Ok(SqliteStore {
            commands: Mutex::new(Some(tx)),
            writer: Mutex::new(Some(handle)),
            readers: Arc::new(readers),
        })
    }

    fn sender(&self) -> Result<mpsc::Sender<Command>, StoreError> {
        self.commands
            .lock()
            .expect("the sender mutex is never poisoned: no code panics while holding it")
            .clone()
            .ok_or(StoreError::Closed)
    }

    async fn request<T>(&self, make: impl FnOnce(Reply<T>) -> Command) -> Result<T, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.sender()?
            .send(make(reply))
            .await
            .map_err(|_| StoreError::Closed)?;
        answer.await.map_err(|_| StoreError::Closed)?
    }

    /// Runs `query` on a free read-only connection, off the async threads.
    async fn read<T, F>(&self, query: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let readers = Arc::clone(&self.readers);
        tokio::task::spawn_blocking(move || {
            let guard = readers
                .iter()
                .find_map(|slot| slot.try_lock().ok())
                .unwrap_or_else(|| {
                    readers[0]
                        .lock()
                        .expect("reader mutexes are never poisoned: queries do not panic")
                });
            query(&guard)
        })
        .await
        .map_err(|err| StoreError::Other(format!("read task failed: {err}")))?
    }
}

fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    if dir.exists() {
        return Ok(());
    }
    std::fs::create_dir_all(dir)?;
    set_mode(dir, 0o700)
}

fn restrict_file(path: &Path) -> anyhow::Result<()> {
    set_mode(path, 0o600).map_err(|err| anyhow::anyhow!("restricting {}: {err}", path.display()))
}

#[cfg(unix)]
fn set_mode(path: &Path, mode: u32) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
}

#[cfg(not(unix))]
fn set_mode(_path: &Path, _mode: u32) -> std::io::Result<()> {
    Ok(())
}

fn configure_writer(conn: &Connection) -> anyhow::Result<()> {
    conn.busy_timeout(Duration::from_secs(5))?;
    let mode: String = conn.query_row("PRAGMA journal_mode=WAL", [], |row| row.get(0))?;
    conn.execute_batch("PRAGMA synchronous=FULL; PRAGMA foreign_keys=ON;")?;
    let synchronous: i64 = conn.query_row("PRAGMA synchronous", [], |row| row.get(0))?;
    // Refuse to run without the settings that make an acknowledgement mean "on disk".
    if !mode.eq_ignore_ascii_case("wal") || synchronous != 2 {
        anyhow::bail!(
            "database durability settings not in force (journal_mode={mode}, synchronous={synchronous}); \
             VitalWatch requires WAL with synchronous=FULL"
        );
    }
    Ok(())
}

fn open_reader(path: &Path) -> anyhow::Result<Connection> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.busy_timeout(Duration::from_secs(5))?;
    Ok(conn)
}

/// The newest schema version this build knows.
fn latest_known_version() -> i64 {
    embedded::migrations::runner()
        .get_migrations()
        .iter()
        .map(|m| i64::from(m.version()))
        .max()
        .unwrap_or(0)
}

fn migrate(conn: &mut Connection) -> anyhow::Result<()> {
    let has_history: bool = conn.query_row(
        "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type='table' AND name='refinery_schema_history')",
        [],
        |row| row.get(0),
    )?;
    if has_history {
        let applied: Option<i64> = conn.query_row(
            "SELECT MAX(version) FROM refinery_schema_history",
            [],
            |row| row.get(0),
        )?;
        let known = latest_known_version();
        if let Some(applied) = applied.filter(|v| *v > known) {
            anyhow::bail!(
                "the database schema is version {applied}, newer than this VitalWatch supports \
                 (up to {known}): run a newer VitalWatch, or restore a backup made by this version"
            );
        }
    }
    embedded::migrations::runner()
        .set_abort_divergent(true)
        .set_abort_missing(true)
        .run(conn)
        .map_err(|err| anyhow::anyhow!("applying database migrations: {err}"))?;
    Ok(())
}

/// The writer thread's state; it owns the only read-write connection.
struct Writer {
    conn: Connection,
    options: StoreOptions,
}

impl Writer {
    fn run(mut self, mut commands: mpsc::Receiver<Command>) {
        while let Some(first) = commands.blocking_recv() {
            let mut writes = Vec::new();
            let mut others = Vec::new();
            let mut n_readings = 0usize;
            let mut next = Some(first);
            while let Some(command) = next.take() {
                match command {
                    Command::Write(items, reply) => {
                        n_readings += items.len();
                        writes.push((items, reply));
                    }
                    Command::Audit(entries) => others.push(Command::Audit(entries)),
                    other => {
                        others.push(other);
                        break;
                    }
                }
                if n_readings >= self.options.max_batch {
                    break;
                }
                next = commands.try_recv().ok();
            }
            if !writes.is_empty() {
                self.commit_writes(writes, &mut others);
            }
            for command in others {
                self.handle_other(command);
            }
        }
        if let Err(err) = self.conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE);") {
            tracing::warn!(message = "WAL checkpoint at close failed.", error = %err);
        }
    }

    /// One transaction for every queued write (and the audit entries queued with them).
    fn commit_writes(
        &mut self,
        writes: Vec<(Vec<PreparedReading>, Reply<Vec<ItemOutcome>>)>,
        others: &mut Vec<Command>,
    ) {
        let res = (|| -> Result<Vec<Vec<ItemOutcome>>, StoreError> {
            let mut outcomes: Vec<Vec<ItemOutcome>> = writes
                .iter()
                .map(|(items, _)| Vec::with_capacity(items.len()))
                .collect();
            let queued: Vec<(usize, &PreparedReading)> = writes
                .iter()
                .enumerate()
                .flat_map(|(caller, (items, _))| items.iter().map(move |item| (caller, item)))
                .collect();
            // At most `max_batch` readings per transaction (1 gives the naive baseline the
            // benchmark compares against); callers are answered after all their chunks commit.
            for (chunk_idx, chunk) in queued.chunks(self.options.max_batch.max(1)).enumerate() {
                let tx = self
                    .conn
                    .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
                for (caller, item) in chunk {
                    outcomes[*caller].push(write_one(&tx, item, &self.options)?);
                }
                if chunk_idx == 0 {
                    others.retain(|command| match command {
                        Command::Audit(entries) => {
                            for entry in entries {
                                if let Err(err) = append_audit(&tx, entry) {
                                    tracing::error!(message = "Audit entry could not be written.", error = %err);
                                }
                            }
                            false
                        }
                        _ => true,
                    });
                }
                tx.commit()?;
            }
            Ok(outcomes)
        })();
        match res {
            Ok(outcomes) => {
                for ((_, reply), outcome) in writes.into_iter().zip(outcomes) {
                    let _ = reply.send(Ok(outcome));
                }
            }
            Err(err) => {
                tracing::error!(message = "Batch commit failed; callers get an error.", error = %err);
                let text = err.to_string();
                for (_, reply) in writes {
                    let _ = reply.send(Err(StoreError::Other(text.clone())));
                }
            }
        }
    }

    fn handle_other(&mut self, command: Command) {
        match command {
            Command::Verdict(alert_id, true_alarm, by, reply) => {
                let res = self.in_transaction(|tx| set_verdict(tx, alert_id, true_alarm, &by));
                let _ = reply.send(res);
            }
            Command::Write(items, reply) => {
                self.commit_writes(vec![(items, reply)], &mut Vec::new())
            }
            Command::Audit(entries) => {
                let res = self.in_transaction(|tx| {
                    entries.iter().try_for_each(|entry| append_audit(tx, entry))
                });
                if let Err(err) = res {
                    tracing::error!(message = "Audit entry could not be written.", error = %err);
                }
            }
            Command::Register(registration, actor, reply) => {
                let default_interval = self.options.default_expected_interval_s;
                let res =
                    self.in_transaction(|tx| register(tx, &registration, &actor, default_interval));
                let _ = reply.send(res);
            }
            Command::Update(device_id, update, actor, reply) => {
                let res = self.in_transaction(|tx| update_device(tx, &device_id, &update, &actor));
                let _ = reply.send(res);
            }
            Command::Purge(now, retention, reply) => {
                let res = self.in_transaction(|tx| purge(tx, now, retention));
                let _ = reply.send(res);
            }
            Command::Alerting(command) => alerts::handle(&mut self.conn, command),
            Command::Auth(write, actor, reply) => auth::handle(&mut self.conn, write, actor, reply),
        }
    }

    fn in_transaction<T>(
        &mut self,
        work: impl FnOnce(&rusqlite::Transaction<'_>) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let value = work(&tx)?;
        tx.commit()?;
        Ok(value)
    }
}

fn now_text() -> String {
    Timestamp::from_datetime(chrono::Utc::now()).to_rfc3339()
}

/// Appends one entry to the hash chain. The previous hash is read inside the (IMMEDIATE)
/// transaction, so a CLI writing beside a running server extends the same chain.
pub(super) fn append_audit(
    tx: &rusqlite::Transaction<'_>,
    entry: &AuditEntry,
) -> Result<(), StoreError> {
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
    tx.prepare_cached(
        "INSERT INTO audit_log (id, at, actor, action, target, details, prev_hash, hash) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    )?
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

/// Whether a device is registered and, if so, active.
fn device_state(
    tx: &rusqlite::Transaction<'_>,
    device_id: &str,
) -> Result<Option<bool>, StoreError> {
    Ok(tx
        .prepare_cached("SELECT active FROM devices WHERE device_id = ?1")?
        .query_row([device_id], |row| row.get::<_, bool>(0))
        .optional()?)
}

fn write_one(
    tx: &rusqlite::Transaction<'_>,
    item: &PreparedReading,
    options: &StoreOptions,
) -> Result<ItemOutcome, StoreError> {
    let reading = &item.reading;
    let device_id = reading.device_id.as_str();
    let mut registered = false;
    match device_state(tx, device_id)? {
        Some(true) => {}
        Some(false) => return quarantine(tx, item, "device is deactivated", options),
        None if options.policy == RegistryPolicy::Strict => {
            return quarantine(tx, item, "device is not registered", options);
        }
        None => {
            let registration = DeviceRegistration {
                device_id: device_id.to_owned(),
                ..DeviceRegistration::default()
            };
            let actor = format!("auto-register:{}", item.source.as_str());
            register(
                tx,
                &registration,
                &actor,
                options.default_expected_interval_s,
            )?;
            registered = true;
        }
    }

    if let Some(seq) = reading.seq {
        let window_micros = (options.redelivery_window_s as i64).saturating_mul(1_000_000);
        let since = reading
            .received_at
            .saturating_add_micros(-window_micros)
            .to_rfc3339();
        let existing: Option<i64> = tx
            .prepare_cached(
                "SELECT id FROM readings WHERE device_id = ?1 AND seq = ?2 AND received_at >= ?3 LIMIT 1",
            )?
            .query_row(params![device_id, seq as i64, since], |row| row.get(0))
            .optional()?;
        if let Some(reading_id) = existing {
            return Ok(ItemOutcome::Duplicate { reading_id });
        }
    }

    let timestamp = reading.timestamp.to_rfc3339();
    let received_at = reading.received_at.to_rfc3339();
    let inserted = tx
        .prepare_cached(
            "INSERT INTO readings (device_id, timestamp, timestamp_from_device, received_at, \
             heart_rate, body_temp, signal_strength, battery_level, spo2, respiratory_rate, \
             systolic_bp, diastolic_bp, consciousness, on_oxygen, seq, extra, source, ml_score) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18) \
             ON CONFLICT (device_id, timestamp) DO NOTHING",
        )?
        .execute(params![
            device_id,
            timestamp,
            reading.timestamp_from_device,
            received_at,
            reading.heart_rate_bpm,
            reading.body_temp_c,
            reading.signal_strength_dbm,
            reading.battery_pct,
            reading.spo2_pct,
            reading.respiratory_rate_per_min,
            reading.systolic_bp_mmhg,
            reading.diastolic_bp_mmhg,
            reading.consciousness.map(|c| c.letter()),
            reading.on_oxygen,
            reading.seq.map(|s| s as i64),
            reading.extra,
            item.source.as_str(),
            item.ml_score,
        ])?;
    if inserted == 0 {
        let reading_id: i64 = tx
            .prepare_cached("SELECT id FROM readings WHERE device_id = ?1 AND timestamp = ?2")?
            .query_row(params![device_id, timestamp], |row| row.get(0))?;
        return Ok(ItemOutcome::Duplicate { reading_id });
    }
    let reading_id = tx.last_insert_rowid();
    let anomalies = insert_anomalies(
        tx,
        device_id,
        Some(reading_id),
        &item.findings,
        &received_at,
    )?;
    tx.prepare_cached(
        "UPDATE devices SET total_readings = total_readings + 1, \
         last_seen = CASE WHEN last_seen IS NULL OR last_seen < ?2 THEN ?2 ELSE last_seen END \
         WHERE device_id = ?1",
    )?
    .execute(params![device_id, received_at])?;
    Ok(ItemOutcome::Stored {
        reading_id,
        anomalies,
        registered,
    })
}

fn insert_anomalies(
    tx: &rusqlite::Transaction<'_>,
    device_id: &str,
    reading_id: Option<i64>,
    findings: &[Finding],
    detected_at: &str,
) -> Result<Vec<AnomalyRecord>, StoreError> {
    let mut out = Vec::with_capacity(findings.len());
    let mut stmt = tx.prepare_cached(
        "INSERT INTO anomalies (device_id, reading_id, type, severity, value, threshold, detected_at, details) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    )?;
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

fn quarantine(
    tx: &rusqlite::Transaction<'_>,
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
        reading_json(reading).to_string(),
        item.source.as_str(),
    ])?;
    let quarantine_id = tx.last_insert_rowid();
    let finding = Finding::unknown_device(options.unknown_device_severity, reason);
    let anomalies = insert_anomalies(
        tx,
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

/// A reading as the seed's JSON payload (plus extended fields), for the quarantine table.
fn reading_json(reading: &Reading) -> serde_json::Value {
    serde_json::json!({
        "device_id": reading.device_id.as_str(),
        "timestamp": reading.timestamp.to_rfc3339(),
        "heart_rate": reading.heart_rate_bpm,
        "body_temp": reading.body_temp_c,
        "signal_strength": reading.signal_strength_dbm,
        "battery_level": reading.battery_pct,
        "spo2": reading.spo2_pct,
        "respiratory_rate": reading.respiratory_rate_per_min,
        "systolic_bp": reading.systolic_bp_mmhg,
        "diastolic_bp": reading.diastolic_bp_mmhg,
        "consciousness": reading.consciousness.map(|c| c.letter()),
        "on_oxygen": reading.on_oxygen,
        "seq": reading.seq,
        "extra": reading.extra.as_deref().and_then(|e| serde_json::from_str::<serde_json::Value>(e).ok()),
    })
}

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

fn load_device(conn: &Connection, device_id: &str) -> Result<Option<DeviceRecord>, StoreError> {
    Ok(conn
        .prepare_cached(&format!(
            "SELECT {DEVICE_COLUMNS} FROM devices WHERE device_id = ?1"
        ))?
        .query_row([device_id], device_from_row)
        .optional()?)
}

fn register(
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
    append_audit(
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
    load_device(tx, &registration.device_id)?
        .ok_or_else(|| StoreError::Other("device vanished after insert".to_owned()))
}

fn update_device(
    tx: &rusqlite::Transaction<'_>,
    device_id: &str,
    update: &DeviceUpdate,
    actor: &str,
) -> Result<DeviceRecord, StoreError> {
    let Some(current) = load_device(tx, device_id)? else {
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
    let action = match update.active {
        Some(false) => "device.deactivate",
        Some(true) if current.status != "active" => "device.reactivate",
        _ => "device.update",
    };
    let mut changed = Vec::new();
    if update.patient_label.is_some() {
        changed.push("patient_label");
    }
    if update.location.is_some() {
        changed.push("location");
    }
    if update.expected_interval_s.is_some() {
        changed.push("expected_interval_s");
    }
    if update.active.is_some() {
        changed.push("active");
    }
    append_audit(
        tx,
        &AuditEntry {
            actor: actor.to_owned(),
            action: action.to_owned(),
            target: device_id.to_owned(),
            details: serde_json::json!({ "changed": changed }),
        },
    )?;
    load_device(tx, device_id)?.ok_or_else(|| StoreError::DeviceNotFound(device_id.to_owned()))
}

fn purge(
    tx: &rusqlite::Transaction<'_>,
    now: Timestamp,
    retention: Retention,
) -> Result<PurgeCounts, StoreError> {
    let cutoff = |days: u32| {
        now.saturating_add_micros(-(i64::from(days) * 86_400 * 1_000_000))
            .to_rfc3339()
    };
    let readings_cutoff = cutoff(retention.readings_days);
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
        audit: tx.execute(
            "DELETE FROM audit_log WHERE at < ?1",
            [cutoff(retention.audit_days)],
        )? as u64,
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
        }
        append_audit(
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

fn set_verdict(
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
    append_audit(
        tx,
        &AuditEntry {
            actor: by.to_owned(),
            action: "alert.verdict".to_owned(),
            target: alert_id.to_string(),
            details: serde_json::json!({ "verdict": verdict }),
        },
    )
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

fn reading_from_row(row: &Row<'_>) -> rusqlite::Result<ReadingRecord> {
    let extra: Option<String> = row.get(16)?;
    Ok(ReadingRecord {
        id: row.get(0)?,
        device_id: row.get(1)?,
        timestamp: row.get(2)?,
        timestamp_from_device: row.get(3)?,
        received_at: row.get(4)?,
        heart_rate: row.get(5)?,
        body_temp: row.get(6)?,
        signal_strength: row.get(7)?,
        battery_level: row.get(8)?,
        spo2: row.get(9)?,
        respiratory_rate: row.get(10)?,
        systolic_bp: row.get(11)?,
        diastolic_bp: row.get(12)?,
        consciousness: row.get(13)?,
        on_oxygen: row.get(14)?,
        seq: row.get(15)?,
        extra: extra.and_then(|text| serde_json::from_str(&text).ok()),
        ml_score: row.get(17)?,
        source: row.get(18)?,
    })
}

fn anomaly_from_row(row: &Row<'_>) -> rusqlite::Result<AnomalyRecord> {
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

/// Builds `WHERE a AND b …` from optional conditions, with numbered parameters.
struct Filter {
    clauses: Vec<String>,
    values: Vec<rusqlite::types::Value>,
}

impl Filter {
    fn new() -> Filter {
        Filter {
            clauses: Vec::new(),
            values: Vec::new(),
        }
    }

    fn add(&mut self, clause: &str, value: impl Into<rusqlite::types::Value>) {
        self.values.push(value.into());
        self.clauses
            .push(clause.replace('?', &format!("?{}", self.values.len())));
    }

    fn sql(&self) -> String {
        if self.clauses.is_empty() {
            String::new()
        } else {
            format!("WHERE {}", self.clauses.join(" AND "))
        }
    }
}

#[async_trait]
impl Store for SqliteStore {
    async fn write_readings(
        &self,
        items: Vec<PreparedReading>,
    ) -> Result<Vec<ItemOutcome>, StoreError> {
        if items.is_empty() {
            return Ok(Vec::new());
        }
        self.request(|reply| Command::Write(items, reply)).await
    }

    async fn try_write_readings(
        &self,
        items: Vec<PreparedReading>,
        wait: Duration,
    ) -> Result<Vec<ItemOutcome>, StoreError> {
        if items.is_empty() {
            return Ok(Vec::new());
        }
        let sender = self.sender()?;
        let permit = match tokio::time::timeout(wait, sender.reserve()).await {
            Ok(Ok(permit)) => permit,
            Ok(Err(_)) => return Err(StoreError::Closed),
            Err(_) => return Err(StoreError::Busy),
        };
        let (reply, answer) = oneshot::channel();
        permit.send(Command::Write(items, reply));
        answer.await.map_err(|_| StoreError::Closed)?
    }

    async fn register_device(
        &self,
        registration: DeviceRegistration,
        actor: String,
    ) -> Result<DeviceRecord, StoreError> {
        self.request(|reply| Command::Register(registration, actor, reply))
            .await
    }

    async fn update_device(
        &self,
        device_id: String,
        update: DeviceUpdate,
        actor: String,
    ) -> Result<DeviceRecord, StoreError> {
        self.request(|reply| Command::Update(device_id, update, actor, reply))
            .await
    }

    async fn audit(&self, entry: AuditEntry) -> Result<(), StoreError> {
        self.sender()?
            .send(Command::Audit(vec![entry]))
            .await
            .map_err(|_| StoreError::Closed)
    }

    fn try_audit_batch(
        &self,
        entries: Vec<AuditEntry>,
    ) -> Result<(), (StoreError, Vec<AuditEntry>)> {
        let sender = match self.sender() {
            Ok(sender) => sender,
            Err(err) => return Err((err, entries)),
        };
        sender
            .try_send(Command::Audit(entries))
            .map_err(|err| match err {
                mpsc::error::TrySendError::Full(Command::Audit(entries)) => {
                    (StoreError::Busy, entries)
                }
                mpsc::error::TrySendError::Closed(Command::Audit(entries)) => {
                    (StoreError::Closed, entries)
                }
                _ => unreachable!("try_send hands back the command it was given"),
            })
    }

    async fn auth_write(&self, write: AuthWrite, actor: String) -> Result<bool, StoreError> {
        self.request(|reply| Command::Auth(write, actor, reply))
            .await
    }

    async fn find_token(&self, id: String) -> Result<Option<TokenRecord>, StoreError> {
        self.read(move |conn| {
            Ok(conn
                .prepare_cached(&format!(
                    "SELECT {} FROM api_tokens WHERE id = ?1",
                    auth::TOKEN_COLUMNS
                ))?
                .query_row([id], auth::token_from_row)
                .optional()?)
        })
        .await
    }

    async fn list_tokens(&self) -> Result<Vec<TokenRecord>, StoreError> {
        self.read(|conn| {
            let mut stmt = conn.prepare_cached(&format!(
                "SELECT {} FROM api_tokens ORDER BY created_at, name",
                auth::TOKEN_COLUMNS
            ))?;
            let rows = stmt.query_map([], auth::token_from_row)?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
        .await
    }

    async fn find_user(&self, username: String) -> Result<Option<UserRecord>, StoreError> {
        self.read(move |conn| {
            Ok(conn
                .prepare_cached(&format!(
                    "SELECT {} FROM users WHERE username = ?1",
                    auth::USER_COLUMNS
                ))?
                .query_row([username], auth::user_from_row)
                .optional()?)
        })
        .await
    }

    async fn list_users(&self) -> Result<Vec<UserRecord>, StoreError> {
        self.read(|conn| {
            let mut stmt = conn.prepare_cached(&format!(
                "SELECT {} FROM users ORDER BY username",
                auth::USER_COLUMNS
            ))?;
            let rows = stmt.query_map([], auth::user_from_row)?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
        .await
    }

    async fn purge(&self, now: Timestamp, retention: Retention) -> Result<PurgeCounts, StoreError> {
        self.request(|reply| Command::Purge(now, retention, reply))
            .await
    }

    async fn list_devices(&self) -> Result<Vec<DeviceRecord>, StoreError> {
        self.read(|conn| {
            let mut stmt = conn.prepare_cached(&format!(
                "SELECT {DEVICE_COLUMNS} FROM devices ORDER BY device_id"
            ))?;
            let rows = stmt.query_map([], device_from_row)?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
        .await
    }

    async fn get_device(&self, device_id: String) -> Result<Option<DeviceRecord>, StoreError> {
        self.read(move |conn| load_device(conn, &device_id)).await
    }

    async fn readings(&self, query: ReadingQuery) -> Result<Vec<ReadingRecord>, StoreError> {
        self.read(move |conn| {
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
                "SELECT id, device_id, timestamp, timestamp_from_device, received_at, heart_rate, \
                 body_temp, signal_strength, battery_level, spo2, respiratory_rate, systolic_bp, \
                 diastolic_bp, consciousness, on_oxygen, seq, extra, ml_score, source \
                 FROM readings {} ORDER BY id DESC LIMIT {}",
                filter.sql(),
                query.limit
            );
            let mut stmt = conn.prepare(&sql)?;
            let rows =
                stmt.query_map(rusqlite::params_from_iter(filter.values), reading_from_row)?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
        .await
    }

    async fn normal_readings(
        &self,
        since: Option<Timestamp>,
        limit: usize,
    ) -> Result<Vec<ReadingRecord>, StoreError> {
        let since = since.map_or_else(String::new, Timestamp::to_rfc3339);
        self.read(move |conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT id, device_id, timestamp, timestamp_from_device, received_at, heart_rate, \
                 body_temp, signal_strength, battery_level, spo2, respiratory_rate, systolic_bp, \
                 diastolic_bp, consciousness, on_oxygen, seq, extra, ml_score, source \
                 FROM readings r WHERE r.timestamp >= ?1 \
                 AND NOT EXISTS (SELECT 1 FROM anomalies a WHERE a.reading_id = r.id) \
                 ORDER BY r.id LIMIT ?2",
            )?;
            let limit = i64::try_from(limit).unwrap_or(i64::MAX);
            let rows = stmt.query_map(params![since, limit], reading_from_row)?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
        .await
    }

    async fn anomalies(&self, query: AnomalyQuery) -> Result<Vec<AnomalyRecord>, StoreError> {
        self.read(move |conn| {
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
                "SELECT id, device_id, reading_id, type, severity, value, threshold, detected_at, details \
                 FROM anomalies {} ORDER BY id DESC LIMIT {}",
                filter.sql(),
                query.limit
            );
            let mut stmt = conn.prepare(&sql)?;
            let rows = stmt.query_map(rusqlite::params_from_iter(filter.values), anomaly_from_row)?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
        .await
    }

    async fn audit_log(&self, after_id: i64, limit: usize) -> Result<Vec<AuditRecord>, StoreError> {
        self.read(move |conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT id, at, actor, action, target, details, prev_hash, hash FROM audit_log \
                 WHERE id > ?1 ORDER BY id LIMIT ?2",
            )?;
            let rows = stmt.query_map(params![after_id, limit as i64], audit_from_row)?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
        .await
    }

    async fn set_alert_verdict(
        &self,
        alert_id: i64,
        true_alarm: bool,
        by: String,
    ) -> Result<(), StoreError> {
        self.request(|reply| Command::Verdict(alert_id, true_alarm, by, reply))
            .await
    }

    async fn verdict_readings(
        &self,
        limit: usize,
    ) -> Result<Vec<(ReadingRecord, bool)>, StoreError> {
        self.read(move |conn| {
            let episodes: Vec<(String, String, Option<String>, String)> = conn
                .prepare_cached(
                    "SELECT device_id, opened_at, resolved_at, verdict FROM alerts \
                     WHERE verdict IS NOT NULL ORDER BY id",
                )?
                .query_map([], |row| {
                    Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?))
                })?
                .collect::<rusqlite::Result<_>>()?;
            let mut stmt = conn.prepare_cached(
                "SELECT id, device_id, timestamp, timestamp_from_device, received_at, heart_rate, \
                 body_temp, signal_strength, battery_level, spo2, respiratory_rate, systolic_bp, \
                 diastolic_bp, consciousness, on_oxygen, seq, extra, ml_score, source \
                 FROM readings WHERE device_id = ?1 AND received_at >= ?2 AND received_at <= ?3 \
                 ORDER BY id LIMIT ?4",
            )?;
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
                let rows =
                    stmt.query_map(params![device_id, from, until, remaining], reading_from_row)?;
                for row in rows {
                    out.push((row?, verdict == "true_alarm"));
                }
            }
            Ok(out)
        })
        .await
    }

    async fn audit_head(&self) -> Result<Option<(i64, String)>, StoreError> {
        self.read(|conn| {
            Ok(conn
                .prepare_cached("SELECT id, hash FROM audit_log ORDER BY id DESC LIMIT 1")?
                .query_row([], |row| Ok((row.get(0)?, row.get(1)?)))
                .optional()?)
        })
        .await
    }

    async fn last_audit(&self, action: String) -> Result<Option<AuditRecord>, StoreError> {
        self.read(move |conn| {
            Ok(conn
                .prepare_cached(
                    "SELECT id, at, actor, action, target, details, prev_hash, hash FROM audit_log \
                     WHERE action = ?1 ORDER BY id DESC LIMIT 1",
                )?
                .query_row([action], audit_from_row)
                .optional()?)
        })
        .await
    }

    async fn health(&self) -> StoreHealth {
        let writer_alive = self
            .writer
            .lock()
            .expect("the writer handle mutex is never poisoned")
            .as_ref()
            .is_some_and(|handle| !handle.is_finished());
        let probe = self
            .read(|conn| {
                let mode: String = conn.query_row("PRAGMA journal_mode", [], |row| row.get(0))?;
                Ok(mode)
            })
            .await;
        match (writer_alive, probe) {
            (true, Ok(mode)) => StoreHealth {
                status: "ok",
                backend: "sqlite",
                journal_mode: mode.to_lowercase(),
                // Set on the writer connection and asserted at open (configure_writer).
                synchronous: "full".to_owned(),
                error: None,
            },
            (alive, probe) => StoreHealth {
                status: "unavailable",
                backend: "sqlite",
                journal_mode: String::new(),
                synchronous: String::new(),
                error: Some(match probe {
                    Err(err) => err.to_string(),
                    Ok(_) if !alive => "the database writer has stopped".to_owned(),
                    Ok(_) => "unknown".to_owned(),
                }),
            },
        }
    }

    async fn write_alert_transitions(
        &self,
        transitions: Vec<vitalwatch_core::alerting::AlertTransition>,
    ) -> Result<(), StoreError> {
        if transitions.is_empty() {
            return Ok(());
        }
        self.request(|reply| {
            Command::Alerting(alerts::AlertCommand::Transitions(transitions, reply))
        })
        .await
    }

    async fn open_alerts(
        &self,
    ) -> Result<(u64, Vec<vitalwatch_core::alerting::Alert>), StoreError> {
        self.read(alerts::open_alerts).await
    }

    async fn alerts(&self, query: AlertQuery) -> Result<Vec<AlertRecord>, StoreError> {
        self.read(move |conn| alerts::alerts(conn, query)).await
    }

    async fn alert(
        &self,
        id: u64,
    ) -> Result<Option<(AlertRecord, Vec<AlertEventRecord>)>, StoreError> {
        self.read(move |conn| alerts::alert(conn, id)).await
    }

    async fn set_thresholds(
        &self,
        record: ThresholdsRecord,
    ) -> Result<ThresholdsRecord, StoreError> {
        self.request(|reply| Command::Alerting(alerts::AlertCommand::SetThresholds(record, reply)))
            .await
    }

    async fn clear_thresholds(
        &self,
        device_id: String,
        actor: String,
        reason: Option<String>,
    ) -> Result<bool, StoreError> {
        self.request(|reply| {
            Command::Alerting(alerts::AlertCommand::ClearThresholds {
                device_id,
                actor,
                reason,
                reply,
            })
        })
        .await
    }

    async fn thresholds(
        &self,
        device_id: Option<String>,
    ) -> Result<Vec<ThresholdsRecord>, StoreError> {
        self.read(move |conn| alerts::thresholds(conn, device_id))
            .await
    }

    async fn record_webhook_delivery(
        &self,
        delivery: NewWebhookDelivery,
    ) -> Result<(), StoreError> {
        self.request(|reply| Command::Alerting(alerts::AlertCommand::Delivery(delivery, reply)))
            .await
    }

    async fn webhook_deliveries(
        &self,
        state: Option<String>,
        limit: usize,
    ) -> Result<Vec<WebhookDeliveryRecord>, StoreError> {
        self.read(move |conn| alerts::webhook_deliveries(conn, state, limit))
            .await
    }

    async fn dashboard_stats(
        &self,
        window: super::dashboard::Window,
        now: Timestamp,
    ) -> Result<super::dashboard::DashboardStats, StoreError> {
        self.read(move |conn| dashboard::stats(conn, &window, now))
            .await
    }

    async fn series(
        &self,
        query: super::dashboard::SeriesQuery,
    ) -> Result<Vec<super::dashboard::DeviceSeries>, StoreError> {
        self.read(move |conn| dashboard::series(conn, &query)).await
    }

    async fn latest_readings(
        &self,
        window: super::dashboard::Window,
    ) -> Result<Vec<ReadingRecord>, StoreError> {
        self.read(move |conn| dashboard::latest(conn, &window))
            .await
    }

    async fn events_after(
        &self,
        reading_id: i64,
        anomaly_id: i64,
        limit: usize,
    ) -> Result<(Vec<ReadingRecord>, Vec<AnomalyRecord>), StoreError> {
        self.read(move |conn| dashboard::events_after(conn, reading_id, anomaly_id, limit))
            .await
    }

    async fn max_event_ids(&self) -> Result<(i64, i64), StoreError> {
        self.read(dashboard::max_event_ids).await
    }

    async fn close(&self) {
        drop(
            self.commands
                .lock()
                .expect("the sender mutex is never poisoned")
                .take(),
        );
        let handle = self
            .writer
            .lock()
            .expect("the writer handle mutex is never poisoned")
            .take();
        if let Some(handle) = handle {
            let _ = tokio::task::spawn_blocking(move || handle.join()).await;
        }
    }
}

#[cfg(test)]
mod tests;
