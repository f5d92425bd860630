//! Simulated devices over MQTT with TLS (rumqttc): one client per device, each with its own
//! client certificate from the project's PKI (issued on the spot when missing and the CA key
//! is at hand). A message counts as sent when written to the socket and as acknowledged on
//! its PUBACK; whatever is unacknowledged when the device stops counts as failed.

use super::{Devices, Outgoing, Stats};
use crate::pki::{self, CertsDir};
use crate::tls::{load_certs, load_key};
use anyhow::{Context, bail};
use rumqttc::{
    AsyncClient, ConnectionError, Event, EventLoop, MqttOptions, Outgoing as MqttOutgoing, Packet,
    QoS, TlsConfiguration, Transport,
};
use rustls::{ClientConfig, RootCertStore};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// How long the first connection may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);
/// After the last message: how long to wait for outstanding acknowledgements.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);
/// A device that cannot reconnect for this long gives up (its messages count as failed).
const GIVE_UP_AFTER: Duration = Duration::from_secs(30);
/// Messages in flight (sent, not yet acknowledged) per device.
const INFLIGHT: u16 = 100;

#[derive(Clone, Debug)]
pub struct MqttTarget {
    /// Host name or IP; also the name the server certificate must carry.
    pub host: String,
    pub port: u16,
    pub topic: String,
    /// 0 or 1.
    pub qos: u8,
    /// The CA certificate that signed the server's.
    pub ca: PathBuf,
    /// Where device certificates are (`devices/ID.crt`, `ID.key`) and issued from.
    pub certs: CertsDir,
}

/// Parses `mqtts://host[:port]` (default port 8883).
pub fn parse_broker(url: &str) -> anyhow::Result<(String, u16)> {
    let Some(rest) = url.strip_prefix("mqtts://") else {
        bail!("--broker {url:?}: only mqtts:// (MQTT over TLS) is supported");
    };
    let rest = rest.trim_end_matches('/');
    let (host, port) = match rest.rsplit_once(':') {
        Some((host, port)) if !host.ends_with(']') || host.starts_with('[') => (
            host,
            port.parse::<u16>()
                .with_context(|| format!("--broker {url:?}: bad port"))?,
        ),
        _ => (rest, 8883),
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    anyhow::ensure!(!host.is_empty(), "--broker {url:?}: no host");
    Ok((host.to_owned(), port))
}

/// The certificate and key of `device_id`, issued now when missing.
fn device_identity(certs: &CertsDir, device_id: &str) -> anyhow::Result<(PathBuf, PathBuf)> {
    let (cert, key) = (certs.device_cert(device_id), certs.device_key(device_id));
    if !(cert.exists() && key.exists()) {
        if !certs.ca_key().exists() {
            bail!(
                "no certificate for device {device_id} in {} and no CA key there to issue one \
                 (run `vitalwatch certs device {device_id}` where the CA is)",
                certs.devices().display()
            );
        }
        pki::issue_device(certs, device_id, true)
            .with_context(|| format!("issuing a certificate for device {device_id}"))?;
    }
    Ok((cert, key))
}

fn client_config(target: &MqttTarget, device_id: &str) -> anyhow::Result<Arc<ClientConfig>> {
    let (cert, key) = device_identity(&target.certs, device_id)?;
    let mut roots = RootCertStore::empty();
    for ca in load_certs(&target.ca)? {
        roots.add(ca).context("adding the CA to the root store")?;
    }
    let config =
        ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .context("selecting TLS versions")?
            .with_root_certificates(roots)
            .with_client_auth_cert(load_certs(&cert)?, load_key(&key)?)
            .with_context(|| format!("loading the certificate of device {device_id}"))?;
    Ok(Arc::new(config))
}

/// Connects every device (issuing certificates as needed) and starts its task. Fails when a
/// device cannot connect.
pub async fn start_devices(
    target: &MqttTarget,
    device_ids: &[String],
    queue: usize,
    stats: Arc<Stats>,
) -> anyhow::Result<Devices> {
    let configs = {
        let target = target.clone();
        let device_ids = device_ids.to_vec();
        // Issuing writes the index and CRL: one device after another, off the async threads.
        tokio::task::spawn_blocking(move || {
            device_ids
                .iter()
                .map(|id| client_config(&target, id))
                .collect::<anyhow::Result<Vec<_>>>()
        })
        .await
        .context("the certificate task failed")??
    };
    let mut connecting = Vec::with_capacity(device_ids.len());
    for (device_id, config) in device_ids.iter().zip(configs) {
        let mut options = MqttOptions::new(device_id, &target.host, target.port);
        options
            .set_keep_alive(Duration::from_secs(30))
            .set_clean_session(true)
            .set_inflight(INFLIGHT)
            .set_transport(Transport::tls_with_config(TlsConfiguration::Rustls(config)));
        let (client, eventloop) = AsyncClient::new(options, 1024);
        let device_id = device_id.clone();
        connecting.push(tokio::spawn(async move {
            let eventloop = connect(eventloop)
                .await
                .with_context(|| format!("device {device_id} could not connect"))?;
            anyhow::Ok((device_id, client, eventloop))
        }));
    }
    let mut senders = Vec::with_capacity(device_ids.len());
    let mut tasks = Vec::with_capacity(device_ids.len());
    let qos = if target.qos == 0 {
        QoS::AtMostOnce
    } else {
        QoS::AtLeastOnce
    };
    for handle in connecting {
        let (device_id, client, eventloop) = handle.await.context("a connect task failed")??;
        let (tx, rx) = mpsc::channel(queue);
        senders.push(tx);
        let device = Device {
            device_id,
            client,
            topic: target.topic.clone(),
            qos,
            stats: Arc::clone(&stats),
        };
        tasks.push(tokio::spawn(device.run(eventloop, rx)));
    }
    Ok((senders, tasks))
}

async fn connect(mut eventloop: EventLoop) -> anyhow::Result<EventLoop> {
    let deadline = tokio::time::Instant::now() + CONNECT_TIMEOUT;
    loop {
        let event = tokio::time::timeout_at(deadline, eventloop.poll())
            .await
            .context("timed out")?;
        match event {
            Ok(Event::Incoming(Packet::ConnAck(_))) => return Ok(eventloop),
            Ok(_) => {}
            Err(err) => return Err(describe(err)),
        }
    }
}

fn describe(err: ConnectionError) -> anyhow::Error {
    anyhow::anyhow!("{err}")
}

struct Device {
    device_id: String,
    client: AsyncClient,
    topic: String,
    qos: QoS,
    stats: Arc<Stats>,
}

impl Device {
    async fn run(self, mut eventloop: EventLoop, mut rx: mpsc::Receiver<Outgoing>) {
        let queued = Arc::new(AtomicU64::new(0));
        let publisher = {
            let client = self.client.clone();
            let topic = self.topic.clone();
            let qos = self.qos;
            let queued = Arc::clone(&queued);
            let stats = Arc::clone(&self.stats);
            tokio::spawn(async move {
                while let Some(message) = rx.recv().await {
                    if message.redelivery {
                        stats.redeliveries.fetch_add(1, Ordering::Relaxed);
                    }
                    if client
                        .publish(topic.as_str(), qos, false, message.payload)
                        .await
                        .is_err()
                    {
                        stats.failed.fetch_add(1, Ordering::Relaxed);
                    } else {
                        queued.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        };
        let mut publisher = Some(publisher);
        let mut written = 0u64;
        let mut pending: HashMap<u16, Instant> = HashMap::new();
        let mut drain_deadline: Option<tokio::time::Instant> = None;
        let mut down_since: Option<Instant> = None;
        loop {
            if drain_deadline.is_some()
                && pending.is_empty()
                && written == queued.load(Ordering::Relaxed)
            {
                break;
            }
            tokio::select! {
                joined = async { publisher.as_mut().expect("polled only while running").await },
                    if publisher.is_some() =>
                {
                    let _ = joined;
                    publisher = None;
                    drain_deadline = Some(tokio::time::Instant::now() + DRAIN_TIMEOUT);
                }
                () = async { tokio::time::sleep_until(drain_deadline.expect("set")).await },
                    if drain_deadline.is_some() => break,
                event = eventloop.poll() => match event {
                    Ok(Event::Outgoing(MqttOutgoing::Publish(pkid))) => {
                        written += 1;
                        self.stats.sent.fetch_add(1, Ordering::Relaxed);
                        if self.qos != QoS::AtMostOnce {
                            pending.insert(pkid, Instant::now());
                        }
                    }
                    Ok(Event::Incoming(Packet::PubAck(ack))) => {
                        if let Some(sent_at) = pending.remove(&ack.pkid) {
                            self.stats.acked.fetch_add(1, Ordering::Relaxed);
                            self.stats.record_latency(sent_at.elapsed());
                        }
                    }
                    Ok(Event::Incoming(Packet::ConnAck(_))) => down_since = None,
                    Ok(_) => {}
                    Err(err) => {
                        self.stats.reconnects.fetch_add(1, Ordering::Relaxed);
                        let since = *down_since.get_or_insert_with(Instant::now);
                        tracing::warn!(event = "sim.reconnecting",
                            message = "Simulated device lost its connection; retrying.",
                            device_id = %self.device_id,
                            error = %err,
                        );
                        if since.elapsed() > GIVE_UP_AFTER {
                            tracing::error!(event = "sim.gave_up",
                                message = "Simulated device gave up reconnecting.",
                                device_id = %self.device_id,
                            );
                            break;
                        }
                        tokio::time::sleep(Duration::from_millis(500)).await;
                    }
                },
            }
        }
        if let Some(publisher) = publisher {
            publisher.abort();
        }
        let unwritten = queued.load(Ordering::Relaxed).saturating_sub(written);
        self.stats
            .failed
            .fetch_add(pending.len() as u64 + unwritten, Ordering::Relaxed);
        // Say goodbye so the broker does not wait for a keep-alive timeout.
        if self.client.try_disconnect().is_ok() {
            let _ = tokio::time::timeout(Duration::from_secs(1), async {
                while let Ok(event) = eventloop.poll().await {
                    if matches!(event, Event::Outgoing(MqttOutgoing::Disconnect)) {
                        break;
                    }
                }
            })
            .await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broker_urls_parse() {
        assert_eq!(
            parse_broker("mqtts://localhost:8883").unwrap(),
            ("localhost".to_owned(), 8883)
        );
        assert_eq!(
            parse_broker("mqtts://127.0.0.1").unwrap(),
            ("127.0.0.1".to_owned(), 8883)
        );
        assert_eq!(
            parse_broker("mqtts://[::1]:9000").unwrap(),
            ("::1".to_owned(), 9000)
        );
        assert!(parse_broker("mqtt://localhost:1883").is_err());
        assert!(parse_broker("mqtts://host:notaport").is_err());
    }
}
