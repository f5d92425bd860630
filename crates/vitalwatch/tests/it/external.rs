//! External broker mode against a real Mosquitto 2.x over mutual TLS: readings published with
//! `mosquitto_pub` and Paho flow into VitalWatch; a SIGKILL of VitalWatch mid-flood loses no
//! reading Mosquitto acknowledged to its publisher; a Mosquitto outage shows in `/health` and
//! readings resume after it; a `$share` group splits the stream between two nodes.

use crate::mqtt::{client_script, python};
use crate::support::mosquitto::{Mosquitto, Pki};
use crate::support::{Guarded, Server, ServerOptions, WAIT, agent, counts, get, poll_until};
use serde_json::Value;
use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

/// `vitalwatch serve --broker ...` with its own client certificate, data dir `<cwd>/<name>`.
fn start_node(dir: &Path, name: &str, broker: &Mosquitto, pki: &Pki, extra: &[&str]) -> Server {
    let (cert, key) = pki.client("vitalwatch-ingest");
    let mut args: Vec<String> = vec![
        "--data-dir".into(),
        name.into(),
        "--broker".into(),
        broker.url(),
        "--broker-ca".into(),
        pki.ca().display().to_string(),
        "--broker-cert".into(),
        cert.display().to_string(),
        "--broker-key".into(),
        key.display().to_string(),
    ];
    args.extend(extra.iter().map(|s| s.to_string()));
    Server::start_with(ServerOptions {
        args,
        ..ServerOptions::new(dir)
    })
}

fn broker_health(server: &Server) -> Value {
    get(&agent(), &server.url("/health")).json["broker"].clone()
}

/// Waits (at most 30 s) until `pred` holds for `/health`'s `broker` object; returns it.
fn wait_broker(server: &Server, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
    poll_until(WAIT, || Some(broker_health(server)).filter(&pred)).unwrap_or_else(|| {
        panic!(
            "broker never {what}: {}\nlog:\n{}",
            broker_health(server),
            server.log()
        )
    })
}

fn wait_subscribed(server: &Server) -> Value {
    wait_broker(server, "subscribed", |b| {
        b["connected"] == true && b["subscribed"] == true
    })
}

/// Waits (at most `seconds`) until `data_dir` holds at least `n` readings; returns how many
/// it holds then.
fn wait_readings(data_dir: &Path, n: i64, seconds: u64) -> i64 {
    let _ = poll_until(Duration::from_secs(seconds), || {
        counts(data_dir).readings >= n
    });
    counts(data_dir).readings
}

fn mosquitto_pub(broker: &Mosquitto, pki: &Pki, device: &str, args: &[&str]) -> String {
    let (cert, key) = pki.client(device);
    let output = Command::new("mosquitto_pub")
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &broker.port.to_string(),
            "--cafile",
        ])
        .arg(pki.ca())
        .arg("--cert")
        .arg(cert)
        .arg("--key")
        .arg(key)
        .args(["-t", "/iot/health", "-d"])
        .args(args)
        .output()
        .expect("running mosquitto_pub");
    let text = String::from_utf8_lossy(&output.stdout).to_string()
        + &String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{text}");
    text
}

fn seed_payload(device: &str, second: u32) -> String {
    format!(
        r#"{{"device_id":"{device}","timestamp":"2024-01-16T10:30:{second:02}.123456","heart_rate":72,"body_temp":36.8,"signal_strength":-75,"battery_level":85}}"#
    )
}

/// The timestamps (as stored) of a device's readings.
fn stored_timestamps(data_dir: &Path, device: &str) -> BTreeSet<String> {
    let query = format!(
        "SELECT {} FROM readings WHERE device_id = '{device}'",
        crate::support::backend::rfc3339(data_dir, "timestamp")
    );
    crate::support::sql(data_dir, &query)
        .lines()
        .map(str::to_owned)
        .collect()
}

/// The stored timestamp of Paho publisher reading `n` (2026-01-01T00:00:00Z + n ms).
fn paho_timestamp(n: u64) -> String {
    format!(
        "2026-01-01T00:{:02}:{:02}.{:03}000Z",
        n / 60_000,
        (n / 1000) % 60,
        n % 1000
    )
}

#[test]
fn readings_published_to_mosquitto_are_stored_and_acknowledged_after_commit() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::init(&dir.path().join("pki"));
    let broker = Mosquitto::start(dir.path(), &pki);
    let server = start_node(dir.path(), "data", &broker, &pki, &[]);
    let health = wait_subscribed(&server);
    assert_eq!(health["mode"], "external", "{health}");
    assert_eq!(health["broker"], broker.url(), "{health}");

    for (second, extra) in [(1, vec!["-q", "1"]), (2, vec!["-q", "1", "-V", "mqttv5"])] {
        let mut args = vec!["-m".to_owned(), seed_payload("ESP32_001", second)];
        args.extend(extra.iter().map(|s| s.to_string()));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = mosquitto_pub(&broker, &pki, "ESP32_001", &args);
        assert!(out.contains("received PUBACK"), "{out}");
    }
    // A malformed message is recorded as rejected and acknowledged (not redelivered forever);
    // a good one after it still flows.
    mosquitto_pub(&broker, &pki, "ESP32_001", &["-q", "1", "-m", "not json"]);
    mosquitto_pub(
        &broker,
        &pki,
        "ESP32_002",
        &["-q", "1", "-m", &seed_payload("ESP32_002", 3)],
    );
    assert_eq!(
        wait_readings(&server.data_dir, 3, 30),
        3,
        "{}",
        server.log()
    );
    let stored: Vec<(String, String)> = server
        .sql("SELECT device_id, source FROM readings ORDER BY timestamp")
        .lines()
        .map(|row| {
            let (device, source) = row.split_once('|').expect("two columns");
            (device.to_owned(), source.to_owned())
        })
        .collect();
    assert_eq!(
        stored,
        vec![
            ("ESP32_001".to_owned(), "mqtt".to_owned()),
            ("ESP32_001".to_owned(), "mqtt".to_owned()),
            ("ESP32_002".to_owned(), "mqtt".to_owned()),
        ]
    );
    let health = get(&agent(), &server.url("/health")).json;
    assert_eq!(health["rejected"]["malformed_json"], 1, "{health}");
    // The embedded broker is off in this mode.
    assert!(server.mqtts.is_none());
}

#[test]
fn a_sigkill_mid_flood_loses_no_reading_mosquitto_acknowledged() {
    check_flood_survives(Server::kill9);
}

#[test]
fn a_sigterm_mid_flood_loses_no_reading_mosquitto_acknowledged() {
    // A clean stop: in-flight commits finish and are acknowledged before disconnecting.
    check_flood_survives(|server| {
        assert!(server.terminate(), "unclean stop:\n{}", server.log());
    });
}

/// Floods Mosquitto with QoS 1 readings, stops VitalWatch with `stop` once it has committed
/// part of them, restarts it, and checks every reading Mosquitto acknowledged is stored once.
fn check_flood_survives(stop: impl FnOnce(&mut Server)) {
    const FLOOD: u64 = 3000;
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::init(&dir.path().join("pki"));
    let broker = Mosquitto::start(dir.path(), &pki);
    let mut server = start_node(dir.path(), "data", &broker, &pki, &[]);
    wait_subscribed(&server);

    // Paho publishes with QoS 1 to Mosquitto and prints each PUBACK Mosquitto sends it.
    let (cert, key) = pki.client("flood-1");
    let mut publisher = Guarded::spawn(
        Command::new(python())
            .arg(client_script("paho_publish.py"))
            .args(["--port", &broker.port.to_string(), "--ca"])
            .arg(pki.ca())
            .arg("--cert")
            .arg(&cert)
            .arg("--key")
            .arg(&key)
            .args(["--device", "flood-1", "--qos", "1", "--stream-acks"])
            .args(["--count", &FLOOD.to_string(), "--timeout", "120"])
            .stdout(Stdio::piped()),
    );
    let stdout = publisher.take_stdout();
    let reader = std::thread::spawn(move || {
        use std::io::BufRead;
        let mut acked = BTreeSet::new();
        let mut summary = String::new();
        for line in std::io::BufReader::new(stdout).lines() {
            let line = line.unwrap();
            if let Some(index) = line.strip_prefix("ack ") {
                acked.insert(index.parse::<u64>().unwrap());
            } else {
                summary = line;
            }
        }
        (acked, summary)
    });

    // Kill VitalWatch once it has committed part of the flood.
    let before_kill = wait_readings(&server.data_dir, 300, 60);
    assert!(before_kill >= 300, "{}", server.log());
    stop(&mut server);
    let at_kill = counts(&server.data_dir).readings;
    assert!(
        at_kill < FLOOD as i64,
        "the kill came after the whole flood was stored; nothing was in flight"
    );

    let mut server = start_node(dir.path(), "data", &broker, &pki, &[]);
    let published = publisher.wait_timeout(Duration::from_secs(180));
    assert!(
        published.is_some_and(|status| status.success()),
        "{published:?}"
    );
    let (acked, summary) = reader.join().unwrap();
    assert_eq!(acked.len() as u64, FLOOD, "publisher: {summary}");

    // Mosquitto redelivers what we had not acknowledged and delivers what it queued for our
    // session while we were down; give it bounded time.
    let stored = wait_readings(&server.data_dir, FLOOD as i64, 120);
    let timestamps = stored_timestamps(&server.data_dir, "flood-1");
    let missing: Vec<u64> = acked
        .iter()
        .copied()
        .filter(|n| !timestamps.contains(&paho_timestamp(*n)))
        .collect();
    assert!(
        missing.is_empty(),
        "{} readings acknowledged by Mosquitto are missing (killed at {at_kill} stored; {stored} now), first: {:?}",
        missing.len(),
        &missing[..missing.len().min(10)]
    );
    // Each reading stored once, though some were delivered twice.
    assert_eq!(stored, FLOOD as i64);
    assert!(server.terminate(), "{}", server.log());
}

#[test]
fn a_mosquitto_outage_shows_in_health_and_readings_resume_after_it() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::init(&dir.path().join("pki"));
    let mut broker = Mosquitto::start(dir.path(), &pki);
    let server = start_node(dir.path(), "data", &broker, &pki, &[]);
    wait_subscribed(&server);
    mosquitto_pub(
        &broker,
        &pki,
        "bed-1",
        &["-q", "1", "-m", &seed_payload("bed-1", 1)],
    );
    assert_eq!(wait_readings(&server.data_dir, 1, 30), 1);

    broker.kill();
    let down = wait_broker(&server, "reported the outage", |b| b["connected"] == false);
    assert_eq!(down["mode"], "external");
    assert!(down["last_error"].is_string(), "{down}");
    assert!(down["since"].is_string(), "{down}");
    // The API keeps serving during the outage (live), but the node is not ready: it cannot
    // take readings, so probes stop sending work to it.
    assert_eq!(get(&agent(), &server.url("/health")).status, 200);
    let ready = get(&agent(), &server.url("/ready"));
    assert_eq!(ready.status, 503, "{}", ready.json);
    assert_eq!(
        ready.json["reasons"][0], "broker_disconnected",
        "{}",
        ready.json
    );

    broker.restart();
    let up = wait_broker(&server, "reconnected", |b| {
        b["connected"] == true && b["subscribed"] == true && b["connects"].as_u64() >= Some(2)
    });
    assert_eq!(up["mode"], "external");
    assert_eq!(get(&agent(), &server.url("/ready")).status, 200);
    mosquitto_pub(
        &broker,
        &pki,
        "bed-1",
        &["-q", "1", "-m", &seed_payload("bed-1", 2)],
    );
    assert_eq!(
        wait_readings(&server.data_dir, 2, 30),
        2,
        "{}",
        server.log()
    );
}

#[test]
fn a_shared_subscription_splits_readings_between_two_nodes() {
    const COUNT: u64 = 400;
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::init(&dir.path().join("pki"));
    let broker = Mosquitto::start(dir.path(), &pki);
    let group = ["--share-group", "vitalwatch"];
    let a = start_node(
        dir.path(),
        "node-a",
        &broker,
        &pki,
        &[group[0], group[1], "--client-id", "vw-a"],
    );
    let b = start_node(
        dir.path(),
        "node-b",
        &broker,
        &pki,
        &[group[0], group[1], "--client-id", "vw-b"],
    );
    wait_subscribed(&a);
    wait_subscribed(&b);
    let (cert, key) = pki.client("shared-1");
    let output = Command::new(python())
        .arg(client_script("paho_publish.py"))
        .args(["--port", &broker.port.to_string(), "--ca"])
        .arg(pki.ca())
        .arg("--cert")
        .arg(&cert)
        .arg("--key")
        .arg(&key)
        .args(["--device", "shared-1", "--qos", "1"])
        .args(["--count", &COUNT.to_string()])
        .output()
        .unwrap();
    assert!(output.status.success());
    let _ = poll_until(WAIT, || {
        counts(&a.data_dir).readings + counts(&b.data_dir).readings >= COUNT as i64
    });
    let on_a = stored_timestamps(&a.data_dir, "shared-1");
    let on_b = stored_timestamps(&b.data_dir, "shared-1");
    assert!(
        on_a.is_disjoint(&on_b),
        "a reading was stored by both nodes"
    );
    assert_eq!(on_a.len() + on_b.len(), COUNT as usize);
    assert!(
        !on_a.is_empty() && !on_b.is_empty(),
        "one node got everything: a={} b={}",
        on_a.len(),
        on_b.len()
    );
}

#[test]
fn the_seeds_variables_select_the_external_broker() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::init(&dir.path().join("pki"));
    let broker = Mosquitto::start(dir.path(), &pki);
    let (cert, key) = pki.client("vitalwatch-ingest");
    // The seed's spelling: MQTT_BROKER is a bare host, MQTT_PORT its port.
    let env = [
        ("MQTT_BROKER", "127.0.0.1".to_owned()),
        ("MQTT_PORT", broker.port.to_string()),
        ("MQTT_USE_TLS", "true".to_owned()),
        ("MQTT_TLS_CA_CERTS", pki.ca().display().to_string()),
        ("MQTT_TOPIC", "/iot/health".to_owned()),
    ];
    let server = Server::start_with(ServerOptions {
        args: vec![
            "--http-addr".into(),
            "127.0.0.1:0".into(),
            "--broker-cert".into(),
            cert.display().to_string(),
            "--broker-key".into(),
            key.display().to_string(),
        ],
        // Only the API on a free port: the broker's address comes from the variables.
        free_port: false,
        env: env.map(|(k, v)| (k.to_owned(), v)).to_vec(),
        ..ServerOptions::new(dir.path())
    });
    let health = wait_subscribed(&server);
    assert_eq!(health["mode"], "external", "{health}");
    assert_eq!(
        health["broker"],
        format!("mqtts://127.0.0.1:{}", broker.port),
        "{health}"
    );
    assert_eq!(health["subscribed"], true, "{health}");
}
