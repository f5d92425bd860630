//! What the nodes of a cluster share through the store besides the data (issue 14): a channel
//! of notifications between processes, dashboard sessions, failed-login counts and revoked
//! device credentials. Only a backend several processes share offers it (PostgreSQL:
//! `LISTEN/NOTIFY` and tables of migration V4); [`super::Store::cluster`] is `None` on SQLite,
//! whose single box keeps these in memory and files, unchanged.
//!
//! Backend-neutral: no driver type. Must not: know what a payload means (the event bridge
//! and the revocation watcher above it do) or decide a login (auth/login.rs does; the store
//! only counts atomically).

use super::{AuditEntry, StoreError};
use async_trait::async_trait;
use std::time::Duration;
use tokio::sync::mpsc;

/// The channel live events cross nodes on.
pub const EVENTS_CHANNEL: &str = "vitalwatch_events";
/// The channel a revocation is announced on (its payload is empty: listeners re-read the
/// table).
pub const REVOCATIONS_CHANNEL: &str = "vitalwatch_revocations";

/// PostgreSQL's limit on a NOTIFY payload is 8000 bytes; a little is kept back.
pub const MAX_PAYLOAD: usize = 7900;

/// What a listener hears.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Heard {
    /// A notification on `channel`.
    Message { channel: String, payload: String },
    /// The listening connection was (re)established: anything sent while it was down was
    /// missed. The first one comes when listening starts.
    Connected { reconnect: bool },
}

/// A stored dashboard session.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionRecord {
    pub username: String,
    pub role: String,
    pub csrf: String,
}

/// One key's failed logins within the window.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FailureCount {
    pub failures: u32,
    /// How long until the key's window ends (zero when it has no failures).
    pub remaining: Duration,
}

/// One revoked credential.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RevocationRecord {
    pub id: i64,
    pub device_id: String,
    pub serial: Option<String>,
    pub secret_hash: Option<String>,
}

/// The shared part of a cluster's state; cheap to clone as an `Arc`.
#[async_trait]
pub trait Cluster: Send + Sync {
    /// Sends each payload (≤ [`MAX_PAYLOAD`] bytes) on `channel` to every listening process,
    /// this one included; one round trip for all of them.
    async fn notify(&self, channel: &str, payloads: Vec<String>) -> Result<(), StoreError>;

    /// Listens on `channels` on a connection of its own that reconnects by itself (with
    /// backoff) until the receiver is dropped. The first thing heard is `Connected`.
    fn listen(&self, channels: &[&str]) -> mpsc::Receiver<Heard>;

    /// Stores a session under the SHA-256 of its id.
    async fn create_session(
        &self,
        id_hash: String,
        record: SessionRecord,
    ) -> Result<(), StoreError>;

    /// The session, unless unknown or ended (idle longer than `idle`, older than `max_age`,
    /// by the database's clock; an ended one is deleted). With `touch`, counts as activity
    /// (written at most every few seconds, not on every request).
    async fn session(
        &self,
        id_hash: String,
        idle: Duration,
        max_age: Duration,
        touch: bool,
    ) -> Result<Option<SessionRecord>, StoreError>;

    async fn remove_session(&self, id_hash: String) -> Result<(), StoreError>;

    /// Ends every session of a user.
    async fn remove_user_sessions(&self, username: String) -> Result<(), StoreError>;

    /// Atomically (one transaction, the keys' rows locked): reads the keys' failures in the
    /// current window (a window older than `window` counts as none); when `admit` says yes
    /// for those counts, counts one more failure for every key. Returns the counts seen
    /// before and whether they were admitted.
    async fn count_login_failure(
        &self,
        keys: Vec<String>,
        window: Duration,
        admit: Box<dyn for<'a> FnOnce(&'a [FailureCount]) -> bool + Send>,
    ) -> Result<(Vec<FailureCount>, bool), StoreError>;

    /// Forgets the failures of `forget` and gives one back to each of `give_back`.
    async fn clear_login_failures(
        &self,
        forget: Vec<String>,
        give_back: Vec<String>,
    ) -> Result<(), StoreError>;

    /// Records revoked credentials with their audit entry and announces them on
    /// [`REVOCATIONS_CHANNEL`], all in one transaction.
    async fn revoke_credentials(
        &self,
        device_id: String,
        serials: Vec<String>,
        secret_hashes: Vec<String>,
        entry: AuditEntry,
    ) -> Result<(), StoreError>;

    /// Revocations recorded after `after_id`, oldest first.
    async fn revocations_after(&self, after_id: i64) -> Result<Vec<RevocationRecord>, StoreError>;
}

/// Splits serialised items into payloads of at most `max` bytes: a JSON array per payload,
/// items in order, as many per payload as fit. An item that cannot fit alone is returned in
/// the second list (the caller counts it as dropped).
pub fn batch_payloads(prefix: &str, items: &[String], max: usize) -> (Vec<String>, usize) {
    let mut payloads = Vec::new();
    let mut dropped = 0;
    let mut current = String::new();
    let empty_len = prefix.len() + 2;
    for item in items {
        if empty_len + item.len() > max {
            dropped += 1;
            continue;
        }
        if !current.is_empty() && current.len() + 1 + item.len() + 1 > max {
            current.push(']');
            payloads.push(std::mem::take(&mut current));
        }
        if current.is_empty() {
            current.push_str(prefix);
            current.push('[');
        } else {
            current.push(',');
        }
        current.push_str(item);
    }
    if !current.is_empty() {
        current.push(']');
        payloads.push(current);
    }
    (payloads, dropped)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn items_are_packed_in_order_into_payloads_that_fit() {
        let items: Vec<String> = (0..10).map(|n| format!("{{\"n\":{n}}}")).collect();
        let (payloads, dropped) = batch_payloads("p|", &items, 30);
        assert_eq!(dropped, 0);
        for payload in &payloads {
            assert!(payload.len() <= 30, "{payload} is {} bytes", payload.len());
            assert!(payload.starts_with("p|[") && payload.ends_with(']'));
        }
        let joined: Vec<serde_json::Value> = payloads
            .iter()
            .flat_map(|p| serde_json::from_str::<Vec<serde_json::Value>>(&p["p|".len()..]).unwrap())
            .collect();
        let expected: Vec<serde_json::Value> = items
            .iter()
            .map(|i| serde_json::from_str(i).unwrap())
            .collect();
        assert_eq!(joined, expected);
        assert!(payloads.len() > 1, "30 bytes cannot hold ten items");
    }

    #[test]
    fn an_item_too_large_for_any_payload_is_dropped_and_counted() {
        let items = vec!["1".to_owned(), "x".repeat(100), "2".to_owned()];
        let (payloads, dropped) = batch_payloads("", &items, 20);
        assert_eq!(dropped, 1);
        assert_eq!(payloads, vec!["[1,2]".to_owned()]);
        let (payloads, dropped) = batch_payloads("", &[], 20);
        assert!(payloads.is_empty() && dropped == 0);
    }

    #[test]
    fn a_payload_is_filled_to_exactly_its_limit() {
        // "[" + "aaaa" + "," + "bbbb" + "]" = 11 bytes.
        let items = vec!["aaaa".to_owned(), "bbbb".to_owned()];
        assert_eq!(batch_payloads("", &items, 11).0, vec!["[aaaa,bbbb]"]);
        assert_eq!(batch_payloads("", &items, 10).0, vec!["[aaaa]", "[bbbb]"]);
    }
}
