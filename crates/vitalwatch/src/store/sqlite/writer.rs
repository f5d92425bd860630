//! The writer thread: the only read-write connection, fed by one bounded queue of
//! [`Command`]s, with group commit.
//!
//! The writer blocks for the first command, drains what is already queued up to `max_batch`
//! readings, writes them in one `BEGIN IMMEDIATE … COMMIT`, and only then answers every
//! caller in the batch. Every other write runs in a transaction of its own, in queue order.

use super::{alerts, audit, auth, devices, readings, retention, verdicts};
use crate::metrics::prometheus::{self as exposition, COMMIT_BATCH_SIZE, COMMIT_SECONDS};
use crate::store::{
    AuditEntry, AuthWrite, DeviceRecord, DeviceRegistration, DeviceUpdate, ItemOutcome,
    PreparedReading, PurgeCounts, Retention, StoreError, StoreOptions,
};
use rusqlite::Connection;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use tokio::sync::{mpsc, oneshot};
use vitalwatch_core::telemetry::Timestamp;

/// Where the writer sends a command's answer.
pub(super) type Reply<T> = oneshot::Sender<Result<T, StoreError>>;

/// One write for the writer thread.
pub(super) enum Command {
    /// Readings to commit with the next batch.
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
    Audit {
        entries: Vec<AuditEntry>,
    },
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
    Alerting {
        command: alerts::AlertCommand,
    },
    Verdict {
        alert_id: i64,
        true_alarm: bool,
        by: String,
        reply: Reply<()>,
    },
    /// A write that changes nothing but still reaches the disk (the header's user_version,
    /// set to itself): the health check's proof that a commit can succeed.
    Probe {
        reply: Reply<()>,
    },
}

/// Whether the writer's last write failed and when one last succeeded: what the health check
/// reads (a read-only probe succeeds while the disk refuses writes).
#[derive(Debug)]
pub(super) struct WriteState {
    failing: AtomicBool,
    started: std::time::Instant,
    /// Milliseconds after `started` of the last successful commit (0: none yet).
    last_ok_ms: AtomicU64,
}

impl Default for WriteState {
    fn default() -> WriteState {
        WriteState {
            failing: AtomicBool::new(false),
            started: std::time::Instant::now(),
            last_ok_ms: AtomicU64::new(0),
        }
    }
}

impl WriteState {
    fn record<T, E>(&self, res: &Result<T, E>) {
        match res {
            Ok(_) => {
                self.failing.store(false, Ordering::Relaxed);
                let ms = self.started.elapsed().as_millis().max(1) as u64;
                self.last_ok_ms.store(ms, Ordering::Relaxed);
            }
            Err(_) => self.failing.store(true, Ordering::Relaxed),
        }
    }

    /// Whether the health check must prove writes work with a [`Command::Probe`]: the last
    /// write failed, or none succeeded within `fresh`.
    pub(super) fn needs_probe(&self, fresh: std::time::Duration) -> bool {
        let last_ok = self.last_ok_ms.load(Ordering::Relaxed);
        let since = (self.started.elapsed().as_millis() as u64).saturating_sub(last_ok);
        self.failing.load(Ordering::Relaxed) || last_ok == 0 || since > fresh.as_millis() as u64
    }
}

/// The writer thread's state; it owns the only read-write connection.
pub(super) struct Writer {
    pub(super) conn: Connection,
    pub(super) options: StoreOptions,
    pub(super) state: Arc<WriteState>,
}

/// Queued readings of one caller, and where to answer it.
type QueuedWrite = (Vec<PreparedReading>, Reply<Vec<ItemOutcome>>);

impl Writer {
    /// Serves commands until every sender is gone, then checkpoints the WAL.
    pub(super) fn run(mut self, mut commands: mpsc::Receiver<Command>) {
        while let Some(first) = commands.blocking_recv() {
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
                self.commit_writes(writes, &mut others);
            }
            for command in others {
                self.handle_other(command);
            }
        }
        if let Err(err) = self.conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE);") {
            tracing::warn!(event = "store.checkpoint_failed", message = "WAL checkpoint at close failed.", error = %err);
        }
    }

    /// One transaction for every queued write (and the audit entries queued with them).
    fn commit_writes(&mut self, writes: Vec<QueuedWrite>, others: &mut Vec<Command>) {
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
                let started = std::time::Instant::now();
                let tx = self
                    .conn
                    .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
                for (caller, item) in chunk {
                    outcomes[*caller].push(readings::write_one(&tx, item, &self.options)?);
                }
                if chunk_idx == 0 {
                    others.retain(|command| match command {
                        Command::Audit { entries } => {
                            for entry in entries {
                                if let Err(err) = audit::append(&tx, entry) {
                                    tracing::error!(event = "audit.not_written", message = "Audit entry could not be written.", error = %err);
                                }
                            }
                            false
                        }
                        _ => true,
                    });
                }
                tx.commit()?;
                exposition::observe(COMMIT_SECONDS, started.elapsed().as_secs_f64());
                exposition::observe(COMMIT_BATCH_SIZE, chunk.len() as f64);
            }
            Ok(outcomes)
        })();
        self.state.record(&res);
        match res {
            Ok(outcomes) => {
                for ((_, reply), outcome) in writes.into_iter().zip(outcomes) {
                    let _ = reply.send(Ok(outcome));
                }
            }
            Err(err) => {
                tracing::error!(event = "store.commit_failed", message = "Batch commit failed; callers get an error.", error = %err);
                let text = err.to_string();
                for (_, reply) in writes {
                    let _ = reply.send(Err(StoreError::Other(text.clone())));
                }
            }
        }
    }

    fn handle_other(&mut self, command: Command) {
        match command {
            Command::Verdict {
                alert_id,
                true_alarm,
                by,
                reply,
            } => {
                let res =
                    self.in_transaction(|tx| verdicts::set_verdict(tx, alert_id, true_alarm, &by));
                let _ = reply.send(res);
            }
            Command::Write { items, reply } => {
                self.commit_writes(vec![(items, reply)], &mut Vec::new())
            }
            Command::Probe { reply } => {
                let res = self.in_transaction(|tx| {
                    let version: i64 = tx.query_row("PRAGMA user_version", [], |row| row.get(0))?;
                    tx.execute_batch(&format!("PRAGMA user_version = {version}"))?;
                    Ok(())
                });
                let _ = reply.send(res);
            }
            Command::Audit { entries } => {
                let res = self.in_transaction(|tx| {
                    entries
                        .iter()
                        .try_for_each(|entry| audit::append(tx, entry))
                });
                if let Err(err) = res {
                    tracing::error!(event = "audit.not_written", message = "Audit entry could not be written.", error = %err);
                }
            }
            Command::Register {
                registration,
                actor,
                reply,
            } => {
                let default_interval = self.options.default_expected_interval_s;
                let res = self.in_transaction(|tx| {
                    devices::register(tx, &registration, &actor, default_interval)
                });
                let _ = reply.send(res);
            }
            Command::Update {
                device_id,
                update,
                actor,
                reply,
            } => {
                let res =
                    self.in_transaction(|tx| devices::update(tx, &device_id, &update, &actor));
                let _ = reply.send(res);
            }
            Command::Purge {
                now,
                retention,
                reply,
            } => {
                let res = self.in_transaction(|tx| retention::purge(tx, now, retention));
                let _ = reply.send(res);
            }
            Command::Alerting { command } => alerts::handle(&mut self.conn, command),
            Command::Auth {
                write,
                actor,
                reply,
            } => auth::handle(&mut self.conn, write, actor, reply),
        }
    }

    fn in_transaction<T>(
        &mut self,
        work: impl FnOnce(&rusqlite::Transaction<'_>) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let res = (|| {
            let tx = self
                .conn
                .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            let value = work(&tx)?;
            tx.commit()?;
            Ok(value)
        })();
        self.state.record(&res);
        res
    }
}
