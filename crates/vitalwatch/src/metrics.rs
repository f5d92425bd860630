//! Counters of what came in and what became of it, shown in `/health` and exported on
//! `/metrics` ([`prometheus`]): one source for both.
//!
//! Lock-free atomics indexed by small enums, so counting costs nothing on the hot path. Every
//! label is one of these enums' stable names: never a device id, a topic or a patient field.

pub mod cluster;
pub mod connections;
pub mod openmetrics;
pub mod prometheus;

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

/// The door a reading came in by: the `transport` label.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    Http,
    Mqtt,
}

impl Transport {
    pub const ALL: [Transport; 2] = [Transport::Http, Transport::Mqtt];

    pub fn as_str(self) -> &'static str {
        match self {
            Transport::Http => "http",
            Transport::Mqtt => "mqtt",
        }
    }
}

/// One counter per transport.
#[derive(Default)]
struct PerTransport([AtomicU64; 2]);

impl PerTransport {
    fn add(&self, transport: Transport, n: u64) {
        self.0[transport as usize].fetch_add(n, Ordering::Relaxed);
    }

    fn get(&self, transport: Transport) -> u64 {
        self.0[transport as usize].load(Ordering::Relaxed)
    }

    fn total(&self) -> u64 {
        Transport::ALL.into_iter().map(|t| self.get(t)).sum()
    }
}

pub struct Metrics {
    started: Instant,
    refused: [PerTransport; N_REFUSALS],
    stored: PerTransport,
    duplicates: PerTransport,
    quarantined: PerTransport,
    anomalies: AtomicU64,
    rate_limited: AtomicU64,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
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
            refused: std::array::from_fn(|_| PerTransport::default()),
            stored: PerTransport::default(),
            duplicates: PerTransport::default(),
            quarantined: PerTransport::default(),
            anomalies: AtomicU64::new(0),
            rate_limited: AtomicU64::new(0),
        }
    }
}

impl Metrics {
    pub fn refused(&self, refusal: Refusal, transport: Transport) {
        self.refused[refusal.index()].add(transport, 1);
    }

    pub fn stored(&self, transport: Transport, n_anomalies: usize) {
        self.stored.add(transport, 1);
        self.anomalies
            .fetch_add(n_anomalies as u64, Ordering::Relaxed);
    }

    pub fn duplicate(&self, transport: Transport) {
        self.duplicates.add(transport, 1);
    }

    pub fn quarantined(&self, transport: Transport) {
        self.quarantined.add(transport, 1);
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
            .map(|refusal| (refusal.as_str(), self.refused[refusal.index()].total()))
            .filter(|(_, count)| *count > 0)
            .collect()
    }

    /// Every counter with its labels, for the exporter: (transport, outcome, reason, count),
    /// zeros included so a series exists from the first scrape.
    pub fn by_transport(&self) -> Vec<(Transport, &'static str, Option<&'static str>, u64)> {
        let mut rows = Vec::new();
        for transport in Transport::ALL {
            rows.push((transport, "stored", None, self.stored.get(transport)));
            rows.push((transport, "duplicate", None, self.duplicates.get(transport)));
            rows.push((
                transport,
                "quarantined",
                None,
                self.quarantined.get(transport),
            ));
            for refusal in Refusal::all() {
                let count = self.refused[refusal.index()].get(transport);
                rows.push((transport, "rejected", Some(refusal.as_str()), count));
            }
        }
        rows
    }

    pub fn anomalies(&self) -> u64 {
        self.anomalies.load(Ordering::Relaxed)
    }

    pub fn n_rate_limited(&self) -> u64 {
        self.rate_limited.load(Ordering::Relaxed)
    }

    pub fn counts(&self) -> ReadingCounts {
        ReadingCounts {
            stored: self.stored.total(),
            duplicates: self.duplicates.total(),
            quarantined: self.quarantined.total(),
            anomalies: self.anomalies.load(Ordering::Relaxed),
            rejected: self.refused.iter().map(PerTransport::total).sum(),
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
        metrics.refused(
            Refusal::Decode(RejectReason::MalformedJson),
            Transport::Mqtt,
        );
        metrics.refused(
            Refusal::Decode(RejectReason::MalformedJson),
            Transport::Http,
        );
        metrics.refused(Refusal::Busy, Transport::Http);
        let refusals = metrics.refusals();
        assert_eq!(refusals.get("malformed_json"), Some(&2));
        assert_eq!(refusals.get("busy"), Some(&1));
        assert_eq!(refusals.len(), 2);
        assert_eq!(metrics.counts().rejected, 3);
        let rows = metrics.by_transport();
        let http_malformed = rows
            .iter()
            .find(|row| row.0 == Transport::Http && row.2 == Some("malformed_json"));
        assert_eq!(http_malformed.map(|row| row.3), Some(1));
    }
}
