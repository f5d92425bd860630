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
//!
//! An unknown device id costs the same Argon2id work as a wrong secret (against a dummy hash),
//! so CONNECT timing does not tell which ids exist; failed secret CONNECTs are counted per
//! address range and per id ([`super::throttle`]). What a CONNECT was let in by (certificate
//! serial, or the secret's hash) is returned as a [`Credential`], so that
//! [`super::revocation`] can end the session when that credential is revoked.

use super::revocation::SharedRevocations;
use super::session::{self, ConnectRefusal, CredentialStep, PeerCertificate, Verdict};
use super::throttle::{FailedConnects, Gate};
use crate::pki::{self, CertsDir};
use parking_lot::Mutex;
use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::Path;
use std::sync::{Arc, OnceLock};
use std::time::{Instant, SystemTime};

/// Argon2id verifications that may run at the same time.
pub const MAX_CONCURRENT_SECRET_CHECKS: usize = 4;

pub struct Identities {
    certs: CertsDir,
    revoked: FileCache<Vec<String>>,
    secrets: FileCache<BTreeMap<String, String>>,
    secret_checks: tokio::sync::Semaphore,
    failed: FailedConnects,
    /// Revocations recorded in the store the nodes share (empty on a single box).
    shared: Arc<SharedRevocations>,
}

/// What a live session was let in by: what, once revoked, ends it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Credential {
    /// A client certificate, by serial (lower-case hex).
    Certificate(String),
    /// A device secret on the plaintext listener: the device and the Argon2id hash (PHC
    /// string) its password matched; the session ends when that hash is no longer its secret.
    Secret { device_id: String, hash: String },
    /// Nothing to revoke (an anonymous lab client, a TLS client without a certificate).
    None,
}

impl Identities {
    pub fn new(certs: CertsDir, shared: Arc<SharedRevocations>) -> Arc<Identities> {
        Arc::new(Identities {
            certs,
            revoked: FileCache::default(),
            secrets: FileCache::default(),
            secret_checks: tokio::sync::Semaphore::new(MAX_CONCURRENT_SECRET_CHECKS),
            failed: FailedConnects::default(),
            shared,
        })
    }

    /// The revocations the nodes share.
    pub fn shared(&self) -> &SharedRevocations {
        &self.shared
    }

    /// Who a TLS client is, from its certificate (checked against the revocation index).
    pub async fn by_certificate(
        self: &Arc<Self>,
        cert: &PeerCertificate,
        max_id_len: usize,
    ) -> (Verdict, Credential) {
        let (revoked, credential) = match cert.serial() {
            Some(serial) => match self.is_revoked(serial).await {
                Some(revoked) => (revoked, Credential::Certificate(serial.to_owned())),
                None => {
                    return (
                        Verdict::Refused(ConnectRefusal::CheckFailed),
                        Credential::None,
                    );
                }
            },
            None => (false, Credential::None),
        };
        (
            session::by_certificate(cert, revoked, max_id_len),
            credential,
        )
    }

    /// Who a plaintext client is, from its username and password; throttled per address
    /// range and per id.
    pub async fn by_secret(
        self: &Arc<Self>,
        address: Option<IpAddr>,
        username: Option<&str>,
        password: Option<&[u8]>,
        allow_anonymous: bool,
        max_id_len: usize,
    ) -> (Verdict, Credential) {
        let device_id =
            match session::by_credentials(username, password, allow_anonymous, max_id_len) {
                CredentialStep::Decided(verdict) => return (verdict, Credential::None),
                CredentialStep::CheckSecret(device_id) => device_id,
            };
        match self
            .failed
            .begin(address, device_id.as_str(), Instant::now())
        {
            Gate::Refuse => {
                return (
                    Verdict::Refused(ConnectRefusal::Throttled),
                    Credential::None,
                );
            }
            Gate::Check { delay } if !delay.is_zero() => ntex_util::time::sleep(delay).await,
            Gate::Check { .. } => {}
        }
        let checked = self
            .verify_secret(device_id.as_str(), password.unwrap_or_default())
            .await;
        let credential = match &checked {
            Some(Some(hash)) => {
                self.failed.succeeded(address, device_id.as_str());
                Credential::Secret {
                    device_id: device_id.as_str().to_owned(),
                    hash: hash.clone(),
                }
            }
            _ => Credential::None,
        };
        let matched = checked.map(|hash| hash.is_some());
        (session::after_secret_check(device_id, matched), credential)
    }

    /// The revoked serials now (blocking: may read the index).
    pub fn revoked_now(&self) -> Arc<Vec<String>> {
        self.revoked.current(
            &self.certs.index(),
            || pki::revoked_serials(&self.certs),
            "Revocation list unreadable; keeping the last one.",
        )
    }

    /// The device secrets' hashes now (blocking: may read the file).
    pub fn secrets_now(&self) -> Arc<BTreeMap<String, String>> {
        self.secrets.current(
            &self.certs.devices().join("secrets.json"),
            || pki::load_secrets(&self.certs),
            "Device secrets unreadable; keeping the last ones.",
        )
    }

    /// Whether `serial` is revoked; `None` when the check could not run.
    pub async fn is_revoked(self: &Arc<Self>, serial: &str) -> Option<bool> {
        let identities = Arc::clone(self);
        let serial = serial.to_owned();
        tokio::task::spawn_blocking(move || {
            identities.revoked_now().contains(&serial)
                || identities.shared.is_serial_revoked(&serial)
        })
        .await
        .ok()
    }

    /// The hash `password` matched when it is the secret issued to `device_id` (`Some(None)`
    /// when not); `None` when the check could not run. An unknown id is checked against a
    /// dummy hash, so that it takes as long as a known one.
    pub async fn verify_secret(
        self: &Arc<Self>,
        device_id: &str,
        password: &[u8],
    ) -> Option<Option<String>> {
        let _permit = self.secret_checks.acquire().await.ok()?;
        let identities = Arc::clone(self);
        let device_id = device_id.to_owned();
        let password = password.to_vec();
        tokio::task::spawn_blocking(move || {
            let secrets = identities.secrets_now();
            match secrets.get(&device_id) {
                Some(hash) => {
                    // A secret revoked on another node (its copy of the file may still list
                    // it) is checked all the same, so its timing says nothing.
                    let matched = pki::verify_secret(&secrets, &device_id, &password);
                    (matched && !identities.shared.is_secret_revoked(hash)).then(|| hash.clone())
                }
                None => {
                    let dummy = BTreeMap::from([(String::new(), dummy_hash().to_owned())]);
                    let _ = pki::verify_secret(&dummy, "", &password);
                    None
                }
            }
        })
        .await
        .ok()
    }
}

/// An Argon2id hash of a random secret nobody knows, with the parameters real secrets have
/// (`pki::issue_secret`), made once.
fn dummy_hash() -> &'static str {
    static DUMMY: OnceLock<String> = OnceLock::new();
    DUMMY.get_or_init(|| {
        use argon2::PasswordHasher;
        let secret: [u8; 24] = rand::random();
        argon2::Argon2::default()
            .hash_password(&secret)
            .map(|hash| hash.to_string())
            .unwrap_or_default()
    })
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
