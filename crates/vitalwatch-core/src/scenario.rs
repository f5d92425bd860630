//! Scenarios: a deterministic generator of labelled vital-sign streams, for evaluating alerting
//! (`vitalwatch evaluate`) and for simulators.
//!
//! A [`Scenario`] names patients, each with a baseline, per-patient settings (SpO2 scale,
//! thresholds, oxygen) and events (fever, tachycardia, bradycardia, hypoxia, respiration and
//! blood-pressure changes, hypothermia, arrhythmia, new confusion, a sepsis-like deterioration
//! over hours, sensor artefacts, benign exercise, dropouts, battery drain). [`generate`] turns it into readings every `interval_s` with circadian
//! variation and Gaussian noise, plus the ground truth as [`LabelledEvent`]s. The same scenario
//! and seed always give the same readings. The format is documented in `docs/scenarios.md`.
//!
//! An event's labelled onset is when its noise-free signal first meets the event's clinical
//! criterion (e.g. pulse ≥ 131 for a critical tachycardia, NEWS2 ≥ 5 for sepsis), not when the
//! physiology starts to drift: that is the moment an alert is owed. Pure: no clock, no files.

use crate::alerting::LabelledEvent;
use crate::news2::Spo2Scale;
use crate::rules::PatientThresholds;
use crate::telemetry::{Consciousness, DeviceId, Reading, Timestamp, VitalKey};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

mod physiology;
#[cfg(test)]
mod split_alerts;
mod stream;
use physiology::{Criterion, Vitals, criterion, vitals_at};
pub use stream::{Stream, Transmission, stream};

/// The longest scenario: 31 days, to keep a run bounded.
pub const MAX_DURATION_S: u64 = 31 * 86_400;
/// The fastest reading interval.
pub const MIN_INTERVAL_S: f64 = 0.5;

/// The vitals every generated reading carries, in table order (diastolic BP is not modelled).
/// The simulator's CSV has a column for each numeric one.
pub const GENERATED_VITALS: [VitalKey; 10] = [
    VitalKey::HeartRate,
    VitalKey::BodyTemp,
    VitalKey::SignalStrength,
    VitalKey::BatteryLevel,
    VitalKey::Spo2,
    VitalKey::RespiratoryRate,
    VitalKey::SystolicBp,
    VitalKey::DiastolicBp,
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
    /// Simulated acknowledgement: an alert still asking for attention this many seconds after
    /// it was raised (or reopened) is acknowledged by a nurse; `None`: nobody acknowledges.
    #[serde(default)]
    pub acknowledge_after_s: Option<u64>,
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
    /// The NEWS2 SpO2 scale a clinician chose for this patient (Scale 2: hypercapnic
    /// respiratory failure with a prescribed 88–92 % target).
    #[serde(default)]
    pub spo2_scale: Spo2Scale,
    /// The patient is on supplemental oxygen throughout (NEWS2 scores it 2).
    #[serde(default)]
    pub on_oxygen: bool,
    /// Per-patient thresholds, validated as the service validates them.
    #[serde(default)]
    pub thresholds: Option<PatientThresholds>,
    /// Blood pressure is measured only every this many seconds (an intermittent cuff; the
    /// first reading of each period carries it); default: every reading.
    #[serde(default)]
    pub bp_every_s: Option<u64>,
    /// ACVPU and air/oxygen are recorded only every this many seconds (a nurse's observation
    /// round); default: every reading.
    #[serde(default)]
    pub acvpu_every_s: Option<u64>,
    #[serde(default)]
    pub events: Vec<EventSpec>,
}

impl Patient {
    /// A patient with the default baseline and settings and no events.
    pub fn new(device_id: impl Into<String>) -> Patient {
        Patient {
            device_id: device_id.into(),
            baseline: Baseline::default(),
            spo2_scale: Spo2Scale::Scale1,
            on_oxygen: false,
            thresholds: None,
            bp_every_s: None,
            acvpu_every_s: None,
            events: Vec::new(),
        }
    }
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
    /// Respiration rises to `magnitude` /min (default 28), ramp 10 min.
    Tachypnoea,
    /// Respiration falls to `magnitude` /min (default 7), ramp 5 min.
    Bradypnoea,
    /// Systolic BP falls to `magnitude` mmHg (default 85), ramp 10 min.
    Hypotension,
    /// Systolic BP rises to `magnitude` mmHg (default 200), diastolic half as much, ramp 10 min.
    Hypertension,
    /// Temperature falls to `magnitude` °C (default 34.5), ramp 1 h.
    Hypothermia,
    /// An irregular rhythm (atrial fibrillation): pulse to `magnitude` bpm (default 118) with
    /// 12 bpm of beat-to-beat variability, ramp 30 s.
    Arrhythmia,
    /// New confusion, or the ACVPU `level` ("C", "V", "P" or "U"; default "C").
    Confusion,
    /// Supplemental oxygen during the event (NEWS2 scores 2); owes no alert by itself.
    Oxygen,
    /// A benign confounder: exercise (a walk on the ward) raises the pulse to `magnitude` bpm
    /// (default 110), respiration +4 /min and systolic +10 mmHg, ramp 2 min. Owes no alert.
    Exercise,
    /// A single-reading artefact: the pulse reads `magnitude` bpm (default 220) while the event
    /// lasts (`end_s = onset_s + 1`: one reading). Owes no alert; a HIGH alarm is a false one.
    HrSpike,
    /// A single-reading artefact: SpO2 reads `magnitude` % (default 60), as `hr_spike`.
    Spo2Dip,
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
            EventKind::Tachypnoea => "tachypnoea",
            EventKind::Bradypnoea => "bradypnoea",
            EventKind::Hypotension => "hypotension",
            EventKind::Hypertension => "hypertension",
            EventKind::Hypothermia => "hypothermia",
            EventKind::Arrhythmia => "arrhythmia",
            EventKind::Confusion => "confusion",
            EventKind::Oxygen => "oxygen",
            EventKind::Exercise => "exercise",
            EventKind::HrSpike => "hr_spike",
            EventKind::Spo2Dip => "spo2_dip",
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
    /// A gradual end: seconds before `end_s` over which the effect fades (default 0: abrupt).
    #[serde(default)]
    pub ramp_down_s: Option<u64>,
    /// For `confusion`: the ACVPU letter ("C", "V", "P" or "U").
    #[serde(default)]
    pub level: Option<String>,
}

impl EventSpec {
    /// An event with every optional field at its default.
    pub fn new(kind: EventKind, onset_s: u64, end_s: u64) -> EventSpec {
        EventSpec {
            kind,
            onset_s,
            end_s,
            label: None,
            critical: None,
            magnitude: None,
            ramp_s: None,
            ramp_down_s: None,
            level: None,
        }
    }
}

/// What the replay needs to know of a patient beyond the readings.
#[derive(Clone, Debug, PartialEq)]
pub struct PatientSettings {
    pub device_id: DeviceId,
    pub spo2_scale: Spo2Scale,
    pub thresholds: Option<PatientThresholds>,
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
    /// Per patient, in scenario order.
    pub patients: Vec<PatientSettings>,
    /// The scenario's simulated acknowledgement delay.
    pub acknowledge_after_s: Option<u64>,
}

#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum ScenarioError {
    #[error("scenario {scenario:?}: {problem}")]
    Invalid { scenario: String, problem: String },
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
            let level_ok = spec
                .level
                .as_deref()
                .is_none_or(|level| Consciousness::from_letter(level).is_some());
            if !level_ok {
                return Err(invalid(format!(
                    "{} event of {}: level must be one of A, C, V, P, U",
                    spec.kind.as_str(),
                    patient.device_id
                )));
            }
        }
        if let Some(thresholds) = &patient.thresholds {
            thresholds
                .apply(&crate::rules::RuleSet::default())
                .map_err(|err| invalid(format!("thresholds of {}: {err}", patient.device_id)))?;
        }
        devices.push(device);
    }
    Ok((start, devices))
}

/// The time of day, in seconds, at `start`.
fn time_of_day_s(start: Timestamp) -> f64 {
    start.micros().rem_euclid(86_400_000_000) as f64 / 1e6
}

/// Whether a parameter measured every `every_s` is measured at the tick `t` seconds from the
/// start (ticks `interval_s` apart): on the first tick of each period.
fn measured(every_s: Option<u64>, t: f64, interval_s: f64) -> bool {
    match every_s {
        None | Some(0) => true,
        Some(every) => {
            let every = every as f64;
            t < interval_s / 2.0 || (t / every).floor() != ((t - interval_s) / every).floor()
        }
    }
}

/// One reading from noise-free vitals and the six noise draws of its tick, `t` seconds from
/// the start (ticks `interval_s` apart). The draws are the same whether or not an
/// intermittent parameter is measured, so the other vitals' noise does not change.
#[allow(clippy::too_many_arguments)]
fn build_reading(
    patient: &Patient,
    device: &DeviceId,
    v: &Vitals,
    at: Timestamp,
    tick: u64,
    draws: &[f64; 6],
    t: f64,
    interval_s: f64,
) -> Reading {
    let noise = patient.baseline.noise;
    let mut reading = Reading::empty(device.clone(), at);
    reading.heart_rate_bpm = Some(match v.spike_hr {
        _ if v.hr_artefact => 0.0,
        Some(spike) => spike,
        None => round_to(
            (v.heart_rate + (noise + v.irregular_bpm) * draws[0]).max(20.0),
            1.0,
        ),
    });
    reading.body_temp_c = Some(match v.probe_off {
        Some(room) => round_to(room + 0.2 * draws[1], 0.1),
        None => round_to(v.body_temp + 0.04 * noise * draws[1], 0.1),
    });
    reading.spo2_pct = Some(match v.spike_spo2 {
        Some(spike) => spike,
        None => round_to((v.spo2 + 0.3 * noise * draws[2]).min(100.0), 1.0),
    });
    reading.respiratory_rate_per_min = Some(round_to(
        (v.respiratory_rate + 0.5 * noise * draws[3]).max(4.0),
        1.0,
    ));
    reading.systolic_bp_mmhg = Some(round_to(v.systolic_bp + 2.0 * noise * draws[4], 1.0));
    // The cuff measures both pressures together: the same draw, scaled.
    reading.diastolic_bp_mmhg = Some(round_to(v.diastolic_bp + 1.3 * noise * draws[4], 1.0));
    reading.signal_strength_dbm = Some(round_to(v.signal_strength + 1.5 * noise * draws[5], 1.0));
    reading.battery_pct = Some(round_to(v.battery, 0.1));
    reading.on_oxygen = Some(v.on_oxygen);
    reading.consciousness = Some(v.consciousness);
    if !measured(patient.bp_every_s, t, interval_s) {
        reading.systolic_bp_mmhg = None;
        reading.diastolic_bp_mmhg = None;
    }
    if !measured(patient.acvpu_every_s, t, interval_s) {
        reading.on_oxygen = None;
        reading.consciousness = None;
    }
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
                if in_window
                    && onsets[idx][event_idx].is_none()
                    && (criterion(spec, patient.spo2_scale).met)(&v)
                {
                    onsets[idx][event_idx] = Some(t);
                }
            }
            // Noise is drawn even for dropped readings, so a dropout does not shift the rest.
            let draws: [f64; 6] = std::array::from_fn(|_| gaussian(&mut rng));
            if v.dropout || v.outage {
                continue;
            }
            readings.push(build_reading(
                patient,
                &devices[idx],
                &v,
                at,
                tick,
                &draws,
                t,
                scenario.interval_s,
            ));
        }
    }
    let mut events = Vec::new();
    for (idx, patient) in scenario.patients.iter().enumerate() {
        for (event_idx, spec) in patient.events.iter().enumerate() {
            let Criterion {
                critical: default_critical,
                conditions,
                owes_alert,
                artefact,
                ..
            } = criterion(spec, patient.spo2_scale);
            // An event whose criterion is never met (too mild to owe an alert) is labelled
            // from its start, owes nothing and is not critical; calling it critical is an error.
            let onset_t = onsets[idx][event_idx];
            if spec.critical == Some(true) && onset_t.is_none() {
                return Err(ScenarioError::Invalid {
                    scenario: scenario.name.clone(),
                    problem: format!(
                        "{} event of {} is marked critical, but its criterion is never met",
                        spec.kind.as_str(),
                        patient.device_id
                    ),
                });
            }
            let critical = spec.critical.unwrap_or(default_critical) && onset_t.is_some();
            let owes_alert = owes_alert && onset_t.is_some();
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
                owes_alert,
                artefact,
                began: Some(start.saturating_add_micros(spec.onset_s as i64 * 1_000_000)),
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
        patients: scenario
            .patients
            .iter()
            .zip(&devices)
            .map(|(patient, device_id)| PatientSettings {
                device_id: device_id.clone(),
                spo2_scale: patient.spo2_scale,
                thresholds: patient.thresholds,
            })
            .collect(),
        acknowledge_after_s: scenario.acknowledge_after_s,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alerting::AlertCondition;

    #[test]
    fn generated_vitals_are_the_ones_readings_carry() {
        let spec = EventSpec::new(EventKind::Sepsis, 600, 3000);
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
            acknowledge_after_s: None,
            patients: vec![Patient {
                events,
                ..Patient::new("p-1")
            }],
        }
    }

    fn event(kind: EventKind, onset_s: u64, end_s: u64) -> EventSpec {
        EventSpec::new(kind, onset_s, end_s)
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
        // A critical label on an event whose criterion is never met (pulse to 100 never
        // reaches 111) is a mistake in the file, not a silent "not critical".
        let mut mild = event(EventKind::Tachycardia, 600, 1200);
        mild.magnitude = Some(100.0);
        mild.critical = Some(true);
        let err = generate(&scenario(vec![mild])).unwrap_err();
        assert!(err.to_string().contains("criterion is never met"), "{err}");
        let mut confused = event(EventKind::Confusion, 600, 1200);
        confused.level = Some("X".to_owned());
        let err = generate(&scenario(vec![confused])).unwrap_err();
        assert!(err.to_string().contains("level"), "{err}");
        let mut lax = scenario(Vec::new());
        lax.patients[0].thresholds = Some(crate::rules::PatientThresholds {
            heart_rate_max: Some(140.0),
            ..Default::default()
        });
        let err = generate(&lax).unwrap_err();
        assert!(err.to_string().contains("heart_rate_max"), "{err}");
    }

    /// The labelled event of a one-event scenario.
    fn labelled(spec: EventSpec) -> LabelledEvent {
        generate(&scenario(vec![spec])).expect("valid").events[0].clone()
    }

    #[test]
    fn what_each_kind_owes() {
        use crate::alerting::AlertCondition::*;
        // (kind, magnitude, critical, owes an alert, artefact, first detecting condition)
        type Case = (
            EventKind,
            Option<f64>,
            bool,
            bool,
            bool,
            Option<AlertCondition>,
        );
        let cases: &[Case] = &[
            (
                EventKind::Tachypnoea,
                None,
                true,
                true,
                false,
                Some(RespiratoryRateHigh),
            ),
            (
                EventKind::Tachypnoea,
                Some(22.0),
                false,
                true,
                false,
                Some(RespiratoryRateHigh),
            ),
            (
                EventKind::Bradypnoea,
                None,
                true,
                true,
                false,
                Some(RespiratoryRateLow),
            ),
            (
                EventKind::Hypotension,
                None,
                true,
                true,
                false,
                Some(SystolicBpLow),
            ),
            (
                EventKind::Hypertension,
                None,
                true,
                true,
                false,
                Some(BloodPressureHigh),
            ),
            (
                EventKind::Hypothermia,
                None,
                true,
                true,
                false,
                Some(TemperatureLow),
            ),
            (
                EventKind::Arrhythmia,
                None,
                false,
                true,
                false,
                Some(HeartRateHigh),
            ),
            (
                EventKind::Confusion,
                None,
                true,
                true,
                false,
                Some(ConsciousnessChanged),
            ),
            (EventKind::Sepsis, Some(1.0), true, true, false, Some(News2)),
            // Transport and benign events are detected by nothing and owe nothing.
            (EventKind::Exercise, None, false, false, false, None),
            (EventKind::Oxygen, None, false, false, false, None),
            (EventKind::ClockSkew, None, false, false, false, None),
            (EventKind::Duplicates, None, false, false, false, None),
            // A single-reading artefact owes nothing; a SENSOR_FAULT is a fair answer.
            (
                EventKind::HrSpike,
                None,
                false,
                false,
                true,
                Some(SensorFault),
            ),
            // Too mild to meet its criterion: owes nothing.
            (
                EventKind::Hypotension,
                Some(115.0),
                false,
                false,
                false,
                Some(SystolicBpLow),
            ),
        ];
        for &(kind, magnitude, critical, owes, artefact, first) in cases {
            let mut spec = event(kind, 600, 3000);
            spec.magnitude = magnitude;
            spec.ramp_s = Some(600);
            let event = labelled(spec);
            let got = (
                event.critical,
                event.owes_alert,
                event.artefact,
                event.conditions.first().copied(),
            );
            assert_eq!(
                got,
                (critical, owes, artefact, first),
                "{kind:?} {magnitude:?}"
            );
        }
    }

    #[test]
    fn new_kinds_shape_the_readings() {
        let at = |generated: &Generated, secs: i64| {
            generated
                .readings
                .iter()
                .find(|r| r.timestamp == Timestamp::from_secs(1_767_225_600 + secs))
                .cloned()
                .expect("a reading at that time")
        };
        // One reading of 220 bpm, its neighbours normal.
        let mut spike = event(EventKind::HrSpike, 600, 601);
        spike.magnitude = Some(220.0);
        let generated = generate(&scenario(vec![spike])).expect("valid");
        assert_eq!(at(&generated, 600).heart_rate_bpm, Some(220.0));
        for secs in [595, 605] {
            assert!(at(&generated, secs).heart_rate_bpm.expect("sent") < 100.0);
        }
        // New confusion at "V", on oxygen, and a gradual end of hypertension.
        let mut confused = event(EventKind::Confusion, 600, 1200);
        confused.level = Some("V".to_owned());
        let mut hypertension = event(EventKind::Hypertension, 600, 3000);
        hypertension.ramp_s = Some(60);
        hypertension.ramp_down_s = Some(1200);
        let generated = generate(&scenario(vec![
            confused,
            event(EventKind::Oxygen, 600, 1200),
            hypertension,
        ]))
        .expect("valid");
        let during = at(&generated, 900);
        assert_eq!(during.consciousness, Some(Consciousness::Voice));
        assert_eq!(during.on_oxygen, Some(true));
        assert!(during.systolic_bp_mmhg.expect("sent") > 190.0);
        assert!(during.diastolic_bp_mmhg.expect("sent") > 100.0);
        let fading = at(&generated, 2400).systolic_bp_mmhg.expect("sent");
        assert!((140.0..170.0).contains(&fading), "halfway down: {fading}");
        let after = at(&generated, 1500);
        assert_eq!(after.consciousness, Some(Consciousness::Alert));
        assert_eq!(after.on_oxygen, Some(false));
        // Arrhythmia: irregular, so neighbouring readings differ far more than sinus noise.
        let generated =
            generate(&scenario(vec![event(EventKind::Arrhythmia, 600, 3000)])).expect("valid");
        let jumps: Vec<f64> = (700..1700)
            .step_by(5)
            .map(|secs| {
                let a = at(&generated, secs).heart_rate_bpm.expect("sent");
                let b = at(&generated, secs + 5).heart_rate_bpm.expect("sent");
                (a - b).abs()
            })
            .collect();
        let mean_jump = jumps.iter().sum::<f64>() / jumps.len() as f64;
        assert!(mean_jump > 8.0, "{mean_jump}");
    }

    #[test]
    fn scale_2_patients_are_labelled_on_their_scale() {
        // A COPD patient at 89 % on Scale 2 scores 0; their exacerbation to 83 % scores 3.
        let mut copd = scenario(vec![EventSpec {
            magnitude: Some(82.0),
            ..event(EventKind::Hypoxia, 600, 3000)
        }]);
        copd.patients[0].spo2_scale = Spo2Scale::Scale2;
        copd.patients[0].baseline.spo2 = 89.0;
        let generated = generate(&copd).expect("valid");
        let event = &generated.events[0];
        assert!(event.critical);
        assert_eq!(generated.patients[0].spo2_scale, Spo2Scale::Scale2);
        let onset_s = event.onset.saturating_sub(generated.start) / 1_000_000;
        // 89 → 82 over 120 s crosses 83 after about 103 s.
        assert!((690..=720).contains(&onset_s), "{onset_s}");
    }

    #[test]
    fn an_intermittent_cuff_and_observation_round() {
        let mut ward = scenario(vec![]);
        ward.duration_s = 7200;
        ward.patients[0].bp_every_s = Some(900);
        ward.patients[0].acvpu_every_s = Some(3600);
        let generated = generate(&ward).expect("valid");
        let with_bp: Vec<u64> = generated
            .readings
            .iter()
            .filter(|r| r.systolic_bp_mmhg.is_some())
            .map(|r| (r.timestamp.saturating_sub(generated.start) / 1_000_000) as u64)
            .collect();
        assert_eq!(with_bp, (0..=7200).step_by(900).collect::<Vec<u64>>());
        let rounds = generated
            .readings
            .iter()
            .filter(|r| r.consciousness.is_some() && r.on_oxygen.is_some())
            .count();
        assert_eq!(rounds, 3, "at 0, 1 h and 2 h");
        // The other vitals' noise is the same as with a cuff on every reading.
        let mut every = ward.clone();
        every.patients[0].bp_every_s = None;
        every.patients[0].acvpu_every_s = None;
        let continuous = generate(&every).expect("valid");
        assert!(
            generated
                .readings
                .iter()
                .zip(&continuous.readings)
                .all(|(a, b)| a.heart_rate_bpm == b.heart_rate_bpm && a.spo2_pct == b.spo2_pct)
        );
    }
}
