//! Waiting for a condition, bounded: the one place the integration tests poll. No test pauses
//! for a fixed time to order events or to "give the server time"; it names what it waits for
//! and how long it may take (a bound for a stuck run, not a speed assertion).

use std::time::{Duration, Instant};

/// How long most waits may take before the test fails.
pub const WAIT: Duration = Duration::from_secs(30);

/// How often a condition is checked.
const POLL_EVERY: Duration = Duration::from_millis(20);

/// What a probe answers: `true`, or `Some(value)`, once the condition holds.
pub trait Probe {
    type Value;
    fn ready(self) -> Option<Self::Value>;
}

impl Probe for bool {
    type Value = ();
    fn ready(self) -> Option<()> {
        self.then_some(())
    }
}

impl<T> Probe for Option<T> {
    type Value = T;
    fn ready(self) -> Option<T> {
        self
    }
}

/// Checks `probe` until it holds; `None` once `timeout` has passed without it holding.
pub fn poll_until<P: Probe>(timeout: Duration, mut probe: impl FnMut() -> P) -> Option<P::Value> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = probe().ready() {
            return Some(value);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(POLL_EVERY);
    }
}

/// Checks `probe` until it holds and returns its value; fails the test, naming `what`, once
/// `timeout` has passed without it holding.
pub fn wait_until<P: Probe>(
    timeout: Duration,
    what: impl std::fmt::Display,
    probe: impl FnMut() -> P,
) -> P::Value {
    poll_until(timeout, probe)
        .unwrap_or_else(|| panic!("timed out after {timeout:?} waiting for {what}"))
}

/// [`wait_until`] for async probes (a store's queued effects, awaited on the test's runtime):
/// polls `probe` until it answers `Some`, failing the test after [`WAIT`].
pub async fn eventually<T, F, Fut>(what: &str, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        if let Some(value) = probe().await {
            return value;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after {WAIT:?} waiting for {what}"
        );
        tokio::time::sleep(POLL_EVERY).await;
    }
}
