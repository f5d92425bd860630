//! Ending live MQTT sessions whose credential was revoked (issue 19, finding 3).
//!
//! Every accepted session is registered with the [`Credential`] it was let in by. A watcher
//! thread looks at the PKI's revocation index and the device secrets every
//! [`CHECK_EVERY`] (a modification-time check; a file is parsed again only when it changed),
//! so a revocation takes effect whoever made it: `vitalwatch certs revoke` run beside a
//! running server, or another node sharing the certificates directory. A session whose
//! certificate serial is revoked, or whose secret is no longer the device's, is marked revoked
//! (its next publish is refused) and told to close (its connection's kick, as a takeover).
//!
//! On a store several nodes share (PostgreSQL), revocations are also recorded there
//! (`credential_revocations`, by `POST /api/devices/{id}/revoke` on any node) and announced
//! with `NOTIFY`: [`sync`] keeps [`SharedRevocations`] up to date from the table (at each
//! notification and every [`POLL_EVERY`], so a missed notification costs seconds, not the
//! revocation), and both the CONNECT check and the sweep consult it, so a device revoked on one
//! node is refused and disconnected on every node, whichever certificates directory each has.
//!
//! No ntex type here. Must not: keep a session alive (only weak references are held).

use super::identity::{Credential, Identities};
use crate::store::cluster::{Cluster, REVOCATIONS_CHANNEL, RevocationRecord};
use parking_lot::{Mutex, RwLock};
use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// How often the revocation index and the secrets are looked at.
pub const CHECK_EVERY: Duration = Duration::from_secs(1);
/// How often the shared revocations are read even without a notification.
pub const POLL_EVERY: Duration = Duration::from_secs(2);

/// The revocations recorded in the store the nodes share (empty on a single box).
#[derive(Debug, Default)]
pub struct SharedRevocations {
    revoked: RwLock<RevokedSet>,
}

#[derive(Debug, Default)]
struct RevokedSet {
    serials: HashSet<String>,
    secret_hashes: HashSet<String>,
    last_id: i64,
}

impl SharedRevocations {
    pub fn is_serial_revoked(&self, serial: &str) -> bool {
        self.revoked.read().serials.contains(serial)
    }

    pub fn is_secret_revoked(&self, hash: &str) -> bool {
        self.revoked.read().secret_hashes.contains(hash)
    }

    fn last_id(&self) -> i64 {
        self.revoked.read().last_id
    }

    /// Adds records read from the store; returns how many were new.
    pub fn apply(&self, records: Vec<RevocationRecord>) -> usize {
        let mut revoked = self.revoked.write();
        let mut added = 0;
        for record in records {
            revoked.last_id = revoked.last_id.max(record.id);
            if let Some(serial) = record.serial {
                added += usize::from(revoked.serials.insert(serial.to_ascii_lowercase()));
            }
            if let Some(hash) = record.secret_hash {
                added += usize::from(revoked.secret_hashes.insert(hash));
            }
        }
        added
    }
}

/// Keeps `shared` up to date from `cluster` until `shutdown`: at start, at every notification
/// on [`REVOCATIONS_CHANNEL`] (and every reconnect of the listening connection), and every
/// [`POLL_EVERY`].
pub async fn sync(
    shared: Arc<SharedRevocations>,
    cluster: Arc<dyn Cluster>,
    shutdown: CancellationToken,
) {
    let mut heard = cluster.listen(&[REVOCATIONS_CHANNEL]);
    let mut poll = tokio::time::interval(POLL_EVERY);
    let mut listening = true;
    let mut failing = false;
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            message = heard.recv(), if listening => {
                if message.is_none() {
                    listening = false;
                }
            }
            _ = poll.tick() => {}
        }
        match cluster.revocations_after(shared.last_id()).await {
            Ok(records) => {
                failing = false;
                let added = shared.apply(records);
                if added > 0 {
                    tracing::info!(
                        event = "mqtt.shared_revocations",
                        message = "Revoked device credentials read from the shared store.",
                        credentials = added
                    );
                }
            }
            Err(err) => {
                if !failing {
                    failing = true;
                    tracing::warn!(event = "mqtt.shared_revocations_failed", message = "The shared revocations could not be read; retrying.", error = %err);
                }
            }
        }
    }
}

/// What a revocation took away from a device.
#[derive(Clone, Debug, serde::Serialize, utoipa::ToSchema)]
pub struct Revoked {
    pub device_id: String,
    /// The serials of the certificates revoked (lower-case hex).
    pub serials: Vec<String>,
    /// Whether the device's plaintext-MQTT secret was removed.
    pub secret_removed: bool,
}

/// Revokes everything `device_id` could connect with — its unrevoked certificates (the CRL
/// re-signed) and its plaintext secret — in `certs`, and audits it as `actor`. On a store the
/// nodes share, the revoked serials and the secret's hash are recorded there in the audit
/// entry's transaction and announced, so every node refuses and disconnects the device, not
/// only those reading these files. `None` when the device had nothing to revoke. Used by
/// `vitalwatch certs revoke` and `POST /api/devices/{id}/revoke`.
pub async fn revoke_device(
    certs: crate::pki::CertsDir,
    store: &dyn crate::store::Store,
    device_id: &str,
    actor: String,
) -> anyhow::Result<Option<Revoked>> {
    use crate::pki;
    let id = device_id.to_owned();
    let (serials, secret_hash) = tokio::task::spawn_blocking(move || -> anyhow::Result<_> {
        let has_cert = pki::list(&certs).is_ok_and(|issued| {
            issued
                .iter()
                .any(|c| c.device_id == id && c.revoked_at.is_none())
        });
        let secret_hash = pki::load_secrets(&certs)?.get(&id).cloned();
        let serials: Vec<String> = if has_cert {
            pki::revoke(&certs, &id)?
                .into_iter()
                .map(|cert| cert.serial.to_ascii_lowercase())
                .collect()
        } else {
            Vec::new()
        };
        let removed = secret_hash.is_some() && pki::remove_secret(&certs, &id)?;
        Ok((serials, secret_hash.filter(|_| removed)))
    })
    .await??;
    if serials.is_empty() && secret_hash.is_none() {
        return Ok(None);
    }
    let revoked = Revoked {
        device_id: device_id.to_owned(),
        serials,
        secret_removed: secret_hash.is_some(),
    };
    let entry = crate::store::AuditEntry {
        actor,
        action: "certificate.revoke".to_owned(),
        target: device_id.to_owned(),
        details: serde_json::json!({
            "serials": revoked.serials,
            "secret_removed": revoked.secret_removed,
        }),
    };
    match store.cluster() {
        Some(cluster) => {
            cluster
                .revoke_credentials(
                    device_id.to_owned(),
                    revoked.serials.clone(),
                    secret_hash.into_iter().collect(),
                    entry,
                )
                .await?
        }
        None => store.audit(entry).await?,
    }
    Ok(Some(revoked))
}

/// Whether a session let in by `credential` may go on, given the revoked serials and the
/// current secrets' hashes by device id, and the revocations the nodes share.
pub fn still_valid(
    credential: &Credential,
    revoked: &HashSet<&str>,
    secrets: &BTreeMap<String, String>,
    shared: &SharedRevocations,
) -> bool {
    match credential {
        Credential::Certificate(serial) => {
            !revoked.contains(serial.as_str()) && !shared.is_serial_revoked(serial)
        }
        Credential::Secret { device_id, hash } => {
            secrets.get(device_id) == Some(hash) && !shared.is_secret_revoked(hash)
        }
        Credential::None => true,
    }
}

struct Entry {
    credential: Credential,
    kick: Weak<Notify>,
    revoked: Arc<AtomicBool>,
}

/// The live sessions' credentials, shared by every worker and listener.
#[derive(Default)]
pub struct LiveCredentials {
    entries: Mutex<Vec<Entry>>,
}

impl LiveCredentials {
    /// Registers a session let in by `credential`, closed through `kick`; the flag it returns
    /// turns true once the credential is revoked.
    pub fn watch(&self, credential: Credential, kick: &Arc<Notify>) -> Arc<AtomicBool> {
        let revoked = Arc::new(AtomicBool::new(false));
        if credential != Credential::None {
            self.entries.lock().push(Entry {
                credential,
                kick: Arc::downgrade(kick),
                revoked: Arc::clone(&revoked),
            });
        }
        revoked
    }

    /// Ends the sessions whose credential is no longer valid and forgets ended ones; returns
    /// how many were ended.
    pub fn sweep(
        &self,
        revoked: &[String],
        secrets: &BTreeMap<String, String>,
        shared: &SharedRevocations,
    ) -> usize {
        let revoked: HashSet<&str> = revoked.iter().map(String::as_str).collect();
        let mut ended = 0;
        self.entries.lock().retain(|entry| {
            let Some(kick) = entry.kick.upgrade() else {
                return false;
            };
            if still_valid(&entry.credential, &revoked, secrets, shared) {
                return true;
            }
            entry.revoked.store(true, Ordering::SeqCst);
            kick.notify_one();
            ended += 1;
            false
        });
        ended
    }

    /// Sessions registered (ended ones until the next sweep).
    #[cfg(test)]
    fn len(&self) -> usize {
        self.entries.lock().len()
    }
}

/// The watcher thread; it stops when this is dropped.
pub struct Watcher {
    stop: Option<std::sync::mpsc::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Watcher {
    pub fn start(
        identities: Arc<Identities>,
        live: Arc<LiveCredentials>,
    ) -> std::io::Result<Watcher> {
        let (stop, stopped) = std::sync::mpsc::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("vitalwatch-revocations".to_owned())
            .spawn(move || {
                while let Err(std::sync::mpsc::RecvTimeoutError::Timeout) =
                    stopped.recv_timeout(CHECK_EVERY)
                {
                    let ended = live.sweep(
                        &identities.revoked_now(),
                        &identities.secrets_now(),
                        identities.shared(),
                    );
                    if ended > 0 {
                        tracing::warn!(
                            event = "mqtt.revoked_sessions_closed",
                            message =
                                "MQTT sessions closed: their certificate or secret was revoked.",
                            sessions = ended
                        );
                    }
                }
            })?;
        Ok(Watcher {
            stop: Some(stop),
            thread: Some(thread),
        })
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret(device_id: &str, hash: &str) -> Credential {
        Credential::Secret {
            device_id: device_id.to_owned(),
            hash: hash.to_owned(),
        }
    }

    #[test]
    fn a_credential_is_valid_until_its_serial_is_revoked_or_its_secret_changes() {
        let secrets = BTreeMap::from([("lab-1".to_owned(), "h1".to_owned())]);
        let none = HashSet::new();
        let revoked = HashSet::from(["0a"]);
        let nothing_shared = SharedRevocations::default();
        let cert = Credential::Certificate("0a".to_owned());
        assert!(still_valid(&cert, &none, &secrets, &nothing_shared));
        assert!(!still_valid(&cert, &revoked, &secrets, &nothing_shared));
        assert!(still_valid(
            &Credential::Certificate("0b".to_owned()),
            &revoked,
            &secrets,
            &nothing_shared
        ));
        assert!(still_valid(
            &secret("lab-1", "h1"),
            &revoked,
            &secrets,
            &nothing_shared
        ));
        // Re-issued (another hash) or removed: the old session ends.
        assert!(!still_valid(
            &secret("lab-1", "h0"),
            &none,
            &secrets,
            &nothing_shared
        ));
        assert!(!still_valid(
            &secret("lab-2", "h1"),
            &none,
            &secrets,
            &nothing_shared
        ));
        assert!(still_valid(
            &Credential::None,
            &revoked,
            &BTreeMap::new(),
            &nothing_shared
        ));
    }

    #[test]
    fn a_revocation_another_node_recorded_ends_the_session_here() {
        let secrets = BTreeMap::from([("lab-1".to_owned(), "h1".to_owned())]);
        let shared = SharedRevocations::default();
        let cert = Credential::Certificate("0a".to_owned());
        assert!(still_valid(&cert, &HashSet::new(), &secrets, &shared));
        let record = |id, serial: Option<&str>, hash: Option<&str>| RevocationRecord {
            id,
            device_id: "lab-1".to_owned(),
            serial: serial.map(str::to_owned),
            secret_hash: hash.map(str::to_owned),
        };
        assert_eq!(
            shared.apply(vec![
                record(4, Some("0A"), None),
                record(5, None, Some("h1"))
            ]),
            2
        );
        assert_eq!(shared.last_id(), 5);
        assert!(!still_valid(&cert, &HashSet::new(), &secrets, &shared));
        // The secret's file still lists it (another node's copy): the shared record wins.
        assert!(!still_valid(
            &secret("lab-1", "h1"),
            &HashSet::new(),
            &secrets,
            &shared
        ));
        assert_eq!(shared.apply(vec![record(5, Some("0a"), None)]), 0);
    }

    #[test]
    fn a_sweep_kicks_revoked_sessions_and_forgets_ended_ones() {
        let live = LiveCredentials::default();
        let kept_kick = Arc::new(Notify::new());
        let revoked_kick = Arc::new(Notify::new());
        let kept = live.watch(Credential::Certificate("01".to_owned()), &kept_kick);
        let revoked = live.watch(Credential::Certificate("02".to_owned()), &revoked_kick);
        {
            let gone = Arc::new(Notify::new());
            live.watch(Credential::Certificate("03".to_owned()), &gone);
        }
        live.watch(Credential::None, &kept_kick);
        assert_eq!(live.len(), 3);
        assert_eq!(
            live.sweep(
                &["02".to_owned()],
                &BTreeMap::new(),
                &SharedRevocations::default()
            ),
            1
        );
        assert!(revoked.load(Ordering::SeqCst) && !kept.load(Ordering::SeqCst));
        assert_eq!(live.len(), 1, "the ended and the revoked one are forgotten");
        // The kick is stored for the waiter.
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        rt.block_on(async {
            tokio::time::timeout(Duration::from_secs(1), revoked_kick.notified())
                .await
                .expect("the revoked session was kicked");
        });
    }
}
