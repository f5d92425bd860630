//! The embedded broker's side of ntex-mqtt that holds no broker decisions: a consumer's sink
//! over a v3 or v5 connection, and QoS conversions.

use super::consumers::{Pending, Sink};
use super::session::Qos;
use ntex_bytes::Bytes;
use ntex_mqtt::{v3, v5};

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

pub(super) fn from_ntex_qos(qos: ntex_mqtt::QoS) -> Qos {
    match qos {
        ntex_mqtt::QoS::AtMostOnce => Qos::AtMostOnce,
        ntex_mqtt::QoS::AtLeastOnce => Qos::AtLeastOnce,
        ntex_mqtt::QoS::ExactlyOnce => Qos::ExactlyOnce,
    }
}

pub(super) fn to_ntex_qos(qos: Qos) -> ntex_mqtt::QoS {
    match qos {
        Qos::AtMostOnce => ntex_mqtt::QoS::AtMostOnce,
        Qos::AtLeastOnce => ntex_mqtt::QoS::AtLeastOnce,
        Qos::ExactlyOnce => ntex_mqtt::QoS::ExactlyOnce,
    }
}
