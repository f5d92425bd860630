//! The writer task: PostgreSQL's side of the shared front-end ([`front`](crate::store::front):
//! one bounded queue, batching, group commit, metrics), and riding out a database that goes
//! away.
//!
//! A batch of readings is one transaction of set-based statements (`readings.rs`); every
//! other write runs in a transaction of its own, in queue order.
//!
//! When the database cannot be reached (a restart, a failover, a cut network), the writer
//! keeps the batch and tries again with a growing pause, answering nobody: callers wait, the
//! queue fills, and ingest stops acknowledging ([`Shared::available`] makes `try_write`
//! refuse at once). It resumes by itself when the database is back. A commit whose outcome
//! was lost with the connection is retried too: the readings' unique key makes the retry
//! find them stored (duplicates), so nothing is stored twice.

use super::{Failure, alerts, audit, auth, devices, pg, readings, retention, schema};
use super::{pool_error, thresholds};
use crate::store::front::{self, Op, Reply};
use crate::store::{
    AuditEntry, ItemOutcome, NewWebhookDelivery, PreparedReading, StoreError, StoreOptions,
    ThresholdsRecord,
};
use chrono::NaiveDate;
use deadpool_postgres::Pool;
use parking_lot::Mutex;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use vitalwatch_core::alerting::AlertTransition;

/// The longest pause between two attempts while the database is unreachable.
const MAX_BACKOFF: Duration = Duration::from_secs(2);
/// How long a closing store keeps trying to reach the database for what is queued.
const CLOSE_GRACE: Duration = Duration::from_secs(10);

/// The writes only PostgreSQL's writer has (SQLite's go through its alerting command).
pub(super) enum PgOp {
    Transitions {
        transitions: Vec<AlertTransition>,
        reply: Reply<()>,
    },
    SetThresholds {
        record: ThresholdsRecord,
        reply: Reply<ThresholdsRecord>,
    },
    ClearThresholds {
        device_id: String,
        actor: String,
        reason: Option<String>,
        reply: Reply<bool>,
    },
    Delivery {
        delivery: NewWebhookDelivery,
        reply: Reply<()>,
    },
}

/// One command for the writer task.
pub(super) type Command = front::Command<PgOp>;

/// What the store and its writer both see.
#[derive(Default)]
pub(super) struct Shared {
    /// False while the writer cannot reach the database.
    pub(super) available: AtomicBool,
    /// Set when the store closes: the writer stops retrying after [`CLOSE_GRACE`].
    pub(super) closing: Mutex<Option<Instant>>,
    /// Why the database is unavailable (for `/health`; no secrets: errors never hold any).
    pub(super) last_error: Mutex<Option<String>>,
    /// Set once webhook targets are configured: transitions then write their outbox rows.
    pub(super) outbox: AtomicBool,
}

/// The writer task's state.
pub(super) struct Writer {
    pub(super) pool: Pool,
    pub(super) options: StoreOptions,
    pub(super) shared: Arc<Shared>,
    /// The last day with a readings partition.
    pub(super) partitions_until: Option<NaiveDate>,
}

/// Runs `$attempt` (an expression producing a future) until it succeeds, fails for a reason
/// other than the database being unreachable, or the store gives up while closing.
macro_rules! retrying {
    ($writer:expr, $attempt:expr) => {{
        let mut tries = 0u32;
        loop {
            match $attempt.await {
                Err(err) if $writer.pause_before_retry(&err, &mut tries).await => continue,
                res => {
                    if res.is_ok() {
                        $writer.reachable();
                    }
                    break res;
                }
            }
        }
    }};
}

/// A future that runs `$body` (which may use the open transaction `$tx`) in a transaction of
/// its own and commits it.
macro_rules! in_tx {
    ($writer:expr, |$tx:ident| $body:expr) => {
        async {
            let mut client = $writer.pool.get().await.map_err(pool_error)?;
            let $tx = client.transaction().await.map_err(pg)?;
            let value = $body.await?;
            $tx.commit().await.map_err(pg)?;
            Ok::<_, StoreError>(value)
        }
    };
}

impl Writer {
    /// Serves commands until every sender is gone.
    pub(super) async fn run(mut self, commands: mpsc::Receiver<Command>) {
        let max_batch = self.options.max_batch;
        front::serve(&mut self, commands, max_batch).await;
    }

    /// Creates tomorrow's partitions in time (checked before each batch, done once a day).
    async fn keep_partitions_ahead(&mut self) {
        let today = crate::clock::now().to_datetime().date_naive();
        let wanted = today
            .checked_add_days(chrono::Days::new(schema::DAYS_AHEAD - 1))
            .unwrap_or(today);
        if self.partitions_until.is_some_and(|until| until >= wanted) {
            return;
        }
        let res = async {
            let mut client = self.pool.get().await.map_err(pool_error)?;
            schema::ensure_partitions(&mut client, today).await
        }
        .await;
        match res {
            Ok(until) => self.partitions_until = Some(until),
            Err(err) => {
                tracing::warn!(event = "store.partitions_failed", message = "Creating readings partitions failed; will retry.", error = %err)
            }
        }
    }

    /// Whether to try `err`'s operation again (after a pause): only when the database could
    /// not be reached, and not forever once the store is closing.
    async fn pause_before_retry(&self, err: &StoreError, tries: &mut u32) -> bool {
        if !Failure::is_transient(err) {
            return false;
        }
        if let Some(since) = *self.shared.closing.lock()
            && since.elapsed() > CLOSE_GRACE
        {
            return false;
        }
        if self.shared.available.swap(false, Ordering::SeqCst) {
            tracing::error!(
                event = "store.unavailable",
                message = "The database is unavailable; ingest waits (nothing is acknowledged) until it is back.",
                error = %err
            );
        }
        *self.shared.last_error.lock() = Some(err.to_string());
        let pause =
            Duration::from_millis(50u64.saturating_mul(1 << (*tries).min(6))).min(MAX_BACKOFF);
        *tries += 1;
        tokio::time::sleep(pause).await;
        true
    }

    fn reachable(&self) {
        if !self.shared.available.swap(true, Ordering::SeqCst) {
            tracing::info!(
                event = "store.available",
                message = "The database is reachable again; ingest resumes."
            );
        }
        *self.shared.last_error.lock() = None;
    }

    async fn write_chunk(
        &self,
        items: &[&PreparedReading],
        entries: &[AuditEntry],
    ) -> Result<Vec<ItemOutcome>, StoreError> {
        let mut client = self.pool.get().await.map_err(pool_error)?;
        let tx = client.transaction().await.map_err(pg)?;
        if !entries.is_empty() {
            // Before any row lock (see audit.rs).
            audit::lock(&tx).await?;
        }
        let outcomes = readings::write_batch(&tx, items, &self.options).await?;
        for entry in entries {
            audit::append(&tx, entry).await?;
        }
        tx.commit().await.map_err(pg)?;
        Ok(outcomes)
    }

    async fn run_op(&mut self, op: Op<PgOp>) {
        match op {
            Op::Audit { entries } => {
                let res = retrying!(
                    self,
                    in_tx!(self, |tx| async {
                        for entry in &entries {
                            audit::append(&tx, entry).await?;
                        }
                        Ok::<(), StoreError>(())
                    })
                );
                if let Err(err) = res {
                    tracing::error!(event = "audit.not_written", message = "Audit entry could not be written.", error = %err);
                }
            }
            Op::Register {
                registration,
                actor,
                reply,
            } => {
                let interval = self.options.default_expected_interval_s;
                let res = retrying!(
                    self,
                    in_tx!(self, |tx| (devices::register(
                        &tx,
                        &registration,
                        &actor,
                        interval
                    )))
                );
                let _ = reply.send(res);
            }
            Op::Update {
                device_id,
                update,
                actor,
                reply,
            } => {
                let res = retrying!(
                    self,
                    in_tx!(self, |tx| (devices::update(
                        &tx, &device_id, &update, &actor
                    )))
                );
                let _ = reply.send(res);
            }
            Op::Auth {
                write,
                actor,
                reply,
            } => {
                let res = retrying!(self, in_tx!(self, |tx| (auth::apply(&tx, &write, &actor))));
                if let Err(err) = &res
                    && !matches!(err, StoreError::Conflict(_))
                {
                    tracing::error!(event = "store.auth_write_failed", message = "Access-control write failed.", error = %err);
                }
                let _ = reply.send(res);
            }
            Op::Purge {
                now,
                retention,
                reply,
            } => {
                let res = retrying!(
                    self,
                    in_tx!(self, |tx| (retention::purge(&tx, now, retention)))
                );
                let _ = reply.send(res);
            }
            Op::Verdict {
                alert_id,
                true_alarm,
                by,
                reply,
            } => {
                let res = retrying!(
                    self,
                    in_tx!(self, |tx| (alerts::set_verdict(
                        &tx, alert_id, true_alarm, &by
                    )))
                );
                let _ = reply.send(res);
            }
            Op::Backend(PgOp::Transitions { transitions, reply }) => {
                let res = retrying!(
                    self,
                    in_tx!(self, |tx| (alerts::write_transitions(
                        &tx,
                        &transitions,
                        self.shared.outbox.load(Ordering::Relaxed)
                    )))
                );
                log_alerting(&res);
                let _ = reply.send(res);
            }
            Op::Backend(PgOp::SetThresholds { record, reply }) => {
                let res = retrying!(
                    self,
                    in_tx!(self, |tx| (thresholds::set(&tx, record.clone())))
                );
                log_alerting(&res);
                let _ = reply.send(res);
            }
            Op::Backend(PgOp::ClearThresholds {
                device_id,
                actor,
                reason,
                reply,
            }) => {
                let res = retrying!(
                    self,
                    in_tx!(self, |tx| (thresholds::clear(
                        &tx,
                        &device_id,
                        &actor,
                        reason.clone()
                    )))
                );
                log_alerting(&res);
                let _ = reply.send(res);
            }
            Op::Backend(PgOp::Delivery { delivery, reply }) => {
                let res = retrying!(
                    self,
                    in_tx!(self, |tx| (alerts::record_delivery(&tx, &delivery)))
                );
                log_alerting(&res);
                let _ = reply.send(res);
            }
        }
    }
}

impl front::Backend for Writer {
    type Op = PgOp;

    async fn before_batch(&mut self) {
        self.keep_partitions_ahead().await;
    }

    async fn commit(
        &mut self,
        items: &[&PreparedReading],
        audit: &[AuditEntry],
    ) -> Result<Vec<ItemOutcome>, StoreError> {
        retrying!(self, self.write_chunk(items, audit))
    }

    async fn run(&mut self, op: Op<PgOp>) {
        self.run_op(op).await
    }
}

fn log_alerting<T>(res: &Result<T, StoreError>) {
    if let Err(err) = res {
        tracing::error!(event = "store.alert_write_failed", message = "Alerting write failed.", error = %err);
    }
}
