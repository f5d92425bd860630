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
//! type stays here, in `protocol.rs` (the packets answered before the library sees them, and
//! the control services), in `handshake.rs` (the bounded TLS acceptor) and in `websocket.rs`. Connection and session state beyond one
//! packet (persistent sessions, wills, takeover) is [`super::connection`]'s.
//!
//! What a device may do: publish its own readings to the telemetry topic. Subscriptions from
//! devices are refused with the spec's failure codes (0x80 in 3.1.1, NotAuthorized in 5.0).

use super::BrokerSettings;
use super::batch::Gatherer;
use super::connection::{Connection, Connections, EndReason, MAX_SESSION_EXPIRY, Opening};
use super::consumers::{self, Consumer, Registry};
use super::exchange::SessionKey;
use super::handshake::{self, BoundedTlsAcceptor, HandshakeBudget};
use super::identity::{Credential, Identities};
pub use super::ntex_sink::NtexSink;
use super::ntex_sink::{from_ntex_qos, to_ntex_qos};
use super::protocol::{self, HasConnection};
use super::rate::TokenBucket;
use super::revocation::{LiveCredentials, Watcher};
use super::session::{
    self, Answer3, Answer5, ClientId, CloseReason, ConnackCode, ConnectRefusal, Grant, PubackCode,
    PublishOutcome, Qos, Role, SessionRequest, Verdict,
};
use crate::metrics::{Refusal, connections};
use crate::pipeline::{IngestError, Pipeline};
use crate::store::{ItemOutcome, Source};
use crate::tls;
use anyhow::Context;
use ntex_io::{Io, IoBoxed};
use ntex_mqtt::{MqttError, MqttServer, MqttServiceConfig, v3, v5};
use ntex_service::boxed::{self, BoxService};
use ntex_service::cfg::SharedCfg;
use ntex_service::{RequestState, Service, State};
use std::cell::RefCell;
use std::net::SocketAddr;
use std::rc::{Rc, Weak};
use std::sync::Arc;
use std::time::Duration;
use std::time::Instant;

/// How long `stop` lets in-flight publishes finish before it stops the broker anyway.
const GRACEFUL_STOP: Duration = Duration::from_secs(30);
/// How long `stop` waits for the publishes it took to be committed and acknowledged.
const DRAIN: Duration = Duration::from_secs(10);

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

type NtexConsumer = Consumer<NtexSink>;

/// Per-connection state: who the peer proved to be, and the connection's own state.
struct DeviceSession {
    peer: Peer,
    connection: Rc<Connection>,
    /// Set once the credential the session was let in by is revoked.
    revoked: Arc<std::sync::atomic::AtomicBool>,
}

impl HasConnection for DeviceSession {
    fn connection(&self) -> &Rc<Connection> {
        &self.connection
    }
}

/// Who the peer proved to be.
#[derive(Clone)]
enum Peer {
    /// A device: may publish its own readings (at most its connection's rate), may not
    /// subscribe.
    Device(Rc<str>, Rc<RefCell<TokenBucket>>),
    /// A consumer: may subscribe below `vitalwatch/`, may not publish.
    Consumer(Rc<NtexConsumer>),
    /// A client without credentials on the plaintext listener, let in by
    /// `--mqtt-allow-anonymous`: its payloads' device ids are taken at their word.
    Anonymous(Rc<RefCell<TokenBucket>>),
}

impl Peer {
    fn role(&self) -> Role {
        match self {
            Peer::Device(..) => Role::Device,
            Peer::Consumer(_) => Role::Consumer,
            Peer::Anonymous(_) => Role::Anonymous,
        }
    }

    /// The identity a session is kept under: a session is resumed only by the same identity.
    fn identity(&self) -> String {
        match self {
            Peer::Device(device_id, _) => device_id.to_string(),
            Peer::Consumer(consumer) => consumer.name.to_string(),
            Peer::Anonymous(_) => String::new(),
        }
    }
}

/// Shared by every worker and listener.
struct Shared {
    pipeline: Arc<Pipeline>,
    settings: BrokerSettings,
    identities: Arc<Identities>,
    tls_config: Arc<rustls::ServerConfig>,
    connections: Arc<Connections>,
    live_credentials: Arc<LiveCredentials>,
    /// Each TLS listener's own handshake budget.
    handshakes: [Arc<HandshakeBudget>; 2],
}

/// Shared by all connections of one listener on one worker.
struct BrokerCtx {
    shared: Arc<Shared>,
    /// This worker's consumers and retained alert state.
    registry: Rc<Registry<NtexSink>>,
    /// False on the plaintext listener.
    tls: bool,
    /// This worker's publishes of one event-loop turn, written together.
    gatherer: Rc<Gatherer>,
}

impl BrokerCtx {
    /// The context of one listener on the calling worker, with its consumer registry fed from
    /// the event bus.
    fn on_this_worker(shared: &Arc<Shared>, tls: bool) -> Rc<BrokerCtx> {
        let registry = Rc::new(Registry::default());
        ntex_rt::spawn(consumers::dispatch(
            Rc::clone(&registry),
            shared.pipeline.events().subscribe_quiet(),
        ));
        Rc::new(BrokerCtx {
            shared: Arc::clone(shared),
            registry,
            tls,
            gatherer: Gatherer::new(Arc::clone(&shared.pipeline)),
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
/// password on the plaintext listener; and what let it in. The revocation and secret checks
/// run off the worker.
async fn identify(
    ctx: &BrokerCtx,
    io: &IoBoxed,
    username: Option<&str>,
    password: Option<&[u8]>,
) -> (Verdict, Credential) {
    let max_id_len = ctx.pipeline().limits().max_device_id_len;
    let identities = &ctx.shared.identities;
    if ctx.tls {
        let cert = handshake::peer_certificate(io);
        return identities.by_certificate(&cert, max_id_len).await;
    }
    let (address, anonymous) = (
        handshake::peer_address(io),
        ctx.shared.settings.allow_anonymous,
    );
    identities
        .by_secret(address, username, password, anonymous, max_id_len)
        .await
}

fn refuse_connect(ctx: &BrokerCtx, why: ConnectRefusal, protocol: &'static str) {
    ctx.pipeline().refuse(Refusal::ConnectRefused, Source::Mqtt);
    tracing::info!(
        event = "mqtt.connect_refused",
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
    let Some(_in_flight) = ctx.shared.connections.begin_publish() else {
        // The broker is stopping: this publish is neither stored nor acknowledged; its
        // connection closes once the publishes taken before are acknowledged, and the device
        // sends it again (to another node, behind a balancer).
        return std::future::pending().await;
    };
    if session.revoked.load(std::sync::atomic::Ordering::SeqCst) {
        // Its certificate or secret was revoked; the connection is being closed.
        ctx.pipeline().refuse(Refusal::Unauthorized, Source::Mqtt);
        return PublishOutcome::IdentityMismatch;
    }
    let (identity, bucket) = match &session.peer {
        Peer::Device(device_id, bucket) => (Some(&**device_id), bucket),
        Peer::Anonymous(bucket) => (None, bucket),
        Peer::Consumer(_) => {
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
    let arrived = Instant::now();
    let reading = match ctx
        .pipeline()
        .accept_device_payload(payload, Source::Mqtt, identity)
    {
        Ok(reading) => reading,
        Err(IngestError::Refused(rejection)) => return PublishOutcome::Rejected(rejection.reason),
        Err(IngestError::Unauthorized) => return PublishOutcome::IdentityMismatch,
        Err(IngestError::Busy | IngestError::Store(_)) => return PublishOutcome::StoreFailed,
    };
    match ctx.gatherer.ingest(reading, arrived).await {
        Some(outcome) => match outcome.outcome {
            ItemOutcome::Duplicate { .. } => PublishOutcome::Duplicate,
            _ => PublishOutcome::Stored,
        },
        None => PublishOutcome::StoreFailed,
    }
}

/// Decides one topic filter of a SUBSCRIBE; a granted filter is live at once.
fn subscribe(session: &DeviceSession, filter: &str, requested: Qos) -> Grant {
    let grant = session::grant(session.peer.role(), filter, requested);
    match (&grant, &session.peer) {
        (Grant::Granted(qos), Peer::Consumer(consumer)) => {
            consumer.subscribe(filter, *qos);
        }
        (Grant::Refused(why), _) => {
            tracing::debug!(
                event = "mqtt.subscribe_refused",
                message = "MQTT subscription refused.",
                reason = why.as_str()
            );
        }
        (Grant::Granted(_), _) => {}
    }
    grant
}

fn unsubscribe<'a>(session: &DeviceSession, filters: impl Iterator<Item = &'a str>) {
    if let Peer::Consumer(consumer) = &session.peer {
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
    let Peer::Consumer(consumer) = &session.peer else {
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

/// The facts of a CONNECT beyond identity, copied out of the packet.
struct ConnectFacts {
    v5: bool,
    client_id: String,
    clean: bool,
    keep_alive_s: u16,
    /// 5.0 Session Expiry Interval (3.1.1: none, or the broker's maximum when CleanSession=0).
    session_expiry_s: u32,
    will: Option<(String, Vec<u8>)>,
}

/// A CONNECT accepted by identity, once its session checks passed.
struct Accepted {
    session: DeviceSession,
    session_present: bool,
    client_id: ClientId,
    keep_alive: session::KeepAlive,
    /// The session expiry the broker applies, when it differs from the one asked for (5.0).
    session_expiry_s: Option<u32>,
}

/// A name for a client that sent an empty client id: unique within this broker's lifetime.
fn assigned_client_id() -> String {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let started = crate::clock::now().secs_f64() as u64;
    format!("vitalwatch-{started:x}-{n}")
}

/// Checks the session part of a CONNECT and opens the connection's state: persistent session
/// (devices and anonymous clients; consumers' subscriptions are not kept), will, takeover.
fn accept(
    ctx: &BrokerCtx,
    (peer, credential): (Peer, Credential),
    facts: ConnectFacts,
    close: impl FnOnce() + 'static,
) -> Result<Accepted, ConnectRefusal> {
    let request = SessionRequest {
        v5: facts.v5,
        client_id: &facts.client_id,
        clean: facts.clean,
        will_topic: facts.will.as_ref().map(|(topic, _)| topic.as_str()),
    };
    let client_id = session::check_session(
        peer.role(),
        request,
        &ctx.shared.settings.topic,
        assigned_client_id,
    )?;
    let max_expiry_s = MAX_SESSION_EXPIRY.as_secs() as u32;
    let expiry_s = match peer.role() {
        Role::Consumer => 0,
        Role::Device | Role::Anonymous => facts.session_expiry_s.min(max_expiry_s),
    };
    let device_id = match &peer {
        Peer::Device(device_id, _) => {
            let max_id_len = ctx.pipeline().limits().max_device_id_len;
            vitalwatch_core::telemetry::DeviceId::parse(device_id, max_id_len).ok()
        }
        _ => None,
    };
    let opening = Opening {
        key: SessionKey {
            identity: peer.identity(),
            client_id: client_id.as_str().to_owned(),
        },
        device_id,
        clean: facts.clean,
        expiry: Duration::from_secs(u64::from(expiry_s)),
        will: facts.will.map(|(_, message)| message),
    };
    let (connection, session_present) = ctx.shared.connections.open(opening);
    close_when_kicked(&connection, close);
    let revoked = ctx
        .shared
        .live_credentials
        .watch(credential, &connection.kicked());
    Ok(Accepted {
        session: DeviceSession {
            peer,
            connection,
            revoked,
        },
        session_present,
        client_id,
        keep_alive: session::keep_alive(facts.keep_alive_s, facts.v5),
        session_expiry_s: (facts.v5 && expiry_s != facts.session_expiry_s).then_some(expiry_s),
    })
}

/// Closes the connection when another one takes its session over, or its identity is
/// disconnected; its will is discarded then (the device is evidently alive, or not trusted).
fn close_when_kicked(connection: &Rc<Connection>, close: impl FnOnce() + 'static) {
    let kick = connection.kicked();
    let weak: Weak<Connection> = Rc::downgrade(connection);
    ntex_rt::spawn(async move {
        kick.notified().await;
        if let Some(connection) = weak.upgrade() {
            tracing::debug!(
                event = "mqtt.closed_by_broker",
                message = "MQTT connection closed by the broker.",
                reason = "session_taken_over_or_identity_disconnected"
            );
            connection.disconnected(false, None);
            connection.ended(EndReason::ClosedByBroker);
            drop(connection);
            close();
        }
    });
}

/// The peer an accepted identity verdict makes, or the refusal.
fn peer_of(
    ctx: &BrokerCtx,
    (verdict, credential): (Verdict, Credential),
    sink: impl FnOnce() -> NtexSink,
) -> Result<(Peer, Credential), ConnectRefusal> {
    let peer = match verdict {
        Verdict::Anonymous => Ok(Peer::Anonymous(ctx.bucket())),
        Verdict::Device(device_id) => Ok(Peer::Device(Rc::from(device_id.as_str()), ctx.bucket())),
        Verdict::Consumer(name) => {
            let readings = ctx.pipeline().events().want_readings();
            let consumer = Consumer::new(Rc::from(name.as_str()), sink(), readings);
            ctx.registry.add(&consumer);
            Ok(Peer::Consumer(consumer))
        }
        Verdict::Refused(why) => Err(why),
    };
    peer.map(|peer| (peer, credential))
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
                v3::ProtocolMessage::Disconnect(disconnect) => {
                    // MQTT 3.1.1 section 3.14.4: a DISCONNECT discards the will.
                    session.connection.disconnected(false, None);
                    disconnect.ack()
                }
                other => other.ack(),
            })
        },
    )
    .control(
        async move |session: &v3::Session<DeviceSession>,
                    control: ntex_mqtt::Control<BrokerError>| {
            protocol::on_control(&session.connection, &control, "3.1.1");
            Ok::<_, BrokerError>(None)
        },
    )
    .middleware(protocol::Exchange3)
    .build(async move |connect: v3::Connect| {
        let ctx = &connect_ctx;
        let packet = connect.packet();
        let verdict = identify(
            ctx,
            connect.io(),
            packet.username.as_deref(),
            packet.password.as_deref(),
        )
        .await;
        let facts = ConnectFacts {
            v5: false,
            client_id: packet.client_id.to_string(),
            clean: packet.clean_session,
            keep_alive_s: packet.keep_alive,
            session_expiry_s: if packet.clean_session {
                0
            } else {
                MAX_SESSION_EXPIRY.as_secs() as u32
            },
            will: packet
                .last_will
                .as_ref()
                .map(|will| (will.topic.to_string(), will.message.to_vec())),
        };
        let sink = connect.sink();
        let accepted = peer_of(ctx, verdict, || NtexSink::V3(connect.sink()))
            .and_then(|peer| accept(ctx, peer, facts, move || sink.close()));
        Ok::<_, BrokerError>(match accepted {
            Ok(accepted) => {
                let is_device = accepted.session.peer.role() == Role::Device;
                let ack = connect
                    .ack(accepted.session, accepted.session_present)
                    .idle_timeout(ntex_util::time::Seconds(accepted.keep_alive.timeout_s));
                if is_device {
                    ack.max_packet_size(
                        std::num::NonZeroU32::new(ctx.shared.settings.max_packet_size)
                            .expect("max_packet_size is validated positive"),
                    )
                } else {
                    ack
                }
            }
            Err(why) => {
                refuse_connect(ctx, why, "3.1.1");
                match why.code() {
                    ConnackCode::BadUserNameOrPassword => connect.bad_username_or_pwd(),
                    ConnackCode::IdentifierRejected => connect.identifier_rejected(),
                    ConnackCode::NotAuthorized | ConnackCode::TopicNameInvalid => {
                        connect.not_authorized()
                    }
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
                v5::ProtocolMessage::Disconnect(disconnect) => {
                    // MQTT 5.0 section 3.14.2.1: reason 0x04 keeps the will, any other
                    // discards it; a Session Expiry Interval here replaces CONNECT's.
                    let packet = disconnect.packet();
                    let keep_will = packet.reason_code
                        == v5::codec::DisconnectReasonCode::DisconnectWithWillMessage;
                    let expiry = packet
                        .session_expiry_interval_secs
                        .map(|s| Duration::from_secs(u64::from(s)));
                    session.connection.disconnected(keep_will, expiry);
                    disconnect.ack()
                }
                other => other.ack(),
            })
        },
    )
    .control(
        async move |session: &v5::Session<DeviceSession>,
                    control: ntex_mqtt::Control<BrokerError>| {
            protocol::on_control(&session.connection, &control, "5.0");
            Ok::<_, BrokerError>(None)
        },
    )
    .middleware(protocol::Exchange5)
    .build(async move |connect: v5::Connect| {
        let ctx = &connect_ctx;
        let packet = connect.packet();
        let verdict = identify(
            ctx,
            connect.io(),
            packet.username.as_deref(),
            packet.password.as_deref(),
        )
        .await;
        let facts = ConnectFacts {
            v5: true,
            client_id: packet.client_id.to_string(),
            clean: packet.clean_start,
            keep_alive_s: packet.keep_alive,
            session_expiry_s: packet.session_expiry_interval_secs,
            will: packet
                .last_will
                .as_ref()
                .map(|will| (will.topic.to_string(), will.message.to_vec())),
        };
        let sink = connect.sink();
        let close = move || {
            sink.close_with_reason(v5::codec::Disconnect::new(
                v5::codec::DisconnectReasonCode::SessionTakenOver,
            ))
        };
        let accepted = peer_of(ctx, verdict, || NtexSink::V5(connect.sink()))
            .and_then(|peer| accept(ctx, peer, facts, close));
        Ok::<_, BrokerError>(match accepted {
            Ok(accepted) => {
                let keep_alive = accepted.keep_alive;
                let present = accepted.session_present;
                let assigned = match &accepted.client_id {
                    ClientId::Assigned(id) => Some(id.clone()),
                    ClientId::Given(_) => None,
                };
                let expiry = accepted.session_expiry_s;
                connect
                    .ack(accepted.session)
                    .keep_alive(keep_alive.timeout_s.max(1))
                    .with(move |ack| {
                        ack.session_present = present;
                        ack.assigned_client_id = assigned.map(Into::into);
                        ack.server_keepalive_sec = keep_alive.server_keep_alive_s;
                        if expiry.is_some() {
                            ack.session_expiry_interval_secs = expiry;
                        }
                    })
            }
            Err(why) => {
                refuse_connect(ctx, why, "5.0");
                use v5::codec::ConnectAckReason as Reason;
                connect.failed(match why.code() {
                    ConnackCode::BadUserNameOrPassword => Reason::BadUserNameOrPassword,
                    ConnackCode::NotAuthorized => Reason::NotAuthorized,
                    ConnackCode::IdentifierRejected => Reason::ClientIdentifierNotValid,
                    ConnackCode::TopicNameInvalid => Reason::TopicNameInvalid,
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
        let listener = match transport {
            Transport::Tls => connections::Listener::Mqtts,
            Transport::Plaintext => connections::Listener::Mqtt,
            Transport::WebSocket => connections::Listener::Wss,
        };
        let on_tls_error = {
            let ctx = Rc::clone(&ctx);
            move |err: std::io::Error| {
                ctx.pipeline().refuse(Refusal::TlsHandshake, Source::Mqtt);
                let reason = connections::tls_failed(listener, &err);
                tracing::debug!(message = "TLS handshake failed.", event = "tls.handshake_failed", listener = listener.as_str(), reason = reason.as_str(), error = %err);
                err
            }
        };
        let budget = Arc::clone(&shared.handshakes[usize::from(transport == Transport::WebSocket)]);
        let tls =
            BoundedTlsAcceptor::new(Arc::clone(&shared.tls_config), budget).map_err(on_tls_error);
        let pipeline = Arc::clone(&shared.pipeline);
        let mqtt = protocol::Gated::new(mqtt_server::<IoBoxed>(ctx).map_err(io_error), pipeline);
        let service: ConnectionService = match transport {
            Transport::Plaintext => boxed::service(mqtt),
            Transport::Tls => boxed::service(tls.and_then(mqtt)),
            Transport::WebSocket => {
                let mqtt = ntex_service::Pipeline::new((), mqtt);
                let origins = Arc::new(shared.settings.wss_allowed_origins.clone());
                let http = ntex_service::Pipeline::new(
                    (),
                    super::websocket::http_upgrade(mqtt.bind(), origins),
                );
                boxed::service(
                    tls.and_then(async move |io: Io<_>| http.call(io).await.map_err(io_error)),
                )
            }
        };
        // Counted from accept to close; its log lines carry its id (the `mqtt` span's `conn`).
        boxed::service(ntex_service::apply_fn(service, async move |io: Io, ctx| {
            let open = connections::OpenConnection::new(listener);
            let span = tracing::info_span!("mqtt", conn = open.id(), listener = listener.as_str());
            tracing::Instrument::instrument(ctx.call(io), span).await
        }))
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
    connections: Arc<Connections>,
    thread: Option<std::thread::JoinHandle<()>>,
    /// Ends sessions whose credential is revoked; stopped with the broker.
    revocations: Option<Watcher>,
}

impl EmbeddedBroker {
    /// The live connections and saved sessions, e.g. to disconnect a revoked identity
    /// ([`Connections::disconnect_identity`]).
    pub fn connections(&self) -> Arc<Connections> {
        Arc::clone(&self.connections)
    }

    /// Stops accepting, lets in-flight publishes finish (their commits complete and are
    /// acknowledged), then ends the broker's threads.
    pub async fn stop(mut self) {
        // Graceful: in-flight publishes finish (committed, then acknowledged). Bounded, because
        // a stop once waited for hours (seen once, not reproduced); what is not acknowledged
        // by then is redelivered by its device, and queued readings still commit when the
        // store closes. Connections the stop ends fire no will: the devices did not fail.
        self.connections.stopping();
        // No new connections; the publishes taken so far commit and are acknowledged, then
        // every connection is closed (its acknowledgements flushed), then the server stops.
        self.server.pause().await;
        let drain_until = Instant::now() + DRAIN;
        while self.connections.in_flight() > 0 && Instant::now() < drain_until {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let closed = self.connections.close_all();
        tracing::info!(
            event = "mqtt.stopping",
            message = "MQTT broker stopping: in-flight publishes acknowledged, connections closed.",
            connections = closed,
            unfinished = self.connections.in_flight()
        );
        if tokio::time::timeout(GRACEFUL_STOP, self.server.stop(true))
            .await
            .is_err()
        {
            tracing::warn!(
                event = "mqtt.stop_forced",
                message = "The MQTT broker did not stop gracefully in time; stopping it now.",
                waited_s = GRACEFUL_STOP.as_secs()
            );
            let _ = tokio::time::timeout(Duration::from_secs(5), self.server.stop(false)).await;
        }
        self.system.stop();
        if let Some(watcher) = self.revocations.take() {
            let _ = tokio::task::spawn_blocking(move || drop(watcher)).await;
        }
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
    let handshakes_per_address = settings.handshakes_per_address;
    let connections = Connections::new(Arc::clone(&pipeline));
    let identities = Identities::new(settings.certs.clone(), Arc::clone(&settings.revocations));
    let live_credentials = Arc::new(LiveCredentials::default());
    let revocations = Watcher::start(Arc::clone(&identities), Arc::clone(&live_credentials))
        .context("starting the revocation watcher")?;
    let shared = Arc::new(Shared {
        identities,
        pipeline,
        settings,
        tls_config,
        connections: Arc::clone(&connections),
        live_credentials,
        handshakes: [
            HandshakeBudget::listener(handshakes_per_address),
            HandshakeBudget::listener(handshakes_per_address),
        ],
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
                tracing::error!(event = "mqtt.broker_failed", message = "The MQTT broker stopped with an error.", error = %err);
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
        connections,
        thread: Some(thread),
        revocations: Some(revocations),
    })
}
