//! The embedded broker as a broker for consumers: nurse stations, integration engines and
//! dashboards with a consumer certificate (`vitalwatch certs consumer NAME`, OU = consumer)
//! subscribe, with wildcards, to
//! - `vitalwatch/alerts/<device_id>`: every alert transition of that device, as JSON
//!   `{"device_id", "transition": {...}, "open_alerts": [...]}`; the latest one per device is
//!   retained, so a new subscriber learns the current alert state at once;
//! - `vitalwatch/telemetry/<device_id>`: every stored reading (not retained).
//!
//! Delivery is QoS 0 or 1 (a QoS 2 request is granted QoS 1). Consumers may not publish, and
//! may subscribe only below `vitalwatch/`.
//!
//! Each ntex worker thread keeps its own registry of its consumers and its own copy of the
//! retained state, fed by its own subscription to the pipeline's event bus, so nothing here
//! crosses threads. A consumer that cannot keep up loses QoS 0 messages first; QoS 1 messages
//! beyond [`MAX_PENDING`] per consumer are dropped and counted, never allowed to stall ingest.

use crate::pipeline::Event;
use ntex_bytes::Bytes;
use ntex_mqtt::{QoS, TopicFilter, v3, v5};
use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::rc::{Rc, Weak};
use tokio::sync::broadcast;

/// The topic namespace consumers may subscribe to.
pub const PREFIX: &str = "vitalwatch/";
/// QoS 1 messages waiting for a consumer's PUBACK before newer ones are dropped.
pub const MAX_PENDING: usize = 1024;

/// How to reach one connected consumer.
pub enum ConsumerSink {
    V3(v3::MqttSink),
    V5(v5::MqttSink),
}

impl ConsumerSink {
    fn is_open(&self) -> bool {
        match self {
            ConsumerSink::V3(sink) => sink.is_open(),
            ConsumerSink::V5(sink) => sink.is_open(),
        }
    }
}

pub struct Consumer {
    pub name: Rc<str>,
    sink: ConsumerSink,
    filters: RefCell<Vec<(TopicFilter, QoS)>>,
    pending: Cell<usize>,
}

impl Consumer {
    pub fn new(name: Rc<str>, sink: ConsumerSink) -> Rc<Consumer> {
        Rc::new(Consumer {
            name,
            sink,
            filters: RefCell::new(Vec::new()),
            pending: Cell::new(0),
        })
    }

    /// Checks a requested filter and grants a QoS, or refuses it.
    pub fn subscribe(&self, filter: &str, requested: QoS) -> Option<QoS> {
        if !filter.starts_with(PREFIX) {
            return None;
        }
        let parsed = TopicFilter::try_from(ntex_bytes::ByteString::from(filter)).ok()?;
        let granted = if requested == QoS::AtMostOnce {
            QoS::AtMostOnce
        } else {
            QoS::AtLeastOnce
        };
        let mut filters = self.filters.borrow_mut();
        filters.retain(|(existing, _)| existing != &parsed);
        filters.push((parsed, granted));
        Some(granted)
    }

    pub fn unsubscribe(&self, filter: &str) {
        if let Ok(parsed) = TopicFilter::try_from(ntex_bytes::ByteString::from(filter)) {
            self.filters
                .borrow_mut()
                .retain(|(existing, _)| existing != &parsed);
        }
    }

    /// The best QoS among this consumer's filters matching `topic`.
    fn wants(&self, topic: &str) -> Option<QoS> {
        self.filters
            .borrow()
            .iter()
            .filter(|(filter, _)| filter.matches_topic(topic))
            .map(|(_, qos)| *qos)
            .max_by_key(|qos| *qos as u8)
    }

    /// Sends one message; never waits (QoS 1 acknowledgements are awaited in a task).
    fn deliver(self: &Rc<Self>, topic: &str, payload: &Bytes, qos: QoS, retain: bool) -> bool {
        if qos == QoS::AtMostOnce {
            let sent = match &self.sink {
                ConsumerSink::V3(sink) => {
                    let builder = sink.publish(topic.to_owned());
                    let builder = if retain { builder.retain() } else { builder };
                    builder.send_at_most_once(payload.clone()).is_ok()
                }
                ConsumerSink::V5(sink) => sink
                    .publish(topic.to_owned())
                    .retain(retain)
                    .send_at_most_once(payload.clone())
                    .is_ok(),
            };
            return sent;
        }
        if self.pending.get() >= MAX_PENDING {
            return false;
        }
        self.pending.set(self.pending.get() + 1);
        let consumer = Rc::clone(self);
        let topic = topic.to_owned();
        let payload = payload.clone();
        ntex_rt::spawn(async move {
            match &consumer.sink {
                ConsumerSink::V3(sink) => {
                    let builder = sink.publish(topic);
                    let builder = if retain { builder.retain() } else { builder };
                    let _ = builder.send_at_least_once(payload).await;
                }
                ConsumerSink::V5(sink) => {
                    let _ = sink
                        .publish(topic)
                        .retain(retain)
                        .send_at_least_once(payload)
                        .await;
                }
            }
            consumer
                .pending
                .set(consumer.pending.get().saturating_sub(1));
        });
        true
    }
}

/// One worker thread's consumers and retained messages.
#[derive(Default)]
pub struct Registry {
    consumers: RefCell<Vec<Weak<Consumer>>>,
    /// The latest alert message per device topic.
    retained: RefCell<BTreeMap<String, Bytes>>,
    /// Open alerts per device (by alert id), to describe the current state in each message.
    open: RefCell<BTreeMap<String, BTreeMap<u64, serde_json::Value>>>,
    dropped: Cell<u64>,
}

impl Registry {
    pub fn add(&self, consumer: &Rc<Consumer>) {
        let mut consumers = self.consumers.borrow_mut();
        consumers.retain(|weak| weak.upgrade().is_some_and(|c| c.sink.is_open()));
        consumers.push(Rc::downgrade(consumer));
    }

    /// Sends the retained messages matching `filter` to a consumer that just subscribed.
    pub fn send_retained(&self, consumer: &Rc<Consumer>, filter: &str, qos: QoS) {
        let Ok(parsed) = TopicFilter::try_from(ntex_bytes::ByteString::from(filter)) else {
            return;
        };
        let retained: Vec<(String, Bytes)> = self
            .retained
            .borrow()
            .iter()
            .filter(|(topic, _)| parsed.matches_topic(topic.as_str()))
            .map(|(topic, payload)| (topic.clone(), payload.clone()))
            .collect();
        for (topic, payload) in retained {
            consumer.deliver(&topic, &payload, qos, true);
        }
    }

    fn publish(&self, topic: &str, payload: &Bytes) {
        let consumers: Vec<Rc<Consumer>> = self
            .consumers
            .borrow()
            .iter()
            .filter_map(Weak::upgrade)
            .collect();
        for consumer in consumers {
            if let Some(qos) = consumer.wants(topic)
                && !consumer.deliver(topic, payload, qos, false)
            {
                self.dropped.set(self.dropped.get() + 1);
            }
        }
    }

    fn on_event(&self, event: &Event) {
        match event {
            Event::Alert(transition) => {
                let device_id = transition.alert.device_id.as_str().to_owned();
                let alert = serde_json::to_value(&transition.alert).unwrap_or_default();
                let open_alerts: Vec<serde_json::Value> = {
                    let mut open = self.open.borrow_mut();
                    let device = open.entry(device_id.clone()).or_default();
                    if transition.alert.state != vitalwatch_core::alerting::AlertState::Resolved {
                        device.insert(transition.alert.id.0, alert);
                    } else {
                        device.remove(&transition.alert.id.0);
                    }
                    device.values().cloned().collect()
                };
                let message = serde_json::json!({
                    "device_id": device_id,
                    "transition": transition,
                    "open_alerts": open_alerts,
                });
                let topic = format!("{PREFIX}alerts/{device_id}");
                let payload = Bytes::from(message.to_string());
                self.retained
                    .borrow_mut()
                    .insert(topic.clone(), payload.clone());
                self.publish(&topic, &payload);
            }
            Event::Reading(record) => {
                if self.consumers.borrow().is_empty() {
                    return;
                }
                let topic = format!("{PREFIX}telemetry/{}", record.device_id);
                let payload = Bytes::from(serde_json::to_string(record).unwrap_or_default());
                self.publish(&topic, &payload);
            }
            Event::Anomaly(_) => {}
        }
    }
}

/// Feeds one worker's registry from the event bus until the bus closes.
pub async fn dispatch(registry: Rc<Registry>, mut events: broadcast::Receiver<Event>) {
    loop {
        match events.recv().await {
            Ok(event) => registry.on_event(&event),
            Err(broadcast::error::RecvError::Lagged(n)) => {
                tracing::warn!(message = "MQTT consumers missed events.", missed = n);
            }
            Err(broadcast::error::RecvError::Closed) => return,
        }
    }
}
