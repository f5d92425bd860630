//! External broker mode: VitalWatch subscribes to an existing broker (Mosquitto, EMQX...) as an
//! MQTT client instead of embedding one, and acknowledges each message to that broker only
//! after the reading is committed.
//!
//! - Persistent session (`clean_session = false`) under a fixed client id, QoS 1 subscription,
//!   manual acknowledgements: a message we did not acknowledge (we crashed, the commit failed,
//!   the connection dropped) stays in the broker's session and is delivered again; the store
//!   stores a redelivery once.
//! - Commits run concurrently (so the writer can group them), and the PUBACKs go out in the
//!   order the messages arrived, as MQTT 3.1.1 §4.6 asks.
//! - A message whose reading could not be committed is not acknowledged, and the connection is
//!   dropped so the broker redelivers it (3.1.1 redelivers only on a new connection).
//! - A malformed reading is recorded as rejected by the pipeline and then acknowledged, so it
//!   is not redelivered forever.
//! - There is no device identity here (the broker authenticated the device, not us), so
//!   readings go in with `identity: None`.
//!
//! The device's PUBACK comes from the external broker: our guarantee covers the broker →
//! VitalWatch hop; what the broker keeps across its own crashes is its operator's choice.
//!
//! Every rumqttc type stays inside this file.

use super::BrokerStatus;
use crate::config::BrokerUrl;
use crate::pipeline::{IngestError, Pipeline};
use crate::store::Source;
use anyhow::Context;
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, Publish, QoS, TlsConfiguration, Transport};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio::sync::{Semaphore, mpsc};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// The wait between reconnection attempts for the first [`FAST_RETRIES`] after a connection
/// is lost. A restarted broker is usually back within seconds, and with a shared subscription
/// Mosquitto (2.0.11) forgets the subscription across its restart: what it accepts from
/// devices before we subscribe again reaches no one. So retry often at first.
const RECONNECT_FAST: Duration = Duration::from_millis(100);
/// Attempts at [`RECONNECT_FAST`] (5 s) before backing off.
const FAST_RETRIES: u32 = 50;
/// The first wait once backing off; it doubles up to `reconnect_max`.
const RECONNECT_MIN: Duration = Duration::from_millis(250);
/// How long a clean shutdown waits for in-flight commits and their acknowledgements.
const SHUTDOWN_DEADLINE: Duration = Duration::from_secs(5);
/// Largest packet accepted from the broker. Generous on purpose: an oversized reading must
/// reach the pipeline to be refused (and acknowledged), not break the connection and come back
/// forever.
const MAX_INCOMING_PACKET: usize = 1024 * 1024;
/// Requests (acknowledgements, subscriptions) waiting for the event loop.
const REQUEST_CAPACITY: usize = 1024;

/// How to reach and use the external broker (resolved from `[mqtt]`).
#[derive(Clone, Debug)]
pub struct ExternalSettings {
    pub url: BrokerUrl,
    /// CA certificates of the broker (PEM); used only with TLS.
    pub ca: PathBuf,
    /// Client certificate and key for mutual TLS.
    pub client_cert: Option<(PathBuf, PathBuf)>,
    pub client_id: String,
    pub topic: String,
    pub share_group: Option<String>,
    /// Readings being committed at once; the broker's own in-flight window (Mosquitto's
    /// `max_inflight_messages`) usually binds first.
    pub max_inflight: u16,
    pub reconnect_max: Duration,
}

impl ExternalSettings {
    /// Resolves `[mqtt]` (already validated by [`crate::config::Config::load`]); `None` when
    /// no external broker is configured.
    pub fn from_config(config: &crate::config::Config) -> anyhow::Result<Option<ExternalSettings>> {
        let mqtt = &config.mqtt;
        let Some(broker) = &mqtt.broker else {
            return Ok(None);
        };
        let url = BrokerUrl::parse(broker, mqtt.use_tls)
            .map_err(|err| anyhow::anyhow!("mqtt.broker: {err}"))?;
        let ca = mqtt
            .broker_ca
            .clone()
            .unwrap_or_else(|| config.certs_dir().join("ca.crt"));
        Ok(Some(ExternalSettings {
            url,
            ca,
            client_cert: mqtt.broker_cert.clone().zip(mqtt.broker_key.clone()),
            client_id: mqtt.client_id.clone(),
            topic: mqtt.topic.clone(),
            share_group: mqtt.share_group.clone(),
            max_inflight: mqtt.max_inflight,
            reconnect_max: Duration::from_millis(mqtt.reconnect_max_ms),
        }))
    }

    /// The topic filter we subscribe to.
    pub fn filter(&self) -> String {
        match &self.share_group {
            Some(group) => format!("$share/{group}/{}", self.topic),
            None => self.topic.clone(),
        }
    }
}

/// A running subscription: stop it to acknowledge what is committed and disconnect.
pub struct ExternalBroker {
    task: JoinHandle<()>,
    stop: CancellationToken,
}

impl ExternalBroker {
    /// Stops taking new messages, waits (bounded) for in-flight commits and sends their
    /// acknowledgements, then disconnects. What was not acknowledged is redelivered later.
    pub async fn stop(self) {
        self.stop.cancel();
        let _ = self.task.await;
    }
}

/// Connects in the background; connection state shows in `status` (and `/health`).
pub fn start(
    settings: ExternalSettings,
    pipeline: Arc<Pipeline>,
    status: BrokerStatus,
) -> anyhow::Result<ExternalBroker> {
    let mut options = MqttOptions::new(
        settings.client_id.clone(),
        settings.url.host.clone(),
        settings.url.port,
    );
    options
        .set_clean_session(false)
        .set_manual_acks(true)
        .set_keep_alive(Duration::from_secs(30))
        .set_max_packet_size(MAX_INCOMING_PACKET, 64 * 1024);
    if settings.url.tls {
        let client = settings
            .client_cert
            .as_ref()
            .map(|(cert, key)| (cert.as_path(), key.as_path()));
        let config = crate::tls::client_config(&settings.ca, client)
            .context("loading the TLS configuration for the external broker")?;
        options.set_transport(Transport::tls_with_config(TlsConfiguration::Rustls(config)));
    } else {
        tracing::warn!(event = "broker.plaintext",
            message = "Connecting to the external broker WITHOUT TLS: readings cross the network in clear text.",
            broker = %settings.url,
        );
    }
    status.external(&settings.url.to_string());
    let stop = CancellationToken::new();
    let task = tokio::spawn(run(options, settings, pipeline, status, stop.clone()));
    Ok(ExternalBroker { task, stop })
}

/// A message being committed; resolves to the message to acknowledge, or `None` when the
/// reading could not be committed (so it must not be acknowledged).
type Pending = JoinHandle<Option<Publish>>;

async fn run(
    options: MqttOptions,
    settings: ExternalSettings,
    pipeline: Arc<Pipeline>,
    status: BrokerStatus,
    stop: CancellationToken,
) {
    let (client, mut eventloop) = AsyncClient::new(options, REQUEST_CAPACITY);
    // Unbounded on purpose: the event loop must never wait on the acker, because the acker's
    // acknowledgements only leave when the event loop is polled (and rumqttc drains requests
    // only once it has handed out every packet it read). What bounds it is the broker's
    // in-flight window for QoS 1 and `commits` below.
    let (pending_tx, pending_rx) = mpsc::unbounded_channel::<Pending>();
    let commits = Arc::new(Semaphore::new(usize::from(settings.max_inflight)));
    let reconnect = Arc::new(AtomicBool::new(false));
    let acker = tokio::spawn(acknowledge_in_order(
        client.clone(),
        pending_rx,
        Arc::clone(&reconnect),
    ));
    let filter = settings.filter();
    // Failed attempts since the connection was last up.
    let mut failures: u32 = 0;
    loop {
        let event = tokio::select! {
            () = stop.cancelled() => break,
            event = eventloop.poll() => event,
        };
        match event {
            Ok(Event::Incoming(Packet::ConnAck(connack))) => {
                failures = 0;
                status.connected();
                tracing::info!(event = "broker.connected",
                    message = "Connected to the external broker.",
                    broker = %settings.url,
                    session_present = connack.session_present,
                );
                // Always (re)subscribe: harmless when the session kept the subscription, and
                // needed when the broker lost it (restarted without persistence).
                if let Err(err) = client.try_subscribe(filter.clone(), QoS::AtLeastOnce) {
                    tracing::error!(event = "broker.subscribe_failed", message = "Subscribing failed.", error = %err);
                }
            }
            Ok(Event::Incoming(Packet::SubAck(suback))) => {
                let refused = suback
                    .return_codes
                    .iter()
                    .any(|code| matches!(code, rumqttc::SubscribeReasonCode::Failure));
                if refused {
                    status.disconnected(format!("the broker refused the subscription to {filter}"));
                    tracing::error!(event = "broker.subscribe_refused", message = "The external broker refused our subscription.", filter = %filter);
                } else {
                    status.subscribed();
                }
            }
            Ok(Event::Incoming(Packet::Publish(publish))) => {
                // Waits while `max_inflight` commits are running: backpressure to the broker.
                // A permit is released when the commit ends, not when it is acknowledged.
                let permit = tokio::select! {
                    () = stop.cancelled() => break,
                    permit = Arc::clone(&commits).acquire_owned() => {
                        permit.expect("the commit semaphore is never closed")
                    }
                };
                let pipeline = Arc::clone(&pipeline);
                let pending = tokio::spawn(async move {
                    let _permit = permit;
                    match pipeline
                        .ingest_device_payload(&publish.payload, Source::Mqtt, None)
                        .await
                    {
                        // Stored, or refused and recorded (counted, audited): acknowledge.
                        Ok(_) | Err(IngestError::Refused(_) | IngestError::Unauthorized) => {
                            Some(publish)
                        }
                        Err(err @ (IngestError::Busy | IngestError::Store(_))) => {
                            tracing::error!(event = "broker.commit_failed",
                                message = "A reading from the external broker was not committed; it stays unacknowledged and will be redelivered.",
                                error = %err,
                            );
                            None
                        }
                    }
                });
                if pending_tx.send(pending).is_err() {
                    break;
                }
            }
            Ok(_) => {}
            Err(err) => {
                status.disconnected(err.to_string());
                let wait = reconnect_wait(failures, settings.reconnect_max);
                // Once per outage while retrying fast, then at every (growing) wait.
                if failures == 0 || failures >= FAST_RETRIES {
                    tracing::warn!(event = "broker.disconnected",
                        message = "The external broker connection is down; retrying.",
                        broker = %settings.url,
                        error = %err,
                        retry_in_ms = wait.as_millis() as u64,
                    );
                }
                failures = failures.saturating_add(1);
                tokio::select! {
                    () = stop.cancelled() => break,
                    () = tokio::time::sleep(wait) => {}
                }
            }
        }
        if reconnect.swap(false, Ordering::AcqRel) {
            // Drop the connection so the broker redelivers what we could not commit.
            status.disconnected("a reading could not be committed; reconnecting".to_owned());
            eventloop.clean();
            eventloop.network = None;
        }
    }
    shutdown(client, eventloop, pending_tx, acker).await;
    status.disconnected("stopped".to_owned());
}

/// The wait before the next reconnection attempt after `failures` failed ones.
fn reconnect_wait(failures: u32, max: Duration) -> Duration {
    match failures.checked_sub(FAST_RETRIES) {
        None => RECONNECT_FAST.min(max),
        Some(doublings) => RECONNECT_MIN
            .saturating_mul(2u32.saturating_pow(doublings.min(16)))
            .min(max),
    }
}

/// Acknowledges committed messages in arrival order.
async fn acknowledge_in_order(
    client: AsyncClient,
    mut pending: mpsc::UnboundedReceiver<Pending>,
    reconnect: Arc<AtomicBool>,
) {
    // Once the event loop is gone every later ack fails the same way: log once, count the rest.
    let mut n_unsent: u64 = 0;
    while let Some(handle) = pending.recv().await {
        match handle.await {
            Ok(Some(publish)) => {
                if publish.qos != QoS::AtMostOnce
                    && let Err(err) = client.ack(&publish).await
                {
                    if n_unsent == 0 {
                        tracing::warn!(event = "broker.ack_failed", message = "Acknowledgement not sent; the broker will redeliver (stored once).", error = %err);
                    }
                    n_unsent += 1;
                }
            }
            Ok(None) | Err(_) => reconnect.store(true, Ordering::Release),
        }
    }
    if n_unsent > 1 {
        tracing::warn!(
            event = "broker.unacked",
            message = "Committed readings left unacknowledged; the broker will redeliver them (stored once).",
            count = n_unsent,
        );
    }
}

/// Lets in-flight commits finish and their acknowledgements leave, then disconnects.
async fn shutdown(
    client: AsyncClient,
    mut eventloop: rumqttc::EventLoop,
    pending_tx: mpsc::UnboundedSender<Pending>,
    acker: JoinHandle<()>,
) {
    drop(pending_tx);
    let deadline = tokio::time::Instant::now() + SHUTDOWN_DEADLINE;
    let mut acker = std::pin::pin!(acker);
    // Keep the connection polled so the acknowledgements are written out.
    let acked_all = loop {
        tokio::select! {
            _ = &mut acker => break true,
            () = tokio::time::sleep_until(deadline) => break false,
            event = eventloop.poll() => if event.is_err() { break false },
        }
    };
    if !acked_all {
        tracing::warn!(
            event = "broker.unacked_at_stop",
            message = "Stopped before every committed reading was acknowledged; the broker will redeliver those (stored once)."
        );
        return;
    }
    if client.try_disconnect().is_ok() {
        while tokio::time::Instant::now() < deadline {
            match tokio::time::timeout_at(deadline, eventloop.poll()).await {
                Ok(Ok(Event::Outgoing(rumqttc::Outgoing::Disconnect))) | Ok(Err(_)) | Err(_) => {
                    break;
                }
                Ok(Ok(_)) => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shared_subscription_filter() {
        let mut settings = ExternalSettings {
            url: BrokerUrl::parse("broker", true).unwrap(),
            ca: PathBuf::from("ca.crt"),
            client_cert: None,
            client_id: "vitalwatch".to_owned(),
            topic: "/iot/health".to_owned(),
            share_group: None,
            max_inflight: 32,
            reconnect_max: Duration::from_secs(30),
        };
        assert_eq!(settings.filter(), "/iot/health");
        settings.share_group = Some("vw".to_owned());
        assert_eq!(settings.filter(), "$share/vw//iot/health");
    }

    #[test]
    fn reconnection_is_fast_for_five_seconds_then_backs_off_to_the_maximum() {
        let max = Duration::from_secs(30);
        let waits: Vec<Duration> = (0..70).map(|n| reconnect_wait(n, max)).collect();
        assert!(waits[..50].iter().all(|w| *w == RECONNECT_FAST));
        assert_eq!(waits[..50].iter().sum::<Duration>(), Duration::from_secs(5));
        assert_eq!(waits[50], RECONNECT_MIN);
        assert_eq!(waits[51], RECONNECT_MIN * 2);
        assert_eq!(waits[56], Duration::from_secs(16));
        assert!(waits[57..].iter().all(|w| *w == max));
        assert_eq!(reconnect_wait(u32::MAX, max), max);
        // A maximum below the fast wait bounds every wait.
        let small = Duration::from_millis(50);
        assert_eq!(reconnect_wait(0, small), small);
        assert_eq!(reconnect_wait(60, small), small);
    }
}
