//! Medical ranges, anomaly types and severities: the seed's rule table, made configurable.
//!
//! Defaults are the seed's (its README, "Anomaly Types"): heart rate outside 60–100 bpm and
//! temperature outside 36.0–37.5 °C are CRITICAL, signal below −100 dBm and battery below 10 %
//! are WARNING, an incomplete payload is WARNING, an unregistered device is CRITICAL. Unlike the
//! seed, every finding is kept: a reading with two problems yields two findings.
//!
//! This module decides, it does not store or notify.

use crate::telemetry::{FieldSet, Reading};
use serde::{Deserialize, Serialize};
use std::fmt;

mod overrides;
mod sensor;

pub use overrides::{PatientThresholds, ThresholdError};
pub use sensor::{PreviousTemperature, SensorFaultRule, check_sensor_faults};

/// The seed's anomaly types, spelled as the seed spells them (they are stored and served).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum AnomalyType {
    OutOfRangeHr,
    OutOfRangeTemp,
    WeakSignal,
    LowBattery,
    MlAnomaly,
    MissingFields,
    UnknownDevice,
    /// A value impossible for a living patient: a technical problem, not a patient one.
    SensorFault,
}

impl AnomalyType {
    pub const ALL: [AnomalyType; 8] = [
        AnomalyType::OutOfRangeHr,
        AnomalyType::OutOfRangeTemp,
        AnomalyType::WeakSignal,
        AnomalyType::LowBattery,
        AnomalyType::MlAnomaly,
        AnomalyType::MissingFields,
        AnomalyType::UnknownDevice,
        AnomalyType::SensorFault,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            AnomalyType::OutOfRangeHr => "OUT_OF_RANGE_HR",
            AnomalyType::OutOfRangeTemp => "OUT_OF_RANGE_TEMP",
            AnomalyType::WeakSignal => "WEAK_SIGNAL",
            AnomalyType::LowBattery => "LOW_BATTERY",
            AnomalyType::MlAnomaly => "ML_ANOMALY",
            AnomalyType::MissingFields => "MISSING_FIELDS",
            AnomalyType::UnknownDevice => "UNKNOWN_DEVICE",
            AnomalyType::SensorFault => "SENSOR_FAULT",
        }
    }

    pub fn parse(raw: &str) -> Option<AnomalyType> {
        AnomalyType::ALL.into_iter().find(|t| t.as_str() == raw)
    }
}

impl fmt::Display for AnomalyType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The seed's two severities.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum Severity {
    Warning,
    Critical,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Warning => "WARNING",
            Severity::Critical => "CRITICAL",
        }
    }

    pub fn parse(raw: &str) -> Option<Severity> {
        match raw {
            "WARNING" => Some(Severity::Warning),
            "CRITICAL" => Some(Severity::Critical),
            _ => None,
        }
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A normal range: values outside `[min, max]` are a finding.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RangeRule {
    pub min: f64,
    pub max: f64,
    pub severity: Severity,
}

/// A floor: values strictly below `below` are a finding.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct FloorRule {
    pub below: f64,
    pub severity: Severity,
}

/// A rule that only carries a severity.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct FlagRule {
    pub severity: Severity,
}

/// The rule set; `Default` is the seed's table. Sites override it in the `[rules]` table of
/// the TOML config.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RuleSet {
    /// Seed: OUT_OF_RANGE_HR, "HR not 60-100 bpm", CRITICAL.
    pub heart_rate: RangeRule,
    /// Seed: OUT_OF_RANGE_TEMP, "Temp not 36.0-37.5°C", CRITICAL.
    pub body_temp: RangeRule,
    /// Seed: WEAK_SIGNAL, "Signal < -100 dBm", WARNING.
    pub weak_signal: FloorRule,
    /// Seed: LOW_BATTERY, "Battery < 10%", WARNING.
    pub low_battery: FloorRule,
    /// Seed: MISSING_FIELDS, "Incomplete telemetry", WARNING.
    pub missing_fields: FlagRule,
    /// Seed: UNKNOWN_DEVICE, "Unregistered device", CRITICAL.
    pub unknown_device: FlagRule,
    /// Seed: ML_ANOMALY, "Model prediction: anomaly", CRITICAL (raised by the model).
    pub ml_anomaly: FlagRule,
}

impl Default for RuleSet {
    fn default() -> RuleSet {
        RuleSet {
            heart_rate: RangeRule {
                min: 60.0,
                max: 100.0,
                severity: Severity::Critical,
            },
            body_temp: RangeRule {
                min: 36.0,
                max: 37.5,
                severity: Severity::Critical,
            },
            weak_signal: FloorRule {
                below: -100.0,
                severity: Severity::Warning,
            },
            low_battery: FloorRule {
                below: 10.0,
                severity: Severity::Warning,
            },
            missing_fields: FlagRule {
                severity: Severity::Warning,
            },
            unknown_device: FlagRule {
                severity: Severity::Critical,
            },
            ml_anomaly: FlagRule {
                severity: Severity::Critical,
            },
        }
    }
}

impl RuleSet {
    /// Checks that every range is well-formed; names the offending key.
    pub fn validate(&self) -> Result<(), String> {
        for (name, rule) in [
            ("heart_rate", self.heart_rate),
            ("body_temp", self.body_temp),
        ] {
            if !(rule.min.is_finite() && rule.max.is_finite() && rule.min <= rule.max) {
                return Err(format!(
                    "rules.{name}: min and max must be finite numbers with min <= max"
                ));
            }
        }
        for (name, rule) in [
            ("weak_signal", self.weak_signal),
            ("low_battery", self.low_battery),
        ] {
            if !rule.below.is_finite() {
                return Err(format!("rules.{name}: below must be a finite number"));
            }
        }
        Ok(())
    }
}

/// One anomaly found in one reading.
#[derive(Clone, Debug, PartialEq)]
pub struct Finding {
    pub kind: AnomalyType,
    pub severity: Severity,
    /// The offending value, when there is one.
    pub value: Option<f64>,
    /// The bound it crossed, when there is one.
    pub threshold: Option<f64>,
    /// For MISSING_FIELDS: which of the seed's fields were absent. For SENSOR_FAULT: which
    /// fields faulted (see [`Finding::faulted_fields`]).
    pub missing: FieldSet,
    /// For ML_ANOMALY: a short explanation a clinician can read.
    pub explanation: Option<String>,
}

impl Finding {
    fn new(kind: AnomalyType, severity: Severity, value: f64, threshold: f64) -> Finding {
        Finding {
            kind,
            severity,
            value: Some(value),
            threshold: Some(threshold),
            missing: FieldSet::EMPTY,
            explanation: None,
        }
    }

    /// UNKNOWN_DEVICE, raised when a reading's device is not registered (or deactivated);
    /// `why` says which.
    pub fn unknown_device(severity: Severity, why: &str) -> Finding {
        Finding {
            kind: AnomalyType::UnknownDevice,
            severity,
            value: None,
            threshold: None,
            missing: FieldSet::EMPTY,
            explanation: Some(why.to_owned()),
        }
    }

    /// A sentence for the `details` column, e.g. "heart_rate 105 above 100".
    pub fn details(&self) -> String {
        let bound = |what: &str| match (self.value, self.threshold) {
            (Some(value), Some(threshold)) => {
                let side = if value < threshold { "below" } else { "above" };
                format!("{what} {value} {side} {threshold}")
            }
            _ => what.to_owned(),
        };
        match self.kind {
            AnomalyType::OutOfRangeHr => bound("heart_rate"),
            AnomalyType::OutOfRangeTemp => bound("body_temp"),
            AnomalyType::WeakSignal => bound("signal_strength"),
            AnomalyType::LowBattery => bound("battery_level"),
            AnomalyType::MissingFields => format!("missing: {}", self.missing.names()),
            AnomalyType::UnknownDevice => self
                .explanation
                .clone()
                .unwrap_or_else(|| "device is not registered".to_owned()),
            AnomalyType::MlAnomaly => self
                .explanation
                .clone()
                .unwrap_or_else(|| "unusual reading".to_owned()),
            AnomalyType::SensorFault => self
                .explanation
                .clone()
                .unwrap_or_else(|| "sensor fault".to_owned()),
        }
    }

    /// For SENSOR_FAULT: the fields whose values are not to be trusted (carried in `missing`,
    /// which names fields for this kind too); empty for every other kind.
    pub fn faulted_fields(&self) -> FieldSet {
        match self.kind {
            AnomalyType::SensorFault => self.missing,
            _ => FieldSet::EMPTY,
        }
    }
}

/// Checks one reading against the rule set, appending every finding to `out`.
pub fn check(reading: &Reading, rules: &RuleSet, out: &mut Vec<Finding>) {
    if let Some(hr) = reading.heart_rate_bpm {
        check_range(AnomalyType::OutOfRangeHr, hr, rules.heart_rate, out);
    }
    if let Some(temp) = reading.body_temp_c {
        check_range(AnomalyType::OutOfRangeTemp, temp, rules.body_temp, out);
    }
    if let Some(rssi) = reading.signal_strength_dbm {
        check_floor(AnomalyType::WeakSignal, rssi, rules.weak_signal, out);
    }
    if let Some(battery) = reading.battery_pct {
        check_floor(AnomalyType::LowBattery, battery, rules.low_battery, out);
    }
    let missing = reading.missing_seed_fields();
    if !missing.is_empty() {
        out.push(Finding {
            kind: AnomalyType::MissingFields,
            severity: rules.missing_fields.severity,
            value: None,
            threshold: None,
            missing,
            explanation: None,
        });
    }
}

fn check_range(kind: AnomalyType, value: f64, rule: RangeRule, out: &mut Vec<Finding>) {
    if value < rule.min {
        out.push(Finding::new(kind, rule.severity, value, rule.min));
    } else if value > rule.max {
        out.push(Finding::new(kind, rule.severity, value, rule.max));
    }
}

fn check_floor(kind: AnomalyType, value: f64, rule: FloorRule, out: &mut Vec<Finding>) {
    if value < rule.below {
        out.push(Finding::new(kind, rule.severity, value, rule.below));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::telemetry::{DeviceId, Timestamp};

    fn reading() -> Reading {
        let mut reading = Reading::empty(
            DeviceId::parse("dev-1", 64).unwrap(),
            Timestamp::from_secs(1_705_401_045),
        );
        reading.heart_rate_bpm = Some(72.0);
        reading.body_temp_c = Some(36.8);
        reading.signal_strength_dbm = Some(-55.0);
        reading.battery_pct = Some(90.0);
        reading
    }

    /// Runs the default rules on a reading changed by `edit`; returns the kinds found.
    fn check_kinds(edit: impl FnOnce(&mut Reading)) -> Vec<AnomalyType> {
        let mut r = reading();
        edit(&mut r);
        let mut out = Vec::new();
        check(&r, &RuleSet::default(), &mut out);
        out.into_iter().map(|f| f.kind).collect()
    }

    #[test]
    fn heart_rate_boundaries() {
        use AnomalyType::OutOfRangeHr as HR;
        let table: &[(f64, &[AnomalyType])] = &[
            (59.0, &[HR]),
            (59.9, &[HR]),
            (60.0, &[]),
            (100.0, &[]),
            (100.1, &[HR]),
            (101.0, &[HR]),
            (0.0, &[HR]),
        ];
        for (hr, expected) in table {
            assert_eq!(
                check_kinds(|r| r.heart_rate_bpm = Some(*hr)),
                *expected,
                "hr {hr}"
            );
        }
    }

    #[test]
    fn temperature_boundaries() {
        use AnomalyType::OutOfRangeTemp as T;
        let table: &[(f64, &[AnomalyType])] =
            &[(35.9, &[T]), (36.0, &[]), (37.5, &[]), (37.6, &[T])];
        for (temp, expected) in table {
            assert_eq!(
                check_kinds(|r| r.body_temp_c = Some(*temp)),
                *expected,
                "temp {temp}"
            );
        }
    }

    #[test]
    fn signal_and_battery_boundaries() {
        assert_eq!(check_kinds(|r| r.signal_strength_dbm = Some(-100.0)), []);
        assert_eq!(
            check_kinds(|r| r.signal_strength_dbm = Some(-101.0)),
            [AnomalyType::WeakSignal]
        );
        assert_eq!(check_kinds(|r| r.battery_pct = Some(10.0)), []);
        assert_eq!(
            check_kinds(|r| r.battery_pct = Some(9.9)),
            [AnomalyType::LowBattery]
        );
    }

    #[test]
    fn every_finding_is_kept() {
        let kinds = check_kinds(|r| {
            r.heart_rate_bpm = Some(130.0);
            r.body_temp_c = Some(39.2);
            r.battery_pct = Some(5.0);
            r.signal_strength_dbm = None;
        });
        assert_eq!(
            kinds,
            [
                AnomalyType::OutOfRangeHr,
                AnomalyType::OutOfRangeTemp,
                AnomalyType::LowBattery,
                AnomalyType::MissingFields
            ]
        );
    }

    #[test]
    fn findings_carry_value_threshold_and_details() {
        let mut r = reading();
        r.heart_rate_bpm = Some(105.0);
        r.body_temp_c = None;
        let mut out = Vec::new();
        check(&r, &RuleSet::default(), &mut out);
        assert_eq!(out[0].severity, Severity::Critical);
        assert_eq!(out[0].value, Some(105.0));
        assert_eq!(out[0].threshold, Some(100.0));
        assert_eq!(out[0].details(), "heart_rate 105 above 100");
        assert_eq!(out[1].kind, AnomalyType::MissingFields);
        assert_eq!(out[1].severity, Severity::Warning);
        assert_eq!(out[1].details(), "missing: body_temp");
    }

    #[test]
    fn configured_ranges_apply() {
        let rules: RuleSet =
            toml_like(r#"{"heart_rate":{"min":45,"max":100,"severity":"WARNING"}}"#);
        let mut r = reading();
        r.heart_rate_bpm = Some(50.0);
        let mut out = Vec::new();
        check(&r, &rules, &mut out);
        assert!(out.is_empty());
        r.heart_rate_bpm = Some(44.0);
        check(&r, &rules, &mut out);
        assert_eq!(out[0].severity, Severity::Warning);
        // Unspecified rules keep the seed's defaults.
        assert_eq!(rules.body_temp, RuleSet::default().body_temp);
    }

    fn toml_like(json: &str) -> RuleSet {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn validation_names_the_key() {
        let mut rules = RuleSet::default();
        rules.body_temp.min = 40.0;
        assert!(rules.validate().unwrap_err().contains("rules.body_temp"));
        assert!(RuleSet::default().validate().is_ok());
    }

    #[test]
    fn type_names_round_trip() {
        for kind in AnomalyType::ALL {
            assert_eq!(AnomalyType::parse(kind.as_str()), Some(kind));
            assert_eq!(
                serde_json::to_string(&kind).unwrap(),
                format!("\"{}\"", kind.as_str())
            );
        }
    }
}
