//! Counters of a simulation run and its report: sent, acknowledged, failed, redeliveries,
//! and the acknowledgement latency percentiles.

use parking_lot::Mutex;
use serde::Serialize;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Latency samples kept at most (enough for percentiles of a bounded load run).
const MAX_SAMPLES: usize = 2_000_000;

#[derive(Default)]
pub struct Stats {
    /// Messages handed to the transport (MQTT: written to the socket; HTTP: requested).
    pub sent: AtomicU64,
    /// Messages the server acknowledged (MQTT QoS 1 PUBACK; HTTP 200).
    pub acked: AtomicU64,
    /// Messages sent and never acknowledged, or refused.
    pub failed: AtomicU64,
    /// Of `sent`, deliberate second copies (the `duplicates` behaviour).
    pub redeliveries: AtomicU64,
    /// Connections lost and retried after the first connect.
    pub reconnects: AtomicU64,
    latencies_us: Mutex<Vec<u32>>,
}

impl Stats {
    pub fn record_latency(&self, latency: Duration) {
        let micros = u32::try_from(latency.as_micros()).unwrap_or(u32::MAX);
        let mut samples = self.latencies_us.lock();
        if samples.len() < MAX_SAMPLES {
            samples.push(micros);
        }
    }

    pub fn report(&self, elapsed: Duration, acks: bool) -> Report {
        let mut samples = self.latencies_us.lock().clone();
        samples.sort_unstable();
        let percentile = |p: f64| -> Option<f64> {
            if samples.is_empty() {
                return None;
            }
            let rank = ((p * samples.len() as f64).ceil() as usize).clamp(1, samples.len());
            Some(f64::from(samples[rank - 1]) / 1000.0)
        };
        let sent = self.sent.load(Ordering::Relaxed);
        let acked = self.acked.load(Ordering::Relaxed);
        let secs = elapsed.as_secs_f64().max(1e-9);
        Report {
            sent,
            acked: acks.then_some(acked),
            failed: self.failed.load(Ordering::Relaxed),
            redeliveries: self.redeliveries.load(Ordering::Relaxed),
            reconnects: self.reconnects.load(Ordering::Relaxed),
            elapsed_s: elapsed.as_secs_f64(),
            sent_per_s: sent as f64 / secs,
            acked_per_s: acks.then_some(acked as f64 / secs),
            ack_latency_p50_ms: percentile(0.50),
            ack_latency_p99_ms: percentile(0.99),
        }
    }
}

/// What a run did; printed as text or JSON (`--json`).
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub sent: u64,
    /// None with QoS 0, which has no acknowledgements.
    pub acked: Option<u64>,
    pub failed: u64,
    pub redeliveries: u64,
    pub reconnects: u64,
    pub elapsed_s: f64,
    pub sent_per_s: f64,
    pub acked_per_s: Option<f64>,
    pub ack_latency_p50_ms: Option<f64>,
    pub ack_latency_p99_ms: Option<f64>,
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "sent={}", self.sent)?;
        match self.acked {
            Some(acked) => write!(f, " acked={acked}")?,
            None => write!(f, " acked=n/a(qos0)")?,
        }
        write!(
            f,
            " failed={} redeliveries={} reconnects={} elapsed={:.2}s sent/s={:.0}",
            self.failed, self.redeliveries, self.reconnects, self.elapsed_s, self.sent_per_s
        )?;
        if let Some(rate) = self.acked_per_s {
            write!(f, " acked/s={rate:.0}")?;
        }
        if let (Some(p50), Some(p99)) = (self.ack_latency_p50_ms, self.ack_latency_p99_ms) {
            write!(f, " ack_latency_ms p50={p50:.2} p99={p99:.2}")?;
        }
        Ok(())
    }
}

/// Prints sent and acknowledged messages per second on standard error until cancelled.
pub fn spawn_progress(
    stats: Arc<Stats>,
    shutdown: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.tick().await;
        let (mut last_sent, mut last_acked) = (0, 0);
        let mut second = 0u64;
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                _ = tick.tick() => {}
            }
            second += 1;
            let sent = stats.sent.load(Ordering::Relaxed);
            let acked = stats.acked.load(Ordering::Relaxed);
            eprintln!(
                "t={second}s sent/s={} acked/s={} failed={}",
                sent - last_sent,
                acked - last_acked,
                stats.failed.load(Ordering::Relaxed)
            );
            (last_sent, last_acked) = (sent, acked);
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_come_from_the_recorded_latencies() {
        let stats = Stats::default();
        for ms in 1..=100u64 {
            stats.record_latency(Duration::from_millis(ms));
        }
        stats.sent.store(100, Ordering::Relaxed);
        stats.acked.store(100, Ordering::Relaxed);
        let report = stats.report(Duration::from_secs(2), true);
        assert_eq!(report.ack_latency_p50_ms, Some(50.0));
        assert_eq!(report.ack_latency_p99_ms, Some(99.0));
        assert_eq!(report.acked_per_s, Some(50.0));
        let qos0 = stats.report(Duration::from_secs(2), false);
        assert_eq!(qos0.acked, None);
        assert!(qos0.to_string().contains("acked=n/a"));
    }
}
