//! The failed-login limiter and the bound on password checks running at once.
//!
//! Every attempt is counted *before* its password is checked (`begin` reserves it under one
//! lock), so concurrent guesses cannot all slip through before the first failure is
//! recorded. Counts are kept per (user name, address range) and per address range (a /24 or
//! /64, `http_listen::range_of`, so the many loopback or IPv6 addresses of one attacker share
//! one count). A name's failures from everywhere never lock it out — the right password from
//! an address that has not failed still gets in — they only slow its attempts down with a
//! growing delay. A success gives its reservation back.

use crate::http_listen::range_of;
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

/// Counts failed logins in a fixed window.
pub struct LoginLimiter {
    failures: Mutex<HashMap<Key, (u32, Instant)>>,
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
}

impl LoginLimiter {
    pub fn new(per_user: u32, per_address: u32, window: Duration, concurrency: usize) -> Self {
        LoginLimiter {
            failures: Mutex::new(HashMap::new()),
            per_user: per_user.max(1),
            per_address: per_address.max(1),
            window,
            checks: Arc::new(Semaphore::new(concurrency.max(1))),
        }
    }

    /// A permit to run one password check, or `None` when as many run as allowed.
    pub fn check_permit(&self) -> Option<OwnedSemaphorePermit> {
        Arc::clone(&self.checks).try_acquire_owned().ok()
    }

    fn count(&self, map: &HashMap<Key, (u32, Instant)>, key: &Key, now: Instant) -> (u32, u64) {
        match map.get(key) {
            Some((count, start)) if now.duration_since(*start) < self.window => (
                *count,
                (self.window - now.duration_since(*start)).as_secs().max(1),
            ),
            _ => (0, 0),
        }
    }

    /// Counts the attempt as a failure now, unless this name from this range, or this range,
    /// has used up its failures.
    pub fn begin(&self, username: &str, address: IpAddr) -> Result<Attempt, Refused> {
        let now = Instant::now();
        let range = range_of(address);
        let keys = [
            Key::UserFrom(username.to_owned(), range),
            Key::Range(range),
            Key::User(username.to_owned()),
        ];
        let mut map = self.failures.lock();
        if map.len() > 100_000 {
            map.retain(|_, (_, start)| now.duration_since(*start) < self.window);
        }
        let (from_here, wait_here) = self.count(&map, &keys[0], now);
        let (from_range, wait_range) = self.count(&map, &keys[1], now);
        if from_here >= self.per_user || from_range >= self.per_address {
            let wait = [
                (from_here >= self.per_user, wait_here),
                (from_range >= self.per_address, wait_range),
            ]
            .into_iter()
            .filter_map(|(over, wait)| over.then_some(wait))
            .max()
            .unwrap_or(1);
            return Err(Refused::Throttled(wait));
        }
        let (everywhere, _) = self.count(&map, &keys[2], now);
        let delay = match everywhere.checked_sub(self.per_user) {
            None => Duration::ZERO,
            Some(over) => FIRST_DELAY
                .saturating_mul(1u32 << over.min(16))
                .min(MAX_DELAY),
        };
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
    pub fn cancel(&self, attempt: Attempt) {
        let mut map = self.failures.lock();
        for key in &attempt.keys {
            if let Some(entry) = map.get_mut(key) {
                entry.0 = entry.0.saturating_sub(1);
            }
        }
    }

    /// The password was right: the name's failures are forgotten (from here and from
    /// everywhere), and the range's count gets this attempt back.
    pub fn succeeded(&self, attempt: Attempt) {
        let [from_here, range, everywhere] = attempt.keys;
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

    #[test]
    fn a_range_shares_one_count_and_a_fresh_range_is_not_locked_out() {
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
        limiter.succeeded(attempt);
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
