//! The webhook outbox: on PostgreSQL each alert transition's webhook notification is a row,
//! written in the transaction that commits the transition, and delivered by the leader only
//! (`alerts/webhook_outbox.rs`). A node that dies loses no notification: the rows, with their
//! retry state (attempts made, when the next one is due, which targets are done), are in the
//! database, and the next leader goes on from them.
//!
//! Only the PostgreSQL store offers it ([`crate::store::Store::webhook_outbox`] answers `None`
//! on SQLite, whose notifications go through the in-memory queue of `alerts/webhooks.rs`).
//! The body a receiver gets is built once, by [`webhook_body`], for both paths.

use super::{NewWebhookDelivery, StoreError, transition_kind_str};
use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::Duration;
use vitalwatch_core::alerting::AlertTransition;
use vitalwatch_core::telemetry::Timestamp;

/// The JSON a webhook receiver gets for a transition: `{"event": "alert.<kind>",
/// "transition": ...}`.
pub fn webhook_body(transition: &AlertTransition) -> String {
    serde_json::json!({
        "event": format!("alert.{}", transition_kind_str(transition.kind)),
        "transition": transition,
    })
    .to_string()
}

/// What the last attempt at one target gave (kept for the record of a delivery that fails).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LastOutcome {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// A notification taken from the outbox for delivery (leased: no other claim takes it until
/// the lease ends).
#[derive(Clone, Debug, PartialEq)]
pub struct OutboxRow {
    /// The stable delivery id receivers deduplicate on.
    pub id: i64,
    pub alert_id: Option<u64>,
    pub transition: String,
    pub body: String,
    /// When the transition was committed.
    pub created_at: Timestamp,
    /// Rounds of attempts made so far (each round tries every target not yet finished).
    pub attempts: u32,
    /// Targets (by URL) that finished with this notification: delivered, or failed after the
    /// last attempt.
    pub finished: Vec<String>,
    /// Per target URL, what its last attempt gave.
    pub last: BTreeMap<String, LastOutcome>,
}

/// What one round of attempts at a row gave, to store.
#[derive(Clone, Debug, PartialEq)]
pub struct Settled {
    pub id: i64,
    /// The row's `attempts` when it was claimed: a row another claim has settled since (its
    /// lease ran out) is left alone.
    pub claimed_attempts: u32,
    /// Deliveries that finished in this round (recorded in `webhook_deliveries`).
    pub deliveries: Vec<NewWebhookDelivery>,
    /// `None`: every target finished, the row goes. `Some(wait)`: the next round is due after
    /// `wait`, with [`OutboxRow::finished`] and [`OutboxRow::last`] as given here.
    pub retry_after: Option<Duration>,
    pub finished: Vec<String>,
    pub last: BTreeMap<String, LastOutcome>,
}

/// The outbox of a store that keeps one (PostgreSQL).
#[async_trait]
pub trait WebhookOutbox: Send + Sync {
    /// From now on, every alert transition this process commits writes its outbox row (called
    /// when webhook targets are configured; without any, no row is written).
    fn enable(&self);
    /// Up to `limit` rows that are due, oldest first, leased for `lease` (a claim that is
    /// never settled, because its node died, is due again when the lease ends).
    async fn claim(&self, limit: usize, lease: Duration) -> Result<Vec<OutboxRow>, StoreError>;
    /// Stores a round's outcome in one transaction; `false` when the row was settled by
    /// another claim meanwhile (nothing is written then).
    async fn settle(&self, settled: Settled) -> Result<bool, StoreError>;
    /// Keeps at most `keep` rows: the oldest beyond it go, each with the deliveries `failed`
    /// makes of it recorded, in one transaction; answers how many deliveries were recorded.
    async fn trim(&self, keep: usize, failed: &FailedRecords) -> Result<usize, StoreError>;
}

/// What a row removed unfinished is recorded as (one failed delivery per target it had not
/// finished with).
pub type FailedRecords = dyn Fn(&OutboxRow) -> Vec<NewWebhookDelivery> + Send + Sync;
