//! The PostgreSQL [`Store`]: one writer task with group commit over a connection pool, reads
//! on the pool's other connections.
//!
//! Durability: a commit is acknowledged only when PostgreSQL reports it, and the store refuses
//! to open when `synchronous_commit` is `off` or `local` (a reported commit could be lost)
//! unless the operator opted in. Writes go through the shared writer front-end
//! ([`super::front`]) to the writer task and are answered after their commit; several
//! processes may write at once (a server and the CLI): the audit chain is extended under an
//! advisory lock, readings are de-duplicated by unique keys.
//!
//! # Layout
//! - `connect.rs`: the URL (TLS, redaction) and the pool; `schema.rs`: the durability check,
//!   migrations and the readings' daily partitions;
//! - `writer.rs`: the writer task (PostgreSQL's side of the shared front-end's group commit)
//!   and retrying while the database is away;
//! - `readings.rs`: the one list of reading columns, the batch write (de-duplication), the
//!   list queries; `devices.rs`: the registry and the quarantine; `audit.rs`: the chain's
//!   rows and lock;
//! - `alerts.rs`, `thresholds.rs`, `auth.rs`, `series.rs`, `retention.rs`: one concern each;
//! - `copy.rs`: `vitalwatch store copy`, a SQLite store's rows copied as they are.
//!
//! No driver type leaves this module: its errors become [`StoreError::Backend`] with their
//! whole text (never a connection string).

use super::front::{Front, Op};
use super::{
    AlertEventRecord, AlertQuery, AlertRecord, AnomalyQuery, AnomalyRecord, AuditEntry,
    AuditRecord, AuthWrite, DeviceRecord, DeviceRegistration, DeviceUpdate, NewWebhookDelivery,
    PreparedReading, PurgeCounts, ReadingQuery, ReadingRecord, Retention, Store, StoreError,
    StoreHealth, StoreOptions, ThresholdsRecord, TokenRecord, UserRecord, WebhookDeliveryRecord,
    Written,
};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use deadpool_postgres::{Object, Pool, PoolError};
use parking_lot::Mutex;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};
use vitalwatch_core::telemetry::Timestamp;
use writer::{PgOp, Shared, Writer};

mod alert_state;
mod alerts;
mod audit;
mod auth;
mod cluster;
pub mod connect;
pub mod copy;
mod devices;
mod leader;
mod outbox;
mod readings;
mod retention;
mod schema;
mod series;
mod thresholds;
mod writer;

/// A transaction on a pooled connection.
type Tx<'a> = deadpool_postgres::Transaction<'a>;

/// How long `/health` waits for the database to answer.
const HEALTH_TIMEOUT: Duration = Duration::from_secs(2);

/// How long one database probe answers `/health` for. Calls at once, or in quick succession,
/// share it, so a flood of (anonymous) health checks holds one pool connection at most
/// instead of queueing for all of them and timing out as "unavailable".
const HEALTH_PROBE_FRESH: Duration = Duration::from_millis(500);

/// How the store reaches and trusts the database, beyond the URL.
#[derive(Clone, Debug)]
pub struct PostgresSettings {
    /// Connections in the pool (the writer's and the readers').
    pub pool_size: usize,
    /// Open even when `synchronous_commit` is `off` or `local`.
    pub allow_async_commit: bool,
}

impl Default for PostgresSettings {
    fn default() -> PostgresSettings {
        PostgresSettings {
            pool_size: 8,
            allow_async_commit: false,
        }
    }
}

/// A driver failure, described in full, and whether it means "the database is unreachable
/// now" (try again later) rather than "this request is wrong".
#[derive(Debug)]
pub(super) struct Failure {
    message: String,
    transient: bool,
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Failure {}

impl Failure {
    fn from_pg(err: &tokio_postgres::Error) -> Failure {
        let message = match err.as_db_error() {
            Some(db) => format!("{} {}: {}", db.severity(), db.code().code(), db.message()),
            None => {
                // The driver's own text says "error connecting to server" and the like; the
                // cause (an I/O error, say) is in its source chain.
                let mut text = err.to_string();
                let mut source = std::error::Error::source(err);
                while let Some(cause) = source {
                    text.push_str(": ");
                    text.push_str(&cause.to_string());
                    source = cause.source();
                }
                text
            }
        };
        Failure {
            message,
            transient: is_transient_pg(err),
        }
    }

    /// Whether `err` says the database could not be reached (retry later).
    pub(super) fn is_transient(err: &StoreError) -> bool {
        match err {
            StoreError::Backend(inner) => inner
                .downcast_ref::<Failure>()
                .is_some_and(|failure| failure.transient),
            _ => false,
        }
    }
}

/// Connection lost or refused, the server shutting down or starting, a standby that does not
/// take writes yet (a failover), a deadlock or serialisation failure: all worth retrying.
fn is_transient_pg(err: &tokio_postgres::Error) -> bool {
    if err.is_closed() {
        return true;
    }
    if let Some(code) = err.code() {
        let code = code.code();
        return code.starts_with("08")
            || code.starts_with("57P")
            || matches!(code, "40001" | "40P01" | "53300" | "25006");
    }
    let mut source = std::error::Error::source(err);
    while let Some(cause) = source {
        if cause.is::<std::io::Error>() {
            return true;
        }
        source = cause.source();
    }
    false
}

/// Whether `err` says the database could not be reached now (worth trying again soon).
pub fn is_transient(err: &StoreError) -> bool {
    Failure::is_transient(err)
}

/// A driver error as a [`StoreError`].
pub(super) fn pg(err: tokio_postgres::Error) -> StoreError {
    StoreError::Backend(Box::new(Failure::from_pg(&err)))
}

/// A pool error as a [`StoreError`]: waiting for or making a connection failed.
pub(super) fn pool_error(err: PoolError) -> StoreError {
    let failure = match &err {
        PoolError::Backend(err) => Failure::from_pg(err),
        PoolError::Timeout(_) => Failure {
            message: "timed out waiting for a database connection".to_owned(),
            transient: true,
        },
        other => Failure {
            message: format!("database connection pool: {other}"),
            transient: false,
        },
    };
    StoreError::Backend(Box::new(failure))
}

/// The time a row is written, as stored in text columns.
fn now_text() -> String {
    crate::clock::now().to_rfc3339()
}

/// A time for a `timestamptz` column.
pub(super) fn to_utc(ts: Timestamp) -> DateTime<Utc> {
    ts.to_datetime()
}

/// A `timestamptz` as the store's records carry times (RFC 3339, microseconds, `Z`).
pub(super) fn text_time(dt: DateTime<Utc>) -> String {
    Timestamp::from_datetime(dt).to_rfc3339()
}

pub struct PostgresStore {
    pool: Pool,
    front: Front<PgOp>,
    writer: Mutex<Option<tokio::task::JoinHandle<()>>>,
    shared: Arc<Shared>,
    synchronous_commit: String,
    /// What the nodes on this database share (sessions, login failures, revocations,
    /// notifications).
    cluster: Arc<cluster::PgCluster>,
    alert_state: alert_state::PgAlertState,
    /// The webhook notifications the leader delivers (migration V6).
    outbox: outbox::PgOutbox,
    /// A pool of one connection for the leader election, apart from `pool`.
    leader_pool: Pool,
    /// The last `/health` probe of the database: when it answered, and how.
    health_probe: tokio::sync::Mutex<Option<(Instant, Result<(), String>)>>,
}

impl PostgresStore {
    /// Connects to the database `url` names, checks its durability setting, applies
    /// migrations, creates the coming days' partitions and starts the writer task.
    pub async fn open(
        url: &str,
        options: StoreOptions,
        settings: PostgresSettings,
    ) -> Result<PostgresStore, StoreError> {
        let target = connect::parse(url)?;
        let pool = connect::pool(&target, settings.pool_size.max(2))?;
        let in_context = |err: StoreError| match err {
            StoreError::Backend(inner) => StoreError::backend(format!(
                "opening the PostgreSQL store at {}: {inner}",
                target.display
            )),
            other => other,
        };
        let mut client: Object = pool.get().await.map_err(pool_error).map_err(in_context)?;
        let synchronous_commit = schema::check_durability(&client, settings.allow_async_commit)
            .await
            .map_err(in_context)?;
        schema::migrate(&mut client).await.map_err(in_context)?;
        alert_state::sync_ids(&client).await.map_err(in_context)?;
        let today = crate::clock::now().to_datetime().date_naive();
        let partitions_until = schema::ensure_partitions(&mut client, today)
            .await
            .map_err(in_context)?;
        drop(client);
        let shared = Arc::new(Shared::default());
        shared.available.store(true, Ordering::SeqCst);
        let (front, rx) = Front::new(options.queue_capacity);
        let writer = Writer {
            pool: pool.clone(),
            options,
            shared: Arc::clone(&shared),
            partitions_until: Some(partitions_until),
        };
        let handle = tokio::spawn(writer.run(rx));
        tracing::info!(event = "store.opened", message = "PostgreSQL store open.", database = %target.display, synchronous_commit = %synchronous_commit);
        let leader_pool = connect::pool(&target, 1)?;
        let cluster = Arc::new(cluster::PgCluster {
            pool: pool.clone(),
            target: Arc::new(target),
        });
        Ok(PostgresStore {
            alert_state: alert_state::PgAlertState::new(pool.clone(), Arc::clone(&shared)),
            outbox: outbox::PgOutbox {
                pool: pool.clone(),
                shared: Arc::clone(&shared),
            },
            leader_pool,
            pool,
            front,
            writer: Mutex::new(Some(handle)),
            shared,
            synchronous_commit,
            cluster,
            health_probe: tokio::sync::Mutex::new(None),
        })
    }

    /// Whether the database answers a query: the last probe's answer while it is fresh
    /// ([`HEALTH_PROBE_FRESH`]), else a new probe (one at a time; the callers waiting for it
    /// then share its answer).
    async fn probe(&self) -> Result<(), String> {
        let mut last = self.health_probe.lock().await;
        if let Some((at, answer)) = last.as_ref()
            && at.elapsed() < HEALTH_PROBE_FRESH
        {
            return answer.clone();
        }
        let answer = tokio::time::timeout(HEALTH_TIMEOUT, async {
            let client = self.pool.get().await.map_err(pool_error)?;
            client.query_one("SELECT 1", &[]).await.map_err(pg)?;
            Ok::<_, StoreError>(())
        })
        .await
        .unwrap_or_else(|_| Err(StoreError::backend("the database did not answer in time")))
        .map_err(|err| err.to_string());
        *last = Some((Instant::now(), answer.clone()));
        answer
    }

    /// A pooled connection for a read.
    async fn client(&self) -> Result<Object, StoreError> {
        if self.front.is_closed() {
            return Err(StoreError::Closed);
        }
        self.pool.get().await.map_err(pool_error)
    }
}

#[async_trait]
impl Store for PostgresStore {
    fn cluster(&self) -> Option<Arc<dyn crate::store::cluster::Cluster>> {
        Some(Arc::clone(&self.cluster) as Arc<dyn crate::store::cluster::Cluster>)
    }

    fn shared_alerts(&self) -> Option<&dyn crate::store::alert_state::SharedAlertState> {
        Some(&self.alert_state)
    }

    fn leader_lock(&self) -> Option<Box<dyn crate::store::alert_state::LeaderLock>> {
        Some(Box::new(leader::PgLeaderLock::new(
            self.leader_pool.clone(),
        )))
    }

    fn webhook_outbox(&self) -> Option<&dyn crate::store::outbox::WebhookOutbox> {
        Some(&self.outbox)
    }

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
        // While the database is away nothing would be acknowledged: say so at once.
        if !items.is_empty() && !self.shared.available.load(Ordering::SeqCst) {
            return Err(StoreError::Busy);
        }
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
        auth::find_token(&self.client().await?, &id).await
    }

    async fn list_tokens(&self) -> Result<Vec<TokenRecord>, StoreError> {
        auth::list_tokens(&self.client().await?).await
    }

    async fn find_user(&self, username: String) -> Result<Option<UserRecord>, StoreError> {
        auth::find_user(&self.client().await?, &username).await
    }

    async fn list_users(&self) -> Result<Vec<UserRecord>, StoreError> {
        auth::list_users(&self.client().await?).await
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
        devices::list(&self.client().await?).await
    }

    async fn get_device(&self, device_id: String) -> Result<Option<DeviceRecord>, StoreError> {
        devices::load(&self.client().await?, &device_id).await
    }

    async fn readings(&self, query: ReadingQuery) -> Result<Vec<ReadingRecord>, StoreError> {
        readings::query(&self.client().await?, query).await
    }

    async fn normal_readings(
        &self,
        since: Option<Timestamp>,
        limit: usize,
    ) -> Result<Vec<ReadingRecord>, StoreError> {
        readings::normal(&self.client().await?, since, limit).await
    }

    async fn anomalies(&self, query: AnomalyQuery) -> Result<Vec<AnomalyRecord>, StoreError> {
        readings::anomalies(&self.client().await?, query).await
    }

    async fn audit_log(&self, after_id: i64, limit: usize) -> Result<Vec<AuditRecord>, StoreError> {
        audit::log(&self.client().await?, after_id, limit).await
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
        alerts::labelled_readings(&self.client().await?, limit).await
    }

    async fn audit_head(&self) -> Result<Option<(i64, String)>, StoreError> {
        audit::head(&self.client().await?).await
    }

    async fn last_audit(&self, action: String) -> Result<Option<AuditRecord>, StoreError> {
        audit::last(&self.client().await?, &action).await
    }

    async fn health(&self) -> StoreHealth {
        let writer_alive = self
            .writer
            .lock()
            .as_ref()
            .is_some_and(|handle| !handle.is_finished());
        let probe = self.probe().await;
        let available = self.shared.available.load(Ordering::SeqCst);
        match (writer_alive, probe) {
            (true, Ok(())) if available => StoreHealth {
                status: "ok",
                backend: "postgres",
                // PostgreSQL always writes ahead; what makes a commit durable is this setting.
                journal_mode: "wal".to_owned(),
                synchronous: self.synchronous_commit.clone(),
                error: None,
            },
            (alive, probe) => StoreHealth {
                status: "unavailable",
                backend: "postgres",
                journal_mode: String::new(),
                synchronous: String::new(),
                error: Some(match probe {
                    Err(err) => err,
                    Ok(()) if !alive => "the database writer has stopped".to_owned(),
                    Ok(()) => self
                        .shared
                        .last_error
                        .lock()
                        .clone()
                        .unwrap_or_else(|| "the writer cannot reach the database".to_owned()),
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
        self.front
            .backend(|reply| PgOp::Transitions { transitions, reply })
            .await
    }

    async fn open_alerts(
        &self,
    ) -> Result<(u64, Vec<vitalwatch_core::alerting::Alert>), StoreError> {
        alerts::open_alerts(&self.client().await?).await
    }

    async fn alerts(&self, query: AlertQuery) -> Result<Vec<AlertRecord>, StoreError> {
        alerts::alerts(&self.client().await?, query).await
    }

    async fn alert(
        &self,
        id: u64,
    ) -> Result<Option<(AlertRecord, Vec<AlertEventRecord>)>, StoreError> {
        alerts::alert(&self.client().await?, id).await
    }

    async fn set_thresholds(
        &self,
        record: ThresholdsRecord,
    ) -> Result<ThresholdsRecord, StoreError> {
        self.front
            .backend(|reply| PgOp::SetThresholds { record, reply })
            .await
    }

    async fn clear_thresholds(
        &self,
        device_id: String,
        actor: String,
        reason: Option<String>,
    ) -> Result<bool, StoreError> {
        self.front
            .backend(|reply| PgOp::ClearThresholds {
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
        thresholds::list(&self.client().await?, device_id).await
    }

    async fn record_webhook_delivery(
        &self,
        delivery: NewWebhookDelivery,
    ) -> Result<(), StoreError> {
        self.front
            .backend(|reply| PgOp::Delivery { delivery, reply })
            .await
    }

    async fn webhook_deliveries(
        &self,
        state: Option<String>,
        limit: usize,
    ) -> Result<Vec<WebhookDeliveryRecord>, StoreError> {
        alerts::webhook_deliveries(&self.client().await?, state, limit).await
    }

    async fn dashboard_stats(
        &self,
        window: super::series::Window,
        now: Timestamp,
    ) -> Result<super::series::DashboardStats, StoreError> {
        series::stats(&self.client().await?, &window, now).await
    }

    async fn series(
        &self,
        query: super::series::SeriesQuery,
    ) -> Result<Vec<super::series::DeviceSeries>, StoreError> {
        series::series(&self.client().await?, &query).await
    }

    async fn latest_readings(
        &self,
        window: super::series::Window,
    ) -> Result<Vec<ReadingRecord>, StoreError> {
        series::latest(&self.client().await?, &window).await
    }

    async fn events_after(
        &self,
        reading_id: i64,
        anomaly_id: i64,
        limit: usize,
    ) -> Result<(Vec<ReadingRecord>, Vec<AnomalyRecord>), StoreError> {
        series::events_after(&self.client().await?, reading_id, anomaly_id, limit).await
    }

    async fn max_event_ids(&self) -> Result<(i64, i64), StoreError> {
        series::max_event_ids(&self.client().await?).await
    }

    async fn close(&self) {
        *self.shared.closing.lock() = Some(Instant::now());
        self.front.close();
        let handle = self.writer.lock().take();
        if let Some(handle) = handle {
            let _ = handle.await;
        }
        self.pool.close();
    }
}
