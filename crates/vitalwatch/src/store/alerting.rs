//! The store's records for alerting: alerts and their history, per-patient thresholds and
//! webhook deliveries. The SQL lives in `sqlite/alerts.rs`.

use serde::Serialize;
use vitalwatch_core::alerting::{Alert, AlertState, Priority, TransitionKind};
use vitalwatch_core::rules::PatientThresholds;
use vitalwatch_core::telemetry::Timestamp;

/// An alert as stored: the engine's episode plus when the row last changed.
#[derive(Clone, Debug, PartialEq, Serialize, utoipa::ToSchema)]
pub struct AlertRecord {
    #[serde(flatten)]
    pub alert: Alert,
    pub updated_at: String,
}

/// Filters for alerts.
#[derive(Clone, Debug, Default)]
pub struct AlertQuery {
    pub state: Option<AlertState>,
    /// "open" = active or acknowledged (takes precedence over `state` when true).
    pub open_only: bool,
    pub priority: Option<Priority>,
    pub device_id: Option<String>,
    /// Alerts still open at or opened after this time.
    pub since: Option<Timestamp>,
    pub limit: usize,
}

/// One transition of one alert.
#[derive(Clone, Debug, PartialEq, Serialize, utoipa::ToSchema)]
pub struct AlertEventRecord {
    pub id: i64,
    pub alert_id: u64,
    pub kind: String,
    pub at: String,
    /// Who caused it (acknowledge, silence, resolve); `None` for the engine.
    pub actor: Option<String>,
    pub priority: String,
    pub state: String,
    pub escalation_level: u32,
    pub value: Option<f64>,
}

/// A device's threshold overrides with who set them, why and from when.
#[derive(Clone, Debug, PartialEq, Serialize, utoipa::ToSchema)]
pub struct ThresholdsRecord {
    pub device_id: String,
    pub thresholds: PatientThresholds,
    pub author: String,
    pub reason: String,
    pub effective_from: String,
    /// Set by the store.
    pub updated_at: String,
}

/// A webhook delivery that finished, to record.
#[derive(Clone, Debug, PartialEq)]
pub struct NewWebhookDelivery {
    pub url: String,
    pub alert_id: Option<u64>,
    pub transition: String,
    /// "delivered" or "failed".
    pub state: &'static str,
    pub attempts: u32,
    pub last_status: Option<u16>,
    pub last_error: Option<String>,
    pub created_at: Timestamp,
    pub body: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, utoipa::ToSchema)]
pub struct WebhookDeliveryRecord {
    pub id: i64,
    pub url: String,
    pub alert_id: Option<u64>,
    pub transition: String,
    pub state: String,
    pub attempts: u32,
    pub last_status: Option<u16>,
    pub last_error: Option<String>,
    pub created_at: String,
    pub finished_at: String,
}

/// The stable name of a transition kind, as stored and sent.
pub fn transition_kind_str(kind: TransitionKind) -> &'static str {
    match kind {
        TransitionKind::Raised => "raised",
        TransitionKind::Updated => "updated",
        TransitionKind::Escalated => "escalated",
        TransitionKind::Acknowledged => "acknowledged",
        TransitionKind::Silenced => "silenced",
        TransitionKind::Resolved => "resolved",
        TransitionKind::Reopened => "reopened",
    }
}

/// The stable name of an alert state, as stored and served.
pub fn alert_state_str(state: AlertState) -> &'static str {
    match state {
        AlertState::Active => "active",
        AlertState::Acknowledged => "acknowledged",
        AlertState::Resolved => "resolved",
    }
}
