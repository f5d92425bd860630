//! Per-reading checks before the commit: the seed's rules with the device's threshold
//! overrides, then SENSOR_FAULT (which needs the device's previous temperature). Pure
//! [`findings`] is shared with the replays (preview, evaluate); [`Checks`] holds the live state.

use crate::store::ThresholdsRecord;
use parking_lot::Mutex;
use std::collections::HashMap;
use vitalwatch_core::rules::{
    self, Finding, PatientThresholds, PreviousTemperature, RuleSet, SensorFaultRule,
    check_sensor_faults,
};
use vitalwatch_core::telemetry::{DeviceId, Reading, Timestamp};

/// The seed's findings for `reading` under `rules`, then its SENSOR_FAULT findings.
pub fn findings(
    reading: &Reading,
    rules: &RuleSet,
    sensor: &SensorFaultRule,
    previous: Option<PreviousTemperature>,
) -> Vec<Finding> {
    let mut out = Vec::new();
    rules::check(reading, rules, &mut out);
    check_sensor_faults(reading, previous, sensor, &mut out);
    out
}

/// Remembers the newest temperature of a device, for the jump check.
pub fn remember_temperature(
    previous: &mut HashMap<DeviceId, PreviousTemperature>,
    reading: &Reading,
) {
    if let Some(body_temp_c) = reading.body_temp_c {
        let slot = previous.get(&reading.device_id);
        if slot.is_none_or(|prev| prev.at <= reading.timestamp) {
            previous.insert(
                reading.device_id.clone(),
                PreviousTemperature {
                    body_temp_c,
                    at: reading.timestamp,
                },
            );
        }
    }
}

/// The patient's thresholds a stored override sets for a reading received at `at` (none when
/// there is no override, it is not yet in force, or it no longer validates against `site`).
pub fn patient_of(
    site: &RuleSet,
    record: Option<&ThresholdsRecord>,
    at: Timestamp,
) -> PatientThresholds {
    record
        .filter(|record| record.thresholds.apply(site).is_ok())
        .filter(|record| {
            Timestamp::parse_text(&record.effective_from).is_some_and(|from| from <= at)
        })
        .map(|record| record.thresholds)
        .unwrap_or_default()
}

/// One device's overrides, merged onto the site's rules, in force from `effective_from`.
#[derive(Clone, Debug)]
struct Override {
    effective_from: Timestamp,
    rules: RuleSet,
    /// As set, for the engine's per-patient limits and the SpO2 scale.
    thresholds: PatientThresholds,
}

/// Live state: the overrides in force and each device's previous temperature. Both maps sit
/// behind short std mutexes (no await while held).
pub struct Checks {
    site: RuleSet,
    sensor: SensorFaultRule,
    overrides: Mutex<HashMap<String, Override>>,
    previous: Mutex<HashMap<DeviceId, PreviousTemperature>>,
}

impl Checks {
    pub fn new(site: RuleSet, sensor: SensorFaultRule) -> Checks {
        Checks {
            site,
            sensor,
            overrides: Mutex::new(HashMap::new()),
            previous: Mutex::new(HashMap::new()),
        }
    }

    pub fn site(&self) -> &RuleSet {
        &self.site
    }

    pub fn sensor(&self) -> &SensorFaultRule {
        &self.sensor
    }

    /// The rules for a device's reading received at `at`.
    pub fn rules_for(&self, device_id: &str, at: Timestamp) -> RuleSet {
        self.overrides
            .lock()
            .get(device_id)
            .filter(|over| over.effective_from <= at)
            .map_or_else(|| self.site.clone(), |over| over.rules.clone())
    }

    /// The patient's thresholds in force for a device's reading received at `at` (the SpO2
    /// scale and target, respiration and BP limits the engine reads; default: none).
    pub fn patient_for(&self, device_id: &str, at: Timestamp) -> PatientThresholds {
        self.overrides
            .lock()
            .get(device_id)
            .filter(|over| over.effective_from <= at)
            .map(|over| over.thresholds)
            .unwrap_or_default()
    }

    pub fn findings(&self, reading: &Reading) -> Vec<Finding> {
        let rules = self.rules_for(reading.device_id.as_str(), reading.received_at);
        let mut previous = self.previous.lock();
        let prev = previous.get(&reading.device_id).copied();
        let out = findings(reading, &rules, &self.sensor, prev);
        remember_temperature(&mut previous, reading);
        out
    }

    /// Replaces every override with `records` (those that no longer validate are skipped).
    pub fn load(&self, records: &[ThresholdsRecord]) {
        let mut map = HashMap::with_capacity(records.len());
        for record in records {
            if let Some(over) = self.override_of(record) {
                map.insert(record.device_id.clone(), over);
            }
        }
        *self.overrides.lock() = map;
    }

    pub fn set(&self, record: &ThresholdsRecord) {
        if let Some(over) = self.override_of(record) {
            self.overrides.lock().insert(record.device_id.clone(), over);
        }
    }

    pub fn clear(&self, device_id: &str) {
        self.overrides.lock().remove(device_id);
    }

    fn override_of(&self, record: &ThresholdsRecord) -> Option<Override> {
        let rules = record.thresholds.apply(&self.site).ok()?;
        let effective_from = Timestamp::parse_text(&record.effective_from)?;
        Some(Override {
            effective_from,
            rules,
            thresholds: record.thresholds,
        })
    }
}
