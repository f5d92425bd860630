//! NEWS2, the Royal College of Physicians' National Early Warning Score 2 (RCP 2017).
//!
//! Owns the per-parameter bands of RCP Chart 1, the aggregate (0–20), the clinical-risk
//! category, and [`LatestVitals`] (`latest.rs`): the recent values of each parameter with
//! their times, so a score can be computed from several readings of one device, each
//! parameter valid for its own interval ([`Validity`]). A score with missing or stale
//! parameters is still computed (they score nothing) and is flagged `partial` with the list of
//! what is missing and what is stale: a partial total is a lower bound of the true one.
//!
//! Bands, from the team's clinical reference (CLINICAL.md §1) ([NEWS2-chart], [NEWS2-RCPJ], [NEWS2-calc]):
//!
//! | Parameter | 3 | 2 | 1 | 0 | 1 | 2 | 3 |
//! |---|---|---|---|---|---|---|---|
//! | Respiration rate (/min) | ≤8 | | 9–11 | 12–20 | | 21–24 | ≥25 |
//! | SpO2 Scale 1 (%) | ≤91 | 92–93 | 94–95 | ≥96 | | | |
//! | SpO2 Scale 2 (%) | ≤83 | 84–85 | 86–87 | 88–92, or ≥93 on air | 93–94 on O2 | 95–96 on O2 | ≥97 on O2 |
//! | Air or oxygen? | | Oxygen | | Air | | | |
//! | Systolic BP (mmHg) | ≤90 | 91–100 | 101–110 | 111–219 | | | ≥220 |
//! | Pulse (/min) | ≤40 | | 41–50 | 51–90 | 91–110 | 111–130 | ≥131 |
//! | Consciousness | | | | Alert | | | new Confusion, V, P or U |
//! | Temperature (°C) | ≤35.0 | | 35.1–36.0 | 36.1–38.0 | 38.1–39.0 | ≥39.1 | |
//!
//! The chart bands integers (one decimal for temperature). Sensors report reals, so values are
//! rounded half away from zero before banding: respiration rate, SpO2, systolic BP and pulse to
//! a whole number, temperature to 0.1 °C (36.05 scores as 36.1). This module does no I/O and
//! reads no clock: the window is judged against a `now` the caller passes in.

pub use crate::telemetry::Spo2Scale;
use crate::telemetry::{Consciousness, Reading};
use serde::{Deserialize, Serialize};

/// The seven NEWS2 parameters, in chart order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum Parameter {
    RespirationRate,
    Spo2,
    AirOrOxygen,
    SystolicBp,
    Pulse,
    Consciousness,
    Temperature,
}

impl Parameter {
    pub const ALL: [Parameter; 7] = [
        Parameter::RespirationRate,
        Parameter::Spo2,
        Parameter::AirOrOxygen,
        Parameter::SystolicBp,
        Parameter::Pulse,
        Parameter::Consciousness,
        Parameter::Temperature,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Parameter::RespirationRate => "respiration_rate",
            Parameter::Spo2 => "spo2",
            Parameter::AirOrOxygen => "air_or_oxygen",
            Parameter::SystolicBp => "systolic_bp",
            Parameter::Pulse => "pulse",
            Parameter::Consciousness => "consciousness",
            Parameter::Temperature => "temperature",
        }
    }
}

/// The NEWS2 clinical-risk category and the response it calls for [NEWS2-RCPJ].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum ClinicalRisk {
    /// Aggregate 0–4 with no single parameter scoring 3: ward-based response.
    Low,
    /// Aggregate 0–4 with a single parameter scoring 3: urgent ward-based response.
    LowMedium,
    /// Aggregate 5–6: urgent response, review within 1 hour.
    Medium,
    /// Aggregate 7 or more: emergency response, continuous monitoring.
    High,
}

/// The inputs of one NEWS2 score; `None` means not known.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Inputs {
    pub respiration_rate_per_min: Option<f64>,
    pub spo2_pct: Option<f64>,
    pub on_oxygen: Option<bool>,
    pub systolic_bp_mmhg: Option<f64>,
    pub pulse_bpm: Option<f64>,
    pub consciousness: Option<Consciousness>,
    pub temperature_c: Option<f64>,
}

impl Inputs {
    /// The NEWS2 inputs carried by one reading (its heart rate is the pulse).
    pub fn from_reading(reading: &Reading) -> Inputs {
        Inputs {
            respiration_rate_per_min: reading.respiratory_rate_per_min,
            spo2_pct: reading.spo2_pct,
            on_oxygen: reading.on_oxygen,
            systolic_bp_mmhg: reading.systolic_bp_mmhg,
            pulse_bpm: reading.heart_rate_bpm,
            consciousness: reading.consciousness,
            temperature_c: reading.body_temp_c,
        }
    }
}

/// Per-parameter subscores; `None` where the parameter was missing.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Subscores {
    pub respiration_rate: Option<u8>,
    pub spo2: Option<u8>,
    pub air_or_oxygen: Option<u8>,
    pub systolic_bp: Option<u8>,
    pub pulse: Option<u8>,
    pub consciousness: Option<u8>,
    pub temperature: Option<u8>,
}

impl Subscores {
    /// The subscore of one parameter.
    pub fn get(&self, parameter: Parameter) -> Option<u8> {
        match parameter {
            Parameter::RespirationRate => self.respiration_rate,
            Parameter::Spo2 => self.spo2,
            Parameter::AirOrOxygen => self.air_or_oxygen,
            Parameter::SystolicBp => self.systolic_bp,
            Parameter::Pulse => self.pulse,
            Parameter::Consciousness => self.consciousness,
            Parameter::Temperature => self.temperature,
        }
    }
}

/// One NEWS2 score.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct News2 {
    /// The aggregate, 0–20 (a lower bound when `partial`).
    pub total: u8,
    pub subscores: Subscores,
    pub risk: ClinicalRisk,
    /// The scale SpO2 was scored on, so consumers (alerting) grade SpO2 the same way.
    pub scale: Spo2Scale,
    /// True when at least one parameter was missing: the total is then a lower bound.
    pub partial: bool,
    /// The missing parameters, in chart order; empty unless `partial`. Stale ones are here too.
    pub missing: Vec<Parameter>,
    /// The parameters that were measured, but longer ago than they stay valid (an hourly BP
    /// two hours old): flagged, never scored as normal (issue 18, point 5). In chart order.
    #[serde(default)]
    pub stale: Vec<Parameter>,
}

/// Scores `inputs` on the given SpO2 scale.
///
/// Under Scale 2 with the air/oxygen flag unknown, an SpO2 of 93 % or more scores 0 (as on air)
/// and the score is partial (air/oxygen missing).
pub fn score(inputs: &Inputs, scale: Spo2Scale) -> News2 {
    let subscores = Subscores {
        respiration_rate: inputs
            .respiration_rate_per_min
            .map(respiration_rate_subscore),
        spo2: inputs
            .spo2_pct
            .map(|spo2| spo2_subscore(spo2, scale, inputs.on_oxygen.unwrap_or(false))),
        air_or_oxygen: inputs.on_oxygen.map(air_or_oxygen_subscore),
        systolic_bp: inputs.systolic_bp_mmhg.map(systolic_bp_subscore),
        pulse: inputs.pulse_bpm.map(pulse_subscore),
        consciousness: inputs.consciousness.map(consciousness_subscore),
        temperature: inputs.temperature_c.map(temperature_subscore),
    };
    let missing: Vec<Parameter> = Parameter::ALL
        .into_iter()
        .filter(|parameter| subscores.get(*parameter).is_none())
        .collect();
    let scores = Parameter::ALL.map(|parameter| subscores.get(parameter).unwrap_or(0));
    let total = scores.iter().sum::<u8>();
    let any_three = scores.contains(&3);
    News2 {
        total,
        subscores,
        risk: risk(total, any_three),
        scale,
        partial: !missing.is_empty(),
        missing,
        stale: Vec::new(),
    }
}

/// The clinical-risk category of an aggregate [NEWS2-RCPJ]: ≥7 high, 5–6 medium, a single 3
/// low–medium, otherwise low.
pub fn risk(total: u8, any_single_three: bool) -> ClinicalRisk {
    match total {
        7.. => ClinicalRisk::High,
        5..=6 => ClinicalRisk::Medium,
        _ if any_single_three => ClinicalRisk::LowMedium,
        _ => ClinicalRisk::Low,
    }
}

/// Rounds half away from zero to a whole number; the tiny nudge makes a decimal such as 90.5,
/// stored as 90.499999…, round the way it reads.
fn whole(value: f64) -> i64 {
    (value + 1e-9_f64.copysign(value)).round() as i64
}

/// Respiration rate: ≤8 → 3, 9–11 → 1, 12–20 → 0, 21–24 → 2, ≥25 → 3.
pub fn respiration_rate_subscore(per_min: f64) -> u8 {
    match whole(per_min) {
        ..=8 => 3,
        9..=11 => 1,
        12..=20 => 0,
        21..=24 => 2,
        _ => 3,
    }
}

/// SpO2 on Scale 1 (≤91 → 3, 92–93 → 2, 94–95 → 1, ≥96 → 0) or Scale 2 (≤83 → 3, 84–85 → 2,
/// 86–87 → 1, 88–92 → 0, ≥93 on air → 0, 93–94 on O2 → 1, 95–96 on O2 → 2, ≥97 on O2 → 3).
pub fn spo2_subscore(pct: f64, scale: Spo2Scale, on_oxygen: bool) -> u8 {
    let pct = whole(pct);
    match scale {
        Spo2Scale::Scale1 => match pct {
            ..=91 => 3,
            92..=93 => 2,
            94..=95 => 1,
            _ => 0,
        },
        Spo2Scale::Scale2 => match pct {
            ..=83 => 3,
            84..=85 => 2,
            86..=87 => 1,
            88..=92 => 0,
            _ if !on_oxygen => 0,
            93..=94 => 1,
            95..=96 => 2,
            _ => 3,
        },
    }
}

/// Air → 0, supplemental oxygen → 2.
pub fn air_or_oxygen_subscore(on_oxygen: bool) -> u8 {
    if on_oxygen { 2 } else { 0 }
}

/// Systolic BP: ≤90 → 3, 91–100 → 2, 101–110 → 1, 111–219 → 0, ≥220 → 3.
pub fn systolic_bp_subscore(mmhg: f64) -> u8 {
    match whole(mmhg) {
        ..=90 => 3,
        91..=100 => 2,
        101..=110 => 1,
        111..=219 => 0,
        _ => 3,
    }
}

/// Pulse: ≤40 → 3, 41–50 → 1, 51–90 → 0, 91–110 → 1, 111–130 → 2, ≥131 → 3.
pub fn pulse_subscore(bpm: f64) -> u8 {
    match whole(bpm) {
        ..=40 => 3,
        41..=50 => 1,
        51..=90 => 0,
        91..=110 => 1,
        111..=130 => 2,
        _ => 3,
    }
}

/// Consciousness: Alert → 0; new Confusion, Voice, Pain or Unresponsive → 3.
pub fn consciousness_subscore(level: Consciousness) -> u8 {
    match level {
        Consciousness::Alert => 0,
        _ => 3,
    }
}

/// Temperature, rounded to 0.1 °C first: ≤35.0 → 3, 35.1–36.0 → 1, 36.1–38.0 → 0,
/// 38.1–39.0 → 1, ≥39.1 → 2.
pub fn temperature_subscore(celsius: f64) -> u8 {
    // Compare in tenths of a degree, as integers, so 36.0 vs 36.1 is exact.
    match whole(celsius * 10.0) {
        ..=350 => 3,
        351..=360 => 1,
        361..=380 => 0,
        381..=390 => 1,
        _ => 2,
    }
}

mod latest;
pub use latest::{LatestVitals, Observed, Validity};

#[cfg(test)]
mod tests;
