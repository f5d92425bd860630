//! The server's one wall clock.
//!
//! Everything in the service that needs "now" as a calendar time asks here, so there is one
//! place that reads the system clock and one format for it. Core code never reads a clock:
//! callers pass the [`Timestamp`] this returns. Durations and deadlines use tokio's (or std's)
//! monotonic `Instant`, which this module does not replace.

use vitalwatch_core::telemetry::Timestamp;

/// Now, as a [`Timestamp`] (UTC, microseconds).
pub fn now() -> Timestamp {
    Timestamp::from_datetime(now_utc())
}

/// Now, as a chrono UTC time (token expiry, session records).
#[cfg(not(test))]
pub fn now_utc() -> chrono::DateTime<chrono::Utc> {
    chrono::Utc::now()
}

/// In unit tests: the wall clock when first read, then moved by tokio's clock, so that
/// `tokio::time::pause`/`advance` move the service's time too (unpaused, tokio's clock is the
/// monotonic clock, so this stays the wall clock).
#[cfg(test)]
pub fn now_utc() -> chrono::DateTime<chrono::Utc> {
    use std::sync::OnceLock;
    static BASE: OnceLock<(chrono::DateTime<chrono::Utc>, std::time::Instant)> = OnceLock::new();
    let (wall, at) = *BASE.get_or_init(|| (chrono::Utc::now(), std::time::Instant::now()));
    let instant = tokio::time::Instant::now().into_std();
    let delta = |d: std::time::Duration| chrono::TimeDelta::from_std(d).unwrap_or_default();
    match instant.checked_duration_since(at) {
        Some(ahead) => wall + delta(ahead),
        None => wall - delta(at.duration_since(instant)),
    }
}

/// Now, for certificate validity periods (rcgen takes `time`'s type).
pub fn now_offset() -> time::OffsetDateTime {
    time::OffsetDateTime::now_utc()
}

/// Now as RFC 3339 text with millisecond precision and `Z` (status fields, audit details).
pub fn now_rfc3339_millis() -> String {
    now_utc().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_forms_of_now_agree() {
        let before = now_utc();
        let stamp = now();
        let text = now_rfc3339_millis();
        let after = now_utc();
        assert!(before.timestamp_millis() <= stamp.millis());
        assert!(stamp.millis() <= after.timestamp_millis());
        let parsed = chrono::DateTime::parse_from_rfc3339(&text).expect("valid RFC 3339");
        assert!(parsed.timestamp_millis() >= before.timestamp_millis());
        assert!(parsed.timestamp_millis() <= after.timestamp_millis());
        assert!(text.ends_with('Z'));
    }
}
