//! Events across nodes (issue 14): every event this node publishes on its [`EventBus`]
//! (readings, anomalies, alert transitions, wills) is sent to the other nodes sharing the
//! store with PostgreSQL `NOTIFY`, and what they send is published here with
//! [`EventBus::publish_remote`].
//!
//! Sending: one task takes this node's events from a bounded queue (a full queue drops them
//! for the other nodes, counted, so ingest never waits on the bridge), drains what is queued,
//! serialises it and packs it into as few payloads as fit PostgreSQL's 8000-byte limit, each
//! `<origin>|[event, …]`, sent in one round trip. The origin is this process (the node id and
//! a random suffix, so two processes with one host name differ): its own payloads come back
//! to its listener and are skipped there, and an event heard from another node is published
//! with `publish_remote`, which never reaches the queue, so nothing is forwarded twice.
//!
//! Listening: a connection of the store's own (`Cluster::listen`) that reconnects by itself
//! after a database restart or failover. Events sent while it was down are missed (NOTIFY
//! keeps nothing for absent listeners): on every reconnect the bridge publishes
//! [`Event::Gap`], on which the dashboard's live streams send `resync` (the page reloads its
//! data from the shared database). MQTT consumers get no such signal: a reading or an alert
//! transition sent meanwhile does not reach them through this node, and a device's retained
//! `vitalwatch/alerts/<device>` message catches up at that device's next transition.
//!
//! Must not: block a publisher, forward an event that came from another node.

use super::{Event, EventBus};
use crate::metrics::cluster::{self as counters, Dropped};
use crate::store::cluster::{Cluster, EVENTS_CHANNEL, Heard, MAX_PAYLOAD, batch_payloads};
use std::sync::Arc;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// This node's events waiting to be sent to the others.
const OUTBOUND_BUFFER: usize = 16_384;
/// Events taken from the queue for one round of sending.
const MAX_BATCH: usize = 2048;
/// Why a live view is told to reload after the listening connection came back.
pub const GAP_RECONNECTED: &str = "bridge_reconnected";

/// This process's mark on its payloads: the node id (without `|`) and a random suffix.
pub fn origin(node_id: &str) -> String {
    format!(
        "{}/{}",
        node_id.replace('|', "_"),
        hex::encode(rand::random::<[u8; 6]>())
    )
}

/// The events of one payload, unless it came from `own_origin` (or does not parse).
pub fn parse_payload(payload: &str, own_origin: &str) -> Option<Vec<Event>> {
    let (origin, events) = payload.split_once('|')?;
    if origin == own_origin {
        return None;
    }
    serde_json::from_str::<Vec<Event>>(events).ok()
}

/// The payloads carrying `events` (in order) and how many were too large to send.
pub fn payloads(origin: &str, events: &[Event]) -> (Vec<String>, usize) {
    let items: Vec<String> = events
        .iter()
        .filter(|event| !matches!(event, Event::Gap))
        .filter_map(|event| serde_json::to_string(event).ok())
        .collect();
    batch_payloads(&format!("{origin}|"), &items, MAX_PAYLOAD)
}

/// Starts the bridge for `bus` on `cluster`; it stops with `shutdown`. Returns this process's
/// origin mark.
pub fn start(
    bus: &EventBus,
    cluster: Arc<dyn Cluster>,
    node_id: &str,
    tasks: &TaskTracker,
    shutdown: CancellationToken,
) -> String {
    let origin = origin(node_id);
    let (outbound, queued) = mpsc::channel(OUTBOUND_BUFFER);
    if !bus.attach(outbound) {
        return origin;
    }
    let heard = cluster.listen(&[EVENTS_CHANNEL]);
    tasks.spawn(send(
        Arc::clone(&cluster),
        origin.clone(),
        queued,
        shutdown.clone(),
    ));
    tasks.spawn(receive(bus.clone(), origin.clone(), heard, shutdown));
    tracing::info!(event = "cluster.bridge_started", message = "Live events cross nodes through the database.", node = %node_id);
    origin
}

async fn send(
    cluster: Arc<dyn Cluster>,
    origin: String,
    mut queued: mpsc::Receiver<Event>,
    shutdown: CancellationToken,
) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    let mut failing = false;
    loop {
        let stopping = tokio::select! {
            () = shutdown.cancelled() => {
                // What was published before the stop still goes out.
                while batch.len() < MAX_BATCH
                    && let Ok(event) = queued.try_recv()
                {
                    batch.push(event);
                }
                true
            }
            got = queued.recv_many(&mut batch, MAX_BATCH) => got == 0,
        };
        if batch.is_empty() {
            return;
        }
        let (payloads, too_large) = payloads(&origin, &batch);
        if too_large > 0 {
            counters::dropped(Dropped::TooLarge, too_large);
        }
        let count = batch.len() - too_large;
        let n_payloads = payloads.len();
        match cluster.notify(EVENTS_CHANNEL, payloads).await {
            Ok(()) => {
                counters::sent(count, n_payloads);
                if failing {
                    failing = false;
                    tracing::info!(
                        event = "cluster.notify_recovered",
                        message = "Live events reach the other nodes again."
                    );
                }
            }
            Err(err) => {
                counters::dropped(Dropped::NotifyFailed, count);
                if !failing {
                    failing = true;
                    tracing::warn!(event = "cluster.notify_failed", message = "Live events could not be sent to the other nodes; they miss them until the database answers.", error = %err);
                }
            }
        }
        batch.clear();
        if stopping {
            return;
        }
    }
}

async fn receive(
    bus: EventBus,
    origin: String,
    mut heard: mpsc::Receiver<Heard>,
    shutdown: CancellationToken,
) {
    loop {
        let message = tokio::select! {
            () = shutdown.cancelled() => return,
            message = heard.recv() => message,
        };
        match message {
            None => return,
            Some(Heard::Connected { reconnect }) => {
                if reconnect {
                    counters::reconnected();
                    bus.publish_remote(Event::Gap);
                }
            }
            Some(Heard::Message { payload, .. }) => {
                let Some(events) = parse_payload(&payload, &origin) else {
                    continue;
                };
                counters::received(events.len());
                for event in events {
                    bus.publish_remote(event);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::WillMessage;

    fn will(n: usize) -> Event {
        Event::Will(WillMessage {
            device_id: format!("bed-{n}"),
            message: "x".repeat(300),
            reason: "connection_lost".into(),
            at: "2026-01-01T00:00:00Z".to_owned(),
        })
    }

    fn device(event: &Event) -> String {
        match event {
            Event::Will(will) => will.device_id.clone(),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn a_batch_crosses_in_payloads_that_fit_and_comes_back_in_order() {
        let events: Vec<Event> = (0..100).map(will).collect();
        let (sent, too_large) = payloads("node-1/ab", &events);
        assert_eq!(too_large, 0);
        assert!(
            sent.len() > 1,
            "100 events of ~400 bytes need several payloads"
        );
        assert!(sent.iter().all(|p| p.len() <= MAX_PAYLOAD));
        let back: Vec<String> = sent
            .iter()
            .flat_map(|p| parse_payload(p, "node-2/cd").unwrap())
            .map(|e| device(&e))
            .collect();
        let expected: Vec<String> = (0..100).map(|n| format!("bed-{n}")).collect();
        assert_eq!(back, expected);
    }

    #[test]
    fn a_node_skips_its_own_payloads_and_never_sends_a_gap() {
        let (sent, _) = payloads("node-1/ab", &[will(1), Event::Gap]);
        assert_eq!(sent.len(), 1);
        assert!(parse_payload(&sent[0], "node-1/ab").is_none());
        assert_eq!(parse_payload(&sent[0], "node-1/ff").unwrap().len(), 1);
        assert!(parse_payload("garbage", "x").is_none());
        assert!(parse_payload("o|not json", "x").is_none());
    }

    #[test]
    fn an_origin_has_no_separator_and_differs_per_process() {
        let a = origin("ward|1");
        assert!(!a.contains('|') && a.starts_with("ward_1/"));
        assert_ne!(a, origin("ward|1"));
    }

    #[tokio::test]
    async fn only_local_events_reach_the_bridge_queue() {
        let bus = EventBus::new();
        let (outbound, mut queued) = mpsc::channel(8);
        assert!(bus.attach(outbound));
        assert!(bus.wants_readings(), "the other nodes always listen");
        bus.publish(will(1));
        bus.publish_remote(will(2));
        bus.publish(Event::Gap);
        assert_eq!(device(&queued.recv().await.unwrap()), "bed-1");
        assert!(
            queued.try_recv().is_err(),
            "remote events and gaps stay here"
        );
    }
}
