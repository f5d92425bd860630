//! Audit entries of reads and failed authentications, buffered so writing them never delays
//! ingest: a request only appends to memory; a task hands the batch to the store's writer
//! with `try_send` (never waiting for room in its queue) every [`FLUSH_EVERY`]. When the
//! buffer is full, patient-data reads are refused (503) rather than served unaudited.

use crate::store::{AuditEntry, Store, StoreError};
use parking_lot::Mutex;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

pub const FLUSH_EVERY: Duration = Duration::from_millis(100);

/// Entries one client address may add per [`SOURCE_WINDOW`] through
/// [`AuditBuffer::record_from`]; beyond that they are counted and written as one
/// `audit.suppressed` summary per address and window, so a flood of failed requests can
/// neither fill the buffer (and lock readers out) nor the disk.
pub const PER_SOURCE: u32 = 20;
pub const SOURCE_WINDOW: Duration = Duration::from_secs(60);

/// When the current window started, and per address: (entries recorded, suppressed).
type SourceWindow = (std::time::Instant, HashMap<IpAddr, (u32, u64)>);

/// The buffer is full: the entry was not taken.
#[derive(Debug)]
pub struct Full;

pub struct AuditBuffer {
    store: Arc<dyn Store>,
    pending: Mutex<Vec<AuditEntry>>,
    capacity: usize,
    /// Per address: entries recorded and suppressed in the current window.
    sources: Mutex<SourceWindow>,
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
            sources: Mutex::new((std::time::Instant::now(), HashMap::new())),
            refused: AtomicU64::new(0),
            written: AtomicU64::new(0),
        }
    }

    fn pending(&self) -> parking_lot::MutexGuard<'_, Vec<AuditEntry>> {
        self.pending.lock()
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

    /// Like [`AuditBuffer::record`] for entries a client can cause without credentials
    /// (failed authentication): at most [`PER_SOURCE`] per address and window are recorded,
    /// the rest summarised.
    pub fn record_from(&self, source: IpAddr, entry: AuditEntry) {
        {
            let mut sources = self.sources.lock();
            let counts = sources.1.entry(source).or_insert((0, 0));
            if counts.0 >= PER_SOURCE {
                counts.1 += 1;
                return;
            }
            counts.0 += 1;
        }
        let _ = self.record(entry);
    }

    /// Ends the per-address window when it is over: one summary entry per address that had
    /// entries suppressed.
    fn roll_sources(&self, now: bool) {
        let suppressed: Vec<(IpAddr, u64)> = {
            let mut sources = self.sources.lock();
            if !now && sources.0.elapsed() < SOURCE_WINDOW {
                return;
            }
            sources.0 = std::time::Instant::now();
            std::mem::take(&mut sources.1)
                .into_iter()
                .filter(|(_, (_, suppressed))| *suppressed > 0)
                .map(|(addr, (_, suppressed))| (addr, suppressed))
                .collect()
        };
        for (addr, count) in suppressed {
            let _ = self.record(AuditEntry {
                actor: format!("anonymous:{addr}"),
                action: "audit.suppressed".to_owned(),
                target: "auth.failed".to_owned(),
                details: serde_json::json!({ "count": count, "window_s": SOURCE_WINDOW.as_secs() }),
            });
        }
    }

    pub fn waiting(&self) -> usize {
        self.pending().len()
    }

    /// Hands what is waiting to the store without waiting for room; keeps it (in order) when
    /// the writer's queue is full.
    pub fn flush(&self) {
        self.roll_sources(false);
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
                    tracing::warn!(event = "audit.buffer_behind", message = "Access audit entries not written yet.", error = %err);
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
        self.roll_sources(true);
        let batch = std::mem::take(&mut *self.pending());
        let count = batch.len() as u64;
        for entry in batch {
            if let Err(err) = self.store.audit(entry).await {
                tracing::error!(event = "audit.buffer_lost", message = "Access audit entry lost at shutdown.", error = %err);
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
    async fn a_flooding_address_is_summarised_not_recorded_entry_by_entry() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(
            SqliteStore::open(
                &dir.path().join("a.db"),
                crate::config::Config::default().store_options(),
            )
            .unwrap(),
        );
        let buffer = AuditBuffer::new(store.clone(), 1000);
        let flooder: IpAddr = [10, 0, 0, 9].into();
        let other: IpAddr = [10, 0, 0, 10].into();
        for n in 0..500 {
            buffer.record_from(flooder, entry(n));
        }
        buffer.record_from(other, entry(1000));
        assert_eq!(buffer.waiting(), PER_SOURCE as usize + 1);
        buffer.drain().await;
        store.close().await;
        let store = SqliteStore::open(
            &dir.path().join("a.db"),
            crate::config::Config::default().store_options(),
        )
        .unwrap();
        let rows = store.audit_log(0, 100).await.unwrap();
        let summary = rows
            .iter()
            .find(|r| r.action == "audit.suppressed")
            .unwrap();
        assert_eq!(summary.actor, "anonymous:10.0.0.9");
        assert!(
            summary.details.contains("\"count\":480"),
            "{}",
            summary.details
        );
        assert!(rows.iter().any(|r| r.target == "/api/devices/D1000"));
        store.close().await;
    }

    #[tokio::test]
    async fn a_full_buffer_refuses_and_a_closed_store_keeps_entries_without_waiting() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(
            SqliteStore::open(
                &dir.path().join("a.db"),
                crate::config::Config::default().store_options(),
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
            crate::config::Config::default().store_options(),
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
