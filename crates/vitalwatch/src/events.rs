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

    /// Whether anyone listens, so publishers can skip building payloads nobody reads (the
    /// other nodes, with a bridge attached, always do).
    pub fn has_subscribers(&self) -> bool {
        self.outbound.get().is_some() || self.sender.receiver_count() > 0
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
}
