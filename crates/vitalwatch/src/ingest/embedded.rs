//! The embedded MQTT broker (ntex-mqtt 9.0): MQTT 3.1.1 and 5.0 over TLS, device identity
//! from the client certificate, and a PUBACK that is sent only after the reading is committed.
//!
//! ntex-mqtt encodes the PUBACK (PUBREC for QoS 2) only when the publish handler's future
//! resolves `Ok`, so the handler awaits the pipeline's commit before returning. Every ntex type
//! stays inside this file: ntex runs its workers on its own threads (a tokio current-thread
//! runtime each, via ntex's `tokio` feature) and calls the pipeline, whose channels work on any
//! runtime.
//!
//! What a device may do: publish its own readings to the telemetry topic. Subscriptions from
//! devices are refused with the spec's failure codes (0x80 in 3.1.1, NotAuthorized in 5.0).

use super::BrokerSettings;
use super::consumers::{self, Consumer, ConsumerSink, Registry};
use super::rate::TokenBucket;
use crate::metrics::Refusal;
use crate::pipeline::{IngestError, Pipeline};
use crate::pki;
use crate::store::Source;
use crate::tls::{self, PeerIdentity};
use anyhow::Context;
use ntex_mqtt::{MqttError, MqttServer, MqttServiceConfig, v3, v5};
use ntex_service::Service as _;
use ntex_service::cfg::SharedCfg;
use ntex_tls::rustls::{PeerCert, TlsAcceptor};
use std::cell::RefCell;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;
use std::time::Instant;
use vitalwatch_core::telemetry::DeviceId;

/// How long `stop` lets in-flight publishes finish before it stops the broker anyway.
const GRACEFUL_STOP: Duration = Duration::from_secs(30);

/// Why the broker ended a connection or refused a message.
#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    #[error("not authorized")]
    NotAuthorized,
    #[error("the reading could not be committed; it was not acknowledged")]
    NotCommitted,
    #[error("payload could not be read")]
    Payload,
}

impl From<()> for BrokerError {
    fn from(_: ()) -> BrokerError {
        BrokerError::Payload
    }
}

impl TryFrom<BrokerError> for v5::PublishAck {
    type Error = BrokerError;

    fn try_from(err: BrokerError) -> Result<Self, Self::Error> {
        Err(err)
    }
}

/// Per-connection state: who the peer proved to be.
#[derive(Clone)]
enum DeviceSession {
    /// A device: may publish its own readings (at most its connection's rate), may not
    /// subscribe.
    Device(Rc<str>, Rc<RefCell<TokenBucket>>),
    /// A consumer: may subscribe below `vitalwatch/`, may not publish.
    Consumer(Rc<Consumer>),
    /// A client without credentials on the plaintext listener, let in by
    /// `--mqtt-allow-anonymous`: its payloads' device ids are taken at their word.
    Anonymous(Rc<RefCell<TokenBucket>>),
}

/// Shared by all connections of one worker.
struct BrokerCtx {
    pipeline: Arc<Pipeline>,
    /// This worker's consumers and retained alert state.
    registry: Rc<Registry>,
    settings: BrokerSettings,
    revoked: RevocationCache,
    secrets: SecretCache,
    /// False on the plaintext listener.
    tls: bool,
}

/// Revoked serials, re-read from the PKI index whenever the file changes (a `stat` per
/// CONNECT), so a revocation takes effect at the next CONNECT without a restart.
struct RevocationCache {
    certs: pki::CertsDir,
    state: std::cell::RefCell<(Option<std::time::SystemTime>, Vec<String>)>,
}

impl RevocationCache {
    fn new(certs: pki::CertsDir) -> RevocationCache {
        RevocationCache {
            certs,
            state: std::cell::RefCell::new((None, Vec::new())),
        }
    }

    fn is_revoked(&self, serial: &str) -> bool {
        let modified = std::fs::metadata(self.certs.index())
            .and_then(|m| m.modified())
            .ok();
        let mut state = self.state.borrow_mut();
        if modified.is_some() && modified != state.0 {
            match pki::revoked_serials(&self.certs) {
                Ok(serials) => *state = (modified, serials),
                Err(err) => {
                    tracing::warn!(message = "Revocation list unreadable; keeping the last one.", error = %err)
                }
            }
        }
        state.1.iter().any(|s| s == serial)
    }
}

impl BrokerCtx {
    /// A fresh rate limiter for one connection.
    fn bucket(&self) -> Rc<RefCell<TokenBucket>> {
        Rc::new(RefCell::new(TokenBucket::new(
            self.settings.max_rate_per_connection,
            Instant::now(),
        )))
    }
}

enum Verdict {
    Device(Rc<str>),
    Consumer(Rc<str>),
    Anonymous,
    Refused(&'static str),
    BadCredentials,
}

/// Decides who a connecting client is: from its certificate over TLS, from its username and
/// password on the plaintext listener.
fn identify(
    io: &ntex_io::IoBoxed,
    ctx: &BrokerCtx,
    username: Option<&str>,
    password: Option<&[u8]>,
) -> Verdict {
    if !ctx.tls {
        return identify_by_credentials(ctx, username, password);
    }
    let peer = io.query::<PeerCert<'static>>();
    let Some(cert) = peer.as_ref() else {
        return Verdict::Refused("no client certificate");
    };
    let Some(PeerIdentity {
        common_name,
        serial,
        unit,
    }) = tls::peer_identity(cert.0.as_ref())
    else {
        return Verdict::Refused("unreadable client certificate");
    };
    if ctx.revoked.is_revoked(&serial) {
        return Verdict::Refused("revoked certificate");
    }
    let Ok(id) = DeviceId::parse(&common_name, ctx.pipeline.limits().max_device_id_len) else {
        return Verdict::Refused("certificate CN is not a valid device id");
    };
    match unit.as_deref() {
        None | Some("device") => Verdict::Device(Rc::from(id.as_str())),
        Some("consumer") => Verdict::Consumer(Rc::from(id.as_str())),
        Some(_) => Verdict::Refused("certificate is neither a device nor a consumer certificate"),
    }
}

fn identify_by_credentials(
    ctx: &BrokerCtx,
    username: Option<&str>,
    password: Option<&[u8]>,
) -> Verdict {
    let (Some(username), Some(password)) = (username, password) else {
        if ctx.settings.allow_anonymous && username.is_none() {
            return Verdict::Anonymous;
        }
        return Verdict::Refused("credentials required on the plaintext listener");
    };
    let Ok(id) = DeviceId::parse(username, ctx.pipeline.limits().max_device_id_len) else {
        return Verdict::BadCredentials;
    };
    if ctx.secrets.verify(id.as_str(), password) {
        Verdict::Device(Rc::from(id.as_str()))
    } else {
        Verdict::BadCredentials
    }
}

/// Device secrets (Argon2id hashes), re-read when the file changes.
struct SecretCache {
    certs: pki::CertsDir,
    state: std::cell::RefCell<(
        Option<std::time::SystemTime>,
        std::collections::BTreeMap<String, String>,
    )>,
}

impl SecretCache {
    fn new(certs: pki::CertsDir) -> SecretCache {
        SecretCache {
            certs,
            state: std::cell::RefCell::new((None, Default::default())),
        }
    }

    fn verify(&self, device_id: &str, password: &[u8]) -> bool {
        let path = self.certs.devices().join("secrets.json");
        let modified = std::fs::metadata(&path).and_then(|m| m.modified()).ok();
        let mut state = self.state.borrow_mut();
        if modified.is_some() && modified != state.0 {
            match pki::load_secrets(&self.certs) {
                Ok(secrets) => *state = (modified, secrets),
                Err(err) => {
                    tracing::warn!(message = "Device secrets unreadable; keeping the last ones.", error = %err)
                }
            }
        }
        pki::verify_secret(&state.1, device_id, password)
    }
}

fn refuse_connect(ctx: &BrokerCtx, why: &'static str, protocol: &'static str) {
    ctx.pipeline.refuse(Refusal::ConnectRefused, Source::Mqtt);
    tracing::info!(message = "MQTT connection refused.", reason = why, protocol);
}

async fn handle_publish(
    ctx: &BrokerCtx,
    session: &DeviceSession,
    topic: &str,
    payload: &[u8],
) -> Result<(), PublishError> {
    let (identity, bucket) = match session {
        DeviceSession::Device(device_id, bucket) => (Some(&**device_id), bucket),
        DeviceSession::Anonymous(bucket) => (None, bucket),
        DeviceSession::Consumer(_) => {
            // Consumers read; they never write readings.
            ctx.pipeline.refuse(Refusal::Unauthorized, Source::Mqtt);
            return Err(PublishError::WrongDevice);
        }
    };
    let wait = bucket.borrow_mut().take(Instant::now());
    if !wait.is_zero() {
        ctx.pipeline.metrics().rate_limited();
        ntex_util::time::sleep(wait).await;
    }
    if topic != ctx.settings.topic {
        ctx.pipeline.refuse(Refusal::Unauthorized, Source::Mqtt);
        return Err(PublishError::TopicNotAllowed);
    }
    match ctx
        .pipeline
        .ingest_device_payload(payload, Source::Mqtt, identity)
        .await
    {
        Ok(_) => Ok(()),
        Err(IngestError::Refused(_)) => Err(PublishError::Malformed),
        Err(IngestError::Unauthorized) => Err(PublishError::WrongDevice),
        Err(IngestError::Busy | IngestError::Store(_)) => Err(PublishError::NotCommitted),
    }
}

enum PublishError {
    TopicNotAllowed,
    /// Counted and audited by the pipeline; the message itself is answered per protocol.
    Malformed,
    WrongDevice,
    NotCommitted,
}

/// Sends the retained alert state for newly granted filters, after the SUBACK has gone out.
fn send_retained_after_suback(
    ctx: &Rc<BrokerCtx>,
    consumer: &Rc<Consumer>,
    granted: Vec<(String, ntex_mqtt::QoS)>,
) {
    if granted.is_empty() {
        return;
    }
    let registry = Rc::clone(&ctx.registry);
    let consumer = Rc::clone(consumer);
    ntex_rt::spawn(async move {
        ntex_util::time::sleep(ntex_util::time::Millis(10)).await;
        for (filter, qos) in granted {
            registry.send_retained(&consumer, &filter, qos);
        }
    });
}

/// The MQTT 3.1.1 server: publish, protocol (subscriptions) and connect handlers. A macro
/// because ntex's service types cannot be named outside the crate.
macro_rules! v3_server {
    ($ctx:expr) => {{
        let ctx: Rc<BrokerCtx> = $ctx;
    let connect_ctx = Rc::clone(&ctx);
    let protocol_ctx = Rc::clone(&ctx);
    let publish_ctx = ctx;
    v3::MqttServer::new(async move |session: &v3::Session<DeviceSession>, publish: v3::Publish| {
        let payload = publish.read_all().await.map_err(|_| BrokerError::Payload)?;
        match handle_publish(&publish_ctx, session, publish.publish_topic(), &payload).await {
            Ok(()) => Ok(()),
            // 3.1.1 has no negative PUBACK: a malformed reading is recorded as rejected (counted,
            // audited) and acknowledged, so it is not redelivered forever and later good
            // readings on this connection still flow.
            Err(PublishError::Malformed) => Ok(()),
            // Refused: the spec's only answer is to close the connection.
            Err(PublishError::TopicNotAllowed | PublishError::WrongDevice) => {
                Err(BrokerError::NotAuthorized)
            }
            // Not committed, so not acknowledged: closing makes the device redeliver.
            Err(PublishError::NotCommitted) => Err(BrokerError::NotCommitted),
        }
    })
    .protocol(async move |session: &v3::Session<DeviceSession>, message: v3::ProtocolMessage| {
        Ok::<_, BrokerError>(match message {
            v3::ProtocolMessage::Subscribe(mut subscribe) => {
                let mut granted = Vec::new();
                for mut subscription in subscribe.iter_mut() {
                    // Devices read nothing; consumers only below vitalwatch/ (0x80 otherwise).
                    let grant = match &**session {
                        DeviceSession::Device(..) | DeviceSession::Anonymous(_) => None,
                        DeviceSession::Consumer(consumer) => {
                            consumer.subscribe(subscription.topic(), subscription.qos())
                        }
                    };
                    match grant {
                        Some(qos) => {
                            subscription.confirm(qos);
                            granted.push((subscription.topic().to_string(), qos));
                        }
                        None => subscription.fail(),
                    }
                }
                if let DeviceSession::Consumer(consumer) = &**session {
                    send_retained_after_suback(&protocol_ctx, consumer, granted);
                }
                subscribe.ack()
            }
            v3::ProtocolMessage::Unsubscribe(unsubscribe) => {
                if let DeviceSession::Consumer(consumer) = &**session {
                    for topic in unsubscribe.iter() {
                        consumer.unsubscribe(topic);
                    }
                }
                unsubscribe.ack()
            }
            other => other.ack(),
        })
    })
    .build(async move |connect: v3::Connect| {
        let packet = connect.packet();
        let verdict = identify(
            connect.io(),
            &connect_ctx,
            packet.username.as_deref(),
            packet.password.as_deref(),
        );
        match verdict {
            Verdict::Anonymous => Ok::<_, BrokerError>(connect.ack(DeviceSession::Anonymous(connect_ctx.bucket()), false)),
            Verdict::BadCredentials => {
                refuse_connect(&connect_ctx, "bad username or password", "3.1.1");
                Ok(connect.bad_username_or_pwd())
            }
            Verdict::Device(device_id) => Ok::<_, BrokerError>(
                connect
                    .ack(DeviceSession::Device(device_id, connect_ctx.bucket()), false)
                    .max_packet_size(
                        std::num::NonZeroU32::new(connect_ctx.settings.max_packet_size)
                            .expect("max_packet_size is validated positive"),
                    ),
            ),
            Verdict::Consumer(name) => {
                let consumer = Consumer::new(name, ConsumerSink::V3(connect.sink()));
                connect_ctx.registry.add(&consumer);
                Ok(connect.ack(DeviceSession::Consumer(consumer), false))
            }
            Verdict::Refused(why) => {
                refuse_connect(&connect_ctx, why, "3.1.1");
                Ok(connect.not_authorized())
            }
        }
    })
    }};
}

/// The MQTT 5.0 server, as [`v3_server`] with PUBACK reason codes.
macro_rules! v5_server {
    ($ctx:expr) => {{
        let ctx: Rc<BrokerCtx> = $ctx;
        let connect_ctx = Rc::clone(&ctx);
        let protocol_ctx = Rc::clone(&ctx);
        let publish_ctx = ctx;
        v5::MqttServer::new(
            async move |session: &v5::Session<DeviceSession>, publish: v5::Publish| {
                let payload = publish.read_all().await.map_err(|_| BrokerError::Payload)?;
                let topic = publish.publish_topic().to_owned();
                let res = handle_publish(&publish_ctx, session, &topic, &payload).await;
                use v5::codec::PublishAckReason as Reason;
                match res {
                    Ok(()) => Ok(publish.ack()),
                    Err(PublishError::Malformed) => {
                        Ok(publish.ack().reason_code(Reason::PayloadFormatInvalid))
                    }
                    Err(PublishError::WrongDevice) => {
                        Ok(publish.ack().reason_code(Reason::NotAuthorized))
                    }
                    Err(PublishError::TopicNotAllowed) => {
                        Ok(publish.ack().reason_code(Reason::TopicNameInvalid))
                    }
                    Err(PublishError::NotCommitted) => Err(BrokerError::NotCommitted),
                }
            },
        )
        .protocol(
            async move |session: &v5::Session<DeviceSession>, message: v5::ProtocolMessage| {
                Ok::<_, BrokerError>(match message {
                    v5::ProtocolMessage::Subscribe(mut subscribe) => {
                        let mut granted = Vec::new();
                        for mut subscription in subscribe.iter_mut() {
                            let grant = match &**session {
                                DeviceSession::Device(..) | DeviceSession::Anonymous(_) => None,
                                DeviceSession::Consumer(consumer) => consumer
                                    .subscribe(subscription.topic(), subscription.options().qos),
                            };
                            match grant {
                                Some(qos) => {
                                    subscription.confirm(qos);
                                    granted.push((subscription.topic().to_string(), qos));
                                }
                                None => {
                                    subscription.fail(v5::codec::SubscribeAckReason::NotAuthorized)
                                }
                            }
                        }
                        if let DeviceSession::Consumer(consumer) = &**session {
                            send_retained_after_suback(&protocol_ctx, consumer, granted);
                        }
                        subscribe.ack()
                    }
                    v5::ProtocolMessage::Unsubscribe(unsubscribe) => {
                        if let DeviceSession::Consumer(consumer) = &**session {
                            for topic in unsubscribe.iter() {
                                consumer.unsubscribe(topic);
                            }
                        }
                        unsubscribe.ack()
                    }
                    other => other.ack(),
                })
            },
        )
        .build(async move |connect: v5::Connect| {
            let packet = connect.packet();
            let verdict = identify(
                connect.io(),
                &connect_ctx,
                packet.username.as_deref(),
                packet.password.as_deref(),
            );
            match verdict {
                Verdict::Anonymous => Ok::<_, BrokerError>(
                    connect.ack(DeviceSession::Anonymous(connect_ctx.bucket())),
                ),
                Verdict::BadCredentials => {
                    refuse_connect(&connect_ctx, "bad username or password", "5.0");
                    Ok(connect.failed(v5::codec::ConnectAckReason::BadUserNameOrPassword))
                }
                Verdict::Device(device_id) => Ok::<_, BrokerError>(
                    connect.ack(DeviceSession::Device(device_id, connect_ctx.bucket())),
                ),
                Verdict::Consumer(name) => {
                    let consumer = Consumer::new(name, ConsumerSink::V5(connect.sink()));
                    connect_ctx.registry.add(&consumer);
                    Ok(connect.ack(DeviceSession::Consumer(consumer)))
                }
                Verdict::Refused(why) => {
                    refuse_connect(&connect_ctx, why, "5.0");
                    Ok(connect.failed(v5::codec::ConnectAckReason::NotAuthorized))
                }
            }
        })
    }};
}

/// A running broker: its bound address and a way to stop it.
pub struct EmbeddedBroker {
    pub addr: SocketAddr,
    /// The plaintext listener's address, when one was asked for.
    pub plaintext_addr: Option<SocketAddr>,
    /// The MQTT-over-WebSocket (TLS) listener's address, when one was asked for.
    pub wss_addr: Option<SocketAddr>,
    server: ntex_server::Server<ntex_server::net::Connection>,
    system: ntex_rt::System,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl EmbeddedBroker {
    /// Stops accepting, lets in-flight publishes finish (their commits complete and are
    /// acknowledged), then ends the broker's threads.
    pub async fn stop(mut self) {
        // Graceful: in-flight publishes finish (committed, then acknowledged). Bounded, because
        // a stop once waited for hours (seen once, not reproduced); what is not acknowledged
        // by then is redelivered by its device, and queued readings still commit when the
        // store closes.
        if tokio::time::timeout(GRACEFUL_STOP, self.server.stop(true))
            .await
            .is_err()
        {
            tracing::warn!(
                message = "The MQTT broker did not stop gracefully in time; stopping it now.",
                waited_s = GRACEFUL_STOP.as_secs()
            );
            let _ = tokio::time::timeout(Duration::from_secs(5), self.server.stop(false)).await;
        }
        self.system.stop();
        if let Some(thread) = self.thread.take() {
            let _ = tokio::task::spawn_blocking(move || thread.join()).await;
        }
    }
}

/// Starts the broker on `settings.mqtts_addr` (TLS) on its own threads.
pub fn start(settings: BrokerSettings, pipeline: Arc<Pipeline>) -> anyhow::Result<EmbeddedBroker> {
    let client_auth = if settings.require_certificate {
        tls::ClientAuth::Required
    } else {
        tls::ClientAuth::Optional
    };
    let tls_config = tls::server_config(&settings.certs, client_auth, &[])
        .context("loading the broker's TLS configuration")?;
    let listener = std::net::TcpListener::bind(settings.mqtts_addr)
        .with_context(|| format!("binding MQTT over TLS to {}", settings.mqtts_addr))?;
    let addr = listener.local_addr()?;
    let plain_listener = match settings.plaintext_addr {
        Some(plain) => Some(
            std::net::TcpListener::bind(plain)
                .with_context(|| format!("binding plaintext MQTT to {plain}"))?,
        ),
        None => None,
    };
    let plain_addr = plain_listener
        .as_ref()
        .map(std::net::TcpListener::local_addr)
        .transpose()?;
    let wss_listener = match settings.wss_addr {
        Some(wss) => Some(
            std::net::TcpListener::bind(wss)
                .with_context(|| format!("binding MQTT over WebSocket to {wss}"))?,
        ),
        None => None,
    };
    let wss_addr = wss_listener
        .as_ref()
        .map(std::net::TcpListener::local_addr)
        .transpose()?;
    let wss_pipeline = Arc::clone(&pipeline);
    let wss_settings = settings.clone();
    let wss_tls = tls::server_config(
        &settings.certs,
        if settings.require_certificate {
            tls::ClientAuth::Required
        } else {
            tls::ClientAuth::Optional
        },
        &[],
    )
    .context("loading the WebSocket listener's TLS configuration")?;
    let plain_pipeline = Arc::clone(&pipeline);
    let plain_settings = settings.clone();
    let (tx, rx) = std::sync::mpsc::channel();
    let workers = settings.workers.max(1);
    let thread = std::thread::Builder::new()
        .name("vitalwatch-mqtt".to_owned())
        .spawn(move || {
            let res =
                ntex_rt::System::new("vitalwatch-mqtt", ntex_net::DefaultRuntime).run(move || {
                    let mqtt_config: SharedCfg = SharedCfg::new("MQTT").add(
                        MqttServiceConfig::new()
                            .set_max_size(settings.max_packet_size)
                            .set_max_receive(settings.max_inflight)
                            .set_max_qos(ntex_mqtt::QoS::ExactlyOnce)
                            // A message that arrived is processed even if its sender hangs up first
                            // (mosquitto_pub sends QoS 0 then DISCONNECT at once); a QoS 1/2 sender
                            // that never saw its PUBACK redelivers, and the store deduplicates.
                            .set_handle_qos_after_disconnect(Some(ntex_mqtt::QoS::ExactlyOnce))
                            .set_connect_timeout(ntex_util::time::Seconds(10)),
                    ).into();
                    let plain_config = mqtt_config.clone();
                    let wss_config = mqtt_config.clone();
                    let server = ntex_server::net::build()
                    .workers(workers)
                    .disable_signals()
                    .listen("mqtts", listener, mqtt_config, async move |_| {
                        let registry = Rc::new(Registry::default());
                        ntex_rt::spawn(consumers::dispatch(Rc::clone(&registry), pipeline.subscribe()));
                        let ctx = Rc::new(BrokerCtx {
                            registry,
                            pipeline: Arc::clone(&pipeline),
                            settings: settings.clone(),
                            revoked: RevocationCache::new(settings.certs.clone()),
                            secrets: SecretCache::new(settings.certs.clone()),
                            tls: true,
                        });
                        let on_tls_error = {
                            let ctx = Rc::clone(&ctx);
                            move |err: std::io::Error| {
                                ctx.pipeline.refuse(Refusal::TlsHandshake, Source::Mqtt);
                                tracing::debug!(message = "TLS handshake failed.", error = %err);
                                MqttError::Service(BrokerError::NotAuthorized)
                            }
                        };
                        TlsAcceptor::new(tls_config.clone())
                            .map_err(on_tls_error)
                            .and_then(
                                MqttServer::new()
                                    .v3(v3_server!(Rc::clone(&ctx)))
                                    .v5(v5_server!(ctx)),
                            )
                    })?;
                let server = match plain_listener {
                    None => server,
                    Some(plain) => {
                        let (pipeline, settings) = (Arc::clone(&plain_pipeline), plain_settings.clone());
                        server.listen("mqtt", plain, plain_config, async move |_| {
                            let registry = Rc::new(Registry::default());
                            ntex_rt::spawn(consumers::dispatch(Rc::clone(&registry), pipeline.subscribe()));
                            let ctx = Rc::new(BrokerCtx {
                                registry,
                                pipeline: Arc::clone(&pipeline),
                                settings: settings.clone(),
                                revoked: RevocationCache::new(settings.certs.clone()),
                                secrets: SecretCache::new(settings.certs.clone()),
                                tls: false,
                            });
                            MqttServer::new()
                                .v3(v3_server!(Rc::clone(&ctx)))
                                .v5(v5_server!(ctx))
                        })?
                    }
                };
                let server = match wss_listener {
                    None => server,
                    Some(wss) => {
                        let (pipeline, settings, tls_config) =
                            (Arc::clone(&wss_pipeline), wss_settings.clone(), Arc::clone(&wss_tls));
                        server.listen("mqtt-wss", wss, wss_config, async move |_| {
                            let registry = Rc::new(Registry::default());
                            ntex_rt::spawn(consumers::dispatch(Rc::clone(&registry), pipeline.subscribe()));
                            let ctx = Rc::new(BrokerCtx {
                                registry,
                                pipeline: Arc::clone(&pipeline),
                                settings: settings.clone(),
                                revoked: RevocationCache::new(settings.certs.clone()),
                                secrets: SecretCache::new(settings.certs.clone()),
                                tls: true,
                            });
                            let on_tls_error = {
                                let ctx = Rc::clone(&ctx);
                                move |err: std::io::Error| {
                                    ctx.pipeline.refuse(Refusal::TlsHandshake, Source::Mqtt);
                                    tracing::debug!(message = "TLS handshake failed.", error = %err);
                                    err
                                }
                            };
                            let mqtt = ntex_service::Pipeline::new(
                                (),
                                MqttServer::new()
                                    .v3(v3_server!(Rc::clone(&ctx)))
                                    .v5(v5_server!(ctx))
                                    .map_err(|err: MqttError<BrokerError>| {
                                        std::io::Error::other(format!("{err:?}"))
                                    }),
                            );
                            let http = ntex_service::Pipeline::new((), super::websocket::http_upgrade(mqtt.bind()));
                            TlsAcceptor::new(tls_config.clone())
                                .map_err(on_tls_error)
                                .and_then(async move |io: ntex_io::Io<_>| {
                                    http.call(io)
                                        .await
                                        .map_err(|err| std::io::Error::other(format!("{err:?}")))
                                })
                        })?
                    }
                };
                let server = server.run();
                    let _ = tx.send((server.clone(), ntex_rt::System::current()));
                    ntex_rt::spawn(async move {
                        let _ = server.await;
                    });
                    Ok(())
                });
            if let Err(err) = res {
                tracing::error!(message = "The MQTT broker stopped with an error.", error = %err);
            }
        })
        .context("starting the MQTT broker thread")?;
    let (server, system) = rx
        .recv_timeout(Duration::from_secs(10))
        .context("the MQTT broker did not start")?;
    Ok(EmbeddedBroker {
        addr,
        plaintext_addr: plain_addr,
        wss_addr,
        server,
        system,
        thread: Some(thread),
    })
}
