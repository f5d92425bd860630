//! Simulated devices over the REST API: each device posts its readings, one per request, to
//! `…/api/telemetry` from its own thread (ureq, blocking). A reading counts as acknowledged on
//! a 200 answer (the API answers after the commit) and as failed otherwise.

use super::{Devices, Outgoing, Stats};
use anyhow::Context;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// Where and how to post.
#[derive(Clone, Debug)]
pub struct HttpTarget {
    pub url: String,
    /// Sent as `Authorization: Bearer …` (a device token posts only for its own id).
    pub token: Option<String>,
    /// The CA that signed an https:// server's certificate (the server's `certs/ca.crt`).
    pub ca: Option<std::path::PathBuf>,
}

/// A blocking HTTP client for `target` (trusting its CA for https://).
pub fn agent(target: &HttpTarget) -> anyhow::Result<ureq::Agent> {
    let mut config = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(30)));
    if let Some(ca) = &target.ca {
        crate::tls::install_crypto_provider();
        let pem = std::fs::read(ca).with_context(|| format!("reading {}", ca.display()))?;
        let cert = ureq::tls::Certificate::from_pem(&pem)
            .with_context(|| format!("parsing {}", ca.display()))?;
        config = config.tls_config(
            ureq::tls::TlsConfig::builder()
                .root_certs(ureq::tls::RootCerts::Specific(Arc::new(vec![cert])))
                .build(),
        );
    }
    Ok(config.build().into())
}

pub fn start_devices(
    target: &HttpTarget,
    device_ids: &[String],
    queue: usize,
    stats: &Arc<Stats>,
) -> anyhow::Result<Devices> {
    let url = &target.url;
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
        let agent = agent(target)?;
        let authorization = target.token.as_ref().map(|token| format!("Bearer {token}"));
        tasks.push(tokio::task::spawn_blocking(move || {
            while let Some(message) = rx.blocking_recv() {
                if message.redelivery {
                    stats.redeliveries.fetch_add(1, Ordering::Relaxed);
                }
                let started = Instant::now();
                stats.sent.fetch_add(1, Ordering::Relaxed);
                let mut request = agent.post(&url).header("Content-Type", "application/json");
                if let Some(authorization) = &authorization {
                    request = request.header("Authorization", authorization);
                }
                let answer = request.send(&message.payload[..]);
                match answer {
                    Ok(response) if response.status().as_u16() == 200 => {
                        stats.acked.fetch_add(1, Ordering::Relaxed);
                        stats.record_latency(started.elapsed());
                    }
                    Ok(response) => {
                        stats.failed.fetch_add(1, Ordering::Relaxed);
                        tracing::warn!(event = "sim.reading_refused", 
                            message = "Simulated reading refused.",
                            status = response.status().as_u16()
                        );
                    }
                    Err(err) => {
                        stats.failed.fetch_add(1, Ordering::Relaxed);
                        tracing::warn!(event = "sim.reading_failed", message = "Simulated reading not delivered.", error = %err);
                    }
                }
            }
        }));
    }
    Ok((senders, tasks))
}
