//! The packets the broker answers before ntex-mqtt 9.0 sees them, and the end of every
//! connection: an ntex middleware in front of the library's dispatcher (one per protocol
//! version) and the control services that see why a connection stopped.
//!
//! The middleware asks [`super::exchange::Inbound`] about every QoS 1/2 PUBLISH and PUBREL,
//! so that the cases the library gets wrong are answered as the spec says (docs/MQTT.md,
//! "Library faults"), and closes a connection that sends a second CONNECT (MQTT 3.1.1 section
//! 3.1.0, 5.0 section 3.1.0: a protocol violation). The control services log every
//! disconnect the broker initiates, with its reason, and tell the [`Connection`] why it ended.
//!
//! Below the library's codec, [`Gated`] puts a filter ([`GateLayer`]) on every connection's
//! byte stream that answers what the library's decoder refuses before our handlers run
//! ([`super::gate`]: CONNACK 0x02 and 0x01, DISCONNECT 0x94).

use super::connection::{Connection, EndReason};
use super::embedded::BrokerError;
use super::exchange::{OnPublish, OnPubrel};
use super::gate::Gate;
use crate::metrics::Refusal;
use crate::pipeline::Pipeline;
use crate::store::Source;
use ntex_io::{Filter, FilterBuf, FilterLayer, Io, IoBoxed, Sealed};
use ntex_mqtt::error::DispatcherError;
use ntex_mqtt::{Control, MqttProtocolError, Reason, v3, v5};
use ntex_service::{Ctx, Middleware, Service};
use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::Arc;

/// Something that holds the connection's [`Connection`] (the session state).
pub trait HasConnection {
    fn connection(&self) -> &Rc<Connection>;
}

type Result3 = Result<Option<v3::codec::Encoded>, DispatcherError<BrokerError>>;
type Result5 = Result<Option<v5::codec::Encoded>, DispatcherError<BrokerError>>;

fn second_connect(protocol: &'static str) -> MqttProtocolError {
    tracing::info!(
        event = "mqtt.closed_by_broker",
        message = "MQTT connection closed by the broker.",
        reason = "second_connect",
        protocol
    );
    MqttProtocolError::generic_violation("[MQTT-3.1.0-2] a second CONNECT on a connection")
}

/// The MQTT 3.1.1 middleware.
#[derive(Clone, Copy, Debug, Default)]
pub struct Exchange3;

pub struct Exchange3Service<S> {
    service: S,
    connection: Rc<Connection>,
    /// Set once the dispatcher shuts down: the library's control pipeline panics if its
    /// readiness is polled after that, so nothing more is handed to it.
    shut_down: Cell<bool>,
}

impl<S, St: HasConnection> Middleware<S, v3::Session<St>> for Exchange3 {
    type Service = Exchange3Service<S>;

    fn create(&self, session: &v3::Session<St>, service: S) -> Self::Service {
        Exchange3Service {
            service,
            connection: Rc::clone(HasConnection::connection(&**session)),
            shut_down: Cell::new(false),
        }
    }
}

impl<S, St> Service<v3::Session<St>, v3::codec::Decoded> for Exchange3Service<S>
where
    S: Service<
            v3::Session<St>,
            v3::codec::Decoded,
            Res = Option<v3::codec::Encoded>,
            Error = DispatcherError<BrokerError>,
        >,
{
    type Res = Option<v3::codec::Encoded>;
    type Error = DispatcherError<BrokerError>;

    async fn ready(&self, ctx: Ctx<'_, Self, v3::Session<St>>) -> Result<(), Self::Error> {
        if self.shut_down.get() {
            return Ok(());
        }
        ctx.ready(&self.service).await
    }

    async fn shutdown(&self, ctx: Ctx<'_, Self, v3::Session<St>>) {
        self.shut_down.set(true);
        ctx.shutdown(&self.service).await;
    }

    async fn call(&self, req: v3::codec::Decoded, ctx: Ctx<'_, Self, v3::Session<St>>) -> Result3 {
        use v3::codec::{Decoded, Encoded, Packet};
        if self.shut_down.get() {
            // Not acknowledged: its sender redelivers it.
            return Ok(None);
        }
        match &req {
            Decoded::Packet(Packet::Connect(_), _) => {
                self.connection.ended(EndReason::ProtocolError);
                Err(DispatcherError::Protocol(second_connect("3.1.1")))
            }
            Decoded::Publish(publish, _, _) if publish.packet_id.is_some() => {
                let packet_id = publish.packet_id.expect("matched as present");
                let qos2 = publish.qos == ntex_mqtt::QoS::ExactlyOnce;
                let decision = self.connection.inbound().on_publish(packet_id.get(), qos2);
                match decision {
                    OnPublish::Pubrec => {
                        return Ok(Some(Encoded::Packet(Packet::PublishReceived { packet_id })));
                    }
                    OnPublish::Ignore => return Ok(None),
                    OnPublish::Process => {}
                }
                let Decoded::Publish(mut publish, payload, size) = req else {
                    unreachable!("matched as a publish")
                };
                // The library sees QoS 2 as QoS 1 (its PUBACK frees its packet id); the QoS 2
                // exchange is ours: PUBREC here, PUBREL/PUBCOMP below.
                publish.qos = publish.qos.min(ntex_mqtt::QoS::AtLeastOnce);
                let res = ctx
                    .call_nowait(&self.service, Decoded::Publish(publish, payload, size))
                    .await;
                let mut inbound = self.connection.inbound();
                match res {
                    Ok(Some(Encoded::Packet(Packet::PublishAck { .. }))) if qos2 => {
                        inbound.pubrec_sent(packet_id.get(), true);
                        Ok(Some(Encoded::Packet(Packet::PublishReceived { packet_id })))
                    }
                    Ok(Some(Encoded::Packet(Packet::PublishAck { .. }))) => {
                        inbound.acknowledged(packet_id.get());
                        res
                    }
                    _ => {
                        inbound.abandoned(packet_id.get());
                        res
                    }
                }
            }
            Decoded::Packet(Packet::PublishRelease { packet_id }, _) => {
                let packet_id = *packet_id;
                // MQTT 3.1.1 section 4.3.3: PUBREL is always answered with PUBCOMP, whether
                // the exchange is known (this connection's, or a resumed session's) or not.
                self.connection.inbound().on_pubrel(packet_id.get());
                Ok(Some(Encoded::Packet(Packet::PublishComplete { packet_id })))
            }
            _ => ctx.call_nowait(&self.service, req).await,
        }
    }
}

/// The MQTT 5.0 middleware.
#[derive(Clone, Copy, Debug, Default)]
pub struct Exchange5;

pub struct Exchange5Service<S> {
    service: S,
    connection: Rc<Connection>,
    /// Set once the dispatcher shuts down: the library's control pipeline panics if its
    /// readiness is polled after that, so nothing more is handed to it.
    shut_down: Cell<bool>,
}

impl<S, St: HasConnection> Middleware<S, v5::Session<St>> for Exchange5 {
    type Service = Exchange5Service<S>;

    fn create(&self, session: &v5::Session<St>, service: S) -> Self::Service {
        Exchange5Service {
            service,
            connection: Rc::clone(HasConnection::connection(&**session)),
            shut_down: Cell::new(false),
        }
    }
}

fn pubcomp5(
    packet_id: std::num::NonZeroU16,
    reason_code: v5::codec::PublishAck2Reason,
) -> v5::codec::Encoded {
    v5::codec::Encoded::Packet(v5::codec::Packet::PublishComplete(v5::codec::PublishAck2 {
        packet_id,
        reason_code,
        properties: v5::codec::UserProperties::default(),
        reason_string: None,
    }))
}

impl<S, St> Service<v5::Session<St>, v5::codec::Decoded> for Exchange5Service<S>
where
    S: Service<
            v5::Session<St>,
            v5::codec::Decoded,
            Res = Option<v5::codec::Encoded>,
            Error = DispatcherError<BrokerError>,
        >,
{
    type Res = Option<v5::codec::Encoded>;
    type Error = DispatcherError<BrokerError>;

    async fn ready(&self, ctx: Ctx<'_, Self, v5::Session<St>>) -> Result<(), Self::Error> {
        if self.shut_down.get() {
            return Ok(());
        }
        ctx.ready(&self.service).await
    }

    async fn shutdown(&self, ctx: Ctx<'_, Self, v5::Session<St>>) {
        self.shut_down.set(true);
        ctx.shutdown(&self.service).await;
    }

    async fn call(&self, req: v5::codec::Decoded, ctx: Ctx<'_, Self, v5::Session<St>>) -> Result5 {
        use v5::codec::{Decoded, Encoded, Packet, PublishAck, PublishAck2Reason};
        if self.shut_down.get() {
            return Ok(None);
        }
        match &req {
            Decoded::Packet(Packet::Connect(_), _) => {
                self.connection.ended(EndReason::ProtocolError);
                Err(DispatcherError::Protocol(second_connect("5.0")))
            }
            Decoded::Publish(publish, _, _) if publish.packet_id.is_some() => {
                let packet_id = publish.packet_id.expect("matched as present");
                let qos2 = publish.qos == ntex_mqtt::QoS::ExactlyOnce;
                let decision = self.connection.inbound().on_publish(packet_id.get(), qos2);
                match decision {
                    OnPublish::Pubrec => {
                        return Ok(Some(Encoded::Packet(Packet::PublishReceived(PublishAck {
                            packet_id,
                            ..PublishAck::default()
                        }))));
                    }
                    OnPublish::Ignore => return Ok(None),
                    OnPublish::Process => {}
                }
                let Decoded::Publish(mut publish, payload, size) = req else {
                    unreachable!("matched as a publish")
                };
                // As in 3.1.1: the library sees QoS 1, so its PUBACK frees its packet id and
                // its receive window (it never frees a QoS 2 one: docs/MQTT.md); the QoS 2
                // exchange is ours.
                publish.qos = publish.qos.min(ntex_mqtt::QoS::AtLeastOnce);
                let res = ctx
                    .call_nowait(&self.service, Decoded::Publish(publish, payload, size))
                    .await;
                let mut inbound = self.connection.inbound();
                match res {
                    Ok(Some(Encoded::Packet(Packet::PublishAck(ack)))) if qos2 => {
                        // A failure PUBREC (>= 0x80) ends the exchange (section 4.3.3).
                        let success = u8::from(ack.reason_code) < 0x80;
                        inbound.pubrec_sent(packet_id.get(), success);
                        Ok(Some(Encoded::Packet(Packet::PublishReceived(ack))))
                    }
                    Ok(Some(Encoded::Packet(Packet::PublishAck(_)))) => {
                        inbound.acknowledged(packet_id.get());
                        res
                    }
                    _ => {
                        inbound.abandoned(packet_id.get());
                        res
                    }
                }
            }
            Decoded::Packet(Packet::PublishRelease(release), _) => {
                let packet_id = release.packet_id;
                let decision = self.connection.inbound().on_pubrel(packet_id.get());
                match decision {
                    OnPubrel::Forward | OnPubrel::Complete => {
                        Ok(Some(pubcomp5(packet_id, PublishAck2Reason::Success)))
                    }
                    // MQTT 5.0 section 3.7.2.1: 0x92 Packet Identifier not found.
                    OnPubrel::Unknown => Ok(Some(pubcomp5(
                        packet_id,
                        PublishAck2Reason::PacketIdNotFound,
                    ))),
                }
            }
            _ => ctx.call_nowait(&self.service, req).await,
        }
    }
}

/// Why the connection stopped, for the log line and the will.
fn stop_reason<E: std::fmt::Debug>(reason: &Reason<E>) -> (EndReason, &'static str) {
    match reason {
        Reason::PeerGone(_) => (EndReason::ConnectionLost, "connection_lost"),
        Reason::Protocol(err) => match err.get_ref() {
            MqttProtocolError::KeepAliveTimeout => {
                (EndReason::KeepAliveTimeout, "keep_alive_timeout")
            }
            MqttProtocolError::ReadTimeout => (EndReason::ProtocolError, "read_timeout"),
            MqttProtocolError::Decode(_) => (EndReason::ProtocolError, "malformed_packet"),
            MqttProtocolError::Encode(_) => (EndReason::ProtocolError, "encode_error"),
            MqttProtocolError::ProtocolViolation(_) => {
                (EndReason::ProtocolError, "protocol_violation")
            }
        },
        Reason::Error(_) => (EndReason::ClosedByBroker, "refused_or_not_committed"),
    }
}

/// The control service of both versions: logs a broker-initiated disconnect (debug for the
/// routine ones, info for protocol violations) and records why the connection ended.
pub fn on_control<E: std::fmt::Debug>(
    connection: &Connection,
    control: &Control<E>,
    protocol: &'static str,
) {
    let Control::Stop(reason) = control else {
        return;
    };
    let (end, why) = stop_reason(reason);
    connection.ended(end);
    match reason {
        Reason::PeerGone(_) => {}
        Reason::Protocol(err) => {
            let detail = match err.get_ref() {
                MqttProtocolError::ProtocolViolation(violation) => violation.message(),
                _ => "",
            };
            if end == EndReason::KeepAliveTimeout {
                tracing::debug!(
                    event = "mqtt.closed_by_broker",
                    message = "MQTT connection closed by the broker.",
                    reason = why,
                    protocol
                );
            } else {
                tracing::info!(
                    event = "mqtt.closed_by_broker",
                    message = "MQTT connection closed by the broker.",
                    reason = why,
                    detail,
                    protocol
                );
            }
        }
        Reason::Error(err) => {
            tracing::debug!(event = "mqtt.closed_by_broker",
                message = "MQTT connection closed by the broker.",
                reason = why,
                error = ?err.get_ref(),
                protocol
            );
        }
    }
}

/// The byte-stream filter that runs one connection's [`Gate`]: it passes what the gate lets
/// through to the library, and on a refusal writes the answer and closes the connection.
pub struct GateLayer {
    gate: RefCell<Gate>,
    pipeline: Arc<Pipeline>,
}

impl std::fmt::Debug for GateLayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GateLayer")
            .field("gate", &self.gate)
            .finish()
    }
}

impl FilterLayer for GateLayer {
    fn process_read_buf(&self, buf: &FilterBuf<'_>) -> std::io::Result<()> {
        let refusal = buf.with_read_buffers(|src, dst| {
            let Some(held) = src else {
                return None;
            };
            let judged = self.gate.borrow_mut().judge(held);
            if judged.pass == held.len() && dst.is_empty() {
                std::mem::swap(held, dst);
            } else {
                dst.extend_from_slice(&held.split_to(judged.pass));
            }
            if judged.refusal.is_some() || self.gate.borrow().closed() {
                held.clear();
            }
            judged.refusal
        });
        let Some(refusal) = refusal else {
            return Ok(());
        };
        buf.with_write_buffers(|_, next| next.extend_from_slice(refusal.answer()));
        if refusal.refuses_connect() {
            self.pipeline.refuse(Refusal::ConnectRefused, Source::Mqtt);
            tracing::info!(
                event = "mqtt.connect_refused",
                message = "MQTT connection refused.",
                reason = refusal.as_str()
            );
        } else {
            tracing::info!(
                event = "mqtt.closed_by_broker",
                message = "MQTT connection closed by the broker.",
                reason = refusal.as_str(),
                protocol = "5.0"
            );
        }
        buf.io().close();
        Ok(())
    }

    fn process_write_buf(&self, buf: &FilterBuf<'_>) -> std::io::Result<()> {
        buf.with_write_buffers(|ours, next| ours.move_to(next));
        Ok(())
    }
}

/// The MQTT service of a listener behind a [`GateLayer`], for any transport (plaintext, TLS,
/// WebSocket).
pub struct Gated<S> {
    service: S,
    pipeline: Arc<Pipeline>,
}

impl<S> Gated<S> {
    pub fn new(service: S, pipeline: Arc<Pipeline>) -> Gated<S> {
        Gated { service, pipeline }
    }

    fn gate<F: Filter>(&self, io: Io<F>) -> IoBoxed {
        io.add_filter(GateLayer {
            gate: RefCell::new(Gate::default()),
            pipeline: Arc::clone(&self.pipeline),
        })
        .boxed()
    }
}

impl<S, F> Service<(), Io<F>> for Gated<S>
where
    S: Service<(), IoBoxed, Res = (), Error = std::io::Error>,
    F: Filter,
{
    type Res = ();
    type Error = std::io::Error;

    async fn ready(&self, ctx: Ctx<'_, Self, ()>) -> Result<(), Self::Error> {
        ctx.ready(&self.service).await
    }

    async fn call(&self, io: Io<F>, ctx: Ctx<'_, Self, ()>) -> Result<(), Self::Error> {
        ctx.call(&self.service, self.gate(io)).await
    }
}

impl<S> Service<(), IoBoxed> for Gated<S>
where
    S: Service<(), IoBoxed, Res = (), Error = std::io::Error>,
{
    type Res = ();
    type Error = std::io::Error;

    async fn ready(&self, ctx: Ctx<'_, Self, ()>) -> Result<(), Self::Error> {
        ctx.ready(&self.service).await
    }

    async fn call(&self, io: IoBoxed, ctx: Ctx<'_, Self, ()>) -> Result<(), Self::Error> {
        ctx.call(&self.service, self.gate(Io::<Sealed>::from(io)))
            .await
    }
}
