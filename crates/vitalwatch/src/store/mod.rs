//! Durable storage: the [`Store`] trait and its implementations, SQLite ([`sqlite::SqliteStore`],
//! the embedded default) and PostgreSQL ([`postgres::PostgresStore`]).
//!
//! One writer per store commits readings in batches (group commit); a caller is answered only
//! after its batch is committed, which is the guarantee everything upstream relies on: an
//! acknowledged reading is durable. SQL dialect concerns stay inside each implementation.

pub mod alert_state;
pub mod audit;
pub mod cluster;
pub mod outbox;
pub mod postgres;
pub mod series;
pub mod sqlite;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use vitalwatch_core::rules::{AnomalyType, Finding, Severity};
use vitalwatch_core::telemetry::{Reading, Timestamp};

mod alerting;
mod auth;
mod front;
pub use alerting::{
    AlertEventRecord, AlertQuery, AlertRecord, NewWebhookDelivery, ThresholdsRecord,
    WebhookDeliveryRecord, alert_state_str, transition_kind_str,
};
pub use auth::{AuthWrite, TokenRecord, TokenState, UserRecord};

/// Where a reading came in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    Http,
    Mqtt,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Http => "http",
            Source::Mqtt => "mqtt",
        }
    }
}

/// A decoded, checked reading on its way to the store.
#[derive(Clone, Debug)]
pub struct PreparedReading {
    pub reading: Reading,
    pub findings: Vec<Finding>,
    pub source: Source,
    /// The anomaly model's score; `None` when no model is loaded or the reading lacks a
    /// feature the model needs.
    pub ml_score: Option<f64>,
}

/// A reading the store was given, handed back with what became of it: the caller goes on
/// with the reading itself (alert engine, events) instead of keeping a copy of each while the
/// commit runs.
#[derive(Debug)]
pub struct Written {
    pub item: PreparedReading,
    pub outcome: ItemOutcome,
}

/// What became of one reading.
#[derive(Clone, Debug, PartialEq)]
pub enum ItemOutcome {
    /// Newly stored, with the anomalies recorded for it.
    Stored {
        reading_id: i64,
        anomalies: Vec<AnomalyRecord>,
        /// True when this reading registered its device (auto-register policy).
        registered: bool,
    },
    /// The same reading (device + timestamp, or device + recent seq) was stored before.
    Duplicate { reading_id: i64 },
    /// From an unregistered or deactivated device: kept apart, not patient data.
    Quarantined {
        quarantine_id: i64,
        anomalies: Vec<AnomalyRecord>,
    },
}

/// What happens to a reading from a device that is not in the registry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum RegistryPolicy {
    /// Register the device on its first reading (the seed's behaviour); audited.
    AutoRegister,
    /// Quarantine the reading and raise UNKNOWN_DEVICE.
    Strict,
}

impl RegistryPolicy {
    pub fn as_str(self) -> &'static str {
        match self {
            RegistryPolicy::AutoRegister => "auto-register",
            RegistryPolicy::Strict => "strict",
        }
    }
}

/// How the store treats devices and redeliveries; fixed when it opens.
#[derive(Clone, Debug)]
pub struct StoreOptions {
    pub policy: RegistryPolicy,
    pub default_expected_interval_s: f64,
    pub max_batch: usize,
    pub queue_capacity: usize,
    pub redelivery_window_s: u64,
    /// Severity of the UNKNOWN_DEVICE anomaly raised for quarantined readings.
    pub unknown_device_severity: Severity,
}

#[derive(Clone, Debug, PartialEq, Serialize, utoipa::ToSchema)]
pub struct DeviceRecord {
    pub device_id: String,
    pub patient_label: Option<String>,
    pub location: Option<String>,
    pub expected_interval_s: f64,
    /// "active" or "inactive".
    pub status: String,
    pub registered_at: String,
    pub registered_by: String,
    pub updated_at: String,
    pub last_seen: Option<String>,
    pub total_readings: i64,
}

#[derive(Clone, Debug, PartialEq, Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct ReadingRecord {
    pub id: i64,
    pub device_id: String,
    pub timestamp: String,
    pub timestamp_from_device: bool,
    pub received_at: String,
    pub heart_rate: Option<f64>,
    pub body_temp: Option<f64>,
    pub signal_strength: Option<f64>,
    pub battery_level: Option<f64>,
    pub spo2: Option<f64>,
    pub respiratory_rate: Option<f64>,
    pub systolic_bp: Option<f64>,
    pub diastolic_bp: Option<f64>,
    pub consciousness: Option<String>,
    pub on_oxygen: Option<bool>,
    pub seq: Option<i64>,
    pub extra: Option<serde_json::Value>,
    pub ml_score: Option<f64>,
    pub source: String,
}

impl ReadingRecord {
    /// Its NEWS2 score on the patient's SpO2 `scale`, when it carries any of the vitals only
    /// NEWS2 uses (respiration rate, SpO2, systolic BP, consciousness): heart rate and
    /// temperature alone would make a misleadingly low partial score.
    pub fn news2(
        &self,
        scale: vitalwatch_core::news2::Spo2Scale,
    ) -> Option<vitalwatch_core::news2::News2> {
        use vitalwatch_core::news2;
        let has_news2_vitals = self.respiratory_rate.is_some()
            || self.spo2.is_some()
            || self.systolic_bp.is_some()
            || self.consciousness.is_some();
        has_news2_vitals.then(|| {
            news2::score(
                &news2::Inputs {
                    respiration_rate_per_min: self.respiratory_rate,
                    spo2_pct: self.spo2,
                    on_oxygen: self.on_oxygen,
                    systolic_bp_mmhg: self.systolic_bp,
                    pulse_bpm: self.heart_rate,
                    consciousness: self
                        .consciousness
                        .as_deref()
                        .and_then(vitalwatch_core::telemetry::Consciousness::from_letter),
                    temperature_c: self.body_temp,
                },
                scale,
            )
        })
    }

    /// The stored form of a reading that was just committed under `id`.
    pub fn from_reading(id: i64, reading: &Reading, source: Source) -> ReadingRecord {
        ReadingRecord {
            id,
            device_id: reading.device_id.as_str().to_owned(),
            timestamp: reading.timestamp.to_rfc3339(),
            timestamp_from_device: reading.timestamp_from_device,
            received_at: reading.received_at.to_rfc3339(),
            heart_rate: reading.heart_rate_bpm,
            body_temp: reading.body_temp_c,
            signal_strength: reading.signal_strength_dbm,
            battery_level: reading.battery_pct,
            spo2: reading.spo2_pct,
            respiratory_rate: reading.respiratory_rate_per_min,
            systolic_bp: reading.systolic_bp_mmhg,
            diastolic_bp: reading.diastolic_bp_mmhg,
            consciousness: reading.consciousness.map(|c| c.letter().to_owned()),
            on_oxygen: reading.on_oxygen,
            seq: reading.seq.map(|s| s as i64),
            extra: reading
                .extra
                .as_deref()
                .and_then(|text| serde_json::from_str(text).ok()),
            ml_score: None,
            source: source.as_str().to_owned(),
        }
    }

    /// The same record with the model's score.
    pub fn with_ml_score(mut self, ml_score: Option<f64>) -> ReadingRecord {
        self.ml_score = ml_score;
        self
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct AnomalyRecord {
    pub id: i64,
    pub device_id: String,
    pub reading_id: Option<i64>,
    #[serde(rename = "type")]
    pub kind: AnomalyType,
    pub severity: Severity,
    pub value: Option<f64>,
    pub threshold: Option<f64>,
    pub detected_at: String,
    pub details: String,
}

/// Filters for anomalies; results are newest first, `before_id` is the pagination cursor.
#[derive(Clone, Debug, Default)]
pub struct AnomalyQuery {
    pub device_id: Option<String>,
    pub kind: Option<AnomalyType>,
    pub severity: Option<Severity>,
    pub since: Option<Timestamp>,
    pub until: Option<Timestamp>,
    pub before_id: Option<i64>,
    pub limit: usize,
}

/// Filters for one device's readings; newest first, `before_id` is the cursor.
#[derive(Clone, Debug, Default)]
pub struct ReadingQuery {
    pub device_id: Option<String>,
    pub since: Option<Timestamp>,
    pub until: Option<Timestamp>,
    pub before_id: Option<i64>,
    pub limit: usize,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct DeviceRegistration {
    pub device_id: String,
    pub patient_label: Option<String>,
    pub location: Option<String>,
    pub expected_interval_s: Option<f64>,
}

/// A partial update: `None` leaves a field as it is; `Some(None)` clears an optional one.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct DeviceUpdate {
    pub patient_label: Option<Option<String>>,
    pub location: Option<Option<String>>,
    pub expected_interval_s: Option<f64>,
    pub active: Option<bool>,
}

impl DeviceUpdate {
    /// The audit entry of this update to a device whose status was `status`: which action it
    /// is (deactivate, reactivate or update) and which fields it changed, never their values.
    pub fn audit_entry(&self, status: &str, device_id: &str, actor: &str) -> AuditEntry {
        let action = match self.active {
            Some(false) => "device.deactivate",
            Some(true) if status != "active" => "device.reactivate",
            _ => "device.update",
        };
        let changed: Vec<&str> = [
            ("patient_label", self.patient_label.is_some()),
            ("location", self.location.is_some()),
            ("expected_interval_s", self.expected_interval_s.is_some()),
            ("active", self.active.is_some()),
        ]
        .into_iter()
        .filter_map(|(field, set)| set.then_some(field))
        .collect();
        AuditEntry {
            actor: actor.to_owned(),
            action: action.to_owned(),
            target: device_id.to_owned(),
            details: serde_json::json!({ "changed": changed }),
        }
    }
}

/// Who did what to which thing; `details` must hold no vital values.
#[derive(Clone, Debug, PartialEq)]
pub struct AuditEntry {
    pub actor: String,
    pub action: String,
    pub target: String,
    pub details: serde_json::Value,
}

/// One audit row as stored, hash chain included.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct AuditRecord {
    pub id: i64,
    pub at: String,
    pub actor: String,
    pub action: String,
    pub target: String,
    /// The details exactly as stored (the hash covers this text).
    pub details: String,
    pub prev_hash: String,
    pub hash: String,
}

/// How long each kind of row is kept.
#[derive(Clone, Copy, Debug)]
pub struct Retention {
    pub readings_days: u32,
    pub anomalies_days: u32,
    pub audit_days: u32,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct PurgeCounts {
    pub readings: u64,
    pub quarantine: u64,
    pub anomalies: u64,
    pub audit: u64,
}

#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct StoreHealth {
    pub status: &'static str,
    pub backend: &'static str,
    pub journal_mode: String,
    pub synchronous: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// A reading as the seed's JSON payload (plus extended fields): what every backend keeps of a
/// quarantined reading.
pub(crate) fn quarantine_payload(reading: &Reading) -> serde_json::Value {
    serde_json::json!({
        "device_id": reading.device_id.as_str(),
        "timestamp": reading.timestamp.to_rfc3339(),
        "heart_rate": reading.heart_rate_bpm,
        "body_temp": reading.body_temp_c,
        "signal_strength": reading.signal_strength_dbm,
        "battery_level": reading.battery_pct,
        "spo2": reading.spo2_pct,
        "respiratory_rate": reading.respiratory_rate_per_min,
        "systolic_bp": reading.systolic_bp_mmhg,
        "diastolic_bp": reading.diastolic_bp_mmhg,
        "consciousness": reading.consciousness.map(|c| c.letter()),
        "on_oxygen": reading.on_oxygen,
        "seq": reading.seq,
        "extra": reading.extra.as_deref().and_then(|e| serde_json::from_str::<serde_json::Value>(e).ok()),
    })
}

/// A backend's own error, boxed so that no backend type appears in this module or the trait.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Why a store operation failed, in terms a caller can act on; the same for every backend.
///
/// Only the first six variants carry text meant for a person (an API client sees them as
/// 4xx/503 answers); the others are for the server's log, and the API answers them with a
/// generic 500.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("device {0} is not registered")]
    DeviceNotFound(String),
    #[error("device {0} is already registered")]
    DeviceExists(String),
    #[error("alert {0} does not exist")]
    AlertNotFound(i64),
    /// The store is closed or shutting down: nothing more will be written.
    #[error("the store is shutting down")]
    Closed,
    /// The writer's queue had no room in time: retry later.
    #[error("the store is busy; try again")]
    Busy,
    /// Another record already has this name (a token, a user).
    #[error("{0} already exists")]
    Conflict(String),
    /// The database was migrated by a newer VitalWatch; this one refuses to touch it.
    #[error(
        "the database schema is version {found}, newer than this VitalWatch supports \
         (up to {supported}): run a newer VitalWatch, or restore a backup made by this version"
    )]
    SchemaTooNew { found: i64, supported: i64 },
    /// A value could not be stored, or a stored row could not be read back.
    #[error("invalid stored data: {0}")]
    InvalidData(String),
    /// The backend failed (I/O, a constraint, the driver). The message is written into this
    /// error's own text, not chained as its `source`, because the log prints the text alone.
    #[error("database error: {0}")]
    Backend(BoxError),
    /// Something around the backend failed (a worker task that stopped).
    #[error("{0}")]
    Other(String),
}

impl StoreError {
    /// A backend failure described by a message.
    pub fn backend(message: impl Into<String>) -> StoreError {
        StoreError::Backend(message.into().into())
    }
}

/// Durable storage behind one interface: SQLite or PostgreSQL.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Stores readings and their findings; returns once they are committed, each reading
    /// with its outcome, in the order given.
    async fn write_readings(&self, items: Vec<PreparedReading>)
    -> Result<Vec<Written>, StoreError>;
    /// Like [`Store::write_readings`], but gives up with [`StoreError::Busy`] when the writer's
    /// queue has no room within `wait`.
    async fn try_write_readings(
        &self,
        items: Vec<PreparedReading>,
        wait: std::time::Duration,
    ) -> Result<Vec<Written>, StoreError>;
    async fn register_device(
        &self,
        registration: DeviceRegistration,
        actor: String,
    ) -> Result<DeviceRecord, StoreError>;
    async fn update_device(
        &self,
        device_id: String,
        update: DeviceUpdate,
        actor: String,
    ) -> Result<DeviceRecord, StoreError>;
    /// Queues an audit entry; never waits for a commit.
    async fn audit(&self, entry: AuditEntry) -> Result<(), StoreError>;
    /// Queues audit entries without waiting at all: [`StoreError::Busy`] when the writer's
    /// queue is full (the caller keeps them and retries), so audit never delays ingest.
    fn try_audit_batch(
        &self,
        entries: Vec<AuditEntry>,
    ) -> Result<(), (StoreError, Vec<AuditEntry>)>;
    /// Creates, revokes or changes a token or user, audited by `actor` in the same
    /// transaction; `false` when the named token or user does not exist.
    async fn auth_write(&self, write: AuthWrite, actor: String) -> Result<bool, StoreError>;
    async fn find_token(&self, id: String) -> Result<Option<TokenRecord>, StoreError>;
    async fn list_tokens(&self) -> Result<Vec<TokenRecord>, StoreError>;
    async fn find_user(&self, username: String) -> Result<Option<UserRecord>, StoreError>;
    async fn list_users(&self) -> Result<Vec<UserRecord>, StoreError>;
    async fn purge(&self, now: Timestamp, retention: Retention) -> Result<PurgeCounts, StoreError>;
    async fn list_devices(&self) -> Result<Vec<DeviceRecord>, StoreError>;
    async fn get_device(&self, device_id: String) -> Result<Option<DeviceRecord>, StoreError>;
    async fn readings(&self, query: ReadingQuery) -> Result<Vec<ReadingRecord>, StoreError>;
    async fn anomalies(&self, query: AnomalyQuery) -> Result<Vec<AnomalyRecord>, StoreError>;
    /// Audit rows with `id > after_id`, in id order, at most `limit`.
    async fn audit_log(&self, after_id: i64, limit: usize) -> Result<Vec<AuditRecord>, StoreError>;
    /// Records a clinician's verdict on an alert episode (audited in the same transaction).
    async fn set_alert_verdict(
        &self,
        alert_id: i64,
        true_alarm: bool,
        by: String,
    ) -> Result<(), StoreError>;
    /// Readings received during alert episodes that have a verdict, labelled with it
    /// (true = a true alarm), oldest first, at most `limit`.
    async fn verdict_readings(
        &self,
        limit: usize,
    ) -> Result<Vec<(ReadingRecord, bool)>, StoreError>;
    /// The id and hash of the newest audit row (the chain's head), if any.
    async fn audit_head(&self) -> Result<Option<(i64, String)>, StoreError>;
    /// The newest audit row with this action, if any.
    async fn last_audit(&self, action: String) -> Result<Option<AuditRecord>, StoreError>;
    async fn health(&self) -> StoreHealth;
    /// Persists alert transitions in order (alert rows and their history); returns after the
    /// commit. A violation of "one open episode per device and condition" is an error.
    async fn write_alert_transitions(
        &self,
        transitions: Vec<vitalwatch_core::alerting::AlertTransition>,
    ) -> Result<(), StoreError>;
    /// The highest alert id ever issued and every open (not resolved) alert.
    async fn open_alerts(&self)
    -> Result<(u64, Vec<vitalwatch_core::alerting::Alert>), StoreError>;
    /// Alerts, open first (active, then acknowledged), then by priority, newest first.
    async fn alerts(&self, query: AlertQuery) -> Result<Vec<AlertRecord>, StoreError>;
    /// One alert with its history.
    async fn alert(
        &self,
        id: u64,
    ) -> Result<Option<(AlertRecord, Vec<AlertEventRecord>)>, StoreError>;
    /// Sets (replaces) a device's threshold overrides; audited in the same transaction.
    async fn set_thresholds(
        &self,
        record: ThresholdsRecord,
    ) -> Result<ThresholdsRecord, StoreError>;
    /// Removes a device's overrides (audited); false when it had none.
    async fn clear_thresholds(
        &self,
        device_id: String,
        actor: String,
        reason: Option<String>,
    ) -> Result<bool, StoreError>;
    /// Threshold overrides of one device, or of every device.
    async fn thresholds(
        &self,
        device_id: Option<String>,
    ) -> Result<Vec<ThresholdsRecord>, StoreError>;
    /// Records a finished webhook delivery (delivered, or failed after its retries).
    async fn record_webhook_delivery(&self, delivery: NewWebhookDelivery)
    -> Result<(), StoreError>;
    /// Finished webhook deliveries, newest first, optionally of one state.
    async fn webhook_deliveries(
        &self,
        state: Option<String>,
        limit: usize,
    ) -> Result<Vec<WebhookDeliveryRecord>, StoreError>;
    /// Top metrics and per-type/per-device/per-severity counts for a dashboard window.
    async fn dashboard_stats(
        &self,
        window: series::Window,
        now: Timestamp,
    ) -> Result<series::DashboardStats, StoreError>;
    /// Bucketed (mean/min/max) series of each device's vitals; one entry per device with data.
    async fn series(
        &self,
        query: series::SeriesQuery,
    ) -> Result<Vec<series::DeviceSeries>, StoreError>;
    /// The newest reading in the window of each registered device (that has one).
    async fn latest_readings(
        &self,
        window: series::Window,
    ) -> Result<Vec<ReadingRecord>, StoreError>;
    /// Readings and anomalies stored after the given ids (oldest first, at most `limit` each),
    /// for a live stream that reconnects.
    async fn events_after(
        &self,
        reading_id: i64,
        anomaly_id: i64,
        limit: usize,
    ) -> Result<(Vec<ReadingRecord>, Vec<AnomalyRecord>), StoreError>;
    /// The highest reading and anomaly ids stored so far (0 when none).
    async fn max_event_ids(&self) -> Result<(i64, i64), StoreError>;
    /// Commits what is queued and closes the database.
    async fn close(&self);
    /// Training data for the anomaly model: readings with timestamps at or after `since` that
    /// raised no anomaly at all, oldest first, at most `limit`.
    async fn normal_readings(
        &self,
        since: Option<Timestamp>,
        limit: usize,
    ) -> Result<Vec<ReadingRecord>, StoreError>;
    /// The alert engine's state shared by every node on this database, when the backend keeps
    /// it (PostgreSQL). `None` (SQLite): the alert service keeps its engine in memory.
    fn shared_alerts(&self) -> Option<&dyn alert_state::SharedAlertState> {
        None
    }
    /// The leader election of nodes sharing this database, when the backend offers one
    /// (PostgreSQL: an advisory lock on a dedicated connection). `None` (SQLite): one node,
    /// always the leader.
    fn leader_lock(&self) -> Option<Box<dyn alert_state::LeaderLock>> {
        None
    }
    /// The durable webhook outbox the leader delivers from, when the backend keeps one
    /// (PostgreSQL). `None` (SQLite): webhooks go through the in-memory queue.
    fn webhook_outbox(&self) -> Option<&dyn outbox::WebhookOutbox> {
        None
    }
    /// What the nodes sharing this store share besides the data (sessions, login failures,
    /// revocations, a notification channel); `None` for a store of one process (SQLite).
    fn cluster(&self) -> Option<std::sync::Arc<dyn cluster::Cluster>> {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::DeviceUpdate;

    #[test]
    fn a_device_update_is_audited_by_what_it_does_and_which_fields_it_names() {
        let deactivate = DeviceUpdate {
            active: Some(false),
            location: Some(None),
            ..DeviceUpdate::default()
        };
        let entry = deactivate.audit_entry("active", "bed-1", "admin");
        assert_eq!(entry.action, "device.deactivate");
        assert_eq!(entry.target, "bed-1");
        assert_eq!(entry.actor, "admin");
        assert_eq!(
            entry.details,
            serde_json::json!({ "changed": ["location", "active"] })
        );
        let reactivate = DeviceUpdate {
            active: Some(true),
            ..DeviceUpdate::default()
        };
        assert_eq!(
            reactivate.audit_entry("inactive", "bed-1", "admin").action,
            "device.reactivate"
        );
        // Activating an active device, or changing a label, is an update.
        assert_eq!(
            reactivate.audit_entry("active", "bed-1", "admin").action,
            "device.update"
        );
        let relabel = DeviceUpdate {
            patient_label: Some(Some("P-7".to_owned())),
            ..DeviceUpdate::default()
        };
        let entry = relabel.audit_entry("active", "bed-1", "admin");
        assert_eq!(entry.action, "device.update");
        // The new label itself is patient data: only the field's name is recorded.
        assert_eq!(
            entry.details,
            serde_json::json!({ "changed": ["patient_label"] })
        );
    }
}
