//! The facts a CONNECT verdict needs from files, looked up off the ntex workers: whether a
//! certificate serial is revoked (`devices/index.json`) and whether a password is a device's
//! secret (Argon2id hashes in `devices/secrets.json`).
//!
//! One [`Identities`] is shared by every worker and listener. Each file is parsed again only
//! when its modification time changes, so a revocation or a new secret takes effect at the next
//! CONNECT without a restart. The modification-time check, the parse and the Argon2id
//! verification all run on tokio's blocking pool while the CONNECT awaits them, so a slow disk
//! or a burst of password checks never stalls the other connections of a worker; at most
//! [`MAX_CONCURRENT_SECRET_CHECKS`] verifications run at once (each takes tens of milliseconds
//! and ~19 MiB), so a flood of CONNECTs queues instead of exhausting memory.

use crate::pki::{self, CertsDir};
use parking_lot::Mutex;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::SystemTime;

/// Argon2id verifications that may run at the same time.
pub const MAX_CONCURRENT_SECRET_CHECKS: usize = 4;

pub struct Identities {
    certs: CertsDir,
    revoked: FileCache<Vec<String>>,
    secrets: FileCache<BTreeMap<String, String>>,
    secret_checks: tokio::sync::Semaphore,
}

impl Identities {
    pub fn new(certs: CertsDir) -> Arc<Identities> {
        Arc::new(Identities {
            certs,
            revoked: FileCache::default(),
            secrets: FileCache::default(),
            secret_checks: tokio::sync::Semaphore::new(MAX_CONCURRENT_SECRET_CHECKS),
        })
    }

    /// Whether `serial` is revoked; `None` when the check could not run.
    pub async fn is_revoked(self: &Arc<Self>, serial: &str) -> Option<bool> {
        let identities = Arc::clone(self);
        let serial = serial.to_owned();
        tokio::task::spawn_blocking(move || {
            let revoked = identities.revoked.current(
                &identities.certs.index(),
                || pki::revoked_serials(&identities.certs),
                "Revocation list unreadable; keeping the last one.",
            );
            revoked.contains(&serial)
        })
        .await
        .ok()
    }

    /// Whether `password` is the secret issued to `device_id`; `None` when the check could
    /// not run.
    pub async fn verify_secret(self: &Arc<Self>, device_id: &str, password: &[u8]) -> Option<bool> {
        let _permit = self.secret_checks.acquire().await.ok()?;
        let identities = Arc::clone(self);
        let device_id = device_id.to_owned();
        let password = password.to_vec();
        tokio::task::spawn_blocking(move || {
            let secrets = identities.secrets.current(
                &identities.certs.devices().join("secrets.json"),
                || pki::load_secrets(&identities.certs),
                "Device secrets unreadable; keeping the last ones.",
            );
            pki::verify_secret(&secrets, &device_id, &password)
        })
        .await
        .ok()
    }
}

/// A file's parsed contents, re-read when its modification time changes. Before the first
/// successful read it is empty (a missing file means nothing is revoked, no secret issued).
struct FileCache<T> {
    state: Mutex<(Option<SystemTime>, Arc<T>)>,
}

impl<T: Default> Default for FileCache<T> {
    fn default() -> Self {
        FileCache {
            state: Mutex::new((None, Arc::default())),
        }
    }
}

impl<T> FileCache<T> {
    /// The contents, re-read first if `path` changed; blocking (file system).
    fn current(
        &self,
        path: &Path,
        load: impl FnOnce() -> anyhow::Result<T>,
        unreadable: &'static str,
    ) -> Arc<T> {
        let modified = std::fs::metadata(path).and_then(|m| m.modified()).ok();
        // The state is replaced whole under the lock, so readers see the old or the new file.
        let mut state = self.state.lock();
        if modified.is_some() && modified != state.0 {
            match load() {
                Ok(value) => *state = (modified, Arc::new(value)),
                Err(err) => {
                    tracing::warn!(event = "mqtt.identity_unreadable", message = unreadable, error = %err)
                }
            }
        }
        Arc::clone(&state.1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_cache_rereads_only_a_changed_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("list");
        let cache: FileCache<String> = FileCache::default();
        let reads = std::cell::Cell::new(0);
        let read = || {
            reads.set(reads.get() + 1);
            Ok(std::fs::read_to_string(&path)?)
        };
        // Missing: empty, and nothing is read.
        assert_eq!(*cache.current(&path, read, "unreadable"), "");
        assert_eq!(reads.get(), 0);
        std::fs::write(&path, "one").unwrap();
        assert_eq!(*cache.current(&path, read, "unreadable"), "one");
        assert_eq!(*cache.current(&path, read, "unreadable"), "one");
        assert_eq!(reads.get(), 1, "an unchanged file is not read again");
        // A later modification time is a change.
        let file = std::fs::File::options().write(true).open(&path).unwrap();
        std::io::Write::write_all(&mut &file, b"two").unwrap();
        file.set_modified(SystemTime::now() + std::time::Duration::from_secs(60))
            .unwrap();
        assert_eq!(*cache.current(&path, read, "unreadable"), "two");
        assert_eq!(reads.get(), 2);
        // An unreadable new version keeps the last good one.
        file.set_modified(SystemTime::now() + std::time::Duration::from_secs(120))
            .unwrap();
        let failing = || anyhow::bail!("corrupt");
        assert_eq!(*cache.current(&path, failing, "unreadable"), "two");
    }
}
