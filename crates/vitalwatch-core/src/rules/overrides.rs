//! Per-patient threshold overrides, merged onto the site's [`RuleSet`].
//!
//! Most alarms come from a minority of patients whose normal is not the population's (an
//! athlete resting at 45 bpm), so limits are tailored per patient ([DREW], [AAMI] in
//! `CLINICAL.md` §3). An override may narrow or shift a limit, but it may never hide a value
//! that NEWS2 scores 3 (pulse ≤ 40 or ≥ 131, temperature ≤ 35.0, respiration ≤ 8 or ≥ 25,
//! systolic ≤ 90 or ≥ 220, SpO2 ≤ 91 % on Scale 1) nor a fever NEWS2 scores 2 (≥ 39.1 °C):
//! those stay findings whatever a user sets. The one documented exception is SpO2 Scale 2
//! (hypercapnic respiratory failure, prescribed target 88–92 % [NEWS2-RCPJ]): a clinician who
//! puts a patient on Scale 2 moves the SpO2 floor to Scale 2's 3-band (≤ 83 %).
//!
//! Heart rate and temperature limits replace the seed rules' ranges; the SpO2 scale and
//! target, respiration and blood-pressure limits are read by the alert engine
//! (`alerting::signal`). Who set an override, why and from when is the store's audit
//! concern; this module only merges and validates.

use super::RuleSet;
use crate::telemetry::Spo2Scale;
use serde::{Deserialize, Serialize};

/// Pulse ≤ 40 scores 3 in NEWS2 (RCP 2017 Chart 1): a heart-rate minimum must stay above it.
pub const HEART_RATE_MIN_FLOOR: f64 = 41.0;
/// Pulse ≥ 131 scores 3 in NEWS2 (RCP 2017 Chart 1): a heart-rate maximum must stay below it.
pub const HEART_RATE_MAX_CEILING: f64 = 130.0;
/// Temperature ≤ 35.0 °C scores 3 in NEWS2 (RCP 2017 Chart 1).
pub const BODY_TEMP_MIN_FLOOR: f64 = 35.1;
/// Temperature ≥ 39.1 °C scores 2 in NEWS2 (RCP 2017 Chart 1), the highest temperature band.
pub const BODY_TEMP_MAX_CEILING: f64 = 39.0;
/// Respiration ≤ 8 /min scores 3 in NEWS2 (RCP 2017 Chart 1).
pub const RESPIRATORY_RATE_MIN_FLOOR: f64 = 9.0;
/// Respiration ≥ 25 /min scores 3 in NEWS2 (RCP 2017 Chart 1).
pub const RESPIRATORY_RATE_MAX_CEILING: f64 = 24.0;
/// Systolic ≤ 90 mmHg scores 3 in NEWS2 (RCP 2017 Chart 1).
pub const SYSTOLIC_BP_MIN_FLOOR: f64 = 91.0;
/// Systolic ≥ 220 mmHg scores 3 in NEWS2 (RCP 2017 Chart 1).
pub const SYSTOLIC_BP_MAX_CEILING: f64 = 219.0;
/// SpO2 ≤ 91 % scores 3 on Scale 1 (RCP 2017 Chart 1): an SpO2 target's lower end stays above.
pub const SPO2_MIN_FLOOR_SCALE_1: f64 = 92.0;
/// SpO2 ≤ 83 % scores 3 on Scale 2 (RCP 2017 Chart 1): the documented exception.
pub const SPO2_MIN_FLOOR_SCALE_2: f64 = 84.0;

/// A patient's overrides; a `None` keeps the site's value (or, for SpO2, respiration and
/// blood pressure, the NEWS2 band where the subscore becomes 1 or more).
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PatientThresholds {
    pub heart_rate_min: Option<f64>,
    pub heart_rate_max: Option<f64>,
    pub body_temp_min: Option<f64>,
    pub body_temp_max: Option<f64>,
    /// The NEWS2 SpO2 scale the patient is scored on (`None`: Scale 1). Scale 2 is for
    /// hypercapnic respiratory failure with a prescribed 88–92 % target, set by a clinician.
    pub spo2_scale: Option<Spo2Scale>,
    /// The lower end of the patient's SpO2 target: SPO2_LOW below it (default: the scale's
    /// normal, 96 % on Scale 1, 88 % on Scale 2).
    pub spo2_min: Option<f64>,
    /// RESPIRATORY_RATE_LOW below it (default 12 /min, where NEWS2 starts scoring).
    pub respiratory_rate_min: Option<f64>,
    /// RESPIRATORY_RATE_HIGH above it (default 20 /min).
    pub respiratory_rate_max: Option<f64>,
    /// SYSTOLIC_BP_LOW below it (default 111 mmHg).
    pub systolic_bp_min: Option<f64>,
    /// BLOOD_PRESSURE_HIGH above it (default: the site's severe-hypertension limit, 180 mmHg).
    pub systolic_bp_max: Option<f64>,
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
        for (key, value) in [
            ("spo2_min", self.spo2_min),
            ("respiratory_rate_min", self.respiratory_rate_min),
            ("respiratory_rate_max", self.respiratory_rate_max),
            ("systolic_bp_min", self.systolic_bp_min),
            ("systolic_bp_max", self.systolic_bp_max),
        ] {
            if value.is_some_and(|value| !value.is_finite()) {
                return Err(ThresholdError::NotFinite { key });
            }
        }
        let spo2_floor = match self.spo2_scale.unwrap_or_default() {
            Spo2Scale::Scale1 => SPO2_MIN_FLOOR_SCALE_1,
            Spo2Scale::Scale2 => SPO2_MIN_FLOOR_SCALE_2,
        };
        let floors = [
            ("heart_rate_min", self.heart_rate_min, HEART_RATE_MIN_FLOOR),
            ("body_temp_min", self.body_temp_min, BODY_TEMP_MIN_FLOOR),
            ("spo2_min", self.spo2_min, spo2_floor),
            (
                "respiratory_rate_min",
                self.respiratory_rate_min,
                RESPIRATORY_RATE_MIN_FLOOR,
            ),
            (
                "systolic_bp_min",
                self.systolic_bp_min,
                SYSTOLIC_BP_MIN_FLOOR,
            ),
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
            // An SpO2 target above 100 % could never be met.
            ("spo2_min", self.spo2_min, 100.0),
            (
                "respiratory_rate_max",
                self.respiratory_rate_max,
                RESPIRATORY_RATE_MAX_CEILING,
            ),
            (
                "systolic_bp_max",
                self.systolic_bp_max,
                SYSTOLIC_BP_MAX_CEILING,
            ),
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
        let pairs = [
            (
                "respiratory_rate",
                self.respiratory_rate_min,
                self.respiratory_rate_max,
            ),
            ("systolic_bp", self.systolic_bp_min, self.systolic_bp_max),
        ];
        for (key, min, max) in pairs {
            if let (Some(min), Some(max)) = (min, max)
                && min >= max
            {
                return Err(ThresholdError::MinNotBelowMax { key });
            }
        }
        Ok(rules)
    }

    /// Whether nothing is overridden (the site's settings and Scale 1).
    pub fn is_empty(&self) -> bool {
        *self == PatientThresholds::default()
    }

    /// The SpO2 scale the patient is scored on.
    pub fn scale(&self) -> Spo2Scale {
        self.spo2_scale.unwrap_or_default()
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

    /// Validates `overrides` against the seed's rules.
    fn validate(overrides: PatientThresholds) -> Result<(), ThresholdError> {
        overrides.apply(&RuleSet::default()).map(|_| ())
    }

    #[test]
    fn spo2_respiration_and_blood_pressure_never_hide_a_news2_3() {
        let none = PatientThresholds::default();
        let hides = |key, bound, side| Err(ThresholdError::HidesNews2Band { key, bound, side });
        // SpO2 target: above Scale 1's 3-band, unless the patient is on Scale 2.
        let copd_target = PatientThresholds {
            spo2_min: Some(88.0),
            ..none
        };
        assert_eq!(validate(copd_target), hides("spo2_min", 92.0, "more"));
        let scale2 = PatientThresholds {
            spo2_scale: Some(Spo2Scale::Scale2),
            ..copd_target
        };
        assert_eq!(validate(scale2), Ok(()));
        assert_eq!(scale2.scale(), Spo2Scale::Scale2);
        assert_eq!(
            validate(PatientThresholds {
                spo2_min: Some(83.0),
                ..scale2
            }),
            hides("spo2_min", 84.0, "more")
        );
        assert_eq!(
            validate(PatientThresholds {
                spo2_min: Some(101.0),
                ..none
            }),
            hides("spo2_min", 100.0, "less")
        );
        // Respiration and systolic BP: inside the bands NEWS2 scores below 3.
        for (overrides, expected) in [
            (
                PatientThresholds {
                    respiratory_rate_min: Some(8.0),
                    ..none
                },
                hides("respiratory_rate_min", 9.0, "more"),
            ),
            (
                PatientThresholds {
                    respiratory_rate_max: Some(25.0),
                    ..none
                },
                hides("respiratory_rate_max", 24.0, "less"),
            ),
            (
                PatientThresholds {
                    systolic_bp_min: Some(90.0),
                    ..none
                },
                hides("systolic_bp_min", 91.0, "more"),
            ),
            (
                PatientThresholds {
                    systolic_bp_max: Some(220.0),
                    ..none
                },
                hides("systolic_bp_max", 219.0, "less"),
            ),
            (
                PatientThresholds {
                    respiratory_rate_min: Some(16.0),
                    respiratory_rate_max: Some(14.0),
                    ..none
                },
                Err(ThresholdError::MinNotBelowMax {
                    key: "respiratory_rate",
                }),
            ),
            (
                PatientThresholds {
                    systolic_bp_max: Some(f64::INFINITY),
                    ..none
                },
                Err(ThresholdError::NotFinite {
                    key: "systolic_bp_max",
                }),
            ),
            (
                PatientThresholds {
                    respiratory_rate_min: Some(9.0),
                    respiratory_rate_max: Some(24.0),
                    systolic_bp_min: Some(91.0),
                    systolic_bp_max: Some(200.0),
                    spo2_min: Some(92.0),
                    ..none
                },
                Ok(()),
            ),
        ] {
            assert_eq!(validate(overrides), expected, "{overrides:?}");
        }
        assert!(none.is_empty());
        assert!(!scale2.is_empty());
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
