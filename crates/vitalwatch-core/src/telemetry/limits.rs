//! [`Limits`]: the decoder's hard limits, each with a safe default and configurable.
//!
//! Bounds here are *plausibility* bounds of the sensor, not clinical ranges: a heart rate of
//! 10 000 is refused as impossible input, while 0 or 350 is accepted and left to the rules
//! (a sensor fault is still worth recording). Clinical ranges live in `rules`. The default
//! bounds are the vitals table's ([`VitalInfo::plausible`](super::VitalInfo::plausible)); the
//! named fields below are the `[limits]` section of the configuration file, one per numeric
//! vital and spelt like its payload key.

use super::{Field, VitalKey};
use serde::{Deserialize, Serialize};

/// An inclusive `[min, max]` interval.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Bounds {
    pub min: f64,
    pub max: f64,
}

impl Bounds {
    pub const fn new(min: f64, max: f64) -> Bounds {
        Bounds { min, max }
    }

    pub fn contains(self, value: f64) -> bool {
        value >= self.min && value <= self.max
    }
}

/// Decoder limits. Defaults are safe for the seed's payload (about 150 bytes).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Largest accepted payload holding one reading (an MQTT message, an HTTP body).
    pub max_payload_bytes: usize,
    /// Largest accepted HTTP body holding a JSON array (batch) of readings.
    pub max_batch_bytes: usize,
    /// Deepest JSON nesting; a reading is depth 1, a batch of readings depth 2.
    pub max_depth: usize,
    /// Longest string value, in bytes.
    pub max_string_len: usize,
    /// Most fields in one reading, known and unknown together.
    pub max_fields: usize,
    /// Longest device id.
    pub max_device_id_len: usize,
    /// Most readings in one JSON array.
    pub max_batch_len: usize,
    /// How far ahead of the server clock a device timestamp may be, in seconds.
    pub max_future_skew_s: u64,
    // Plausibility bounds, one per numeric vital (see the vitals table for each default).
    pub heart_rate: Bounds,
    pub body_temp: Bounds,
    pub signal_strength: Bounds,
    pub battery_level: Bounds,
    pub spo2: Bounds,
    pub respiratory_rate: Bounds,
    pub systolic_bp: Bounds,
    pub diastolic_bp: Bounds,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_payload_bytes: 4096,
            max_batch_bytes: 1024 * 1024,
            max_depth: 8,
            max_string_len: 256,
            max_fields: 64,
            max_device_id_len: 64,
            max_batch_len: 1000,
            max_future_skew_s: 24 * 3600,
            heart_rate: plausible(VitalKey::HeartRate),
            body_temp: plausible(VitalKey::BodyTemp),
            signal_strength: plausible(VitalKey::SignalStrength),
            battery_level: plausible(VitalKey::BatteryLevel),
            spo2: plausible(VitalKey::Spo2),
            respiratory_rate: plausible(VitalKey::RespiratoryRate),
            systolic_bp: plausible(VitalKey::SystolicBp),
            diastolic_bp: plausible(VitalKey::DiastolicBp),
        }
    }
}

/// The table's default bounds of a numeric vital.
fn plausible(vital: VitalKey) -> Bounds {
    vital
        .info()
        .plausible
        .expect("the vitals table gives every numeric vital bounds")
}

impl Limits {
    /// The plausibility bounds of a numeric vital, if `field` is one.
    pub fn bounds(&self, field: Field) -> Option<Bounds> {
        match field {
            Field::Vital(vital) => self.vital_bounds(vital),
            Field::DeviceId | Field::Timestamp | Field::Seq => None,
        }
    }

    /// The plausibility bounds of `vital`; `None` for the kinds that are not numbers.
    pub fn vital_bounds(&self, vital: VitalKey) -> Option<Bounds> {
        match vital {
            VitalKey::HeartRate => Some(self.heart_rate),
            VitalKey::BodyTemp => Some(self.body_temp),
            VitalKey::SignalStrength => Some(self.signal_strength),
            VitalKey::BatteryLevel => Some(self.battery_level),
            VitalKey::Spo2 => Some(self.spo2),
            VitalKey::RespiratoryRate => Some(self.respiratory_rate),
            VitalKey::SystolicBp => Some(self.systolic_bp),
            VitalKey::DiastolicBp => Some(self.diastolic_bp),
            VitalKey::Consciousness | VitalKey::OnOxygen => None,
        }
    }

    /// Every numeric vital with its bounds, in table order (e.g. to validate a configuration).
    pub fn numeric_bounds(&self) -> impl Iterator<Item = (VitalKey, Bounds)> + '_ {
        VitalKey::NUMERIC
            .into_iter()
            .filter_map(|vital| self.vital_bounds(vital).map(|bounds| (vital, bounds)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vitals_defaults_are_the_tables_bounds() {
        let limits = Limits::default();
        for vital in VitalKey::ALL {
            assert_eq!(
                limits.vital_bounds(vital),
                vital.info().plausible,
                "{vital:?}"
            );
        }
        assert_eq!(limits.numeric_bounds().count(), VitalKey::NUMERIC.len());
        assert_eq!(limits.heart_rate, Bounds::new(0.0, 400.0));
    }

    #[test]
    fn vitals_limits_keys_are_the_payload_keys() {
        // The `[limits]` section names each vital's bounds by its payload key.
        let mut limits = Limits::default();
        let value = serde_json::to_value(&limits).expect("serialises");
        for vital in VitalKey::NUMERIC {
            let mut bounds = value[vital.key()].clone();
            assert!(bounds.is_object(), "limits.{} is missing", vital.key());
            bounds["max"] = serde_json::json!(1.5);
            let mut edited = value.clone();
            edited[vital.key()] = bounds;
            limits = serde_json::from_value(edited).expect("deserialises");
            assert_eq!(limits.vital_bounds(vital).map(|b| b.max), Some(1.5));
        }
    }
}
