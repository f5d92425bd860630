//! Scores a stream of alert transitions against labelled ground-truth events: which events
//! were detected and how fast, how many alerts matched nothing, and how that compares with the
//! seed's one-row-per-reading count.
//!
//! Pure: the caller (a CLI running a scenario) supplies the events, the transitions the engine
//! produced, the seed's count and how many patient-days the scenario covers.

use super::{AlertCondition, AlertId, AlertTransition, TransitionKind};
use crate::telemetry::{DeviceId, Timestamp};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// One labelled event of a scenario.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LabelledEvent {
    #[serde(deserialize_with = "super::serde_time::device_id")]
    pub device_id: DeviceId,
    /// A free label, e.g. "tachycardia", "probe_off", "offline"; results are grouped by it.
    pub kind: String,
    #[serde(with = "super::serde_time::ts")]
    pub onset: Timestamp,
    #[serde(with = "super::serde_time::ts")]
    pub end: Timestamp,
    /// Whether missing it could harm the patient.
    pub critical: bool,
    /// The conditions that count as detecting it; empty: any alert on the device.
    #[serde(default)]
    pub conditions: Vec<AlertCondition>,
}

/// Detection results for one event kind.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct KindScore {
    pub events: usize,
    pub detected: usize,
    pub missed: usize,
    pub mean_time_to_alert_s: Option<f64>,
    pub max_time_to_alert_s: Option<f64>,
}

/// The evaluation report.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Evaluation {
    pub critical_events: usize,
    pub critical_detected: usize,
    /// The slowest detection of a critical event, in seconds.
    pub max_time_to_alert_s: Option<f64>,
    /// Alert episodes raised.
    pub alerts: usize,
    /// What the seed would have logged (one row per out-of-range reading), for comparison.
    pub seed_alerts: u64,
    /// Alerts that overlap no labelled event of their device.
    pub false_alerts: usize,
    pub false_alerts_per_patient_day: f64,
    pub per_kind: BTreeMap<String, KindScore>,
}

/// One alert episode, from its transitions.
struct Episode {
    device_id: DeviceId,
    condition: AlertCondition,
    opened_at: Timestamp,
    resolved_at: Option<Timestamp>,
}

/// Scores `transitions` against `events`. An alert detects an event when it is on the same
/// device, of one of the event's conditions (if listed), and open at some point between the
/// event's onset and `grace_s` after its end; the time to alert is from onset to the first
/// such alert opening (0 if one was already open). `patient_days` is the monitored time.
pub fn evaluate(
    events: &[LabelledEvent],
    transitions: &[AlertTransition],
    seed_alerts: u64,
    patient_days: f64,
    grace_s: u64,
) -> Evaluation {
    let mut episodes: BTreeMap<AlertId, Episode> = BTreeMap::new();
    for transition in transitions {
        let alert = &transition.alert;
        match transition.kind {
            TransitionKind::Raised => {
                episodes.insert(
                    alert.id,
                    Episode {
                        device_id: alert.device_id.clone(),
                        condition: alert.condition,
                        opened_at: alert.opened_at,
                        resolved_at: None,
                    },
                );
            }
            TransitionKind::Resolved => {
                if let Some(episode) = episodes.get_mut(&alert.id) {
                    episode.resolved_at = Some(transition.at);
                }
            }
            _ => {}
        }
    }
    let grace = i64::try_from(grace_s)
        .unwrap_or(i64::MAX)
        .saturating_mul(1_000_000);
    let related = |event: &LabelledEvent, episode: &Episode| {
        episode.device_id == event.device_id
            && (event.conditions.is_empty() || event.conditions.contains(&episode.condition))
            && episode.opened_at <= event.end.saturating_add_micros(grace)
            && episode.resolved_at.is_none_or(|end| end >= event.onset)
    };

    let mut per_kind: BTreeMap<String, (KindScore, Vec<f64>)> = BTreeMap::new();
    let (mut critical_events, mut critical_detected) = (0, 0);
    let mut max_critical: Option<f64> = None;
    for event in events {
        let first = episodes
            .values()
            .filter(|episode| related(event, episode))
            .map(|episode| episode.opened_at)
            .min();
        let (score, delays) = per_kind.entry(event.kind.clone()).or_default();
        score.events += 1;
        critical_events += usize::from(event.critical);
        match first {
            Some(opened_at) => {
                let delay = (opened_at.saturating_sub(event.onset).max(0)) as f64 / 1e6;
                score.detected += 1;
                delays.push(delay);
                if event.critical {
                    critical_detected += 1;
                    max_critical = Some(max_critical.map_or(delay, |max| max.max(delay)));
                }
            }
            None => score.missed += 1,
        }
    }
    let false_alerts = episodes
        .values()
        .filter(|episode| !events.iter().any(|event| related(event, episode)))
        .count();
    Evaluation {
        critical_events,
        critical_detected,
        max_time_to_alert_s: max_critical,
        alerts: episodes.len(),
        seed_alerts,
        false_alerts,
        false_alerts_per_patient_day: if patient_days > 0.0 {
            false_alerts as f64 / patient_days
        } else {
            0.0
        },
        per_kind: per_kind
            .into_iter()
            .map(|(kind, (mut score, delays))| {
                if !delays.is_empty() {
                    score.mean_time_to_alert_s =
                        Some(delays.iter().sum::<f64>() / delays.len() as f64);
                    score.max_time_to_alert_s = delays.iter().copied().reduce(f64::max);
                }
                (kind, score)
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alerting::{AlertConfig, AlertEngine};
    use crate::rules::{self, RuleSet};
    use crate::telemetry::Reading;

    const T0: i64 = 1_705_401_000;

    fn device(name: &str) -> DeviceId {
        DeviceId::parse(name, 64).expect("valid test id")
    }

    fn event(name: &str, kind: &str, onset: i64, end: i64, critical: bool) -> LabelledEvent {
        LabelledEvent {
            device_id: device(name),
            kind: kind.to_owned(),
            onset: Timestamp::from_secs(T0 + onset),
            end: Timestamp::from_secs(T0 + end),
            critical,
            conditions: Vec::new(),
        }
    }

    /// Runs a heart-rate trace per device (one reading every 3 s) through rules and engine,
    /// then evaluates against `events`.
    type Trace = (&'static str, fn(i64) -> f64);

    fn check(traces: &[Trace], events: &[LabelledEvent]) -> Evaluation {
        let mut engine = AlertEngine::new(AlertConfig::default(), 0);
        let mut transitions = Vec::new();
        let mut seed = 0;
        for secs in (0..3600).step_by(3) {
            for (name, trace) in traces {
                let now = Timestamp::from_secs(T0 + secs);
                let mut reading = Reading::empty(device(name), now);
                reading.heart_rate_bpm = Some(trace(secs));
                reading.body_temp_c = Some(36.8);
                reading.signal_strength_dbm = Some(-55.0);
                reading.battery_pct = Some(90.0);
                let mut findings = Vec::new();
                rules::check(&reading, &RuleSet::default(), &mut findings);
                seed += findings.len() as u64;
                transitions.extend(engine.observe(&reading, &findings, None, now));
            }
        }
        let evaluation = evaluate(events, &transitions, seed, 2.0 / 24.0, 60);
        // The report is what the CLI prints.
        let json = serde_json::to_value(&evaluation).expect("serialisable");
        for key in [
            "critical_events",
            "critical_detected",
            "max_time_to_alert_s",
            "alerts",
            "seed_alerts",
            "false_alerts_per_patient_day",
            "per_kind",
        ] {
            assert!(json.get(key).is_some(), "{key}");
        }
        evaluation
    }

    #[test]
    fn detected_missed_and_false_alerts() {
        // dev-1: bradycardia 35 bpm from 600 to 900 s (critical). dev-2: HR 105 from 1200 s to
        // the end, not labelled, so its alert is a false one.
        let evaluation = check(
            &[
                (
                    "dev-1",
                    |t| if (600..900).contains(&t) { 35.0 } else { 75.0 },
                ),
                ("dev-2", |t| if t >= 1200 { 105.0 } else { 75.0 }),
            ],
            &[
                event("dev-1", "bradycardia", 600, 900, true),
                // On a device whose sensor saw nothing: missed.
                event("dev-3", "arrhythmia", 2000, 2100, true),
            ],
        );
        assert_eq!(evaluation.critical_events, 2);
        assert_eq!(evaluation.critical_detected, 1);
        assert_eq!(evaluation.max_time_to_alert_s, Some(0.0));
        assert_eq!(evaluation.alerts, 2);
        assert_eq!(evaluation.seed_alerts, 100 + 800);
        assert_eq!(evaluation.false_alerts, 1);
        assert_eq!(evaluation.false_alerts_per_patient_day, 12.0);
        let brady = &evaluation.per_kind["bradycardia"];
        assert_eq!((brady.events, brady.detected, brady.missed), (1, 1, 0));
        let missed = &evaluation.per_kind["arrhythmia"];
        assert_eq!((missed.detected, missed.missed), (0, 1));
        assert_eq!(missed.mean_time_to_alert_s, None);
    }

    #[test]
    fn time_to_alert_counts_the_onset_delay() {
        // HR 105 (LOW) from 300 s: raised after the 60 s onset delay.
        let evaluation = check(
            &[("dev-1", |t| if t >= 300 { 105.0 } else { 75.0 })],
            &[event("dev-1", "tachycardia", 300, 3600, false)],
        );
        let tachy = &evaluation.per_kind["tachycardia"];
        assert_eq!(tachy.max_time_to_alert_s, Some(60.0));
        assert_eq!(evaluation.false_alerts, 0);
        assert_eq!(evaluation.critical_events, 0);
        assert_eq!(evaluation.max_time_to_alert_s, None);
    }
}
