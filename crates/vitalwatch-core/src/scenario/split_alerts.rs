//! One engine versus the same story split per device: each device's state taken out,
//! serialised, parsed back and put into a fresh engine for every step (as the PostgreSQL
//! path does with a row per device), ids handed out provisionally and renumbered.

use crate::alerting::{
    AlertCondition::DeviceOffline,
    AlertConfig, AlertEngine, AlertState, AlertTransition, DeviceState, PROVISIONAL_ID_BASE,
    TransitionKind::{Acknowledged, Raised},
    provisional_to, renumber_transitions,
};
use crate::news2::{LatestVitals, Spo2Scale, Validity};
use crate::rules::{self, PreviousTemperature, RuleSet, SensorFaultRule};
use crate::scenario::{self, EventKind, EventSpec, Patient, Scenario};
use crate::telemetry::{DeviceId, FieldSet};
use std::collections::{BTreeMap, HashMap};

/// What the split path keeps per device between steps: JSON text, as a database row would.
#[derive(Default)]
struct Rows {
    states: BTreeMap<DeviceId, String>,
    vitals: BTreeMap<DeviceId, String>,
    /// The store's id sequence.
    last_id: u64,
}

impl Rows {
    fn load(&self, engine: &mut AlertEngine, device_id: &DeviceId) {
        if let Some(json) = self.states.get(device_id) {
            let state: DeviceState = serde_json::from_str(json).expect("state parses");
            engine.put_device(device_id.clone(), state);
        }
    }

    /// Takes the device out, gives provisional ids real ones, stores the state.
    fn save(
        &mut self,
        engine: &mut AlertEngine,
        device_id: &DeviceId,
        out: &mut [AlertTransition],
    ) {
        let raised = engine.provisional_raised();
        let allocated: Vec<u64> = (self.last_id + 1..=self.last_id + raised as u64).collect();
        self.last_id += raised as u64;
        let mut state = engine.take_device(device_id);
        state.renumber(provisional_to(&allocated));
        renumber_transitions(out, provisional_to(&allocated));
        let json = serde_json::to_string(&state).expect("state serialises");
        self.states.insert(device_id.clone(), json);
    }

    fn engine(config: &AlertConfig) -> AlertEngine {
        AlertEngine::new(config.clone(), PROVISIONAL_ID_BASE)
    }
}

fn patient(name: &str, events: &[(EventKind, u64, u64)]) -> Patient {
    let mut patient = Patient::new(name);
    patient.events = events
        .iter()
        .map(|(kind, from, to)| EventSpec::new(*kind, *from, *to))
        .collect();
    patient
}

/// Every transition per device, for both paths.
fn both_paths(scenario: &Scenario) -> (Vec<AlertTransition>, Vec<AlertTransition>) {
    let generated = scenario::generate(scenario).expect("scenario generates");
    let config = AlertConfig::default();
    let rules = RuleSet::default();
    let sensor = SensorFaultRule::default();
    let validity = Validity::default();
    let mut previous: HashMap<DeviceId, PreviousTemperature> = HashMap::new();
    let mut single = AlertEngine::new(config.clone(), 0);
    let mut single_vitals: HashMap<DeviceId, LatestVitals> = HashMap::new();
    let mut rows = Rows::default();
    let (mut one, mut split) = (Vec::new(), Vec::new());
    let mut now = generated.start;
    for (n, reading) in generated.readings.iter().enumerate() {
        now = now.max(reading.received_at);
        // Timers first, over every device in order (the leader's tick), every 6th reading.
        let known: Vec<DeviceId> = rows.states.keys().cloned().collect();
        if n % 6 == 0 {
            one.extend(single.tick(now));
        }
        for device_id in known.iter().filter(|_| n % 6 == 0) {
            let mut engine = Rows::engine(&config);
            rows.load(&mut engine, device_id);
            let mut out = engine.tick(now);
            rows.save(&mut engine, device_id, &mut out);
            split.extend(out);
        }
        // Every 50th reading, a nurse acknowledges the device's oldest active alert.
        if n % 50 == 49 {
            let target = single
                .open_alerts()
                .find(|a| a.device_id == reading.device_id && a.state == AlertState::Active)
                .map(|a| a.id);
            if let Some(id) = target {
                one.extend(single.acknowledge(id, "nurse.jo", None, now).expect("ack"));
                let mut engine = Rows::engine(&config);
                rows.load(&mut engine, &reading.device_id);
                let mut out = engine.acknowledge(id, "nurse.jo", None, now).expect("ack");
                rows.save(&mut engine, &reading.device_id, &mut out);
                split.extend(out);
            }
        }
        let mut findings = Vec::new();
        rules::check(reading, &rules, &mut findings);
        let prev = previous.get(&reading.device_id).copied();
        rules::check_sensor_faults(reading, prev, &sensor, &mut findings);
        if let Some(temp) = reading.body_temp_c
            && prev.is_none_or(|p| p.at <= reading.timestamp)
        {
            let at = reading.timestamp;
            previous.insert(
                reading.device_id.clone(),
                PreviousTemperature {
                    body_temp_c: temp,
                    at,
                },
            );
        }
        let faulted = findings.iter().fold(FieldSet::EMPTY, |mut all, f| {
            for field in f.faulted_fields().iter() {
                all.insert(field);
            }
            all
        });
        let scale = Spo2Scale::Scale1;
        let vitals = single_vitals.entry(reading.device_id.clone()).or_default();
        vitals.observe(reading, faulted);
        let news2 = vitals.score_at(reading.timestamp, &validity, 30, scale);
        one.extend(single.observe(reading, &findings, Some(&news2), now));

        let mut vitals: LatestVitals = rows
            .vitals
            .get(&reading.device_id)
            .map(|json| serde_json::from_str(json).expect("vitals parse"))
            .unwrap_or_default();
        vitals.observe(reading, faulted);
        let news2_split = vitals.score_at(reading.timestamp, &validity, 30, scale);
        assert_eq!(news2_split, news2);
        rows.vitals.insert(
            reading.device_id.clone(),
            serde_json::to_string(&vitals).expect("vitals serialise"),
        );
        let mut engine = Rows::engine(&config);
        rows.load(&mut engine, &reading.device_id);
        let mut out = engine.observe(reading, &findings, Some(&news2_split), now);
        rows.save(&mut engine, &reading.device_id, &mut out);
        split.extend(out);
    }
    (one, split)
}

fn per_device(log: &[AlertTransition]) -> BTreeMap<DeviceId, Vec<AlertTransition>> {
    let mut map: BTreeMap<DeviceId, Vec<AlertTransition>> = BTreeMap::new();
    for t in log {
        map.entry(t.alert.device_id.clone())
            .or_default()
            .push(t.clone());
    }
    map
}

#[test]
fn a_story_split_per_device_equals_one_engine() {
    for seed in [7, 42] {
        let scenario = Scenario {
            name: "split".to_owned(),
            description: String::new(),
            seed,
            start: "2026-01-01T08:00:00Z".to_owned(),
            duration_s: 5400,
            interval_s: 5.0,
            acknowledge_after_s: None,
            patients: vec![
                patient("bed-1", &[(EventKind::Sepsis, 300, 5000)]),
                patient(
                    "bed-2",
                    &[
                        (EventKind::Hypoxia, 600, 1800),
                        (EventKind::ProbeOff, 2000, 2300),
                        (EventKind::HrArtefact, 3000, 3200),
                    ],
                ),
                patient(
                    "bed-3",
                    &[
                        (EventKind::Outage, 900, 1500),
                        (EventKind::Tachycardia, 2500, 4000),
                        (EventKind::BatteryDrain, 1000, 5400),
                    ],
                ),
                patient("bed-4", &[(EventKind::ClockSkew, 0, 5400)]),
            ],
        };
        let (one, split) = both_paths(&scenario);
        let raised = one.iter().filter(|t| t.kind == Raised).count();
        assert!(
            raised >= 4,
            "seed {seed}: the scenario raises alerts ({raised})"
        );
        assert!(
            one.iter().any(|t| t.alert.condition == DeviceOffline),
            "seed {seed}: the outage raises DEVICE_OFFLINE"
        );
        assert!(one.iter().any(|t| t.kind == Acknowledged), "seed {seed}");
        assert_eq!(per_device(&split), per_device(&one), "seed {seed}");
        assert_eq!(split.len(), one.len());
    }
}
