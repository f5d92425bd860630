//! Dashboard sessions: in memory on a single box (a restart logs everyone out), or in the
//! store several nodes share (PostgreSQL), so a sign-in on one node works on every node and a
//! logout, a password change or a disabled user ends the session on all of them at the next
//! request. The shared ones are looked up on every request (no node-local cache to hide a new
//! session or keep an ended one); only their id's SHA-256 is stored.

use super::{Role, constant_time_eq};
use crate::store::StoreError;
use crate::store::cluster::{Cluster, SessionRecord};
use parking_lot::Mutex;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
// tokio's clock (the monotonic clock, unless a test pauses it).
use tokio::time::Instant;

/// The session cookie's name.
pub const COOKIE: &str = "vw_session";

#[derive(Clone, Debug)]
pub struct Session {
    pub username: String,
    pub role: Role,
    pub csrf: String,
    created: Instant,
    last_seen: Instant,
}

/// Live sessions by their (secret) id.
pub struct Sessions {
    by_id: Mutex<HashMap<String, Session>>,
    /// The store the nodes share, when there is one: sessions live there instead.
    shared: Option<Arc<dyn Cluster>>,
    idle: Duration,
    max_age: Duration,
}

impl Sessions {
    pub fn new(idle: Duration, max_age: Duration) -> Sessions {
        Sessions {
            by_id: Mutex::new(HashMap::new()),
            shared: None,
            idle,
            max_age,
        }
    }

    /// Keeps sessions in `cluster` (shared by every node) instead of in memory.
    pub fn shared(mut self, cluster: Arc<dyn Cluster>) -> Sessions {
        self.shared = Some(cluster);
        self
    }

    /// Starts a session (in the shared store when there is one); returns its id (the
    /// cookie's value) and CSRF token.
    pub async fn start(&self, username: &str, role: Role) -> Result<(String, String), StoreError> {
        let Some(cluster) = &self.shared else {
            return Ok(self.create(username, role));
        };
        let id = hex::encode(rand::random::<[u8; 32]>());
        let csrf = hex::encode(rand::random::<[u8; 32]>());
        cluster
            .create_session(
                super::hash_secret(&id),
                SessionRecord {
                    username: username.to_owned(),
                    role: role.as_str().to_owned(),
                    csrf: csrf.clone(),
                },
            )
            .await?;
        Ok((id, csrf))
    }

    /// The session for a cookie value, touched; `None` when unknown or ended.
    pub async fn lookup(&self, id: &str) -> Result<Option<Session>, StoreError> {
        self.shared_lookup(id, true).await
    }

    /// Whether a session is live, without counting this as activity.
    pub async fn is_live(&self, id: &str) -> Result<bool, StoreError> {
        Ok(self.shared_lookup(id, false).await?.is_some())
    }

    async fn shared_lookup(&self, id: &str, touch: bool) -> Result<Option<Session>, StoreError> {
        let Some(cluster) = &self.shared else {
            return Ok(if touch {
                self.get(id)
            } else {
                self.peek(id).then(|| self.map().get(id).cloned()).flatten()
            });
        };
        let record = cluster
            .session(super::hash_secret(id), self.idle, self.max_age, touch)
            .await?;
        let now = Instant::now();
        Ok(record.and_then(|record| {
            Some(Session {
                username: record.username,
                role: Role::parse(&record.role)?,
                csrf: record.csrf,
                created: now,
                last_seen: now,
            })
        }))
    }

    /// Ends a session (a logout).
    pub async fn end(&self, id: &str) -> Result<(), StoreError> {
        match &self.shared {
            Some(cluster) => cluster.remove_session(super::hash_secret(id)).await,
            None => {
                self.remove(id);
                Ok(())
            }
        }
    }

    /// Ends every session of a user (disabled, or a new password), on every node.
    pub async fn end_user(&self, username: &str) -> Result<(), StoreError> {
        match &self.shared {
            Some(cluster) => cluster.remove_user_sessions(username.to_owned()).await,
            None => {
                self.remove_user(username);
                Ok(())
            }
        }
    }

    pub fn max_age(&self) -> Duration {
        self.max_age
    }

    fn map(&self) -> parking_lot::MutexGuard<'_, HashMap<String, Session>> {
        self.by_id.lock()
    }

    /// Starts a session; returns its id (the cookie's value) and CSRF token.
    pub fn create(&self, username: &str, role: Role) -> (String, String) {
        let id = hex::encode(rand::random::<[u8; 32]>());
        let csrf = hex::encode(rand::random::<[u8; 32]>());
        let now = Instant::now();
        let mut map = self.map();
        // Forget expired sessions now and then, so the map cannot grow without bound.
        if map.len() % 64 == 63 {
            map.retain(|_, s| !self.expired(s, now));
        }
        map.insert(
            id.clone(),
            Session {
                username: username.to_owned(),
                role,
                csrf: csrf.clone(),
                created: now,
                last_seen: now,
            },
        );
        (id, csrf)
    }

    fn expired(&self, session: &Session, now: Instant) -> bool {
        now.duration_since(session.last_seen) > self.idle
            || now.duration_since(session.created) > self.max_age
    }

    /// The session for a cookie value, touched; `None` when unknown or expired (and then
    /// forgotten).
    pub fn get(&self, id: &str) -> Option<Session> {
        let now = Instant::now();
        let mut map = self.map();
        let session = map.get_mut(id)?;
        if self.expired(session, now) {
            map.remove(id);
            return None;
        }
        session.last_seen = now;
        Some(session.clone())
    }

    /// Whether a session is live, without counting this as activity.
    pub fn peek(&self, id: &str) -> bool {
        let now = Instant::now();
        self.map()
            .get(id)
            .is_some_and(|session| !self.expired(session, now))
    }

    pub fn remove(&self, id: &str) {
        self.map().remove(id);
    }

    /// Ends every session of a user (disabled, or a new password).
    pub fn remove_user(&self, username: &str) {
        self.map().retain(|_, s| s.username != username);
    }

    /// Whether `presented` is the session's CSRF token.
    pub fn csrf_matches(session_csrf: &str, presented: Option<&str>) -> bool {
        presented.is_some_and(|p| constant_time_eq(session_csrf, p))
    }
}

#[cfg(test)]
mod tests;
