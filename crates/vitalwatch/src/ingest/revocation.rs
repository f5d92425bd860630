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
//! No ntex type here. Must not: keep a session alive (only weak references are held).

use super::identity::{Credential, Identities};
use parking_lot::Mutex;
use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;
use tokio::sync::Notify;

/// How often the revocation index and the secrets are looked at.
pub const CHECK_EVERY: Duration = Duration::from_secs(1);

/// Whether a session let in by `credential` may go on, given the revoked serials and the
/// current secrets' hashes by device id.
pub fn still_valid(
    credential: &Credential,
    revoked: &HashSet<&str>,
    secrets: &BTreeMap<String, String>,
) -> bool {
    match credential {
        Credential::Certificate(serial) => !revoked.contains(serial.as_str()),
        Credential::Secret { device_id, hash } => secrets.get(device_id) == Some(hash),
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
    pub fn sweep(&self, revoked: &[String], secrets: &BTreeMap<String, String>) -> usize {
        let revoked: HashSet<&str> = revoked.iter().map(String::as_str).collect();
        let mut ended = 0;
        self.entries.lock().retain(|entry| {
            let Some(kick) = entry.kick.upgrade() else {
                return false;
            };
            if still_valid(&entry.credential, &revoked, secrets) {
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
                    let ended = live.sweep(&identities.revoked_now(), &identities.secrets_now());
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
        let cert = Credential::Certificate("0a".to_owned());
        assert!(still_valid(&cert, &none, &secrets));
        assert!(!still_valid(&cert, &revoked, &secrets));
        assert!(still_valid(
            &Credential::Certificate("0b".to_owned()),
            &revoked,
            &secrets
        ));
        assert!(still_valid(&secret("lab-1", "h1"), &revoked, &secrets));
        // Re-issued (another hash) or removed: the old session ends.
        assert!(!still_valid(&secret("lab-1", "h0"), &none, &secrets));
        assert!(!still_valid(&secret("lab-2", "h1"), &none, &secrets));
        assert!(still_valid(&Credential::None, &revoked, &BTreeMap::new()));
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
        assert_eq!(live.sweep(&["02".to_owned()], &BTreeMap::new()), 1);
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
