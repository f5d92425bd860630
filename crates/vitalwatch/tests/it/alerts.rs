//! Alerts end to end: readings through the real `serve` → alerts over the API (raise, de-dup,
//! silence, acknowledge, resolve, restore after a restart), webhooks to receivers started here
//! (signature checked with python3's hmac), device offline, per-patient thresholds, the
//! what-if preview, and `vitalwatch evaluate` on the shipped scenarios.

use crate::support::{
    Guarded, Server, ServerOptions, WAIT, agent, bin, get, post_json, reading, send, wait_until,
};
use serde_json::Value;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Mutex};

fn start(dir: &Path, config: &str) -> Server {
    let path = dir.join("vitalwatch.toml");
    std::fs::write(&path, config).unwrap();
    Server::start_with(ServerOptions {
        args: vec!["--config".into(), path.display().to_string()],
        ..ServerOptions::new(dir)
    })
}

/// Devices send every hour as far as offline detection is concerned (tests that want it
/// offline say so).
const QUIET: &str = "[registry]\ndefault_expected_interval_s = 3600.0\n";
/// Two readings of 35.0 °C raise TEMPERATURE_LOW and, on the same second observation set, the
/// NEWS2 single-3 alarm (issue 18: within one reading interval); the webhook tests count one
/// alert's notifications.
const ONE_ALERT: &str = "[alerting.conditions.NEWS2]\nenabled = false\n";

fn alerts_of(server: &Server, query: &str) -> Vec<Value> {
    let answer = get(&agent(), &server.url(&format!("/api/alerts?{query}")));
    assert_eq!(answer.status, 200, "{}", answer.json);
    answer.json["alerts"].as_array().unwrap().clone()
}

fn audit_actions(data_dir: &Path) -> Vec<String> {
    crate::support::sql(data_dir, "SELECT action FROM audit_log ORDER BY id")
        .lines()
        .map(str::to_owned)
        .collect()
}

#[test]
fn many_out_of_range_readings_raise_one_alert_that_users_silence_ack_and_resolve() {
    let dir = tempfile::tempdir().unwrap();
    let agent = agent();
    let mut server = start(dir.path(), QUIET);
    for n in 0..12 {
        let answer = post_json(
            &agent,
            &server.url("/api/telemetry"),
            &reading("bed-1", n, 150.0),
        );
        assert_eq!(answer.status, 200);
    }
    // The seed's anomalies are unchanged: one row per out-of-range reading.
    let anomalies = get(
        &agent,
        &server.url("/api/anomalies?device_id=bed-1&type=OUT_OF_RANGE_HR"),
    );
    assert_eq!(anomalies.json["count"], 12);
    // ... but one alert episode.
    let alert = wait_until(WAIT, "the HR alert", || {
        alerts_of(&server, "device_id=bed-1")
            .into_iter()
            .find(|a| a["condition"] == "HEART_RATE_HIGH")
    });
    let high = alerts_of(&server, "device_id=bed-1&state=active&severity=high");
    assert_eq!(high.len(), 1, "one episode for twelve readings: {high:?}");
    assert_eq!(alert["priority"], "high");
    assert_eq!(alert["class"], "physiological");
    let id = alert["id"].as_u64().unwrap();

    let detail = get(&agent, &server.url(&format!("/api/alerts/{id}")));
    assert_eq!(detail.status, 200);
    assert_eq!(detail.json["events"][0]["kind"], "raised");
    assert!(!detail.json["anomalies"].as_array().unwrap().is_empty());
    assert!(!detail.json["readings"].as_array().unwrap().is_empty());

    let url = |action: &str| server.url(&format!("/api/alerts/{id}/{action}"));
    let silenced = post_json(
        &agent,
        &url("silence"),
        r#"{"by":"nurse.a","duration_s":60}"#,
    );
    assert_eq!(silenced.status, 200, "{}", silenced.json);
    assert!(silenced.json["silenced_until"].is_string());
    let too_long = post_json(
        &agent,
        &url("silence"),
        r#"{"by":"nurse.a","duration_s":100000}"#,
    );
    assert_eq!(too_long.status, 422);
    let no_user = post_json(&agent, &url("ack"), r#"{"by":" "}"#);
    assert_eq!(no_user.status, 422);
    assert_eq!(no_user.json["error"], "invalid_body");
    let acked = post_json(
        &agent,
        &url("ack"),
        r#"{"by":"nurse.a","note":"seen, calling doctor"}"#,
    );
    assert_eq!(acked.status, 200, "{}", acked.json);
    assert_eq!(acked.json["state"], "acknowledged");
    assert_eq!(acked.json["acknowledged_by"], "nurse.a");
    let again = post_json(&agent, &url("ack"), r#"{"by":"nurse.b"}"#);
    assert_eq!(again.status, 409);

    // The open alert survives a restart: the engine is restored from the store.
    assert!(server.terminate());
    let server = start(dir.path(), QUIET);
    let url = |action: &str| server.url(&format!("/api/alerts/{id}/{action}"));
    let resolved = post_json(&agent, &url("resolve"), r#"{"by":"dr.b"}"#);
    assert_eq!(resolved.status, 200, "{}", resolved.json);
    assert_eq!(resolved.json["state"], "resolved");
    assert_eq!(
        post_json(&agent, &url("resolve"), r#"{"by":"dr.b"}"#).status,
        409
    );
    assert_eq!(
        post_json(
            &agent,
            &server.url("/api/alerts/999999/ack"),
            r#"{"by":"x"}"#
        )
        .status,
        404
    );
    assert_eq!(get(&agent, &server.url("/api/alerts/abc")).status, 400);
    assert_eq!(
        get(&agent, &server.url("/api/alerts?state=maybe")).status,
        400
    );
    let kinds: Vec<String> = wait_until(WAIT, "the resolution in the history", || {
        let detail = get(&agent, &server.url(&format!("/api/alerts/{id}")));
        let kinds: Vec<String> = detail.json["events"]
            .as_array()?
            .iter()
            .map(|e| e["kind"].as_str().unwrap_or("").to_owned())
            .collect();
        kinds.contains(&"resolved".to_owned()).then_some(kinds)
    });
    assert_eq!(kinds, ["raised", "silenced", "acknowledged", "resolved"]);
    let actions = audit_actions(&server.data_dir);
    for action in ["alert.silence", "alert.acknowledge", "alert.resolve"] {
        assert!(
            actions.iter().any(|a| a == action),
            "{action} in {actions:?}"
        );
    }
    // NEWS2 of the device from its latest values (pulse 150 scores 3).
    let post = post_json(
        &agent,
        &server.url("/api/telemetry"),
        &reading("bed-1", 100, 150.0),
    );
    assert_eq!(post.status, 200);
    let news2 = get(&agent, &server.url("/api/devices/bed-1/news2"));
    assert_eq!(news2.status, 200, "{}", news2.json);
    assert_eq!(news2.json["news2"]["subscores"]["pulse"], 3);
    assert_eq!(news2.json["news2"]["partial"], true);
    assert_eq!(
        get(&agent, &server.url("/api/devices/nobody/news2")).status,
        404
    );
}

#[test]
fn a_silent_device_goes_offline_and_comes_back() {
    let dir = tempfile::tempdir().unwrap();
    let agent = agent();
    // Offline after 3 × 0.3 s without a reading.
    let server = start(
        dir.path(),
        "[registry]\ndefault_expected_interval_s = 0.3\n",
    );
    post_json(
        &agent,
        &server.url("/api/telemetry"),
        &reading("walker", 1, 72.0),
    );
    let offline = wait_until(WAIT, "DEVICE_OFFLINE", || {
        alerts_of(&server, "device_id=walker&state=active")
            .into_iter()
            .find(|a| a["condition"] == "DEVICE_OFFLINE")
    });
    assert_eq!(offline["class"], "technical");
    post_json(
        &agent,
        &server.url("/api/telemetry"),
        &reading("walker", 2, 72.0),
    );
    let id = offline["id"].as_u64().unwrap();
    wait_until(WAIT, "DEVICE_OFFLINE resolved", || {
        let detail = get(&agent, &server.url(&format!("/api/alerts/{id}")));
        (detail.json["alert"]["state"] == "resolved").then_some(())
    });
}

/// A tiny HTTP server: answers each request with the next status of `statuses` (the last one
/// repeats), or never answers when `statuses` is empty. Records (signature, body).
struct Receiver {
    url: String,
    seen: Seen,
}

/// What a receiver was sent: (signature header, body) per request.
type Seen = Arc<Mutex<Vec<(String, Vec<u8>)>>>;

fn receiver(statuses: Vec<u16>) -> Receiver {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = Arc::clone(&seen);
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { break };
            if statuses.is_empty() {
                // Never answers: keep the connection open until the test process ends.
                held.push(stream);
                continue;
            }
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let (mut length, mut signature) = (0usize, String::new());
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                let lower = line.to_ascii_lowercase();
                if let Some(v) = lower.strip_prefix("content-length:") {
                    length = v.trim().parse().unwrap_or(0);
                }
                if lower.starts_with("x-vitalwatch-signature:") {
                    signature = line["x-vitalwatch-signature:".len()..].trim().to_owned();
                }
            }
            let mut body = vec![0; length];
            reader.read_exact(&mut body).unwrap();
            let n = {
                let mut seen = log.lock().unwrap();
                seen.push((signature, body));
                seen.len()
            };
            let status = statuses[(n - 1).min(statuses.len() - 1)];
            let _ = write!(
                stream,
                "HTTP/1.1 {status} X\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            );
        }
    });
    Receiver { url, seen }
}

/// The HMAC-SHA256 of `body` by Python's `hmac`: a signature checked by code we did not write.
pub(crate) fn python_hmac(secret: &str, body: &[u8]) -> String {
    let mut child = Command::new("python3")
        .args([
            "-c",
            "import hmac,hashlib,sys; print(hmac.new(sys.argv[1].encode(), sys.stdin.buffer.read(), hashlib.sha256).hexdigest())",
            secret,
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("python3 is installed by scripts/test");
    child.stdin.take().unwrap().write_all(body).unwrap();
    let out = child.wait_with_output().unwrap();
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

#[test]
fn webhooks_are_signed_retried_and_kept_when_undeliverable() {
    let dir = tempfile::tempdir().unwrap();
    let agent = agent();
    let good = receiver(vec![200]);
    let flaky = receiver(vec![500, 503, 200]);
    let silent = receiver(Vec::new());
    let secret = "correct horse battery staple";
    let config = format!(
        "{QUIET}{ONE_ALERT}[alerting.webhook_delivery]\nmax_attempts = 3\ninitial_backoff_ms = 100\n\
         max_backoff_ms = 400\ntimeout_ms = 500\n\
         [[alerting.webhooks]]\nurl = \"{}\"\nsecret = \"{secret}\"\n\
         [[alerting.webhooks]]\nurl = \"{}\"\nsecret = \"{secret}\"\n\
         [[alerting.webhooks]]\nurl = \"{}\"\nsecret = \"{secret}\"\n",
        good.url, flaky.url, silent.url
    );
    let server = start(dir.path(), &config);
    // `config show` never prints the secret.
    let shown = Command::new(bin())
        .current_dir(dir.path())
        .args(["config", "show", "--config", "vitalwatch.toml"])
        .output()
        .unwrap();
    let shown = String::from_utf8_lossy(&shown.stdout).into_owned();
    assert!(
        shown.contains("[redacted]") && !shown.contains(secret),
        "{shown}"
    );

    // Two readings: one alone may be an artefact and raises no HIGH alert (issue 18).
    for n in [1, 2] {
        let answer = post_json(
            &agent,
            &server.url("/api/telemetry"),
            &reading("bed-9", n, 35.0),
        );
        assert_eq!(answer.status, 200);
    }
    let deliveries = wait_until(WAIT, "three finished deliveries", || {
        let answer = get(&agent, &server.url("/api/webhooks/deliveries"));
        let list = answer.json["deliveries"].as_array()?.clone();
        (list.len() >= 3).then_some(list)
    });
    let of = |url: &str| {
        deliveries
            .iter()
            .find(|d| d["url"] == url)
            .unwrap_or_else(|| panic!("no delivery to {url}: {deliveries:?}"))
            .clone()
    };
    assert_eq!(of(&good.url)["state"], "delivered");
    assert_eq!(of(&good.url)["attempts"], 1);
    assert_eq!(of(&flaky.url)["state"], "delivered");
    assert_eq!(
        of(&flaky.url)["attempts"],
        3,
        "delivered on the third attempt"
    );
    assert_eq!(of(&silent.url)["state"], "failed");
    assert_eq!(of(&silent.url)["attempts"], 3);
    let failed = get(&agent, &server.url("/api/webhooks/deliveries?state=failed"));
    assert_eq!(failed.json["count"], 1);
    assert_eq!(failed.json["deliveries"][0]["url"], silent.url.as_str());

    // The body is the transition; its signature checks out with an independent HMAC.
    let (signature, body) = good.seen.lock().unwrap()[0].clone();
    assert_eq!(signature, format!("sha256={}", python_hmac(secret, &body)));
    let json: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(json["event"], "alert.raised");
    assert_eq!(json["transition"]["alert"]["condition"], "HEART_RATE_LOW");
    assert_eq!(json["transition"]["alert"]["device_id"], "bed-9");
    // Ingest went on while the silent receiver held its connections.
    for n in 3..20 {
        let answer = post_json(
            &agent,
            &server.url("/api/telemetry"),
            &reading("bed-9", n, 72.0),
        );
        assert_eq!(answer.status, 200);
    }
    assert_eq!(
        get(&agent, &server.url("/api/webhooks/deliveries?state=lost")).status,
        400
    );
}

#[test]
fn per_patient_thresholds_change_the_outcome_and_preview_answers_first() {
    let dir = tempfile::tempdir().unwrap();
    let agent = agent();
    // LOW alerts raise after two readings, so the test does not wait a minute.
    let config = format!("{QUIET}[alerting.onset]\nlow = {{ readings = 2, secs = 0 }}\n");
    let server = start(dir.path(), &config);
    let telemetry = server.url("/api/telemetry");
    for n in 0..4 {
        assert_eq!(
            post_json(&agent, &telemetry, &reading("athlete", n, 110.0)).status,
            200
        );
    }
    let recorded = wait_until(WAIT, "the HR alert", || {
        alerts_of(&server, "device_id=athlete")
            .into_iter()
            .find(|a| a["condition"] == "HEART_RATE_HIGH")
    });
    assert_eq!(recorded["priority"], "low");

    // What if this patient's maximum were 120? Nothing is changed by asking.
    let preview = post_json(
        &agent,
        &server.url("/api/thresholds/preview"),
        r#"{"device_id":"athlete","thresholds":{"heart_rate_max":120}}"#,
    );
    assert_eq!(preview.status, 200, "{}", preview.json);
    assert_eq!(preview.json["readings_replayed"], 4);
    assert_eq!(preview.json["current_alerts"], 1);
    assert_eq!(preview.json["proposed_alerts"], 0);
    assert_eq!(preview.json["current_anomalies"], 4);
    assert_eq!(preview.json["proposed_anomalies"], 0);
    assert_eq!(
        preview.json["missed_recorded_episodes"][0]["alert_id"],
        recorded["id"]
    );
    let unsafe_preview = post_json(
        &agent,
        &server.url("/api/thresholds/preview"),
        r#"{"thresholds":{"heart_rate_max":150}}"#,
    );
    assert_eq!(unsafe_preview.status, 422);

    let thresholds = server.url("/api/devices/athlete/thresholds");
    let refused = send(
        &agent,
        "PUT",
        &thresholds,
        Some("application/json"),
        br#"{"heart_rate_max":140,"author":"dr.c","reason":"athlete"}"#,
    );
    assert_eq!(refused.status, 422);
    assert_eq!(refused.json["error"], "invalid_thresholds");
    assert!(
        refused.json["detail"]
            .as_str()
            .unwrap()
            .contains("heart_rate_max")
    );
    let no_reason = send(
        &agent,
        "PUT",
        &thresholds,
        Some("application/json"),
        br#"{"heart_rate_max":120,"author":"dr.c","reason":""}"#,
    );
    assert_eq!(no_reason.status, 422);
    let set = send(
        &agent,
        "PUT",
        &thresholds,
        Some("application/json"),
        br#"{"heart_rate_max":120,"author":"dr.c","reason":"trained athlete, resting 110 is normal"}"#,
    );
    assert_eq!(set.status, 200, "{}", set.json);
    assert_eq!(set.json["thresholds"]["heart_rate_max"], 120.0);
    // From the next reading on, 110 bpm is in range for this patient only.
    let answer = post_json(&agent, &telemetry, &reading("athlete", 10, 110.0));
    assert_eq!(
        answer.json["anomalies"].as_array().unwrap().len(),
        0,
        "{}",
        answer.json
    );
    let other = post_json(&agent, &telemetry, &reading("someone-else", 10, 110.0));
    assert_eq!(other.json["anomalies"][0]["type"], "OUT_OF_RANGE_HR");
    let shown = get(&agent, &thresholds);
    assert_eq!(
        shown.json["override"]["thresholds"]["heart_rate_max"],
        120.0
    );

    // The CLI sees the same override, beside the running server, and can clear it.
    let cli = |args: &[&str]| {
        let out = crate::support::command(dir.path())
            .arg("thresholds")
            .args(args)
            .args(["--config", "vitalwatch.toml"])
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (ok, out, err) = cli(&["show", "athlete"]);
    assert!(ok, "{err}");
    assert!(out.contains("\"heart_rate_max\": 120.0"), "{out}");
    let (ok, _, err) = cli(&["set", "athlete", "--hr-min", "30", "--reason", "x"]);
    assert!(!ok);
    assert!(err.contains("heart_rate_min"), "{err}");
    let (ok, out, err) = cli(&["preview", "athlete", "--hr-max", "105"]);
    assert!(ok, "{err}");
    let preview: Value = serde_json::from_str(&out).unwrap();
    assert!(
        preview["proposed_anomalies"].as_u64().unwrap() >= 5,
        "{preview}"
    );
    let (ok, _, err) = cli(&["clear", "athlete", "--reason", "discharged"]);
    assert!(ok, "{err}");
    // The server reloads overrides written by the CLI.
    wait_until(WAIT, "the cleared override to apply", || {
        let answer = post_json(
            &agent,
            &telemetry,
            &reading("athlete", 20 + rand_n(), 110.0),
        );
        (answer.json["anomalies"].as_array()?.len() == 1).then_some(())
    });
    let actions = audit_actions(&server.data_dir);
    assert!(actions.iter().any(|a| a == "thresholds.set"), "{actions:?}");
    assert!(
        actions.iter().any(|a| a == "thresholds.clear"),
        "{actions:?}"
    );
    let gone = send(
        &agent,
        "DELETE",
        &format!("{thresholds}?by=dr.c"),
        None,
        b"",
    );
    assert_eq!(gone.json["removed"], false);
}

/// A distinct reading offset per poll, so each poll is a new reading.
fn rand_n() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}

#[test]
fn evaluate_the_shipped_scenarios_meets_the_aims() {
    let scenarios = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scenarios");
    let out = Command::new(bin())
        .args(["evaluate", "--json"])
        .arg(&scenarios)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    let critical = report["critical_events"].as_u64().unwrap();
    assert!(critical >= 9, "{report}");
    assert_eq!(report["critical_detected"].as_u64().unwrap(), critical);
    assert!(
        report["max_time_to_alert_s"].as_f64().unwrap() <= 30.0,
        "{report}"
    );
    let (alerts, seed) = (
        report["alerts"].as_u64().unwrap(),
        report["seed_alerts"].as_u64().unwrap(),
    );
    assert!(alerts > 0 && alerts * 10 <= seed, "{alerts} vs {seed}");
    assert!(report["false_alerts_per_patient_day"].as_f64().unwrap() < 1.0);
    // Issue 18's aims: the NEWS2 urgent alarm within 60 s of a slow NEWS2 rise reaching 5, no
    // HIGH alarm from a single-reading artefact, at most 0.5 false physiological alerts per
    // patient-day across the suite.
    let news2 = report["max_time_to_news2_s"].as_f64().unwrap();
    assert!(news2 <= 60.0, "{news2} s: {report}");
    assert_eq!(report["high_alarms_from_artefacts"], 0, "{report}");
    assert!(
        report["false_physiological_alerts_per_patient_day"]
            .as_f64()
            .unwrap()
            <= 0.5,
        "{report}"
    );
    let scenario = |needle: &str| {
        report["scenarios"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["name"].as_str().unwrap().contains(needle))
            .unwrap_or_else(|| panic!("scenario {needle}"))["engine"]
            .clone()
    };
    // A stable NEWS2 4 owes no urgent alarm, and got none.
    assert_eq!(scenario("stable NEWS2")["alerts"], 0);
    // COPD on Scale 2: nothing at the prescribed target; the exacerbation is detected HIGH.
    let copd = scenario("COPD");
    let copd_alerts = copd["alert_list"].as_array().unwrap();
    assert!(
        copd_alerts
            .iter()
            .all(|a| a["device_id"] == "copd-1" && a["detected"] == "hypoxia"),
        "{copd}"
    );
    assert!(copd_alerts.iter().any(|a| a["priority"] == "high"));
    // An intermittent cuff holds the NEWS2 alarm: one episode, not one per cuff interval.
    let cuff = scenario("intermittent BP");
    let news2_episodes = cuff["alert_list"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["condition"] == "NEWS2")
        .count();
    assert_eq!(news2_episodes, 1, "{cuff}");
    for kind in [
        "fever",
        "tachycardia",
        "bradycardia",
        "hypoxia",
        "sepsis",
        "probe_off",
        "hr_artefact",
        "dropout",
        "battery_drain",
        "tachypnoea",
        "bradypnoea",
        "hypotension",
        "hypertension",
        "hypothermia",
        "arrhythmia",
    ] {
        assert_eq!(report["per_kind"][kind]["missed"], 0, "{kind}: {report}");
    }
    assert!(report["seed"]["critical_detected"].as_u64().unwrap() < critical);
    // The table form names the same numbers.
    let table = Command::new(bin())
        .arg("evaluate")
        .arg(&scenarios)
        .output()
        .unwrap();
    let table = String::from_utf8_lossy(&table.stdout);
    assert!(table.contains(&format!("{critical}/{critical}")), "{table}");
    let missing = Command::new(bin())
        .args(["evaluate", "/nonexistent.toml"])
        .output()
        .unwrap();
    assert!(!missing.status.success());
}

#[test]
fn webhooks_go_over_verified_https() {
    let dir = tempfile::tempdir().unwrap();
    let agent = agent();
    // The project's PKI signs the receiver's certificate (SAN localhost, 127.0.0.1).
    let init = Command::new(bin())
        .current_dir(dir.path())
        .args(["certs", "init"])
        .output()
        .unwrap();
    assert!(
        init.status.success(),
        "{}",
        String::from_utf8_lossy(&init.stderr)
    );
    let certs = dir.path().join("data/certs");
    let mut receiver = Guarded::spawn(
        Command::new("python3")
            .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/it/clients/https_receiver.py"))
            .arg(certs.join("server.crt"))
            .arg(certs.join("server.key"))
            .stdout(std::process::Stdio::piped()),
    );
    let mut lines = receiver.lines();
    let port: u16 = lines
        .find(WAIT, |line| line.strip_prefix("port ")?.parse().ok())
        .expect("the receiver prints its port");
    let secret = "an https webhook secret";
    let url = format!("https://localhost:{port}/hook");
    let untrusted = format!("https://127.0.0.1:{port}/untrusted");
    let config = format!(
        "{QUIET}{ONE_ALERT}[alerting.webhook_delivery]\nmax_attempts = 1\n\
         [[alerting.webhooks]]\nurl = \"{url}\"\nsecret = \"{secret}\"\nca = \"{}\"\n\
         [[alerting.webhooks]]\nurl = \"{untrusted}\"\nsecret = \"{secret}\"\n",
        certs.join("ca.crt").display()
    );
    let server = start(dir.path(), &config);
    // Two readings: one alone may be an artefact and raises no HIGH alert (issue 18).
    for n in [1, 2] {
        let answer = post_json(
            &agent,
            &server.url("/api/telemetry"),
            &reading("bed-7", n, 35.0),
        );
        assert_eq!(answer.status, 200);
    }
    let deliveries = wait_until(WAIT, "two finished deliveries", || {
        let list = get(&agent, &server.url("/api/webhooks/deliveries")).json["deliveries"]
            .as_array()?
            .clone();
        (list.len() >= 2).then_some(list)
    });
    let of = |u: &str| deliveries.iter().find(|d| d["url"] == u).unwrap().clone();
    assert_eq!(of(&url)["state"], "delivered", "{deliveries:?}");
    // Without our CA the receiver's certificate is not trusted: verification is on.
    assert_eq!(of(&untrusted)["state"], "failed", "{deliveries:?}");
    let received: Value = lines
        .find(WAIT, |line| serde_json::from_str(line).ok())
        .expect("the receiver prints what it received");
    let body = received["body"].as_str().unwrap();
    assert_eq!(
        received["signature"],
        format!("sha256={}", python_hmac(secret, body.as_bytes()))
    );
}
