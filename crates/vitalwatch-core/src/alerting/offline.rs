//! The device-offline deadline: pure arithmetic on the last-seen time.
//!
//! A device is offline once `factor` expected intervals pass without a reading (defaults 5 s
//! and 3: offline after 15 s). One timer task sleeps until [`super::AlertEngine::next_deadline`]
//! and then calls [`super::AlertEngine::tick`]; nothing here reads a clock.

use crate::telemetry::Timestamp;

/// When a device last seen at `last_seen` becomes offline.
pub fn offline_deadline(last_seen: Timestamp, expected_interval_ms: u64, factor: u32) -> Timestamp {
    let micros = expected_interval_ms
        .saturating_mul(u64::from(factor))
        .saturating_mul(1_000);
    last_seen.saturating_add_micros(i64::try_from(micros).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(last_seen_s: i64, interval_ms: u64, factor: u32, expected_s: f64) {
        let deadline = offline_deadline(Timestamp::from_secs(last_seen_s), interval_ms, factor);
        assert_eq!(
            deadline.secs_f64() - last_seen_s as f64,
            expected_s,
            "{interval_ms} ms x {factor}"
        );
    }

    #[test]
    fn deadlines() {
        check(1_705_401_045, 5_000, 3, 15.0);
        check(1_705_401_045, 1_500, 2, 3.0);
        check(1_705_401_045, 60_000, 5, 300.0);
        // Absurd settings saturate instead of overflowing.
        let far = offline_deadline(Timestamp::from_secs(1), u64::MAX, u32::MAX);
        assert_eq!(far, Timestamp::from_micros(i64::MAX));
    }
}
