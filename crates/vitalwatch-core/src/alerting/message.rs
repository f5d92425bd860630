//! Short human-readable alert messages for people and pagers: "HR 142 bpm (limit 130) for
//! 45 s, bed-7". Built from the alert's own values (condition, last value, limit, how long),
//! so every consumer shows the same words. Pure: no clock (the duration is the episode's own,
//! from raised to latest sighting; a just-raised alert has none). The labels and units are
//! local until the shared vitals table (issue 12) can supply them.

use super::{Alert, AlertCondition, AlertState};
use std::fmt::Write;

/// How one condition's value is named and shown: label, unit, decimals.
fn presentation(condition: AlertCondition) -> (&'static str, &'static str, usize) {
    use AlertCondition::*;
    match condition {
        HeartRateHigh | HeartRateLow => ("HR", "bpm", 0),
        TemperatureHigh | TemperatureLow => ("Temp", "°C", 1),
        Spo2Low => ("SpO2", "%", 0),
        RespiratoryRateHigh | RespiratoryRateLow => ("RR", "/min", 0),
        SystolicBpLow => ("Systolic BP", "mmHg", 0),
        BloodPressureHigh => ("BP", "mmHg", 0),
        News2 => ("NEWS2", "", 0),
        WeakSignal => ("Signal", "dBm", 0),
        LowBattery => ("Battery", "%", 0),
        DeviceOffline => ("No data for", "s", 0),
        SensorFault => ("Sensor fault", "", 1),
        Artefact => ("Repeated artefacts", "", 0),
        ConsciousnessChanged => ("New confusion or reduced consciousness (ACVPU)", "", 0),
        MlAnomaly => ("Unusual readings (model)", "", 0),
        UnknownDevice => ("Unregistered device", "", 0),
    }
}

fn number(value: f64, decimals: usize) -> String {
    format!("{value:.decimals$}")
}

/// A duration in the largest sensible unit: "45 s", "12 min", "3 h 5 min".
fn duration(secs: i64) -> String {
    match secs {
        ..60 => format!("{} s", secs.max(0)),
        60..3600 => format!("{} min", secs / 60),
        _ if secs % 3600 / 60 == 0 => format!("{} h", secs / 3600),
        _ => format!("{} h {} min", secs / 3600, secs % 3600 / 60),
    }
}

/// The alert's message, e.g. "HR 142 bpm (limit 130) for 45 s, bed-7".
pub fn message(alert: &Alert) -> String {
    let (label, unit, decimals) = presentation(alert.condition);
    let mut out = String::from(label);
    let with_unit = |value: f64| {
        let shown = number(value, decimals);
        if unit.is_empty() {
            shown
        } else if unit == "%" || unit == "°C" {
            format!("{shown}{unit}")
        } else {
            format!("{shown} {unit}")
        }
    };
    match alert.condition {
        AlertCondition::DeviceOffline => {
            if let Some(value) = alert.last_value {
                let _ = write!(out, " {}", duration(value.round() as i64));
            }
        }
        AlertCondition::SensorFault | AlertCondition::Artefact => {
            if let Some(value) = alert.last_value {
                let _ = write!(out, " (value {})", number(value, decimals));
            }
        }
        _ => {
            if let Some(value) = alert.last_value {
                let _ = write!(out, " {}", with_unit(value));
            }
            if let Some(limit) = alert.threshold {
                let _ = write!(out, " (limit {})", number(limit, decimals));
            }
        }
    }
    // How long the episode has lasted (nothing yet when it has just been raised).
    let secs = alert.last_seen.saturating_sub(alert.opened_at) / 1_000_000;
    if alert.condition != AlertCondition::DeviceOffline && secs > 0 {
        let _ = write!(out, " for {}", duration(secs));
    }
    let _ = write!(out, ", {}", alert.device_id);
    if !alert.condition_present && alert.state != AlertState::Resolved {
        out.push_str(" (cleared; latched until acknowledged)");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alerting::{AlertId, Priority};
    use crate::telemetry::{DeviceId, Timestamp};

    fn check(
        condition: AlertCondition,
        value: Option<f64>,
        threshold: Option<f64>,
        for_s: i64,
        expected: &str,
    ) {
        let opened = Timestamp::from_secs(1_705_401_000);
        let alert = Alert {
            last_seen: Timestamp::from_secs(1_705_401_000 + for_s),
            last_value: value,
            threshold,
            count: 3,
            ..Alert::opened(
                AlertId(1),
                DeviceId::parse("bed-7", 64).expect("valid id"),
                condition,
                Priority::High,
                opened,
            )
        };
        assert_eq!(message(&alert), expected);
    }

    #[test]
    fn messages() {
        use AlertCondition::*;
        check(
            HeartRateHigh,
            Some(142.0),
            Some(130.0),
            45,
            "HR 142 bpm (limit 130) for 45 s, bed-7",
        );
        check(
            TemperatureLow,
            Some(34.46),
            Some(36.0),
            720,
            "Temp 34.5°C (limit 36.0) for 12 min, bed-7",
        );
        check(
            Spo2Low,
            Some(88.0),
            Some(96.0),
            3 * 3600 + 300,
            "SpO2 88% (limit 96) for 3 h 5 min, bed-7",
        );
        check(
            RespiratoryRateLow,
            Some(6.0),
            Some(12.0),
            7200,
            "RR 6 /min (limit 12) for 2 h, bed-7",
        );
        check(
            BloodPressureHigh,
            Some(200.0),
            Some(180.0),
            5,
            "BP 200 mmHg (limit 180) for 5 s, bed-7",
        );
        check(News2, Some(7.0), None, 60, "NEWS2 7 for 1 min, bed-7");
        check(
            DeviceOffline,
            Some(15.2),
            Some(15.0),
            0,
            "No data for 15 s, bed-7",
        );
        check(
            SensorFault,
            Some(0.0),
            Some(0.0),
            10,
            "Sensor fault (value 0.0) for 10 s, bed-7",
        );
        check(
            ConsciousnessChanged,
            None,
            None,
            0,
            "New confusion or reduced consciousness (ACVPU), bed-7",
        );
    }
}
