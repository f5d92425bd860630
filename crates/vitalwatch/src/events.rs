//! The live event bus: what happened, for consumers that watch (the dashboard's stream, MQTT
//! consumers, webhooks).
//!
//! The pipeline publishes readings and anomalies once they are committed; the alert service
//! publishes alert transitions once they are persisted. Both get the sending side from one
//! [`EventBus`], created before either, so neither has to be built in two phases. A lagging
//! subscriber misses events (tokio `broadcast`); it never slows ingest.

use crate::store::{AnomalyRecord, ReadingRecord};
use tokio::sync::broadcast;
use vitalwatch_core::alerting::AlertTransition;

/// One thing that happened, tagged for the wire as `{"kind": ..., "data": ...}`.
#[derive(Clone, Debug, serde::Serialize)]
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
}

/// A device's last will, as the broker publishes it to consumers.
#[derive(Clone, Debug, serde::Serialize)]
pub struct WillMessage {
    pub device_id: String,
    /// The will's payload as text (invalid UTF-8 replaced): the device's own words.
    pub message: String,
    /// Why the connection ended (`connection_lost`, `keep_alive_timeout`, `protocol_error`, ...).
    pub reason: &'static str,
    /// When the broker saw the connection end (RFC 3339, server clock).
    pub at: String,
}

/// Events kept for slow subscribers before they start missing some.
const EVENT_BUFFER: usize = 4096;

/// The bus: cheap to clone, every clone sends to the same subscribers.
#[derive(Clone, Debug)]
pub struct EventBus {
    sender: broadcast::Sender<Event>,
}

impl Default for EventBus {
    fn default() -> EventBus {
        EventBus::new()
    }
}

impl EventBus {
    pub fn new() -> EventBus {
        let (sender, _) = broadcast::channel(EVENT_BUFFER);
        EventBus { sender }
    }

    /// Publishes to whoever listens now; nobody listening is not an error.
    pub fn publish(&self, event: Event) {
        let _ = self.sender.send(event);
    }

    /// Whether anyone listens, so publishers can skip building payloads nobody reads.
    pub fn has_subscribers(&self) -> bool {
        self.sender.receiver_count() > 0
    }

    /// Live events from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.sender.subscribe()
    }
}
