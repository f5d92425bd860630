//! NEWS2 over time: the recent values of each parameter of one device, each valid for its own
//! interval, scored as one observation set.
//!
//! Devices report parameters in different messages (a wearable sends pulse every few seconds,
//! a cuff sends BP every hour, a nurse enters ACVPU every 4 hours). Each parameter's latest
//! value stays valid for its [`Validity`] interval (at least the device's own reporting
//! interval); after that it is *stale*: listed in [`News2::stale`], scored as nothing and the
//! total flagged partial — never treated as normal.
//!
//! Continuously measured values are noisy (a pulse read every 5 s moves a few bpm between
//! readings), and a score re-banded from every single reading flips between neighbouring
//! totals when a value sits near a band edge. So a numeric parameter is scored by the
//! interquartile mean of its readings within `smooth_s` before its latest one (the mean of the
//! middle half: as smooth as a mean, as robust to an outlier as a median): the observation a
//! nurse would record after watching the monitor for a while. The service's default window
//! is 30 s (`alerting.news2_smooth_s`): on the shipped scenarios it keeps a stable NEWS2 4
//! from flipping to 5, and the urgent alarm within 45 s of a slow sepsis-like rise reaching
//! 5 (60 s smoothed it too long: 115 s; none flipped: 80 s). With `smooth_s = 0` the latest value is
//! scored as it is.

use super::{Inputs, News2, Parameter, Spo2Scale, score};
use crate::telemetry::{Consciousness, Field, FieldSet, Reading, Timestamp, VitalKey};
use serde::{Deserialize, Serialize};
use std::collections::VecDeque;

/// The longest smoothing window kept, in seconds.
const MAX_SMOOTH_S: i64 = 600;
/// ... and at most this many values per parameter (a reading every 5 s for 10 minutes).
const MAX_HISTORY: usize = 128;

/// How long each parameter's latest value counts, in seconds (the `[alerting.news2_validity]`
/// table). The defaults follow how each is measured on a ward: pulse, SpO2 and respiration
/// from a continuous monitor (5 minutes: longer and the patient is unmonitored), BP and
/// temperature from hourly spot checks, ACVPU and air/oxygen recorded by a person at the
/// 4-hourly observation round RCP recommends for a NEWS2 of 1–4 [NEWS2-RCPJ].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Validity {
    pub respiration_rate_s: u64,
    pub spo2_s: u64,
    pub air_or_oxygen_s: u64,
    pub systolic_bp_s: u64,
    pub pulse_s: u64,
    pub consciousness_s: u64,
    pub temperature_s: u64,
}

impl Default for Validity {
    fn default() -> Validity {
        Validity {
            respiration_rate_s: 300,
            spo2_s: 300,
            air_or_oxygen_s: 4 * 3600,
            systolic_bp_s: 3600,
            pulse_s: 300,
            consciousness_s: 4 * 3600,
            temperature_s: 3600,
        }
    }
}

impl Validity {
    /// The same validity for every parameter (e.g. a replay's fixed window).
    pub fn uniform(secs: u64) -> Validity {
        Validity {
            respiration_rate_s: secs,
            spo2_s: secs,
            air_or_oxygen_s: secs,
            systolic_bp_s: secs,
            pulse_s: secs,
            consciousness_s: secs,
            temperature_s: secs,
        }
    }

    pub fn of(&self, parameter: Parameter) -> u64 {
        match parameter {
            Parameter::RespirationRate => self.respiration_rate_s,
            Parameter::Spo2 => self.spo2_s,
            Parameter::AirOrOxygen => self.air_or_oxygen_s,
            Parameter::SystolicBp => self.systolic_bp_s,
            Parameter::Pulse => self.pulse_s,
            Parameter::Consciousness => self.consciousness_s,
            Parameter::Temperature => self.temperature_s,
        }
    }

    /// Every interval at least `secs` (a device that reports every 15 minutes keeps each of
    /// its values at least that long).
    pub fn at_least(self, secs: u64) -> Validity {
        Validity {
            respiration_rate_s: self.respiration_rate_s.max(secs),
            spo2_s: self.spo2_s.max(secs),
            air_or_oxygen_s: self.air_or_oxygen_s.max(secs),
            systolic_bp_s: self.systolic_bp_s.max(secs),
            pulse_s: self.pulse_s.max(secs),
            consciousness_s: self.consciousness_s.max(secs),
            temperature_s: self.temperature_s.max(secs),
        }
    }

    /// The first interval that is zero, by its key (zero would make every value stale).
    pub fn zero_key(&self) -> Option<&'static str> {
        Parameter::ALL
            .into_iter()
            .find(|parameter| self.of(*parameter) == 0)
            .map(Parameter::as_str)
    }
}

/// A value and when it was measured.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Observed<T> {
    pub value: T,
    pub at: Timestamp,
}

/// The latest known value of each NEWS2 parameter of one device, with its time, and the
/// recent values of the numeric ones (for smoothing). The caller keeps one per device, feeds
/// it every accepted reading, and scores it. Serialisable: on PostgreSQL it is stored with the
/// device's alert state.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct LatestVitals {
    pub respiration_rate_per_min: Option<Observed<f64>>,
    pub spo2_pct: Option<Observed<f64>>,
    pub on_oxygen: Option<Observed<bool>>,
    pub systolic_bp_mmhg: Option<Observed<f64>>,
    pub pulse_bpm: Option<Observed<f64>>,
    pub consciousness: Option<Observed<Consciousness>>,
    pub temperature_c: Option<Observed<f64>>,
    /// Recent values of the five numeric parameters, oldest first, in `NUMERIC` order.
    history: [VecDeque<(Timestamp, f64)>; 5],
    /// The same values, each parameter's sorted (derived state, not stored).
    #[serde(skip)]
    sorted: SortedHistory,
}

/// Each parameter's `history` values in `f64::total_cmp` order, kept in step with `history`
/// by [`LatestVitals::observe`] and [`LatestVitals::forget_unsmoothed`] (an insert or removal
/// moves at most `MAX_HISTORY` values), so that smoothing over a window holding the whole
/// history needs no sort: with devices publishing at full speed the sorts were an eighth of
/// the broker thread. A parameter whose copy does not match its history (a deserialised state starts
/// empty) is rebuilt at its next value; until then its windows are sorted as before.
#[derive(Clone, Debug, Default)]
struct SortedHistory([Vec<f64>; 5]);

/// Derived state: two `LatestVitals` with the same history are equal whatever it holds.
impl PartialEq for SortedHistory {
    fn eq(&self, _: &SortedHistory) -> bool {
        true
    }
}

impl SortedHistory {
    fn synced(&self, idx: usize, history: &VecDeque<(Timestamp, f64)>) -> Option<&[f64]> {
        let sorted = &self.0[idx];
        (sorted.len() == history.len()).then_some(sorted.as_slice())
    }

    fn insert(&mut self, idx: usize, value: f64) {
        let sorted = &mut self.0[idx];
        let at = sorted.partition_point(|held| held.total_cmp(&value).is_lt());
        sorted.insert(at, value);
    }

    /// Replaces one copy of `gone` by `value` with one move of the values between them (a
    /// full history drops its oldest value for each new one).
    fn replace(&mut self, idx: usize, gone: f64, value: f64) {
        let sorted = &mut self.0[idx];
        let Ok(from) = sorted.binary_search_by(|held| held.total_cmp(&gone)) else {
            return self.insert(idx, value);
        };
        let to = sorted.partition_point(|held| held.total_cmp(&value).is_lt());
        if from < to {
            sorted[from..to].rotate_left(1);
            sorted[to - 1] = value;
        } else {
            sorted[to..=from].rotate_right(1);
            sorted[to] = value;
        }
    }

    /// Removes one copy of `value` (values equal under `total_cmp` are the same bits).
    fn remove(&mut self, idx: usize, value: f64) {
        let sorted = &mut self.0[idx];
        if let Ok(at) = sorted.binary_search_by(|held| held.total_cmp(&value)) {
            sorted.remove(at);
        }
    }

    fn rebuild(&mut self, idx: usize, history: &VecDeque<(Timestamp, f64)>) {
        let sorted = &mut self.0[idx];
        sorted.clear();
        sorted.extend(history.iter().map(|(_, value)| *value));
        sorted.sort_unstable_by(f64::total_cmp);
    }
}

/// The numeric parameters, in the order of `LatestVitals::history`.
const NUMERIC: [Parameter; 5] = [
    Parameter::RespirationRate,
    Parameter::Spo2,
    Parameter::SystolicBp,
    Parameter::Pulse,
    Parameter::Temperature,
];

impl LatestVitals {
    /// Records the parameters `reading` carries, at the reading's timestamp, skipping the
    /// `untrusted` fields (those a SENSOR_FAULT finding blamed, see
    /// [`crate::rules::Finding::faulted_fields`], and artefacts). A reading older than a value
    /// already held does not replace it.
    pub fn observe(&mut self, reading: &Reading, untrusted: FieldSet) {
        let at = reading.timestamp;
        let trusted = |key: VitalKey| !untrusted.contains(Field::Vital(key));
        let numeric = [
            (
                VitalKey::RespiratoryRate,
                &mut self.respiration_rate_per_min,
                reading.respiratory_rate_per_min,
            ),
            (VitalKey::Spo2, &mut self.spo2_pct, reading.spo2_pct),
            (
                VitalKey::SystolicBp,
                &mut self.systolic_bp_mmhg,
                reading.systolic_bp_mmhg,
            ),
            (
                VitalKey::HeartRate,
                &mut self.pulse_bpm,
                reading.heart_rate_bpm,
            ),
            (
                VitalKey::BodyTemp,
                &mut self.temperature_c,
                reading.body_temp_c,
            ),
        ];
        let sorted = &mut self.sorted;
        for (idx, ((key, slot, value), history)) in
            numeric.into_iter().zip(self.history.iter_mut()).enumerate()
        {
            if !trusted(key) {
                continue;
            }
            if let Some(value) = value
                && update(slot, Some(value), at)
            {
                let synced = sorted.synced(idx, history).is_some();
                // The sorted copy takes the new value in place of the first one dropped.
                let mut pending = synced.then_some(value);
                history.push_back((at, value));
                let from = at.saturating_add_micros(-MAX_SMOOTH_S * 1_000_000);
                while history.front().is_some_and(|(then, _)| *then < from)
                    || history.len() > MAX_HISTORY
                {
                    if let Some((_, gone)) = history.pop_front()
                        && synced
                    {
                        match pending.take() {
                            Some(value) => sorted.replace(idx, gone, value),
                            None => sorted.remove(idx, gone),
                        }
                    }
                }
                if let Some(value) = pending {
                    sorted.insert(idx, value);
                }
                if !synced {
                    sorted.rebuild(idx, history);
                }
            }
        }
        if trusted(VitalKey::OnOxygen) {
            update(&mut self.on_oxygen, reading.on_oxygen, at);
        }
        if trusted(VitalKey::Consciousness) {
            update(&mut self.consciousness, reading.consciousness, at);
        }
    }

    /// Forgets the values no smoothing over `smooth_s` will use again: those measured more
    /// than `smooth_s` before their parameter's latest value (which only moves forward), so a
    /// window that is stored after every reading holds what its scoring needs, not the ten
    /// minutes [`LatestVitals::observe`] keeps for any window. Scores at `smooth_s` are the
    /// same with or without it.
    pub fn forget_unsmoothed(&mut self, smooth_s: u64) {
        let smooth = secs_to_micros(smooth_s.min(MAX_SMOOTH_S as u64));
        let latest = [
            self.respiration_rate_per_min.map(|o| o.at),
            self.spo2_pct.map(|o| o.at),
            self.systolic_bp_mmhg.map(|o| o.at),
            self.pulse_bpm.map(|o| o.at),
            self.temperature_c.map(|o| o.at),
        ];
        for (idx, (history, latest)) in self.history.iter_mut().zip(latest).enumerate() {
            let Some(latest) = latest else { continue };
            let synced = self.sorted.synced(idx, history).is_some();
            let from = latest.saturating_add_micros(-smooth);
            while history.front().is_some_and(|(at, _)| *at < from) {
                if let Some((_, gone)) = history.pop_front()
                    && synced
                {
                    self.sorted.remove(idx, gone);
                }
            }
        }
    }

    /// Whether every parameter's sorted copy is in step with its history (tests).
    #[cfg(test)]
    pub(super) fn sorted_in_step(&self) -> bool {
        (0..NUMERIC.len()).all(|idx| self.sorted.synced(idx, &self.history[idx]).is_some())
    }

    /// When the newest value of any parameter was measured.
    pub fn latest_at(&self) -> Option<Timestamp> {
        [
            self.respiration_rate_per_min.map(|o| o.at),
            self.spo2_pct.map(|o| o.at),
            self.on_oxygen.map(|o| o.at),
            self.systolic_bp_mmhg.map(|o| o.at),
            self.pulse_bpm.map(|o| o.at),
            self.consciousness.map(|o| o.at),
            self.temperature_c.map(|o| o.at),
        ]
        .into_iter()
        .flatten()
        .max()
    }

    /// The observation set at `now`: each parameter still valid (its value, or the interquartile
    /// mean of its values within `smooth_s` before its latest), and the stale ones.
    pub fn inputs_at(
        &self,
        now: Timestamp,
        validity: &Validity,
        smooth_s: u64,
    ) -> (Inputs, Vec<Parameter>) {
        let mut stale = Vec::new();
        let mut valid = |parameter: Parameter, at: Timestamp| {
            let limit = secs_to_micros(validity.of(parameter));
            let fresh = now.saturating_sub(at) <= limit;
            if !fresh {
                stale.push(parameter);
            }
            fresh
        };
        let smooth = secs_to_micros(smooth_s.min(MAX_SMOOTH_S as u64));
        let numeric = |parameter: Parameter, slot: Option<Observed<f64>>| {
            let idx = NUMERIC.iter().position(|p| *p == parameter)?;
            let latest = slot?;
            let from = latest.at.saturating_add_micros(-smooth);
            let history = &self.history[idx];
            let window = history
                .iter()
                .filter(|(at, _)| *at >= from && *at <= latest.at)
                .map(|(_, value)| *value);
            let count = window.clone().count();
            if count < 2 {
                return Some(latest.value);
            }
            // The window holds the whole history: its values are already sorted.
            if count == history.len()
                && let Some(sorted) = self.sorted.synced(idx, history)
            {
                return Some(interquartile_mean(sorted));
            }
            // On the stack: this runs for every reading (a heap `Vec` here was ~10 of the
            // ~70 allocations per MQTT reading). Only a history longer than the bound, which
            // `observe` never keeps (a deserialised one could), goes to the heap.
            let mut stack = [0.0f64; MAX_HISTORY];
            let mut heap: Vec<f64>;
            let values: &mut [f64] = if count <= MAX_HISTORY {
                for (slot, value) in stack.iter_mut().zip(window) {
                    *slot = value;
                }
                &mut stack[..count]
            } else {
                heap = window.collect();
                &mut heap
            };
            // Unstable is exact here: values equal under `total_cmp` are the same bits.
            values.sort_unstable_by(f64::total_cmp);
            Some(interquartile_mean(values))
        };
        // Chart order, so `stale` is in chart order too.
        let rr = self
            .respiration_rate_per_min
            .filter(|o| valid(Parameter::RespirationRate, o.at));
        let spo2 = self.spo2_pct.filter(|o| valid(Parameter::Spo2, o.at));
        let on_oxygen = self
            .on_oxygen
            .filter(|o| valid(Parameter::AirOrOxygen, o.at));
        let sbp = self
            .systolic_bp_mmhg
            .filter(|o| valid(Parameter::SystolicBp, o.at));
        let pulse = self.pulse_bpm.filter(|o| valid(Parameter::Pulse, o.at));
        let consciousness = self
            .consciousness
            .filter(|o| valid(Parameter::Consciousness, o.at));
        let temperature = self
            .temperature_c
            .filter(|o| valid(Parameter::Temperature, o.at));
        let inputs = Inputs {
            respiration_rate_per_min: numeric(Parameter::RespirationRate, rr),
            spo2_pct: numeric(Parameter::Spo2, spo2),
            on_oxygen: on_oxygen.map(|o| o.value),
            systolic_bp_mmhg: numeric(Parameter::SystolicBp, sbp),
            pulse_bpm: numeric(Parameter::Pulse, pulse),
            consciousness: consciousness.map(|o| o.value),
            temperature_c: numeric(Parameter::Temperature, temperature),
        };
        (inputs, stale)
    }

    /// NEWS2 of the observation set at `now` (see [`LatestVitals::inputs_at`]), with the stale
    /// parameters flagged.
    pub fn score_at(
        &self,
        now: Timestamp,
        validity: &Validity,
        smooth_s: u64,
        scale: Spo2Scale,
    ) -> News2 {
        let (inputs, stale) = self.inputs_at(now, validity, smooth_s);
        News2 {
            stale,
            ..score(&inputs, scale)
        }
    }

    /// NEWS2 from the values measured within `window_s` seconds before `now`, unsmoothed.
    pub fn score(&self, now: Timestamp, window_s: u64, scale: Spo2Scale) -> News2 {
        self.score_at(now, &Validity::uniform(window_s), 0, scale)
    }
}

/// The mean of the middle half of `sorted` (at least two values), summed in order.
fn interquartile_mean(sorted: &[f64]) -> f64 {
    let cut = sorted.len() / 4;
    let middle = &sorted[cut..sorted.len() - cut];
    middle.iter().sum::<f64>() / middle.len() as f64
}

fn secs_to_micros(secs: u64) -> i64 {
    i64::try_from(secs)
        .unwrap_or(i64::MAX)
        .saturating_mul(1_000_000)
}

/// Stores `value` unless the slot holds a newer one; whether it was stored.
fn update<T: Copy>(slot: &mut Option<Observed<T>>, value: Option<T>, at: Timestamp) -> bool {
    let Some(value) = value else { return false };
    if slot.is_none_or(|held| held.at <= at) {
        *slot = Some(Observed { value, at });
        true
    } else {
        false
    }
}
