//! The noise-free physiology of a scenario patient at one time, and each event kind's clinical
//! criterion (when it owes an alert, whether it is critical, which conditions detect it).
//!
//! Pure arithmetic on the scenario format; `generate` and `stream` add the noise.

use super::{EventKind, EventSpec, Patient};
use crate::alerting::AlertCondition;
use crate::news2::{self, Spo2Scale};
use crate::telemetry::Consciousness;

/// The noise-free vitals of one patient at one time.
#[derive(Clone, Copy, Debug)]
pub(super) struct Vitals {
    pub heart_rate: f64,
    pub body_temp: f64,
    pub spo2: f64,
    pub respiratory_rate: f64,
    pub systolic_bp: f64,
    pub diastolic_bp: f64,
    pub signal_strength: f64,
    pub battery: f64,
    pub on_oxygen: bool,
    pub consciousness: Consciousness,
    /// The patient's SpO2 scale, so criteria grade SpO2 as a clinician would.
    pub scale: Spo2Scale,
    /// Extra beat-to-beat variability of the pulse (bpm, one standard deviation): an
    /// irregular rhythm such as atrial fibrillation.
    pub irregular_bpm: f64,
    pub probe_off: Option<f64>,
    pub hr_artefact: bool,
    /// A single-reading artefact: the pulse or SpO2 the sensor reports instead.
    pub spike_hr: Option<f64>,
    pub spike_spo2: Option<f64>,
    pub dropout: bool,
    /// Measured but held back until the connection returns (an `outage` event).
    pub outage: bool,
}

impl Vitals {
    /// NEWS2 of these noise-free vitals on the patient's scale.
    fn news2_total(&self) -> u8 {
        let inputs = news2::Inputs {
            respiration_rate_per_min: Some(self.respiratory_rate),
            spo2_pct: Some(self.spo2),
            on_oxygen: Some(self.on_oxygen),
            systolic_bp_mmhg: Some(self.systolic_bp),
            pulse_bpm: Some(self.heart_rate),
            consciousness: Some(self.consciousness),
            temperature_c: Some(self.body_temp),
        };
        news2::score(&inputs, self.scale).total
    }
}

/// How far into its effect an event is at `t`: 0 outside it, rising over `ramp_s` (default
/// `default_ramp_s`) after the onset and, with `ramp_down_s`, falling to 0 at the end.
pub(super) fn ramp(spec: &EventSpec, t: f64, default_ramp_s: u64) -> f64 {
    let (onset, end) = (spec.onset_s as f64, spec.end_s as f64);
    if t < onset || t >= end {
        return 0.0;
    }
    let up = match spec.ramp_s.unwrap_or(default_ramp_s) as f64 {
        ramp if ramp <= 0.0 => 1.0,
        ramp => ((t - onset) / ramp).min(1.0),
    };
    let down = match spec.ramp_down_s.unwrap_or(0) as f64 {
        ramp if ramp <= 0.0 => 1.0,
        ramp => ((end - t) / ramp).min(1.0),
    };
    up.min(down)
}

pub(super) fn vitals_at(patient: &Patient, t: f64, time_of_day_s: f64) -> Vitals {
    let base = &patient.baseline;
    // Lowest around 04:00, highest around 16:00.
    let circadian = (2.0 * std::f64::consts::PI * (time_of_day_s - 10.0 * 3600.0) / 86_400.0).sin();
    let mut v = Vitals {
        heart_rate: base.heart_rate + base.circadian_hr * circadian,
        body_temp: base.body_temp + 0.06 * base.circadian_hr * circadian,
        spo2: base.spo2,
        respiratory_rate: base.respiratory_rate,
        systolic_bp: base.systolic_bp,
        // A typical pulse pressure: diastolic about 64 % of systolic (122 → 78 mmHg).
        diastolic_bp: 0.64 * base.systolic_bp,
        signal_strength: base.signal_strength,
        battery: (base.battery_level - base.battery_drain_pct_per_h * t / 3600.0).max(0.0),
        on_oxygen: patient.on_oxygen,
        consciousness: Consciousness::Alert,
        scale: patient.spo2_scale,
        irregular_bpm: 0.0,
        probe_off: None,
        hr_artefact: false,
        spike_hr: None,
        spike_spo2: None,
        dropout: false,
        outage: false,
    };
    for spec in &patient.events {
        let toward = |value: f64, default_target: f64, default_ramp_s: u64| {
            let target = spec.magnitude.unwrap_or(default_target);
            value + (target - value) * ramp(spec, t, default_ramp_s)
        };
        let active = ramp(spec, t, 0) > 0.0;
        match spec.kind {
            EventKind::Fever => {
                let delta = spec.magnitude.unwrap_or(2.6) * ramp(spec, t, 900);
                v.body_temp += delta;
                v.heart_rate += 10.0 * delta;
            }
            EventKind::Tachycardia => v.heart_rate = toward(v.heart_rate, 140.0, 60),
            EventKind::Bradycardia => v.heart_rate = toward(v.heart_rate, 38.0, 60),
            EventKind::Hypoxia => v.spo2 = toward(v.spo2, 88.0, 120),
            EventKind::Sepsis => {
                let k = spec.magnitude.unwrap_or(1.0) * ramp(spec, t, 4 * 3600);
                v.heart_rate += 50.0 * k;
                v.body_temp += 2.4 * k;
                v.respiratory_rate += 12.0 * k;
                v.spo2 -= 6.0 * k;
                v.systolic_bp -= 32.0 * k;
                v.diastolic_bp -= 20.0 * k;
            }
            EventKind::Tachypnoea => v.respiratory_rate = toward(v.respiratory_rate, 28.0, 600),
            EventKind::Bradypnoea => v.respiratory_rate = toward(v.respiratory_rate, 7.0, 300),
            EventKind::Hypotension => {
                let before = v.systolic_bp;
                v.systolic_bp = toward(v.systolic_bp, 85.0, 600);
                v.diastolic_bp += 0.6 * (v.systolic_bp - before);
            }
            EventKind::Hypertension => {
                let before = v.systolic_bp;
                v.systolic_bp = toward(v.systolic_bp, 200.0, 600);
                v.diastolic_bp += 0.5 * (v.systolic_bp - before);
            }
            EventKind::Hypothermia => v.body_temp = toward(v.body_temp, 34.5, 3600),
            EventKind::Arrhythmia => {
                v.heart_rate = toward(v.heart_rate, 118.0, 30);
                if active {
                    v.irregular_bpm = v.irregular_bpm.max(12.0);
                }
            }
            EventKind::Confusion => {
                if active {
                    v.consciousness = spec
                        .level
                        .as_deref()
                        .and_then(Consciousness::from_letter)
                        .unwrap_or(Consciousness::Confusion);
                }
            }
            EventKind::Oxygen => v.on_oxygen |= active,
            EventKind::Exercise => {
                let k = ramp(spec, t, 120);
                let target = spec.magnitude.unwrap_or(110.0);
                v.heart_rate += (target - v.heart_rate) * k;
                v.respiratory_rate += 4.0 * k;
                v.systolic_bp += 10.0 * k;
            }
            EventKind::HrSpike => {
                if active {
                    v.spike_hr = Some(spec.magnitude.unwrap_or(220.0));
                }
            }
            EventKind::Spo2Dip => {
                if active {
                    v.spike_spo2 = Some(spec.magnitude.unwrap_or(60.0));
                }
            }
            EventKind::ProbeOff => {
                if active {
                    // With `ramp_s`, the probe slides off: body temperature to the room's.
                    v.probe_off = Some(toward(v.body_temp, 22.0, 0));
                }
            }
            EventKind::HrArtefact => v.hr_artefact |= active,
            EventKind::Dropout => v.dropout |= active,
            EventKind::BatteryDrain => {
                let onset = spec.onset_s as f64;
                let until = t.min(spec.end_s as f64);
                if until > onset {
                    v.battery -= spec.magnitude.unwrap_or(20.0) * (until - onset) / 3600.0;
                }
                v.battery = v.battery.max(0.0);
            }
            EventKind::WeakSignal => {
                v.signal_strength = toward(v.signal_strength, -105.0, 60);
            }
            EventKind::Outage => v.outage |= active,
            // Transport behaviours, applied by `stream`; the vitals are unchanged.
            EventKind::ClockSkew | EventKind::Duplicates => {}
        }
    }
    v
}

/// What an event owes: when its criterion is met on noise-free vitals, whether it is critical
/// by default, which alert conditions detect it, and whether an alert is owed at all.
pub(super) struct Criterion {
    pub met: Box<dyn Fn(&Vitals) -> bool>,
    pub critical: bool,
    pub conditions: Vec<AlertCondition>,
    /// `false`: no alert is owed (never missed); `conditions` may still name the conditions
    /// that are the right answer to it (a SENSOR_FAULT on an artefact).
    pub owes_alert: bool,
    /// A single-reading artefact.
    pub artefact: bool,
}

fn owed(
    met: impl Fn(&Vitals) -> bool + 'static,
    critical: bool,
    conditions: Vec<AlertCondition>,
) -> Criterion {
    Criterion {
        met: Box::new(met),
        critical,
        conditions,
        owes_alert: true,
        artefact: false,
    }
}

/// Owes no alert and is detected by nothing: every alert during it is a false one.
fn owes_nothing() -> Criterion {
    Criterion {
        met: Box::new(|_| false),
        critical: false,
        conditions: Vec::new(),
        owes_alert: false,
        artefact: false,
    }
}

/// The physiological conditions, all of which may answer a multi-system deterioration.
const PHYSIOLOGICAL: [AlertCondition; 11] = {
    use AlertCondition::*;
    [
        News2,
        HeartRateHigh,
        HeartRateLow,
        TemperatureHigh,
        TemperatureLow,
        Spo2Low,
        RespiratoryRateHigh,
        RespiratoryRateLow,
        SystolicBpLow,
        BloodPressureHigh,
        ConsciousnessChanged,
    ]
};

pub(super) fn criterion(spec: &EventSpec, scale: Spo2Scale) -> Criterion {
    use AlertCondition::*;
    let m = spec.magnitude;
    // `critical` when the target scores 3 in NEWS2, else `mild` is the first band scoring.
    let rising = |target: f64, critical_at: f64, owed_at: f64, get: fn(&Vitals) -> f64| {
        let at = if target >= critical_at {
            critical_at
        } else {
            owed_at
        };
        (move |v: &Vitals| get(v) >= at, target >= critical_at)
    };
    let falling = |target: f64, critical_at: f64, owed_at: f64, get: fn(&Vitals) -> f64| {
        let at = if target <= critical_at {
            critical_at
        } else {
            owed_at
        };
        (move |v: &Vitals| get(v) <= at, target <= critical_at)
    };
    match spec.kind {
        // A fever NEWS2 scores (≥ 38.1 °C); critical when it reaches 39.1 (scores 2).
        // Like the other kinds, a critical fever is labelled when it becomes critical.
        EventKind::Fever => {
            let critical = m.unwrap_or(2.6) + 36.8 >= 39.1;
            let at = if critical { 39.1 } else { 38.1 };
            owed(
                move |v: &Vitals| v.body_temp >= at,
                critical,
                vec![TemperatureHigh, HeartRateHigh, News2],
            )
        }
        // Pulse ≥ 131 scores 3; 111–130 scores 2 (RCP 2017 Chart 1).
        EventKind::Tachycardia | EventKind::Arrhythmia => {
            let default = if spec.kind == EventKind::Tachycardia {
                140.0
            } else {
                118.0
            };
            let (met, critical) = rising(m.unwrap_or(default), 131.0, 111.0, |v| v.heart_rate);
            owed(met, critical, vec![HeartRateHigh, News2])
        }
        // Pulse ≤ 40 scores 3; 41–50 scores 1.
        EventKind::Bradycardia => {
            let (met, critical) = falling(m.unwrap_or(38.0), 40.0, 50.0, |v| v.heart_rate);
            owed(met, critical, vec![HeartRateLow, News2])
        }
        // SpO2 scoring 3 on the patient's scale is critical; any scoring band owes an alert.
        EventKind::Hypoxia => {
            let target = m.unwrap_or(88.0);
            let critical = news2::spo2_subscore(target, scale, false) == 3;
            let met = move |v: &Vitals| {
                let subscore = news2::spo2_subscore(v.spo2, v.scale, false);
                if critical {
                    subscore == 3
                } else {
                    subscore > 0
                }
            };
            owed(met, critical, vec![Spo2Low, News2])
        }
        // Urgent response: NEWS2 ≥ 5 on the noise-free vitals; any physiological alert of
        // MEDIUM or more answers it.
        EventKind::Sepsis => owed(|v| v.news2_total() >= 5, true, PHYSIOLOGICAL.to_vec()),
        // Respiration ≥ 25 scores 3; 21–24 scores 2.
        EventKind::Tachypnoea => {
            let (met, critical) = rising(m.unwrap_or(28.0), 25.0, 21.0, |v| v.respiratory_rate);
            owed(met, critical, vec![RespiratoryRateHigh, News2])
        }
        // Respiration ≤ 8 scores 3; 9–11 scores 1.
        EventKind::Bradypnoea => {
            let (met, critical) = falling(m.unwrap_or(7.0), 8.0, 11.0, |v| v.respiratory_rate);
            owed(met, critical, vec![RespiratoryRateLow, News2])
        }
        // Systolic ≤ 90 scores 3; 91–100 scores 2.
        EventKind::Hypotension => {
            let (met, critical) = falling(m.unwrap_or(85.0), 90.0, 100.0, |v| v.systolic_bp);
            owed(met, critical, vec![SystolicBpLow, News2])
        }
        // Severe hypertension: systolic ≥ 180 mmHg asks for an urgent (MEDIUM) review.
        EventKind::Hypertension => {
            let target = m.unwrap_or(200.0);
            owed(
                |v| v.systolic_bp >= 180.0 || v.diastolic_bp >= 120.0,
                target >= 180.0,
                vec![BloodPressureHigh, News2],
            )
        }
        // Temperature ≤ 35.0 scores 3; 35.1–36.0 scores 1.
        EventKind::Hypothermia => {
            let (met, critical) = falling(m.unwrap_or(34.5), 35.0, 36.0, |v| v.body_temp);
            owed(met, critical, vec![TemperatureLow, News2])
        }
        // New confusion, V, P or U scores 3.
        EventKind::Confusion => owed(
            |v| v.consciousness != Consciousness::Alert,
            true,
            vec![ConsciousnessChanged, News2],
        ),
        // Supplemental oxygen scores 2 but owes no alert by itself; exercise is benign.
        EventKind::Oxygen | EventKind::Exercise => owes_nothing(),
        // A single implausible reading: the right answer is nothing, or a technical alert.
        EventKind::HrSpike | EventKind::Spo2Dip => Criterion {
            met: Box::new(|v| v.spike_hr.is_some() || v.spike_spo2.is_some()),
            critical: false,
            conditions: vec![SensorFault, Artefact],
            owes_alert: false,
            artefact: true,
        },
        EventKind::ProbeOff => owed(|v| v.probe_off.is_some(), true, vec![SensorFault]),
        EventKind::HrArtefact => owed(|v| v.hr_artefact, true, vec![SensorFault]),
        EventKind::Dropout => owed(|v| v.dropout, true, vec![DeviceOffline]),
        EventKind::BatteryDrain => owed(|v| v.battery < 10.0, false, vec![LowBattery]),
        // The default rule table's weak-signal limit (below −100 dBm).
        EventKind::WeakSignal => owed(|v| v.signal_strength < -100.0, false, vec![WeakSignal]),
        EventKind::Outage => owed(|v| v.outage, true, vec![DeviceOffline]),
        // Transport behaviours owe no alert, and no alert during them is excused.
        EventKind::ClockSkew | EventKind::Duplicates => owes_nothing(),
    }
}
