//! Per-patient threshold overrides, merged onto the site's [`RuleSet`].
//!
//! Most alarms come from a minority of patients whose normal is not the population's (an
//! athlete resting at 45 bpm), so limits are tailored per patient ([DREW], [AAMI] in
//! `CLINICAL.md` §3). An override may narrow or shift a limit, but it may never hide a value
//! that NEWS2 scores 3 (pulse ≤ 40 or ≥ 131, temperature ≤ 35.0) nor a fever NEWS2 scores 2
//! (≥ 39.1 °C): those stay findings whatever a user sets. Who set an override, why and from
//! when is the store's audit concern; this module only merges and validates.

use super::RuleSet;
use serde::{Deserialize, Serialize};

/// Pulse ≤ 40 scores 3 in NEWS2 (RCP 2017 Chart 1): a heart-rate minimum must stay above it.
pub const HEART_RATE_MIN_FLOOR: f64 = 41.0;
/// Pulse ≥ 131 scores 3 in NEWS2 (RCP 2017 Chart 1): a heart-rate maximum must stay below it.
pub const HEART_RATE_MAX_CEILING: f64 = 130.0;
/// Temperature ≤ 35.0 °C scores 3 in NEWS2 (RCP 2017 Chart 1).
pub const BODY_TEMP_MIN_FLOOR: f64 = 35.1;
/// Temperature ≥ 39.1 °C scores 2 in NEWS2 (RCP 2017 Chart 1), the highest temperature band.
pub const BODY_TEMP_MAX_CEILING: f64 = 39.0;

/// A patient's overrides; a `None` keeps the site's value.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PatientThresholds {
    pub heart_rate_min: Option<f64>,
    pub heart_rate_max: Option<f64>,
    pub body_temp_min: Option<f64>,
    pub body_temp_max: Option<f64>,
}

/// Why an override was refused; each names the key so a user can fix it.
#[derive(Clone, Copy, Debug, PartialEq, thiserror::Error)]
pub enum ThresholdError {
    #[error("{key} must be a finite number")]
    NotFinite { key: &'static str },
    #[error("{key}: the minimum must be below the maximum")]
    MinNotBelowMax { key: &'static str },
    #[error("{key} would hide values NEWS2 scores 2 or 3; it must be {bound} or {side}")]
    HidesNews2Band {
        key: &'static str,
        bound: f64,
        side: &'static str,
    },
}

impl PatientThresholds {
    /// The site's rules with this patient's overrides applied, validated.
    pub fn apply(&self, site: &RuleSet) -> Result<RuleSet, ThresholdError> {
        let mut rules = site.clone();
        let limits = [
            (
                "heart_rate_min",
                self.heart_rate_min,
                &mut rules.heart_rate.min,
            ),
            (
                "heart_rate_max",
                self.heart_rate_max,
                &mut rules.heart_rate.max,
            ),
            (
                "body_temp_min",
                self.body_temp_min,
                &mut rules.body_temp.min,
            ),
            (
                "body_temp_max",
                self.body_temp_max,
                &mut rules.body_temp.max,
            ),
        ];
        for (key, value, slot) in limits {
            if let Some(value) = value {
                if !value.is_finite() {
                    return Err(ThresholdError::NotFinite { key });
                }
                *slot = value;
            }
        }
        let floors = [
            ("heart_rate_min", self.heart_rate_min, HEART_RATE_MIN_FLOOR),
            ("body_temp_min", self.body_temp_min, BODY_TEMP_MIN_FLOOR),
        ];
        for (key, value, bound) in floors {
            if value.is_some_and(|value| value < bound) {
                return Err(ThresholdError::HidesNews2Band {
                    key,
                    bound,
                    side: "more",
                });
            }
        }
        let ceilings = [
            (
                "heart_rate_max",
                self.heart_rate_max,
                HEART_RATE_MAX_CEILING,
            ),
            ("body_temp_max", self.body_temp_max, BODY_TEMP_MAX_CEILING),
        ];
        for (key, value, bound) in ceilings {
            if value.is_some_and(|value| value > bound) {
                return Err(ThresholdError::HidesNews2Band {
                    key,
                    bound,
                    side: "less",
                });
            }
        }
        if rules.heart_rate.min >= rules.heart_rate.max {
            return Err(ThresholdError::MinNotBelowMax { key: "heart_rate" });
        }
        if rules.body_temp.min >= rules.body_temp.max {
            return Err(ThresholdError::MinNotBelowMax { key: "body_temp" });
        }
        Ok(rules)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::{AnomalyType, check as check_rules};
    use crate::telemetry::{DeviceId, Reading, Timestamp};

    /// Applies `overrides` to the seed's rules and checks a heart rate against the result:
    /// `Ok(true)` when it is a finding.
    fn check(overrides: PatientThresholds, hr: f64, expected: Result<bool, ThresholdError>) {
        let result = overrides.apply(&RuleSet::default()).map(|rules| {
            let mut reading = Reading::empty(
                DeviceId::parse("dev-1", 64).expect("valid id"),
                Timestamp::from_secs(1_705_401_045),
            );
            reading.heart_rate_bpm = Some(hr);
            let mut out = Vec::new();
            check_rules(&reading, &rules, &mut out);
            out.iter().any(|f| f.kind == AnomalyType::OutOfRangeHr)
        });
        assert_eq!(result, expected, "{overrides:?} hr {hr}");
    }

    #[test]
    fn overrides_merge_and_validate() {
        let none = PatientThresholds::default();
        let athlete = PatientThresholds {
            heart_rate_min: Some(45.0),
            ..PatientThresholds::default()
        };
        check(none, 55.0, Ok(true));
        check(athlete, 55.0, Ok(false));
        check(athlete, 45.0, Ok(false));
        check(athlete, 44.0, Ok(true));
        check(athlete, 101.0, Ok(true));
        check(
            PatientThresholds {
                heart_rate_min: Some(30.0),
                ..none
            },
            35.0,
            Err(ThresholdError::HidesNews2Band {
                key: "heart_rate_min",
                bound: HEART_RATE_MIN_FLOOR,
                side: "more",
            }),
        );
        check(
            PatientThresholds {
                heart_rate_max: Some(140.0),
                ..none
            },
            135.0,
            Err(ThresholdError::HidesNews2Band {
                key: "heart_rate_max",
                bound: HEART_RATE_MAX_CEILING,
                side: "less",
            }),
        );
        check(
            PatientThresholds {
                body_temp_max: Some(39.5),
                ..none
            },
            72.0,
            Err(ThresholdError::HidesNews2Band {
                key: "body_temp_max",
                bound: BODY_TEMP_MAX_CEILING,
                side: "less",
            }),
        );
        check(
            PatientThresholds {
                heart_rate_min: Some(100.0),
                ..none
            },
            72.0,
            Err(ThresholdError::MinNotBelowMax { key: "heart_rate" }),
        );
        check(
            PatientThresholds {
                body_temp_min: Some(f64::NAN),
                ..none
            },
            72.0,
            Err(ThresholdError::NotFinite {
                key: "body_temp_min",
            }),
        );
    }

    #[test]
    fn error_messages_name_the_key() {
        let err = PatientThresholds {
            heart_rate_max: Some(150.0),
            ..PatientThresholds::default()
        }
        .apply(&RuleSet::default())
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "heart_rate_max would hide values NEWS2 scores 2 or 3; it must be 130 or less"
        );
    }
}
