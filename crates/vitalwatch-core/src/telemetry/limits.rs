//! [`Limits`]: the decoder's hard limits, each with a safe default and configurable.
//!
//! Bounds here are *plausibility* bounds of the sensor, not clinical ranges: a heart rate of
//! 10 000 is refused as impossible input, while 0 or 350 is accepted and left to the rules
//! (a sensor fault is still worth recording). Clinical ranges live in `rules`.

use super::Field;
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
            // Sensors report 0 when detached and up to ~350 on artefacts; beyond is garbage.
            heart_rate: Bounds::new(0.0, 400.0),
            // A probe off the skin reads room temperature, or 0; beyond is garbage.
            body_temp: Bounds::new(-20.0, 60.0),
            // RSSI in dBm: Wi-Fi/BLE radios report roughly -127..0.
            signal_strength: Bounds::new(-150.0, 20.0),
            battery_level: Bounds::new(0.0, 100.0),
            spo2: Bounds::new(0.0, 100.0),
            respiratory_rate: Bounds::new(0.0, 200.0),
            systolic_bp: Bounds::new(0.0, 400.0),
            diastolic_bp: Bounds::new(0.0, 300.0),
        }
    }
}

impl Limits {
    /// The plausibility bounds of a numeric vital, if `field` is one.
    pub fn bounds(&self, field: Field) -> Option<Bounds> {
        match field {
            Field::HeartRate => Some(self.heart_rate),
            Field::BodyTemp => Some(self.body_temp),
            Field::SignalStrength => Some(self.signal_strength),
            Field::BatteryLevel => Some(self.battery_level),
            Field::Spo2 => Some(self.spo2),
            Field::RespiratoryRate => Some(self.respiratory_rate),
            Field::SystolicBp => Some(self.systolic_bp),
            Field::DiastolicBp => Some(self.diastolic_bp),
            _ => None,
        }
    }
}
