//! [`AlertConfig`]: every alerting knob, with its default and the source of that default.
//!
//! # Priority mapping (defaults)
//! Physiological conditions are graded by the NEWS2 subscore of the offending value
//! (RCP 2017 Chart 1, `CLINICAL.md` §1), crossed with IEC 60601-1-8's meaning of the
//! priorities (HIGH immediate, MEDIUM prompt, LOW awareness; `CLINICAL.md` §3):
//! - subscore 3 (pulse ≤ 40 or ≥ 131, temperature ≤ 35.0, SpO2 ≤ 91) → HIGH, raised at once;
//! - subscore 2 (pulse 111–130, temperature ≥ 39.1, SpO2 92–93) → MEDIUM. Temperature has no
//!   3 on the high side, so a fever of 39.1 °C or more is MEDIUM, not HIGH;
//! - subscore 1 (pulse 41–50 or 91–110, temperature 35.1–36.0 or 38.1–39.0) → LOW;
//! - subscore 0 but outside the patient's range (HR 55 asleep, 37.8 °C) → LOW, and only when
//!   sustained ("mild" onset: 10 readings and 5 minutes), as [DREW] recommends delays.
//!
//! Respiration, systolic BP and consciousness have no seed rule: each NEWS2 band that scores
//! is its own condition, graded the same way (RR ≤ 8 or ≥ 25, systolic ≤ 90, ACVPU C/V/P/U
//! score 3 → HIGH at once). Severe hypertension (≥ 180/120, below NEWS2's systolic 220) is
//! BLOOD_PRESSURE_HIGH at MEDIUM (`hypertension`).
//!
//! The NEWS2 aggregate maps by the RCP clinical response: ≥ 7 (emergency) → HIGH; 5–6 (urgent
//! review) → MEDIUM; a single parameter scoring 3 (urgent ward-based response) → MEDIUM.
//! Technical conditions have a fixed priority: SENSOR_FAULT, DEVICE_OFFLINE and UNKNOWN_DEVICE
//! MEDIUM (the patient is, or may be, unmonitored), WEAK_SIGNAL and LOW_BATTERY LOW.
//! ML_ANOMALY is LOW (an unvalidated model informs, it does not alarm; `CLINICAL.md` §5.10).

use super::{AlertCondition, Priority};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The longest audio pause any configuration may allow: 5 minutes. Dräger Infinity allows at
/// most 2 min [DRAEGER]; sites may lengthen it, but not to an indefinite AUDIO OFF.
pub const AUDIO_PAUSE_HARD_CAP_S: u64 = 300;

/// Alerting configuration (the `[alerting]` table).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AlertConfig {
    /// NEWS2 subscore of the offending value → priority, for vital-sign conditions.
    pub grading: Grading,
    /// NEWS2 clinical risk → priority, for the NEWS2 condition.
    pub news2: News2Grading,
    /// How long a condition must persist before it raises, by priority (the IEC 60601-1-8
    /// alarm-condition delay).
    pub onset: OnsetByPriority,
    /// Per-condition overrides of the built-in defaults (see [`AlertConfig::condition`]).
    pub conditions: BTreeMap<AlertCondition, ConditionOverride>,
    /// Whether HIGH alerts latch: they stay active after the condition clears until someone
    /// acknowledges them, so a transient life-threatening event is never missed. Set by the
    /// responsible organisation, not per user ([IEC-harel]).
    pub latch_high_priority: bool,
    /// The longest audio pause a user may request, in seconds (≤ [`AUDIO_PAUSE_HARD_CAP_S`]).
    /// Default 120 s: Dräger Infinity's maximum [DRAEGER].
    pub audio_pause_max_s: u64,
    pub escalation: EscalationConfig,
    pub offline: OfflineConfig,
    /// Severe hypertension (BLOOD_PRESSURE_HIGH below NEWS2's systolic 220).
    pub hypertension: HypertensionConfig,
    /// Artefacts: implausible jumps, and the bounds beyond which a corroborated HIGH value
    /// needs no persistence.
    pub artefact: ArtefactConfig,
    /// At most how often an open alert that keeps folding readings emits `Updated` (so the
    /// store's last_value/count stay fresh without one write per reading), in seconds.
    pub update_interval_s: u64,
}

impl Default for AlertConfig {
    fn default() -> AlertConfig {
        AlertConfig {
            grading: Grading::default(),
            news2: News2Grading::default(),
            onset: OnsetByPriority::default(),
            conditions: BTreeMap::new(),
            latch_high_priority: true,
            audio_pause_max_s: 120,
            escalation: EscalationConfig::default(),
            offline: OfflineConfig::default(),
            hypertension: HypertensionConfig::default(),
            artefact: ArtefactConfig::default(),
            update_interval_s: 60,
        }
    }
}

/// Priority by NEWS2 subscore of the offending value; `None` means "no alert".
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Grading {
    /// Outside the patient's range but scoring 0 in NEWS2 (uses the `mild` onset).
    pub mild: Option<Priority>,
    pub subscore_1: Option<Priority>,
    pub subscore_2: Option<Priority>,
    pub subscore_3: Option<Priority>,
}

impl Default for Grading {
    fn default() -> Grading {
        Grading {
            mild: Some(Priority::Low),
            subscore_1: Some(Priority::Low),
            subscore_2: Some(Priority::Medium),
            subscore_3: Some(Priority::High),
        }
    }
}

impl Grading {
    /// The priority for a NEWS2 subscore (0 is "mild").
    pub fn for_subscore(&self, subscore: u8) -> Option<Priority> {
        match subscore {
            0 => self.mild,
            1 => self.subscore_1,
            2 => self.subscore_2,
            _ => self.subscore_3,
        }
    }
}

/// Priority by NEWS2 clinical risk [NEWS2-RCPJ]; `None` means "no alert".
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct News2Grading {
    /// A single parameter scoring 3: urgent ward-based response.
    pub low_medium: Option<Priority>,
    /// Aggregate 5–6: urgent response.
    pub medium: Option<Priority>,
    /// Aggregate ≥ 7: emergency response.
    pub high: Option<Priority>,
}

impl Default for News2Grading {
    fn default() -> News2Grading {
        News2Grading {
            low_medium: Some(Priority::Medium),
            medium: Some(Priority::Medium),
            high: Some(Priority::High),
        }
    }
}

/// An onset (alarm-condition) delay: the condition must be seen in at least `readings`
/// readings AND for at least `secs` seconds (first to latest) before it raises. Requiring
/// both keeps one artefact from raising (readings) and a burst of queued readings from
/// raising (seconds).
///
/// With `window_s`, the readings need not be consecutive: `readings` readings showing the
/// condition within the last `window_s` seconds suffice, so a condition that comes and goes
/// with noise (below a limit on 40 % of readings) still raises (issue 18, S4). Without it,
/// one reading without the condition starts the count again.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Onset {
    pub readings: u32,
    pub secs: u64,
    #[serde(default)]
    pub window_s: Option<u64>,
}

/// Onset delays by priority.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OnsetByPriority {
    /// HIGH: 2 readings within 15 s (2 of the last 3 at 5 s), so one artefact never raises
    /// it; the alarm-condition delay IEC 60601-1-8 allows, kept to one reading interval. A
    /// corroborated value beyond the glitch bounds (`artefact`) raises at once.
    pub high: Onset,
    /// MEDIUM: 3 readings within 30 s, spanning 15 s.
    pub medium: Onset,
    /// LOW: 5 readings within 2 minutes, spanning 60 s.
    pub low: Onset,
    /// Mild (outside the patient's range, NEWS2 subscore 0): 10 consecutive readings and 5
    /// minutes: only a sustained mild deviation is worth a LOW alert.
    pub mild: Onset,
}

impl Default for OnsetByPriority {
    fn default() -> OnsetByPriority {
        OnsetByPriority {
            high: Onset {
                readings: 2,
                secs: 0,
                window_s: Some(15),
            },
            medium: Onset {
                readings: 3,
                secs: 15,
                window_s: Some(30),
            },
            low: Onset {
                readings: 5,
                secs: 60,
                window_s: Some(120),
            },
            mild: Onset {
                readings: 10,
                secs: 300,
                window_s: None,
            },
        }
    }
}

impl OnsetByPriority {
    pub fn for_priority(&self, priority: Priority, mild: bool) -> Onset {
        match priority {
            _ if mild => self.mild,
            Priority::High => self.high,
            Priority::Medium => self.medium,
            Priority::Low => self.low,
        }
    }
}

/// A per-condition override; every `None` keeps the built-in default for that condition.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ConditionOverride {
    pub enabled: Option<bool>,
    /// A fixed priority (replaces the grading of vital-sign conditions).
    pub priority: Option<Priority>,
    /// A fixed onset (replaces the by-priority onset).
    pub onset: Option<Onset>,
    pub clear_margin: Option<f64>,
    pub clear_hold_s: Option<u64>,
}

/// The resolved settings of one condition.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ConditionSettings {
    pub enabled: bool,
    /// `Some` for conditions with a fixed priority; `None` for graded ones.
    pub priority: Option<Priority>,
    /// `Some` to override the by-priority onset.
    pub onset: Option<Onset>,
    /// Hysteresis: the value must come back this far inside the limit to count as cleared
    /// (bpm, °C, %, dBm, % battery).
    pub clear_margin: f64,
    /// ... and stay there this long before the alert resolves.
    pub clear_hold_s: u64,
}

/// Built-in defaults per condition.
fn builtin(condition: AlertCondition) -> ConditionSettings {
    use AlertCondition::*;
    let graded = |clear_margin, clear_hold_s| ConditionSettings {
        enabled: true,
        priority: None,
        onset: None,
        clear_margin,
        clear_hold_s,
    };
    let fixed = |priority, onset, clear_margin, clear_hold_s| ConditionSettings {
        enabled: true,
        priority: Some(priority),
        onset,
        clear_margin,
        clear_hold_s,
    };
    // A value already known to be impossible needs no delay to rule out an artefact.
    let immediate = Some(Onset {
        readings: 1,
        secs: 0,
        window_s: None,
    });
    match condition {
        // 5 bpm below/above the limit for a minute: HR 105 clears at ≤ 95 bpm.
        HeartRateHigh | HeartRateLow => graded(5.0, 60),
        // 0.2 °C: twice a thermometer's 0.1 °C resolution.
        TemperatureHigh | TemperatureLow => graded(0.2, 60),
        // SpO2 is reported in whole percent; the hold time alone de-flaps it.
        Spo2Low => graded(0.0, 60),
        // 2 breaths/min: twice the counting resolution.
        RespiratoryRateHigh | RespiratoryRateLow => graded(2.0, 60),
        // 5 mmHg: a cuff's typical repeatability.
        SystolicBpLow | BloodPressureHigh => graded(5.0, 60),
        // ACVPU is categorical and recorded by a person, not a sensor that glitches: at once;
        // clears once "A" is recorded again and held.
        ConsciousnessChanged => ConditionSettings {
            onset: immediate,
            ..graded(0.0, 60)
        },
        // NEWS2 (scored on a smoothed observation set, `news2::LatestVitals`) raises once the
        // score persists for a second observation set, so the urgent alarm comes within one
        // reading interval of the score reaching it; it changes slowly and is acted on by
        // review, so it clears only after 2 minutes of a complete set scoring lower.
        News2 => ConditionSettings {
            onset: Some(Onset {
                readings: 2,
                secs: 0,
                window_s: Some(15),
            }),
            ..graded(0.0, 120)
        },
        SensorFault => fixed(Priority::Medium, immediate, 0.0, 30),
        // Repeated artefacts only (the LOW onset): an isolated one is ignored, not announced.
        Artefact => fixed(Priority::Low, None, 0.0, 60),
        WeakSignal => fixed(Priority::Low, None, 5.0, 60),
        LowBattery => fixed(Priority::Low, None, 5.0, 60),
        // Raised by the offline deadline (itself the delay); resolves on the next reading.
        DeviceOffline => fixed(Priority::Medium, immediate, 0.0, 0),
        MlAnomaly => fixed(Priority::Low, None, 0.0, 60),
        UnknownDevice => fixed(Priority::Medium, None, 0.0, 60),
    }
}

/// When unacknowledged alerts escalate; `None` disables escalation for that priority.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EscalationConfig {
    /// Site policy, not a standard: a HIGH alert nobody acknowledges in 2 minutes goes up a
    /// level (thingsboard/thingsboard#8520, `CLINICAL.md` §4.1).
    pub high_after_s: Option<u64>,
    /// MEDIUM after 10 minutes (NEWS2 5–6 asks for review within the hour).
    pub medium_after_s: Option<u64>,
    pub low_after_s: Option<u64>,
    /// Reminders: a further level every this many seconds while still unacknowledged.
    pub repeat_every_s: u64,
    /// The highest level; reminders stop there.
    pub max_level: u32,
}

impl Default for EscalationConfig {
    fn default() -> EscalationConfig {
        EscalationConfig {
            high_after_s: Some(120),
            medium_after_s: Some(600),
            low_after_s: None,
            repeat_every_s: 300,
            max_level: 12,
        }
    }
}

impl EscalationConfig {
    pub fn after_s(&self, priority: Priority) -> Option<u64> {
        match priority {
            Priority::High => self.high_after_s,
            Priority::Medium => self.medium_after_s,
            Priority::Low => self.low_after_s,
        }
    }
}

/// Severe hypertension: NEWS2 scores systolic 111–219 as 0, so a systolic of 200 raises
/// nothing there; a blood pressure of 180/120 or more asks for an urgent review (issue 18;
/// 180/120 is the severe-hypertension threshold of NICE NG136, unverified here).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HypertensionConfig {
    /// Systolic at or above this raises BLOOD_PRESSURE_HIGH (default 180 mmHg).
    pub systolic_at_or_above: f64,
    /// Diastolic at or above this raises it (default 120 mmHg).
    pub diastolic_at_or_above: f64,
    /// Its priority below systolic 220 (default MEDIUM: an urgent, prompt response); `None`
    /// turns it off. Systolic ≥ 220 scores 3 in NEWS2 and is always HIGH.
    pub priority: Option<Priority>,
}

impl Default for HypertensionConfig {
    fn default() -> HypertensionConfig {
        HypertensionConfig {
            systolic_at_or_above: 180.0,
            diastolic_at_or_above: 120.0,
            priority: Some(Priority::Medium),
        }
    }
}

/// Artefact handling (see `docs/ALERTS.md`, "Artefacts"). A HIGH physiological alarm needs
/// the HIGH onset's persistence (`onset.high`, by default 2 readings within 15 s) unless its
/// value is beyond these bounds AND another vital of the same reading is abnormal; a pulse or
/// SpO2 that jumps further than physiology allows is an artefact (a LOW technical
/// SENSOR_FAULT), and its value is ignored by physiological alarms and NEWS2.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ArtefactConfig {
    /// A pulse change of at least this many bpm ... (default 60: a sinus rhythm does not move
    /// 60 bpm within seconds; an abrupt real arrhythmia is confirmed by the next reading).
    pub heart_rate_jump_bpm: f64,
    /// ... or an SpO2 fall of at least this many points (default 15: oximeters average over
    /// several seconds, so a real desaturation shows as a slope) ...
    pub spo2_drop_pct: f64,
    /// ... within this many seconds of the previous reading (default 10).
    pub jump_within_s: u64,
    /// A temperature falling at least this fast (°C per minute, over a minute or more) is a
    /// probe coming off, not a patient cooling (default 1.0: even cold-water immersion cools
    /// the core far slower).
    pub probe_fall_c_per_min: f64,
    /// Below this (default 33 °C) with a normal pulse and no other abnormal vital, the probe is
    /// off: a patient that cold is bradycardic or otherwise unwell.
    pub probe_off_below_c: f64,
    /// Corroborated values at or beyond these raise HIGH at once.
    pub immediate_heart_rate_at_or_above: f64,
    pub immediate_heart_rate_at_or_below: f64,
    pub immediate_spo2_at_or_below: f64,
    pub immediate_respiratory_rate_at_or_above: f64,
    pub immediate_respiratory_rate_at_or_below: f64,
    pub immediate_systolic_at_or_below: f64,
}

impl Default for ArtefactConfig {
    fn default() -> ArtefactConfig {
        ArtefactConfig {
            heart_rate_jump_bpm: 60.0,
            spo2_drop_pct: 15.0,
            jump_within_s: 10,
            probe_fall_c_per_min: 1.0,
            probe_off_below_c: 33.0,
            immediate_heart_rate_at_or_above: 150.0,
            immediate_heart_rate_at_or_below: 35.0,
            immediate_spo2_at_or_below: 84.0,
            immediate_respiratory_rate_at_or_above: 35.0,
            immediate_respiratory_rate_at_or_below: 6.0,
            immediate_systolic_at_or_below: 80.0,
        }
    }
}

/// Device-offline detection.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OfflineConfig {
    /// How often a device is expected to send, in milliseconds (the simulator's 5 s).
    pub expected_interval_ms: u64,
    /// A device is offline after this many expected intervals without a reading.
    pub factor: u32,
}

impl Default for OfflineConfig {
    fn default() -> OfflineConfig {
        OfflineConfig {
            expected_interval_ms: 5_000,
            factor: 3,
        }
    }
}

/// A configuration value that cannot work; names the key.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("alerting.{key}: {problem}")]
    Invalid { key: String, problem: &'static str },
}

fn invalid(key: impl Into<String>, problem: &'static str) -> ConfigError {
    ConfigError::Invalid {
        key: key.into(),
        problem,
    }
}

fn check_onset(key: String, onset: Onset) -> Result<(), ConfigError> {
    if onset.readings == 0 {
        return Err(invalid(key, "readings must be at least 1"));
    }
    if onset.window_s.is_some_and(|window| window < onset.secs) {
        return Err(invalid(key, "window_s must be at least secs"));
    }
    Ok(())
}

impl AlertConfig {
    /// The settings of one condition: the built-in defaults with this config's override.
    pub fn condition(&self, condition: AlertCondition) -> ConditionSettings {
        let mut settings = builtin(condition);
        if let Some(over) = self.conditions.get(&condition) {
            settings.enabled = over.enabled.unwrap_or(settings.enabled);
            settings.priority = over.priority.or(settings.priority);
            settings.onset = over.onset.or(settings.onset);
            settings.clear_margin = over.clear_margin.unwrap_or(settings.clear_margin);
            settings.clear_hold_s = over.clear_hold_s.unwrap_or(settings.clear_hold_s);
        }
        settings
    }

    /// Checks every value that could make alerting unsafe or meaningless.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.audio_pause_max_s == 0 || self.audio_pause_max_s > AUDIO_PAUSE_HARD_CAP_S {
            return Err(invalid(
                "audio_pause_max_s",
                "must be between 1 and 300 seconds",
            ));
        }
        let onsets = [
            ("onset.high", self.onset.high),
            ("onset.medium", self.onset.medium),
            ("onset.low", self.onset.low),
            ("onset.mild", self.onset.mild),
        ];
        for (key, onset) in onsets {
            check_onset(key.to_owned(), onset)?;
        }
        if self.grading.subscore_3 != Some(Priority::High) {
            // A value NEWS2 scores 3 needs an immediate response; no site may lower it.
            return Err(invalid("grading.subscore_3", "must be \"high\""));
        }
        if self.news2.high != Some(Priority::High) {
            return Err(invalid("news2.high", "must be \"high\" (NEWS2 ≥ 7)"));
        }
        for (condition, over) in &self.conditions {
            let key = |field: &str| format!("conditions.{condition}.{field}");
            if over
                .clear_margin
                .is_some_and(|m| !(m.is_finite() && m >= 0.0))
            {
                return Err(invalid(key("clear_margin"), "must be a finite number >= 0"));
            }
            if let Some(onset) = over.onset {
                check_onset(key("onset"), onset)?;
            }
            if over.priority.is_some() && *condition == AlertCondition::News2 {
                return Err(invalid(key("priority"), "NEWS2 is graded by `news2`"));
            }
        }
        let hypertension = self.hypertension;
        if !(hypertension.systolic_at_or_above.is_finite()
            && (111.0..=220.0).contains(&hypertension.systolic_at_or_above))
        {
            return Err(invalid(
                "hypertension.systolic_at_or_above",
                "must be between 111 and 220 mmHg",
            ));
        }
        if !(hypertension.diastolic_at_or_above.is_finite()
            && (60.0..=200.0).contains(&hypertension.diastolic_at_or_above))
        {
            return Err(invalid(
                "hypertension.diastolic_at_or_above",
                "must be between 60 and 200 mmHg",
            ));
        }
        if self.onset.high.readings > 3 || self.onset.high.secs > 15 {
            // A HIGH alarm must come within a few readings: persistence, not a long delay.
            return Err(invalid(
                "onset.high",
                "readings must be at most 3 and secs at most 15",
            ));
        }
        let artefact = self.artefact;
        let finite = [
            artefact.heart_rate_jump_bpm,
            artefact.spo2_drop_pct,
            artefact.probe_fall_c_per_min,
            artefact.probe_off_below_c,
            artefact.immediate_heart_rate_at_or_above,
            artefact.immediate_heart_rate_at_or_below,
            artefact.immediate_spo2_at_or_below,
            artefact.immediate_respiratory_rate_at_or_above,
            artefact.immediate_respiratory_rate_at_or_below,
            artefact.immediate_systolic_at_or_below,
        ];
        if finite.iter().any(|v| !v.is_finite())
            || artefact.heart_rate_jump_bpm <= 0.0
            || artefact.spo2_drop_pct <= 0.0
            || artefact.probe_fall_c_per_min <= 0.0
        {
            return Err(invalid(
                "artefact",
                "every value must be finite and the jumps positive",
            ));
        }
        if self.escalation.repeat_every_s == 0 {
            return Err(invalid("escalation.repeat_every_s", "must be at least 1"));
        }
        if self.offline.expected_interval_ms == 0 || self.offline.factor == 0 {
            return Err(invalid(
                "offline",
                "expected_interval_ms and factor must be at least 1",
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Parses a JSON config (the TOML table has the same shape) and validates it.
    fn check(json: &str, expected: Result<(), &str>) -> AlertConfig {
        let config: AlertConfig = serde_json::from_str(json).expect("well-formed config");
        let result = config.validate().map_err(|err| err.to_string());
        assert_eq!(
            result.as_ref().map(|_| ()).map_err(String::as_str),
            expected,
            "{json}"
        );
        config
    }

    #[test]
    fn defaults_validate_and_overrides_merge() {
        let config = check("{}", Ok(()));
        assert_eq!(config, AlertConfig::default());
        let config = check(
            r#"{"conditions":{"HEART_RATE_HIGH":{"clear_hold_s":30}},"audio_pause_max_s":180}"#,
            Ok(()),
        );
        let hr = config.condition(AlertCondition::HeartRateHigh);
        assert_eq!(hr.clear_hold_s, 30);
        assert_eq!(
            hr.clear_margin, 5.0,
            "unset keys keep the condition's default"
        );
        assert_eq!(config.audio_pause_max_s, 180);
    }

    #[test]
    fn invalid_values_name_the_key() {
        check(
            r#"{"audio_pause_max_s":900}"#,
            Err("alerting.audio_pause_max_s: must be between 1 and 300 seconds"),
        );
        check(
            r#"{"grading":{"subscore_3":"medium"}}"#,
            Err("alerting.grading.subscore_3: must be \"high\""),
        );
        check(
            r#"{"conditions":{"WEAK_SIGNAL":{"clear_margin":-1}}}"#,
            Err("alerting.conditions.WEAK_SIGNAL.clear_margin: must be a finite number >= 0"),
        );
        check(
            r#"{"onset":{"low":{"readings":0,"secs":5}}}"#,
            Err("alerting.onset.low: readings must be at least 1"),
        );
        assert!(serde_json::from_str::<AlertConfig>(r#"{"latch":true}"#).is_err());
    }
}
