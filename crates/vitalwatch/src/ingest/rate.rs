//! A per-connection token bucket: a device publishing faster than `rate` messages per second
//! (after a burst of `burst`) has its next message processed — and so acknowledged — later.
//! Nothing is dropped; the delay is the backpressure that keeps one flooding device from
//! crowding out the others. Pure: the caller passes the time.

use std::time::{Duration, Instant};

#[derive(Debug)]
pub struct TokenBucket {
    rate_per_s: f64,
    burst: f64,
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    pub fn new(rate_per_s: u32, now: Instant) -> TokenBucket {
        let rate = f64::from(rate_per_s.max(1));
        TokenBucket {
            rate_per_s: rate,
            // One second's worth of messages may arrive at once (reconnect bursts).
            burst: rate,
            tokens: rate,
            last: now,
        }
    }

    /// Takes one token; returns how long the message must wait first (zero when within rate).
    pub fn take(&mut self, now: Instant) -> Duration {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + elapsed * self.rate_per_s).min(self.burst);
        self.tokens -= 1.0;
        if self.tokens >= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(-self.tokens / self.rate_per_s)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_passes_then_messages_wait_their_turn() {
        let start = Instant::now();
        let mut bucket = TokenBucket::new(10, start);
        for _ in 0..10 {
            assert_eq!(bucket.take(start), Duration::ZERO);
        }
        // The 11th at the same instant waits a tenth of a second, the 12th two tenths.
        assert_eq!(bucket.take(start), Duration::from_millis(100));
        assert_eq!(bucket.take(start), Duration::from_millis(200));
        // After a quiet second the bucket has refilled (but never above the burst).
        let later = start + Duration::from_secs(5);
        for _ in 0..10 {
            assert_eq!(bucket.take(later), Duration::ZERO);
        }
        assert!(bucket.take(later) > Duration::ZERO);
    }

    #[test]
    fn a_steady_rate_at_the_limit_never_waits() {
        let start = Instant::now();
        let mut bucket = TokenBucket::new(100, start);
        for n in 1..1000u64 {
            let at = start + Duration::from_millis(10 * n);
            assert_eq!(bucket.take(at), Duration::ZERO, "message {n}");
        }
    }
}
