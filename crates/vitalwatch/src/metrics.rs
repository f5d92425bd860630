//! Counters of what came in and what became of it, shown in `/health`.
//!
//! Lock-free atomics indexed by small enums, so counting costs nothing on the hot path.

use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;
use vitalwatch_core::telemetry::RejectReason;

/// Why an input was refused: a decoder reason, or one of the transport's own.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    Decode(RejectReason),
    /// HTTP body not declared as JSON.
    UnsupportedMediaType,
    /// The writer's queue stayed full: the caller is told to retry (HTTP 429).
    Busy,
    /// A device published a reading for another device id than its certificate names, or to
    /// a topic it may not publish to.
    Unauthorized,
    /// A connection refused at CONNECT: no usable identity, revoked certificate, bad credentials.
    ConnectRefused,
    /// A TLS handshake that failed (no client certificate, another CA, expired, plaintext).
    TlsHandshake,
}

impl Refusal {
    pub fn as_str(self) -> &'static str {
        match self {
            Refusal::Decode(reason) => reason.as_str(),
            Refusal::UnsupportedMediaType => "unsupported_media_type",
            Refusal::Busy => "busy",
            Refusal::Unauthorized => "unauthorized",
            Refusal::ConnectRefused => "connect_refused",
            Refusal::TlsHandshake => "tls_handshake_failed",
        }
    }

    fn index(self) -> usize {
        match self {
            Refusal::Decode(reason) => reason as usize,
            Refusal::UnsupportedMediaType => RejectReason::ALL.len(),
            Refusal::Busy => RejectReason::ALL.len() + 1,
            Refusal::Unauthorized => RejectReason::ALL.len() + 2,
            Refusal::ConnectRefused => RejectReason::ALL.len() + 3,
            Refusal::TlsHandshake => RejectReason::ALL.len() + 4,
        }
    }

    fn all() -> impl Iterator<Item = Refusal> {
        RejectReason::ALL.into_iter().map(Refusal::Decode).chain([
            Refusal::UnsupportedMediaType,
            Refusal::Busy,
            Refusal::Unauthorized,
            Refusal::ConnectRefused,
            Refusal::TlsHandshake,
        ])
    }
}

const N_REFUSALS: usize = RejectReason::ALL.len() + 5;

pub struct Metrics {
    started: Instant,
    refused: [AtomicU64; N_REFUSALS],
    stored: AtomicU64,
    duplicates: AtomicU64,
    quarantined: AtomicU64,
    anomalies: AtomicU64,
    rate_limited: AtomicU64,
}

#[derive(Debug, Serialize)]
pub struct ReadingCounts {
    pub stored: u64,
    pub duplicates: u64,
    pub quarantined: u64,
    pub anomalies: u64,
    pub rejected: u64,
    /// MQTT messages delayed by their connection's rate limit (none dropped).
    pub rate_limited: u64,
}

impl Default for Metrics {
    fn default() -> Metrics {
        Metrics {
            started: Instant::now(),
            refused: std::array::from_fn(|_| AtomicU64::new(0)),
            stored: AtomicU64::new(0),
            duplicates: AtomicU64::new(0),
            quarantined: AtomicU64::new(0),
            anomalies: AtomicU64::new(0),
            rate_limited: AtomicU64::new(0),
        }
    }
}

impl Metrics {
    pub fn refused(&self, refusal: Refusal) {
        self.refused[refusal.index()].fetch_add(1, Ordering::Relaxed);
    }

    pub fn stored(&self, n_anomalies: usize) {
        self.stored.fetch_add(1, Ordering::Relaxed);
        self.anomalies
            .fetch_add(n_anomalies as u64, Ordering::Relaxed);
    }

    pub fn duplicate(&self) {
        self.duplicates.fetch_add(1, Ordering::Relaxed);
    }

    pub fn quarantined(&self) {
        self.quarantined.fetch_add(1, Ordering::Relaxed);
        self.anomalies.fetch_add(1, Ordering::Relaxed);
    }

    pub fn rate_limited(&self) {
        self.rate_limited.fetch_add(1, Ordering::Relaxed);
    }

    pub fn uptime_s(&self) -> u64 {
        self.started.elapsed().as_secs()
    }

    /// Non-zero refusal counts by reason.
    pub fn refusals(&self) -> BTreeMap<&'static str, u64> {
        Refusal::all()
            .map(|refusal| {
                (
                    refusal.as_str(),
                    self.refused[refusal.index()].load(Ordering::Relaxed),
                )
            })
            .filter(|(_, count)| *count > 0)
            .collect()
    }

    pub fn counts(&self) -> ReadingCounts {
        ReadingCounts {
            stored: self.stored.load(Ordering::Relaxed),
            duplicates: self.duplicates.load(Ordering::Relaxed),
            quarantined: self.quarantined.load(Ordering::Relaxed),
            anomalies: self.anomalies.load(Ordering::Relaxed),
            rejected: self.refused.iter().map(|c| c.load(Ordering::Relaxed)).sum(),
            rate_limited: self.rate_limited.load(Ordering::Relaxed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_are_counted_by_reason() {
        let metrics = Metrics::default();
        metrics.refused(Refusal::Decode(RejectReason::MalformedJson));
        metrics.refused(Refusal::Decode(RejectReason::MalformedJson));
        metrics.refused(Refusal::Busy);
        let refusals = metrics.refusals();
        assert_eq!(refusals.get("malformed_json"), Some(&2));
        assert_eq!(refusals.get("busy"), Some(&1));
        assert_eq!(refusals.len(), 2);
        assert_eq!(metrics.counts().rejected, 3);
    }
}
