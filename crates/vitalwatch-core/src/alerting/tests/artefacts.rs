//! Artefact handling (issue 18, point 1): one implausible reading never raises a HIGH alarm,
//! an implausible jump is a technical SENSOR_FAULT, a corroborated extreme value raises at
//! once, and a new event after a latched episode cleared gets its own episode.

use super::*;

/// (second, condition, class, priority) of every raise.
fn raises(
    config: AlertConfig,
    steps: &[(i64, Step)],
) -> Vec<(i64, AlertCondition, AlertClass, Priority)> {
    run(config, steps)
        .log
        .iter()
        .filter(|t| t.kind == Raised)
        .map(|t| {
            (
                t.at.micros() / 1_000_000 - T0,
                t.alert.condition,
                t.alert.class,
                t.alert.priority,
            )
        })
        .collect()
}

/// Normal readings every 5 s for 2 minutes with `spike` at 60 s.
fn around(spike: fn(&mut Reading)) -> Vec<(i64, Step)> {
    fn normal(r: &mut Reading) {
        r.respiratory_rate_per_min = Some(16.0);
        r.spo2_pct = Some(97.0);
    }
    let mut steps: Vec<(i64, Step)> = every(0, 120, 5, Step::Edit(normal))
        .into_iter()
        .filter(|(secs, _)| *secs != 60)
        .collect();
    steps.push((60, Step::Edit(spike)));
    steps.sort_by_key(|(secs, _)| *secs);
    steps
}

#[test]
fn single_reading_artefacts_raise_no_physiological_alarm() {
    type Case = (
        &'static str,
        fn(&mut Reading),
        Vec<(i64, AlertCondition, AlertClass, Priority)>,
    );
    let cases: Vec<Case> = vec![
        // A jump of ≥ 60 bpm within seconds: an artefact, ignored; nothing is raised.
        (
            "HR 220",
            |r| {
                r.respiratory_rate_per_min = Some(16.0);
                r.spo2_pct = Some(97.0);
                r.heart_rate_bpm = Some(220.0)
            },
            vec![],
        ),
        // 72 → 30 is no jump, but one reading is not persistence: nothing at all.
        (
            "HR 30",
            |r| {
                r.respiratory_rate_per_min = Some(16.0);
                r.spo2_pct = Some(97.0);
                r.heart_rate_bpm = Some(30.0)
            },
            vec![],
        ),
        // SpO2 97 → 60: a fall no oximeter shows in 5 s.
        (
            "SpO2 60",
            |r| {
                r.respiratory_rate_per_min = Some(16.0);
                r.spo2_pct = Some(60.0)
            },
            vec![],
        ),
        (
            "SpO2 88",
            |r| {
                r.respiratory_rate_per_min = Some(16.0);
                r.spo2_pct = Some(88.0)
            },
            vec![],
        ),
        (
            "RR 5",
            |r| {
                r.respiratory_rate_per_min = Some(5.0);
                r.spo2_pct = Some(97.0)
            },
            vec![],
        ),
    ];
    for (name, spike, expected) in cases {
        assert_eq!(
            raises(AlertConfig::default(), &around(spike)),
            expected,
            "{name}"
        );
    }
}

#[test]
fn corroborated_extremes_raise_at_once_and_real_changes_within_a_reading() {
    fn hypoxic_and_tachycardic(r: &mut Reading) {
        r.respiratory_rate_per_min = Some(16.0);
        r.spo2_pct = Some(82.0);
        r.heart_rate_bpm = Some(118.0);
    }
    fn hypoxic_only(r: &mut Reading) {
        r.respiratory_rate_per_min = Some(16.0);
        r.spo2_pct = Some(82.0);
    }
    fn normal(r: &mut Reading) {
        // 96 → 82 is a fall of 14 points: fast, but not beyond the 15-point jump bound.
        r.respiratory_rate_per_min = Some(16.0);
        r.spo2_pct = Some(96.0);
    }
    let only = |steps: &[(i64, Step)]| -> Vec<(i64, AlertCondition, Priority)> {
        raises(AlertConfig::default(), steps)
            .into_iter()
            .filter(|(_, c, _, _)| *c == Spo2Low)
            .map(|(at, c, _, p)| (at, c, p))
            .collect()
    };
    // SpO2 82 (beyond the 84 % glitch bound) with the pulse also abnormal: HIGH at once.
    assert_eq!(
        only(&[
            (0, Step::Edit(normal)),
            (5, Step::Edit(hypoxic_and_tachycardic))
        ]),
        [(5, Spo2Low, High)]
    );
    // Without a second abnormal vital it waits for the next reading.
    assert_eq!(
        only(&[
            (0, Step::Edit(normal)),
            (5, Step::Edit(hypoxic_only)),
            (10, Step::Edit(hypoxic_only)),
        ]),
        [(10, Spo2Low, High)]
    );
}

#[test]
fn an_abrupt_real_arrhythmia_is_confirmed_by_the_next_reading() {
    // 75 → 180 bpm: the first reading is a jump (artefact?), the next two confirm it.
    let steps = script(&[
        every(0, 60, 5, Step::Vitals(75.0, 36.8)),
        every(60, 90, 5, Step::Vitals(180.0, 36.8)),
    ]);
    let raised = raises(AlertConfig::default(), &steps);
    assert_eq!(
        raised,
        [(70, HeartRateHigh, AlertClass::Physiological, High)]
    );
}

#[test]
fn repeated_artefacts_raise_a_low_technical_alert() {
    // Motion: every fourth reading jumps to 200 bpm for two minutes.
    let steps: Vec<(i64, Step)> = (0..180)
        .step_by(5)
        .map(|secs| {
            let hr = if secs >= 40 && secs % 20 == 0 {
                200.0
            } else {
                75.0
            };
            (secs, Step::Vitals(hr, 36.8))
        })
        .collect();
    let raised = raises(AlertConfig::default(), &steps);
    // Each jump up and back is an artefact; 5 within 2 minutes spanning 60 s raise it.
    assert_eq!(raised, [(100, Artefact, AlertClass::Technical, Low)]);
}

#[test]
fn an_artefact_does_not_swallow_a_later_event() {
    // Issue 18: one reading of 220 bpm, then hours later a sustained 140: a new episode,
    // raised when it happens (not "detected at 0 s" by a latched artefact).
    let steps = script(&[
        every(0, 600, 5, Step::Vitals(75.0, 36.8)),
        vec![(100, Step::Vitals(220.0, 36.8))],
        every(600, 660, 5, Step::Vitals(140.0, 36.8)),
    ]);
    let steps: Vec<(i64, Step)> = {
        let mut seen = std::collections::BTreeMap::new();
        for (secs, step) in steps {
            seen.insert(secs, step);
        }
        seen.into_iter().collect()
    };
    let physiological: Vec<(i64, AlertCondition, Priority)> =
        raises(AlertConfig::default(), &steps)
            .into_iter()
            .filter(|(_, _, class, _)| *class == AlertClass::Physiological)
            .map(|(at, c, _, p)| (at, c, p))
            .collect();
    // 75 → 140 is itself a jump (≥ 60 bpm), so the event is confirmed one reading later.
    assert_eq!(physiological, [(610, HeartRateHigh, High)]);
}

#[test]
fn artefact_settings_validate() {
    let mut config = AlertConfig::default();
    config.artefact.heart_rate_jump_bpm = 0.0;
    assert!(
        config
            .validate()
            .unwrap_err()
            .to_string()
            .contains("artefact")
    );
    let mut config = AlertConfig::default();
    config.onset.high.readings = 5;
    assert!(
        config
            .validate()
            .unwrap_err()
            .to_string()
            .contains("onset.high")
    );
}

#[test]
fn a_probe_coming_off_is_technical_not_hypothermia() {
    // (name, temperature at second t, pulse) → the conditions raised about temperature.
    type Case = (&'static str, fn(i64) -> f64, f64, Vec<AlertCondition>);
    let cases: Vec<Case> = vec![
        // 36.8 → 30 °C over two minutes: far faster than a body cools.
        (
            "sliding off",
            |t| {
                if t < 300 {
                    36.8
                } else {
                    (36.8 - (t - 300) as f64 * 0.057).max(30.0)
                }
            },
            72.0,
            vec![SensorFault],
        ),
        // 32 °C from the start with a normal pulse and nothing else wrong.
        ("32 °C, pulse 72", |_| 32.0, 72.0, vec![SensorFault]),
        // 32 °C with a pulse of 45: a cold patient.
        (
            "32 °C, pulse 45",
            |_| 32.0,
            45.0,
            vec![HeartRateLow, TemperatureLow],
        ),
        // 34.5 °C reached over an hour: hypothermia, not the probe.
        (
            "slow fall",
            |t| 36.8 - t as f64 * 2.5 / 3600.0,
            72.0,
            vec![TemperatureLow],
        ),
    ];
    for (name, temperature, pulse, expected) in cases {
        let config = AlertConfig::default();
        let mut engine = AlertEngine::new(config, 0);
        let mut raised = Vec::new();
        for secs in (0..3600).step_by(5) {
            let mut reading = Reading::empty(device("dev-1"), at(secs));
            reading.heart_rate_bpm = Some(pulse);
            reading.body_temp_c = Some((temperature(secs) * 10.0).round() / 10.0);
            reading.respiratory_rate_per_min = Some(16.0);
            let mut findings = Vec::new();
            rules::check(&reading, &RuleSet::default(), &mut findings);
            for t in engine.observe(&reading, &findings, None, at(secs)) {
                if t.kind == Raised && !raised.contains(&t.alert.condition) {
                    raised.push(t.alert.condition);
                }
            }
        }
        raised.sort();
        assert_eq!(raised, expected, "{name}");
    }
}
