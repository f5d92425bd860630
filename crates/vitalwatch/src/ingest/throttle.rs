//! Failed CONNECTs on the plaintext listener, counted per client address range and per device
//! id, so that guessing a device's secret is slow and bounded (issue 19, finding 9).
//!
//! Every attempt is counted *before* its secret is checked (so concurrent guesses cannot
//! overtake the limit) and uncounted when it succeeds. Beyond [`MAX_FAILURES_PER_RANGE`]
//! failures in a [`WINDOW`] from one range (a /24 or /64, see
//! [`crate::http_listen::range_of`]), CONNECTs from it are refused without checking; a device
//! id's failures from everywhere never lock it out, they only delay its next checks (0.25 s,
//! doubling to 8 s), so a stranger cannot shut a device out. Pure logic: the caller passes the
//! time and sleeps.

use crate::http_listen::range_of;
use parking_lot::Mutex;
use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// How long a failure counts.
pub const WINDOW: Duration = Duration::from_secs(60);
/// Failures from one address range in a window before its CONNECTs are refused unchecked.
pub const MAX_FAILURES_PER_RANGE: u32 = 30;
/// Failures of one device id in a window before its checks are delayed.
pub const FREE_FAILURES_PER_ID: u32 = 5;
/// The longest delay before checking a device id's secret.
pub const MAX_DELAY: Duration = Duration::from_secs(8);
/// Ranges and ids tracked at once; beyond, the oldest window is forgotten.
const MAX_TRACKED: usize = 10_000;

/// What to do with one CONNECT.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Gate {
    /// Check the secret, after waiting this long.
    Check { delay: Duration },
    /// Refuse without checking: the address range failed too often.
    Refuse,
}

#[derive(Clone, Copy, Debug)]
struct Window {
    count: u32,
    since: Instant,
}

struct Counts<K> {
    windows: HashMap<K, Window>,
}

impl<K> Default for Counts<K> {
    fn default() -> Self {
        Counts {
            windows: HashMap::new(),
        }
    }
}

impl<K: std::hash::Hash + Eq + Clone> Counts<K> {
    fn current(&mut self, key: &K, now: Instant) -> u32 {
        match self.windows.get(key) {
            Some(w) if now.duration_since(w.since) < WINDOW => w.count,
            Some(_) => {
                self.windows.remove(key);
                0
            }
            None => 0,
        }
    }

    fn add(&mut self, key: &K, now: Instant) {
        let count = self.current(key, now);
        if count == 0 && self.windows.len() >= MAX_TRACKED {
            self.windows
                .retain(|_, w| now.duration_since(w.since) < WINDOW);
            if self.windows.len() >= MAX_TRACKED
                && let Some(oldest) = self
                    .windows
                    .iter()
                    .min_by_key(|(_, w)| w.since)
                    .map(|(k, _)| k.clone())
            {
                self.windows.remove(&oldest);
            }
        }
        let window = self.windows.entry(key.clone()).or_insert(Window {
            count: 0,
            since: now,
        });
        window.count += 1;
    }

    fn undo(&mut self, key: &K) {
        if let Some(window) = self.windows.get_mut(key) {
            window.count = window.count.saturating_sub(1);
            if window.count == 0 {
                self.windows.remove(key);
            }
        }
    }
}

/// The broker-wide counts of failed CONNECTs.
#[derive(Default)]
pub struct FailedConnects {
    state: Mutex<(Counts<IpAddr>, Counts<String>)>,
}

impl FailedConnects {
    /// Counts an attempt by `device_id` from `address` (none: not known, counted by id only)
    /// and says whether to check it.
    pub fn begin(&self, address: Option<IpAddr>, device_id: &str, now: Instant) -> Gate {
        let mut state = self.state.lock();
        let (ranges, ids) = &mut *state;
        let range = address.map(|a| range_of(a.to_canonical()));
        if let Some(range) = range
            && ranges.current(&range, now) >= MAX_FAILURES_PER_RANGE
        {
            return Gate::Refuse;
        }
        let id = device_id.to_owned();
        let before = ids.current(&id, now);
        if let Some(range) = range {
            ranges.add(&range, now);
        }
        ids.add(&id, now);
        Gate::Check {
            delay: delay_after(before),
        }
    }

    /// The attempt [`FailedConnects::begin`] counted succeeded: it is not a failure.
    pub fn succeeded(&self, address: Option<IpAddr>, device_id: &str) {
        let mut state = self.state.lock();
        let (ranges, ids) = &mut *state;
        if let Some(address) = address {
            ranges.undo(&range_of(address.to_canonical()));
        }
        ids.undo(&device_id.to_owned());
    }
}

/// The delay before checking an id that failed `failures` times in the window.
pub fn delay_after(failures: u32) -> Duration {
    if failures < FREE_FAILURES_PER_ID {
        return Duration::ZERO;
    }
    let doublings = (failures - FREE_FAILURES_PER_ID).min(10);
    (Duration::from_millis(250) * 2u32.pow(doublings)).min(MAX_DELAY)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> Option<IpAddr> {
        Some(text.parse().unwrap())
    }

    #[test]
    fn a_range_that_fails_too_often_is_refused_unchecked_and_others_are_not() {
        let throttle = FailedConnects::default();
        let now = Instant::now();
        for n in 0..MAX_FAILURES_PER_RANGE {
            // Different ids, so that no delay applies; different addresses of one range.
            let address = ip(&format!("10.0.0.{}", n % 200 + 1));
            assert!(matches!(
                throttle.begin(address, &format!("dev-{n}"), now),
                Gate::Check { .. }
            ));
        }
        assert_eq!(throttle.begin(ip("10.0.0.250"), "dev-x", now), Gate::Refuse);
        // Another range is unaffected; the window passes.
        assert_eq!(
            throttle.begin(ip("10.0.1.1"), "dev-x", now),
            Gate::Check {
                delay: Duration::ZERO
            }
        );
        assert!(matches!(
            throttle.begin(ip("10.0.0.1"), "dev-y", now + WINDOW),
            Gate::Check { .. }
        ));
    }

    #[test]
    fn successes_are_not_failures() {
        let throttle = FailedConnects::default();
        let now = Instant::now();
        for _ in 0..MAX_FAILURES_PER_RANGE * 2 {
            assert_eq!(
                throttle.begin(ip("10.0.0.1"), "dev-1", now),
                Gate::Check {
                    delay: Duration::ZERO
                }
            );
            throttle.succeeded(ip("10.0.0.1"), "dev-1");
        }
    }

    #[test]
    fn an_ids_failures_delay_it_growing_but_never_lock_it_out() {
        let throttle = FailedConnects::default();
        let now = Instant::now();
        let mut delays = Vec::new();
        for n in 0..12u32 {
            // From many ranges: the id's count is what grows.
            match throttle.begin(ip(&format!("10.{n}.0.1")), "dev-1", now) {
                Gate::Check { delay } => delays.push(delay),
                Gate::Refuse => panic!("an id is never locked out"),
            }
        }
        assert_eq!(delays[..5], [Duration::ZERO; 5]);
        assert_eq!(delays[5], Duration::from_millis(250));
        assert_eq!(delays[6], Duration::from_millis(500));
        assert_eq!(*delays.last().unwrap(), MAX_DELAY);
        // Unknown and known ids are treated alike: the count is by name only.
        assert_eq!(
            throttle.begin(ip("10.99.0.1"), "no-such-device", now),
            Gate::Check {
                delay: Duration::ZERO
            }
        );
    }

    #[test]
    fn tracking_is_bounded() {
        let throttle = FailedConnects::default();
        let now = Instant::now();
        for n in 0..(MAX_TRACKED + 50) {
            let _ = throttle.begin(None, &format!("id-{n}"), now);
        }
        assert!(throttle.state.lock().1.windows.len() <= MAX_TRACKED);
    }
}
