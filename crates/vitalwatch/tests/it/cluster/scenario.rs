//! A deteriorating patient through topology A while the node holding its device is SIGKILLed
//! five times: its alerts are the ones `vitalwatch evaluate` gives for the same scenario.
//!
//! The device plays the shipped `scenarios/sepsis.toml` (its sepsis-like rise and recovery
//! moved to the first two hours, so the run stays short) with Paho, one reading in flight,
//! sending an unacknowledged reading again after it reconnects through the balancer (as a
//! careful device does). Every kill lands on the node the device is connected to, at a random
//! moment. A reading that node committed but had not evaluated was not acknowledged: it comes
//! back as a duplicate to another node and is evaluated there, once (`alerts/shared.rs`).
//!
//! The engine's clock: on a node it is the server's clock at the evaluation (onset timers,
//! clearing holds, escalation, offline and periodic updates all run on it); in `evaluate` it is
//! each reading's scenario arrival time. Both run the time-free configuration of
//! `shared_alerts` (onsets by count of readings, no clearing hold, no escalation, no offline
//! timer, no periodic updates), under which the decisions depend on the readings and their
//! order only; NEWS2 is scored at the readings' own timestamps on both. So condition, class,
//! highest priority, the order in which the episodes open and whether each closed are compared
//! exactly. What legitimately differs: alert ids (a database sequence vs. counting from 1) and
//! the times (`opened_at`, `closed_at`: the server's clock at the evaluation vs. the scenario's
//! clock).

use super::fleet::seed;
use crate::jepsen::Lcg;
use crate::mqtt::{client_script, python};
use crate::shared_alerts::time_free_config;
use crate::support::cluster::{Kind, Pair, Topology, exclusive};
use crate::support::{Guarded, agent, command, get, wait_until};
use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use vitalwatch_core::scenario::{self, Scenario};

const KILLS: usize = 5;

/// The shipped scenario, its story moved to the first two hours (1 440 readings).
fn deteriorating() -> Scenario {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../scenarios/sepsis.toml");
    let mut scenario: Scenario =
        toml::from_str(&std::fs::read_to_string(path).expect("the shipped scenario")).unwrap();
    assert_eq!(scenario.patients.len(), 1, "one patient");
    let event = &mut scenario.patients[0].events[0];
    event.onset_s = 600;
    event.ramp_s = Some(3000);
    event.end_s = 5400;
    event.ramp_down_s = Some(900);
    scenario.duration_s = 7200;
    scenario
}

/// What must be the same: (condition, class, priority, closed) of each episode, in the order
/// they opened.
type Story = Vec<(String, String, String, bool)>;

fn from_evaluate(report: &Value) -> Story {
    report["scenarios"][0]["engine"]["alert_list"]
        .as_array()
        .expect("evaluate --json lists the alerts")
        .iter()
        .map(|a| {
            let text = |k: &str| a[k].as_str().unwrap_or_default().to_owned();
            (
                text("condition"),
                text("class"),
                text("priority"),
                !a["closed_at"].is_null(),
            )
        })
        .collect()
}

fn from_api(alerts: &Value, device: &str) -> Story {
    let mut list: Vec<&Value> = alerts["alerts"]
        .as_array()
        .expect("an alert list")
        .iter()
        .filter(|a| a["device_id"] == device)
        .collect();
    list.sort_by_key(|a| a["id"].as_u64());
    list.iter()
        .map(|a| {
            let text = |k: &str| a[k].as_str().unwrap_or_default().to_owned();
            (
                text("condition"),
                text("class"),
                text("priority"),
                a["state"] == "resolved",
            )
        })
        .collect()
}

/// `vitalwatch_devices_connected` of a node (devices with an MQTT session there).
fn devices_connected(url: &str) -> f64 {
    let output = Command::new("curl")
        .args(["-sf", url])
        .output()
        .expect("running curl");
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter(|line| line.starts_with("vitalwatch_devices_connected"))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[test]
fn a_deteriorating_patient_through_killed_nodes_is_alerted_as_evaluate_alerts_it() {
    let _one_at_a_time = exclusive();
    let pair = Pair::shared();
    let database = pair.database();
    let config = time_free_config();
    let mut topology = Topology::start_with(Kind::A, 3, &pair.url(&database.name), Some(&config));
    let dir = topology.dir.path().to_path_buf();
    let scenario = deteriorating();
    let device = scenario.patients[0].device_id.as_str().to_owned();

    // The reference: the same scenario and configuration through the engine alone.
    let scenario_file = dir.join("scenario.toml");
    std::fs::write(&scenario_file, toml::to_string(&scenario).unwrap()).unwrap();
    let output = command(&dir)
        .args(["evaluate", "--json", "--config"])
        .arg(dir.join("vitalwatch.toml"))
        .arg(&scenario_file)
        .output()
        .expect("running vitalwatch evaluate");
    assert!(
        output.status.success(),
        "evaluate: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let report: Value = serde_json::from_slice(&output.stdout).expect("a JSON report");
    let expected = from_evaluate(&report);
    assert!(
        expected.iter().any(|a| a.0 == "NEWS2" && a.2 == "high"),
        "the scenario deteriorates to an urgent NEWS2: {expected:?}"
    );

    // The device's messages, as `vitalwatch simulate` would send them.
    let payloads: Vec<String> = scenario::stream(&scenario)
        .unwrap()
        .enumerate()
        .map(|(seq, t)| {
            String::from_utf8(vitalwatch::sim::payload(
                &t,
                t.reading.timestamp,
                seq as u64,
            ))
            .unwrap()
        })
        .collect();
    let total = payloads.len();
    let payload_file = dir.join("payloads.jsonl");
    std::fs::write(&payload_file, payloads.join("\n")).unwrap();
    let (cert, key) = topology.device(&device);
    let lsn = || pair.primary.superuser_sql("SELECT pg_current_wal_lsn()");
    let wal_before = lsn();
    let mut client = Guarded::spawn(
        Command::new(python())
            .arg(client_script("scenario_device.py"))
            .args(["--port", &topology.mqtts_port().to_string(), "--ca"])
            .arg(topology.ca())
            .arg("--cert")
            .arg(&cert)
            .arg("--key")
            .arg(&key)
            .args(["--device", &device, "--payloads"])
            .arg(&payload_file)
            .args(["--timeout", "60"])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit()),
    );
    let acked = Arc::new(AtomicUsize::new(0));
    let stdout = client.take_stdout();
    let reader = {
        let acked = Arc::clone(&acked);
        std::thread::spawn(move || {
            let mut summary = String::new();
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if line.starts_with("ack ") {
                    acked.fetch_add(1, Ordering::Relaxed);
                } else {
                    summary = line;
                }
            }
            summary
        })
    };

    let seed = seed();
    eprintln!("scenario under kills: seed {seed}");
    let mut rng = Lcg(seed);
    let slice = total / (KILLS + 1);
    for kill in 0..KILLS {
        let at = slice * kill + rng.next_in(slice as u64 / 4, slice as u64) as usize;
        wait_until(
            Duration::from_secs(120),
            format_args!("{at} of {total} readings acknowledged before kill {kill}"),
            || acked.load(Ordering::Relaxed) >= at,
        );
        let holder = wait_until(
            Duration::from_secs(30),
            "the node holding the device",
            || {
                topology
                    .nodes
                    .iter()
                    .position(|n| devices_connected(&n.url("/metrics")) >= 1.0)
            },
        );
        eprintln!(
            "kill {kill}: {} at {} acknowledged",
            topology.nodes[holder].name,
            acked.load(Ordering::Relaxed)
        );
        topology.nodes[holder].kill9();
        // The device carries on through the others while it is down.
        let after = acked.load(Ordering::Relaxed);
        wait_until(
            Duration::from_secs(60),
            "the device to reconnect and be acknowledged again",
            || acked.load(Ordering::Relaxed) > after + 20,
        );
        topology.restart(holder);
    }
    assert!(
        client.wait_timeout(Duration::from_secs(300)).is_some(),
        "the device did not finish its scenario"
    );
    let summary: Value = serde_json::from_str(&reader.join().unwrap()).expect("a summary");
    assert_eq!(summary["acked"], total, "{summary}");
    assert!(summary["error"].is_null(), "{summary}");
    eprintln!("scenario device: {summary}");
    // Measured, not asserted: the WAL per reading (one evaluation per reading here, the
    // device sending one at a time) and the size of the device's state row.
    let wal = pair.primary.superuser_sql(&format!(
        "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), '{wal_before}')"
    ));
    let wal: f64 = wal.parse().expect("a WAL distance");
    eprintln!(
        "scenario: {:.0} WAL bytes per reading over {total} readings (kills and restarts included); \
         packed state row: {} bytes",
        wal / total as f64,
        database.sql("SELECT octet_length(packed) FROM alert_device_state")
    );

    // Stored once each, and every node tells the story `evaluate` tells.
    let stored: usize = database
        .sql(&format!(
            "SELECT count(*) FROM readings WHERE device_id = '{device}'"
        ))
        .parse()
        .unwrap();
    assert_eq!(stored, total, "every reading stored once");
    for node in &topology.nodes {
        let alerts = get(&agent(), &node.url("/api/alerts?limit=1000"));
        assert_eq!(alerts.status, 200, "{}", node.name);
        if from_api(&alerts.json, &device) != expected {
            eprintln!(
                "evaluate: {:#}\n{}: {:#}",
                report["scenarios"][0]["engine"]["alert_list"], node.name, alerts.json
            );
        }
        assert_eq!(
            from_api(&alerts.json, &device),
            expected,
            "{} tells the story `evaluate` tells",
            node.name
        );
    }
    for node in &mut topology.nodes {
        assert!(node.terminate(), "{} stops cleanly", node.name);
    }
}
