//! Scores a stream of alert transitions against labelled ground-truth events: which events
//! were detected and how fast, how many alerts matched nothing, and how that compares with the
//! seed's one-row-per-reading count.
//!
//! The rules, from issue 18 ("an honest scorer"):
//! - an event is detected only by an alert of one of its `conditions`; an event with no
//!   conditions (a transport behaviour, a benign confounder such as exercise) is detected by
//!   nothing and detects nothing, so every alert during it is a false one;
//! - a critical event is detected only by an alert of at least MEDIUM priority: a LOW alert
//!   asks for awareness, not for the prompt response a critical event needs;
//! - an alert detects while it asks for attention: open, not acknowledged, at the priority
//!   needed. An alert acknowledged before an event starts does not detect it (a latched or
//!   acknowledged episode must not make a later event "detected at 0 s");
//! - an event that does not owe an alert (`owes_alert = false`, e.g. a single-reading
//!   artefact) is never missed; alerts of its conditions during it are not false ones.
//!
//! Pure: the caller (a CLI running a scenario) supplies the events, the transitions the engine
//! produced, the seed's count and how many patient-days the scenario covers.

use super::{AlertClass, AlertCondition, AlertId, AlertState, AlertTransition, Priority};
use crate::telemetry::{DeviceId, Timestamp};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Event kinds whose labelled onset is the noise-free NEWS2 aggregate reaching 5 (the
/// scenario generator's `sepsis`): the time to the NEWS2 urgent alarm is measured on these.
pub const NEWS2_LABELLED_KINDS: [&str; 1] = ["sepsis"];

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
    /// Whether missing it could harm the patient: then only a MEDIUM or HIGH alert detects it.
    pub critical: bool,
    /// The conditions that count as detecting it; empty: nothing detects it (it owes no alert).
    #[serde(default)]
    pub conditions: Vec<AlertCondition>,
    /// Whether an alert is owed: `false` for transport behaviours, benign confounders and
    /// single-reading artefacts, which are never counted as missed.
    #[serde(default = "owed")]
    pub owes_alert: bool,
    /// A single-reading artefact: a HIGH physiological alarm opened during it is counted in
    /// [`Evaluation::high_alarms_from_artefacts`].
    #[serde(default)]
    pub artefact: bool,
    /// When the physiology started to change, if before `onset` (a deterioration drifts for
    /// hours before it meets its criterion): an alert of its conditions from then on is early,
    /// not false. Detection time is still measured from `onset`.
    #[serde(default, with = "super::serde_time::opt_ts")]
    pub began: Option<Timestamp>,
}

fn owed() -> bool {
    true
}

/// Detection results for one event kind.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct KindScore {
    pub events: usize,
    pub detected: usize,
    pub missed: usize,
    pub mean_time_to_alert_s: Option<f64>,
    pub max_time_to_alert_s: Option<f64>,
    /// The priority of the alert that detected each event, by name (`high`, `medium`, `low`).
    pub detected_by_priority: BTreeMap<String, usize>,
}

/// One alert episode as the scorer saw it: for `vitalwatch evaluate --alerts`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ScoredAlert {
    pub id: u64,
    pub device_id: String,
    pub condition: AlertCondition,
    pub class: AlertClass,
    /// The highest priority the episode reached.
    pub priority: Priority,
    #[serde(with = "super::serde_time::ts")]
    pub opened_at: Timestamp,
    #[serde(with = "super::serde_time::opt_ts")]
    pub closed_at: Option<Timestamp>,
    /// The label of the first event it detected (or is related to); `None`: a false alert.
    pub detected: Option<String>,
}

/// The evaluation report.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Evaluation {
    pub critical_events: usize,
    pub critical_detected: usize,
    /// The slowest detection of a critical event, in seconds.
    pub max_time_to_alert_s: Option<f64>,
    /// The slowest NEWS2 alarm of MEDIUM or HIGH priority for an event NEWS2 detects (time to
    /// the urgent NEWS2 alarm), in seconds.
    pub max_time_to_news2_s: Option<f64>,
    /// Alert episodes raised.
    pub alerts: usize,
    /// What the seed would have logged (one row per out-of-range reading), for comparison.
    pub seed_alerts: u64,
    /// Alerts related to no labelled event of their device.
    pub false_alerts: usize,
    pub false_alerts_per_patient_day: f64,
    /// False alerts about the patient (not about the equipment).
    pub false_physiological_alerts: usize,
    pub false_physiological_alerts_per_patient_day: f64,
    /// HIGH physiological alarms opened during a single-reading artefact (the aim: none).
    pub high_alarms_from_artefacts: usize,
    pub per_kind: BTreeMap<String, KindScore>,
    /// Every alert with the event it detected; empty unless asked for.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub alert_list: Vec<ScoredAlert>,
}

/// One stretch of an episode's life with the same state and priority.
#[derive(Clone, Copy, Debug)]
struct Segment {
    from: Timestamp,
    priority: Priority,
    attention: bool,
}

/// One alert episode, from its transitions.
struct Episode {
    device_id: DeviceId,
    condition: AlertCondition,
    class: AlertClass,
    opened_at: Timestamp,
    resolved_at: Option<Timestamp>,
    /// In time order; each lasts until the next one (the last until `resolved_at`).
    segments: Vec<Segment>,
}

impl Episode {
    fn priority(&self) -> Priority {
        self.segments
            .iter()
            .map(|s| s.priority)
            .max()
            .unwrap_or(Priority::Low)
    }

    /// The first time in `[from, to]` at which the episode asks for attention at `min` or
    /// higher, if any.
    fn first_attention(&self, from: Timestamp, to: Timestamp, min: Priority) -> Option<Timestamp> {
        self.segments.iter().enumerate().find_map(|(idx, seg)| {
            let until = self
                .segments
                .get(idx + 1)
                .map(|next| next.from)
                .or(self.resolved_at);
            let start = seg.from.max(from);
            let overlaps = start <= to && until.is_none_or(|until| until > start);
            (seg.attention && seg.priority >= min && overlaps).then_some(start)
        })
    }
}

fn episodes_of(transitions: &[AlertTransition]) -> BTreeMap<AlertId, Episode> {
    let mut episodes: BTreeMap<AlertId, Episode> = BTreeMap::new();
    for transition in transitions {
        let alert = &transition.alert;
        let segment = Segment {
            from: transition.at,
            priority: alert.priority,
            attention: alert.state == AlertState::Active,
        };
        let episode = episodes.entry(alert.id).or_insert_with(|| Episode {
            device_id: alert.device_id.clone(),
            condition: alert.condition,
            class: alert.class,
            opened_at: alert.opened_at,
            resolved_at: None,
            segments: Vec::new(),
        });
        if alert.state == AlertState::Resolved {
            episode.resolved_at.get_or_insert(transition.at);
        } else if episode.segments.last().is_none_or(|last| {
            last.priority != segment.priority || last.attention != segment.attention
        }) {
            episode.segments.push(segment);
        }
    }
    episodes
}

fn micros(secs: u64) -> i64 {
    i64::try_from(secs)
        .unwrap_or(i64::MAX)
        .saturating_mul(1_000_000)
}

/// Scores `transitions` against `events` (see the module docs for the rules); `grace_s` is how
/// long after an event's end an alert still counts. `patient_days` is the monitored time.
/// `list_alerts` fills [`Evaluation::alert_list`].
pub fn evaluate(
    events: &[LabelledEvent],
    transitions: &[AlertTransition],
    seed_alerts: u64,
    patient_days: f64,
    grace_s: u64,
    list_alerts: bool,
) -> Evaluation {
    let episodes = episodes_of(transitions);
    let grace = micros(grace_s);
    let min_priority = |event: &LabelledEvent| {
        if event.critical {
            Priority::Medium
        } else {
            Priority::Low
        }
    };
    // When `episode` detects `event`, if it does.
    let detection = |event: &LabelledEvent, episode: &Episode| {
        if episode.device_id != event.device_id || !event.conditions.contains(&episode.condition) {
            return None;
        }
        episode.first_attention(
            event.onset,
            event.end.saturating_add_micros(grace),
            min_priority(event),
        )
    };
    // Whether `episode` belongs to `event` at all (so it is not a false alert), even if it does
    // not detect it (e.g. a LOW alert during a critical event, or one acknowledged earlier).
    let related = |event: &LabelledEvent, episode: &Episode| {
        episode.device_id == event.device_id
            && event.conditions.contains(&episode.condition)
            && episode.opened_at <= event.end.saturating_add_micros(grace)
            && episode
                .resolved_at
                .is_none_or(|end| end >= event.began.unwrap_or(event.onset).min(event.onset))
    };

    let mut per_kind: BTreeMap<String, (KindScore, Vec<f64>)> = BTreeMap::new();
    let (mut critical_events, mut critical_detected) = (0, 0);
    let mut max_critical: Option<f64> = None;
    let mut max_news2: Option<f64> = None;
    let delay_of =
        |event: &LabelledEvent, at: Timestamp| (at.saturating_sub(event.onset).max(0)) as f64 / 1e6;
    for event in events {
        let first = episodes
            .values()
            .filter_map(|episode| detection(event, episode).map(|at| (at, episode.priority())))
            .min_by_key(|(at, _)| *at);
        let (score, delays) = per_kind.entry(event.kind.clone()).or_default();
        score.events += 1;
        critical_events += usize::from(event.critical);
        // The NEWS2 urgent alarm is timed for the events labelled by NEWS2 itself (onset: the
        // noise-free aggregate reaching 5): a fever or a tachycardia owes its own condition's
        // alarm, and NEWS2 may reach 5 hours later or never.
        if NEWS2_LABELLED_KINDS.contains(&event.kind.as_str())
            && event.conditions.contains(&AlertCondition::News2)
            && event.owes_alert
        {
            let news2 = episodes
                .values()
                .filter(|episode| episode.condition == AlertCondition::News2)
                .filter_map(|episode| detection(event, episode))
                .min();
            if let Some(at) = news2 {
                let delay = delay_of(event, at);
                max_news2 = Some(max_news2.map_or(delay, |max: f64| max.max(delay)));
            }
        }
        match first {
            Some((at, priority)) => {
                let delay = delay_of(event, at);
                score.detected += 1;
                *score
                    .detected_by_priority
                    .entry(priority.as_str().to_owned())
                    .or_default() += 1;
                delays.push(delay);
                if event.critical {
                    critical_detected += 1;
                    max_critical = Some(max_critical.map_or(delay, |max| max.max(delay)));
                }
            }
            None if event.owes_alert => score.missed += 1,
            None => {}
        }
    }
    let mut alert_list = Vec::new();
    let (mut false_alerts, mut false_physiological) = (0, 0);
    let mut high_from_artefacts = 0;
    for (id, episode) in &episodes {
        let detected = events
            .iter()
            .find(|event| related(event, episode))
            .map(|event| event.kind.clone());
        if detected.is_none() {
            false_alerts += 1;
            if episode.class == AlertClass::Physiological {
                false_physiological += 1;
            }
        }
        let physiological_high =
            episode.class == AlertClass::Physiological && episode.priority() == Priority::High;
        if physiological_high
            && events.iter().any(|event| {
                event.artefact
                    && event.device_id == episode.device_id
                    && episode.opened_at >= event.onset
                    && episode.opened_at <= event.end.saturating_add_micros(grace)
            })
        {
            high_from_artefacts += 1;
        }
        if list_alerts {
            alert_list.push(ScoredAlert {
                id: id.0,
                device_id: episode.device_id.as_str().to_owned(),
                condition: episode.condition,
                class: episode.class,
                priority: episode.priority(),
                opened_at: episode.opened_at,
                closed_at: episode.resolved_at,
                detected,
            });
        }
    }
    let per_day = |n: usize| {
        if patient_days > 0.0 {
            n as f64 / patient_days
        } else {
            0.0
        }
    };
    Evaluation {
        critical_events,
        critical_detected,
        max_time_to_alert_s: max_critical,
        max_time_to_news2_s: max_news2,
        alerts: episodes.len(),
        seed_alerts,
        false_alerts,
        false_alerts_per_patient_day: per_day(false_alerts),
        false_physiological_alerts: false_physiological,
        false_physiological_alerts_per_patient_day: per_day(false_physiological),
        high_alarms_from_artefacts: high_from_artefacts,
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
        alert_list,
    }
}

#[cfg(test)]
mod tests;
