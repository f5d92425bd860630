//! Alert state shared by the nodes on one PostgreSQL (issue 14, "one patient, one story" and
//! "work that must happen once"): real `serve` processes on a real database.

use crate::support::postgres::Cluster;
use crate::support::{Server, ServerOptions, WAIT, agent, get, post_json, reading, wait_until};
use serde_json::Value;
use std::path::Path;
use std::time::{Duration, Instant};
use vitalwatch_core::scenario::{self, EventKind, EventSpec, Patient, Scenario};

/// Onsets by count of readings only, no hold on clearing, no escalation, no offline timer and
/// no periodic updates: what the engine decides then depends on the readings and their order,
/// not on when the server received them, so runs on different processes compare exactly.
const TIME_FREE: &str = r#"
[registry]
default_expected_interval_s = 3600.0
[alerting]
update_interval_s = 86400
[alerting.onset]
high = { readings = 2, secs = 0 }
medium = { readings = 3, secs = 0 }
low = { readings = 5, secs = 0 }
mild = { readings = 10, secs = 0 }
[alerting.escalation]
max_level = 0
[alerting.conditions.DEVICE_OFFLINE]
enabled = false
"#;

/// The conditions whose clearing hold (seconds of the engine's clock) is set to none.
const GRADED: [&str; 14] = [
    "HEART_RATE_HIGH",
    "HEART_RATE_LOW",
    "TEMPERATURE_HIGH",
    "TEMPERATURE_LOW",
    "SPO2_LOW",
    "RESPIRATORY_RATE_HIGH",
    "RESPIRATORY_RATE_LOW",
    "SYSTOLIC_BP_LOW",
    "BLOOD_PRESSURE_HIGH",
    "NEWS2",
    "WEAK_SIGNAL",
    "LOW_BATTERY",
    "SENSOR_FAULT",
    "ARTEFACT",
];

/// [`TIME_FREE`] with no hold on clearing for every condition a reading raises, and NEWS2's
/// own onset (2 within 15 s) by count only: a configuration under which the engine's
/// decisions depend on the readings and their order only (the cluster's scenario test
/// compares a cluster with `vitalwatch evaluate` under it).
pub(crate) fn time_free_config() -> String {
    let mut text = TIME_FREE.to_owned();
    for condition in GRADED {
        text.push_str(&format!(
            "[alerting.conditions.{condition}]\nclear_hold_s = 0\n"
        ));
        if condition == "NEWS2" {
            text.push_str("onset = { readings = 2, secs = 0 }\n");
        }
    }
    text
}

fn config(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(format!("{name}.toml"));
    std::fs::write(&path, text).unwrap();
    path.display().to_string()
}

/// A `serve` node with its own working directory on the database `url`.
pub(crate) fn node(dir: &Path, url: &str, node_id: &str, config: &str) -> Server {
    let cwd = dir.join(node_id);
    std::fs::create_dir_all(&cwd).unwrap();
    Server::start_with(ServerOptions::with_args(
        &cwd,
        &["--database", url, "--node-id", node_id, "--config", config],
    ))
}

fn alerts(server: &Server) -> Vec<Value> {
    let answer = get(&agent(), &server.url("/api/alerts?limit=1000"));
    assert_eq!(answer.status, 200, "{}", answer.json);
    let mut list = answer.json["alerts"].as_array().unwrap().clone();
    list.sort_by_key(|a| a["id"].as_u64());
    list
}

/// What must be the same however the readings were spread over nodes.
fn story(list: &[Value]) -> Vec<(u64, String, String, String, String, u64)> {
    list.iter()
        .map(|a| {
            let text = |k: &str| a[k].as_str().unwrap_or_default().to_owned();
            (
                a["id"].as_u64().unwrap(),
                text("device_id"),
                text("condition"),
                text("priority"),
                text("state"),
                a["count"].as_u64().unwrap_or(0),
            )
        })
        .collect()
}

fn cluster_of(server: &Server) -> Value {
    get(&agent(), &server.url("/health")).json["cluster"].clone()
}

#[test]
fn two_nodes_tell_one_patients_story_as_one_node_does() {
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path(), "time-free", &time_free_config());
    let database = Cluster::shared().database();
    let one = node(dir.path(), &database.url(), "node-1", &config);
    let two = node(dir.path(), &database.url(), "node-2", &config);
    // The reference: one node on the single-box path (SQLite, the in-memory engine).
    let alone = dir.path().join("alone");
    std::fs::create_dir_all(&alone).unwrap();
    let reference = Server::start_with(ServerOptions::with_args(&alone, &["--config", &config]));

    // A deteriorating patient (sepsis-like rise, then recovery) and a hypoxic one.
    let mut sepsis = Patient::new("sepsis-1");
    sepsis.events = vec![EventSpec {
        ramp_s: Some(600),
        ramp_down_s: Some(300),
        ..EventSpec::new(EventKind::Sepsis, 60, 1200)
    }];
    let mut hypoxia = Patient::new("hypoxia-1");
    hypoxia.events = vec![EventSpec::new(EventKind::Hypoxia, 300, 900)];
    let scenario = Scenario {
        name: "shared".to_owned(),
        description: String::new(),
        seed: 14,
        start: "2026-01-01T08:00:00Z".to_owned(),
        duration_s: 1800,
        interval_s: 5.0,
        acknowledge_after_s: None,
        patients: vec![sepsis, hypoxia],
    };
    let agent = agent();
    let mut sent = 0;
    for (seq, transmission) in scenario::stream(&scenario).unwrap().enumerate() {
        let body = String::from_utf8(vitalwatch::sim::payload(
            &transmission,
            transmission.reading.timestamp,
            seq as u64,
        ))
        .unwrap();
        // Alternately to the two nodes; each answer comes after the reading's evaluation.
        let target = if seq % 2 == 0 { &one } else { &two };
        for server in [target, &reference] {
            let answer = post_json(&agent, &server.url("/api/telemetry"), &body);
            assert_eq!(answer.status, 200, "{}", answer.json);
        }
        sent += 1;
    }
    assert!(sent > 600, "{sent} readings");
    let expected = story(&alerts(&reference));
    assert!(
        expected.iter().any(|a| a.2 == "NEWS2" && a.3 == "high"),
        "the scenario deteriorates to an urgent NEWS2: {expected:?}"
    );
    assert!(expected.iter().any(|a| a.2 == "SPO2_LOW"), "{expected:?}");
    assert_eq!(
        story(&alerts(&one)),
        expected,
        "node 1 tells one node's story"
    );
    assert_eq!(
        story(&alerts(&two)),
        expected,
        "node 2 tells the same story"
    );
    // NEWS2 for the API reads the shared window, whichever node answers.
    let news2 = |server: &Server| get(&agent, &server.url("/api/devices/sepsis-1/news2")).json;
    let (a, b, r) = (news2(&one), news2(&two), news2(&reference));
    assert_eq!(a["total"], r["total"], "{a} vs {r}");
    assert_eq!(b["total"], r["total"], "{b} vs {r}");
}

#[test]
fn an_acknowledgement_on_one_node_shows_on_the_other() {
    let dir = tempfile::tempdir().unwrap();
    let config = config(
        dir.path(),
        "quiet",
        "[registry]\ndefault_expected_interval_s = 3600.0\n",
    );
    let database = Cluster::shared().database();
    let one = node(dir.path(), &database.url(), "node-1", &config);
    let two = node(dir.path(), &database.url(), "node-2", &config);
    let agent = agent();
    for n in 0..4 {
        let answer = post_json(
            &agent,
            &one.url("/api/telemetry"),
            &reading("bed-7", n, 190.0),
        );
        assert_eq!(answer.status, 200);
    }
    let alert = alerts(&one)
        .into_iter()
        .find(|a| a["condition"] == "HEART_RATE_HIGH")
        .expect("HR 190 raises HEART_RATE_HIGH through node 1");
    let id = alert["id"].as_u64().unwrap();
    assert_eq!(alert["state"], "active");
    let acked = post_json(
        &agent,
        &two.url(&format!("/api/alerts/{id}/ack")),
        r#"{"by":"nurse.jo","note":"on my way"}"#,
    );
    assert_eq!(acked.status, 200, "{}", acked.json);
    let seen = get(&agent, &one.url(&format!("/api/alerts/{id}"))).json;
    assert_eq!(
        seen["alert"]["state"].as_str().or(seen["state"].as_str()),
        Some("acknowledged"),
        "{seen}"
    );
    // A second acknowledgement, on node 1, is refused: node 1's engine knows it happened.
    let again = post_json(
        &agent,
        &one.url(&format!("/api/alerts/{id}/ack")),
        r#"{"by":"x"}"#,
    );
    assert_eq!(again.status, 409, "{}", again.json);
}

#[test]
fn when_the_leader_dies_another_node_leads_and_an_offline_device_is_alerted_once() {
    let dir = tempfile::tempdir().unwrap();
    let config = config(
        dir.path(),
        "fast",
        "[cluster]\nleader_poll_s = 1\n[registry]\ndefault_expected_interval_s = 3600.0\n",
    );
    let database = Cluster::shared().database();
    let mut one = node(dir.path(), &database.url(), "node-1", &config);
    let leader = wait_until(WAIT, "node 1 to lead", || {
        let cluster = cluster_of(&one);
        (cluster["is_leader"] == true).then_some(cluster)
    });
    assert_eq!(leader["node_id"], "node-1");
    assert_eq!(leader["leader"], "node-1");
    let two = node(dir.path(), &database.url(), "node-2", &config);
    wait_until(WAIT, "node 2 to see node 1 lead", || {
        let cluster = cluster_of(&two);
        (cluster["leader"] == "node-1" && cluster["is_leader"] == false).then_some(())
    });
    let agent = agent();
    // A device that reports every 2 s: offline 6 s after its last reading.
    let registered = post_json(
        &agent,
        &one.url("/api/devices"),
        r#"{"device_id":"quiet-1","expected_interval_s":2.0}"#,
    );
    assert!(registered.status < 300, "{}", registered.json);
    let answer = post_json(
        &agent,
        &one.url("/api/telemetry"),
        &reading("quiet-1", 0, 72.0),
    );
    assert_eq!(answer.status, 200);

    let killed = Instant::now();
    one.kill9();
    wait_until(
        Duration::from_secs(10),
        "node 2 to lead within 10 s",
        || (cluster_of(&two)["is_leader"] == true).then_some(()),
    );
    eprintln!("leader failover took {:?}", killed.elapsed());
    let offline = |server: &Server| {
        alerts(server)
            .into_iter()
            .filter(|a| a["condition"] == "DEVICE_OFFLINE" && a["device_id"] == "quiet-1")
            .collect::<Vec<_>>()
    };
    wait_until(WAIT, "DEVICE_OFFLINE for the silent device", || {
        (!offline(&two).is_empty()).then_some(())
    });
    // A third node joins and the old leader's place is taken again: still one episode.
    let three = node(dir.path(), &database.url(), "node-3", &config);
    wait_until(WAIT, "node 3 to see node 2 lead", || {
        (cluster_of(&three)["leader"] == "node-2").then_some(())
    });
    let episodes = offline(&three);
    assert_eq!(episodes.len(), 1, "alerted once, not twice: {episodes:?}");
    assert_eq!(episodes[0]["state"], "active");
}

#[test]
fn a_state_row_written_before_the_packed_encoding_still_loads() {
    let dir = tempfile::tempdir().unwrap();
    let config = config(
        dir.path(),
        "quiet",
        "[registry]\ndefault_expected_interval_s = 3600.0\n",
    );
    let database = Cluster::shared().database();
    let one = node(dir.path(), &database.url(), "node-1", &config);
    let agent = agent();
    let send = |n: u64| {
        let answer = post_json(
            &agent,
            &one.url("/api/telemetry"),
            &reading("bed-9", n, 190.0),
        );
        assert_eq!(answer.status, 200, "{}", answer.json);
    };
    for n in 0..4 {
        send(n);
    }
    let heart_rate = |list: Vec<Value>| {
        list.into_iter()
            .find(|a| a["condition"] == "HEART_RATE_HIGH")
            .expect("HR 190 raises HEART_RATE_HIGH")
    };
    let before = alerts(&one);
    let raised = heart_rate(before.clone());
    // Turn the row back into what migration V4 wrote: the state and window as JSONB.
    let hex = database.sql("SELECT encode(packed, 'hex') FROM alert_device_state");
    let (state, vitals) =
        vitalwatch::store::alert_state::unpack(&unhex(&hex)).expect("a packed row");
    let quote = |value: String| value.replace('\'', "''");
    database.sql(&format!(
        "UPDATE alert_device_state SET packed = NULL, state = '{}'::jsonb, vitals = '{}'::jsonb",
        quote(serde_json::to_string(&state).unwrap()),
        quote(serde_json::to_string(&vitals).unwrap())
    ));
    // The episode goes on from the old row (no second raise), and the row is packed again.
    for n in 4..8 {
        send(n);
    }
    let after = alerts(&one);
    assert_eq!(after.len(), before.len(), "the same episodes: {after:?}");
    assert_eq!(heart_rate(after)["id"], raised["id"]);
    // The old row's sightings were loaded, not rebuilt from the open alerts: 8 of them.
    let packed = database.sql("SELECT encode(packed, 'hex') FROM alert_device_state");
    let (state, _) = vitalwatch::store::alert_state::unpack(&unhex(&packed)).expect("packed again");
    let state = serde_json::to_value(&state).unwrap();
    let seen = &state["device"]["tracks"]["HEART_RATE_HIGH"]["seen"];
    assert_eq!(seen.as_array().map(Vec::len), Some(8), "{seen}");
    assert_eq!(
        database.sql("SELECT (packed IS NOT NULL AND state IS NULL)::text FROM alert_device_state"),
        "true"
    );
}

fn unhex(hex: &str) -> Vec<u8> {
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).expect("hex"))
        .collect()
}
