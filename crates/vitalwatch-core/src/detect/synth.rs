//! Seeded synthetic data: a physiologically plausible normal population to train on, and a
//! labelled test set with injected anomalies to measure detection against.
//!
//! Each simulated patient has a baseline heart rate (60–85 bpm) and temperature
//! (36.3–37.1 °C). Both follow a circadian rhythm (temperature swings about 0.5 °C peak to
//! trough, lowest around 05:00 and highest around 17:00; heart rate a few bpm lower at night),
//! heart rate rises about 10 bpm per °C of temperature above baseline (Karjalainen & Viitasalo
//! 1986 report 8–10 bpm/°C), and every measurement carries noise. Signal strength sits in
//! −90..−40 dBm and the battery drains from 100 % to 15 % before a recharge. The extended
//! vitals (SpO₂, respiratory rate, blood pressure) stay inside NEWS2's zero-score bands.
//!
//! Everything is drawn from one ChaCha8 stream seeded by the caller: same options, same data.

use super::dataset::Dataset;
use super::feature::{Feature, MAX_FEATURES};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::f64::consts::PI;

/// Shape of a synthetic normal population.
#[derive(Clone, Debug, PartialEq)]
pub struct PopulationOptions {
    pub patients: usize,
    pub readings_per_patient: usize,
    /// Seconds between two readings of one patient.
    pub interval_s: u32,
    /// Seconds since the Unix epoch of the first reading (sets the time of day).
    pub start_epoch_s: i64,
    pub seed: u64,
}

impl Default for PopulationOptions {
    fn default() -> PopulationOptions {
        PopulationOptions {
            patients: 100,
            readings_per_patient: 1000,
            interval_s: 300,
            start_epoch_s: 1_700_000_000,
            seed: 1,
        }
    }
}

/// One patient's constants.
struct Patient {
    hr_bpm: f64,
    temp_c: f64,
    signal_dbm: f64,
    spo2_pct: f64,
    resp_per_min: f64,
    systolic_mmhg: f64,
    diastolic_mmhg: f64,
    /// Seconds a full battery lasts down to 15 %.
    battery_cycle_s: f64,
    /// Where in its cycle the battery is at the first reading, 0..1.
    battery_phase: f64,
}

/// A standard normal draw (Box–Muller), so we need no distribution crate.
fn gaussian(rng: &mut ChaCha8Rng) -> f64 {
    let u1: f64 = 1.0 - rng.random::<f64>();
    let u2: f64 = rng.random();
    (-2.0 * u1.ln()).sqrt() * (2.0 * PI * u2).cos()
}

fn round_to(value: f64, decimals: i32) -> f64 {
    let scale = 10f64.powi(decimals);
    (value * scale).round() / scale
}

fn new_patient(rng: &mut ChaCha8Rng) -> Patient {
    Patient {
        hr_bpm: rng.random_range(60.0..85.0),
        temp_c: rng.random_range(36.3..37.1),
        signal_dbm: rng.random_range(-78.0..-52.0),
        spo2_pct: rng.random_range(96.0..99.0),
        resp_per_min: rng.random_range(12.0..18.0),
        systolic_mmhg: rng.random_range(110.0..135.0),
        diastolic_mmhg: rng.random_range(68.0..85.0),
        battery_cycle_s: rng.random_range(48.0..96.0) * 3600.0,
        battery_phase: rng.random_range(0.0..1.0),
    }
}

/// One reading of `patient` at `epoch_s`, in [`Feature::ALL`] order (a new feature fails to
/// compile here until the physiology gives it a value).
fn reading(
    patient: &Patient,
    epoch_s: f64,
    since_start_s: f64,
    rng: &mut ChaCha8Rng,
) -> [f64; MAX_FEATURES] {
    let hour = epoch_s.rem_euclid(86_400.0) / 3600.0;
    // +1 at 17:00, −1 at 05:00.
    let circadian = (2.0 * PI * (hour - 17.0) / 24.0).cos();
    let temp = patient.temp_c + 0.25 * circadian + 0.08 * gaussian(rng);
    let hr =
        patient.hr_bpm + 4.0 * circadian + 10.0 * (temp - patient.temp_c) + 3.0 * gaussian(rng);
    let signal = (patient.signal_dbm + 6.0 * gaussian(rng)).clamp(-90.0, -40.0);
    let cycle = (since_start_s / patient.battery_cycle_s + patient.battery_phase).fract();
    let battery = (100.0 - 85.0 * cycle).clamp(15.0, 100.0);
    let spo2 = (patient.spo2_pct + 0.7 * gaussian(rng)).clamp(94.0, 100.0);
    let resp = patient.resp_per_min + 0.8 * circadian + gaussian(rng);
    let systolic = patient.systolic_mmhg + 5.0 * circadian + 5.0 * gaussian(rng);
    let diastolic = patient.diastolic_mmhg + 3.0 * circadian + 4.0 * gaussian(rng);
    [
        round_to(hr, 0),
        round_to(temp, 2),
        round_to(signal, 0),
        round_to(battery, 0),
        round_to(spo2, 0),
        round_to(resp, 0),
        round_to(systolic, 0),
        round_to(diastolic, 0),
    ]
}

fn population_rows(options: &PopulationOptions, rng: &mut ChaCha8Rng) -> Vec<[f64; MAX_FEATURES]> {
    let mut rows = Vec::with_capacity(options.patients * options.readings_per_patient);
    for _ in 0..options.patients {
        let patient = new_patient(rng);
        // Patients are admitted at different times of day.
        let admitted_s = rng.random_range(0.0..86_400.0);
        for reading_idx in 0..options.readings_per_patient {
            let since_start_s = reading_idx as f64 * f64::from(options.interval_s);
            let epoch_s = options.start_epoch_s as f64 + admitted_s + since_start_s;
            rows.push(reading(&patient, epoch_s, since_start_s, rng));
        }
    }
    rows
}

fn to_dataset(rows: &[[f64; MAX_FEATURES]], labels: Option<Vec<bool>>) -> Dataset {
    let columns = Feature::ALL
        .iter()
        .enumerate()
        .map(|(col, feature)| (*feature, rows.iter().map(|row| Some(row[col])).collect()))
        .collect();
    Dataset::new(columns, labels).expect("generated columns are equal-length, distinct and finite")
}

/// A normal population: `patients × readings_per_patient` rows of every [`Feature`].
pub fn normal_population(options: &PopulationOptions) -> Dataset {
    let mut rng = ChaCha8Rng::seed_from_u64(options.seed);
    to_dataset(&population_rows(options, &mut rng), None)
}

/// The kinds of anomaly injected into a labelled test set.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Injected {
    /// 38.3–40.5 °C with the heart rate raised to match.
    Fever,
    /// 110–170 bpm.
    Tachycardia,
    /// 30–45 bpm.
    Bradycardia,
    /// A heart rate of 0 or a temperature of 21–24 °C (the probe measures the room).
    SensorFault,
    /// 32–35 °C with the heart rate lowered.
    Hypothermia,
}

impl Injected {
    pub const ALL: [Injected; 5] = [
        Injected::Fever,
        Injected::Tachycardia,
        Injected::Bradycardia,
        Injected::SensorFault,
        Injected::Hypothermia,
    ];

    fn apply(self, row: &mut [f64; MAX_FEATURES], rng: &mut ChaCha8Rng) {
        let (hr, temp) = (0, 1);
        match self {
            Injected::Fever => {
                let fever = rng.random_range(38.3..40.5);
                row[hr] = (row[hr] + 10.0 * (fever - row[temp])).round();
                row[temp] = round_to(fever, 2);
            }
            Injected::Tachycardia => row[hr] = rng.random_range(110.0..170.0f64).round(),
            Injected::Bradycardia => row[hr] = rng.random_range(30.0..45.0f64).round(),
            Injected::SensorFault => {
                if rng.random::<bool>() {
                    row[hr] = 0.0;
                } else {
                    row[temp] = round_to(rng.random_range(21.0..24.0), 2);
                }
            }
            Injected::Hypothermia => {
                let cold = rng.random_range(32.0..35.0);
                row[hr] = (row[hr] - 5.0 * (row[temp] - cold)).round().max(35.0);
                row[temp] = round_to(cold, 2);
            }
        }
    }
}

/// A labelled test set: the normal population of `normal` (new patients, as its seed says),
/// then `per_kind` readings of each [`Injected`] kind, made from further normal readings.
/// Labels are true for injected rows.
pub fn labelled_test_set(normal: &PopulationOptions, per_kind: usize) -> Dataset {
    let mut rng = ChaCha8Rng::seed_from_u64(normal.seed);
    let mut rows = population_rows(normal, &mut rng);
    let n_normal = rows.len();
    let carriers = PopulationOptions {
        patients: Injected::ALL.len() * per_kind.div_ceil(10).max(1),
        readings_per_patient: 10,
        ..normal.clone()
    };
    let mut carrier_rows = population_rows(&carriers, &mut rng).into_iter();
    for kind in Injected::ALL {
        for _ in 0..per_kind {
            let mut row = carrier_rows
                .next()
                .expect("enough carrier readings were generated");
            kind.apply(&mut row, &mut rng);
            rows.push(row);
        }
    }
    let labels = (0..rows.len()).map(|idx| idx >= n_normal).collect();
    to_dataset(&rows, Some(labels))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn small() -> PopulationOptions {
        PopulationOptions {
            patients: 20,
            readings_per_patient: 600,
            ..PopulationOptions::default()
        }
    }

    fn column(data: &Dataset, feature: Feature) -> Vec<f64> {
        data.column(feature)
            .expect("generated")
            .iter()
            .flatten()
            .copied()
            .collect()
    }

    fn mean(values: &[f64]) -> f64 {
        values.iter().sum::<f64>() / values.len() as f64
    }

    #[test]
    fn population_is_plausible_and_seeded() {
        let data = normal_population(&small());
        assert_eq!(data.n_rows(), 12_000);
        assert_eq!(data, normal_population(&small()), "same seed, same data");
        let hr = column(&data, Feature::HeartRate);
        let temp = column(&data, Feature::BodyTemp);
        let signal = column(&data, Feature::SignalStrength);
        let battery = column(&data, Feature::BatteryLevel);
        assert!((65.0..80.0).contains(&mean(&hr)), "hr mean {}", mean(&hr));
        assert!(
            (36.4..37.0).contains(&mean(&temp)),
            "temp mean {}",
            mean(&temp)
        );
        assert!(hr.iter().all(|v| (35.0..=120.0).contains(v)));
        assert!(temp.iter().all(|v| (35.5..=38.0).contains(v)));
        assert!(signal.iter().all(|v| (-90.0..=-40.0).contains(v)));
        assert!(battery.iter().all(|v| (15.0..=100.0).contains(v)));
        // Heart rate and temperature are positively correlated.
        let (mh, mt) = (mean(&hr), mean(&temp));
        let cov: f64 = hr.iter().zip(&temp).map(|(h, t)| (h - mh) * (t - mt)).sum();
        assert!(cov > 0.0);
    }

    #[test]
    fn temperature_is_lower_at_night() {
        // One patient, readings every 5 minutes for 4 days, admitted at a random hour: compare
        // the temperature's circadian harmonic against the clock.
        let options = PopulationOptions {
            patients: 30,
            readings_per_patient: 1152,
            ..PopulationOptions::default()
        };
        let data = normal_population(&options);
        let temp = column(&data, Feature::BodyTemp);
        assert_eq!(temp.len(), 30 * 1152);
        // Per-patient swing: max − min of the smoothed daily profile is roughly 0.5 °C.
        let patient = &temp[..1152];
        let hourly: Vec<f64> = patient.chunks(12).map(mean).collect();
        let swing = hourly.iter().copied().fold(f64::MIN, f64::max)
            - hourly.iter().copied().fold(f64::MAX, f64::min);
        assert!((0.35..0.8).contains(&swing), "swing {swing}");
    }

    #[test]
    fn labelled_set_marks_injected_rows() {
        let data = labelled_test_set(&small(), 40);
        assert_eq!(data.n_rows(), 12_000 + 200);
        let labels = data.labels().expect("labelled");
        assert_eq!(labels.iter().filter(|l| **l).count(), 200);
        assert!(labels[..12_000].iter().all(|l| !l));
        let hr = column(&data, Feature::HeartRate);
        assert!(
            hr[12_000..].contains(&0.0)
                || column(&data, Feature::BodyTemp)[12_000..]
                    .iter()
                    .any(|t| *t < 25.0)
        );
    }
}
