//! Per-patient settings (issue 18, point 3): SpO2 Scale 2 with its 88–92 % target, and a
//! patient's own respiration and blood-pressure limits, read by the engine per device.

use super::*;
use crate::rules::PatientThresholds;

/// A minute and a half of readings (one every 5 s) edited by `edit`, scored on the patient's
/// scale as the service scores them; the raises, as (second, condition, priority).
fn raised_for(
    patient: PatientThresholds,
    edit: fn(&mut Reading),
) -> Vec<(i64, AlertCondition, Priority)> {
    let mut engine = AlertEngine::new(AlertConfig::default(), 0);
    engine.set_patient(&device("dev-1"), patient);
    assert_eq!(engine.patient(&device("dev-1")), patient);
    let mut out = Vec::new();
    for secs in (0..90).step_by(5) {
        let now = at(secs);
        let mut reading = Reading::empty(device("dev-1"), now);
        reading.heart_rate_bpm = Some(72.0);
        reading.body_temp_c = Some(36.8);
        reading.spo2_pct = Some(97.0);
        reading.respiratory_rate_per_min = Some(16.0);
        reading.systolic_bp_mmhg = Some(124.0);
        reading.signal_strength_dbm = Some(-55.0);
        reading.battery_pct = Some(90.0);
        edit(&mut reading);
        let news2 = news2::score(&Inputs::from_reading(&reading), patient.scale());
        for t in engine.observe(&reading, &[], Some(&news2), now) {
            if t.kind == Raised {
                out.push((secs, t.alert.condition, t.alert.priority));
            }
        }
    }
    out
}

const SCALE_2: PatientThresholds = PatientThresholds {
    spo2_scale: Some(Spo2Scale::Scale2),
    heart_rate_min: None,
    heart_rate_max: None,
    body_temp_min: None,
    body_temp_max: None,
    spo2_min: None,
    respiratory_rate_min: None,
    respiratory_rate_max: None,
    systolic_bp_min: None,
    systolic_bp_max: None,
};

#[test]
fn a_copd_patient_on_scale_2_at_target_raises_nothing() {
    let at_target = |r: &mut Reading| r.spo2_pct = Some(89.0);
    // On Scale 1, 89 % scores 3: SPO2_LOW HIGH on the second reading, and the NEWS2 single 3.
    let scale_1 = raised_for(PatientThresholds::default(), at_target);
    assert!(scale_1.contains(&(5, Spo2Low, High)), "{scale_1:?}");
    // On Scale 2, 88–92 % is the prescribed target: nothing.
    assert_eq!(raised_for(SCALE_2, at_target), vec![]);
}

#[test]
fn an_exacerbation_on_scale_2_raises_high() {
    // 83 % scores 3 on Scale 2: HIGH on its second reading (the HIGH persistence).
    let raised = raised_for(SCALE_2, |r| r.spo2_pct = Some(83.0));
    assert!(raised.contains(&(5, Spo2Low, High)), "{raised:?}");
    // 86 % scores 1: LOW after the LOW onset.
    let raised = raised_for(SCALE_2, |r| r.spo2_pct = Some(86.0));
    assert_eq!(raised, vec![(60, Spo2Low, Low)]);
}

#[test]
fn a_patient_target_moves_the_spo2_limit() {
    // A Scale 1 patient whose target is 92 %: 93 % (NEWS2 2) is no SPO2_LOW alarm ...
    let target_92 = PatientThresholds {
        spo2_min: Some(92.0),
        ..PatientThresholds::default()
    };
    let raised = raised_for(target_92, |r| r.spo2_pct = Some(93.0));
    assert!(!raised.iter().any(|(_, c, _)| *c == Spo2Low), "{raised:?}");
    // ... and 91 % (NEWS2 3) still is: the floor cannot hide it.
    let raised = raised_for(target_92, |r| r.spo2_pct = Some(91.0));
    assert!(raised.contains(&(5, Spo2Low, High)), "{raised:?}");
}

#[test]
fn patient_respiration_and_blood_pressure_limits() {
    let tight = PatientThresholds {
        respiratory_rate_max: Some(18.0),
        systolic_bp_min: Some(120.0),
        systolic_bp_max: Some(160.0),
        ..PatientThresholds::default()
    };
    // RR 19 scores 0 but is above this patient's 18: a mild, LOW alert once sustained.
    let raised = raised_for(tight, |r| r.respiratory_rate_per_min = Some(19.0));
    assert_eq!(raised, vec![]);
    let mut engine = AlertEngine::new(AlertConfig::default(), 0);
    engine.set_patient(&device("dev-1"), tight);
    let mut raised = Vec::new();
    for secs in (0..400).step_by(5) {
        let mut reading = Reading::empty(device("dev-1"), at(secs));
        reading.respiratory_rate_per_min = Some(19.0);
        for t in engine.observe(&reading, &[], None, at(secs)) {
            if t.kind == Raised {
                raised.push((secs, t.alert.condition, t.alert.priority));
            }
        }
    }
    assert_eq!(raised, vec![(300, RespiratoryRateHigh, Low)]);
    // Systolic 170 is above this patient's 160: BLOOD_PRESSURE_HIGH at the hypertension
    // priority; 115 below their 120 is a mild low.
    let raised = raised_for(tight, |r| r.systolic_bp_mmhg = Some(170.0));
    assert_eq!(raised, vec![(15, BloodPressureHigh, Medium)]);
    let raised = raised_for(PatientThresholds::default(), |r| {
        r.systolic_bp_mmhg = Some(170.0)
    });
    assert_eq!(raised, vec![], "below the site's 180");
    // Whatever the limits, systolic 88 (NEWS2 3) is HIGH.
    let raised = raised_for(tight, |r| r.systolic_bp_mmhg = Some(88.0));
    assert!(raised.contains(&(5, SystolicBpLow, High)), "{raised:?}");
}
