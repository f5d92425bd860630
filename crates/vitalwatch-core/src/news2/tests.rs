//! NEWS2 tests: every band boundary of RCP 2017 Chart 1 through one `check` helper.

use super::*;
use crate::telemetry::{DeviceId, Field, FieldSet, Timestamp, VitalKey};

#[derive(Clone, Copy, Debug)]
enum P {
    Rr(f64),
    Spo2(f64),
    Spo2Scale2 { pct: f64, on_oxygen: bool },
    Oxygen(bool),
    Sbp(f64),
    Pulse(f64),
    Acvpu(Consciousness),
    Temp(f64),
}

/// Scores one parameter alone and checks its subscore (the one helper for every band).
fn check(parameter: P, expected: u8) {
    let mut inputs = Inputs::default();
    let mut scale = Spo2Scale::Scale1;
    let which = match parameter {
        P::Rr(v) => {
            inputs.respiration_rate_per_min = Some(v);
            Parameter::RespirationRate
        }
        P::Spo2(v) => {
            inputs.spo2_pct = Some(v);
            Parameter::Spo2
        }
        P::Spo2Scale2 { pct, on_oxygen } => {
            scale = Spo2Scale::Scale2;
            inputs.spo2_pct = Some(pct);
            inputs.on_oxygen = Some(on_oxygen);
            Parameter::Spo2
        }
        P::Oxygen(v) => {
            inputs.on_oxygen = Some(v);
            Parameter::AirOrOxygen
        }
        P::Sbp(v) => {
            inputs.systolic_bp_mmhg = Some(v);
            Parameter::SystolicBp
        }
        P::Pulse(v) => {
            inputs.pulse_bpm = Some(v);
            Parameter::Pulse
        }
        P::Acvpu(v) => {
            inputs.consciousness = Some(v);
            Parameter::Consciousness
        }
        P::Temp(v) => {
            inputs.temperature_c = Some(v);
            Parameter::Temperature
        }
    };
    let news2 = score(&inputs, scale);
    assert_eq!(news2.subscores.get(which), Some(expected), "{parameter:?}");
    assert!(news2.partial, "{parameter:?} alone is a partial score");
    assert!(!news2.missing.contains(&which), "{parameter:?}");
}

#[test]
fn every_band_boundary_of_chart_1() {
    use Consciousness::*;
    let table: &[(P, u8)] = &[
        // Respiration rate.
        (P::Rr(8.0), 3),
        (P::Rr(9.0), 1),
        (P::Rr(11.0), 1),
        (P::Rr(12.0), 0),
        (P::Rr(20.0), 0),
        (P::Rr(21.0), 2),
        (P::Rr(24.0), 2),
        (P::Rr(25.0), 3),
        (P::Rr(0.0), 3),
        // SpO2 Scale 1.
        (P::Spo2(91.0), 3),
        (P::Spo2(92.0), 2),
        (P::Spo2(93.0), 2),
        (P::Spo2(94.0), 1),
        (P::Spo2(95.0), 1),
        (P::Spo2(96.0), 0),
        (P::Spo2(100.0), 0),
        (P::Spo2(95.5), 0),
        (P::Spo2(95.4), 1),
        // SpO2 Scale 2.
        (
            P::Spo2Scale2 {
                pct: 83.0,
                on_oxygen: false,
            },
            3,
        ),
        (
            P::Spo2Scale2 {
                pct: 84.0,
                on_oxygen: false,
            },
            2,
        ),
        (
            P::Spo2Scale2 {
                pct: 85.0,
                on_oxygen: false,
            },
            2,
        ),
        (
            P::Spo2Scale2 {
                pct: 86.0,
                on_oxygen: false,
            },
            1,
        ),
        (
            P::Spo2Scale2 {
                pct: 87.0,
                on_oxygen: false,
            },
            1,
        ),
        (
            P::Spo2Scale2 {
                pct: 88.0,
                on_oxygen: false,
            },
            0,
        ),
        (
            P::Spo2Scale2 {
                pct: 92.0,
                on_oxygen: true,
            },
            0,
        ),
        (
            P::Spo2Scale2 {
                pct: 93.0,
                on_oxygen: false,
            },
            0,
        ),
        (
            P::Spo2Scale2 {
                pct: 100.0,
                on_oxygen: false,
            },
            0,
        ),
        (
            P::Spo2Scale2 {
                pct: 93.0,
                on_oxygen: true,
            },
            1,
        ),
        (
            P::Spo2Scale2 {
                pct: 94.0,
                on_oxygen: true,
            },
            1,
        ),
        (
            P::Spo2Scale2 {
                pct: 95.0,
                on_oxygen: true,
            },
            2,
        ),
        (
            P::Spo2Scale2 {
                pct: 96.0,
                on_oxygen: true,
            },
            2,
        ),
        (
            P::Spo2Scale2 {
                pct: 97.0,
                on_oxygen: true,
            },
            3,
        ),
        (
            P::Spo2Scale2 {
                pct: 83.0,
                on_oxygen: true,
            },
            3,
        ),
        // Air or oxygen.
        (P::Oxygen(false), 0),
        (P::Oxygen(true), 2),
        // Systolic BP.
        (P::Sbp(90.0), 3),
        (P::Sbp(91.0), 2),
        (P::Sbp(100.0), 2),
        (P::Sbp(101.0), 1),
        (P::Sbp(110.0), 1),
        (P::Sbp(111.0), 0),
        (P::Sbp(219.0), 0),
        (P::Sbp(220.0), 3),
        // Pulse.
        (P::Pulse(40.0), 3),
        (P::Pulse(41.0), 1),
        (P::Pulse(50.0), 1),
        (P::Pulse(51.0), 0),
        (P::Pulse(90.0), 0),
        (P::Pulse(91.0), 1),
        (P::Pulse(110.0), 1),
        (P::Pulse(111.0), 2),
        (P::Pulse(130.0), 2),
        (P::Pulse(131.0), 3),
        (P::Pulse(0.0), 3),
        (P::Pulse(90.5), 1),
        (P::Pulse(90.49), 0),
        // Consciousness (ACVPU).
        (P::Acvpu(Alert), 0),
        (P::Acvpu(Confusion), 3),
        (P::Acvpu(Voice), 3),
        (P::Acvpu(Pain), 3),
        (P::Acvpu(Unresponsive), 3),
        // Temperature, rounded to 0.1 °C before banding.
        (P::Temp(35.0), 3),
        (P::Temp(35.1), 1),
        (P::Temp(36.0), 1),
        (P::Temp(36.1), 0),
        (P::Temp(38.0), 0),
        (P::Temp(38.1), 1),
        (P::Temp(39.0), 1),
        (P::Temp(39.1), 2),
        (P::Temp(36.05), 0),
        (P::Temp(36.04), 1),
        (P::Temp(35.04), 3),
        (P::Temp(35.05), 1),
        (P::Temp(38.05), 1),
        (P::Temp(39.05), 2),
        (P::Temp(39.049), 1),
    ];
    for (parameter, expected) in table {
        check(*parameter, *expected);
    }
}

fn full(inputs: impl FnOnce(&mut Inputs)) -> News2 {
    let mut all = Inputs {
        respiration_rate_per_min: Some(16.0),
        spo2_pct: Some(97.0),
        on_oxygen: Some(false),
        systolic_bp_mmhg: Some(120.0),
        pulse_bpm: Some(70.0),
        consciousness: Some(Consciousness::Alert),
        temperature_c: Some(36.8),
    };
    inputs(&mut all);
    score(&all, Spo2Scale::Scale1)
}

#[test]
fn aggregate_and_risk() {
    type Edit = fn(&mut Inputs);
    let table: &[(Edit, u8, ClinicalRisk)] = &[
        (|_| {}, 0, ClinicalRisk::Low),
        (|i| i.pulse_bpm = Some(95.0), 1, ClinicalRisk::Low),
        (
            |i| {
                i.pulse_bpm = Some(115.0);
                i.on_oxygen = Some(true);
            },
            4,
            ClinicalRisk::Low,
        ),
        (
            |i| i.consciousness = Some(Consciousness::Voice),
            3,
            ClinicalRisk::LowMedium,
        ),
        (
            |i| {
                i.pulse_bpm = Some(115.0);
                i.respiration_rate_per_min = Some(22.0);
                i.temperature_c = Some(38.5);
            },
            5,
            ClinicalRisk::Medium,
        ),
        (
            |i| {
                i.pulse_bpm = Some(115.0);
                i.respiration_rate_per_min = Some(22.0);
                i.on_oxygen = Some(true);
            },
            6,
            ClinicalRisk::Medium,
        ),
        (
            |i| {
                i.pulse_bpm = Some(135.0);
                i.respiration_rate_per_min = Some(22.0);
                i.on_oxygen = Some(true);
            },
            7,
            ClinicalRisk::High,
        ),
        (
            |i| {
                i.respiration_rate_per_min = Some(30.0);
                i.spo2_pct = Some(85.0);
                i.on_oxygen = Some(true);
                i.systolic_bp_mmhg = Some(80.0);
                i.pulse_bpm = Some(140.0);
                i.consciousness = Some(Consciousness::Unresponsive);
                i.temperature_c = Some(40.0);
            },
            19,
            ClinicalRisk::High,
        ),
        (
            // The maximum, 20, needs the cold side: temperature ≤ 35.0 scores 3.
            |i| {
                i.respiration_rate_per_min = Some(30.0);
                i.spo2_pct = Some(85.0);
                i.on_oxygen = Some(true);
                i.systolic_bp_mmhg = Some(80.0);
                i.pulse_bpm = Some(140.0);
                i.consciousness = Some(Consciousness::Unresponsive);
                i.temperature_c = Some(34.0);
            },
            20,
            ClinicalRisk::High,
        ),
    ];
    for (edit, total, risk) in table {
        let news2 = full(*edit);
        assert_eq!((news2.total, news2.risk), (*total, *risk), "{news2:?}");
        assert!(!news2.partial);
        assert!(news2.missing.is_empty());
    }
}

#[test]
fn partial_lists_what_is_missing() {
    let mut reading = Reading::empty(
        DeviceId::parse("dev-1", 64).expect("valid id"),
        Timestamp::from_secs(1_705_401_045),
    );
    reading.heart_rate_bpm = Some(135.0);
    reading.body_temp_c = Some(36.8);
    let news2 = score(&Inputs::from_reading(&reading), Spo2Scale::Scale1);
    assert_eq!(news2.total, 3);
    assert_eq!(news2.risk, ClinicalRisk::LowMedium);
    assert!(news2.partial);
    assert_eq!(
        news2.missing,
        [
            Parameter::RespirationRate,
            Parameter::Spo2,
            Parameter::AirOrOxygen,
            Parameter::SystolicBp,
            Parameter::Consciousness
        ]
    );
}

#[test]
fn latest_vitals_within_a_window() {
    let device = DeviceId::parse("dev-1", 64).expect("valid id");
    let t0 = Timestamp::from_secs(1_705_401_000);
    let mut vitals = LatestVitals::default();
    let mut cuff = Reading::empty(device.clone(), t0);
    cuff.systolic_bp_mmhg = Some(85.0);
    cuff.respiratory_rate_per_min = Some(26.0);
    vitals.observe(&cuff, FieldSet::EMPTY);
    let mut wearable = Reading::empty(device.clone(), t0.saturating_add_micros(60_000_000));
    wearable.heart_rate_bpm = Some(0.0);
    wearable.spo2_pct = Some(97.0);
    let mut faulted = FieldSet::EMPTY;
    faulted.insert(Field::Vital(VitalKey::HeartRate));
    vitals.observe(&wearable, faulted);
    // An older reading does not overwrite a newer value.
    let mut stale = Reading::empty(device, t0.saturating_add_micros(-1_000_000));
    stale.systolic_bp_mmhg = Some(150.0);
    vitals.observe(&stale, FieldSet::EMPTY);

    let now = t0.saturating_add_micros(120_000_000);
    let within = vitals.score(now, 300, Spo2Scale::Scale1);
    assert_eq!(within.subscores.systolic_bp, Some(3));
    assert_eq!(within.subscores.respiration_rate, Some(3));
    assert_eq!(within.subscores.pulse, None, "a faulted pulse is not used");
    assert_eq!(within.total, 6);
    let narrow = vitals.score(now, 90, Spo2Scale::Scale1);
    assert_eq!(narrow.subscores.systolic_bp, None);
    assert_eq!(narrow.subscores.spo2, Some(0));
    assert!(narrow.missing.contains(&Parameter::SystolicBp));
    assert_eq!(narrow.total, 0);
}

/// A reading of `dev-1` at `secs` after t0, edited by `edit`.
fn reading_at(secs: i64, edit: impl FnOnce(&mut Reading)) -> Reading {
    let device = DeviceId::parse("dev-1", 64).expect("valid id");
    let mut reading = Reading::empty(device, Timestamp::from_secs(1_705_401_000 + secs));
    edit(&mut reading);
    reading
}

fn secs(s: i64) -> Timestamp {
    Timestamp::from_secs(1_705_401_000 + s)
}

#[test]
fn each_parameter_is_valid_for_its_own_interval_then_stale() {
    let mut vitals = LatestVitals::default();
    // An hourly cuff and a 4-hourly ACVPU, a wearable every 5 s.
    vitals.observe(
        &reading_at(0, |r| {
            r.systolic_bp_mmhg = Some(88.0);
            r.consciousness = Some(Consciousness::Alert);
            r.on_oxygen = Some(false);
            r.body_temp_c = Some(36.8);
        }),
        FieldSet::EMPTY,
    );
    for s in (0..=5400).step_by(5) {
        vitals.observe(
            &reading_at(s, |r| {
                r.heart_rate_bpm = Some(72.0);
                r.spo2_pct = Some(97.0);
                r.respiratory_rate_per_min = Some(16.0);
            }),
            FieldSet::EMPTY,
        );
    }
    let validity = Validity::default();
    // 50 minutes on, the BP still counts (it scores 3), nothing is stale.
    let held = vitals.score_at(secs(3000), &validity, 0, Spo2Scale::Scale1);
    assert_eq!(held.subscores.systolic_bp, Some(3));
    assert_eq!(held.total, 3);
    assert!(held.stale.is_empty() && !held.partial, "{held:?}");
    // 90 minutes on, BP and temperature are stale: flagged, not scored as normal.
    let late = vitals.score_at(secs(5400), &validity, 0, Spo2Scale::Scale1);
    assert_eq!(
        late.stale,
        vec![Parameter::SystolicBp, Parameter::Temperature]
    );
    assert_eq!(late.subscores.systolic_bp, None);
    assert!(late.partial && late.missing.contains(&Parameter::SystolicBp));
    assert_eq!(late.total, 0, "a lower bound");
    // A device that reports every 2 hours keeps its values at least that long.
    let slow = validity.at_least(7200);
    let kept = vitals.score_at(secs(5400), &slow, 0, Spo2Scale::Scale1);
    assert!(kept.stale.is_empty(), "{kept:?}");
    assert_eq!(slow.of(Parameter::Consciousness), 4 * 3600);
    assert_eq!(Validity::uniform(0).zero_key(), Some("respiration_rate"));
    assert_eq!(validity.zero_key(), None);
}

#[test]
fn a_value_at_a_band_edge_is_smoothed_not_flipped() {
    // A pulse around 110 (NEWS2 1; 111 scores 2), alternating 108/112 with noise.
    let mut vitals = LatestVitals::default();
    let mut raw = Vec::new();
    let mut smoothed = Vec::new();
    for (n, s) in (0..300).step_by(5).enumerate() {
        let hr = if n % 2 == 0 { 108.0 } else { 112.0 };
        vitals.observe(
            &reading_at(s, |r| r.heart_rate_bpm = Some(hr)),
            FieldSet::EMPTY,
        );
        let validity = Validity::default();
        raw.push(
            vitals
                .score_at(secs(s), &validity, 0, Spo2Scale::Scale1)
                .subscores
                .pulse,
        );
        smoothed.push(
            vitals
                .score_at(secs(s), &validity, 60, Spo2Scale::Scale1)
                .subscores
                .pulse,
        );
    }
    assert!(raw.contains(&Some(2)) && raw.contains(&Some(1)));
    // The smoothed pulse of a minute is about 110: the score stays 1.
    assert!(smoothed[1..].iter().all(|s| *s == Some(1)), "{smoothed:?}");
    // A real rise moves the smoothed value within half the window.
    for s in (300..=335).step_by(5) {
        vitals.observe(
            &reading_at(s, |r| r.heart_rate_bpm = Some(125.0)),
            FieldSet::EMPTY,
        );
    }
    let risen = vitals.score_at(secs(335), &Validity::default(), 60, Spo2Scale::Scale1);
    assert_eq!(risen.subscores.pulse, Some(2));
}

#[test]
fn forgetting_what_the_smoothing_does_not_use_changes_no_score() {
    let device = DeviceId::parse("dev-1", 64).expect("valid id");
    let t0 = Timestamp::from_secs(1_705_401_000);
    let validity = Validity::default();
    let mut kept = LatestVitals::default();
    let mut trimmed = LatestVitals::default();
    for n in 0..400i64 {
        // Every 5 s, with one reading in 9 arriving 40 s late (older than what is held).
        let late = if n % 9 == 4 { -40_000_000 } else { 0 };
        let at = t0.saturating_add_micros(n * 5_000_000 + late);
        let mut reading = Reading::empty(device.clone(), at);
        reading.heart_rate_bpm = Some(70.0 + ((n * 37) % 60) as f64);
        reading.spo2_pct = Some(88.0 + ((n * 13) % 12) as f64);
        if n % 3 == 0 {
            reading.respiratory_rate_per_min = Some(12.0 + ((n * 7) % 16) as f64);
        }
        kept.observe(&reading, FieldSet::EMPTY);
        trimmed.observe(&reading, FieldSet::EMPTY);
        trimmed.forget_unsmoothed(30);
        let now = t0.saturating_add_micros(n * 5_000_000);
        assert_eq!(
            kept.score_at(now, &validity, 30, Spo2Scale::Scale1),
            trimmed.score_at(now, &validity, 30, Spo2Scale::Scale1),
            "reading {n}"
        );
    }
    let size = |v: &LatestVitals| serde_json::to_string(v).expect("serialisable").len();
    assert!(
        size(&trimmed) * 5 < size(&kept),
        "{} bytes trimmed, {} kept",
        size(&trimmed),
        size(&kept)
    );
}

#[test]
fn the_kept_sorted_values_smooth_exactly_as_sorting_each_window() {
    // 300 readings 0.1 s apart (a 30 s window then holds the whole history), then 300 every
    // 5 s (it holds part of it), with repeated values. A copy restored from the serialised
    // state has no sorted values, so it sorts every window as before they were kept; every
    // hundred readings the state itself is replaced by such a copy, which each parameter's
    // next value must bring back in step.
    let device = DeviceId::parse("dev-1", 64).expect("valid id");
    let t0 = Timestamp::from_secs(1_705_401_000);
    let validity = Validity::default();
    let bits = |value: Option<f64>| value.map(f64::to_bits);
    let restore = |v: &LatestVitals| -> LatestVitals {
        serde_json::from_str(&serde_json::to_string(v).expect("serialisable")).expect("restored")
    };
    let mut vitals = LatestVitals::default();
    let mut elapsed = 0i64;
    for n in 0..600i64 {
        elapsed += if n < 300 { 100_000 } else { 5_000_000 };
        let at = t0.saturating_add_micros(elapsed);
        let mut reading = Reading::empty(device.clone(), at);
        reading.heart_rate_bpm = Some(60.0 + ((n * 37) % 50) as f64 + 0.1 * (n % 7) as f64);
        reading.spo2_pct = Some(90.0 + ((n * 13) % 10) as f64);
        if n % 3 == 0 {
            reading.respiratory_rate_per_min = Some(12.0 + ((n * 7) % 16) as f64);
        }
        vitals.observe(&reading, FieldSet::EMPTY);
        if n % 40 == 39 {
            vitals.forget_unsmoothed(30);
        }
        if n % 3 == 0 {
            // Every parameter had a value in this reading.
            assert!(vitals.sorted_in_step(), "reading {n}");
        }
        let sorting = restore(&vitals);
        for smooth_s in [0, 5, 30, 600] {
            let (kept, _) = vitals.inputs_at(at, &validity, smooth_s);
            let (sorted, _) = sorting.inputs_at(at, &validity, smooth_s);
            for (name, kept, sorted) in [
                ("pulse", kept.pulse_bpm, sorted.pulse_bpm),
                ("spo2", kept.spo2_pct, sorted.spo2_pct),
                (
                    "rr",
                    kept.respiration_rate_per_min,
                    sorted.respiration_rate_per_min,
                ),
            ] {
                assert_eq!(
                    bits(kept),
                    bits(sorted),
                    "{name}, reading {n}, {smooth_s} s"
                );
            }
        }
        if n % 100 == 99 {
            vitals = sorting;
        }
    }
}
