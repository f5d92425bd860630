//! The counters of events crossing nodes (`events::bridge`): what this node sent to the others
//! with `NOTIFY`, what it heard from them, what it dropped and why, and how often its
//! listening connection had to reconnect. No device id or payload in a label.

/// Events this node sent to the other nodes.
pub const NOTIFY_SENT: &str = "vitalwatch_cluster_notify_events_sent_total";
/// `NOTIFY` payloads (each a batch of events, at most 8000 bytes) this node sent.
pub const NOTIFY_PAYLOADS: &str = "vitalwatch_cluster_notify_payloads_total";
/// Events heard from other nodes and published on this node's bus.
pub const NOTIFY_RECEIVED: &str = "vitalwatch_cluster_notify_events_received_total";
/// Events not sent to the other nodes, by reason.
pub const NOTIFY_DROPPED: &str = "vitalwatch_cluster_notify_events_dropped_total";
/// Times the listening connection was re-established (events sent meanwhile were missed).
pub const LISTEN_RECONNECTS: &str = "vitalwatch_cluster_listen_reconnects_total";

/// Why an event did not reach the other nodes: the `reason` label.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dropped {
    /// The bridge's queue was full (the database slower than the event rate).
    QueueFull,
    /// One event's JSON is larger than a `NOTIFY` payload may be.
    TooLarge,
    /// The `NOTIFY` failed (the database unreachable).
    NotifyFailed,
}

impl Dropped {
    pub const ALL: [Dropped; 3] = [Dropped::QueueFull, Dropped::TooLarge, Dropped::NotifyFailed];

    pub fn as_str(self) -> &'static str {
        match self {
            Dropped::QueueFull => "queue_full",
            Dropped::TooLarge => "too_large",
            Dropped::NotifyFailed => "notify_failed",
        }
    }
}

pub fn sent(events: usize, payloads: usize) {
    ::metrics::counter!(NOTIFY_SENT).increment(events as u64);
    ::metrics::counter!(NOTIFY_PAYLOADS).increment(payloads as u64);
}

pub fn received(events: usize) {
    ::metrics::counter!(NOTIFY_RECEIVED).increment(events as u64);
}

pub fn dropped(reason: Dropped, events: usize) {
    ::metrics::counter!(NOTIFY_DROPPED, "reason" => reason.as_str()).increment(events as u64);
}

pub fn reconnected() {
    ::metrics::counter!(LISTEN_RECONNECTS).increment(1);
}

/// Makes every series of this module exist from the first scrape (at zero).
pub(super) fn register_zeros() {
    sent(0, 0);
    received(0);
    for reason in Dropped::ALL {
        dropped(reason, 0);
    }
    ::metrics::counter!(LISTEN_RECONNECTS).increment(0);
}

pub(super) fn describe() {
    use ::metrics::describe_counter;
    describe_counter!(
        NOTIFY_SENT,
        "Live events sent to the other nodes (PostgreSQL NOTIFY)."
    );
    describe_counter!(
        NOTIFY_PAYLOADS,
        "NOTIFY payloads sent, each a batch of events."
    );
    describe_counter!(
        NOTIFY_RECEIVED,
        "Live events heard from the other nodes and published here."
    );
    describe_counter!(
        NOTIFY_DROPPED,
        "Live events not sent to the other nodes, by reason (queue_full, too_large, notify_failed)."
    );
    describe_counter!(
        LISTEN_RECONNECTS,
        "Reconnections of the connection listening for the other nodes' events."
    );
}
