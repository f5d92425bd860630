//! Built-in scenarios: the population `simulate` uses without `--scenario`, and the demo's
//! ten patients. Plain values; the physiology is `vitalwatch_core::scenario`.

use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use vitalwatch_core::scenario::{Baseline, EventKind, EventSpec, Patient, Scenario};

/// The device id of simulated patient `idx` (0-based) with `prefix`.
pub fn device_id(prefix: &str, idx: usize) -> String {
    format!("{prefix}-{:03}", idx + 1)
}

fn event(kind: EventKind, onset_s: u64, end_s: u64) -> EventSpec {
    EventSpec::new(kind, onset_s, end_s)
}

/// A healthy adult with baselines drawn from plausible resting ranges.
fn healthy(rng: &mut ChaCha8Rng, device_id: String) -> Patient {
    Patient {
        baseline: Baseline {
            heart_rate: rng.random_range(60.0..84.0),
            body_temp: rng.random_range(36.4..37.0),
            spo2: rng.random_range(96.0..99.0),
            respiratory_rate: rng.random_range(12.0..18.0),
            systolic_bp: rng.random_range(108.0..135.0),
            signal_strength: rng.random_range(-75.0..-50.0),
            battery_level: rng.random_range(60.0..100.0),
            battery_drain_pct_per_h: rng.random_range(0.3..1.0),
            circadian_hr: rng.random_range(3.0..6.0),
            noise: rng.random_range(1.0..2.2),
        },
        ..Patient::new(device_id)
    }
}

/// `n` healthy patients (`sim-001`, …) with baselines drawn from `seed`; one in five gets an
/// event (fever, tachycardia, hypoxia, then a sepsis-like deterioration, in turn) from 20 % to
/// 70 % of the run.
pub fn population(n: usize, seed: u64, interval_s: f64, duration_s: u64) -> Scenario {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let kinds = [
        EventKind::Fever,
        EventKind::Tachycardia,
        EventKind::Hypoxia,
        EventKind::Sepsis,
    ];
    let patients = (0..n)
        .map(|idx| {
            let mut patient = healthy(&mut rng, device_id("sim", idx));
            if idx % 5 == 4 && duration_s >= 10 {
                let mut spec = event(
                    kinds[(idx / 5) % kinds.len()],
                    duration_s / 5,
                    duration_s * 7 / 10,
                );
                spec.ramp_s = Some((duration_s / 5).max(1));
                patient.events.push(spec);
            }
            patient
        })
        .collect();
    Scenario {
        name: "built-in population".to_owned(),
        description: "Healthy adults; one in five has an event.".to_owned(),
        seed,
        start: "2026-01-01T00:00:00Z".to_owned(),
        duration_s,
        interval_s,
        acknowledge_after_s: None,
        patients,
    }
}

/// The demo's patients: `bed-01` … `bed-10`, a week at a 5 s interval. Events start within
/// minutes of scenario time so they show at the demo's speed: fever (bed-02), tachycardia
/// (bed-04), hypoxia (bed-06), sepsis (bed-08, 30 min ramp), a dropout (bed-10, from 30 to
/// 40 min), weak signal (bed-09).
pub fn demo(seed: u64) -> Scenario {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    const WEEK: u64 = 7 * 86_400;
    let mut patients: Vec<Patient> = (0..10)
        .map(|idx| healthy(&mut rng, format!("bed-{:02}", idx + 1)))
        .collect();
    patients[1].events.push(event(EventKind::Fever, 120, WEEK));
    patients[3]
        .events
        .push(event(EventKind::Tachycardia, 300, 3 * 3600));
    patients[5]
        .events
        .push(event(EventKind::Hypoxia, 600, 4 * 3600));
    let mut sepsis = event(EventKind::Sepsis, 60, WEEK);
    sepsis.ramp_s = Some(1800);
    patients[7].events.push(sepsis);
    patients[8]
        .events
        .push(event(EventKind::WeakSignal, 900, 2 * 3600));
    patients[9]
        .events
        .push(event(EventKind::Dropout, 1800, 2400));
    Scenario {
        name: "demo ward".to_owned(),
        description: "Ten patients; four deteriorate, one device drops out.".to_owned(),
        seed,
        start: "2026-01-01T08:00:00Z".to_owned(),
        duration_s: WEEK,
        interval_s: 5.0,
        acknowledge_after_s: None,
        patients,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vitalwatch_core::scenario::generate;

    #[test]
    fn the_population_is_plausible_reproducible_and_has_a_few_events() {
        let scenario = population(20, 3, 5.0, 3600);
        let generated = generate(&scenario).expect("valid");
        assert_eq!(generated.events.len(), 4);
        let again = generate(&population(20, 3, 5.0, 3600)).expect("valid");
        assert_eq!(again.readings, generated.readings);
        let healthy: Vec<_> = generated
            .readings
            .iter()
            .filter(|r| {
                let number: usize = r.device_id.as_str()[4..].parse().expect("sim-NNN");
                !number.is_multiple_of(5)
            })
            .collect();
        for reading in healthy {
            let hr = reading.heart_rate_bpm.expect("sent");
            let temp = reading.body_temp_c.expect("sent");
            let spo2 = reading.spo2_pct.expect("sent");
            assert!((45.0..=105.0).contains(&hr), "{hr}");
            assert!((35.8..=37.6).contains(&temp), "{temp}");
            assert!((92.0..=100.0).contains(&spo2), "{spo2}");
        }
    }

    #[test]
    fn demo_events_show_within_minutes_of_scenario_time() {
        let scenario = demo(1);
        let mut short = scenario.clone();
        short.duration_s = 3 * 3600;
        for patient in &mut short.patients {
            for spec in &mut patient.events {
                spec.end_s = spec.end_s.min(short.duration_s);
            }
        }
        let generated = generate(&short).expect("valid");
        let start = generated.start;
        for event in &generated.events {
            let onset_s = event.onset.saturating_sub(start) / 1_000_000;
            assert!(onset_s <= 2400, "{} starts at {onset_s} s", event.kind);
        }
        let fever_temp = generated
            .readings
            .iter()
            .filter(|r| r.device_id.as_str() == "bed-02")
            .filter_map(|r| r.body_temp_c)
            .fold(f64::MIN, f64::max);
        assert!(fever_temp >= 38.5, "{fever_temp}");
    }
}
