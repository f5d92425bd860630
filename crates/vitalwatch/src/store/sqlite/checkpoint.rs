//! The checkpointer: a thread with its own read-write connection that copies the WAL back
//! into the database file, so that no commit waits for a checkpoint.
//!
//! SQLite's auto-checkpoint runs inside the commit that crosses its threshold: at 10 000
//! readings/s that commit took a checkpoint's 1 000 page writes and the database file's fsync
//! with it (about 15 ms), and every reading queued behind it waited as long: the p99 of a
//! paced run (docs/PERFORMANCE-MQTT.md). Here the writer connection's WAL hook looks at the
//! WAL's length after each commit and, past [`CHECKPOINT_PAGES`], wakes this thread. It runs a
//! PASSIVE checkpoint, which takes no write lock and waits for nobody, so the writer goes on
//! committing meanwhile. Once a checkpoint has copied every frame, the writer's next
//! transaction starts the WAL again from its beginning. Should the checkpointer fall behind (a
//! reader holding an old snapshot, a slow disk, a writer that never pauses), the writer
//! checkpoints itself past [`WRITER_CHECKPOINT_PAGES`], as SQLite's auto-checkpoint would, so
//! the WAL stays bounded.

use super::schema;
use crate::store::StoreError;
use rusqlite::Connection;
use rusqlite::hooks::Wal;
use std::ffi::c_int;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, mpsc};

/// WAL pages after which the checkpointer copies the WAL back (SQLite's default
/// auto-checkpoint is 1 000). A reading dirties a leaf of each of its device's indexes, so with
/// many devices a checkpoint every 1 000 pages copied nearly every page the WAL held; at 8 000
/// (a WAL of about 32 MB) each device's leaf is copied once for several commits. 1 000 paced
/// devices at 10 000 readings/s: 7.4 KB written per reading instead of 11.1
/// (docs/PERFORMANCE-MQTT.md).
pub(super) const CHECKPOINT_PAGES: c_int = 8_000;

/// WAL pages past which the writer checkpoints itself, the checkpointer having fallen behind.
pub(super) const WRITER_CHECKPOINT_PAGES: c_int = 4 * CHECKPOINT_PAGES;

// Larger than SQLite's default, and the writer's own far past the checkpointer's.
const _: () = assert!(CHECKPOINT_PAGES > 1_000 && WRITER_CHECKPOINT_PAGES > CHECKPOINT_PAGES);

/// What a commit that left `pages` in the WAL does about it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum After {
    Nothing,
    /// Wake the checkpointer (it may be busy already: the wake-up is not queued twice).
    WakeCheckpointer,
    /// Checkpoint in the writer, now.
    CheckpointHere,
}

pub(super) fn after_commit(pages: c_int) -> After {
    if pages >= WRITER_CHECKPOINT_PAGES {
        After::CheckpointHere
    } else if pages >= CHECKPOINT_PAGES {
        After::WakeCheckpointer
    } else {
        After::Nothing
    }
}

/// The running checkpointer thread; the writer ends it with [`Checkpointer::stop`].
pub(super) struct Checkpointer {
    thread: std::thread::JoinHandle<()>,
    /// Checkpoints that copied the whole WAL back.
    complete: Arc<AtomicU64>,
}

/// Starts the checkpointer of the database at `path` and installs, on `writer`, the WAL hook
/// that wakes it.
pub(super) fn start(path: &Path, writer: &mut Connection) -> Result<Checkpointer, StoreError> {
    let conn = schema::open_checkpointer(path)?;
    let (wake, woken) = mpsc::sync_channel::<()>(1);
    writer.wal_hook(Some(move |wal: &mut Wal, pages: c_int| {
        match after_commit(pages) {
            After::Nothing => {}
            After::WakeCheckpointer => {
                // Full: a wake-up is already pending. Gone: the thread ended (it logged why).
                let _ = wake.try_send(());
            }
            // The commit has happened whatever this returns; an error here would make its
            // statement report one, so a failed (or busy) checkpoint is only logged.
            After::CheckpointHere => {
                if let Err(err) = wal.checkpoint() {
                    tracing::warn!(event = "store.checkpoint_failed", message = "WAL checkpoint failed.", error = %err);
                }
            }
        }
        Ok(())
    }))?;
    let complete = Arc::new(AtomicU64::new(0));
    let counted = Arc::clone(&complete);
    let thread = std::thread::Builder::new()
        .name("vitalwatch-sqlite-checkpoint".to_owned())
        .spawn(move || run(&conn, &woken, &counted))
        .map_err(|err| StoreError::backend(format!("starting the checkpoint thread: {err}")))?;
    Ok(Checkpointer { thread, complete })
}

impl Checkpointer {
    /// How many checkpoints have copied the whole WAL back so far.
    #[cfg(test)]
    pub(super) fn complete(&self) -> u64 {
        self.complete.load(Ordering::Acquire)
    }

    /// Removes the hook from `writer`, and with it the thread's wake-up sender, so the thread
    /// ends after its current checkpoint; waits for that.
    pub(super) fn stop(self, writer: &mut Connection) {
        if let Err(err) = writer.wal_hook(None::<fn(&mut Wal, c_int) -> rusqlite::Result<()>>) {
            tracing::warn!(event = "store.checkpoint_failed", message = "WAL checkpoint at close failed.", error = %err);
        }
        let _ = self.thread.join();
        tracing::debug!(
            event = "store.checkpointer_stopped",
            message = "The checkpointer stopped.",
            complete_checkpoints = self.complete.load(Ordering::Acquire)
        );
    }
}

/// Checkpoints each time it is woken, until the writer is gone.
fn run(conn: &Connection, woken: &mpsc::Receiver<()>, complete: &AtomicU64) {
    while woken.recv().is_ok() {
        let res = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |row| {
            Ok((row.get::<_, i64>(1)?, row.get::<_, i64>(2)?))
        });
        match res {
            Ok((log, copied)) => {
                if copied == log {
                    complete.fetch_add(1, Ordering::AcqRel);
                }
                tracing::debug!(
                    event = "store.checkpointed",
                    message = "WAL checkpointed.",
                    log_pages = log,
                    copied_pages = copied
                );
            }
            Err(err) => {
                tracing::warn!(event = "store.checkpoint_failed", message = "WAL checkpoint failed.", error = %err);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_commit_wakes_the_checkpointer_past_its_pages_and_checkpoints_itself_only_far_past() {
        assert_eq!(after_commit(0), After::Nothing);
        assert_eq!(after_commit(CHECKPOINT_PAGES - 1), After::Nothing);
        assert_eq!(after_commit(CHECKPOINT_PAGES), After::WakeCheckpointer);
        assert_eq!(
            after_commit(WRITER_CHECKPOINT_PAGES - 1),
            After::WakeCheckpointer
        );
        assert_eq!(after_commit(WRITER_CHECKPOINT_PAGES), After::CheckpointHere);
    }
}
