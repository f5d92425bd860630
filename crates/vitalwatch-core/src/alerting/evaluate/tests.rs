//! Scorer tests: hand-written transition logs against labelled events, one table per rule.

use super::*;
use crate::alerting::{Alert, TransitionKind};
use AlertCondition::*;
use Priority::{High, Low, Medium};

const T0: i64 = 1_705_401_000;

fn at(secs: i64) -> Timestamp {
    Timestamp::from_secs(T0 + secs)
}

fn device(name: &str) -> DeviceId {
    DeviceId::parse(name, 64).expect("valid test id")
}

/// An event on `dev-1`.
fn event(
    kind: &str,
    onset: i64,
    end: i64,
    critical: bool,
    conditions: &[AlertCondition],
) -> LabelledEvent {
    LabelledEvent {
        device_id: device("dev-1"),
        kind: kind.to_owned(),
        onset: at(onset),
        end: at(end),
        critical,
        conditions: conditions.to_vec(),
        owes_alert: !conditions.is_empty(),
        artefact: false,
        began: None,
    }
}

/// One step of an alert's life on `dev-1`.
#[derive(Clone, Copy, Debug)]
enum Step {
    Raise(u64, AlertCondition, Priority),
    Upgrade(u64, Priority),
    Ack(u64),
    Resolve(u64),
}

fn transitions(steps: &[(i64, Step)]) -> Vec<AlertTransition> {
    let mut alerts: BTreeMap<u64, Alert> = BTreeMap::new();
    let mut out = Vec::new();
    for (secs, step) in steps {
        let now = at(*secs);
        let (id, kind) = match *step {
            Step::Raise(id, condition, priority) => {
                alerts.insert(id, alert(id, condition, priority, now));
                (id, TransitionKind::Raised)
            }
            Step::Upgrade(id, priority) => {
                let alert = alerts.get_mut(&id).expect("raised first");
                alert.priority = priority;
                alert.state = AlertState::Active;
                (id, TransitionKind::Updated)
            }
            Step::Ack(id) => {
                alerts.get_mut(&id).expect("raised first").state = AlertState::Acknowledged;
                (id, TransitionKind::Acknowledged)
            }
            Step::Resolve(id) => {
                alerts.get_mut(&id).expect("raised first").state = AlertState::Resolved;
                (id, TransitionKind::Resolved)
            }
        };
        out.push(AlertTransition {
            kind,
            alert: alerts[&id].clone(),
            at: now,
            message: String::new(),
        });
    }
    out
}

fn alert(id: u64, condition: AlertCondition, priority: Priority, now: Timestamp) -> Alert {
    Alert::opened(AlertId(id), device("dev-1"), condition, priority, now)
}

/// What one case expects of its single event: `Some(delay)` detected after `delay` s, `None`
/// missed; and how many false alerts.
fn check(
    name: &str,
    event: LabelledEvent,
    steps: &[(i64, Step)],
    detected: Option<f64>,
    false_alerts: usize,
) -> Evaluation {
    let evaluation = evaluate(
        std::slice::from_ref(&event),
        &transitions(steps),
        0,
        1.0,
        60,
        true,
    );
    let score = &evaluation.per_kind[&event.kind];
    assert_eq!(
        score.max_time_to_alert_s, detected,
        "{name}: {evaluation:?}"
    );
    let missed = usize::from(detected.is_none() && event.owes_alert);
    assert_eq!(score.missed, missed, "{name}");
    assert_eq!(
        evaluation.false_alerts, false_alerts,
        "{name}: {evaluation:?}"
    );
    evaluation
}

#[test]
fn which_alerts_detect_which_events() {
    use Step::*;
    let brady = || event("bradycardia", 100, 400, true, &[HeartRateLow, News2]);
    type Case = (
        &'static str,
        LabelledEvent,
        Vec<(i64, Step)>,
        Option<f64>,
        usize,
    );
    let cases: Vec<Case> = vec![
        (
            "HIGH of a listed condition",
            brady(),
            vec![(110, Raise(1, HeartRateLow, High))],
            Some(10.0),
            0,
        ),
        (
            "already open at onset",
            brady(),
            vec![(50, Raise(1, HeartRateLow, High))],
            Some(0.0),
            0,
        ),
        (
            "raised within the grace after the end",
            brady(),
            vec![(450, Raise(1, HeartRateLow, Medium))],
            Some(350.0),
            0,
        ),
        (
            "raised after the grace: false",
            brady(),
            vec![(470, Raise(1, HeartRateLow, High))],
            None,
            1,
        ),
        // S2: an alert of a condition the kind does not list never detects it, and is false.
        (
            "another condition",
            brady(),
            vec![(110, Raise(1, WeakSignal, Low))],
            None,
            1,
        ),
        // S3: a LOW alert does not detect a critical event (but is not false either) ...
        (
            "LOW on a critical event",
            brady(),
            vec![(110, Raise(1, HeartRateLow, Low))],
            None,
            0,
        ),
        // ... until it is upgraded.
        (
            "LOW upgraded to MEDIUM",
            brady(),
            vec![
                (110, Raise(1, HeartRateLow, Low)),
                (130, Upgrade(1, Medium)),
            ],
            Some(30.0),
            0,
        ),
        (
            "LOW on a non-critical event",
            event("mild", 100, 400, false, &[HeartRateLow]),
            vec![(110, Raise(1, HeartRateLow, Low))],
            Some(10.0),
            0,
        ),
        // S3: an episode acknowledged before the event asks for no attention.
        (
            "acknowledged before the onset",
            brady(),
            vec![(10, Raise(1, HeartRateLow, High)), (20, Ack(1))],
            None,
            0,
        ),
        (
            "acknowledged, then reopened",
            brady(),
            vec![
                (10, Raise(1, HeartRateLow, Medium)),
                (20, Ack(1)),
                (150, Upgrade(1, High)),
            ],
            Some(50.0),
            0,
        ),
        (
            "resolved before the onset",
            brady(),
            vec![(10, Raise(1, HeartRateLow, High)), (20, Resolve(1))],
            None,
            1,
        ),
        // S1: an event with no conditions (transport, benign) never detects nor hides alerts.
        (
            "transport event",
            event("clock_skew", 0, 1000, false, &[]),
            vec![(110, Raise(1, HeartRateHigh, Medium))],
            None,
            1,
        ),
    ];
    for (name, event, steps, detected, false_alerts) in cases {
        check(name, event, &steps, detected, false_alerts);
    }
}

#[test]
fn artefacts_owe_nothing_and_high_alarms_on_them_are_counted() {
    use Step::*;
    let mut spike = event("hr_spike", 100, 105, false, &[SensorFault]);
    spike.owes_alert = false;
    spike.artefact = true;
    // Nothing raised: not missed.
    check("quiet artefact", spike.clone(), &[], None, 0);
    // A technical SENSOR_FAULT on it is fine.
    let technical = check(
        "technical",
        spike.clone(),
        &[(100, Raise(1, SensorFault, Medium))],
        Some(0.0),
        0,
    );
    assert_eq!(technical.high_alarms_from_artefacts, 0);
    // A HIGH physiological alarm is false, and counted as from an artefact.
    let high = check(
        "HIGH",
        spike,
        &[(100, Raise(1, HeartRateHigh, High))],
        None,
        1,
    );
    assert_eq!(high.high_alarms_from_artefacts, 1);
    assert_eq!(high.false_physiological_alerts, 1);
}

#[test]
fn alert_list_names_the_event_or_false_and_news2_time_is_separate() {
    use Step::*;
    let mut sepsis = event("sepsis", 100, 4000, true, &[News2, HeartRateHigh, Spo2Low]);
    // An early alert while the physiology drifts towards the criterion is not a false one.
    sepsis.began = Some(at(0));
    let evaluation = check(
        "sepsis",
        sepsis,
        &[
            (130, Raise(1, HeartRateHigh, Medium)),
            (190, Raise(2, News2, Medium)),
            (200, Raise(3, WeakSignal, Low)),
            (300, Resolve(3)),
            (20, Raise(4, Spo2Low, Low)),
            (40, Resolve(4)),
        ],
        Some(30.0),
        1,
    );
    assert_eq!(evaluation.max_time_to_news2_s, Some(90.0));
    assert_eq!(evaluation.false_physiological_alerts, 0);
    let listed: Vec<(u64, AlertCondition, Option<&str>, bool)> = evaluation
        .alert_list
        .iter()
        .map(|a| {
            (
                a.id,
                a.condition,
                a.detected.as_deref(),
                a.closed_at.is_some(),
            )
        })
        .collect();
    assert_eq!(
        listed,
        [
            (1, HeartRateHigh, Some("sepsis"), false),
            (2, News2, Some("sepsis"), false),
            (3, WeakSignal, None, true),
            (4, Spo2Low, Some("sepsis"), true),
        ]
    );
    assert_eq!(
        evaluation.per_kind["sepsis"].detected_by_priority["medium"],
        1
    );
}
