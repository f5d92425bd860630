//! The writer front-end every backend shares: the one bounded queue of [`Command`]s to the
//! store's single writer, the group-commit batching loop and its metrics. What differs
//! between SQLite and PostgreSQL — how a transaction of readings commits, how the other
//! writes run — sits behind [`Backend`].
//!
//! The writer waits for the first command, drains what is already queued up to `max_batch`
//! readings (audit entries nobody waits for ride along with the readings), commits them in
//! transactions of at most `max_batch` readings, and only after all of them answers every
//! caller in the batch. The command that ended the draining, and every other write, then runs
//! in a transaction of its own, in queue order. While a batch commits the queue fills, so the
//! next batch is larger: group commit grows with the load.

use crate::metrics::prometheus::{self as exposition, COMMIT_BATCH_SIZE, COMMIT_SECONDS};
use crate::store::{
    AuditEntry, AuthWrite, DeviceRecord, DeviceRegistration, DeviceUpdate, ItemOutcome,
    PreparedReading, PurgeCounts, Retention, StoreError, Written,
};
use parking_lot::Mutex;
use std::future::Future;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot};
use vitalwatch_core::telemetry::Timestamp;

/// Where the writer sends a command's answer.
pub(super) type Reply<T> = oneshot::Sender<Result<T, StoreError>>;

/// Queued readings of one caller, and where to hand them back with their outcomes.
pub(super) type QueuedWrite = (Vec<PreparedReading>, Reply<Vec<Written>>);

/// One command for the writer: readings for the next group commit, or another write.
pub(super) enum Command<B> {
    Write {
        items: Vec<PreparedReading>,
        reply: Reply<Vec<Written>>,
    },
    /// Boxed: the readings' variant, the hot one, stays small.
    Op(Box<Op<B>>),
}

/// A write other than readings, run by the backend in a transaction of its own.
pub(super) enum Op<B> {
    /// Audit entries nobody waits for; they ride along with the next batch of readings.
    Audit { entries: Vec<AuditEntry> },
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
    /// A write only this backend has.
    Backend(B),
}

/// What a backend's writer does; [`serve`] runs the loop around it.
pub(super) trait Backend: Send {
    /// The writes only this backend has.
    type Op: Send;

    /// Called before each batch of readings is committed.
    fn before_batch(&mut self) -> impl Future<Output = ()> + Send {
        async {}
    }

    /// One transaction: `items` (outcomes in their order) and, first, `audit`'s entries.
    fn commit(
        &mut self,
        items: &[&PreparedReading],
        audit: &[AuditEntry],
    ) -> impl Future<Output = Result<Vec<ItemOutcome>, StoreError>> + Send;

    /// Any other write, in a transaction of its own.
    fn run(&mut self, op: Op<Self::Op>) -> impl Future<Output = ()> + Send;
}

/// The store's end of the queue.
pub(super) struct Front<B> {
    commands: Mutex<Option<mpsc::Sender<Command<B>>>>,
}

impl<B: Send> Front<B> {
    /// A queue of `capacity` commands; the receiver goes to [`serve`].
    pub(super) fn new(capacity: usize) -> (Front<B>, mpsc::Receiver<Command<B>>) {
        let (tx, rx) = mpsc::channel(capacity);
        (
            Front {
                commands: Mutex::new(Some(tx)),
            },
            rx,
        )
    }

    /// Whether [`Front::close`] was called.
    pub(super) fn is_closed(&self) -> bool {
        self.commands.lock().is_none()
    }

    /// Stops taking commands; the writer ends once it has served what is queued.
    pub(super) fn close(&self) {
        drop(self.commands.lock().take());
    }

    fn sender(&self) -> Result<mpsc::Sender<Command<B>>, StoreError> {
        self.commands.lock().clone().ok_or(StoreError::Closed)
    }

    /// Queues `make(reply)` (waiting for room) and waits for its answer.
    pub(super) async fn request<T>(
        &self,
        make: impl FnOnce(Reply<T>) -> Command<B>,
    ) -> Result<T, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.sender()?
            .send(make(reply))
            .await
            .map_err(|_| StoreError::Closed)?;
        answer.await.map_err(|_| StoreError::Closed)?
    }

    /// [`Front::request`] of an [`Op`].
    pub(super) async fn op<T>(
        &self,
        make: impl FnOnce(Reply<T>) -> Op<B>,
    ) -> Result<T, StoreError> {
        self.request(|reply| Command::Op(Box::new(make(reply))))
            .await
    }

    /// [`Front::op`] of a backend's own write.
    pub(super) async fn backend<T>(
        &self,
        make: impl FnOnce(Reply<T>) -> B,
    ) -> Result<T, StoreError> {
        self.op(|reply| Op::Backend(make(reply))).await
    }

    pub(super) async fn write_readings(
        &self,
        items: Vec<PreparedReading>,
    ) -> Result<Vec<Written>, StoreError> {
        if items.is_empty() {
            return Ok(Vec::new());
        }
        self.request(|reply| Command::Write { items, reply }).await
    }

    /// Like [`Front::write_readings`], but [`StoreError::Busy`] when the queue has no room
    /// within `wait`.
    pub(super) async fn try_write_readings(
        &self,
        items: Vec<PreparedReading>,
        wait: Duration,
    ) -> Result<Vec<Written>, StoreError> {
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
        permit.send(Command::Write { items, reply });
        answer.await.map_err(|_| StoreError::Closed)?
    }

    /// Queues an audit entry (waiting for room) without waiting for its commit.
    pub(super) async fn audit(&self, entry: AuditEntry) -> Result<(), StoreError> {
        self.sender()?
            .send(Command::Op(Box::new(Op::Audit {
                entries: vec![entry],
            })))
            .await
            .map_err(|_| StoreError::Closed)
    }

    /// Queues audit entries if there is room now; hands them back if not.
    pub(super) fn try_audit_batch(
        &self,
        entries: Vec<AuditEntry>,
    ) -> Result<(), (StoreError, Vec<AuditEntry>)> {
        let sender = match self.sender() {
            Ok(sender) => sender,
            Err(err) => return Err((err, entries)),
        };
        let permit = match sender.try_reserve() {
            Ok(permit) => permit,
            Err(mpsc::error::TrySendError::Full(())) => return Err((StoreError::Busy, entries)),
            Err(mpsc::error::TrySendError::Closed(())) => {
                return Err((StoreError::Closed, entries));
            }
        };
        permit.send(Command::Op(Box::new(Op::Audit { entries })));
        Ok(())
    }
}

/// What one turn of the loop took from the queue.
struct Batch<B> {
    writes: Vec<QueuedWrite>,
    /// Audit entries queued among the writes.
    audit: Vec<AuditEntry>,
    /// Everything else, in queue order.
    others: Vec<Op<B>>,
}

/// Takes `first` and what is already queued behind it: readings (and audit entries) up to
/// `max_batch` readings, stopping after the first other write.
fn gather<B>(
    first: Command<B>,
    commands: &mut mpsc::Receiver<Command<B>>,
    max_batch: usize,
) -> Batch<B> {
    let mut batch = Batch {
        writes: Vec::new(),
        audit: Vec::new(),
        others: Vec::new(),
    };
    let mut n_readings = 0usize;
    let mut next = Some(first);
    while let Some(command) = next.take() {
        match command {
            Command::Write { items, reply } => {
                n_readings += items.len();
                batch.writes.push((items, reply));
            }
            Command::Op(op) => match *op {
                Op::Audit { mut entries } => batch.audit.append(&mut entries),
                other => {
                    batch.others.push(other);
                    break;
                }
            },
        }
        if n_readings >= max_batch {
            break;
        }
        next = commands.try_recv().ok();
    }
    batch
}

/// Serves commands until every sender is gone.
pub(super) async fn serve<W: Backend>(
    writer: &mut W,
    mut commands: mpsc::Receiver<Command<W::Op>>,
    max_batch: usize,
) {
    let max_batch = max_batch.max(1);
    while let Some(first) = commands.recv().await {
        ::metrics::gauge!(exposition::STORE_QUEUE_DEPTH).set(commands.len() as f64);
        let Batch {
            writes,
            audit,
            others,
        } = gather(first, &mut commands, max_batch);
        if !writes.is_empty() {
            writer.before_batch().await;
            commit_writes(writer, writes, &audit, max_batch).await;
        } else if !audit.is_empty() {
            writer.run(Op::Audit { entries: audit }).await;
        }
        for op in others {
            writer.run(op).await;
        }
    }
}

/// One transaction per `max_batch` readings of the queued writes (`audit` rides in the
/// first; 1 gives the naive baseline the benchmark compares against); callers are answered
/// after all their chunks commit, or all get the error.
async fn commit_writes<W: Backend>(
    writer: &mut W,
    writes: Vec<QueuedWrite>,
    audit: &[AuditEntry],
    max_batch: usize,
) {
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
    let mut items = Vec::with_capacity(queued.len().min(max_batch));
    for (chunk_idx, chunk) in queued.chunks(max_batch).enumerate() {
        items.clear();
        items.extend(chunk.iter().map(|(_, item)| *item));
        let ride_along: &[AuditEntry] = if chunk_idx == 0 { audit } else { &[] };
        let started = Instant::now();
        match writer.commit(&items, ride_along).await {
            Ok(chunk_outcomes) => {
                exposition::observe(COMMIT_SECONDS, started.elapsed().as_secs_f64());
                exposition::observe(COMMIT_BATCH_SIZE, chunk.len() as f64);
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
    drop(items);
    drop(queued);
    match failure {
        None => {
            for ((items, reply), outcomes) in writes.into_iter().zip(outcomes) {
                let written = items
                    .into_iter()
                    .zip(outcomes)
                    .map(|(item, outcome)| Written { item, outcome })
                    .collect();
                let _ = reply.send(Ok(written));
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

#[cfg(test)]
mod tests {
    use super::*;

    fn write(n: usize) -> Command<()> {
        let (reply, _) = oneshot::channel();
        let items = (0..n)
            .map(|i| PreparedReading {
                reading: vitalwatch_core::telemetry::Reading::empty(
                    vitalwatch_core::telemetry::DeviceId::parse(&format!("dev-{i}"), 64)
                        .expect("a valid id"),
                    Timestamp::from_micros(i as i64),
                ),
                findings: Vec::new(),
                source: crate::store::Source::Http,
                ml_score: None,
            })
            .collect();
        Command::Write { items, reply }
    }

    fn audit() -> Command<()> {
        Command::Op(Box::new(Op::Audit {
            entries: vec![AuditEntry {
                actor: "a".to_owned(),
                action: "b".to_owned(),
                target: "c".to_owned(),
                details: serde_json::json!({}),
            }],
        }))
    }

    #[test]
    fn gather_takes_readings_and_audit_up_to_the_first_other_write() {
        let (tx, mut rx) = mpsc::channel(16);
        for command in [
            write(2),
            audit(),
            Command::Op(Box::new(Op::Backend(()))),
            write(1),
        ] {
            assert!(tx.try_send(command).is_ok());
        }
        let batch = gather(write(1), &mut rx, 100);
        assert_eq!(batch.writes.len(), 2);
        assert_eq!(batch.audit.len(), 1);
        assert_eq!(batch.others.len(), 1);
        // The write behind the other write waits for the next turn.
        assert_eq!(rx.len(), 1);
    }

    #[test]
    fn gather_stops_at_max_batch_readings() {
        let (tx, mut rx) = mpsc::channel(16);
        for command in [write(3), write(3), write(3)] {
            assert!(tx.try_send(command).is_ok());
        }
        let batch = gather(write(3), &mut rx, 7);
        let readings: usize = batch.writes.iter().map(|(items, _)| items.len()).sum();
        assert_eq!(readings, 9);
        assert_eq!(rx.len(), 1);
    }
}
