//! `vitalwatch simulate` and `vitalwatch demo` through the real binary: simulated devices
//! over MQTT with TLS and their own certificates, over HTTP, as CSV; a dropped-out device
//! raising DEVICE_OFFLINE; the demo from an empty directory to ten reporting patients.

use crate::support::{
    Guarded, Server, ServerOptions, WAIT, agent, bin, command, counts, free_port, get, poll_until,
    wait_until,
};
use serde_json::Value;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

fn simulate(cwd: &Path, args: &[&str]) -> Output {
    command(cwd)
        .arg("simulate")
        .args(args)
        .env_remove("MQTT_TOPIC")
        .output()
        .expect("running vitalwatch simulate")
}

fn report(output: &Output) -> Value {
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "simulate failed: {stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_str(stdout.lines().last().unwrap_or("")).expect("a JSON report")
}

fn broker(server: &Server) -> String {
    format!(
        "mqtts://127.0.0.1:{}",
        server.mqtts.expect("broker runs").port()
    )
}

#[test]
fn simulate_over_mqtt_stores_exactly_what_it_reports_as_acked() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let data_dir = server.data_dir.display().to_string();
    let output = simulate(
        dir.path(),
        &[
            "--devices",
            "4",
            "--count",
            "25",
            "--rate",
            "max",
            "--qos",
            "1",
            "--seed",
            "5",
            "--broker",
            &broker(&server),
            "--data-dir",
            &data_dir,
            "--json",
        ],
    );
    let report = report(&output);
    assert_eq!(report["sent"], 100, "{report}");
    assert_eq!(report["acked"], 100, "{report}");
    assert_eq!(report["failed"], 0, "{report}");
    assert!(report["ack_latency_p99_ms"].as_f64().unwrap() > 0.0);
    // QoS 1 is acknowledged after the commit: the rows are there when simulate returns.
    assert_eq!(counts(&server.data_dir).readings, 100);
    // Each device had its own certificate, issued from the CA in the certs dir.
    for id in ["sim-001", "sim-002", "sim-003", "sim-004"] {
        assert!(
            server
                .data_dir
                .join(format!("certs/devices/{id}.crt"))
                .exists()
        );
    }
    let devices = get(&agent(), &server.url("/api/devices")).json;
    assert_eq!(devices["count"], 4, "{devices}");
}

#[test]
fn a_device_that_cannot_connect_is_an_error_not_a_publish() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let data_dir = server.data_dir.display().to_string();
    // A port where nothing listens.
    let closed = free_port();
    let output = simulate(
        dir.path(),
        &[
            "--devices",
            "2",
            "--count",
            "3",
            "--broker",
            &format!("mqtts://127.0.0.1:{closed}"),
            "--data-dir",
            &data_dir,
        ],
    );
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("could not connect"), "{stderr}");
    assert!(!String::from_utf8_lossy(&output.stdout).contains("sent="));
    assert_eq!(counts(&server.data_dir).readings, 0);
}

#[test]
fn simulate_over_http_posts_every_reading() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let output = simulate(
        dir.path(),
        &[
            "--devices",
            "3",
            "--count",
            "10",
            "--interval",
            "1s",
            "--speed",
            "1000x",
            "--http",
            &server.url("/api/telemetry"),
            "--json",
        ],
    );
    let report = report(&output);
    assert_eq!(report["acked"], 30, "{report}");
    assert_eq!(report["failed"], 0, "{report}");
    assert_eq!(counts(&server.data_dir).readings, 30);
    let readings = get(&agent(), &server.url("/api/devices/sim-002/readings")).json;
    assert!(
        readings.to_string().contains("spo2"),
        "extended vitals: {readings}"
    );
}

#[test]
fn a_dropped_out_device_shows_up_as_device_offline() {
    let dir = tempfile::tempdir().unwrap();
    // Offline after 3 × 0.5 s without a reading.
    let config = dir.path().join("vitalwatch.toml");
    std::fs::write(&config, "[registry]\ndefault_expected_interval_s = 0.5\n").unwrap();
    let server = Server::start_with(ServerOptions {
        args: vec!["--config".into(), config.display().to_string()],
        ..ServerOptions::new(dir.path())
    });
    let scenario = dir.path().join("dropout.toml");
    std::fs::write(
        &scenario,
        r#"name = "dropout"
seed = 3
duration_s = 30
interval_s = 0.5

[[patients]]
device_id = "steady"

[[patients]]
device_id = "walker"
[[patients.events]]
kind = "dropout"
onset_s = 4
end_s = 30
"#,
    )
    .unwrap();
    let mut simulator = Guarded::spawn(
        Command::new(bin())
            .current_dir(dir.path())
            .args([
                "simulate",
                "--speed",
                "2x",
                "--http",
                &server.url("/api/telemetry"),
            ])
            .arg("--scenario")
            .arg(&scenario)
            .stdout(Stdio::null())
            .stderr(Stdio::null()),
    );
    let offline = wait_until(WAIT, "DEVICE_OFFLINE", || {
        let alerts = get(&agent(), &server.url("/api/alerts?state=active")).json;
        alerts["alerts"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|a| a["condition"] == "DEVICE_OFFLINE")
            .cloned()
    });
    assert_eq!(offline["device_id"], "walker", "{offline}");
    simulator.stop("TERM", WAIT);
}

#[test]
fn csv_output_parses_and_trains_a_model() {
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("stream.csv");
    let output = simulate(
        dir.path(),
        &[
            "--devices",
            "5",
            "--duration",
            "1h",
            "--csv",
            csv.to_str().unwrap(),
        ],
    );
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let text = std::fs::read_to_string(&csv).unwrap();
    let header = text.lines().next().unwrap();
    for column in [
        "device_id",
        "heart_rate",
        "body_temp",
        "signal_strength",
        "battery_level",
        "spo2",
        "label",
    ] {
        assert!(
            header.split(',').any(|c| c == column),
            "{column} in {header}"
        );
    }
    assert_eq!(text.lines().count(), 1 + 5 * 721);
    let model = dir.path().join("model.json");
    let trained = Command::new(bin())
        .current_dir(dir.path())
        .args(["train", "--input"])
        .arg(&csv)
        .arg("--output")
        .arg(&model)
        .output()
        .unwrap();
    assert!(
        trained.status.success(),
        "{}",
        String::from_utf8_lossy(&trained.stderr)
    );
    assert!(model.exists());
}

#[test]
fn demo_from_an_empty_directory_brings_ten_patients_to_the_api() {
    let dir = tempfile::tempdir().unwrap();
    let mut demo = Server::start_demo(ServerOptions::with_args(
        dir.path(),
        &["--data-dir", "data"],
    ));
    // The banner follows the listening lines.
    let banner_end = |line: &str| line.contains("Stop with Ctrl-C");
    let ended = demo.stdout().seen().iter().any(|l| banner_end(l))
        || demo
            .stdout()
            .find(Duration::from_secs(60), |l| banner_end(l).then_some(()))
            .is_some();
    let banner = demo.stdout().seen().join("\n");
    assert!(ended, "demo did not start: {banner}\n{}", demo.log());
    assert!(banner.contains("--trust-loopback"), "{banner}");
    assert!(banner.contains("mosquitto_pub"), "{banner}");
    assert!(dir.path().join("data/model.json").exists());
    let api = demo.api;
    let mut devices = Value::Null;
    let beds = poll_until(Duration::from_secs(15), || {
        devices = get(&agent(), &format!("http://{api}/api/devices")).json;
        let beds = devices["devices"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|d| {
                d["device_id"]
                    .as_str()
                    .is_some_and(|id| id.starts_with("bed-"))
            })
            .count();
        beds == 10
    });
    assert!(beds.is_some(), "not 10 patients after 15 s: {devices}");
    // The banner's mosquitto_pub line works as printed (QoS 1: acknowledged once committed).
    let mosquitto = banner
        .lines()
        .find(|l| l.trim_start().starts_with("mosquitto_pub"))
        .expect("a mosquitto_pub line");
    let (ok, out, err) = crate::support::sh(dir.path(), mosquitto.trim());
    assert!(ok, "{mosquitto}: {out}{err}");
    let device = get(&agent(), &format!("http://{api}/api/devices/demo-pub"));
    assert_eq!(device.status, 200, "{}", device.json);
    assert!(demo.terminate(), "{}", demo.log());
}

#[test]
fn paced_duplicates_outages_and_skew_are_sent_as_devices_would_and_stored_once() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let data_dir = server.data_dir.display().to_string();
    // One device resends half its messages (same seq and timestamp), one holds its readings
    // during an outage and bursts them on reconnect, one has a clock two minutes ahead.
    std::fs::write(
        dir.path().join("faults.toml"),
        r#"name = "transport faults, short"
seed = 3
duration_s = 200
interval_s = 5

[[patients]]
device_id = "dupes-1"
[[patients.events]]
kind = "duplicates"
magnitude = 0.5
onset_s = 0
end_s = 200

[[patients]]
device_id = "outage-1"
[[patients.events]]
kind = "outage"
onset_s = 50
end_s = 120

[[patients]]
device_id = "skew-1"
[[patients.events]]
kind = "clock_skew"
magnitude = 120.0
onset_s = 0
end_s = 200
"#,
    )
    .unwrap();
    let output = simulate(
        dir.path(),
        &[
            "--scenario",
            "faults.toml",
            "--speed",
            "200x",
            "--qos",
            "1",
            "--broker",
            &broker(&server),
            "--data-dir",
            &data_dir,
            "--json",
        ],
    );
    let faults = report(&output);
    assert_eq!(faults["failed"], 0, "{faults}");
    assert_eq!(faults["acked"], faults["sent"], "{faults}");
    let redeliveries = faults["redeliveries"].as_u64().unwrap();
    assert!(redeliveries > 0, "no duplicate was sent: {faults}");
    // Every redelivery was recognised and stored once; held and skewed readings were stored.
    let sent = faults["sent"].as_u64().unwrap();
    assert_eq!(
        counts(&server.data_dir).readings as u64,
        sent - redeliveries,
        "{faults}"
    );
    assert_eq!(
        sent - redeliveries,
        3 * 41,
        "41 ticks (0 to 200 s every 5 s) per device"
    );
    let health = get(&agent(), &server.url("/health")).json;
    assert_eq!(health["readings"]["duplicates"], redeliveries, "{health}");

    // A numeric rate paces the run, which still ends by itself with everything acknowledged.
    let paced = simulate(
        dir.path(),
        &[
            "--devices",
            "2",
            "--count",
            "10",
            "--rate",
            "40",
            "--qos",
            "1",
            "--seed",
            "9",
            "--broker",
            &broker(&server),
            "--data-dir",
            &data_dir,
            "--json",
        ],
    );
    let paced = report(&paced);
    assert_eq!(paced["acked"], 20, "{paced}");
    assert_eq!(paced["failed"], 0, "{paced}");
}
