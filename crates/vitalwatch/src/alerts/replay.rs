//! Replays: readings through the real checks and the real engine, in memory, at accelerated
//! time. Used by `POST /api/thresholds/preview` (stored history under proposed thresholds) and
//! `vitalwatch evaluate` (generated scenarios against their ground truth). Pure: no I/O, no
//! clock; callers run it on `spawn_blocking`.

use super::checks::{findings, remember_temperature};
use crate::store::ReadingRecord;
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};
use vitalwatch_core::alerting::{
    Alert, AlertCondition, AlertConfig, AlertEngine, AlertId, AlertState, AlertTransition,
    Evaluation, KindScore, Priority, TransitionKind, evaluate,
};
use vitalwatch_core::news2::{LatestVitals, Spo2Scale};
use vitalwatch_core::rules::{AnomalyType, RuleSet, SensorFaultRule};
use vitalwatch_core::scenario::Generated;
use vitalwatch_core::telemetry::{Consciousness, DeviceId, Reading, Timestamp};

/// The settings a replay runs under.
#[derive(Clone, Debug)]
pub struct ReplaySettings {
    pub engine: AlertConfig,
    pub sensor: SensorFaultRule,
    pub news2_window_s: u64,
    pub site: RuleSet,
    /// Per-device rules replacing `site`.
    pub overrides: HashMap<String, RuleSet>,
    /// Run the timers (DEVICE_OFFLINE, escalation) between readings.
    pub ticks: bool,
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

/// Replays `readings` (sorted by `received_at`, which is used as the engine's clock) until
/// `end` (timers run up to it when `ticks`).
pub fn replay(readings: &[Reading], settings: &ReplaySettings, end: Timestamp) -> ReplayOutput {
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
        let device_vitals = vitals.entry(reading.device_id.clone()).or_default();
        device_vitals.observe(reading, faulted);
        let news2 = device_vitals.score(
            reading.timestamp,
            settings.news2_window_s,
            Spo2Scale::Scale1,
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

/// The seed's behaviour as alert episodes: one per out-of-range row, opened and closed at once.
pub fn seed_transitions(rows: &[SeedRow]) -> Vec<AlertTransition> {
    let mut out = Vec::with_capacity(rows.len() * 2);
    for (idx, row) in rows.iter().enumerate() {
        let condition = match (row.kind, row.above) {
            (AnomalyType::OutOfRangeHr, true) => AlertCondition::HeartRateHigh,
            (AnomalyType::OutOfRangeHr, false) => AlertCondition::HeartRateLow,
            (AnomalyType::OutOfRangeTemp, true) => AlertCondition::TemperatureHigh,
            (AnomalyType::OutOfRangeTemp, false) => AlertCondition::TemperatureLow,
            (AnomalyType::WeakSignal, _) => AlertCondition::WeakSignal,
            (AnomalyType::LowBattery, _) => AlertCondition::LowBattery,
            (AnomalyType::MlAnomaly, _) => AlertCondition::MlAnomaly,
            (AnomalyType::UnknownDevice, _) => AlertCondition::UnknownDevice,
            (AnomalyType::MissingFields | AnomalyType::SensorFault, _) => {
                AlertCondition::SensorFault
            }
        };
        let alert = Alert {
            id: AlertId(idx as u64 + 1),
            device_id: row.device_id.clone(),
            condition,
            class: condition.class(),
            priority: Priority::High,
            state: AlertState::Active,
            opened_at: row.at,
            last_seen: row.at,
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
            attention_since: row.at,
            escalation_level: 0,
        };
        out.push(AlertTransition {
            kind: TransitionKind::Raised,
            alert: alert.clone(),
            at: row.at,
        });
        out.push(AlertTransition {
            kind: TransitionKind::Resolved,
            alert,
            at: row.at,
        });
    }
    out
}

/// Evaluation of one generated scenario: the engine and the seed side by side.
#[derive(Clone, Debug, Serialize)]
pub struct ScenarioResult {
    pub name: String,
    pub readings: usize,
    pub patient_days: f64,
    pub engine: Evaluation,
    pub seed: Evaluation,
}

/// How long after an event's end an alert still counts as detecting it.
pub const EVALUATE_GRACE_S: u64 = 60;

pub fn evaluate_scenario(
    name: &str,
    generated: &Generated,
    settings: &ReplaySettings,
) -> ScenarioResult {
    let output = replay(&generated.readings, settings, generated.end);
    let seed_count = output.seed_rows.len() as u64;
    let engine = evaluate(
        &generated.events,
        &output.transitions,
        seed_count,
        generated.patient_days,
        EVALUATE_GRACE_S,
    );
    let seed = evaluate(
        &generated.events,
        &seed_transitions(&output.seed_rows),
        seed_count,
        generated.patient_days,
        EVALUATE_GRACE_S,
    );
    ScenarioResult {
        name: name.to_owned(),
        readings: generated.readings.len(),
        patient_days: generated.patient_days,
        engine,
        seed,
    }
}

/// Sums evaluations of several scenarios (means weighted by detections).
pub fn merge(evaluations: &[&Evaluation], patient_days: f64) -> Evaluation {
    let mut per_kind: BTreeMap<String, (KindScore, f64)> = BTreeMap::new();
    let mut total = Evaluation {
        critical_events: 0,
        critical_detected: 0,
        max_time_to_alert_s: None,
        alerts: 0,
        seed_alerts: 0,
        false_alerts: 0,
        false_alerts_per_patient_day: 0.0,
        per_kind: BTreeMap::new(),
    };
    let max = |a: Option<f64>, b: Option<f64>| match (a, b) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b),
    };
    for evaluation in evaluations {
        total.critical_events += evaluation.critical_events;
        total.critical_detected += evaluation.critical_detected;
        total.max_time_to_alert_s = max(total.max_time_to_alert_s, evaluation.max_time_to_alert_s);
        total.alerts += evaluation.alerts;
        total.seed_alerts += evaluation.seed_alerts;
        total.false_alerts += evaluation.false_alerts;
        for (kind, score) in &evaluation.per_kind {
            let (sum, delay_sum) = per_kind.entry(kind.clone()).or_default();
            sum.events += score.events;
            sum.detected += score.detected;
            sum.missed += score.missed;
            sum.max_time_to_alert_s = max(sum.max_time_to_alert_s, score.max_time_to_alert_s);
            *delay_sum += score.mean_time_to_alert_s.unwrap_or(0.0) * score.detected as f64;
        }
    }
    total.false_alerts_per_patient_day = if patient_days > 0.0 {
        total.false_alerts as f64 / patient_days
    } else {
        0.0
    };
    total.per_kind = per_kind
        .into_iter()
        .map(|(kind, (mut score, delay_sum))| {
            if score.detected > 0 {
                score.mean_time_to_alert_s = Some(delay_sum / score.detected as f64);
            }
            (kind, score)
        })
        .collect();
    total
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
#[derive(Clone, Debug, Serialize)]
pub struct MissedEpisode {
    pub alert_id: u64,
    pub device_id: String,
    pub condition: AlertCondition,
    pub opened_at: String,
}

#[derive(Clone, Debug, Serialize)]
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
