//! Scenarios: a deterministic generator of labelled vital-sign streams, for evaluating alerting
//! (`vitalwatch evaluate`) and for simulators.
//!
//! A [`Scenario`] names patients, each with a baseline and events (fever, tachycardia,
//! bradycardia, hypoxia, a sepsis-like deterioration over hours, sensor artefacts, dropouts,
//! battery drain). [`generate`] turns it into readings every `interval_s` with circadian
//! variation and Gaussian noise, plus the ground truth as [`LabelledEvent`]s. The same scenario
//! and seed always give the same readings. The format is documented in `docs/scenarios.md`.
//!
//! An event's labelled onset is when its noise-free signal first meets the event's clinical
//! criterion (e.g. pulse ≥ 131 for a critical tachycardia, NEWS2 ≥ 5 for sepsis), not when the
//! physiology starts to drift: that is the moment an alert is owed. Pure: no clock, no files.

use crate::alerting::{AlertCondition, LabelledEvent};
use crate::news2::{self, Spo2Scale};
use crate::telemetry::{Consciousness, DeviceId, Reading, Timestamp, VitalKey};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

mod stream;
pub use stream::{Stream, Transmission, stream};

/// The longest scenario: 31 days, to keep a run bounded.
pub const MAX_DURATION_S: u64 = 31 * 86_400;
/// The fastest reading interval.
pub const MIN_INTERVAL_S: f64 = 0.5;

/// The vitals every generated reading carries, in table order (diastolic BP is not modelled).
/// The simulator's CSV has a column for each numeric one.
pub const GENERATED_VITALS: [VitalKey; 9] = [
    VitalKey::HeartRate,
    VitalKey::BodyTemp,
    VitalKey::SignalStrength,
    VitalKey::BatteryLevel,
    VitalKey::Spo2,
    VitalKey::RespiratoryRate,
    VitalKey::SystolicBp,
    VitalKey::Consciousness,
    VitalKey::OnOxygen,
];

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    pub name: String,
    #[serde(default)]
    pub description: String,
    /// Seeds the noise: same seed, same readings.
    pub seed: u64,
    /// When the scenario starts (RFC 3339); sets the time of day of the circadian rhythm.
    #[serde(default = "default_start")]
    pub start: String,
    pub duration_s: u64,
    /// Seconds between two readings of a device (the simulator's 5 s).
    #[serde(default = "default_interval")]
    pub interval_s: f64,
    pub patients: Vec<Patient>,
}

fn default_start() -> String {
    "2026-01-01T00:00:00Z".to_owned()
}

fn default_interval() -> f64 {
    5.0
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Patient {
    pub device_id: String,
    #[serde(default)]
    pub baseline: Baseline,
    #[serde(default)]
    pub events: Vec<EventSpec>,
}

/// A patient's resting values; defaults are a healthy adult.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Baseline {
    pub heart_rate: f64,
    pub body_temp: f64,
    pub spo2: f64,
    pub respiratory_rate: f64,
    pub systolic_bp: f64,
    pub signal_strength: f64,
    pub battery_level: f64,
    /// Normal battery use, percent per hour.
    pub battery_drain_pct_per_h: f64,
    /// Amplitude of the daily rhythm of heart rate (bpm); temperature follows at 0.06 °C/bpm.
    pub circadian_hr: f64,
    /// Standard deviation of the heart-rate noise (bpm); other vitals scale with it.
    pub noise: f64,
}

impl Default for Baseline {
    fn default() -> Baseline {
        Baseline {
            heart_rate: 72.0,
            body_temp: 36.8,
            spo2: 98.0,
            respiratory_rate: 15.0,
            systolic_bp: 122.0,
            signal_strength: -60.0,
            battery_level: 100.0,
            battery_drain_pct_per_h: 0.5,
            circadian_hr: 4.0,
            noise: 1.5,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// Temperature rises by `magnitude` °C (default 2.6), pulse +10 bpm per °C.
    Fever,
    /// Pulse rises to `magnitude` bpm (default 140).
    Tachycardia,
    /// Pulse falls to `magnitude` bpm (default 38).
    Bradycardia,
    /// SpO2 falls to `magnitude` % (default 88).
    Hypoxia,
    /// Pulse, temperature and respiration rise, SpO2 and blood pressure fall, over `ramp_s`
    /// (default 4 h), scaled by `magnitude` (default 1).
    Sepsis,
    /// The temperature probe reads the room (`magnitude` °C, default 22).
    ProbeOff,
    /// The pulse sensor reads 0.
    HrArtefact,
    /// The device sends nothing.
    Dropout,
    /// The battery drains at `magnitude` % per hour (default 20).
    BatteryDrain,
    /// The radio link weakens: signal strength falls to `magnitude` dBm (default −105), ramp 1 min.
    WeakSignal,
    /// The device's clock is off by `magnitude` seconds (default +120; negative: behind). A
    /// transport behaviour: the vitals are unchanged, the payload's timestamp is shifted.
    ClockSkew,
    /// Each message is sent again (same `seq`) with probability `magnitude` (default 0.5), as
    /// a QoS 1 redelivery would be.
    Duplicates,
    /// The device loses its connection but keeps measuring; what it buffered is sent in a
    /// burst when the connection comes back (at the event's end).
    Outage,
}

impl EventKind {
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Fever => "fever",
            EventKind::Tachycardia => "tachycardia",
            EventKind::Bradycardia => "bradycardia",
            EventKind::Hypoxia => "hypoxia",
            EventKind::Sepsis => "sepsis",
            EventKind::ProbeOff => "probe_off",
            EventKind::HrArtefact => "hr_artefact",
            EventKind::Dropout => "dropout",
            EventKind::BatteryDrain => "battery_drain",
            EventKind::WeakSignal => "weak_signal",
            EventKind::ClockSkew => "clock_skew",
            EventKind::Duplicates => "duplicates",
            EventKind::Outage => "outage",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventSpec {
    pub kind: EventKind,
    /// Seconds from the scenario start.
    pub onset_s: u64,
    pub end_s: u64,
    /// Results are grouped by label (default: the kind).
    #[serde(default)]
    pub label: Option<String>,
    /// Whether missing it could harm the patient (default: by kind and magnitude, see
    /// [`generate`]).
    #[serde(default)]
    pub critical: Option<bool>,
    #[serde(default)]
    pub magnitude: Option<f64>,
    /// Seconds from onset to full effect (default: by kind).
    #[serde(default)]
    pub ramp_s: Option<u64>,
}

/// A scenario turned into readings and ground truth.
#[derive(Clone, Debug)]
pub struct Generated {
    /// In time order (all devices interleaved); `received_at` equals `timestamp`.
    pub readings: Vec<Reading>,
    pub events: Vec<LabelledEvent>,
    pub patient_days: f64,
    pub start: Timestamp,
    pub end: Timestamp,
}

#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum ScenarioError {
    #[error("scenario {scenario:?}: {problem}")]
    Invalid { scenario: String, problem: String },
}

/// The noise-free vitals of one patient at one time.
#[derive(Clone, Copy, Debug)]
struct Vitals {
    heart_rate: f64,
    body_temp: f64,
    spo2: f64,
    respiratory_rate: f64,
    systolic_bp: f64,
    signal_strength: f64,
    battery: f64,
    probe_off: Option<f64>,
    hr_artefact: bool,
    dropout: bool,
    /// Measured but held back until the connection returns (an `outage` event).
    outage: bool,
}

fn ramp(spec: &EventSpec, t: f64, default_ramp_s: u64) -> f64 {
    let onset = spec.onset_s as f64;
    if t < onset || t >= spec.end_s as f64 {
        return 0.0;
    }
    let ramp = spec.ramp_s.unwrap_or(default_ramp_s) as f64;
    if ramp <= 0.0 {
        1.0
    } else {
        ((t - onset) / ramp).min(1.0)
    }
}

fn vitals_at(patient: &Patient, t: f64, time_of_day_s: f64) -> Vitals {
    let base = &patient.baseline;
    // Lowest around 04:00, highest around 16:00.
    let circadian = (2.0 * std::f64::consts::PI * (time_of_day_s - 10.0 * 3600.0) / 86_400.0).sin();
    let mut v = Vitals {
        heart_rate: base.heart_rate + base.circadian_hr * circadian,
        body_temp: base.body_temp + 0.06 * base.circadian_hr * circadian,
        spo2: base.spo2,
        respiratory_rate: base.respiratory_rate,
        systolic_bp: base.systolic_bp,
        signal_strength: base.signal_strength,
        battery: (base.battery_level - base.battery_drain_pct_per_h * t / 3600.0).max(0.0),
        probe_off: None,
        hr_artefact: false,
        dropout: false,
        outage: false,
    };
    for spec in &patient.events {
        match spec.kind {
            EventKind::Fever => {
                let delta = spec.magnitude.unwrap_or(2.6) * ramp(spec, t, 900);
                v.body_temp += delta;
                v.heart_rate += 10.0 * delta;
            }
            EventKind::Tachycardia => {
                let target = spec.magnitude.unwrap_or(140.0);
                v.heart_rate += (target - v.heart_rate) * ramp(spec, t, 60);
            }
            EventKind::Bradycardia => {
                let target = spec.magnitude.unwrap_or(38.0);
                v.heart_rate += (target - v.heart_rate) * ramp(spec, t, 60);
            }
            EventKind::Hypoxia => {
                let target = spec.magnitude.unwrap_or(88.0);
                v.spo2 += (target - v.spo2) * ramp(spec, t, 120);
            }
            EventKind::Sepsis => {
                let k = spec.magnitude.unwrap_or(1.0) * ramp(spec, t, 4 * 3600);
                v.heart_rate += 50.0 * k;
                v.body_temp += 2.4 * k;
                v.respiratory_rate += 12.0 * k;
                v.spo2 -= 6.0 * k;
                v.systolic_bp -= 32.0 * k;
            }
            EventKind::ProbeOff => {
                if ramp(spec, t, 0) > 0.0 {
                    v.probe_off = Some(spec.magnitude.unwrap_or(22.0));
                }
            }
            EventKind::HrArtefact => v.hr_artefact |= ramp(spec, t, 0) > 0.0,
            EventKind::Dropout => v.dropout |= ramp(spec, t, 0) > 0.0,
            EventKind::BatteryDrain => {
                let onset = spec.onset_s as f64;
                let until = t.min(spec.end_s as f64);
                if until > onset {
                    v.battery -= spec.magnitude.unwrap_or(20.0) * (until - onset) / 3600.0;
                }
                v.battery = v.battery.max(0.0);
            }
            EventKind::WeakSignal => {
                let target = spec.magnitude.unwrap_or(-105.0);
                v.signal_strength += (target - v.signal_strength) * ramp(spec, t, 60);
            }
            EventKind::Outage => v.outage |= ramp(spec, t, 0) > 0.0,
            // Transport behaviours, applied by [`stream`]; the vitals are unchanged.
            EventKind::ClockSkew | EventKind::Duplicates => {}
        }
    }
    v
}

/// The event's clinical criterion on noise-free vitals, its default criticality, and the
/// alert conditions that count as detecting it (empty: any alert on the device).
/// When an event owes an alert, whether it is critical by default, and which conditions
/// detect it.
struct Criterion {
    met: fn(&Vitals) -> bool,
    critical: bool,
    conditions: Vec<AlertCondition>,
}

fn criterion(spec: &EventSpec) -> Criterion {
    use AlertCondition::*;
    let m = spec.magnitude;
    match spec.kind {
        // A fever NEWS2 scores (≥ 38.1 °C); critical when it reaches 39.1 (scores 2).
        EventKind::Fever => Criterion {
            met: |v| v.body_temp >= 38.1,
            critical: m.unwrap_or(2.6) + 36.8 >= 39.1,
            conditions: vec![TemperatureHigh, HeartRateHigh, News2],
        },
        EventKind::Tachycardia => {
            let target = m.unwrap_or(140.0);
            let critical = target >= 131.0;
            Criterion {
                met: if critical {
                    |v: &Vitals| v.heart_rate >= 131.0
                } else {
                    |v: &Vitals| v.heart_rate >= 111.0
                },
                critical,
                conditions: vec![HeartRateHigh, News2],
            }
        }
        EventKind::Bradycardia => {
            let target = m.unwrap_or(38.0);
            let critical = target <= 40.0;
            Criterion {
                met: if critical {
                    |v: &Vitals| v.heart_rate <= 40.0
                } else {
                    |v: &Vitals| v.heart_rate <= 50.0
                },
                critical,
                conditions: vec![HeartRateLow, News2],
            }
        }
        EventKind::Hypoxia => {
            let critical = m.unwrap_or(88.0) <= 91.0;
            Criterion {
                met: if critical {
                    |v: &Vitals| v.spo2 <= 91.0
                } else {
                    |v: &Vitals| v.spo2 <= 95.0
                },
                critical,
                conditions: vec![Spo2Low, News2],
            }
        }
        // Urgent response: NEWS2 ≥ 5 on the noise-free vitals.
        EventKind::Sepsis => Criterion {
            met: |v| {
                let inputs = news2::Inputs {
                    respiration_rate_per_min: Some(v.respiratory_rate),
                    spo2_pct: Some(v.spo2),
                    on_oxygen: Some(false),
                    systolic_bp_mmhg: Some(v.systolic_bp),
                    pulse_bpm: Some(v.heart_rate),
                    consciousness: Some(Consciousness::Alert),
                    temperature_c: Some(v.body_temp),
                };
                news2::score(&inputs, Spo2Scale::Scale1).total >= 5
            },
            critical: true,
            conditions: Vec::new(),
        },
        EventKind::ProbeOff => Criterion {
            met: |v| v.probe_off.is_some(),
            critical: true,
            conditions: vec![SensorFault],
        },
        EventKind::HrArtefact => Criterion {
            met: |v| v.hr_artefact,
            critical: true,
            conditions: vec![SensorFault],
        },
        EventKind::Dropout => Criterion {
            met: |v| v.dropout,
            critical: true,
            conditions: vec![DeviceOffline],
        },
        EventKind::BatteryDrain => Criterion {
            met: |v| v.battery < 10.0,
            critical: false,
            conditions: vec![LowBattery],
        },
        // The default rule table's weak-signal limit (below −100 dBm).
        EventKind::WeakSignal => Criterion {
            met: |v| v.signal_strength < -100.0,
            critical: false,
            conditions: vec![WeakSignal],
        },
        EventKind::Outage => Criterion {
            met: |v| v.outage,
            critical: true,
            conditions: vec![DeviceOffline],
        },
        // Transport behaviours owe no alert: never met, so labelled as not critical.
        EventKind::ClockSkew | EventKind::Duplicates => Criterion {
            met: |_| false,
            critical: false,
            conditions: Vec::new(),
        },
    }
}

fn gaussian(rng: &mut ChaCha8Rng) -> f64 {
    let u1: f64 = 1.0 - rng.random::<f64>();
    let u2: f64 = rng.random();
    (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
}

fn round_to(value: f64, step: f64) -> f64 {
    (value / step).round() * step
}

/// Checks `scenario` and returns its start and device ids.
fn validate(scenario: &Scenario) -> Result<(Timestamp, Vec<DeviceId>), ScenarioError> {
    let invalid = |problem: String| ScenarioError::Invalid {
        scenario: scenario.name.clone(),
        problem,
    };
    let start = Timestamp::parse_text(&scenario.start).ok_or_else(|| {
        invalid(format!(
            "start {:?} is not an RFC 3339 time",
            scenario.start
        ))
    })?;
    if scenario.duration_s == 0 || scenario.duration_s > MAX_DURATION_S {
        return Err(invalid(format!(
            "duration_s must be between 1 and {MAX_DURATION_S}"
        )));
    }
    if !(scenario.interval_s.is_finite() && scenario.interval_s >= MIN_INTERVAL_S) {
        return Err(invalid(format!(
            "interval_s must be at least {MIN_INTERVAL_S}"
        )));
    }
    if scenario.patients.is_empty() {
        return Err(invalid("at least one patient is needed".to_owned()));
    }
    let mut devices = Vec::with_capacity(scenario.patients.len());
    for patient in &scenario.patients {
        let device = DeviceId::parse(&patient.device_id, 64)
            .map_err(|_| invalid(format!("invalid device_id {:?}", patient.device_id)))?;
        if devices.contains(&device) {
            return Err(invalid(format!(
                "device_id {:?} repeats",
                patient.device_id
            )));
        }
        for spec in &patient.events {
            if spec.end_s <= spec.onset_s || spec.end_s > scenario.duration_s {
                return Err(invalid(format!(
                    "{} event of {}: need onset_s < end_s <= duration_s",
                    spec.kind.as_str(),
                    patient.device_id
                )));
            }
            if spec.magnitude.is_some_and(|m| !m.is_finite()) {
                return Err(invalid("magnitude must be a finite number".to_owned()));
            }
        }
        devices.push(device);
    }
    Ok((start, devices))
}

/// The time of day, in seconds, at `start`.
fn time_of_day_s(start: Timestamp) -> f64 {
    start.micros().rem_euclid(86_400_000_000) as f64 / 1e6
}

/// One reading from noise-free vitals and the six noise draws of its tick.
fn build_reading(
    patient: &Patient,
    device: &DeviceId,
    v: &Vitals,
    at: Timestamp,
    tick: u64,
    draws: &[f64; 6],
) -> Reading {
    let noise = patient.baseline.noise;
    let mut reading = Reading::empty(device.clone(), at);
    reading.heart_rate_bpm = Some(if v.hr_artefact {
        0.0
    } else {
        round_to((v.heart_rate + noise * draws[0]).max(20.0), 1.0)
    });
    reading.body_temp_c = Some(match v.probe_off {
        Some(room) => round_to(room + 0.2 * draws[1], 0.1),
        None => round_to(v.body_temp + 0.04 * noise * draws[1], 0.1),
    });
    reading.spo2_pct = Some(round_to((v.spo2 + 0.3 * noise * draws[2]).min(100.0), 1.0));
    reading.respiratory_rate_per_min = Some(round_to(
        (v.respiratory_rate + 0.5 * noise * draws[3]).max(4.0),
        1.0,
    ));
    reading.systolic_bp_mmhg = Some(round_to(v.systolic_bp + 2.0 * noise * draws[4], 1.0));
    reading.signal_strength_dbm = Some(round_to(v.signal_strength + 1.5 * noise * draws[5], 1.0));
    reading.battery_pct = Some(round_to(v.battery, 0.1));
    reading.on_oxygen = Some(false);
    reading.consciousness = Some(Consciousness::Alert);
    reading.seq = Some(tick);
    reading
}

/// Generates the readings and the labelled events of `scenario`.
///
/// Transport behaviours (`clock_skew`, `duplicates`, the late burst after an `outage`) are
/// left out: these readings are what the patient's vitals were, each once, at its time; an
/// outage drops its readings like a dropout. [`stream`] adds the transport behaviours.
pub fn generate(scenario: &Scenario) -> Result<Generated, ScenarioError> {
    let (start, devices) = validate(scenario)?;
    let start_tod = time_of_day_s(start);
    let mut rng = ChaCha8Rng::seed_from_u64(scenario.seed);
    let n_ticks = (scenario.duration_s as f64 / scenario.interval_s).floor() as u64;
    let mut readings = Vec::new();
    // Per event: the first tick meeting its criterion.
    let mut onsets: Vec<Vec<Option<f64>>> = scenario
        .patients
        .iter()
        .map(|p| vec![None; p.events.len()])
        .collect();
    for tick in 0..=n_ticks {
        let t = tick as f64 * scenario.interval_s;
        let at = start.saturating_add_micros((t * 1e6).round() as i64);
        for (idx, patient) in scenario.patients.iter().enumerate() {
            let v = vitals_at(patient, t, start_tod + t);
            for (event_idx, spec) in patient.events.iter().enumerate() {
                let in_window = t >= spec.onset_s as f64 && t < spec.end_s as f64;
                if in_window && onsets[idx][event_idx].is_none() && (criterion(spec).met)(&v) {
                    onsets[idx][event_idx] = Some(t);
                }
            }
            // Noise is drawn even for dropped readings, so a dropout does not shift the rest.
            let draws: [f64; 6] = std::array::from_fn(|_| gaussian(&mut rng));
            if v.dropout || v.outage {
                continue;
            }
            readings.push(build_reading(patient, &devices[idx], &v, at, tick, &draws));
        }
    }
    let mut events = Vec::new();
    for (idx, patient) in scenario.patients.iter().enumerate() {
        for (event_idx, spec) in patient.events.iter().enumerate() {
            let Criterion {
                critical: default_critical,
                conditions,
                ..
            } = criterion(spec);
            // An event whose criterion is never met (too mild to owe an alert) is labelled
            // from its start and counted as not critical.
            let onset_t = onsets[idx][event_idx];
            let critical = spec.critical.unwrap_or(default_critical) && onset_t.is_some();
            let onset_t = onset_t.unwrap_or(spec.onset_s as f64);
            events.push(LabelledEvent {
                device_id: devices[idx].clone(),
                kind: spec
                    .label
                    .clone()
                    .unwrap_or_else(|| spec.kind.as_str().to_owned()),
                onset: start.saturating_add_micros((onset_t * 1e6).round() as i64),
                end: start.saturating_add_micros(spec.end_s as i64 * 1_000_000),
                critical,
                conditions,
            });
        }
    }
    let end = start.saturating_add_micros(scenario.duration_s as i64 * 1_000_000);
    Ok(Generated {
        readings,
        events,
        patient_days: scenario.patients.len() as f64 * scenario.duration_s as f64 / 86_400.0,
        start,
        end,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_vitals_are_the_ones_readings_carry() {
        let spec = EventSpec {
            kind: EventKind::Sepsis,
            onset_s: 600,
            end_s: 3000,
            label: None,
            critical: None,
            magnitude: None,
            ramp_s: None,
        };
        let generated = generate(&scenario(vec![spec])).expect("valid");
        assert!(!generated.readings.is_empty());
        for reading in &generated.readings {
            for vital in VitalKey::ALL {
                assert_eq!(
                    reading.has_vital(vital),
                    GENERATED_VITALS.contains(&vital),
                    "{vital:?}"
                );
            }
        }
        let mut in_table_order = GENERATED_VITALS;
        in_table_order.sort();
        assert_eq!(in_table_order, GENERATED_VITALS);
    }

    fn scenario(events: Vec<EventSpec>) -> Scenario {
        Scenario {
            name: "test".to_owned(),
            description: String::new(),
            seed: 7,
            start: default_start(),
            duration_s: 3600,
            interval_s: 5.0,
            patients: vec![Patient {
                device_id: "p-1".to_owned(),
                baseline: Baseline::default(),
                events,
            }],
        }
    }

    fn event(kind: EventKind, onset_s: u64, end_s: u64) -> EventSpec {
        EventSpec {
            kind,
            onset_s,
            end_s,
            label: None,
            critical: None,
            magnitude: None,
            ramp_s: None,
        }
    }

    #[test]
    fn same_seed_same_readings_and_healthy_stays_in_range() {
        let healthy = scenario(Vec::new());
        let a = generate(&healthy).expect("valid");
        let b = generate(&healthy).expect("valid");
        assert_eq!(a.readings, b.readings);
        assert_eq!(a.readings.len(), 721);
        assert!(a.events.is_empty());
        for reading in &a.readings {
            let hr = reading.heart_rate_bpm.expect("always sent");
            let temp = reading.body_temp_c.expect("always sent");
            assert!((60.0..=100.0).contains(&hr), "{hr}");
            assert!((36.0..=37.5).contains(&temp), "{temp}");
        }
        let mut other = healthy.clone();
        other.seed = 8;
        assert_ne!(generate(&other).expect("valid").readings, a.readings);
    }

    #[test]
    fn events_shape_the_vitals_and_label_their_onset() {
        let generated = generate(&scenario(vec![
            event(EventKind::Tachycardia, 600, 1200),
            event(EventKind::Dropout, 1800, 2100),
            event(EventKind::HrArtefact, 2400, 2460),
        ]))
        .expect("valid");
        let at = |secs: i64| {
            generated
                .readings
                .iter()
                .find(|r| r.timestamp == Timestamp::from_secs(1_767_225_600 + secs))
        };
        assert!(at(900).and_then(|r| r.heart_rate_bpm).expect("present") > 125.0);
        assert!(at(1900).is_none(), "dropped");
        assert_eq!(at(2420).and_then(|r| r.heart_rate_bpm), Some(0.0));
        let tachy = &generated.events[0];
        assert!(tachy.critical);
        let onset = tachy
            .onset
            .saturating_sub(Timestamp::from_secs(1_767_225_600))
            / 1_000_000;
        // The 60 s ramp from ~72 to 140 bpm crosses 131 about 52 s in.
        assert!((640..=660).contains(&onset), "{onset}");
        assert_eq!(
            generated.events[1].conditions,
            [AlertCondition::DeviceOffline]
        );
    }

    #[test]
    fn invalid_scenarios_say_why() {
        let err = generate(&scenario(vec![event(EventKind::Fever, 600, 500)])).unwrap_err();
        assert!(err.to_string().contains("onset_s < end_s"), "{err}");
        let mut bad = scenario(Vec::new());
        bad.interval_s = 0.0;
        assert!(
            generate(&bad)
                .unwrap_err()
                .to_string()
                .contains("interval_s")
        );
    }
}
