//! The embedded MQTT broker (ntex-mqtt 9.0): MQTT 3.1.1 and 5.0 over TLS, device identity
//! from the client certificate, and a PUBACK that is sent only after the reading is committed.
//!
//! ntex-mqtt encodes the PUBACK (PUBREC for QoS 2) only when the publish handler's future
//! resolves `Ok`, so the handler awaits the pipeline's commit before returning. ntex runs its
//! workers on its own threads (a tokio current-thread runtime each, via ntex's `tokio`
//! feature) and calls the pipeline, whose channels work on any runtime.
//!
//! This file only translates: it gathers the facts of a CONNECT, SUBSCRIBE or PUBLISH, asks
//! [`super::session`] for the decision and turns the answer into ntex packets. Every ntex
//! type stays here and in `websocket.rs`.
//!
//! What a device may do: publish its own readings to the telemetry topic. Subscriptions from
//! devices are refused with the spec's failure codes (0x80 in 3.1.1, NotAuthorized in 5.0).

use super::BrokerSettings;
use super::consumers::{self, Consumer, Pending, Registry, Sink};
use super::identity::Identities;
use super::rate::TokenBucket;
use super::session::{
    self, Answer3, Answer5, CloseReason, ConnackCode, ConnectRefusal, CredentialStep, Grant,
    PeerCertificate, PubackCode, PublishOutcome, Qos, Role, Verdict,
};
use crate::metrics::Refusal;
use crate::pipeline::{IngestError, Pipeline};
use crate::store::{ItemOutcome, Source};
use crate::tls;
use anyhow::Context;
use ntex_bytes::Bytes;
use ntex_io::{Io, IoBoxed};
use ntex_mqtt::{MqttError, MqttServer, MqttServiceConfig, v3, v5};
use ntex_service::boxed::{self, BoxService};
use ntex_service::cfg::SharedCfg;
use ntex_service::{RequestState, Service, State};
use ntex_tls::rustls::{PeerCert, TlsAcceptor};
use std::cell::RefCell;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;
use std::time::Instant;

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

impl From<CloseReason> for BrokerError {
    fn from(reason: CloseReason) -> BrokerError {
        match reason {
            CloseReason::NotAuthorized => BrokerError::NotAuthorized,
            CloseReason::NotCommitted => BrokerError::NotCommitted,
        }
    }
}

impl TryFrom<BrokerError> for v5::PublishAck {
    type Error = BrokerError;

    fn try_from(err: BrokerError) -> Result<Self, Self::Error> {
        Err(err)
    }
}

/// How to reach a connected consumer: its connection's sink.
pub enum NtexSink {
    V3(v3::MqttSink),
    V5(v5::MqttSink),
}

impl Sink for NtexSink {
    type Payload = Bytes;

    fn is_open(&self) -> bool {
        match self {
            NtexSink::V3(sink) => sink.is_open(),
            NtexSink::V5(sink) => sink.is_open(),
        }
    }

    fn send_at_most_once(&self, topic: &str, payload: Bytes, retain: bool) -> bool {
        match self {
            NtexSink::V3(sink) => {
                let builder = sink.publish(topic.to_owned());
                let builder = if retain { builder.retain() } else { builder };
                builder.send_at_most_once(payload).is_ok()
            }
            NtexSink::V5(sink) => sink
                .publish(topic.to_owned())
                .retain(retain)
                .send_at_most_once(payload)
                .is_ok(),
        }
    }

    fn send_at_least_once(&self, topic: &str, payload: Bytes, retain: bool, pending: Pending) {
        let topic = topic.to_owned();
        match self {
            NtexSink::V3(sink) => {
                let builder = sink.publish(topic);
                let builder = if retain { builder.retain() } else { builder };
                ntex_rt::spawn(async move {
                    let _ = builder.send_at_least_once(payload).await;
                    drop(pending);
                });
            }
            NtexSink::V5(sink) => {
                let builder = sink.publish(topic).retain(retain);
                ntex_rt::spawn(async move {
                    let _ = builder.send_at_least_once(payload).await;
                    drop(pending);
                });
            }
        }
    }
}

type NtexConsumer = Consumer<NtexSink>;

/// Per-connection state: who the peer proved to be.
#[derive(Clone)]
enum DeviceSession {
    /// A device: may publish its own readings (at most its connection's rate), may not
    /// subscribe.
    Device(Rc<str>, Rc<RefCell<TokenBucket>>),
    /// A consumer: may subscribe below `vitalwatch/`, may not publish.
    Consumer(Rc<NtexConsumer>),
    /// A client without credentials on the plaintext listener, let in by
    /// `--mqtt-allow-anonymous`: its payloads' device ids are taken at their word.
    Anonymous(Rc<RefCell<TokenBucket>>),
}

impl DeviceSession {
    fn role(&self) -> Role {
        match self {
            DeviceSession::Device(..) => Role::Device,
            DeviceSession::Consumer(_) => Role::Consumer,
            DeviceSession::Anonymous(_) => Role::Anonymous,
        }
    }
}

/// Shared by every worker and listener.
struct Shared {
    pipeline: Arc<Pipeline>,
    settings: BrokerSettings,
    identities: Arc<Identities>,
    tls_config: Arc<rustls::ServerConfig>,
}

/// Shared by all connections of one listener on one worker.
struct BrokerCtx {
    shared: Arc<Shared>,
    /// This worker's consumers and retained alert state.
    registry: Rc<Registry<NtexSink>>,
    /// False on the plaintext listener.
    tls: bool,
}

impl BrokerCtx {
    /// The context of one listener on the calling worker, with its consumer registry fed from
    /// the event bus.
    fn on_this_worker(shared: &Arc<Shared>, tls: bool) -> Rc<BrokerCtx> {
        let registry = Rc::new(Registry::default());
        ntex_rt::spawn(consumers::dispatch(
            Rc::clone(&registry),
            shared.pipeline.subscribe(),
        ));
        Rc::new(BrokerCtx {
            shared: Arc::clone(shared),
            registry,
            tls,
        })
    }

    fn pipeline(&self) -> &Pipeline {
        &self.shared.pipeline
    }

    /// A fresh rate limiter for one connection.
    fn bucket(&self) -> Rc<RefCell<TokenBucket>> {
        Rc::new(RefCell::new(TokenBucket::new(
            self.shared.settings.max_rate_per_connection,
            Instant::now(),
        )))
    }
}

/// Decides who a connecting client is: from its certificate over TLS, from its username and
/// password on the plaintext listener. The revocation and secret checks run off the worker.
async fn identify(
    ctx: &BrokerCtx,
    cert: PeerCertificate,
    username: Option<&str>,
    password: Option<&[u8]>,
) -> Verdict {
    let max_id_len = ctx.pipeline().limits().max_device_id_len;
    let identities = &ctx.shared.identities;
    if !ctx.tls {
        let allow_anonymous = ctx.shared.settings.allow_anonymous;
        return match session::by_credentials(username, password, allow_anonymous, max_id_len) {
            CredentialStep::Decided(verdict) => verdict,
            CredentialStep::CheckSecret(device_id) => {
                let matched = identities
                    .verify_secret(device_id.as_str(), password.unwrap_or_default())
                    .await;
                session::after_secret_check(device_id, matched)
            }
        };
    }
    let revoked = match cert.serial() {
        Some(serial) => match identities.is_revoked(serial).await {
            Some(revoked) => revoked,
            None => return Verdict::Refused(ConnectRefusal::CheckFailed),
        },
        None => false,
    };
    session::by_certificate(&cert, revoked, max_id_len)
}

/// What the TLS layer of `io` says about the client certificate.
fn peer_certificate(io: &IoBoxed) -> PeerCertificate {
    let peer = io.query::<PeerCert<'static>>();
    match peer.as_ref() {
        None => PeerCertificate::Missing,
        Some(cert) => match tls::peer_identity(cert.0.as_ref()) {
            Some(identity) => PeerCertificate::Read(identity),
            None => PeerCertificate::Unreadable,
        },
    }
}

fn refuse_connect(ctx: &BrokerCtx, why: ConnectRefusal, protocol: &'static str) {
    ctx.pipeline().refuse(Refusal::ConnectRefused, Source::Mqtt);
    tracing::info!(
        message = "MQTT connection refused.",
        reason = why.as_str(),
        protocol
    );
}

async fn handle_publish(
    ctx: &BrokerCtx,
    session: &DeviceSession,
    topic: &str,
    payload: &[u8],
) -> PublishOutcome {
    let (identity, bucket) = match session {
        DeviceSession::Device(device_id, bucket) => (Some(&**device_id), bucket),
        DeviceSession::Anonymous(bucket) => (None, bucket),
        DeviceSession::Consumer(_) => {
            // Consumers read; they never write readings.
            ctx.pipeline().refuse(Refusal::Unauthorized, Source::Mqtt);
            return PublishOutcome::IdentityMismatch;
        }
    };
    let wait = bucket.borrow_mut().take(Instant::now());
    if !wait.is_zero() {
        ctx.pipeline().metrics().rate_limited();
        ntex_util::time::sleep(wait).await;
    }
    if topic != ctx.shared.settings.topic {
        ctx.pipeline().refuse(Refusal::Unauthorized, Source::Mqtt);
        return PublishOutcome::WrongTopic;
    }
    match ctx
        .pipeline()
        .ingest_device_payload(payload, Source::Mqtt, identity)
        .await
    {
        Ok(outcome) => match outcome.outcome {
            ItemOutcome::Duplicate { .. } => PublishOutcome::Duplicate,
            _ => PublishOutcome::Stored,
        },
        Err(IngestError::Refused(rejection)) => PublishOutcome::Rejected(rejection.reason),
        Err(IngestError::Unauthorized) => PublishOutcome::IdentityMismatch,
        Err(IngestError::Busy | IngestError::Store(_)) => PublishOutcome::StoreFailed,
    }
}

/// Decides one topic filter of a SUBSCRIBE; a granted filter is live at once.
fn subscribe(session: &DeviceSession, filter: &str, requested: Qos) -> Grant {
    let grant = session::grant(session.role(), filter, requested);
    match (&grant, session) {
        (Grant::Granted(qos), DeviceSession::Consumer(consumer)) => {
            consumer.subscribe(filter, *qos);
        }
        (Grant::Refused(why), _) => {
            tracing::debug!(
                message = "MQTT subscription refused.",
                reason = why.as_str()
            );
        }
        (Grant::Granted(_), _) => {}
    }
    grant
}

fn unsubscribe<'a>(session: &DeviceSession, filters: impl Iterator<Item = &'a str>) {
    if let DeviceSession::Consumer(consumer) = session {
        for filter in filters {
            consumer.unsubscribe(filter);
        }
    }
}

/// Sends the retained alert state for newly granted filters after the SUBACK.
///
/// No timer orders the two: ntex encodes the SUBACK in the same poll in which the protocol
/// handler's future resolves, and this worker is single-threaded, so the task spawned here
/// runs only after that poll, and its PUBLISHes are written after the SUBACK. Within the task
/// the retained state is read when it runs, so a live alert delivered in between is never
/// followed by an older retained one.
fn send_retained_after_suback(
    ctx: &BrokerCtx,
    session: &DeviceSession,
    granted: Vec<(String, Qos)>,
) {
    let DeviceSession::Consumer(consumer) = session else {
        return;
    };
    if granted.is_empty() {
        return;
    }
    let registry = Rc::clone(&ctx.registry);
    let consumer = Rc::clone(consumer);
    ntex_rt::spawn(async move {
        for (filter, qos) in granted {
            registry.send_retained(&consumer, &filter, qos);
        }
    });
}

fn from_ntex_qos(qos: ntex_mqtt::QoS) -> Qos {
    match qos {
        ntex_mqtt::QoS::AtMostOnce => Qos::AtMostOnce,
        ntex_mqtt::QoS::AtLeastOnce => Qos::AtLeastOnce,
        ntex_mqtt::QoS::ExactlyOnce => Qos::ExactlyOnce,
    }
}

fn to_ntex_qos(qos: Qos) -> ntex_mqtt::QoS {
    match qos {
        Qos::AtMostOnce => ntex_mqtt::QoS::AtMostOnce,
        Qos::AtLeastOnce => ntex_mqtt::QoS::AtLeastOnce,
        Qos::ExactlyOnce => ntex_mqtt::QoS::ExactlyOnce,
    }
}

/// The MQTT 3.1.1 server: publish, protocol (subscriptions) and connect handlers.
fn v3_server(
    ctx: Rc<BrokerCtx>,
) -> impl Service<(), State<(), IoBoxed>, Res = (), Error = MqttError<BrokerError>> {
    let connect_ctx = Rc::clone(&ctx);
    let protocol_ctx = Rc::clone(&ctx);
    let publish_ctx = ctx;
    v3::MqttServer::new(
        async move |session: &v3::Session<DeviceSession>, publish: v3::Publish| {
            let payload = publish.read_all().await.map_err(|_| BrokerError::Payload)?;
            let outcome =
                handle_publish(&publish_ctx, session, publish.publish_topic(), &payload).await;
            match session::answer_v3(outcome) {
                Answer3::Ack => Ok(()),
                Answer3::Close(reason) => Err(BrokerError::from(reason)),
            }
        },
    )
    .protocol(
        async move |session: &v3::Session<DeviceSession>, message: v3::ProtocolMessage| {
            Ok::<_, BrokerError>(match message {
                v3::ProtocolMessage::Subscribe(mut subscribe_packet) => {
                    let mut granted = Vec::new();
                    for mut subscription in subscribe_packet.iter_mut() {
                        let filter = subscription.topic().to_string();
                        match subscribe(session, &filter, from_ntex_qos(subscription.qos())) {
                            Grant::Granted(qos) => {
                                subscription.confirm(to_ntex_qos(qos));
                                granted.push((filter, qos));
                            }
                            Grant::Refused(_) => subscription.fail(),
                        }
                    }
                    send_retained_after_suback(&protocol_ctx, session, granted);
                    subscribe_packet.ack()
                }
                v3::ProtocolMessage::Unsubscribe(unsubscribe_packet) => {
                    unsubscribe(session, unsubscribe_packet.iter().map(|t| &**t));
                    unsubscribe_packet.ack()
                }
                other => other.ack(),
            })
        },
    )
    .build(async move |connect: v3::Connect| {
        let ctx = &connect_ctx;
        let packet = connect.packet();
        let cert = peer_certificate(connect.io());
        let verdict = identify(
            ctx,
            cert,
            packet.username.as_deref(),
            packet.password.as_deref(),
        )
        .await;
        Ok::<_, BrokerError>(match verdict {
            Verdict::Anonymous => connect.ack(DeviceSession::Anonymous(ctx.bucket()), false),
            Verdict::Device(device_id) => connect
                .ack(
                    DeviceSession::Device(Rc::from(device_id.as_str()), ctx.bucket()),
                    false,
                )
                .max_packet_size(
                    std::num::NonZeroU32::new(ctx.shared.settings.max_packet_size)
                        .expect("max_packet_size is validated positive"),
                ),
            Verdict::Consumer(name) => {
                let consumer = Consumer::new(Rc::from(name.as_str()), NtexSink::V3(connect.sink()));
                ctx.registry.add(&consumer);
                connect.ack(DeviceSession::Consumer(consumer), false)
            }
            Verdict::Refused(why) => {
                refuse_connect(ctx, why, "3.1.1");
                match why.code() {
                    ConnackCode::BadUserNameOrPassword => connect.bad_username_or_pwd(),
                    ConnackCode::NotAuthorized => connect.not_authorized(),
                }
            }
        })
    })
}

/// The MQTT 5.0 server, as [`v3_server`] with PUBACK reason codes.
fn v5_server(
    ctx: Rc<BrokerCtx>,
) -> impl Service<(), State<(), IoBoxed>, Res = (), Error = MqttError<BrokerError>> {
    let connect_ctx = Rc::clone(&ctx);
    let protocol_ctx = Rc::clone(&ctx);
    let publish_ctx = ctx;
    v5::MqttServer::new(
        async move |session: &v5::Session<DeviceSession>, publish: v5::Publish| {
            let payload = publish.read_all().await.map_err(|_| BrokerError::Payload)?;
            let topic = publish.publish_topic().to_owned();
            let outcome = handle_publish(&publish_ctx, session, &topic, &payload).await;
            use v5::codec::PublishAckReason as Reason;
            match session::answer_v5(outcome) {
                Answer5::Ack(PubackCode::Success) => Ok(publish.ack()),
                Answer5::Ack(PubackCode::PayloadFormatInvalid) => {
                    Ok(publish.ack().reason_code(Reason::PayloadFormatInvalid))
                }
                Answer5::Ack(PubackCode::NotAuthorized) => {
                    Ok(publish.ack().reason_code(Reason::NotAuthorized))
                }
                Answer5::Ack(PubackCode::TopicNameInvalid) => {
                    Ok(publish.ack().reason_code(Reason::TopicNameInvalid))
                }
                Answer5::Close(reason) => Err(BrokerError::from(reason)),
            }
        },
    )
    .protocol(
        async move |session: &v5::Session<DeviceSession>, message: v5::ProtocolMessage| {
            Ok::<_, BrokerError>(match message {
                v5::ProtocolMessage::Subscribe(mut subscribe_packet) => {
                    let mut granted = Vec::new();
                    for mut subscription in subscribe_packet.iter_mut() {
                        let filter = subscription.topic().to_string();
                        let requested = from_ntex_qos(subscription.options().qos);
                        match subscribe(session, &filter, requested) {
                            Grant::Granted(qos) => {
                                subscription.confirm(to_ntex_qos(qos));
                                granted.push((filter, qos));
                            }
                            Grant::Refused(_) => {
                                subscription.fail(v5::codec::SubscribeAckReason::NotAuthorized)
                            }
                        }
                    }
                    send_retained_after_suback(&protocol_ctx, session, granted);
                    subscribe_packet.ack()
                }
                v5::ProtocolMessage::Unsubscribe(unsubscribe_packet) => {
                    unsubscribe(session, unsubscribe_packet.iter().map(|t| &**t));
                    unsubscribe_packet.ack()
                }
                other => other.ack(),
            })
        },
    )
    .build(async move |connect: v5::Connect| {
        let ctx = &connect_ctx;
        let packet = connect.packet();
        let cert = peer_certificate(connect.io());
        let verdict = identify(
            ctx,
            cert,
            packet.username.as_deref(),
            packet.password.as_deref(),
        )
        .await;
        Ok::<_, BrokerError>(match verdict {
            Verdict::Anonymous => connect.ack(DeviceSession::Anonymous(ctx.bucket())),
            Verdict::Device(device_id) => connect.ack(DeviceSession::Device(
                Rc::from(device_id.as_str()),
                ctx.bucket(),
            )),
            Verdict::Consumer(name) => {
                let consumer = Consumer::new(Rc::from(name.as_str()), NtexSink::V5(connect.sink()));
                ctx.registry.add(&consumer);
                connect.ack(DeviceSession::Consumer(consumer))
            }
            Verdict::Refused(why) => {
                refuse_connect(ctx, why, "5.0");
                connect.failed(match why.code() {
                    ConnackCode::BadUserNameOrPassword => {
                        v5::codec::ConnectAckReason::BadUserNameOrPassword
                    }
                    ConnackCode::NotAuthorized => v5::codec::ConnectAckReason::NotAuthorized,
                })
            }
        })
    })
}

/// MQTT 3.1.1 and 5.0 on one connection transport.
fn mqtt_server<Req>(
    ctx: Rc<BrokerCtx>,
) -> impl Service<(), Req, Res = (), Error = MqttError<BrokerError>>
where
    Req: RequestState<IoBoxed, State = ()> + 'static,
{
    MqttServer::new()
        .v3(v3_server(Rc::clone(&ctx)))
        .v5(v5_server(ctx))
}

/// The broker's listeners.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Transport {
    /// MQTT over TLS (8883).
    Tls,
    /// Plaintext MQTT, credentials or anonymous (lab use).
    Plaintext,
    /// MQTT over WebSocket over TLS (8884).
    WebSocket,
}

/// A connection's service on one worker: counts failed TLS handshakes, then runs MQTT.
type ConnectionService = BoxService<(), Io, (), std::io::Error>;

fn io_error(err: impl std::fmt::Debug) -> std::io::Error {
    std::io::Error::other(format!("{err:?}"))
}

/// The factory of every listener: on each worker, the service for one `transport`.
fn listener(
    shared: Arc<Shared>,
    transport: Transport,
) -> impl AsyncFn(&()) -> ConnectionService + Send + Clone + 'static {
    async move |_: &()| {
        let ctx = BrokerCtx::on_this_worker(&shared, transport != Transport::Plaintext);
        let on_tls_error = {
            let ctx = Rc::clone(&ctx);
            move |err: std::io::Error| {
                ctx.pipeline().refuse(Refusal::TlsHandshake, Source::Mqtt);
                tracing::debug!(message = "TLS handshake failed.", error = %err);
                err
            }
        };
        let tls = TlsAcceptor::new(Arc::clone(&shared.tls_config)).map_err(on_tls_error);
        match transport {
            Transport::Plaintext => boxed::service(mqtt_server(ctx).map_err(io_error)),
            Transport::Tls => boxed::service(tls.and_then(mqtt_server(ctx).map_err(io_error))),
            Transport::WebSocket => {
                let mqtt = ntex_service::Pipeline::new((), mqtt_server(ctx).map_err(io_error));
                let http =
                    ntex_service::Pipeline::new((), super::websocket::http_upgrade(mqtt.bind()));
                boxed::service(
                    tls.and_then(async move |io: Io<_>| http.call(io).await.map_err(io_error)),
                )
            }
        }
    }
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

fn bind(addr: SocketAddr, what: &str) -> anyhow::Result<(std::net::TcpListener, SocketAddr)> {
    let listener =
        std::net::TcpListener::bind(addr).with_context(|| format!("binding {what} to {addr}"))?;
    let bound = listener.local_addr()?;
    Ok((listener, bound))
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
    let (socket, addr) = bind(settings.mqtts_addr, "MQTT over TLS")?;
    let mut listeners = vec![(Transport::Tls, socket)];
    let mut optional = |wanted: Option<SocketAddr>, transport, what| match wanted {
        Some(wanted) => {
            let (socket, bound) = bind(wanted, what)?;
            listeners.push((transport, socket));
            anyhow::Ok(Some(bound))
        }
        None => Ok(None),
    };
    let plaintext_addr = optional(
        settings.plaintext_addr,
        Transport::Plaintext,
        "plaintext MQTT",
    )?;
    let wss_addr = optional(
        settings.wss_addr,
        Transport::WebSocket,
        "MQTT over WebSocket",
    )?;
    let mqtt_config: SharedCfg = SharedCfg::new("MQTT")
        .add(
            MqttServiceConfig::new()
                .set_max_size(settings.max_packet_size)
                .set_max_receive(settings.max_inflight)
                .set_max_qos(ntex_mqtt::QoS::ExactlyOnce)
                // A message that arrived is processed even if its sender hangs up first
                // (mosquitto_pub sends QoS 0 then DISCONNECT at once); a QoS 1/2 sender that
                // never saw its PUBACK redelivers, and the store deduplicates.
                .set_handle_qos_after_disconnect(Some(ntex_mqtt::QoS::ExactlyOnce))
                .set_connect_timeout(ntex_util::time::Seconds(10)),
        )
        .into();
    let workers = settings.workers.max(1);
    let shared = Arc::new(Shared {
        identities: Identities::new(settings.certs.clone()),
        pipeline,
        settings,
        tls_config,
    });
    let (tx, rx) = std::sync::mpsc::channel();
    let thread = std::thread::Builder::new()
        .name("vitalwatch-mqtt".to_owned())
        .spawn(move || {
            let res =
                ntex_rt::System::new("vitalwatch-mqtt", ntex_net::DefaultRuntime).run(move || {
                    let mut server = ntex_server::net::build().workers(workers).disable_signals();
                    for (transport, socket) in listeners {
                        let name = match transport {
                            Transport::Tls => "mqtts",
                            Transport::Plaintext => "mqtt",
                            Transport::WebSocket => "mqtt-wss",
                        };
                        server = server.listen(
                            name,
                            socket,
                            mqtt_config.clone(),
                            listener(Arc::clone(&shared), transport),
                        )?;
                    }
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
        plaintext_addr,
        wss_addr,
        server,
        system,
        thread: Some(thread),
    })
}
