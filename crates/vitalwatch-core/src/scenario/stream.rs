//! A scenario as a device would send it: the readings of [`generate`](super::generate) in
//! send order, plus the transport behaviours of a real device — clock skew, redelivered
//! duplicates, and the burst of buffered readings after an outage.
//!
//! Lazy, tick by tick, so a simulator can run a month-long scenario without holding it in
//! memory. Pure: the send times are scenario seconds; pacing them on a wall clock is the
//! caller's job. The vitals use the same noise draws as `generate`, so for a scenario without
//! transport behaviours the readings are identical; the transport behaviours draw from their
//! own seeded generator.

use super::{
    EventKind, Scenario, ScenarioError, build_reading, gaussian, time_of_day_s, validate, vitals_at,
};
use crate::telemetry::{DeviceId, Reading, Timestamp};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::collections::VecDeque;

/// Mixed into the scenario seed for the transport behaviours' generator.
const TRANSPORT_SEED: u64 = 0x005e_ed0f_7aa5_9017;

/// One message a device sends.
#[derive(Clone, Debug, PartialEq)]
pub struct Transmission {
    /// The patient's index in the scenario.
    pub device_idx: usize,
    /// Scenario seconds at which the device sends it.
    pub send_s: f64,
    /// Scenario seconds at which the device measured it (earlier than `send_s` for readings
    /// held during an outage).
    pub measured_s: f64,
    /// How far the device's clock is off, seconds; `reading.timestamp` includes it.
    pub skew_s: f64,
    /// `timestamp` = start + `measured_s` + `skew_s`; `seq` is the tick number.
    pub reading: Reading,
    /// A second copy of the message before it (same `seq`), as a redelivery is.
    pub redelivery: bool,
}

/// The lazy sequence of a scenario's [`Transmission`]s, in send order.
pub struct Stream<'a> {
    scenario: &'a Scenario,
    devices: Vec<DeviceId>,
    start: Timestamp,
    start_tod: f64,
    noise_rng: ChaCha8Rng,
    transport_rng: ChaCha8Rng,
    tick: u64,
    n_ticks: u64,
    ready: VecDeque<Transmission>,
    /// Per device: readings measured during an outage, waiting for the connection.
    held: Vec<Vec<Transmission>>,
}

/// Checks `scenario` and returns its transmissions.
pub fn stream(scenario: &Scenario) -> Result<Stream<'_>, ScenarioError> {
    let (start, devices) = validate(scenario)?;
    Ok(Stream {
        scenario,
        held: vec![Vec::new(); devices.len()],
        devices,
        start,
        start_tod: time_of_day_s(start),
        noise_rng: ChaCha8Rng::seed_from_u64(scenario.seed),
        transport_rng: ChaCha8Rng::seed_from_u64(scenario.seed ^ TRANSPORT_SEED),
        tick: 0,
        n_ticks: (scenario.duration_s as f64 / scenario.interval_s).floor() as u64,
        ready: VecDeque::new(),
    })
}

impl Stream<'_> {
    /// The device ids, indexed like [`Transmission::device_idx`].
    pub fn devices(&self) -> &[DeviceId] {
        &self.devices
    }

    /// When the scenario starts.
    pub fn start(&self) -> Timestamp {
        self.start
    }

    /// The number of ticks (each device measures once per tick, `interval_s` apart).
    pub fn ticks(&self) -> u64 {
        self.n_ticks + 1
    }

    fn fill_tick(&mut self) {
        let tick = self.tick;
        self.tick += 1;
        let t = tick as f64 * self.scenario.interval_s;
        for (idx, patient) in self.scenario.patients.iter().enumerate() {
            let v = vitals_at(patient, t, self.start_tod + t);
            // Drawn for every reading, as `generate` does, so the noise stays aligned.
            let draws: [f64; 6] = std::array::from_fn(|_| gaussian(&mut self.noise_rng));
            if v.dropout {
                continue;
            }
            let active = |kind: EventKind| {
                patient
                    .events
                    .iter()
                    .filter(move |e| e.kind == kind && t >= e.onset_s as f64 && t < e.end_s as f64)
            };
            let skew_s: f64 = active(EventKind::ClockSkew)
                .map(|e| e.magnitude.unwrap_or(120.0))
                .sum();
            let duplicate_p = active(EventKind::Duplicates)
                .map(|e| e.magnitude.unwrap_or(0.5))
                .fold(0.0, f64::max);
            let at = self
                .start
                .saturating_add_micros(((t + skew_s) * 1e6).round() as i64);
            let transmission = Transmission {
                device_idx: idx,
                send_s: t,
                measured_s: t,
                skew_s,
                reading: build_reading(
                    patient,
                    &self.devices[idx],
                    &v,
                    at,
                    tick,
                    &draws,
                    t,
                    self.scenario.interval_s,
                ),
                redelivery: false,
            };
            if v.outage {
                self.held[idx].push(transmission);
                continue;
            }
            for mut held in self.held[idx].drain(..) {
                held.send_s = t;
                self.ready.push_back(held);
            }
            let duplicate = (duplicate_p > 0.0 && self.transport_rng.random::<f64>() < duplicate_p)
                .then(|| Transmission {
                    redelivery: true,
                    ..transmission.clone()
                });
            self.ready.push_back(transmission);
            self.ready.extend(duplicate);
        }
    }
}

impl Iterator for Stream<'_> {
    type Item = Transmission;

    fn next(&mut self) -> Option<Transmission> {
        loop {
            if let Some(next) = self.ready.pop_front() {
                return Some(next);
            }
            if self.tick > self.n_ticks {
                // An outage lasting to the end: the device reconnects after the scenario.
                let end_s = self.n_ticks as f64 * self.scenario.interval_s;
                for held in self.held.iter_mut().flat_map(|h| h.drain(..)) {
                    self.ready.push_back(Transmission {
                        send_s: end_s,
                        ..held
                    });
                }
                return self.ready.pop_front();
            }
            self.fill_tick();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::{EventSpec, Patient, generate};
    use super::*;

    fn scenario(events: Vec<EventSpec>) -> Scenario {
        Scenario {
            name: "stream".to_owned(),
            description: String::new(),
            seed: 11,
            start: "2026-01-01T00:00:00Z".to_owned(),
            duration_s: 3600,
            interval_s: 5.0,
            acknowledge_after_s: None,
            patients: vec![
                Patient {
                    events,
                    ..Patient::new("a")
                },
                Patient {
                    events: Vec::new(),
                    ..Patient::new("b")
                },
            ],
        }
    }

    fn event(kind: EventKind, onset_s: u64, end_s: u64, magnitude: Option<f64>) -> EventSpec {
        EventSpec {
            magnitude,
            ..EventSpec::new(kind, onset_s, end_s)
        }
    }

    fn of(scenario: &Scenario, device_idx: usize) -> Vec<Transmission> {
        stream(scenario)
            .expect("valid")
            .filter(|t| t.device_idx == device_idx)
            .collect()
    }

    #[test]
    fn without_transport_behaviours_it_sends_what_generate_produces() {
        let plain = scenario(vec![event(EventKind::Fever, 600, 1800, None)]);
        let sent: Vec<Reading> = stream(&plain).expect("valid").map(|t| t.reading).collect();
        assert_eq!(sent, generate(&plain).expect("valid").readings);
        let again: Vec<Transmission> = stream(&plain).expect("valid").collect();
        assert_eq!(again, stream(&plain).expect("valid").collect::<Vec<_>>());
    }

    #[test]
    fn clock_skew_shifts_timestamps_only_inside_its_window() {
        let skewed = scenario(vec![event(EventKind::ClockSkew, 600, 1200, Some(-300.0))]);
        for t in of(&skewed, 0) {
            let nominal = Timestamp::from_secs(1_767_225_600)
                .saturating_add_micros((t.measured_s * 1e6) as i64);
            let offset_s = t.reading.timestamp.saturating_sub(nominal) / 1_000_000;
            let expected = if (600.0..1200.0).contains(&t.measured_s) {
                -300
            } else {
                0
            };
            assert_eq!(offset_s, expected, "at {}", t.measured_s);
        }
    }

    #[test]
    fn an_outage_holds_readings_and_sends_them_in_a_burst_on_reconnect() {
        let outage = scenario(vec![event(EventKind::Outage, 600, 900, None)]);
        let sent = of(&outage, 0);
        assert!(!sent.iter().any(|t| (600.0..900.0).contains(&t.send_s)));
        let burst: Vec<&Transmission> = sent.iter().filter(|t| t.send_s == 900.0).collect();
        // 60 held readings (600, 605, …, 895) plus the one measured at 900.
        assert_eq!(burst.len(), 61);
        assert!(burst[..60].iter().all(|t| t.measured_s < 900.0));
        assert_eq!(burst[60].measured_s, 900.0);
        // Nothing is lost: every tick's reading is sent once.
        assert_eq!(sent.len(), 721);
        // The other device is not affected.
        assert_eq!(of(&outage, 1).len(), 721);
    }

    #[test]
    fn duplicates_repeat_the_message_with_its_seq_at_about_the_given_rate() {
        let dup = scenario(vec![event(EventKind::Duplicates, 0, 3600, Some(0.3))]);
        let sent = of(&dup, 0);
        let copies: Vec<&Transmission> = sent.iter().filter(|t| t.redelivery).collect();
        let share = copies.len() as f64 / 720.0;
        assert!((0.22..0.38).contains(&share), "{share}");
        for pair in sent.windows(2) {
            if pair[1].redelivery {
                assert_eq!(pair[0].reading, pair[1].reading);
            }
        }
    }

    #[test]
    fn weak_signal_falls_below_the_rule_limit_then_recovers() {
        let weak = scenario(vec![event(EventKind::WeakSignal, 600, 1200, None)]);
        let signal_at = |secs: f64| {
            of(&weak, 0)
                .into_iter()
                .find(|t| t.measured_s == secs)
                .and_then(|t| t.reading.signal_strength_dbm)
                .expect("sent")
        };
        assert!(signal_at(900.0) < -100.0);
        assert!(signal_at(1500.0) > -75.0);
        let labelled = generate(&weak).expect("valid").events;
        assert_eq!(
            labelled[0].conditions,
            [crate::alerting::AlertCondition::WeakSignal]
        );
    }
}
