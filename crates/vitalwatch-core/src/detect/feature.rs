//! Model features: which vitals the anomaly model reads, and how a [`Reading`] becomes a
//! feature vector.
//!
//! The features are the numeric vitals of the vitals table ([`VitalKey::NUMERIC`]), and
//! everything about one (its name, unit, decimals, value in a reading) comes from that table.
//! A feature's name is the payload field name (`heart_rate`, `body_temp`, …), so a model file,
//! a CSV header and a payload all spell it the same way. Extraction never guesses: a reading
//! that lacks a feature the model needs yields `None` and is not scored, rather than being
//! scored with a column shifted or zero-filled.
//!
//! This module must not know about trees, scaling or files.

use crate::telemetry::{Reading, VitalInfo, VitalKey};

/// The most features a model may use (every variant of [`Feature`]: every numeric vital).
pub const MAX_FEATURES: usize = VitalKey::NUMERIC.len();

/// A vital the anomaly model can read: a numeric vital of the vitals table. The variants are
/// the model's vocabulary (model files name them); [`Feature::vital`] links each to its row.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Feature {
    HeartRate,
    BodyTemp,
    SignalStrength,
    BatteryLevel,
    Spo2,
    RespiratoryRate,
    SystolicBp,
    DiastolicBp,
}

impl Feature {
    /// Every feature, in table order (the order of CSV columns we emit).
    pub const ALL: [Feature; MAX_FEATURES] = [
        Feature::HeartRate,
        Feature::BodyTemp,
        Feature::SignalStrength,
        Feature::BatteryLevel,
        Feature::Spo2,
        Feature::RespiratoryRate,
        Feature::SystolicBp,
        Feature::DiastolicBp,
    ];

    /// The seed's four features (its `anomaly_model.pkl` was trained on exactly these).
    pub const SEED: [Feature; 4] = [
        Feature::HeartRate,
        Feature::BodyTemp,
        Feature::SignalStrength,
        Feature::BatteryLevel,
    ];

    /// The vital this feature reads.
    pub const fn vital(self) -> VitalKey {
        match self {
            Feature::HeartRate => VitalKey::HeartRate,
            Feature::BodyTemp => VitalKey::BodyTemp,
            Feature::SignalStrength => VitalKey::SignalStrength,
            Feature::BatteryLevel => VitalKey::BatteryLevel,
            Feature::Spo2 => VitalKey::Spo2,
            Feature::RespiratoryRate => VitalKey::RespiratoryRate,
            Feature::SystolicBp => VitalKey::SystolicBp,
            Feature::DiastolicBp => VitalKey::DiastolicBp,
        }
    }

    pub(crate) fn info(self) -> &'static VitalInfo {
        self.vital().info()
    }

    /// The payload field name; also the CSV column and the model file's feature name.
    pub fn as_str(self) -> &'static str {
        self.vital().key()
    }

    pub fn from_name(name: &str) -> Option<Feature> {
        Feature::ALL
            .into_iter()
            .find(|feature| feature.as_str() == name)
    }

    /// This feature's value in `reading`, if the reading has it.
    pub fn value(self, reading: &Reading) -> Option<f64> {
        reading.vital(self.vital())
    }
}

/// A feature vector on the stack: the first `len` entries of `values` are used.
///
/// A fixed array keeps scoring free of allocation.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct FeatureVec {
    values: [f64; MAX_FEATURES],
    len: usize,
}

impl FeatureVec {
    /// Builds a vector from a slice; `None` if it is longer than [`MAX_FEATURES`] or holds a
    /// non-finite value.
    pub fn from_slice(raw: &[f64]) -> Option<FeatureVec> {
        if raw.len() > MAX_FEATURES || raw.iter().any(|value| !value.is_finite()) {
            return None;
        }
        let mut values = [0.0; MAX_FEATURES];
        values[..raw.len()].copy_from_slice(raw);
        Some(FeatureVec {
            values,
            len: raw.len(),
        })
    }

    pub fn as_slice(&self) -> &[f64] {
        &self.values[..self.len]
    }

    pub(crate) fn as_mut_slice(&mut self) -> &mut [f64] {
        &mut self.values[..self.len]
    }
}

/// Extracts `features` from `reading`, in that order.
///
/// Returns `None` when the reading lacks any of them or a value is not finite: such a
/// reading is not scored (the rules still see it).
pub fn extract(features: &[Feature], reading: &Reading) -> Option<FeatureVec> {
    if features.len() > MAX_FEATURES {
        return None;
    }
    let mut values = [0.0; MAX_FEATURES];
    for (slot, feature) in values.iter_mut().zip(features) {
        let value = feature.value(reading)?;
        if !value.is_finite() {
            return None;
        }
        *slot = value;
    }
    Some(FeatureVec {
        values,
        len: features.len(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::telemetry::{DeviceId, Timestamp};

    fn reading() -> Reading {
        let mut reading = Reading::empty(
            DeviceId::parse("dev-1", 64).expect("valid id"),
            Timestamp::from_secs(1_700_000_000),
        );
        reading.heart_rate_bpm = Some(72.0);
        reading.body_temp_c = Some(36.8);
        reading.signal_strength_dbm = Some(-60.0);
        reading.battery_pct = Some(80.0);
        reading
    }

    #[test]
    fn names_are_payload_fields_and_round_trip() {
        for feature in Feature::ALL {
            assert_eq!(Feature::from_name(feature.as_str()), Some(feature));
            assert!(
                crate::telemetry::Field::from_key(feature.as_str()).is_some(),
                "{} is not a payload field",
                feature.as_str()
            );
        }
        assert_eq!(Feature::from_name("temperature"), None);
    }

    #[test]
    fn vitals_features_are_the_numeric_vitals_in_table_order() {
        assert_eq!(Feature::ALL.map(Feature::vital), VitalKey::NUMERIC);
        assert_eq!(
            Feature::SEED.map(Feature::vital),
            VitalKey::SEED,
            "the seed model reads the seed's payload vitals"
        );
    }

    #[test]
    fn extracts_in_the_requested_order() {
        let features = [Feature::BatteryLevel, Feature::HeartRate, Feature::BodyTemp];
        let vector = extract(&features, &reading()).expect("all present");
        assert_eq!(vector.as_slice(), &[80.0, 72.0, 36.8]);
    }

    #[test]
    fn missing_or_non_finite_feature_is_not_scored() {
        let mut lacking = reading();
        lacking.battery_pct = None;
        assert_eq!(extract(&Feature::SEED, &lacking), None);
        assert!(extract(&Feature::SEED[..3], &lacking).is_some());
        assert_eq!(extract(&[Feature::Spo2], &reading()), None);
        let mut nan = reading();
        nan.heart_rate_bpm = Some(f64::NAN);
        assert_eq!(extract(&Feature::SEED, &nan), None);
    }
}
