//! Engine tests: every transition and timer, with an explicit clock (no sleeps).
//!
//! Each test is a script of timed steps run through one helper, [`run`], which feeds readings
//! through the real rules (seed table plus SENSOR_FAULT) and NEWS2, as the pipeline will.

use super::*;
use crate::news2::{self, Inputs, Spo2Scale};
use crate::rules::{self, AnomalyType, PreviousTemperature, RuleSet, SensorFaultRule};
use crate::telemetry::{DeviceId, Reading, Timestamp};
use AlertCondition::*;
use TransitionKind::*;

mod artefacts;
mod patient;
mod shared;
mod timers;
mod vitals;
use std::collections::HashMap;

const T0: i64 = 1_705_401_000;

fn at(secs: i64) -> Timestamp {
    Timestamp::from_secs(T0 + secs)
}

fn device(name: &str) -> DeviceId {
    DeviceId::parse(name, 64).expect("valid test id")
}

/// One scripted step.
#[derive(Clone, Copy, Debug)]
enum Step {
    /// A reading from `dev-1` with this heart rate and temperature (signal and battery fine).
    Vitals(f64, f64),
    /// A reading from `dev-1` edited by the function (starting from HR 72, 36.8 °C).
    Edit(fn(&mut Reading)),
    /// A normal reading from another device.
    Other(&'static str),
    /// The device's connection was lost abruptly (its MQTT will fired).
    Lost(&'static str),
    Tick,
    Ack(u64),
    Silence(u64, u64),
    Resolve(u64),
}

/// The outcome of a script: every transition, the engine, and how many seed anomalies the
/// readings produced.
struct Run {
    log: Vec<AlertTransition>,
    engine: AlertEngine,
    seed_anomalies: usize,
    errors: Vec<AlertError>,
}

impl Run {
    /// The transitions other than `Updated`, as (second, kind, id, condition, priority).
    fn milestones(&self) -> Vec<(i64, TransitionKind, u64, AlertCondition, Priority)> {
        self.log
            .iter()
            .filter(|t| t.kind != Updated)
            .map(|t| {
                (
                    t.at.micros() / 1_000_000 - T0,
                    t.kind,
                    t.alert.id.0,
                    t.alert.condition,
                    t.alert.priority,
                )
            })
            .collect()
    }
}

fn run(config: AlertConfig, script: &[(i64, Step)]) -> Run {
    let rules = RuleSet::default();
    let sensor = SensorFaultRule::default();
    let mut engine = AlertEngine::new(config, 0);
    let mut previous: HashMap<DeviceId, PreviousTemperature> = HashMap::new();
    let mut out = Run {
        log: Vec::new(),
        engine: AlertEngine::new(AlertConfig::default(), 0),
        seed_anomalies: 0,
        errors: Vec::new(),
    };
    for (secs, step) in script {
        let now = at(*secs);
        let mut reading = Reading::empty(device("dev-1"), now);
        reading.heart_rate_bpm = Some(72.0);
        reading.body_temp_c = Some(36.8);
        reading.signal_strength_dbm = Some(-55.0);
        reading.battery_pct = Some(90.0);
        let result = match *step {
            Step::Vitals(hr, temp) => {
                reading.heart_rate_bpm = Some(hr);
                reading.body_temp_c = Some(temp);
                Ok(None)
            }
            Step::Edit(edit) => {
                edit(&mut reading);
                Ok(None)
            }
            Step::Other(name) => {
                reading.device_id = device(name);
                Ok(None)
            }
            Step::Lost(name) => Ok(Some(engine.device_lost(&device(name), now))),
            Step::Tick => Ok(Some(engine.tick(now))),
            Step::Ack(id) => engine
                .acknowledge(AlertId(id), "nurse.jo", Some("on my way"), now)
                .map(Some),
            Step::Silence(id, secs) => engine.silence(AlertId(id), "nurse.jo", secs, now).map(Some),
            Step::Resolve(id) => engine.resolve(AlertId(id), "dr.lee", now).map(Some),
        };
        match result {
            Ok(Some(transitions)) => out.log.extend(transitions),
            Err(err) => out.errors.push(err),
            Ok(None) => {
                let mut findings = Vec::new();
                rules::check(&reading, &rules, &mut findings);
                out.seed_anomalies += findings.len();
                let prev = previous.get(&reading.device_id).copied();
                rules::check_sensor_faults(&reading, prev, &sensor, &mut findings);
                if let Some(temp) = reading.body_temp_c {
                    previous.insert(
                        reading.device_id.clone(),
                        PreviousTemperature {
                            body_temp_c: temp,
                            at: reading.timestamp,
                        },
                    );
                }
                let inputs = Inputs::from_reading(&reading);
                let news2 = (inputs.respiration_rate_per_min.is_some())
                    .then(|| news2::score(&inputs, Spo2Scale::Scale1));
                out.log
                    .extend(engine.observe(&reading, &findings, news2.as_ref(), now));
            }
        }
    }
    out.engine = engine;
    out
}

/// Runs a script and checks its milestones (every transition but `Updated`).
fn check(
    config: AlertConfig,
    script: &[(i64, Step)],
    expected: &[(i64, TransitionKind, u64, AlertCondition, Priority)],
) -> Run {
    let result = run(config, script);
    assert_eq!(result.milestones(), expected, "script {script:?}");
    result
}

/// `step` every `interval` seconds from `from` (inclusive) to `to` (exclusive).
fn every(from: i64, to: i64, interval: i64, step: Step) -> Vec<(i64, Step)> {
    (from..to)
        .step_by(usize::try_from(interval).expect("positive interval"))
        .map(|secs| (secs, step))
        .collect()
}

fn script(parts: &[Vec<(i64, Step)>]) -> Vec<(i64, Step)> {
    let mut all: Vec<(i64, Step)> = parts.concat();
    all.sort_by_key(|(secs, _)| *secs);
    all
}

use Priority::{High, Low, Medium};

/// `config` with HIGH raised on the first reading (no persistence), for tests of other
/// features that start from one HIGH reading.
fn high_at_once(mut config: AlertConfig) -> AlertConfig {
    config.onset.high = Onset {
        readings: 1,
        secs: 0,
        window_s: None,
    };
    config
}

/// The default config without DEVICE_OFFLINE, for scripts that tick without readings.
fn no_offline() -> AlertConfig {
    let mut config = AlertConfig::default();
    config.conditions.insert(
        DeviceOffline,
        ConditionOverride {
            enabled: Some(false),
            ..ConditionOverride::default()
        },
    );
    config
}

#[test]
fn seed_complaint_hr_105_for_an_hour_is_one_episode() {
    // One reading every 3 s for an hour: the seed logs 1 200 CRITICAL rows.
    let steps = script(&[
        every(0, 3600, 3, Step::Vitals(105.0, 36.8)),
        every(3600, 3720, 3, Step::Vitals(90.0, 36.8)),
    ]);
    let result = check(
        AlertConfig::default(),
        &steps,
        &[
            // NEWS2 scores pulse 105 as 1: LOW, raised after 5 readings and 60 s.
            (60, Raised, 1, HeartRateHigh, Low),
            // Back to 90 (≤ 100 − 5) at 3600; resolved after the 60 s hold.
            (3660, Resolved, 1, HeartRateHigh, Low),
        ],
    );
    assert_eq!(result.seed_anomalies, 1200);
    let resolved = result.log.last().expect("resolved");
    assert_eq!(resolved.alert.count, 1200);
    assert_eq!(resolved.alert.last_value, Some(105.0));
    assert_eq!(resolved.alert.resolved_by, None);
    // Each transition carries the alert's message.
    assert_eq!(result.log[0].message, "HR 105 bpm (limit 100), dev-1");
    assert_eq!(resolved.message, "HR 105 bpm (limit 100) for 58 min, dev-1");
    // Folded readings refresh the store about once a minute, not once per reading.
    let updates = result.log.iter().filter(|t| t.kind == Updated).count();
    assert!((55..=60).contains(&updates), "{updates} updates");
    assert_eq!(result.engine.open_alerts().count(), 0);
}

#[test]
fn onset_delay_by_priority() {
    let config = AlertConfig::default;
    // HIGH (pulse ≥ 131) needs 2 readings within 15 s (issue 18: it used to raise, and
    // latch, on one reading, which may be an artefact) ...
    check(config(), &[(0, Step::Vitals(135.0, 36.8))], &[]);
    check(
        config(),
        &[
            (0, Step::Vitals(135.0, 36.8)),
            (5, Step::Vitals(80.0, 36.8)),
            (10, Step::Vitals(135.0, 36.8)),
        ],
        &[(10, Raised, 1, HeartRateHigh, High)],
    );
    check(
        config(),
        &[
            (0, Step::Vitals(135.0, 36.8)),
            (10, Step::Vitals(80.0, 36.8)),
            (20, Step::Vitals(135.0, 36.8)),
        ],
        &[],
    );
    // MEDIUM (pulse 111–130) needs 3 readings and 15 s.
    check(
        config(),
        &every(0, 20, 5, Step::Vitals(115.0, 36.8)),
        &[(15, Raised, 1, HeartRateHigh, Medium)],
    );
    check(config(), &every(0, 15, 5, Step::Vitals(115.0, 36.8)), &[]);
    // One normal reading in between does not start the count again (issue 18, S4: the
    // onset used to need consecutive readings, so a condition that comes and goes with noise
    // never raised): 3 readings within 30 s, spanning 15 s.
    check(
        config(),
        &[
            (0, Step::Vitals(115.0, 36.8)),
            (5, Step::Vitals(115.0, 36.8)),
            (10, Step::Vitals(80.0, 36.8)),
            (15, Step::Vitals(115.0, 36.8)),
            (20, Step::Vitals(115.0, 36.8)),
        ],
        &[(15, Raised, 1, HeartRateHigh, Medium)],
    );
    // Sightings too sparse for the window lapse.
    check(
        config(),
        &script(&[
            every(0, 120, 5, Step::Vitals(80.0, 36.8)),
            vec![
                (2, Step::Vitals(115.0, 36.8)),
                (37, Step::Vitals(115.0, 36.8)),
                (72, Step::Vitals(115.0, 36.8)),
                (107, Step::Vitals(115.0, 36.8)),
            ],
        ]),
        &[],
    );
    // A pending MEDIUM that turns HIGH raises as HIGH once the HIGH value persists.
    check(
        config(),
        &[
            (0, Step::Vitals(115.0, 36.8)),
            (5, Step::Vitals(140.0, 36.8)),
            (10, Step::Vitals(140.0, 36.8)),
        ],
        &[(10, Raised, 1, HeartRateHigh, High)],
    );
    // Mild (HR 55 asleep: outside 60–100, NEWS2 0): LOW only after 10 readings and 5 min.
    check(config(), &every(0, 300, 5, Step::Vitals(55.0, 36.8)), &[]);
    check(
        config(),
        &every(0, 310, 5, Step::Vitals(55.0, 36.8)),
        &[(300, Raised, 1, HeartRateLow, Low)],
    );
    // ... or never, when the site turns mild alerts off.
    let mut quiet = config();
    quiet.grading.mild = None;
    check(quiet, &every(0, 900, 5, Step::Vitals(55.0, 36.8)), &[]);
    // Fever 39.5 °C scores 2 in NEWS2: MEDIUM, not HIGH.
    check(
        config(),
        &every(0, 20, 5, Step::Vitals(72.0, 39.5)),
        &[(15, Raised, 1, TemperatureHigh, Medium)],
    );
    // 34.5 °C scores 3: HIGH on the second reading.
    check(
        config(),
        &[(0, Step::Vitals(72.0, 34.5)), (5, Step::Vitals(72.0, 34.5))],
        &[(5, Raised, 1, TemperatureLow, High)],
    );
}

#[test]
fn a_condition_that_comes_and_goes_raises() {
    // Issue 18, S4: HR 105 (LOW) on 2 readings of every 5 (40 %) for 10 minutes.
    let steps: Vec<(i64, Step)> = (0..600)
        .step_by(5)
        .map(|secs| {
            let hr = if [0, 10].contains(&(secs % 25)) {
                105.0
            } else {
                85.0
            };
            (secs, Step::Vitals(hr, 36.8))
        })
        .collect();
    // 5 sightings within 2 minutes spanning 60 s: at 60 s (0, 10, 25, 35, 50, 60).
    check(
        AlertConfig::default(),
        &steps,
        &[(60, Raised, 1, HeartRateHigh, Low)],
    );
}

#[test]
fn hysteresis_on_clearing() {
    let raise = every(0, 63, 3, Step::Vitals(105.0, 36.8));
    // 97 is inside the seed range but not 5 bpm inside: the alert stays.
    check(
        AlertConfig::default(),
        &script(&[raise.clone(), every(63, 663, 3, Step::Vitals(97.0, 36.8))]),
        &[(60, Raised, 1, HeartRateHigh, Low)],
    );
    // 94 for 57 s is not enough; the 60 s hold is.
    check(
        AlertConfig::default(),
        &script(&[raise.clone(), every(63, 123, 3, Step::Vitals(94.0, 36.8))]),
        &[(60, Raised, 1, HeartRateHigh, Low)],
    );
    check(
        AlertConfig::default(),
        &script(&[raise.clone(), every(63, 124, 3, Step::Vitals(94.0, 36.8))]),
        &[
            (60, Raised, 1, HeartRateHigh, Low),
            (123, Resolved, 1, HeartRateHigh, Low),
        ],
    );
    // Flapping around the limit folds into the one episode and never resolves.
    let flapping: Vec<(i64, Step)> = (63..600)
        .step_by(30)
        .flat_map(|secs| {
            [
                (secs, Step::Vitals(94.0, 36.8)),
                (secs + 15, Step::Vitals(103.0, 36.8)),
            ]
        })
        .collect();
    check(
        AlertConfig::default(),
        &script(&[raise, flapping]),
        &[(60, Raised, 1, HeartRateHigh, Low)],
    );
}

#[test]
fn repeats_fold_and_upgrade_priority() {
    let result = check(
        AlertConfig::default(),
        &script(&[
            every(0, 63, 3, Step::Vitals(105.0, 36.8)),
            vec![
                (61, Step::Vitals(118.0, 36.8)),
                (62, Step::Vitals(132.0, 36.8)),
                (62, Step::Vitals(132.0, 36.8)),
            ],
            vec![(63, Step::Vitals(105.0, 36.8))],
        ]),
        &[(60, Raised, 1, HeartRateHigh, Low)],
    );
    let upgrades: Vec<Priority> = result
        .log
        .iter()
        .filter(|t| t.kind == Updated)
        .map(|t| t.alert.priority)
        .collect();
    assert_eq!(upgrades, [Medium, High]);
    let alert = result.engine.alert(AlertId(1)).expect("open");
    assert_eq!(alert.priority, High, "priority is never downgraded");
    assert_eq!(alert.count, 25);
    assert_eq!(alert.last_value, Some(105.0));
}

#[test]
fn latching_high_alerts() {
    let steps = script(&[
        vec![
            (0, Step::Vitals(135.0, 36.8)),
            (3, Step::Vitals(135.0, 36.8)),
        ],
        every(6, 120, 3, Step::Vitals(80.0, 36.8)),
    ]);
    let latched = check(
        AlertConfig::default(),
        &steps,
        &[(3, Raised, 1, HeartRateHigh, High)],
    );
    // One reading alone (an artefact) raises nothing, so nothing latches.
    check(
        AlertConfig::default(),
        &script(&[
            vec![(0, Step::Vitals(135.0, 36.8))],
            every(3, 120, 3, Step::Vitals(80.0, 36.8)),
        ]),
        &[],
    );
    let alert = latched.engine.alert(AlertId(1)).expect("still open");
    assert!(!alert.condition_present);
    assert_eq!(alert.state, AlertState::Active);
    // Acknowledging a latched alert whose condition has cleared resolves it.
    check(
        AlertConfig::default(),
        &script(&[steps.clone(), vec![(130, Step::Ack(1))]]),
        &[
            (3, Raised, 1, HeartRateHigh, High),
            (130, Acknowledged, 1, HeartRateHigh, High),
            (130, Resolved, 1, HeartRateHigh, High),
        ],
    );
    // The condition coming back after the latched one cleared is a new event: a new episode
    // (issue 18: it used to fold into the latched alert, "detected" before it happened).
    check(
        AlertConfig::default(),
        &script(&[
            steps.clone(),
            vec![
                (130, Step::Vitals(140.0, 36.8)),
                (135, Step::Vitals(140.0, 36.8)),
            ],
        ]),
        &[
            (3, Raised, 1, HeartRateHigh, High),
            (130, Resolved, 1, HeartRateHigh, High),
            (135, Raised, 2, HeartRateHigh, High),
        ],
    );
    // Without latching, it resolves after the hold like any other.
    let no_latch = AlertConfig {
        latch_high_priority: false,
        ..AlertConfig::default()
    };
    check(
        no_latch,
        &steps,
        &[
            (3, Raised, 1, HeartRateHigh, High),
            (66, Resolved, 1, HeartRateHigh, High),
        ],
    );
    // An acknowledged HIGH alert does not latch.
    check(
        AlertConfig::default(),
        &script(&[steps, vec![(4, Step::Ack(1))]]),
        &[
            (3, Raised, 1, HeartRateHigh, High),
            (4, Acknowledged, 1, HeartRateHigh, High),
            (66, Resolved, 1, HeartRateHigh, High),
        ],
    );
}

#[test]
fn acknowledged_alert_reopens_when_priority_rises() {
    let result = check(
        AlertConfig::default(),
        &script(&[
            every(0, 20, 5, Step::Vitals(115.0, 36.8)),
            vec![
                (20, Step::Ack(1)),
                (25, Step::Vitals(140.0, 36.8)),
                (30, Step::Vitals(140.0, 36.8)),
            ],
        ]),
        &[
            (15, Raised, 1, HeartRateHigh, Medium),
            (20, Acknowledged, 1, HeartRateHigh, Medium),
            // One HIGH reading is not enough to reopen it; the second is.
            (30, Reopened, 1, HeartRateHigh, High),
        ],
    );
    let alert = result.engine.alert(AlertId(1)).expect("open");
    assert_eq!(alert.state, AlertState::Active);
    assert_eq!(alert.acknowledged_by, None);
}

fn hr_zero(r: &mut Reading) {
    r.heart_rate_bpm = Some(0.0);
}

#[test]
fn technical_and_physiological_channels_are_independent() {
    // dev-1: a SENSOR_FAULT on HR (technical) and a fever (physiological).
    fn fault_and_fever(r: &mut Reading) {
        r.heart_rate_bpm = Some(0.0);
        r.body_temp_c = Some(39.5);
    }
    let steps = script(&[
        every(0, 20, 5, Step::Edit(fault_and_fever)),
        vec![(30, Step::Silence(1, 60)), (31, Step::Ack(1))],
    ]);
    let result = check(
        AlertConfig::default(),
        &steps,
        &[
            (0, Raised, 1, SensorFault, Medium),
            (15, Raised, 2, TemperatureHigh, Medium),
            (30, Silenced, 1, SensorFault, Medium),
            (31, Acknowledged, 1, SensorFault, Medium),
        ],
    );
    let fever = result.engine.alert(AlertId(2)).expect("open");
    assert_eq!(fever.class, AlertClass::Physiological);
    assert_eq!(fever.state, AlertState::Active);
    assert!(
        fever.audible(at(32)),
        "technical pause and ack leave it sounding"
    );
}

#[test]
fn higher_priority_sounds_through_a_pause() {
    fn fever(r: &mut Reading) {
        r.body_temp_c = Some(39.5);
    }
    fn fever_and_low_spo2(r: &mut Reading) {
        r.body_temp_c = Some(39.5);
        r.spo2_pct = Some(93.0);
    }
    fn fever_and_bradycardia(r: &mut Reading) {
        r.body_temp_c = Some(39.5);
        r.heart_rate_bpm = Some(38.0);
    }
    let result = check(
        AlertConfig::default(),
        &script(&[
            every(0, 20, 5, Step::Edit(fever)),
            vec![(20, Step::Silence(1, 120))],
            every(25, 45, 5, Step::Edit(fever_and_low_spo2)),
            vec![
                (50, Step::Edit(fever_and_bradycardia)),
                (51, Step::Edit(fever_and_bradycardia)),
            ],
        ]),
        &[
            (15, Raised, 1, TemperatureHigh, Medium),
            (20, Silenced, 1, TemperatureHigh, Medium),
            (40, Raised, 2, Spo2Low, Medium),
            (51, Raised, 3, HeartRateLow, High),
        ],
    );
    let now = at(52);
    let audible = |id| result.engine.alert(AlertId(id)).expect("open").audible(now);
    assert!(!audible(1));
    assert!(!audible(2), "a new alert of equal priority starts paused");
    assert!(
        audible(3),
        "a new alert of higher priority sounds through the pause"
    );
}

#[test]
fn sensor_faults_raise_technical_alerts_never_physiological_high() {
    fn cold_probe(r: &mut Reading) {
        r.body_temp_c = Some(15.0);
    }
    fn jump(r: &mut Reading) {
        r.body_temp_c = Some(39.9);
    }
    fn rr_and_hr_zero(r: &mut Reading) {
        r.heart_rate_bpm = Some(0.0);
        r.respiratory_rate_per_min = Some(16.0);
    }
    let cases: &[(&str, Vec<(i64, Step)>)] = &[
        ("HR 0", every(0, 300, 3, Step::Edit(hr_zero))),
        ("temp 15 °C", every(0, 300, 3, Step::Edit(cold_probe))),
        (
            "3 °C jump in 3 s",
            vec![(0, Step::Vitals(72.0, 36.8)), (3, Step::Edit(jump))],
        ),
        (
            "HR 0 with NEWS2",
            every(0, 300, 3, Step::Edit(rr_and_hr_zero)),
        ),
    ];
    for (name, steps) in cases {
        let result = run(AlertConfig::default(), steps);
        let raised: Vec<(AlertCondition, AlertClass, Priority)> = result
            .log
            .iter()
            .filter(|t| t.kind == Raised)
            .map(|t| (t.alert.condition, t.alert.class, t.alert.priority))
            .collect();
        assert_eq!(
            raised,
            [(SensorFault, AlertClass::Technical, Medium)],
            "{name}"
        );
        if *name != "3 °C jump in 3 s" {
            // The seed's anomalies are still recorded, one per reading.
            assert_eq!(result.seed_anomalies, 100, "{name}");
        }
    }
    // A sensor fault clears once the values are plausible again for its hold.
    check(
        AlertConfig::default(),
        &script(&[
            every(0, 9, 3, Step::Edit(hr_zero)),
            every(9, 45, 3, Step::Vitals(72.0, 36.8)),
        ]),
        &[
            (0, Raised, 1, SensorFault, Medium),
            (39, Resolved, 1, SensorFault, Medium),
        ],
    );
    // The seed rules flag HR 0 as OUT_OF_RANGE_HR; the engine is what keeps it technical.
    let mut findings = Vec::new();
    let mut reading = Reading::empty(device("dev-1"), at(0));
    reading.heart_rate_bpm = Some(0.0);
    rules::check(&reading, &RuleSet::default(), &mut findings);
    assert_eq!(findings[0].kind, AnomalyType::OutOfRangeHr);
}

#[test]
fn news2_condition() {
    fn deteriorating(r: &mut Reading) {
        // RR 26 (3) + SpO2 95 (1) + SBP 95 (2) + HR 105 (1) = 7: HIGH.
        r.respiratory_rate_per_min = Some(26.0);
        r.spo2_pct = Some(95.0);
        r.systolic_bp_mmhg = Some(95.0);
        r.heart_rate_bpm = Some(105.0);
    }
    fn confused(r: &mut Reading) {
        // New confusion alone scores 3: low–medium risk, a MEDIUM NEWS2 alert; and (issue 18)
        // a HIGH CONSCIOUSNESS_CHANGED of its own at once, where it used to be NEWS2 only.
        r.respiratory_rate_per_min = Some(16.0);
        r.consciousness = Some(crate::telemetry::Consciousness::Confusion);
    }
    let result = run(
        AlertConfig::default(),
        &[
            (0, Step::Edit(deteriorating)),
            (5, Step::Edit(deteriorating)),
        ],
    );
    let news2 = result
        .log
        .iter()
        .find(|t| t.alert.condition == News2)
        .expect("NEWS2 alert");
    assert_eq!((news2.kind, news2.alert.priority), (Raised, High));
    assert_eq!(news2.alert.last_value, Some(7.0));
    check(
        AlertConfig::default(),
        &every(0, 20, 5, Step::Edit(confused)),
        &[
            (0, Raised, 1, ConsciousnessChanged, High),
            // The urgent NEWS2 alarm on the second observation set: one reading interval after
            // the score reached it (issue 18, point 5; it used to take 15 s or more).
            (5, Raised, 2, News2, Medium),
        ],
    );
}

#[test]
fn a_news2_alert_clears_only_on_a_complete_set_scoring_lower() {
    fn urgent(r: &mut Reading) {
        // RR 23 (2) + SpO2 94 (1) + SBP 105 (1) + HR 95 (1) = 5, complete: MEDIUM.
        r.respiratory_rate_per_min = Some(23.0);
        r.spo2_pct = Some(94.0);
        r.systolic_bp_mmhg = Some(105.0);
        r.heart_rate_bpm = Some(95.0);
        r.on_oxygen = Some(false);
        r.consciousness = Some(crate::telemetry::Consciousness::Alert);
    }
    fn partial_normal(r: &mut Reading) {
        // The cuff and the oximeter have gone quiet: a partial score of 0 is no evidence.
        r.respiratory_rate_per_min = Some(16.0);
    }
    fn complete_normal(r: &mut Reading) {
        r.respiratory_rate_per_min = Some(16.0);
        r.spo2_pct = Some(97.0);
        r.systolic_bp_mmhg = Some(120.0);
        r.on_oxygen = Some(false);
        r.consciousness = Some(crate::telemetry::Consciousness::Alert);
    }
    let news2_only = |steps: &[(i64, Step)]| -> Vec<(i64, TransitionKind)> {
        run(AlertConfig::default(), steps)
            .log
            .iter()
            .filter(|t| t.alert.condition == News2 && t.kind != Updated)
            .map(|t| (t.at.micros() / 1_000_000 - T0, t.kind))
            .collect()
    };
    let raise = every(0, 20, 5, Step::Edit(urgent));
    assert_eq!(
        news2_only(&script(&[
            raise.clone(),
            every(20, 600, 5, Step::Edit(partial_normal))
        ])),
        [(5, Raised)],
        "a partial score must not resolve it (issue 18: it used to)"
    );
    assert_eq!(
        news2_only(&script(&[
            raise,
            every(20, 600, 5, Step::Edit(complete_normal))
        ])),
        [(5, Raised), (140, Resolved)]
    );
}

#[test]
fn the_news2_alarm_needs_the_score_to_persist() {
    fn four(r: &mut Reading) {
        // RR 22 (2) + SpO2 95 (1) + HR 95 (1) = 4: low risk.
        r.respiratory_rate_per_min = Some(22.0);
        r.spo2_pct = Some(95.0);
        r.heart_rate_bpm = Some(95.0);
    }
    fn five(r: &mut Reading) {
        four(r);
        r.heart_rate_bpm = Some(112.0);
    }
    let news2_raised = |config: AlertConfig, steps: &[(i64, Step)]| -> Vec<i64> {
        run(config, steps)
            .log
            .iter()
            .filter(|t| t.alert.condition == News2 && t.kind == Raised)
            .map(|t| t.at.micros() / 1_000_000 - T0)
            .collect()
    };
    // One observation set scoring 5 between sets scoring 4 is not a persisting score.
    let blip = script(&[
        every(0, 100, 5, Step::Edit(four)),
        vec![(100, Step::Edit(five))],
        every(105, 300, 5, Step::Edit(four)),
    ]);
    assert_eq!(
        news2_raised(AlertConfig::default(), &blip),
        Vec::<i64>::new()
    );
    // Persistence is configurable: three sets instead of two.
    let rising = script(&[
        every(0, 50, 5, Step::Edit(four)),
        every(50, 100, 5, Step::Edit(five)),
    ]);
    assert_eq!(news2_raised(AlertConfig::default(), &rising), [55]);
    let mut three = AlertConfig::default();
    three.conditions.insert(
        News2,
        ConditionOverride {
            onset: Some(Onset {
                readings: 3,
                secs: 0,
                window_s: Some(20),
            }),
            ..ConditionOverride::default()
        },
    );
    assert_eq!(news2_raised(three, &rising), [60]);
}

#[test]
fn user_resolve_ends_the_episode_not_the_condition() {
    check(
        AlertConfig::default(),
        &script(&[
            every(0, 63, 3, Step::Vitals(105.0, 36.8)),
            vec![(61, Step::Resolve(1))],
            every(63, 130, 3, Step::Vitals(105.0, 36.8)),
        ]),
        &[
            (60, Raised, 1, HeartRateHigh, Low),
            (61, Resolved, 1, HeartRateHigh, Low),
            (123, Raised, 2, HeartRateHigh, Low),
        ],
    );
}

#[test]
fn restore_after_restart() {
    let before = run(
        AlertConfig::default(),
        &script(&[
            vec![(0, Step::Vitals(135.0, 36.8)), (1, Step::Ack(1))],
            every(0, 20, 5, Step::Vitals(135.0, 39.5)),
        ]),
    );
    assert_eq!(before.engine.open_alerts().count(), 2);
    let json = serde_json::to_string(&before.engine.snapshot()).expect("serialisable");
    let snapshot: EngineSnapshot = serde_json::from_str(&json).expect("round-trips");
    assert_eq!(snapshot, before.engine.snapshot());
    let mut engine = AlertEngine::restore(AlertConfig::default(), snapshot.clone())
        .expect("consistent snapshot");
    assert_eq!(engine.last_id(), 2);
    let hr = engine.alert(AlertId(1)).expect("restored");
    assert_eq!(hr.state, AlertState::Acknowledged);
    assert_eq!(hr.acknowledged_by.as_deref(), Some("nurse.jo"));
    // Readings fold into the restored episodes; a new condition gets the next id.
    let mut reading = Reading::empty(device("dev-1"), at(30));
    reading.heart_rate_bpm = Some(135.0);
    reading.battery_pct = Some(90.0);
    reading.signal_strength_dbm = Some(-55.0);
    // SpO2 84 is beyond a glitch and the pulse of 135 corroborates it: HIGH at once.
    reading.spo2_pct = Some(84.0);
    let mut findings = Vec::new();
    rules::check(&reading, &RuleSet::default(), &mut findings);
    let transitions = engine.observe(&reading, &findings, None, at(30));
    let raised: Vec<(AlertCondition, u64)> = transitions
        .iter()
        .filter(|t| t.kind == Raised)
        .map(|t| (t.alert.condition, t.alert.id.0))
        .collect();
    assert_eq!(raised, [(Spo2Low, 3)]);
    // Two open alerts for the same device and condition cannot both be restored.
    let mut broken = snapshot;
    let mut twin = broken.open_alerts[0].clone();
    twin.id = AlertId(9);
    broken.open_alerts.push(twin);
    assert_eq!(
        AlertEngine::restore(AlertConfig::default(), broken).err(),
        Some(AlertError::DuplicateEpisode(AlertId(1), AlertId(9)))
    );
}

#[test]
fn technical_conditions_from_findings() {
    fn weak_and_low(r: &mut Reading) {
        r.signal_strength_dbm = Some(-110.0);
        r.battery_pct = Some(5.0);
    }
    fn recovered(r: &mut Reading) {
        r.signal_strength_dbm = Some(-97.0);
        r.battery_pct = Some(100.0);
    }
    check(
        AlertConfig::default(),
        &script(&[
            every(0, 63, 3, Step::Edit(weak_and_low)),
            every(63, 200, 3, Step::Edit(recovered)),
        ]),
        &[
            (60, Raised, 1, WeakSignal, Low),
            (60, Raised, 2, LowBattery, Low),
            // Battery is 5 % above its floor at once; -97 dBm is not 5 dBm above -100.
            (123, Resolved, 2, LowBattery, Low),
        ],
    );
}
