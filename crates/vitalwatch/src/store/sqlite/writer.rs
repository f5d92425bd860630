//! The writer thread: the only read-write connection, serving the shared front-end's queue
//! ([`front`](crate::store::front): batching, group commit, metrics) on a current-thread
//! runtime of its own, so the SQLite calls never block the async workers.
//!
//! A batch of readings is one `BEGIN IMMEDIATE … COMMIT`; every other write runs in a
//! transaction of its own, in queue order.

use super::checkpoint::Checkpointer;
use super::{alerts, audit, auth, devices, readings, retention, verdicts};
pub(super) use crate::store::front::Reply;
use crate::store::front::{self, Op};
use crate::store::{AuditEntry, ItemOutcome, PreparedReading, StoreError, StoreOptions};
use rusqlite::Connection;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use tokio::sync::mpsc;

/// The writes only SQLite has.
pub(super) enum SqliteOp {
    /// Boxed: thresholds records are large.
    Alerting { command: Box<alerts::AlertCommand> },
    /// A write that changes nothing but still reaches the disk (the header's user_version,
    /// set to itself): the health check's proof that a commit can succeed.
    Probe { reply: Reply<()> },
}

/// One command for the writer thread.
pub(super) type Command = front::Command<SqliteOp>;

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
    /// Copies the WAL back off this thread; stopped before the last checkpoint at close.
    pub(super) checkpointer: Option<Checkpointer>,
    pub(super) options: StoreOptions,
    pub(super) state: Arc<WriteState>,
}

impl Writer {
    /// Serves commands until every sender is gone, then checkpoints the WAL.
    pub(super) fn run(mut self, commands: mpsc::Receiver<Command>) {
        let max_batch = self.options.max_batch;
        match tokio::runtime::Builder::new_current_thread().build() {
            Ok(runtime) => runtime.block_on(front::serve(&mut self, commands, max_batch)),
            Err(err) => {
                tracing::error!(event = "store.writer_failed", message = "The database writer could not start.", error = %err);
                return;
            }
        }
        if let Some(checkpointer) = self.checkpointer.take() {
            checkpointer.stop(&mut self.conn);
        }
        if let Err(err) = self.conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE);") {
            tracing::warn!(event = "store.checkpoint_failed", message = "WAL checkpoint at close failed.", error = %err);
        }
    }

    /// One `BEGIN IMMEDIATE … COMMIT` of `items` and the audit entries riding along.
    fn commit_readings(
        &mut self,
        items: &[&PreparedReading],
        entries: &[AuditEntry],
    ) -> Result<Vec<ItemOutcome>, StoreError> {
        let res = (|| {
            let tx = self
                .conn
                .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            let mut outcomes = Vec::with_capacity(items.len());
            let mut devices = readings::BatchDevices::default();
            let mut statements = readings::ReadingStatements::new(&tx)?;
            for item in items {
                outcomes.push(readings::write_one(
                    &tx,
                    &mut statements,
                    item,
                    &self.options,
                    &mut devices,
                )?);
            }
            drop(statements);
            devices.finish(&tx)?;
            for entry in entries {
                if let Err(err) = audit::append(&tx, entry) {
                    tracing::error!(event = "audit.not_written", message = "Audit entry could not be written.", error = %err);
                }
            }
            tx.commit()?;
            Ok(outcomes)
        })();
        self.state.record(&res);
        res
    }

    fn run_op(&mut self, op: Op<SqliteOp>) {
        match op {
            Op::Verdict {
                alert_id,
                true_alarm,
                by,
                reply,
            } => {
                let res =
                    self.in_transaction(|tx| verdicts::set_verdict(tx, alert_id, true_alarm, &by));
                let _ = reply.send(res);
            }
            Op::Backend(SqliteOp::Probe { reply }) => {
                let res = self.in_transaction(|tx| {
                    let version: i64 = tx.query_row("PRAGMA user_version", [], |row| row.get(0))?;
                    tx.execute_batch(&format!("PRAGMA user_version = {version}"))?;
                    Ok(())
                });
                let _ = reply.send(res);
            }
            Op::Audit { entries } => {
                let res = self.in_transaction(|tx| {
                    entries
                        .iter()
                        .try_for_each(|entry| audit::append(tx, entry))
                });
                if let Err(err) = res {
                    tracing::error!(event = "audit.not_written", message = "Audit entry could not be written.", error = %err);
                }
            }
            Op::Register {
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
            Op::Update {
                device_id,
                update,
                actor,
                reply,
            } => {
                let res =
                    self.in_transaction(|tx| devices::update(tx, &device_id, &update, &actor));
                let _ = reply.send(res);
            }
            Op::Purge {
                now,
                retention,
                reply,
            } => {
                let res = self.in_transaction(|tx| retention::purge(tx, now, retention));
                let _ = reply.send(res);
            }
            Op::Backend(SqliteOp::Alerting { command }) => alerts::handle(&mut self.conn, *command),
            Op::Auth {
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

/// The SQLite calls run to their end between two polls: the thread is the writer's own.
impl front::Backend for Writer {
    type Op = SqliteOp;

    async fn commit(
        &mut self,
        items: &[&PreparedReading],
        audit: &[AuditEntry],
    ) -> Result<Vec<ItemOutcome>, StoreError> {
        self.commit_readings(items, audit)
    }

    async fn run(&mut self, op: Op<SqliteOp>) {
        self.run_op(op)
    }
}
