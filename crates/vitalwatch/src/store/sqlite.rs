//! The SQLite [`Store`]: one writer thread with group commit, a few read-only connections.
//!
//! Durability: WAL with `synchronous=FULL`, asserted when the store opens (NORMAL in WAL mode
//! can lose the last commits on power loss, which would break "acknowledged ⇒ durable").
//! Writes go through the shared writer front-end ([`super::front`]) to the writer thread and
//! are answered after their commit; reads run on a free read-only connection off the async threads.
//!
//! # Layout
//! - `schema.rs`: opening the file, the durability pragmas, migrations;
//! - `writer.rs`: the writer thread, SQLite's side of the shared front-end's group commit;
//! - `checkpoint.rs`: the thread that copies the WAL back, so that commits never checkpoint;
//! - `readings.rs`: the one list of reading columns, writing a reading (de-duplication),
//!   reading and anomaly queries;
//! - `devices.rs`: the registry and the quarantine; `audit.rs`: the hash chain's rows;
//! - `retention.rs`, `verdicts.rs`, `alerts.rs`, `auth.rs`, `dashboard.rs`: one concern each;
//! - `filter.rs`: the `WHERE` builder of the list queries.
//!
//! Each file keeps its row mappers next to the SQL that selects their columns. No rusqlite
//! type leaves this module: its errors become [`StoreError::Backend`] (or `InvalidData`).

use super::front::{Front, Op};
use super::{
    AlertEventRecord, AlertQuery, AlertRecord, AnomalyQuery, AnomalyRecord, AuditEntry,
    AuditRecord, AuthWrite, DeviceRecord, DeviceRegistration, DeviceUpdate, NewWebhookDelivery,
    PreparedReading, PurgeCounts, ReadingQuery, ReadingRecord, Retention, Store, StoreError,
    StoreHealth, StoreOptions, ThresholdsRecord, TokenRecord, UserRecord, WebhookDeliveryRecord,
    Written,
};
use async_trait::async_trait;
use parking_lot::Mutex;
use rusqlite::Connection;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use vitalwatch_core::telemetry::Timestamp;
use writer::{Reply, SqliteOp, WriteState, Writer};

mod alerts;
mod audit;
mod auth;
mod checkpoint;
mod devices;
mod filter;
mod readings;
mod retention;
mod schema;
mod series;
mod verdicts;
mod writer;

/// Read-only connections; a query waits for one only when all are busy.
const READ_CONNECTIONS: usize = 4;

impl From<rusqlite::Error> for StoreError {
    fn from(err: rusqlite::Error) -> StoreError {
        match err {
            // A stored value this build cannot read back (an unknown anomaly type, say).
            rusqlite::Error::FromSqlConversionFailure(..) => {
                StoreError::InvalidData(err.to_string())
            }
            err => StoreError::Backend(Box::new(err)),
        }
    }
}

/// The time a row is written, as stored.
fn now_text() -> String {
    crate::clock::now().to_rfc3339()
}

pub struct SqliteStore {
    front: Front<SqliteOp>,
    writer: Mutex<Option<std::thread::JoinHandle<()>>>,
    readers: Arc<Vec<Mutex<Connection>>>,
    /// The writer's last outcome, for [`Store::health`].
    write_state: Arc<WriteState>,
}

/// A health check trusts a commit this recent; older, it proves writes work with a probe.
const WRITE_FRESH: std::time::Duration = std::time::Duration::from_secs(5);
/// How long the health check waits for the writer's probe.
const PROBE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

impl SqliteStore {
    /// Opens (creating if needed) `path`, applies migrations, checks durability settings and
    /// starts the writer thread.
    pub fn open(path: &Path, options: StoreOptions) -> Result<SqliteStore, StoreError> {
        let mut conn = schema::open_writer(path)?;
        let checkpointer = checkpoint::start(path, &mut conn)?;
        let readers = (0..READ_CONNECTIONS)
            .map(|_| schema::open_reader(path).map(Mutex::new))
            .collect::<Result<Vec<_>, StoreError>>()?;
        let (front, rx) = Front::new(options.queue_capacity);
        let write_state = Arc::new(WriteState::default());
        let writer = Writer {
            conn,
            checkpointer: Some(checkpointer),
            options,
            state: Arc::clone(&write_state),
        };
        let handle = std::thread::Builder::new()
            .name("vitalwatch-sqlite-writer".to_owned())
            .spawn(move || writer.run(rx))
            .map_err(|err| {
                StoreError::backend(format!("starting the database writer thread: {err}"))
            })?;
        Ok(SqliteStore {
            front,
            writer: Mutex::new(Some(handle)),
            readers: Arc::new(readers),
            write_state,
        })
    }

    async fn alerting<T>(
        &self,
        make: impl FnOnce(Reply<T>) -> alerts::AlertCommand,
    ) -> Result<T, StoreError> {
        self.front
            .backend(|reply| SqliteOp::Alerting {
                command: Box::new(make(reply)),
            })
            .await
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
                .find_map(|slot| slot.try_lock())
                .unwrap_or_else(|| readers[0].lock());
            query(&guard)
        })
        .await
        .map_err(|err| StoreError::Other(format!("read task failed: {err}")))?
    }
}

#[async_trait]
impl Store for SqliteStore {
    async fn write_readings(
        &self,
        items: Vec<PreparedReading>,
    ) -> Result<Vec<Written>, StoreError> {
        self.front.write_readings(items).await
    }

    async fn try_write_readings(
        &self,
        items: Vec<PreparedReading>,
        wait: Duration,
    ) -> Result<Vec<Written>, StoreError> {
        self.front.try_write_readings(items, wait).await
    }

    async fn register_device(
        &self,
        registration: DeviceRegistration,
        actor: String,
    ) -> Result<DeviceRecord, StoreError> {
        self.front
            .op(|reply| Op::Register {
                registration,
                actor,
                reply,
            })
            .await
    }

    async fn update_device(
        &self,
        device_id: String,
        update: DeviceUpdate,
        actor: String,
    ) -> Result<DeviceRecord, StoreError> {
        self.front
            .op(|reply| Op::Update {
                device_id,
                update,
                actor,
                reply,
            })
            .await
    }

    async fn audit(&self, entry: AuditEntry) -> Result<(), StoreError> {
        self.front.audit(entry).await
    }

    fn try_audit_batch(
        &self,
        entries: Vec<AuditEntry>,
    ) -> Result<(), (StoreError, Vec<AuditEntry>)> {
        self.front.try_audit_batch(entries)
    }

    async fn auth_write(&self, write: AuthWrite, actor: String) -> Result<bool, StoreError> {
        self.front
            .op(|reply| Op::Auth {
                write,
                actor,
                reply,
            })
            .await
    }

    async fn find_token(&self, id: String) -> Result<Option<TokenRecord>, StoreError> {
        self.read(move |conn| auth::find_token(conn, &id)).await
    }

    async fn list_tokens(&self) -> Result<Vec<TokenRecord>, StoreError> {
        self.read(auth::list_tokens).await
    }

    async fn find_user(&self, username: String) -> Result<Option<UserRecord>, StoreError> {
        self.read(move |conn| auth::find_user(conn, &username))
            .await
    }

    async fn list_users(&self) -> Result<Vec<UserRecord>, StoreError> {
        self.read(auth::list_users).await
    }

    async fn purge(&self, now: Timestamp, retention: Retention) -> Result<PurgeCounts, StoreError> {
        self.front
            .op(|reply| Op::Purge {
                now,
                retention,
                reply,
            })
            .await
    }

    async fn list_devices(&self) -> Result<Vec<DeviceRecord>, StoreError> {
        self.read(devices::list).await
    }

    async fn get_device(&self, device_id: String) -> Result<Option<DeviceRecord>, StoreError> {
        self.read(move |conn| devices::load(conn, &device_id)).await
    }

    async fn readings(&self, query: ReadingQuery) -> Result<Vec<ReadingRecord>, StoreError> {
        self.read(move |conn| readings::query(conn, query)).await
    }

    async fn normal_readings(
        &self,
        since: Option<Timestamp>,
        limit: usize,
    ) -> Result<Vec<ReadingRecord>, StoreError> {
        self.read(move |conn| readings::normal(conn, since, limit))
            .await
    }

    async fn anomalies(&self, query: AnomalyQuery) -> Result<Vec<AnomalyRecord>, StoreError> {
        self.read(move |conn| readings::anomalies(conn, query))
            .await
    }

    async fn audit_log(&self, after_id: i64, limit: usize) -> Result<Vec<AuditRecord>, StoreError> {
        self.read(move |conn| audit::log(conn, after_id, limit))
            .await
    }

    async fn set_alert_verdict(
        &self,
        alert_id: i64,
        true_alarm: bool,
        by: String,
    ) -> Result<(), StoreError> {
        self.front
            .op(|reply| Op::Verdict {
                alert_id,
                true_alarm,
                by,
                reply,
            })
            .await
    }

    async fn verdict_readings(
        &self,
        limit: usize,
    ) -> Result<Vec<(ReadingRecord, bool)>, StoreError> {
        self.read(move |conn| verdicts::labelled_readings(conn, limit))
            .await
    }

    async fn audit_head(&self) -> Result<Option<(i64, String)>, StoreError> {
        self.read(audit::head).await
    }

    async fn last_audit(&self, action: String) -> Result<Option<AuditRecord>, StoreError> {
        self.read(move |conn| audit::last(conn, &action)).await
    }

    async fn health(&self) -> StoreHealth {
        let writer_alive = self
            .writer
            .lock()
            .as_ref()
            .is_some_and(|handle| !handle.is_finished());
        let probe = self
            .read(|conn| {
                let mode: String = conn.query_row("PRAGMA journal_mode", [], |row| row.get(0))?;
                Ok(mode)
            })
            .await;
        // A read-only probe succeeds while the disk refuses writes: prove a commit can succeed
        // too, unless one just did.
        let probe = match probe {
            Ok(mode) if writer_alive && self.write_state.needs_probe(WRITE_FRESH) => {
                let write = self.front.backend(|reply| SqliteOp::Probe { reply });
                match tokio::time::timeout(PROBE_TIMEOUT, write).await {
                    Ok(Ok(())) => Ok(mode),
                    Ok(Err(err)) => Err(err),
                    Err(_) => Err(StoreError::backend(
                        "the database writer did not answer in time".to_owned(),
                    )),
                }
            }
            probe => probe,
        };
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
        self.alerting(|reply| alerts::AlertCommand::Transitions { transitions, reply })
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
        self.alerting(|reply| alerts::AlertCommand::SetThresholds { record, reply })
            .await
    }

    async fn clear_thresholds(
        &self,
        device_id: String,
        actor: String,
        reason: Option<String>,
    ) -> Result<bool, StoreError> {
        self.alerting(|reply| alerts::AlertCommand::ClearThresholds {
            device_id,
            actor,
            reason,
            reply,
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
        self.alerting(|reply| alerts::AlertCommand::Delivery { delivery, reply })
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
        window: super::series::Window,
        now: Timestamp,
    ) -> Result<super::series::DashboardStats, StoreError> {
        self.read(move |conn| series::stats(conn, &window, now))
            .await
    }

    async fn series(
        &self,
        query: super::series::SeriesQuery,
    ) -> Result<Vec<super::series::DeviceSeries>, StoreError> {
        // Each device is its own index range: the devices split over two readers (two cores)
        // come back in half the time, in the order asked.
        let mut first = query.clone();
        let second_ids = first
            .device_ids
            .split_off(first.device_ids.len().div_ceil(2));
        if second_ids.is_empty() {
            return self.read(move |conn| series::series(conn, &first)).await;
        }
        let second = super::series::SeriesQuery {
            device_ids: second_ids,
            ..query
        };
        let (mut head, tail) = tokio::try_join!(
            self.read(move |conn| series::series(conn, &first)),
            self.read(move |conn| series::series(conn, &second)),
        )?;
        head.extend(tail);
        Ok(head)
    }

    async fn latest_readings(
        &self,
        window: super::series::Window,
    ) -> Result<Vec<ReadingRecord>, StoreError> {
        self.read(move |conn| series::latest(conn, &window)).await
    }

    async fn events_after(
        &self,
        reading_id: i64,
        anomaly_id: i64,
        limit: usize,
    ) -> Result<(Vec<ReadingRecord>, Vec<AnomalyRecord>), StoreError> {
        self.read(move |conn| series::events_after(conn, reading_id, anomaly_id, limit))
            .await
    }

    async fn max_event_ids(&self) -> Result<(i64, i64), StoreError> {
        self.read(series::max_event_ids).await
    }

    async fn close(&self) {
        self.front.close();
        let handle = self.writer.lock().take();
        if let Some(handle) = handle {
            let _ = tokio::task::spawn_blocking(move || handle.join()).await;
        }
    }
}

#[cfg(test)]
mod tests;
