//! Turns one reading, its findings and its NEWS2 into one [`Observation`] per alert condition.
//!
//! This is where SENSOR_FAULT keeps impossible values out of physiological alerts: a faulted
//! field yields `Unknown` for its conditions (no raise, no clear), and NEWS2 is ignored for a
//! reading with any faulted field. Everything else is grading: the NEWS2 subscore of the
//! offending value picks the priority (see `config`).

use super::config::ArtefactConfig;
use super::{AlertCondition, AlertConfig, Priority};
use crate::news2::{self, ClinicalRisk, News2, Spo2Scale};
use crate::rules::{AnomalyType, Finding, PatientThresholds};
use crate::telemetry::{Field, FieldSet, Reading, Timestamp, VitalKey};

/// SpO2 Scale 1: 96 % and above scores 0 (RCP 2017 Chart 1).
const SPO2_SCALE_1_NORMAL_PCT: f64 = 96.0;
/// SpO2 Scale 2: 88 % and above scores 0 on air (RCP 2017 Chart 1).
const SPO2_SCALE_2_NORMAL_PCT: f64 = 88.0;

/// Respiration 12–20 /min scores 0 in NEWS2 (RCP 2017 Chart 1): above or below is a condition.
const RR_NORMAL_MAX: f64 = 20.0;
const RR_NORMAL_MIN: f64 = 12.0;
/// Systolic 111–219 mmHg scores 0 in NEWS2 (RCP 2017 Chart 1); ≤ 110 is low.
const SBP_NORMAL_MIN: f64 = 111.0;
/// Systolic ≥ 220 scores 3 in NEWS2 (RCP 2017 Chart 1): HIGH whatever the hypertension settings.
const SBP_NEWS2_3_MIN: f64 = 220.0;

/// BLOOD_PRESSURE_HIGH: systolic ≥ 220 (NEWS2 3) is HIGH; the configured severe-hypertension
/// limits (systolic ≥ 180 or diastolic ≥ 120 by default, or above the patient's own
/// `systolic_bp_max`) are the configured priority.
fn blood_pressure_high(
    sbp: Option<f64>,
    dbp: Option<f64>,
    patient: &PatientThresholds,
    config: &AlertConfig,
) -> Observation {
    if sbp.is_none() && dbp.is_none() {
        return Observation::Unknown;
    }
    let limits = &config.hypertension;
    let fixed = config.condition(AlertCondition::BloodPressureHigh).priority;
    let present = |priority, value, threshold| Observation::Present {
        priority,
        immediate: false,
        mild: false,
        value: Some(value),
        threshold: Some(threshold),
    };
    match (sbp, dbp) {
        (Some(s), _) if s > SBP_NORMAL_MIN && news2::systolic_bp_subscore(s) == 3 => {
            present(config.grading.subscore_3, s, SBP_NEWS2_3_MIN)
        }
        (Some(s), _) if patient.systolic_bp_max.is_some_and(|max| s > max) => present(
            fixed.or(limits.priority),
            s,
            patient.systolic_bp_max.unwrap_or(s),
        ),
        (Some(s), _) if patient.systolic_bp_max.is_none() && s >= limits.systolic_at_or_above => {
            present(fixed.or(limits.priority), s, limits.systolic_at_or_above)
        }
        (_, Some(d)) if d >= limits.diastolic_at_or_above => {
            present(fixed.or(limits.priority), d, limits.diastolic_at_or_above)
        }
        // Systolic and diastolic share no scale: clear on absence (after the hold).
        _ => Observation::Absent { value: None },
    }
}

/// What one reading says about one condition.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(super) enum Observation {
    /// The condition holds. `priority` is `None` when grading says "no alert" (the alert, if
    /// any, neither folds nor clears).
    Present {
        priority: Option<Priority>,
        /// A HIGH value beyond the "cannot be a sensor glitch" bounds that another vital of
        /// the same reading corroborates: raised without the HIGH persistence delay.
        immediate: bool,
        /// Outside the range but scoring 0 in NEWS2: the slower `mild` onset applies.
        mild: bool,
        value: Option<f64>,
        threshold: Option<f64>,
    },
    /// The condition does not hold. With a `value`, it only counts as cleared once the value
    /// is `clear_margin` inside the alert's threshold (hysteresis).
    Absent { value: Option<f64> },
    /// No evidence either way: the value is missing or untrusted.
    Unknown,
}

/// Which way a condition's value must move to clear.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Side {
    /// Clears at or below `threshold - margin`.
    Above,
    /// Clears at or above `threshold + margin`.
    Below,
    /// Clears as soon as it is absent.
    Flag,
}

pub(super) fn side(condition: AlertCondition) -> Side {
    match condition {
        AlertCondition::HeartRateHigh
        | AlertCondition::TemperatureHigh
        | AlertCondition::RespiratoryRateHigh
        | AlertCondition::BloodPressureHigh => Side::Above,
        AlertCondition::HeartRateLow
        | AlertCondition::TemperatureLow
        | AlertCondition::Spo2Low
        | AlertCondition::RespiratoryRateLow
        | AlertCondition::SystolicBpLow
        | AlertCondition::WeakSignal
        | AlertCondition::LowBattery => Side::Below,
        _ => Side::Flag,
    }
}

/// Observations of every enabled reading-driven condition (all but DEVICE_OFFLINE), into
/// `out` (cleared first).
pub(super) fn observe(
    reading: &Reading,
    findings: &[Finding],
    news2: Option<&News2>,
    previous: &Previous,
    patient: &PatientThresholds,
    config: &AlertConfig,
    out: &mut Vec<(AlertCondition, Observation)>,
) {
    out.clear();
    let scale = patient.scale();
    let mut faulted = findings.iter().fold(FieldSet::EMPTY, |mut all, finding| {
        for field in finding.faulted_fields().iter() {
            all.insert(field);
        }
        all
    });
    // An implausible jump is an artefact: untrusted like a faulted value, and technical.
    let jump = jumped(reading, previous, &config.artefact);
    for (field, _, _) in &jump {
        faulted.insert(*field);
    }
    // A temperature probe sliding off: technical, not hypothermia.
    let probe_off = (!faulted.contains(Field::Vital(VitalKey::BodyTemp)))
        .then(|| probe_off(reading, previous, scale, &config.artefact))
        .flatten();
    if probe_off.is_some() {
        faulted.insert(Field::Vital(VitalKey::BodyTemp));
    }
    let finding = |kind: AnomalyType| findings.iter().find(|f| f.kind == kind);
    let graded = |condition: AlertCondition, subscore: u8| {
        let fixed = config.condition(condition).priority;
        let priority = fixed.or_else(|| config.grading.for_subscore(subscore));
        (priority, subscore == 0 && fixed.is_none())
    };

    // Heart rate and temperature: the seed's findings, graded by NEWS2 bands.
    let ranges = [
        (
            Field::Vital(VitalKey::HeartRate),
            reading.heart_rate_bpm,
            AnomalyType::OutOfRangeHr,
            AlertCondition::HeartRateHigh,
            AlertCondition::HeartRateLow,
            news2::pulse_subscore as fn(f64) -> u8,
        ),
        (
            Field::Vital(VitalKey::BodyTemp),
            reading.body_temp_c,
            AnomalyType::OutOfRangeTemp,
            AlertCondition::TemperatureHigh,
            AlertCondition::TemperatureLow,
            news2::temperature_subscore,
        ),
    ];
    for (field, value, kind, high, low, subscore) in ranges {
        let (high_obs, low_obs) = match value {
            Some(_) if faulted.contains(field) => (Observation::Unknown, Observation::Unknown),
            None => (Observation::Unknown, Observation::Unknown),
            Some(value) => {
                let absent = Observation::Absent { value: Some(value) };
                match finding(kind) {
                    Some(f) => {
                        let threshold = f.threshold.unwrap_or(value);
                        let is_high = value > threshold;
                        let condition = if is_high { high } else { low };
                        let (priority, mild) = graded(condition, subscore(value));
                        let present = Observation::Present {
                            priority,
                            immediate: false,
                            mild,
                            value: Some(value),
                            threshold: Some(threshold),
                        };
                        if is_high {
                            (present, absent)
                        } else {
                            (absent, present)
                        }
                    }
                    None => (absent, absent),
                }
            }
        };
        out.push((high, high_obs));
        out.push((low, low_obs));
    }

    // SpO2: no seed rule; below the patient's target (by default where the NEWS2 scale the
    // patient is scored on starts scoring), graded on that scale.
    let spo2 = match reading.spo2_pct {
        Some(_) if faulted.contains(Field::Vital(VitalKey::Spo2)) => Observation::Unknown,
        None => Observation::Unknown,
        Some(value) => {
            let normal = patient.spo2_min.unwrap_or(match scale {
                Spo2Scale::Scale1 => SPO2_SCALE_1_NORMAL_PCT,
                Spo2Scale::Scale2 => SPO2_SCALE_2_NORMAL_PCT,
            });
            // On air, so only the low-side bands count here (high SpO2 on oxygen is NEWS2's).
            let subscore = news2::spo2_subscore(value, scale, false);
            if value.round() < normal {
                let (priority, mild) = graded(AlertCondition::Spo2Low, subscore);
                Observation::Present {
                    priority,
                    immediate: false,
                    mild,
                    value: Some(value),
                    threshold: Some(normal),
                }
            } else {
                Observation::Absent { value: Some(value) }
            }
        }
    };
    out.push((AlertCondition::Spo2Low, spo2));

    // Respiration, blood pressure and consciousness: no seed rule; each NEWS2 band that
    // scores is a condition of its own, so a value scoring 3 raises HIGH at once instead of
    // waiting for the NEWS2 aggregate (issue 18, point 2).
    let value_of = |field: Field, value: Option<f64>| match value {
        Some(_) if faulted.contains(field) => None,
        other => other,
    };
    // A value beyond the patient's limit (by default where NEWS2 starts scoring) is the
    // condition, graded by its NEWS2 subscore (0, inside a tighter patient limit: "mild").
    let banded = |condition: AlertCondition,
                  value: Option<f64>,
                  beyond: &dyn Fn(f64) -> bool,
                  subscore: fn(f64) -> u8,
                  limit: f64| match value {
        None => Observation::Unknown,
        Some(value) if beyond(value) => {
            let (priority, mild) = graded(condition, subscore(value));
            Observation::Present {
                priority,
                immediate: false,
                mild,
                value: Some(value),
                threshold: Some(limit),
            }
        }
        Some(value) => Observation::Absent { value: Some(value) },
    };
    let rr = value_of(
        Field::Vital(VitalKey::RespiratoryRate),
        reading.respiratory_rate_per_min,
    );
    let rr_max = patient.respiratory_rate_max.unwrap_or(RR_NORMAL_MAX);
    let rr_min = patient.respiratory_rate_min.unwrap_or(RR_NORMAL_MIN);
    out.push((
        AlertCondition::RespiratoryRateHigh,
        banded(
            AlertCondition::RespiratoryRateHigh,
            rr,
            &|v| v > rr_max,
            news2::respiration_rate_subscore,
            rr_max,
        ),
    ));
    out.push((
        AlertCondition::RespiratoryRateLow,
        banded(
            AlertCondition::RespiratoryRateLow,
            rr,
            &|v| v < rr_min,
            news2::respiration_rate_subscore,
            rr_min,
        ),
    ));
    let sbp = value_of(Field::Vital(VitalKey::SystolicBp), reading.systolic_bp_mmhg);
    let sbp_min = patient.systolic_bp_min.unwrap_or(SBP_NORMAL_MIN);
    out.push((
        AlertCondition::SystolicBpLow,
        banded(
            AlertCondition::SystolicBpLow,
            sbp,
            &|v| v < sbp_min,
            news2::systolic_bp_subscore,
            sbp_min,
        ),
    ));
    let dbp = value_of(
        Field::Vital(VitalKey::DiastolicBp),
        reading.diastolic_bp_mmhg,
    );
    out.push((
        AlertCondition::BloodPressureHigh,
        blood_pressure_high(sbp, dbp, patient, config),
    ));
    let consciousness = match reading.consciousness {
        Some(_) if faulted.contains(Field::Vital(VitalKey::Consciousness)) => Observation::Unknown,
        None => Observation::Unknown,
        Some(level) => match news2::consciousness_subscore(level) {
            0 => Observation::Absent { value: None },
            subscore => Observation::Present {
                priority: graded(AlertCondition::ConsciousnessChanged, subscore).0,
                immediate: false,
                mild: false,
                value: None,
                threshold: None,
            },
        },
    };
    out.push((AlertCondition::ConsciousnessChanged, consciousness));

    // NEWS2: untrusted when any value of the reading faulted.
    let news2_obs = match news2 {
        Some(_) if !faulted.is_empty() => Observation::Unknown,
        None => Observation::Unknown,
        Some(score) => {
            let priority = match score.risk {
                ClinicalRisk::Low => None,
                ClinicalRisk::LowMedium => config.news2.low_medium,
                ClinicalRisk::Medium => config.news2.medium,
                ClinicalRisk::High => config.news2.high,
            };
            if score.risk == ClinicalRisk::Low && score.partial {
                // A partial low score is only a lower bound: parameters that went missing (an
                // hourly cuff, a 4-hourly ACVPU) are not normal. It neither raises nor clears
                // (issue 18, point 5): only a complete observation set scoring lower clears.
                Observation::Unknown
            } else if score.risk == ClinicalRisk::Low {
                Observation::Absent { value: None }
            } else {
                Observation::Present {
                    priority,
                    immediate: false,
                    mild: false,
                    value: Some(f64::from(score.total)),
                    threshold: None,
                }
            }
        }
    };
    out.push((AlertCondition::News2, news2_obs));

    // Artefacts: implausible jumps (technical; repeated ones raise, see `config`).
    let artefact = match jump.first() {
        Some((_, value, from)) => Observation::Present {
            priority: config.condition(AlertCondition::Artefact).priority,
            immediate: false,
            mild: false,
            value: Some(*value),
            threshold: Some(*from),
        },
        None => Observation::Absent { value: None },
    };
    out.push((AlertCondition::Artefact, artefact));

    // Technical conditions and the model: flags from findings.
    let fixed = |condition: AlertCondition, f: &Finding| Observation::Present {
        priority: config.condition(condition).priority,
        immediate: false,
        mild: false,
        value: f.value,
        threshold: f.threshold,
    };
    let flags = [
        (AlertCondition::SensorFault, AnomalyType::SensorFault, None),
        (
            AlertCondition::WeakSignal,
            AnomalyType::WeakSignal,
            Some(reading.signal_strength_dbm),
        ),
        (
            AlertCondition::LowBattery,
            AnomalyType::LowBattery,
            Some(reading.battery_pct),
        ),
        (AlertCondition::MlAnomaly, AnomalyType::MlAnomaly, None),
        (
            AlertCondition::UnknownDevice,
            AnomalyType::UnknownDevice,
            None,
        ),
    ];
    for (condition, kind, measured) in flags {
        let obs = match (finding(kind), measured) {
            (Some(f), _) => fixed(condition, f),
            (None, _) if condition == AlertCondition::SensorFault && probe_off.is_some() => {
                Observation::Present {
                    priority: config.condition(condition).priority,
                    immediate: false,
                    mild: false,
                    value: reading.body_temp_c,
                    threshold: probe_off,
                }
            }
            // A flag condition with no value to measure is absent when not found.
            (None, None) => Observation::Absent { value: None },
            (None, Some(Some(value))) => Observation::Absent { value: Some(value) },
            (None, Some(None)) => Observation::Unknown,
        };
        out.push((condition, obs));
    }

    for (condition, observation) in out.iter_mut() {
        if let Observation::Present {
            priority: Some(Priority::High),
            immediate,
            value: Some(value),
            ..
        } = observation
        {
            *immediate = beyond_glitch(*condition, *value, &config.artefact)
                && corroborated(reading, *condition, faulted, scale);
        }
    }
    out.retain(|(condition, _)| config.condition(*condition).enabled);
}

/// The device's previous pulse and SpO2 (by reading time), for the jump check.
#[derive(Clone, Copy, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub(super) struct Previous {
    heart_rate: Option<(Timestamp, f64)>,
    spo2: Option<(Timestamp, f64)>,
    /// Trusted temperatures of the last few minutes, oldest first, for the probe-off rate.
    temperatures: [Option<(Timestamp, f64)>; TEMPERATURE_HISTORY],
}

/// How many past temperatures are kept (one per 30 s at most, so about 4 minutes).
const TEMPERATURE_HISTORY: usize = 8;

impl Previous {
    /// Remembers `reading`'s pulse and SpO2 unless an older reading arrives late; values a
    /// SENSOR_FAULT finding blamed (HR 0) are no baseline for a jump.
    pub(super) fn remember(&mut self, reading: &Reading, findings: &[Finding]) {
        let at = reading.timestamp;
        let faulted = |field: Field| findings.iter().any(|f| f.faulted_fields().contains(field));
        for (field, slot, value) in [
            (
                Field::Vital(VitalKey::HeartRate),
                &mut self.heart_rate,
                reading.heart_rate_bpm,
            ),
            (
                Field::Vital(VitalKey::Spo2),
                &mut self.spo2,
                reading.spo2_pct,
            ),
        ] {
            if let Some(value) = value
                && !faulted(field)
                && slot.is_none_or(|(held, _)| held <= at)
            {
                *slot = Some((at, value));
            }
        }
        if let Some(temp) = reading.body_temp_c
            && !faulted(Field::Vital(VitalKey::BodyTemp))
        {
            let newest = self.temperatures.iter().flatten().map(|(t, _)| *t).max();
            // One sample per 30 s is enough to see a fall over minutes.
            if newest.is_none_or(|newest| at.saturating_sub(newest) >= 30_000_000) {
                self.temperatures.rotate_left(1);
                self.temperatures[TEMPERATURE_HISTORY - 1] = Some((at, temp));
            }
        }
    }

    /// The fastest fall (°C per minute) from a kept temperature at least 60 s old to `now`.
    fn temperature_fall_c_per_min(&self, at: Timestamp, temp: f64) -> f64 {
        self.temperatures
            .iter()
            .flatten()
            .filter_map(|(then, before)| {
                let minutes = at.saturating_sub(*then) as f64 / 60e6;
                (1.0..=5.0)
                    .contains(&minutes)
                    .then(|| (before - temp) / minutes)
            })
            .fold(0.0, f64::max)
    }
}

/// The fields of `reading` that moved further from the previous reading than physiology
/// allows within seconds, with the new and the previous value.
fn jumped(reading: &Reading, previous: &Previous, rule: &ArtefactConfig) -> Vec<(Field, f64, f64)> {
    let within = i64::try_from(rule.jump_within_s)
        .unwrap_or(i64::MAX)
        .saturating_mul(1_000_000);
    let recent = |slot: Option<(Timestamp, f64)>| {
        slot.filter(|(at, _)| (0..=within).contains(&reading.timestamp.saturating_sub(*at)))
            .map(|(_, value)| value)
    };
    let mut out = Vec::new();
    if let (Some(now), Some(before)) = (reading.heart_rate_bpm, recent(previous.heart_rate))
        && (now - before).abs() >= rule.heart_rate_jump_bpm
    {
        out.push((Field::Vital(VitalKey::HeartRate), now, before));
    }
    if let (Some(now), Some(before)) = (reading.spo2_pct, recent(previous.spo2))
        && before - now >= rule.spo2_drop_pct
    {
        out.push((Field::Vital(VitalKey::Spo2), now, before));
    }
    out
}

/// A temperature probe that is off or sliding off (issue 18, point 4): the temperature falls
/// faster than a body cools (`probe_fall_c_per_min` over a minute or more), or is below
/// `probe_off_below_c` while the pulse is normal and no other vital scores in NEWS2 (a body
/// that cold is bradycardic or otherwise unwell). Returns the limit crossed.
fn probe_off(
    reading: &Reading,
    previous: &Previous,
    scale: Spo2Scale,
    rule: &ArtefactConfig,
) -> Option<f64> {
    let temp = reading.body_temp_c?;
    if previous.temperature_fall_c_per_min(reading.timestamp, temp) >= rule.probe_fall_c_per_min {
        return Some(rule.probe_fall_c_per_min);
    }
    let pulse_normal = reading
        .heart_rate_bpm
        .is_some_and(|hr| news2::pulse_subscore(hr) == 0);
    let no_other_sign = [
        reading
            .respiratory_rate_per_min
            .map(news2::respiration_rate_subscore),
        reading
            .spo2_pct
            .map(|v| news2::spo2_subscore(v, scale, false)),
        reading.systolic_bp_mmhg.map(news2::systolic_bp_subscore),
        reading.consciousness.map(news2::consciousness_subscore),
    ]
    .into_iter()
    .all(|subscore| subscore.is_none_or(|s| s == 0));
    (temp < rule.probe_off_below_c && pulse_normal && no_other_sign)
        .then_some(rule.probe_off_below_c)
}

/// Whether a HIGH value is beyond what a sensor glitch plausibly produces.
fn beyond_glitch(condition: AlertCondition, value: f64, rule: &ArtefactConfig) -> bool {
    match condition {
        AlertCondition::HeartRateHigh => value >= rule.immediate_heart_rate_at_or_above,
        AlertCondition::HeartRateLow => value <= rule.immediate_heart_rate_at_or_below,
        AlertCondition::Spo2Low => value <= rule.immediate_spo2_at_or_below,
        AlertCondition::RespiratoryRateHigh => value >= rule.immediate_respiratory_rate_at_or_above,
        AlertCondition::RespiratoryRateLow => value <= rule.immediate_respiratory_rate_at_or_below,
        AlertCondition::SystolicBpLow => value <= rule.immediate_systolic_at_or_below,
        _ => false,
    }
}

/// Whether another trusted vital of the same reading is abnormal (scores in NEWS2): a second
/// sensor agreeing that something is wrong with the patient.
fn corroborated(
    reading: &Reading,
    condition: AlertCondition,
    untrusted: FieldSet,
    scale: Spo2Scale,
) -> bool {
    let own = match condition {
        AlertCondition::HeartRateHigh | AlertCondition::HeartRateLow => {
            Field::Vital(VitalKey::HeartRate)
        }
        AlertCondition::Spo2Low => Field::Vital(VitalKey::Spo2),
        AlertCondition::RespiratoryRateHigh | AlertCondition::RespiratoryRateLow => {
            Field::Vital(VitalKey::RespiratoryRate)
        }
        AlertCondition::SystolicBpLow => Field::Vital(VitalKey::SystolicBp),
        _ => return false,
    };
    let others: [(Field, Option<u8>); 5] = [
        (
            Field::Vital(VitalKey::HeartRate),
            reading.heart_rate_bpm.map(news2::pulse_subscore),
        ),
        (
            Field::Vital(VitalKey::Spo2),
            reading
                .spo2_pct
                .map(|v| news2::spo2_subscore(v, scale, false)),
        ),
        (
            Field::Vital(VitalKey::RespiratoryRate),
            reading
                .respiratory_rate_per_min
                .map(news2::respiration_rate_subscore),
        ),
        (
            Field::Vital(VitalKey::SystolicBp),
            reading.systolic_bp_mmhg.map(news2::systolic_bp_subscore),
        ),
        (
            Field::Vital(VitalKey::Consciousness),
            reading.consciousness.map(news2::consciousness_subscore),
        ),
    ];
    others.into_iter().any(|(field, subscore)| {
        field != own && !untrusted.contains(field) && subscore.is_some_and(|s| s > 0)
    })
}
