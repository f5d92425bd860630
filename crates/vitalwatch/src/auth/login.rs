//! The failed-login limiter and the bound on password checks running at once.
//!
//! Every attempt is counted *before* its password is checked (`begin` reserves it under one
//! lock), so concurrent guesses cannot all slip through before the first failure is
//! recorded. Counts are kept per (user name, address range) and per address range (a /24 or
//! /64, `http_listen::range_of`, so the many loopback or IPv6 addresses of one attacker share
//! one count). A name's failures from everywhere never lock it out — the right password from
//! an address that has not failed still gets in — they only slow its attempts down with a
//! growing delay. A success gives its reservation back.
//!
//! On a store several nodes share (PostgreSQL) the counts live there (`login_failures`,
//! read and counted in one transaction with the keys' rows locked), so failures spread over
//! nodes count together; the decision ([`decide`]) is the same for both.

use crate::http_listen::range_of;
use crate::store::cluster::{Cluster, FailureCount};
use parking_lot::Mutex;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
// tokio's clock (the monotonic clock, unless a test pauses it).
use tokio::time::Instant;

/// The first growing delay, once a name has had its allowed failures from everywhere ...
const FIRST_DELAY: Duration = Duration::from_millis(250);
/// ... doubling with each further failure, up to this.
const MAX_DELAY: Duration = Duration::from_secs(8);

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Key {
    /// A user name from one address range: refused beyond `per_user`.
    UserFrom(String, IpAddr),
    /// An address range, for all names: refused beyond `per_address`.
    Range(IpAddr),
    /// A user name from everywhere: slowed down beyond `per_user`, never refused.
    User(String),
}

impl Key {
    /// The key as the shared store names it (`login_failures.key`). The name is escaped
    /// (`\` and NUL), as PostgreSQL's text cannot hold NUL and a login may send any name.
    fn as_text(&self) -> String {
        let escaped = |name: &str| name.replace('\\', "\\\\").replace('\0', "\\0");
        match self {
            Key::UserFrom(name, range) => format!("from:{range}:{}", escaped(name)),
            Key::Range(range) => format!("range:{range}"),
            Key::User(name) => format!("user:{}", escaped(name)),
        }
    }
}

/// Counts failed logins in a fixed window: in memory (one process), or in the store several
/// nodes share, so failures spread over nodes count together.
pub struct LoginLimiter {
    failures: Mutex<HashMap<Key, (u32, Instant)>>,
    shared: Option<Arc<dyn Cluster>>,
    per_user: u32,
    per_address: u32,
    window: Duration,
    checks: Arc<Semaphore>,
}

/// An attempt that was let through: counted as a failure until [`LoginLimiter::succeeded`]
/// (or [`LoginLimiter::cancel`]) gives it back.
#[derive(Debug)]
pub struct Attempt {
    keys: [Key; 3],
    /// How long to wait before checking the password (a name under attack).
    pub delay: Duration,
}

/// Why an attempt was not let through.
#[derive(Debug, PartialEq, Eq)]
pub enum Refused {
    /// Too many failures from here; retry after this many seconds.
    Throttled(u64),
    /// The shared counts could not be read or written (the database is away): not checked.
    Unavailable,
}

/// The decision for one attempt from its keys' failures in the window (`[from here, range,
/// everywhere]`), the same for both backends: refused when this name from this range, or
/// this range, has used up its failures; otherwise let through after a delay growing with
/// the name's failures from everywhere.
fn decide(counts: &[FailureCount], per_user: u32, per_address: u32) -> Result<Duration, Refused> {
    let none = FailureCount {
        failures: 0,
        remaining: Duration::ZERO,
    };
    let here = counts.first().copied().unwrap_or(none);
    let range = counts.get(1).copied().unwrap_or(none);
    let everywhere = counts.get(2).copied().unwrap_or(none);
    let over = [
        (here.failures >= per_user, here.remaining),
        (range.failures >= per_address, range.remaining),
    ];
    if over.iter().any(|(over, _)| *over) {
        let wait = over
            .into_iter()
            .filter_map(|(over, remaining)| over.then_some(remaining.as_secs().max(1)))
            .max()
            .unwrap_or(1);
        return Err(Refused::Throttled(wait));
    }
    Ok(match everywhere.failures.checked_sub(per_user) {
        None => Duration::ZERO,
        Some(over) => FIRST_DELAY
            .saturating_mul(1u32 << over.min(16))
            .min(MAX_DELAY),
    })
}

impl LoginLimiter {
    pub fn new(per_user: u32, per_address: u32, window: Duration, concurrency: usize) -> Self {
        LoginLimiter {
            failures: Mutex::new(HashMap::new()),
            shared: None,
            per_user: per_user.max(1),
            per_address: per_address.max(1),
            window,
            checks: Arc::new(Semaphore::new(concurrency.max(1))),
        }
    }

    /// Counts in `cluster` (shared by every node) instead of in memory.
    pub fn shared(mut self, cluster: Arc<dyn Cluster>) -> Self {
        self.shared = Some(cluster);
        self
    }

    /// A permit to run one password check, or `None` when as many run as allowed.
    pub fn check_permit(&self) -> Option<OwnedSemaphorePermit> {
        Arc::clone(&self.checks).try_acquire_owned().ok()
    }

    fn count(&self, map: &HashMap<Key, (u32, Instant)>, key: &Key, now: Instant) -> FailureCount {
        match map.get(key) {
            Some((count, start)) if now.duration_since(*start) < self.window => FailureCount {
                failures: *count,
                remaining: self.window - now.duration_since(*start),
            },
            _ => FailureCount {
                failures: 0,
                remaining: Duration::ZERO,
            },
        }
    }

    fn keys(username: &str, address: IpAddr) -> [Key; 3] {
        let range = range_of(address);
        [
            Key::UserFrom(username.to_owned(), range),
            Key::Range(range),
            Key::User(username.to_owned()),
        ]
    }

    /// Counts the attempt as a failure now, unless this name from this range, or this range,
    /// has used up its failures: in the shared store when there is one, else in memory.
    pub async fn attempt(&self, username: &str, address: IpAddr) -> Result<Attempt, Refused> {
        let Some(cluster) = &self.shared else {
            return self.begin(username, address);
        };
        let keys = Self::keys(username, address);
        let (per_user, per_address) = (self.per_user, self.per_address);
        let (counts, admitted) = cluster
            .count_login_failure(
                keys.iter().map(Key::as_text).collect(),
                self.window,
                Box::new(move |counts| decide(counts, per_user, per_address).is_ok()),
            )
            .await
            .map_err(|err| {
                tracing::error!(event = "auth.login_limiter_failed", message = "The shared login limiter could not count an attempt.", error = %err);
                Refused::Unavailable
            })?;
        let delay = decide(&counts, per_user, per_address)?;
        debug_assert!(admitted);
        Ok(Attempt { keys, delay })
    }

    /// [`LoginLimiter::attempt`] in memory.
    pub fn begin(&self, username: &str, address: IpAddr) -> Result<Attempt, Refused> {
        let now = Instant::now();
        let keys = Self::keys(username, address);
        let mut map = self.failures.lock();
        if map.len() > 100_000 {
            map.retain(|_, (_, start)| now.duration_since(*start) < self.window);
        }
        let counts: Vec<FailureCount> = keys.iter().map(|k| self.count(&map, k, now)).collect();
        let delay = decide(&counts, self.per_user, self.per_address)?;
        for key in &keys {
            let entry = map.entry(key.clone()).or_insert((0, now));
            if now.duration_since(entry.1) >= self.window {
                *entry = (0, now);
            }
            entry.0 += 1;
        }
        Ok(Attempt { keys, delay })
    }

    /// The attempt was not a failure after all (the check could not run): gives it back.
    pub async fn cancel(&self, attempt: Attempt) {
        if let Some(cluster) = &self.shared {
            let give_back = attempt.keys.iter().map(Key::as_text).collect();
            if let Err(err) = cluster.clear_login_failures(Vec::new(), give_back).await {
                tracing::warn!(event = "auth.login_limiter_failed", message = "The shared login limiter could not give an attempt back.", error = %err);
            }
            return;
        }
        let mut map = self.failures.lock();
        for key in &attempt.keys {
            if let Some(entry) = map.get_mut(key) {
                entry.0 = entry.0.saturating_sub(1);
            }
        }
    }

    /// The password was right: the name's failures are forgotten (from here and from
    /// everywhere), and the range's count gets this attempt back.
    pub async fn succeeded(&self, attempt: Attempt) {
        let [from_here, range, everywhere] = attempt.keys;
        if let Some(cluster) = &self.shared {
            let forget = vec![from_here.as_text(), everywhere.as_text()];
            if let Err(err) = cluster
                .clear_login_failures(forget, vec![range.as_text()])
                .await
            {
                tracing::warn!(event = "auth.login_limiter_failed", message = "The shared login limiter could not forget a user's failures.", error = %err);
            }
            return;
        }
        let mut map = self.failures.lock();
        map.remove(&from_here);
        map.remove(&everywhere);
        if let Some(entry) = map.get_mut(&range) {
            entry.0 = entry.0.saturating_sub(1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::time::advance;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn shared_keys_hold_no_nul_and_keep_different_names_apart() {
        let range = range_of(ip("10.0.0.1"));
        let text = |name: &str| Key::User(name.to_owned()).as_text();
        assert!(!text("a\0b").contains('\0'));
        assert_eq!(text("alice"), "user:alice");
        // An escaped NUL and a backslash followed by `0` stay two names.
        assert_ne!(text("a\0"), text("a\\0"));
        assert_ne!(
            Key::UserFrom("a\0".into(), range).as_text(),
            Key::UserFrom("a\\0".into(), range).as_text()
        );
    }

    #[tokio::test(start_paused = true)]
    async fn the_limiter_forgets_failures_after_its_window() {
        let window = Duration::from_secs(15 * 60);
        let limiter = LoginLimiter::new(2, 10, window, 4);
        let address = ip("10.0.0.1");
        limiter.begin("alice", address).unwrap();
        limiter.begin("alice", address).unwrap();
        assert_eq!(
            limiter.begin("alice", address).unwrap_err(),
            Refused::Throttled(window.as_secs())
        );
        advance(window / 3).await;
        assert_eq!(
            limiter.begin("alice", address).unwrap_err(),
            Refused::Throttled((window - window / 3).as_secs())
        );
        advance(window).await;
        assert!(
            limiter.begin("alice", address).is_ok(),
            "blocked past the window"
        );
    }

    #[test]
    fn attempts_are_counted_before_they_are_checked() {
        let limiter = LoginLimiter::new(5, 100, Duration::from_secs(60), 4);
        // 120 attempts in flight at once (none has failed yet): 5 get through.
        let through = (0..120)
            .filter(|_| limiter.begin("alice", ip("10.0.0.1")).is_ok())
            .count();
        assert_eq!(through, 5);
    }

    #[tokio::test]
    async fn a_range_shares_one_count_and_a_fresh_range_is_not_locked_out() {
        let limiter = LoginLimiter::new(2, 3, Duration::from_secs(60), 4);
        limiter.begin("alice", ip("10.0.0.1")).unwrap();
        // Another address of the same /24 is the same client.
        limiter.begin("alice", ip("10.0.0.2")).unwrap();
        assert!(limiter.begin("alice", ip("10.0.0.3")).is_err());
        // Another user from that range has one failure left there (3 per range).
        limiter.begin("bob", ip("10.0.0.4")).unwrap();
        assert!(limiter.begin("carol", ip("10.0.0.5")).is_err());
        // From elsewhere alice is slowed down, not refused; her right password clears it.
        let attempt = limiter.begin("alice", ip("192.0.2.7")).unwrap();
        assert!(attempt.delay > Duration::ZERO);
        limiter.succeeded(attempt).await;
        let attempt = limiter.begin("alice", ip("192.0.2.7")).unwrap();
        assert_eq!(attempt.delay, Duration::ZERO);
    }

    #[test]
    fn the_delay_grows_and_is_bounded() {
        let limiter = LoginLimiter::new(1, 1000, Duration::from_secs(60), 4);
        let delays: Vec<Duration> = (0..40)
            .map(|n| {
                limiter
                    .begin("alice", ip(&format!("10.{n}.0.1")))
                    .unwrap()
                    .delay
            })
            .collect();
        assert_eq!(delays[0], Duration::ZERO);
        assert_eq!(delays[1], FIRST_DELAY);
        assert_eq!(delays[2], FIRST_DELAY * 2);
        assert_eq!(*delays.last().unwrap(), MAX_DELAY);
    }
}
