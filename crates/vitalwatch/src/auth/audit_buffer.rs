//! Audit entries of reads and failed authentications, buffered so writing them never delays
//! ingest: a request only appends to memory; a task hands the batch to the store's writer
//! with `try_send` (never waiting for room in its queue) every [`FLUSH_EVERY`]. When the
//! buffer is full, patient-data reads are refused (503) rather than served unaudited.

use crate::store::{AuditEntry, Store, StoreError};
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

pub const FLUSH_EVERY: Duration = Duration::from_millis(100);

/// The buffer is full: the entry was not taken.
#[derive(Debug)]
pub struct Full;

pub struct AuditBuffer {
    store: Arc<dyn Store>,
    pending: Mutex<Vec<AuditEntry>>,
    capacity: usize,
    /// Entries refused because the buffer was full.
    pub refused: AtomicU64,
    pub written: AtomicU64,
}

impl AuditBuffer {
    pub fn new(store: Arc<dyn Store>, capacity: usize) -> AuditBuffer {
        AuditBuffer {
            store,
            pending: Mutex::new(Vec::new()),
            capacity: capacity.max(1),
            refused: AtomicU64::new(0),
            written: AtomicU64::new(0),
        }
    }

    fn pending(&self) -> std::sync::MutexGuard<'_, Vec<AuditEntry>> {
        self.pending
            .lock()
            .expect("the audit buffer mutex is never poisoned: no code panics holding it")
    }

    /// Queues an entry; [`Full`] when `capacity` entries are waiting.
    pub fn record(&self, entry: AuditEntry) -> Result<(), Full> {
        let mut pending = self.pending();
        if pending.len() >= self.capacity {
            drop(pending);
            self.refused.fetch_add(1, Ordering::Relaxed);
            return Err(Full);
        }
        pending.push(entry);
        Ok(())
    }

    pub fn waiting(&self) -> usize {
        self.pending().len()
    }

    /// Hands what is waiting to the store without waiting for room; keeps it (in order) when
    /// the writer's queue is full.
    pub fn flush(&self) {
        let batch = std::mem::take(&mut *self.pending());
        if batch.is_empty() {
            return;
        }
        let count = batch.len() as u64;
        match self.store.try_audit_batch(batch) {
            Ok(()) => {
                self.written.fetch_add(count, Ordering::Relaxed);
            }
            Err((err, mut batch)) => {
                if !matches!(err, StoreError::Busy) {
                    tracing::warn!(message = "Access audit entries not written yet.", error = %err);
                }
                let mut pending = self.pending();
                batch.append(&mut pending);
                *pending = batch;
            }
        }
    }

    /// Flushes every [`FLUSH_EVERY`] until `shutdown`; then writes what is left, waiting for
    /// the store this time (the API no longer takes requests).
    pub async fn run(self: Arc<Self>, shutdown: CancellationToken) {
        loop {
            tokio::select! {
                () = shutdown.cancelled() => break,
                () = tokio::time::sleep(FLUSH_EVERY) => self.flush(),
            }
        }
        self.drain().await;
    }

    /// Writes everything waiting, waiting for room in the store's queue.
    pub async fn drain(&self) {
        let batch = std::mem::take(&mut *self.pending());
        let count = batch.len() as u64;
        for entry in batch {
            if let Err(err) = self.store.audit(entry).await {
                tracing::error!(message = "Access audit entry lost at shutdown.", error = %err);
                return;
            }
        }
        self.written.fetch_add(count, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::sqlite::SqliteStore;

    fn entry(n: u32) -> AuditEntry {
        AuditEntry {
            actor: "token:t".to_owned(),
            action: "phi.read".to_owned(),
            target: format!("/api/devices/D{n}"),
            details: serde_json::json!({}),
        }
    }

    #[tokio::test]
    async fn a_full_buffer_refuses_and_a_closed_store_keeps_entries_without_waiting() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(
            SqliteStore::open(
                &dir.path().join("a.db"),
                crate::serve::store_options(&crate::config::Config::default()),
            )
            .unwrap(),
        );
        let buffer = AuditBuffer::new(store.clone(), 3);
        for n in 0..3 {
            buffer.record(entry(n)).unwrap();
        }
        assert!(buffer.record(entry(3)).is_err());
        assert_eq!(buffer.refused.load(Ordering::Relaxed), 1);
        buffer.flush();
        assert_eq!(buffer.waiting(), 0);
        // Written in order, chained like every other entry.
        buffer.record(entry(4)).unwrap();
        store.close().await;
        // The writer is gone: flushing returns at once and keeps the entry for later.
        buffer.flush();
        assert_eq!(buffer.waiting(), 1);
        let store = SqliteStore::open(
            &dir.path().join("a.db"),
            crate::serve::store_options(&crate::config::Config::default()),
        )
        .unwrap();
        let rows = store.audit_log(0, 10).await.unwrap();
        let targets: Vec<&str> = rows.iter().map(|r| r.target.as_str()).collect();
        assert_eq!(
            targets,
            ["/api/devices/D0", "/api/devices/D1", "/api/devices/D2"]
        );
        store.close().await;
    }
}
