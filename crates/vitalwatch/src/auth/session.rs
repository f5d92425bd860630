//! Dashboard sessions (in memory: a restart logs everyone out) and the failed-login limiter.

use super::{Role, constant_time_eq};
use parking_lot::Mutex;
use std::collections::HashMap;
use std::net::IpAddr;
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

/// Counts failed logins per user name and per client address in a fixed window.
pub struct LoginLimiter {
    failures: Mutex<HashMap<String, (u32, Instant)>>,
    per_user: u32,
    per_address: u32,
    window: Duration,
}

impl LoginLimiter {
    pub fn new(per_user: u32, per_address: u32, window: Duration) -> LoginLimiter {
        LoginLimiter {
            failures: Mutex::new(HashMap::new()),
            per_user,
            per_address,
            window,
        }
    }

    fn keys(username: &str, address: IpAddr) -> [String; 2] {
        [format!("user:{username}"), format!("addr:{address}")]
    }

    fn map(&self) -> parking_lot::MutexGuard<'_, HashMap<String, (u32, Instant)>> {
        self.failures.lock()
    }

    /// `Some(seconds to wait)` when this user or address has used up its failures.
    pub fn blocked(&self, username: &str, address: IpAddr) -> Option<u64> {
        let now = Instant::now();
        let map = self.map();
        let [user_key, addr_key] = Self::keys(username, address);
        [(user_key, self.per_user), (addr_key, self.per_address)]
            .into_iter()
            .filter_map(|(key, limit)| {
                let (count, start) = map.get(&key)?;
                let elapsed = now.duration_since(*start);
                (*count >= limit && elapsed < self.window)
                    .then(|| (self.window - elapsed).as_secs().max(1))
            })
            .max()
    }

    pub fn failed(&self, username: &str, address: IpAddr) {
        let now = Instant::now();
        let mut map = self.map();
        if map.len() > 100_000 {
            map.retain(|_, (_, start)| now.duration_since(*start) < self.window);
        }
        for key in Self::keys(username, address) {
            let entry = map.entry(key).or_insert((0, now));
            if now.duration_since(entry.1) >= self.window {
                *entry = (0, now);
            }
            entry.0 += 1;
        }
    }

    /// A successful login clears the user's count (not the address's).
    pub fn succeeded(&self, username: &str) {
        self.map().remove(&format!("user:{username}"));
    }
}

#[cfg(test)]
mod tests;
