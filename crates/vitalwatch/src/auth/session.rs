//! Dashboard sessions (in memory: a restart logs everyone out).

use super::{Role, constant_time_eq};
use parking_lot::Mutex;
use std::collections::HashMap;
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
    idle: Duration,
    max_age: Duration,
}

impl Sessions {
    pub fn new(idle: Duration, max_age: Duration) -> Sessions {
        Sessions {
            by_id: Mutex::new(HashMap::new()),
            idle,
            max_age,
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
