//! The live event bus: what happened, for consumers that watch (the dashboard's stream, MQTT
//! consumers, webhooks).
//!
//! The pipeline publishes readings and anomalies once they are committed; the alert service
//! publishes alert transitions once they are persisted. Both get the sending side from one
//! [`EventBus`], created before either, so neither has to be built in two phases. A lagging
//! subscriber misses events (tokio `broadcast`); it never slows ingest.
//!
//! On a store several nodes share, [`bridge`] forwards what this node publishes to the other
//! nodes and publishes what they send with [`EventBus::publish_remote`], which is never
//! forwarded again; so every node's bus carries every node's events.

pub mod bridge;

use crate::store::{AnomalyRecord, ReadingRecord};
use std::borrow::Cow;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use tokio::sync::{broadcast, mpsc};
use vitalwatch_core::alerting::AlertTransition;

/// One thing that happened, tagged for the wire as `{"kind": ..., "data": ...}`.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
#[serde(tag = "kind", content = "data", rename_all = "snake_case")]
pub enum Event {
    Reading(ReadingRecord),
    Anomaly(AnomalyRecord),
    /// An alert changed (raised, updated, escalated, acknowledged, silenced, resolved,
    /// reopened); MQTT `vitalwatch/alerts/<device_id>` and the dashboard stream consume it.
    Alert(AlertTransition),
    /// A device's MQTT will, published because its connection ended abruptly; MQTT
    /// `vitalwatch/wills/<device_id>` consumes it.
    Will(WillMessage),
    /// This node may have missed other nodes' events (its listening connection to the
    /// database was re-established): live views reload what they show. Local only: never
    /// serialised, never forwarded.
    #[serde(skip)]
    Gap,
}

/// A device's last will, as the broker publishes it to consumers.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct WillMessage {
    pub device_id: String,
    /// The will's payload as text (invalid UTF-8 replaced): the device's own words.
    pub message: String,
    /// Why the connection ended (`connection_lost`, `keep_alive_timeout`, `protocol_error`, ...).
    pub reason: Cow<'static, str>,
    /// When the broker saw the connection end (RFC 3339, server clock).
    pub at: String,
}

/// Events kept for slow subscribers before they start missing some.
const EVENT_BUFFER: usize = 4096;

/// The bus: cheap to clone, every clone sends to the same subscribers.
#[derive(Clone, Debug)]
pub struct EventBus {
    sender: broadcast::Sender<Event>,
    /// The bridge's queue of this node's own events, once a bridge is attached.
    outbound: Arc<OnceLock<mpsc::Sender<Event>>>,
    /// Subscriptions that do not read readings ([`EventBus::subscribe_quiet`]).
    quiet: Arc<AtomicUsize>,
    /// Quiet subscribers that want readings for now ([`EventBus::want_readings`]).
    readers: Arc<AtomicUsize>,
}

/// Adds one to a count while it lives.
#[derive(Debug)]
struct Held(Arc<AtomicUsize>);

impl Held {
    fn new(count: &Arc<AtomicUsize>) -> Held {
        count.fetch_add(1, Ordering::SeqCst);
        Held(Arc::clone(count))
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A subscription for alerts and wills: while only such subscriptions exist, readings and
/// anomalies are not built into events at all (the hot path's fan-out is skipped).
#[derive(Debug)]
pub struct QuietReceiver {
    receiver: broadcast::Receiver<Event>,
    _quiet: Held,
}

impl QuietReceiver {
    /// The next event, as [`broadcast::Receiver::recv`]; readings arrive only while someone
    /// wants them.
    pub async fn recv(&mut self) -> Result<Event, broadcast::error::RecvError> {
        self.receiver.recv().await
    }
}

/// Held by a quiet subscriber's client that reads readings (an MQTT consumer): readings
/// are published while one exists.
#[derive(Debug)]
pub struct ReadingInterest {
    _held: Held,
}

impl Default for EventBus {
    fn default() -> EventBus {
        EventBus::new()
    }
}

impl EventBus {
    pub fn new() -> EventBus {
        let (sender, _) = broadcast::channel(EVENT_BUFFER);
        EventBus {
            sender,
            outbound: Arc::new(OnceLock::new()),
            quiet: Arc::new(AtomicUsize::new(0)),
            readers: Arc::new(AtomicUsize::new(0)),
        }
    }

    /// Publishes an event of this node to whoever listens now (nobody listening is not an
    /// error) and, with a bridge attached, to the other nodes; a full bridge queue drops it
    /// for them (counted), never waits.
    pub fn publish(&self, event: Event) {
        if let Some(outbound) = self.outbound.get()
            && !matches!(event, Event::Gap)
            && outbound.try_send(event.clone()).is_err()
        {
            crate::metrics::cluster::dropped(crate::metrics::cluster::Dropped::QueueFull, 1);
        }
        let _ = self.sender.send(event);
    }

    /// Publishes an event another node sent (or a local-only [`Event::Gap`]) to this node's
    /// subscribers only: it is never forwarded again.
    pub fn publish_remote(&self, event: Event) {
        let _ = self.sender.send(event);
    }

    /// Whether anyone reads readings and anomalies, so the pipeline can skip building events
    /// nobody reads: a subscriber that is not quiet, a quiet one's client that wants them, or
    /// the other nodes (with a bridge attached, they always do).
    pub fn wants_readings(&self) -> bool {
        self.outbound.get().is_some()
            || self.readers.load(Ordering::SeqCst) > 0
            || self.sender.receiver_count() > self.quiet.load(Ordering::SeqCst)
    }

    /// Sends this node's events to `outbound` from now on; `false` when a bridge was
    /// attached already.
    fn attach(&self, outbound: mpsc::Sender<Event>) -> bool {
        self.outbound.set(outbound).is_ok()
    }

    /// Live events from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.sender.subscribe()
    }

    /// Live events from now on, for a subscriber that reads readings only while it holds a
    /// [`EventBus::want_readings`] (the broker's consumer registries, the alert counters).
    pub fn subscribe_quiet(&self) -> QuietReceiver {
        let quiet = Held::new(&self.quiet);
        QuietReceiver {
            receiver: self.sender.subscribe(),
            _quiet: quiet,
        }
    }

    /// Readings are published while the answer lives.
    pub fn want_readings(&self) -> ReadingInterest {
        ReadingInterest {
            _held: Held::new(&self.readers),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readings_are_wanted_by_plain_subscribers_and_by_quiet_ones_that_ask() {
        let bus = EventBus::new();
        assert!(!bus.wants_readings(), "nobody listens");
        let quiet = bus.subscribe_quiet();
        let other_quiet = bus.subscribe_quiet();
        assert!(!bus.wants_readings(), "quiet subscribers read alerts only");
        let interest = bus.want_readings();
        assert!(
            bus.wants_readings(),
            "a quiet subscriber's consumer wants them"
        );
        drop(interest);
        assert!(!bus.wants_readings());
        let plain = bus.subscribe();
        assert!(
            bus.wants_readings(),
            "the dashboard's stream reads everything"
        );
        drop(plain);
        drop(quiet);
        assert!(
            !bus.wants_readings(),
            "a quiet subscription leaves no count behind"
        );
        drop(other_quiet);
        let plain = bus.subscribe();
        assert!(bus.wants_readings());
        drop(plain);
    }

    #[tokio::test]
    async fn a_quiet_subscriber_still_receives_what_is_published() {
        let bus = EventBus::new();
        let mut quiet = bus.subscribe_quiet();
        bus.publish(Event::Gap);
        assert!(matches!(quiet.recv().await, Ok(Event::Gap)));
    }
}
