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
//! No ntex type appears here: a consumer's connection is a [`Sink`], which `embedded.rs`
//! implements for the 3.1.1 and 5.0 sinks; which filters a consumer may use is decided by
//! [`session::grant`].
//!
//! Each ntex worker thread keeps its own registry of its consumers and its own copy of the
//! retained state, fed by its own subscription to the pipeline's event bus, so nothing here
//! crosses threads. A consumer that cannot keep up loses QoS 0 messages first; QoS 1 messages
//! beyond [`MAX_PENDING`] per consumer are dropped and counted, never allowed to stall ingest.

use super::session::{self, Qos};
use crate::events::{Event, QuietReceiver, ReadingInterest};
use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::rc::{Rc, Weak};
use tokio::sync::broadcast;

/// QoS 1 messages waiting for a consumer's PUBACK before newer ones are dropped.
pub const MAX_PENDING: usize = 1024;

/// How to reach one connected consumer: the MQTT connection's outgoing side, implemented in
/// `embedded.rs` for the 3.1.1 and 5.0 sinks (and by a recorder in the tests).
pub trait Sink {
    /// A message body; cloning it must be cheap, as one is sent to many consumers.
    type Payload: Clone + From<String>;

    fn is_open(&self) -> bool;

    /// Sends at QoS 0; false when the message could not be written.
    fn send_at_most_once(&self, topic: &str, payload: Self::Payload, retain: bool) -> bool;

    /// Starts a QoS 1 send without waiting for it; `pending` is dropped once the consumer
    /// acknowledged it (or the send failed).
    fn send_at_least_once(
        &self,
        topic: &str,
        payload: Self::Payload,
        retain: bool,
        pending: Pending,
    );
}

/// One QoS 1 message a consumer has not acknowledged yet; dropping it frees its place.
pub struct Pending(Rc<Cell<usize>>);

impl Drop for Pending {
    fn drop(&mut self) {
        self.0.set(self.0.get().saturating_sub(1));
    }
}

pub struct Consumer<S> {
    pub name: Rc<str>,
    sink: S,
    /// The granted topic filters (checked by [`session::grant`]) and their QoS.
    filters: RefCell<Vec<(String, Qos)>>,
    pending: Rc<Cell<usize>>,
    /// Readings are built into events while a consumer is connected.
    _readings: ReadingInterest,
}

impl<S: Sink> Consumer<S> {
    pub fn new(name: Rc<str>, sink: S, readings: ReadingInterest) -> Rc<Consumer<S>> {
        Rc::new(Consumer {
            name,
            sink,
            filters: RefCell::new(Vec::new()),
            pending: Rc::new(Cell::new(0)),
            _readings: readings,
        })
    }

    /// Starts delivering what matches a granted `filter`, at `qos` (replacing an earlier
    /// subscription to the same filter).
    pub fn subscribe(&self, filter: &str, qos: Qos) {
        let mut filters = self.filters.borrow_mut();
        filters.retain(|(existing, _)| existing != filter);
        filters.push((filter.to_owned(), qos));
    }

    pub fn unsubscribe(&self, filter: &str) {
        self.filters
            .borrow_mut()
            .retain(|(existing, _)| existing != filter);
    }

    /// The best QoS among this consumer's filters matching `topic`.
    fn wants(&self, topic: &str) -> Option<Qos> {
        self.filters
            .borrow()
            .iter()
            .filter(|(filter, _)| session::filter_matches(filter, topic))
            .map(|(_, qos)| *qos)
            .max()
    }

    /// Sends one message; never waits (QoS 1 acknowledgements are awaited by the sink).
    fn deliver(&self, topic: &str, payload: &S::Payload, qos: Qos, retain: bool) -> bool {
        if qos == Qos::AtMostOnce {
            return self.sink.send_at_most_once(topic, payload.clone(), retain);
        }
        if self.pending.get() >= MAX_PENDING {
            return false;
        }
        self.pending.set(self.pending.get() + 1);
        let pending = Pending(Rc::clone(&self.pending));
        self.sink
            .send_at_least_once(topic, payload.clone(), retain, pending);
        true
    }
}

/// One worker thread's consumers and retained messages.
pub struct Registry<S: Sink> {
    consumers: RefCell<Vec<Weak<Consumer<S>>>>,
    /// The latest alert message per device topic.
    retained: RefCell<BTreeMap<String, S::Payload>>,
    /// Open alerts per device (by alert id), to describe the current state in each message.
    open: RefCell<BTreeMap<String, BTreeMap<u64, serde_json::Value>>>,
    dropped: Cell<u64>,
}

impl<S: Sink> Default for Registry<S> {
    fn default() -> Self {
        Registry {
            consumers: RefCell::default(),
            retained: RefCell::default(),
            open: RefCell::default(),
            dropped: Cell::default(),
        }
    }
}

impl<S: Sink> Registry<S> {
    pub fn add(&self, consumer: &Rc<Consumer<S>>) {
        let mut consumers = self.consumers.borrow_mut();
        consumers.retain(|weak| weak.upgrade().is_some_and(|c| c.sink.is_open()));
        consumers.push(Rc::downgrade(consumer));
    }

    /// Sends the retained messages matching `filter` to a consumer that just subscribed.
    pub fn send_retained(&self, consumer: &Consumer<S>, filter: &str, qos: Qos) {
        let retained: Vec<(String, S::Payload)> = self
            .retained
            .borrow()
            .iter()
            .filter(|(topic, _)| session::filter_matches(filter, topic))
            .map(|(topic, payload)| (topic.clone(), payload.clone()))
            .collect();
        for (topic, payload) in retained {
            consumer.deliver(&topic, &payload, qos, true);
        }
    }

    /// Messages dropped because a consumer could not keep up.
    pub fn dropped(&self) -> u64 {
        self.dropped.get()
    }

    fn publish(&self, topic: &str, payload: &S::Payload) {
        let consumers: Vec<Rc<Consumer<S>>> = self
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
                let mut alert = serde_json::to_value(&transition.alert).unwrap_or_default();
                alert["message"] = serde_json::Value::from(transition.message.as_str());
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
                let topic = format!("{}alerts/{device_id}", session::CONSUMER_PREFIX);
                let payload = S::Payload::from(message.to_string());
                self.retained
                    .borrow_mut()
                    .insert(topic.clone(), payload.clone());
                self.publish(&topic, &payload);
            }
            Event::Reading(record) => {
                if self.consumers.borrow().is_empty() {
                    return;
                }
                let topic = format!("{}telemetry/{}", session::CONSUMER_PREFIX, record.device_id);
                let payload = S::Payload::from(serde_json::to_string(record).unwrap_or_default());
                self.publish(&topic, &payload);
            }
            Event::Will(will) => {
                let topic = format!("{}wills/{}", session::CONSUMER_PREFIX, will.device_id);
                let payload = S::Payload::from(serde_json::to_string(will).unwrap_or_default());
                self.publish(&topic, &payload);
            }
            Event::Anomaly(_) | Event::Gap => {}
        }
    }
}

/// Feeds one worker's registry from the event bus until the bus closes.
pub async fn dispatch<S: Sink>(registry: Rc<Registry<S>>, mut events: QuietReceiver) {
    loop {
        match events.recv().await {
            Ok(event) => registry.on_event(&event),
            Err(broadcast::error::RecvError::Lagged(n)) => {
                tracing::warn!(
                    event = "mqtt.consumer_lagged",
                    message = "MQTT consumers missed events.",
                    missed = n
                );
            }
            Err(broadcast::error::RecvError::Closed) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Records what would be sent; QoS 1 messages stay pending until `ack_all`.
    #[derive(Default)]
    struct Recorder {
        sent: RefCell<Vec<(String, String, Qos, bool)>>,
        unacked: RefCell<Vec<Pending>>,
        closed: Cell<bool>,
    }

    impl Recorder {
        fn ack_all(&self) {
            self.unacked.borrow_mut().clear();
        }
    }

    impl Sink for Rc<Recorder> {
        type Payload = String;

        fn is_open(&self) -> bool {
            !self.closed.get()
        }

        fn send_at_most_once(&self, topic: &str, payload: String, retain: bool) -> bool {
            let sent = (topic.to_owned(), payload, Qos::AtMostOnce, retain);
            self.sent.borrow_mut().push(sent);
            true
        }

        fn send_at_least_once(&self, topic: &str, payload: String, retain: bool, pending: Pending) {
            let sent = (topic.to_owned(), payload, Qos::AtLeastOnce, retain);
            self.sent.borrow_mut().push(sent);
            self.unacked.borrow_mut().push(pending);
        }
    }

    fn consumer(registry: &Registry<Rc<Recorder>>) -> (Rc<Recorder>, Rc<Consumer<Rc<Recorder>>>) {
        let recorder = Rc::new(Recorder::default());
        let interest = crate::events::EventBus::new().want_readings();
        let consumer = Consumer::new(Rc::from("station"), Rc::clone(&recorder), interest);
        registry.add(&consumer);
        (recorder, consumer)
    }

    fn retain(registry: &Registry<Rc<Recorder>>, topic: &str, payload: &str) {
        registry
            .retained
            .borrow_mut()
            .insert(topic.to_owned(), payload.to_owned());
    }

    #[test]
    fn a_new_subscriber_gets_the_matching_retained_messages() {
        let registry = Registry::default();
        retain(&registry, "vitalwatch/alerts/bed-1", "one");
        retain(&registry, "vitalwatch/alerts/bed-2", "two");
        let (recorder, station) = consumer(&registry);
        registry.send_retained(&station, "vitalwatch/alerts/bed-2", Qos::AtMostOnce);
        registry.send_retained(&station, "vitalwatch/telemetry/#", Qos::AtMostOnce);
        assert_eq!(
            *recorder.sent.borrow(),
            [(
                "vitalwatch/alerts/bed-2".to_owned(),
                "two".to_owned(),
                Qos::AtMostOnce,
                true
            )]
        );
        registry.send_retained(&station, "vitalwatch/alerts/+", Qos::AtLeastOnce);
        let topics: Vec<(String, Qos)> = recorder.sent.borrow()[1..]
            .iter()
            .map(|(topic, _, qos, _)| (topic.clone(), *qos))
            .collect();
        assert_eq!(
            topics,
            [
                ("vitalwatch/alerts/bed-1".to_owned(), Qos::AtLeastOnce),
                ("vitalwatch/alerts/bed-2".to_owned(), Qos::AtLeastOnce)
            ]
        );
    }

    #[test]
    fn live_messages_follow_the_filters_at_their_best_qos() {
        let registry = Registry::default();
        let (recorder, station) = consumer(&registry);
        registry.publish("vitalwatch/alerts/bed-1", &"before".to_owned());
        station.subscribe("vitalwatch/alerts/+", Qos::AtMostOnce);
        station.subscribe("vitalwatch/alerts/bed-1", Qos::AtLeastOnce);
        registry.publish("vitalwatch/alerts/bed-1", &"a".to_owned());
        registry.publish("vitalwatch/alerts/bed-2", &"b".to_owned());
        registry.publish("vitalwatch/telemetry/bed-1", &"c".to_owned());
        station.unsubscribe("vitalwatch/alerts/+");
        registry.publish("vitalwatch/alerts/bed-2", &"d".to_owned());
        let sent: Vec<(String, Qos, bool)> = recorder
            .sent
            .borrow()
            .iter()
            .map(|(_, payload, qos, retain)| (payload.clone(), *qos, *retain))
            .collect();
        assert_eq!(
            sent,
            [
                ("a".to_owned(), Qos::AtLeastOnce, false),
                ("b".to_owned(), Qos::AtMostOnce, false)
            ]
        );
    }

    #[test]
    fn qos1_messages_beyond_the_pending_bound_are_dropped_and_counted() {
        let registry = Registry::default();
        let (recorder, station) = consumer(&registry);
        station.subscribe("vitalwatch/telemetry/#", Qos::AtLeastOnce);
        for _ in 0..MAX_PENDING + 3 {
            registry.publish("vitalwatch/telemetry/bed-1", &"r".to_owned());
        }
        assert_eq!(recorder.sent.borrow().len(), MAX_PENDING);
        assert_eq!(registry.dropped(), 3);
        // Acknowledged messages free their places.
        recorder.ack_all();
        registry.publish("vitalwatch/telemetry/bed-1", &"r".to_owned());
        assert_eq!(recorder.sent.borrow().len(), MAX_PENDING + 1);
        assert_eq!(registry.dropped(), 3);
    }

    #[test]
    fn closed_and_dropped_consumers_leave_the_registry() {
        let registry = Registry::default();
        let (first, station) = consumer(&registry);
        first.closed.set(true);
        drop(station);
        let (_second, _other) = consumer(&registry);
        assert_eq!(registry.consumers.borrow().len(), 1);
    }
}
