//! Simulated devices over the REST API: each device posts its readings, one per request, to
//! `…/api/telemetry` from its own thread (ureq, blocking). A reading counts as acknowledged on
//! a 200 answer (the API answers after the commit) and as failed otherwise.

use super::{Devices, Outgoing, Stats};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

pub fn start_devices(
    url: &str,
    device_ids: &[String],
    queue: usize,
    stats: &Arc<Stats>,
) -> anyhow::Result<Devices> {
    anyhow::ensure!(
        url.starts_with("http://") || url.starts_with("https://"),
        "--http {url:?}: expected an http:// or https:// URL of /api/telemetry"
    );
    let mut senders = Vec::with_capacity(device_ids.len());
    let mut tasks = Vec::with_capacity(device_ids.len());
    for _ in device_ids {
        let (tx, mut rx) = mpsc::channel::<Outgoing>(queue);
        senders.push(tx);
        let url = url.to_owned();
        let stats = Arc::clone(stats);
        tasks.push(tokio::task::spawn_blocking(move || {
            let agent: ureq::Agent = ureq::Agent::config_builder()
                .http_status_as_error(false)
                .timeout_global(Some(Duration::from_secs(30)))
                .build()
                .into();
            while let Some(message) = rx.blocking_recv() {
                if message.redelivery {
                    stats.redeliveries.fetch_add(1, Ordering::Relaxed);
                }
                let started = Instant::now();
                stats.sent.fetch_add(1, Ordering::Relaxed);
                let answer = agent
                    .post(&url)
                    .header("Content-Type", "application/json")
                    .send(&message.payload[..]);
                match answer {
                    Ok(response) if response.status().as_u16() == 200 => {
                        stats.acked.fetch_add(1, Ordering::Relaxed);
                        stats.record_latency(started.elapsed());
                    }
                    Ok(response) => {
                        stats.failed.fetch_add(1, Ordering::Relaxed);
                        tracing::warn!(
                            message = "Simulated reading refused.",
                            status = response.status().as_u16()
                        );
                    }
                    Err(err) => {
                        stats.failed.fetch_add(1, Ordering::Relaxed);
                        tracing::warn!(message = "Simulated reading not delivered.", error = %err);
                    }
                }
            }
        }));
    }
    Ok((senders, tasks))
}
