//! Alerts: one episode per (device, condition) while the condition lasts, with a clinical
//! priority and noise control. Anomalies (one row per finding, `rules`) stay as the seed has
//! them; alerts are what a clinician is asked to act on.
//!
//! # Layout
//! - this file: the vocabulary ([`AlertCondition`], [`AlertClass`], [`Priority`], [`Alert`],
//!   [`AlertTransition`], [`AlertError`]).
//! - `config`: [`AlertConfig`], every knob with its default and source.
//! - `signal`: turns one reading (its findings and NEWS2) into per-condition observations.
//! - `engine`: [`AlertEngine`], the lifecycle: onset delay, de-duplication, priority upgrade,
//!   hysteresis, latching, acknowledgement, audio pause, escalation, device offline.
//! - `offline`: the pure device-offline deadline.
//! - `message`: [`message`], the short text of an alert for people and pagers.
//! - [`evaluate`]: scores a stream of transitions against labelled events.
//! - `typescript` (tests only): renders the dashboard's `web/src/generated/conditions.ts`.
//!
//! Alert conditions are a separate enum from [`crate::rules::AnomalyType`]: an anomaly type
//! is a stored, seed-compatible label per reading, while a condition is what an alert is
//! about (it has a direction, a class and a priority, and some conditions, such as
//! DEVICE_OFFLINE and NEWS2, come from no single reading).
//!
//! Nothing here reads a clock or does I/O: every operation takes `now`, returns transitions,
//! and the caller persists and publishes them.

mod config;
mod engine;
pub mod evaluate;
mod message;
mod offline;
mod signal;

pub use config::{
    AlertConfig, ArtefactConfig, ConditionOverride, ConditionSettings, ConfigError,
    EscalationConfig, Grading, HypertensionConfig, News2Grading, OfflineConfig, Onset,
    OnsetByPriority,
};
pub use engine::{
    AlertEngine, DeviceSnapshot, DeviceState, EngineSnapshot, PROVISIONAL_ID_BASE, provisional_to,
    renumber_transitions,
};
pub use evaluate::{Evaluation, KindScore, LabelledEvent, ScoredAlert, evaluate};
pub use message::message;
pub use offline::offline_deadline;

use crate::telemetry::{DeviceId, Timestamp, VitalKey};
use serde::{Deserialize, Serialize};
use std::fmt;

/// What an alert is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum AlertCondition {
    /// Heart rate above the patient's maximum (seed: 100 bpm), graded by NEWS2 pulse bands.
    HeartRateHigh,
    /// Heart rate below the patient's minimum (seed: 60 bpm), graded by NEWS2 pulse bands.
    HeartRateLow,
    /// Temperature above the maximum (seed: 37.5 °C), graded by NEWS2 temperature bands.
    TemperatureHigh,
    /// Temperature below the minimum (seed: 36.0 °C), graded by NEWS2 temperature bands.
    TemperatureLow,
    /// SpO2 in a NEWS2 band scoring 1 or more on the low side (Scale 1 below 96 %).
    Spo2Low,
    /// Respiration rate in a NEWS2 band scoring on the high side (≥ 21 /min; ≥ 25 scores 3).
    RespiratoryRateHigh,
    /// Respiration rate in a NEWS2 band scoring on the low side (≤ 11 /min; ≤ 8 scores 3).
    RespiratoryRateLow,
    /// Systolic BP in a NEWS2 band scoring on the low side (≤ 110 mmHg; ≤ 90 scores 3).
    SystolicBpLow,
    /// Severe hypertension: systolic ≥ 180 or diastolic ≥ 120 mmHg (urgent), or systolic
    /// ≥ 220 (NEWS2 scores 3).
    BloodPressureHigh,
    /// A new confusion, or a response only to voice or pain, or none (ACVPU C, V, P, U:
    /// NEWS2 scores 3).
    ConsciousnessChanged,
    /// The NEWS2 aggregate calls for an urgent or emergency response (a single 3, ≥ 5, ≥ 7).
    News2,
    /// A value impossible for a living patient: the sensor, not the patient.
    SensorFault,
    /// Implausible jumps (a pulse moving ≥ 60 bpm or SpO2 falling ≥ 15 points within seconds):
    /// motion or a loose sensor. Each such value is ignored by physiological alarms; repeated
    /// ones raise this LOW technical alert (poor signal quality).
    Artefact,
    WeakSignal,
    LowBattery,
    /// No reading within the expected interval times the factor.
    DeviceOffline,
    /// The anomaly model flagged a reading.
    MlAnomaly,
    /// Readings from a device that is not registered.
    UnknownDevice,
}

impl AlertCondition {
    pub const ALL: [AlertCondition; 18] = [
        AlertCondition::HeartRateHigh,
        AlertCondition::HeartRateLow,
        AlertCondition::TemperatureHigh,
        AlertCondition::TemperatureLow,
        AlertCondition::Spo2Low,
        AlertCondition::RespiratoryRateHigh,
        AlertCondition::RespiratoryRateLow,
        AlertCondition::SystolicBpLow,
        AlertCondition::BloodPressureHigh,
        AlertCondition::ConsciousnessChanged,
        AlertCondition::News2,
        AlertCondition::SensorFault,
        AlertCondition::Artefact,
        AlertCondition::WeakSignal,
        AlertCondition::LowBattery,
        AlertCondition::DeviceOffline,
        AlertCondition::MlAnomaly,
        AlertCondition::UnknownDevice,
    ];

    /// The stable name, as stored and served.
    pub fn as_str(self) -> &'static str {
        match self {
            AlertCondition::HeartRateHigh => "HEART_RATE_HIGH",
            AlertCondition::HeartRateLow => "HEART_RATE_LOW",
            AlertCondition::TemperatureHigh => "TEMPERATURE_HIGH",
            AlertCondition::TemperatureLow => "TEMPERATURE_LOW",
            AlertCondition::Spo2Low => "SPO2_LOW",
            AlertCondition::RespiratoryRateHigh => "RESPIRATORY_RATE_HIGH",
            AlertCondition::RespiratoryRateLow => "RESPIRATORY_RATE_LOW",
            AlertCondition::SystolicBpLow => "SYSTOLIC_BP_LOW",
            AlertCondition::BloodPressureHigh => "BLOOD_PRESSURE_HIGH",
            AlertCondition::ConsciousnessChanged => "CONSCIOUSNESS_CHANGED",
            AlertCondition::News2 => "NEWS2",
            AlertCondition::SensorFault => "SENSOR_FAULT",
            AlertCondition::Artefact => "ARTEFACT",
            AlertCondition::WeakSignal => "WEAK_SIGNAL",
            AlertCondition::LowBattery => "LOW_BATTERY",
            AlertCondition::DeviceOffline => "DEVICE_OFFLINE",
            AlertCondition::MlAnomaly => "ML_ANOMALY",
            AlertCondition::UnknownDevice => "UNKNOWN_DEVICE",
        }
    }

    pub fn parse(raw: &str) -> Option<AlertCondition> {
        AlertCondition::ALL
            .into_iter()
            .find(|condition| condition.as_str() == raw)
    }

    /// The vitals this condition is about: the values a dashboard highlights while an alert of
    /// it is open (the dashboard's copy, `web/src/generated/conditions.ts`, is rendered from
    /// this by a unit test). Empty for conditions about no single vital (NEWS2, the aggregate;
    /// a sensor fault or artefact, whose vital the alert does not name; the device's state).
    pub fn vitals(self) -> &'static [VitalKey] {
        match self {
            AlertCondition::HeartRateHigh | AlertCondition::HeartRateLow => &[VitalKey::HeartRate],
            AlertCondition::TemperatureHigh | AlertCondition::TemperatureLow => {
                &[VitalKey::BodyTemp]
            }
            AlertCondition::Spo2Low => &[VitalKey::Spo2],
            AlertCondition::RespiratoryRateHigh | AlertCondition::RespiratoryRateLow => {
                &[VitalKey::RespiratoryRate]
            }
            AlertCondition::SystolicBpLow => &[VitalKey::SystolicBp],
            // Systolic ≥ 180 or diastolic ≥ 120: either pressure may be the one.
            AlertCondition::BloodPressureHigh => &[VitalKey::SystolicBp, VitalKey::DiastolicBp],
            AlertCondition::ConsciousnessChanged => &[VitalKey::Consciousness],
            AlertCondition::WeakSignal => &[VitalKey::SignalStrength],
            AlertCondition::LowBattery => &[VitalKey::BatteryLevel],
            AlertCondition::News2
            | AlertCondition::SensorFault
            | AlertCondition::Artefact
            | AlertCondition::DeviceOffline
            | AlertCondition::MlAnomaly
            | AlertCondition::UnknownDevice => &[],
        }
    }

    /// Physiological (about the patient) or technical (about the equipment), as IEC 60601-1-8
    /// separates them; the two are independent channels for acknowledgement and audio pause.
    pub fn class(self) -> AlertClass {
        match self {
            AlertCondition::HeartRateHigh
            | AlertCondition::HeartRateLow
            | AlertCondition::TemperatureHigh
            | AlertCondition::TemperatureLow
            | AlertCondition::Spo2Low
            | AlertCondition::RespiratoryRateHigh
            | AlertCondition::RespiratoryRateLow
            | AlertCondition::SystolicBpLow
            | AlertCondition::BloodPressureHigh
            | AlertCondition::ConsciousnessChanged
            | AlertCondition::News2
            | AlertCondition::MlAnomaly => AlertClass::Physiological,
            AlertCondition::SensorFault
            | AlertCondition::Artefact
            | AlertCondition::WeakSignal
            | AlertCondition::LowBattery
            | AlertCondition::DeviceOffline
            | AlertCondition::UnknownDevice => AlertClass::Technical,
        }
    }
}

impl fmt::Display for AlertCondition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// IEC 60601-1-8 distinguishes physiological and technical alarm conditions.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum AlertClass {
    Physiological,
    Technical,
}

/// IEC 60601-1-8 priority: HIGH needs an immediate response, MEDIUM a prompt one, LOW
/// awareness (FHIR `devicealert-priority` uses the same codes). Ordered low < medium < high.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum Priority {
    Low,
    Medium,
    High,
}

impl Priority {
    pub fn as_str(self) -> &'static str {
        match self {
            Priority::Low => "low",
            Priority::Medium => "medium",
            Priority::High => "high",
        }
    }
}

/// Where an alert is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum AlertState {
    /// Needs attention: sounds unless its channel's audio is paused.
    Active,
    /// Someone took responsibility; shown, not sounding, not escalating.
    Acknowledged,
    /// Over: the condition cleared (with hysteresis) or a user resolved it.
    Resolved,
}

/// An alert id, assigned by the engine from a counter the caller seeds (the store's max id).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AlertId(pub u64);

impl fmt::Display for AlertId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// One alert episode of one condition on one device. Everything the store must persist to
/// rebuild the engine after a restart is here (see [`AlertEngine::restore`]).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Alert {
    pub id: AlertId,
    #[serde(deserialize_with = "serde_time::device_id")]
    pub device_id: DeviceId,
    pub condition: AlertCondition,
    pub class: AlertClass,
    /// The highest priority reached in this episode (it is upgraded, never downgraded).
    pub priority: Priority,
    pub state: AlertState,
    #[serde(with = "serde_time::ts")]
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub opened_at: Timestamp,
    /// When the condition was last observed present.
    #[serde(with = "serde_time::ts")]
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub last_seen: Timestamp,
    /// The latest offending value (bpm, °C, %, NEWS2 total, seconds offline), if any.
    pub last_value: Option<f64>,
    /// The limit crossed, kept so the clearing hysteresis survives a restart.
    pub threshold: Option<f64>,
    /// How many readings showed the condition in this episode (onset readings included).
    pub count: u64,
    /// False once the condition has cleared while a latched alert waits for acknowledgement.
    pub condition_present: bool,
    pub acknowledged_by: Option<String>,
    #[serde(with = "serde_time::opt_ts")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, format = DateTime))]
    pub acknowledged_at: Option<Timestamp>,
    pub acknowledged_note: Option<String>,
    /// Audio paused until then (AUDIO PAUSED in IEC 60601-1-8 terms); shown, not sounding.
    #[serde(with = "serde_time::opt_ts")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, format = DateTime))]
    pub silenced_until: Option<Timestamp>,
    pub silenced_by: Option<String>,
    #[serde(with = "serde_time::opt_ts")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, format = DateTime))]
    pub resolved_at: Option<Timestamp>,
    /// Who resolved it; `None` when it resolved by itself (the condition cleared).
    pub resolved_by: Option<String>,
    /// When the alert last started needing attention (raised, upgraded, reopened): the
    /// escalation clock runs from here while it stays unacknowledged.
    #[serde(with = "serde_time::ts")]
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub attention_since: Timestamp,
    /// How many times it escalated (0: not yet).
    pub escalation_level: u32,
}

impl Alert {
    /// A new episode of `condition` on `device_id`, active since `at`: seen once, nobody has
    /// acknowledged, silenced or resolved it. The engine fills in the rest as it learns it.
    pub fn opened(
        id: AlertId,
        device_id: DeviceId,
        condition: AlertCondition,
        priority: Priority,
        at: Timestamp,
    ) -> Alert {
        Alert {
            id,
            device_id,
            condition,
            class: condition.class(),
            priority,
            state: AlertState::Active,
            opened_at: at,
            last_seen: at,
            last_value: None,
            threshold: None,
            count: 1,
            condition_present: true,
            acknowledged_by: None,
            acknowledged_at: None,
            acknowledged_note: None,
            silenced_until: None,
            silenced_by: None,
            resolved_at: None,
            resolved_by: None,
            attention_since: at,
            escalation_level: 0,
        }
    }

    /// Whether the alert should be sounding at `now`: active and not audio-paused.
    pub fn audible(&self, now: Timestamp) -> bool {
        self.state == AlertState::Active && self.silenced_until.is_none_or(|until| now >= until)
    }
}

/// What happened to an alert.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TransitionKind {
    /// A new episode (after its onset delay).
    Raised,
    /// Folded readings (at most once per `update_interval_s`), a priority upgrade while still
    /// unacknowledged, a latched condition clearing, or an audio pause ending.
    Updated,
    /// Still unacknowledged past the escalation time (repeats as reminders).
    Escalated,
    Acknowledged,
    Silenced,
    Resolved,
    /// An acknowledged alert needs attention again: its priority went up.
    Reopened,
}

/// One change to one alert, with the alert as it is after the change.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AlertTransition {
    pub kind: TransitionKind,
    pub alert: Alert,
    #[serde(with = "serde_time::ts")]
    pub at: Timestamp,
    /// The alert's short text for people and pagers ([`message`]), as of this transition:
    /// carried to webhooks, the MQTT alert topic and live events.
    #[serde(default)]
    pub message: String,
}

/// Why a user action on an alert was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AlertError {
    #[error("no open alert has id {0}")]
    NotOpen(AlertId),
    #[error("alert {0} is already acknowledged")]
    AlreadyAcknowledged(AlertId),
    #[error("a user name is required")]
    MissingUser,
    #[error("the audio pause must last at least one second")]
    ZeroDuration,
    #[error("alerts {0} and {1} are both open for the same device and condition")]
    DuplicateEpisode(AlertId, AlertId),
}

/// Serde helpers: timestamps as RFC 3339 text, device ids re-validated on the way in.
mod serde_time {
    use crate::telemetry::{DeviceId, Timestamp};
    use serde::{Deserialize, Deserializer, Serializer, de::Error};

    /// The longest device id accepted back from storage; ids were validated against the
    /// configured (shorter) limit when first received.
    const MAX_STORED_DEVICE_ID_LEN: usize = 1024;

    pub fn device_id<'de, D: Deserializer<'de>>(de: D) -> Result<DeviceId, D::Error> {
        let raw = String::deserialize(de)?;
        DeviceId::parse(&raw, MAX_STORED_DEVICE_ID_LEN)
            .map_err(|_| D::Error::custom(format!("invalid device id {raw:?}")))
    }

    pub mod ts {
        use super::*;

        pub fn serialize<S: Serializer>(ts: &Timestamp, ser: S) -> Result<S::Ok, S::Error> {
            ser.serialize_str(&ts.to_rfc3339())
        }

        pub fn deserialize<'de, D: Deserializer<'de>>(de: D) -> Result<Timestamp, D::Error> {
            let raw = String::deserialize(de)?;
            Timestamp::parse_text(&raw)
                .ok_or_else(|| D::Error::custom(format!("invalid timestamp {raw:?}")))
        }
    }

    pub mod opt_ts {
        use super::*;

        pub fn serialize<S: Serializer>(ts: &Option<Timestamp>, ser: S) -> Result<S::Ok, S::Error> {
            match ts {
                Some(ts) => ser.serialize_some(&ts.to_rfc3339()),
                None => ser.serialize_none(),
            }
        }

        pub fn deserialize<'de, D: Deserializer<'de>>(
            de: D,
        ) -> Result<Option<Timestamp>, D::Error> {
            match Option::<String>::deserialize(de)? {
                Some(raw) => Timestamp::parse_text(&raw)
                    .map(Some)
                    .ok_or_else(|| D::Error::custom(format!("invalid timestamp {raw:?}"))),
                None => Ok(None),
            }
        }
    }
}

#[cfg(test)]
mod tests;
#[cfg(test)]
mod typescript;
