//! What the benches share: a device's readings with every vital in its normal range.

use vitalwatch_core::telemetry::{DeviceId, Reading, Timestamp};

/// The `n`th reading of a device: five vitals, each cycling through a normal range.
pub fn reading(device: &DeviceId, at: Timestamp, n: i64) -> Reading {
    let mut reading = Reading::empty(device.clone(), at);
    reading.heart_rate_bpm = Some(70.0 + ((n * 37) % 30) as f64);
    reading.spo2_pct = Some(94.0 + ((n * 13) % 5) as f64);
    reading.respiratory_rate_per_min = Some(14.0 + ((n * 7) % 6) as f64);
    reading.systolic_bp_mmhg = Some(120.0 + ((n * 11) % 20) as f64);
    reading.body_temp_c = Some(36.5 + ((n * 3) % 10) as f64 / 10.0);
    reading
}
