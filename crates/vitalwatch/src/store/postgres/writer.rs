//! The writer task: one bounded queue of [`Command`]s, group commit, and riding out a
//! database that goes away.
//!
//! The writer waits for the first command, drains what is already queued up to `max_batch`
//! readings, writes them in one transaction, and only then answers every caller in the batch.
//! Every other write runs in a transaction of its own, in queue order.
//!
//! When the database cannot be reached (a restart, a failover, a cut network), the writer
//! keeps the batch and tries again with a growing pause, answering nobody: callers wait, the
//! queue fills, and ingest stops acknowledging ([`Shared::available`] makes `try_write`
//! refuse at once). It resumes by itself when the database is back. A commit whose outcome
//! was lost with the connection is retried too: the readings' unique key makes the retry
//! find them stored (duplicates), so nothing is stored twice.

use super::{Failure, alerts, audit, auth, devices, pg, readings, retention, schema};
use super::{pool_error, thresholds};
use crate::metrics::prometheus::{self as exposition, COMMIT_BATCH_SIZE, COMMIT_SECONDS};
use crate::store::{
    AuditEntry, AuthWrite, DeviceRecord, DeviceRegistration, DeviceUpdate, ItemOutcome,
    NewWebhookDelivery, PreparedReading, PurgeCounts, Retention, StoreError, StoreOptions,
    ThresholdsRecord,
};
use chrono::NaiveDate;
use deadpool_postgres::Pool;
use parking_lot::Mutex;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot};
use vitalwatch_core::alerting::AlertTransition;
use vitalwatch_core::telemetry::Timestamp;

/// Where the writer sends a command's answer.
pub(super) type Reply<T> = oneshot::Sender<Result<T, StoreError>>;

/// The longest pause between two attempts while the database is unreachable.
const MAX_BACKOFF: Duration = Duration::from_secs(2);
/// How long a closing store keeps trying to reach the database for what is queued.
const CLOSE_GRACE: Duration = Duration::from_secs(10);

/// One write for the writer task.
pub(super) enum Command {
    Write {
        items: Vec<PreparedReading>,
        reply: Reply<Vec<ItemOutcome>>,
    },
    Register {
        registration: DeviceRegistration,
        actor: String,
        reply: Reply<DeviceRecord>,
    },
    Update {
        device_id: String,
        update: DeviceUpdate,
        actor: String,
        reply: Reply<DeviceRecord>,
    },
    /// Audit entries nobody waits for; they ride along with the next batch of readings.
    Audit { entries: Vec<AuditEntry> },
    Auth {
        write: AuthWrite,
        actor: String,
        reply: Reply<bool>,
    },
    Purge {
        now: Timestamp,
        retention: Retention,
        reply: Reply<PurgeCounts>,
    },
    Verdict {
        alert_id: i64,
        true_alarm: bool,
        by: String,
        reply: Reply<()>,
    },
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

/// What the store and its writer both see.
#[derive(Default)]
pub(super) struct Shared {
    /// False while the writer cannot reach the database.
    pub(super) available: AtomicBool,
    /// Set when the store closes: the writer stops retrying after [`CLOSE_GRACE`].
    pub(super) closing: Mutex<Option<Instant>>,
    /// Why the database is unavailable (for `/health`; no secrets: errors never hold any).
    pub(super) last_error: Mutex<Option<String>>,
}

/// The writer task's state.
pub(super) struct Writer {
    pub(super) pool: Pool,
    pub(super) options: StoreOptions,
    pub(super) shared: Arc<Shared>,
    /// The last day with a readings partition.
    pub(super) partitions_until: Option<NaiveDate>,
}

/// Queued readings of one caller, and where to answer it.
type QueuedWrite = (Vec<PreparedReading>, Reply<Vec<ItemOutcome>>);

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
    pub(super) async fn run(mut self, mut commands: mpsc::Receiver<Command>) {
        while let Some(first) = commands.recv().await {
            ::metrics::gauge!(exposition::STORE_QUEUE_DEPTH).set(commands.len() as f64);
            let mut writes = Vec::new();
            let mut others = Vec::new();
            let mut n_readings = 0usize;
            let mut next = Some(first);
            while let Some(command) = next.take() {
                match command {
                    Command::Write { items, reply } => {
                        n_readings += items.len();
                        writes.push((items, reply));
                    }
                    command @ Command::Audit { .. } => others.push(command),
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
                self.keep_partitions_ahead().await;
                self.commit_writes(writes, &mut others).await;
            }
            for command in others {
                self.handle_other(command).await;
            }
        }
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
            let client = self.pool.get().await.map_err(pool_error)?;
            schema::ensure_partitions(&client, today).await
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

    /// One transaction per `max_batch` readings of the queued writes (the audit entries
    /// queued with them ride in the first); callers are answered after all their chunks.
    async fn commit_writes(&mut self, writes: Vec<QueuedWrite>, others: &mut Vec<Command>) {
        let mut entries = Vec::new();
        others.retain_mut(|command| match command {
            Command::Audit { entries: queued } => {
                entries.append(queued);
                false
            }
            _ => true,
        });
        let queued: Vec<(usize, &PreparedReading)> = writes
            .iter()
            .enumerate()
            .flat_map(|(caller, (items, _))| items.iter().map(move |item| (caller, item)))
            .collect();
        let mut outcomes: Vec<Vec<ItemOutcome>> = writes
            .iter()
            .map(|(items, _)| Vec::with_capacity(items.len()))
            .collect();
        let mut failure = None;
        for (chunk_idx, chunk) in queued.chunks(self.options.max_batch.max(1)).enumerate() {
            let items: Vec<&PreparedReading> = chunk.iter().map(|(_, item)| *item).collect();
            let ride_along: &[AuditEntry] = if chunk_idx == 0 { &entries } else { &[] };
            match retrying!(self, self.write_chunk(&items, ride_along)) {
                Ok(chunk_outcomes) => {
                    for ((caller, _), outcome) in chunk.iter().zip(chunk_outcomes) {
                        outcomes[*caller].push(outcome);
                    }
                }
                Err(err) => {
                    failure = Some(err);
                    break;
                }
            }
        }
        match failure {
            None => {
                for ((_, reply), outcome) in writes.into_iter().zip(outcomes) {
                    let _ = reply.send(Ok(outcome));
                }
            }
            Some(err) => {
                tracing::error!(event = "store.commit_failed", message = "Batch commit failed; callers get an error.", error = %err);
                let text = err.to_string();
                for (_, reply) in writes {
                    let _ = reply.send(Err(StoreError::Other(text.clone())));
                }
            }
        }
    }

    async fn write_chunk(
        &self,
        items: &[&PreparedReading],
        entries: &[AuditEntry],
    ) -> Result<Vec<ItemOutcome>, StoreError> {
        let mut client = self.pool.get().await.map_err(pool_error)?;
        let started = std::time::Instant::now();
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
        exposition::observe(COMMIT_SECONDS, started.elapsed().as_secs_f64());
        exposition::observe(COMMIT_BATCH_SIZE, items.len() as f64);
        Ok(outcomes)
    }

    async fn handle_other(&mut self, command: Command) {
        match command {
            Command::Write { items, reply } => {
                self.commit_writes(vec![(items, reply)], &mut Vec::new())
                    .await
            }
            Command::Audit { entries } => {
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
            Command::Register {
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
            Command::Update {
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
            Command::Auth {
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
            Command::Purge {
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
            Command::Verdict {
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
            Command::Transitions { transitions, reply } => {
                let res = retrying!(
                    self,
                    in_tx!(self, |tx| (alerts::write_transitions(&tx, &transitions)))
                );
                log_alerting(&res);
                let _ = reply.send(res);
            }
            Command::SetThresholds { record, reply } => {
                let res = retrying!(
                    self,
                    in_tx!(self, |tx| (thresholds::set(&tx, record.clone())))
                );
                log_alerting(&res);
                let _ = reply.send(res);
            }
            Command::ClearThresholds {
                device_id,
                actor,
                reason,
                reply,
            } => {
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
            Command::Delivery { delivery, reply } => {
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

fn log_alerting<T>(res: &Result<T, StoreError>) {
    if let Err(err) = res {
        tracing::error!(event = "store.alert_write_failed", message = "Alerting write failed.", error = %err);
    }
}
