//! Replays: readings through the real checks and the real engine, in memory, at accelerated
//! time. Used by `POST /api/thresholds/preview` (stored history under proposed thresholds) and
//! `vitalwatch evaluate` (generated scenarios against their ground truth). Pure: no I/O, no
//! clock; callers run it on `spawn_blocking`.

use super::checks::{findings, remember_temperature};
use crate::store::ReadingRecord;
use serde::Serialize;
use std::collections::HashMap;
use vitalwatch_core::alerting::{
    Alert, AlertCondition, AlertConfig, AlertEngine, AlertId, AlertState, AlertTransition,
    TransitionKind,
};
use vitalwatch_core::news2::{LatestVitals, Validity};
use vitalwatch_core::rules::{AnomalyType, PatientThresholds, RuleSet, SensorFaultRule};
use vitalwatch_core::telemetry::{Consciousness, DeviceId, Reading, Timestamp};

pub use super::scoring::{
    EVALUATE_GRACE_S, ScenarioResult, alert_listing, evaluate_scenario, merge, seed_transitions,
};

/// The settings a replay runs under.
#[derive(Clone, Debug)]
pub struct ReplaySettings {
    pub engine: AlertConfig,
    pub sensor: SensorFaultRule,
    pub news2_validity: Validity,
    pub news2_smooth_s: u64,
    pub site: RuleSet,
    /// Per-device rules replacing `site`.
    pub overrides: HashMap<String, RuleSet>,
    /// Per-device patient thresholds the engine reads (SpO2 scale and target, RR, BP).
    pub patients: HashMap<String, PatientThresholds>,
    /// Run the timers (DEVICE_OFFLINE, escalation) between readings.
    pub ticks: bool,
}

impl ReplaySettings {
    /// The service's settings from its configuration, with the site's rules and no
    /// per-patient thresholds.
    pub fn from_config(config: &crate::config::AlertingConfig, site: RuleSet) -> ReplaySettings {
        ReplaySettings {
            engine: config.engine.clone(),
            sensor: config.sensor_fault,
            news2_validity: config.news2_validity,
            news2_smooth_s: config.news2_smooth_s,
            site,
            overrides: HashMap::new(),
            patients: HashMap::new(),
            ticks: true,
        }
    }

    /// Adds a device's thresholds: its rules (when they validate) and its patient settings.
    pub fn set_patient(&mut self, device_id: &str, thresholds: PatientThresholds) {
        if let Ok(rules) = thresholds.apply(&self.site) {
            self.overrides.insert(device_id.to_owned(), rules);
            self.patients.insert(device_id.to_owned(), thresholds);
        }
    }
}

/// One seed-style row: what the seed would have logged for a reading.
#[derive(Clone, Debug)]
pub struct SeedRow {
    pub device_id: DeviceId,
    pub kind: AnomalyType,
    pub above: bool,
    pub at: Timestamp,
}

pub struct ReplayOutput {
    pub transitions: Vec<AlertTransition>,
    pub seed_rows: Vec<SeedRow>,
}

/// What a scenario adds to a replay: a simulated nurse.
#[derive(Clone, Debug, Default)]
pub struct ReplayExtras {
    /// Acknowledge every alert still asking for attention this long after it started to.
    pub acknowledge_after_s: Option<u64>,
}

/// The user name the simulated acknowledgement is recorded under.
const SIMULATED_NURSE: &str = "evaluate.simulated-nurse";

/// Acknowledges, in time order, the alerts whose attention started `after_s` or more before
/// `until`, at the time each became due.
fn acknowledge_due(
    engine: &mut AlertEngine,
    after_s: u64,
    until: Timestamp,
    out: &mut Vec<AlertTransition>,
) {
    let after = i64::try_from(after_s)
        .unwrap_or(i64::MAX)
        .saturating_mul(1_000_000);
    let mut due: Vec<(Timestamp, AlertId)> = engine
        .open_alerts()
        .filter(|alert| alert.state == AlertState::Active)
        .map(|alert| (alert.attention_since.saturating_add_micros(after), alert.id))
        .filter(|(at, _)| *at <= until)
        .collect();
    due.sort();
    for (at, id) in due {
        if let Ok(transitions) = engine.acknowledge(id, SIMULATED_NURSE, None, at) {
            out.extend(transitions);
        }
    }
}

/// Replays `readings` (sorted by `received_at`, which is used as the engine's clock) until
/// `end` (timers run up to it when `ticks`).
pub fn replay(readings: &[Reading], settings: &ReplaySettings, end: Timestamp) -> ReplayOutput {
    replay_with(readings, settings, &ReplayExtras::default(), end)
}

/// [`replay`] with a scenario's extras.
pub fn replay_with(
    readings: &[Reading],
    settings: &ReplaySettings,
    extras: &ReplayExtras,
    end: Timestamp,
) -> ReplayOutput {
    let mut engine = AlertEngine::new(settings.engine.clone(), 0);
    let mut vitals: HashMap<DeviceId, LatestVitals> = HashMap::new();
    let mut previous = HashMap::new();
    let mut transitions = Vec::new();
    let mut seed_rows = Vec::new();
    let run_timers =
        |engine: &mut AlertEngine, until: Timestamp, out: &mut Vec<AlertTransition>| {
            while let Some(deadline) = engine.next_deadline().filter(|d| *d <= until) {
                out.extend(engine.tick(deadline));
            }
        };
    for reading in readings {
        let now = reading.received_at;
        if let Some(after_s) = extras.acknowledge_after_s {
            acknowledge_due(&mut engine, after_s, now, &mut transitions);
        }
        if settings.ticks {
            run_timers(&mut engine, now, &mut transitions);
        }
        let rules = settings
            .overrides
            .get(reading.device_id.as_str())
            .unwrap_or(&settings.site);
        let found = findings(
            reading,
            rules,
            &settings.sensor,
            previous.get(&reading.device_id).copied(),
        );
        remember_temperature(&mut previous, reading);
        for finding in &found {
            if finding.kind != AnomalyType::SensorFault {
                seed_rows.push(SeedRow {
                    device_id: reading.device_id.clone(),
                    kind: finding.kind,
                    above: finding
                        .value
                        .zip(finding.threshold)
                        .is_some_and(|(value, threshold)| value > threshold),
                    at: now,
                });
            }
        }
        let faulted = found.iter().fold(
            vitalwatch_core::telemetry::FieldSet::EMPTY,
            |mut all, finding| {
                for field in finding.faulted_fields().iter() {
                    all.insert(field);
                }
                all
            },
        );
        let patient = settings
            .patients
            .get(reading.device_id.as_str())
            .copied()
            .unwrap_or_default();
        if engine.patient(&reading.device_id) != patient {
            engine.set_patient(&reading.device_id, patient);
        }
        let device_vitals = vitals.entry(reading.device_id.clone()).or_default();
        device_vitals.observe(reading, faulted);
        let news2 = device_vitals.score_at(
            reading.timestamp,
            &settings.news2_validity,
            settings.news2_smooth_s,
            patient.scale(),
        );
        transitions.extend(engine.observe(reading, &found, Some(&news2), now));
    }
    if settings.ticks {
        run_timers(&mut engine, end, &mut transitions);
    }
    ReplayOutput {
        transitions,
        seed_rows,
    }
}

/// A stored reading back as a core reading (for replays); `None` if a time does not parse.
pub fn reading_from_record(record: &ReadingRecord) -> Option<Reading> {
    let device_id = DeviceId::parse(&record.device_id, 1024).ok()?;
    let mut reading = Reading::empty(device_id, Timestamp::parse_text(&record.timestamp)?);
    reading.received_at = Timestamp::parse_text(&record.received_at)?;
    reading.timestamp_from_device = record.timestamp_from_device;
    reading.heart_rate_bpm = record.heart_rate;
    reading.body_temp_c = record.body_temp;
    reading.signal_strength_dbm = record.signal_strength;
    reading.battery_pct = record.battery_level;
    reading.spo2_pct = record.spo2;
    reading.respiratory_rate_per_min = record.respiratory_rate;
    reading.systolic_bp_mmhg = record.systolic_bp;
    reading.diastolic_bp_mmhg = record.diastolic_bp;
    reading.consciousness = record
        .consciousness
        .as_deref()
        .and_then(Consciousness::from_letter);
    reading.on_oxygen = record.on_oxygen;
    reading.seq = record.seq.and_then(|s| u64::try_from(s).ok());
    Some(reading)
}

/// A recorded episode the proposed settings would not have raised.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct MissedEpisode {
    pub alert_id: u64,
    pub device_id: String,
    pub condition: AlertCondition,
    pub opened_at: String,
}

#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct Preview {
    pub readings_replayed: usize,
    /// Alert episodes the replay raises with the settings in force.
    pub current_alerts: usize,
    /// ... and with the proposed thresholds.
    pub proposed_alerts: usize,
    /// Anomaly rows (the seed's count) under each.
    pub current_anomalies: usize,
    pub proposed_anomalies: usize,
    pub recorded_episodes: usize,
    pub missed_recorded_episodes: Vec<MissedEpisode>,
}

/// Conditions a threshold replay can speak for (not timers, not the registry).
fn replayable(condition: AlertCondition) -> bool {
    !matches!(
        condition,
        AlertCondition::DeviceOffline | AlertCondition::UnknownDevice
    )
}

/// Replays `readings` under `current` and `proposed`, and checks which `recorded` episodes the
/// proposed settings would have missed (no episode of the same device and condition open
/// within `grace_s` of it).
pub fn preview(
    readings: &[Reading],
    current: &ReplaySettings,
    proposed: &ReplaySettings,
    recorded: &[Alert],
    end: Timestamp,
    grace_s: u64,
) -> Preview {
    let raised = |out: &ReplayOutput| {
        out.transitions
            .iter()
            .filter(|t| t.kind == TransitionKind::Raised && replayable(t.alert.condition))
            .count()
    };
    let now_run = replay(readings, current, end);
    let new_run = replay(readings, proposed, end);
    let grace = i64::try_from(grace_s)
        .unwrap_or(i64::MAX)
        .saturating_mul(1_000_000);
    let mut episodes: Vec<(&DeviceId, AlertCondition, Timestamp, Timestamp)> = Vec::new();
    let mut open: HashMap<AlertId, usize> = HashMap::new();
    for transition in &new_run.transitions {
        let alert = &transition.alert;
        match transition.kind {
            TransitionKind::Raised => {
                open.insert(alert.id, episodes.len());
                episodes.push((&alert.device_id, alert.condition, alert.opened_at, end));
            }
            TransitionKind::Resolved => {
                if let Some(idx) = open.remove(&alert.id) {
                    episodes[idx].3 = transition.at;
                }
            }
            _ => {}
        }
    }
    let recorded: Vec<&Alert> = recorded
        .iter()
        .filter(|a| replayable(a.condition))
        .collect();
    let missed = recorded
        .iter()
        .filter(|alert| {
            let from = alert.opened_at.saturating_add_micros(-grace);
            let to = alert
                .resolved_at
                .unwrap_or(end)
                .saturating_add_micros(grace);
            !episodes
                .iter()
                .any(|(device, condition, opened, resolved)| {
                    **device == alert.device_id
                        && *condition == alert.condition
                        && *opened <= to
                        && *resolved >= from
                })
        })
        .map(|alert| MissedEpisode {
            alert_id: alert.id.0,
            device_id: alert.device_id.as_str().to_owned(),
            condition: alert.condition,
            opened_at: alert.opened_at.to_rfc3339(),
        })
        .collect();
    Preview {
        readings_replayed: readings.len(),
        current_alerts: raised(&now_run),
        proposed_alerts: raised(&new_run),
        current_anomalies: now_run.seed_rows.len(),
        proposed_anomalies: new_run.seed_rows.len(),
        recorded_episodes: recorded.len(),
        missed_recorded_episodes: missed,
    }
}
