//! SENSOR_FAULT: values impossible for a living patient, which point at the sensor, not at the
//! patient.
//!
//! A wearable reads a heart rate of 0 when its probe is off the skin and values near 300 or
//! more on motion artefacts; a temperature probe in the air reads room temperature; a real body
//! temperature does not move 3 °C within seconds. The defaults below are the issue "Alerts
//! clinicians can trust" (HR 0 or ≥ 300, temperature < 25 °C or > 45 °C, a jump of ≥ 3 °C
//! within 10 s). HR 0 is also what asystole would read, but a pulse sensor cannot tell the two
//! apart; alerting raises SENSOR_FAULT as a technical alert (prompt, medium priority) instead
//! of a physiological one.
//!
//! The seed's OUT_OF_RANGE_* findings are still recorded for such readings (the anomalies table
//! stays seed-compatible); alerting uses [`super::Finding::faulted_fields`] to keep faulted
//! values out of physiological alerts and NEWS2. This module decides, it does not store.

use super::{AnomalyType, Finding, Severity};
use crate::telemetry::{Field, FieldSet, Reading, Timestamp, VitalKey};
use serde::{Deserialize, Serialize};

/// Limits beyond which a value is a sensor fault. `Default` is the table.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SensorFaultRule {
    /// A heart rate at or below this is a detached or failed sensor (issue: HR 0).
    pub heart_rate_at_or_below: f64,
    /// A heart rate at or above this is an artefact (issue: HR ≥ 300).
    pub heart_rate_at_or_above: f64,
    /// A body temperature below this is a probe reading the air (issue: < 25 °C).
    pub body_temp_below: f64,
    /// A body temperature above this is a probe fault (issue: > 45 °C).
    pub body_temp_above: f64,
    /// A change of at least this many °C ...
    pub body_temp_jump_c: f64,
    /// ... within this many seconds of the previous reading is a probe moved or failing.
    pub body_temp_jump_within_s: u64,
    /// The seed-style severity of the finding (technical: WARNING).
    pub severity: Severity,
}

impl Default for SensorFaultRule {
    fn default() -> SensorFaultRule {
        SensorFaultRule {
            heart_rate_at_or_below: 0.0,
            heart_rate_at_or_above: 300.0,
            body_temp_below: 25.0,
            body_temp_above: 45.0,
            body_temp_jump_c: 3.0,
            body_temp_jump_within_s: 10,
            severity: Severity::Warning,
        }
    }
}

impl SensorFaultRule {
    /// Checks that the limits are finite and ordered; names the offending key.
    pub fn validate(&self) -> Result<(), String> {
        let finite = [
            ("heart_rate_at_or_below", self.heart_rate_at_or_below),
            ("heart_rate_at_or_above", self.heart_rate_at_or_above),
            ("body_temp_below", self.body_temp_below),
            ("body_temp_above", self.body_temp_above),
            ("body_temp_jump_c", self.body_temp_jump_c),
        ];
        for (name, value) in finite {
            if !value.is_finite() {
                return Err(format!("rules.sensor_fault.{name} must be a finite number"));
            }
        }
        if self.heart_rate_at_or_below >= self.heart_rate_at_or_above {
            return Err(
                "rules.sensor_fault: heart_rate_at_or_below must be below heart_rate_at_or_above"
                    .to_owned(),
            );
        }
        if self.body_temp_below >= self.body_temp_above {
            return Err(
                "rules.sensor_fault: body_temp_below must be below body_temp_above".to_owned(),
            );
        }
        if self.body_temp_jump_c <= 0.0 {
            return Err("rules.sensor_fault.body_temp_jump_c must be positive".to_owned());
        }
        Ok(())
    }
}

/// The device's previous body temperature, for the jump check. The caller passes the one from
/// the device's previous reading (by timestamp) that had a temperature.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PreviousTemperature {
    pub body_temp_c: f64,
    pub at: Timestamp,
}

/// Appends one SENSOR_FAULT finding per faulted field of `reading` to `out`.
pub fn check_sensor_faults(
    reading: &Reading,
    previous: Option<PreviousTemperature>,
    rule: &SensorFaultRule,
    out: &mut Vec<Finding>,
) {
    if let Some(hr) = reading.heart_rate_bpm {
        if hr <= rule.heart_rate_at_or_below {
            out.push(fault(
                Field::Vital(VitalKey::HeartRate),
                hr,
                rule.heart_rate_at_or_below,
                "no pulse detected: sensor detached?",
                rule,
            ));
        } else if hr >= rule.heart_rate_at_or_above {
            out.push(fault(
                Field::Vital(VitalKey::HeartRate),
                hr,
                rule.heart_rate_at_or_above,
                "impossible heart rate: motion artefact?",
                rule,
            ));
        }
    }
    if let Some(temp) = reading.body_temp_c {
        let jump = previous.filter(|prev| {
            let within_micros = i64::try_from(rule.body_temp_jump_within_s)
                .unwrap_or(i64::MAX)
                .saturating_mul(1_000_000);
            let elapsed = reading.timestamp.saturating_sub(prev.at);
            (0..=within_micros).contains(&elapsed)
                && (temp - prev.body_temp_c).abs() >= rule.body_temp_jump_c
        });
        if temp < rule.body_temp_below {
            out.push(fault(
                Field::Vital(VitalKey::BodyTemp),
                temp,
                rule.body_temp_below,
                "temperature probe reads the air: probe off?",
                rule,
            ));
        } else if temp > rule.body_temp_above {
            out.push(fault(
                Field::Vital(VitalKey::BodyTemp),
                temp,
                rule.body_temp_above,
                "impossible body temperature: probe fault?",
                rule,
            ));
        } else if let Some(prev) = jump {
            out.push(fault(
                Field::Vital(VitalKey::BodyTemp),
                temp,
                prev.body_temp_c,
                "body temperature jumped within seconds: probe moved?",
                rule,
            ));
        }
    }
}

fn fault(field: Field, value: f64, threshold: f64, why: &str, rule: &SensorFaultRule) -> Finding {
    let mut faulted = FieldSet::EMPTY;
    faulted.insert(field);
    Finding {
        kind: AnomalyType::SensorFault,
        severity: rule.severity,
        value: Some(value),
        threshold: Some(threshold),
        missing: faulted,
        explanation: Some(format!("{} {value}: {why}", field.as_str())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::telemetry::DeviceId;

    const T0: i64 = 1_705_401_045;

    /// Checks a reading (HR, temperature) after an optional previous temperature `secs_before`
    /// seconds earlier; `expected` lists the faulted fields.
    fn check(hr: Option<f64>, temp: Option<f64>, previous: Option<(f64, i64)>, expected: &[Field]) {
        let mut reading = Reading::empty(
            DeviceId::parse("dev-1", 64).expect("valid id"),
            Timestamp::from_secs(T0),
        );
        reading.heart_rate_bpm = hr;
        reading.body_temp_c = temp;
        let previous = previous.map(|(body_temp_c, secs_before)| PreviousTemperature {
            body_temp_c,
            at: Timestamp::from_secs(T0 - secs_before),
        });
        let mut out = Vec::new();
        check_sensor_faults(&reading, previous, &SensorFaultRule::default(), &mut out);
        let fields: Vec<Field> = out
            .iter()
            .flat_map(|finding| finding.faulted_fields().iter())
            .collect();
        assert_eq!(
            fields, expected,
            "hr {hr:?} temp {temp:?} prev {previous:?}"
        );
        for finding in &out {
            assert_eq!(finding.kind, AnomalyType::SensorFault);
            assert_eq!(finding.severity, Severity::Warning);
            assert!(
                finding
                    .details()
                    .contains(finding.faulted_fields().names().as_str())
            );
        }
    }

    #[test]
    fn faults() {
        const HR: Field = Field::Vital(VitalKey::HeartRate);
        const T: Field = Field::Vital(VitalKey::BodyTemp);
        check(Some(72.0), Some(36.8), None, &[]);
        check(Some(0.0), Some(36.8), None, &[HR]);
        check(Some(0.1), Some(36.8), None, &[]);
        check(Some(299.9), Some(36.8), None, &[]);
        check(Some(300.0), Some(36.8), None, &[HR]);
        check(Some(72.0), Some(15.0), None, &[T]);
        check(Some(72.0), Some(24.9), None, &[T]);
        check(Some(72.0), Some(25.0), None, &[]);
        check(Some(72.0), Some(45.0), None, &[]);
        check(Some(72.0), Some(45.1), None, &[T]);
        check(Some(0.0), Some(50.0), None, &[HR, T]);
        check(None, None, None, &[]);
        // Jumps: at least 3 °C within 10 s of the previous reading.
        check(Some(72.0), Some(39.8), Some((36.8, 3)), &[T]);
        check(Some(72.0), Some(33.8), Some((36.8, 3)), &[T]);
        check(Some(72.0), Some(39.7), Some((36.8, 3)), &[]);
        check(Some(72.0), Some(39.8), Some((36.8, 10)), &[T]);
        check(Some(72.0), Some(39.8), Some((36.8, 11)), &[]);
        // A previous reading from the future (reordered delivery) is no evidence of a jump.
        check(Some(72.0), Some(39.8), Some((36.8, -2)), &[]);
    }

    #[test]
    fn validation_names_the_key() {
        let mut rule = SensorFaultRule::default();
        assert_eq!(rule.validate(), Ok(()));
        rule.body_temp_below = 50.0;
        assert!(rule.validate().unwrap_err().contains("body_temp_below"));
        let rule = SensorFaultRule {
            body_temp_jump_c: f64::NAN,
            ..SensorFaultRule::default()
        };
        assert!(rule.validate().unwrap_err().contains("body_temp_jump_c"));
    }
}
