//! MQTT over TLS with clients we did not write: Debian's `mosquitto_pub`/`mosquitto_sub` and
//! Eclipse Paho (Python), plus raw hostile traffic. Devices prove who they are with client
//! certificates from `vitalwatch certs`; anything else is refused, counted and audited.

use crate::support::{Server, WAIT, agent, bin, counts, get, wait_until};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;

pub struct DeviceCert {
    pub cert: PathBuf,
    pub key: PathBuf,
}

pub fn certs_dir(server: &Server) -> PathBuf {
    server.data_dir.join("certs")
}

pub fn ca(server: &Server) -> PathBuf {
    certs_dir(server).join("ca.crt")
}

/// Issues a device certificate with the real CLI, beside the running server.
pub fn issue(server: &Server, device_id: &str) -> DeviceCert {
    issue_kind(server, "device", device_id, &[])
}

/// [`issue`] for a server whose store is not in its data dir (`--database URL`): the
/// certificate change is audited there.
pub fn issue_on(server: &Server, device_id: &str, database: &str) -> DeviceCert {
    issue_kind(server, "device", device_id, &["--database", database])
}

/// `vitalwatch certs device|consumer NAME` against the server's data dir (and `extra` flags).
fn issue_kind(server: &Server, kind: &str, device_id: &str, extra: &[&str]) -> DeviceCert {
    let output = crate::support::on_store(&server.data_dir)
        .args(["certs", kind, device_id, "--data-dir"])
        .arg(&server.data_dir)
        .args(extra)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    DeviceCert {
        cert: certs_dir(server).join(format!("devices/{device_id}.crt")),
        key: certs_dir(server).join(format!("devices/{device_id}.key")),
    }
}

pub fn python() -> String {
    std::env::var("VITALWATCH_PYTHON").unwrap_or_else(|_| "python3".to_owned())
}

pub fn client_script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/it/clients")
        .join(name)
}

/// Runs the Paho publisher and returns its JSON summary.
pub fn paho(server: &Server, device: &str, cert: Option<&DeviceCert>, args: &[&str]) -> Value {
    let mut command = Command::new(python());
    command
        .arg(client_script("paho_publish.py"))
        .args(["--port", &server.mqtts.unwrap().port().to_string(), "--ca"])
        .arg(ca(server))
        .args(["--device", device]);
    if let Some(cert) = cert {
        command
            .arg("--cert")
            .arg(&cert.cert)
            .arg("--key")
            .arg(&cert.key);
    }
    let output = command
        .args(args)
        .output()
        .expect("running python3 with paho-mqtt");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "paho client failed (is paho-mqtt installed? scripts/test installs it): {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_str(stdout.lines().last().unwrap_or(""))
        .unwrap_or_else(|_| panic!("paho said: {stdout}"))
}

/// Runs the Paho publisher with `--hold`: once it has sent everything, waits (bounded) until
/// the server has stored `stored` readings in all, then lets it disconnect; returns its
/// summary. For QoS 0, where no acknowledgement says a message arrived.
pub fn paho_until_stored(
    server: &Server,
    device: &str,
    cert: &DeviceCert,
    args: &[&str],
    stored: i64,
) -> Value {
    let mut client = crate::support::Guarded::spawn(
        Command::new(python())
            .arg(client_script("paho_publish.py"))
            .args(["--port", &server.mqtts.unwrap().port().to_string(), "--ca"])
            .arg(ca(server))
            .args(["--device", device, "--hold"])
            .arg("--cert")
            .arg(&cert.cert)
            .arg("--key")
            .arg(&cert.key)
            .args(args)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped()),
    );
    let stdin = client.take_stdin();
    let mut lines = client.lines();
    let summary = |lines: &mut crate::support::Lines| {
        lines.find(crate::support::WAIT, |line| {
            serde_json::from_str::<Value>(line).ok()
        })
    };
    let sent = summary(&mut lines);
    assert!(sent.is_some(), "paho said: {:?}", lines.seen());
    wait_for_readings(server, stored);
    drop(stdin);
    let done = summary(&mut lines).unwrap_or_else(|| panic!("paho said: {:?}", lines.seen()));
    assert!(
        client
            .wait_timeout(crate::support::WAIT)
            .is_some_and(|status| status.success()),
        "paho client failed"
    );
    done
}

/// Runs `mosquitto_pub` with the CA and (optionally) a client certificate.
fn mosquitto_pub(server: &Server, cert: Option<(&Path, &Path)>, args: &[&str]) -> (bool, String) {
    let mut command = Command::new("mosquitto_pub");
    command
        .args([
            "-h",
            "localhost",
            "-p",
            &server.mqtts.unwrap().port().to_string(),
            "--cafile",
        ])
        .arg(ca(server))
        .args(["-t", "/iot/health", "-d"]);
    if let Some((cert, key)) = cert {
        command.arg("--cert").arg(cert).arg("--key").arg(key);
    }
    let output = command
        .args(args)
        .output()
        .expect("running mosquitto_pub (mosquitto-clients)");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), text)
}

/// Waits (at most 10 s) until `n` readings are stored; QoS 0 gives nothing else to wait on.
/// The caller asserts on what is stored then.
pub fn wait_for_readings(server: &Server, n: i64) {
    let _ = crate::support::poll_until(std::time::Duration::from_secs(10), || {
        counts(&server.data_dir).readings >= n
    });
}

fn seed_payload(device: &str, second: u32) -> String {
    format!(
        r#"{{"device_id":"{device}","timestamp":"2024-01-16T10:30:{second:02}.123456","heart_rate":72,"body_temp":36.8,"signal_strength":-75,"battery_level":85}}"#
    )
}

#[test]
fn mosquitto_pub_with_a_device_certificate_is_stored_once_committed() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let device = issue(&server, "ESP32_001");
    let cert = Some((device.cert.as_path(), device.key.as_path()));
    for (second, extra) in [
        (1, vec!["-q", "1"]),
        (2, vec!["-q", "0"]),
        (3, vec!["-q", "2"]),
        (4, vec!["-q", "1", "-V", "mqttv5"]),
    ] {
        let mut args = vec!["-m".to_owned(), seed_payload("ESP32_001", second)];
        args.extend(extra.iter().map(|s| s.to_string()));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let (ok, out) = mosquitto_pub(&server, cert, &args);
        assert!(ok, "{out}");
        if extra.contains(&"1") {
            assert!(out.contains("received PUBACK"), "{out}");
        }
        if extra.contains(&"2") {
            assert!(out.contains("received PUBCOMP"), "{out}");
        }
    }
    // The same message again (a redelivery) is stored once.
    let (ok, _) = mosquitto_pub(
        &server,
        cert,
        &["-q", "1", "-m", &seed_payload("ESP32_001", 1)],
    );
    assert!(ok);
    // QoS 0 has no acknowledgement to wait for: poll (bounded) until all four are stored.
    wait_for_readings(&server, 4);
    let stored: Vec<(String, String)> = server
        .sql("SELECT device_id, source FROM readings ORDER BY timestamp")
        .lines()
        .map(|row| {
            let (device, source) = row.split_once('|').expect("two columns");
            (device.to_owned(), source.to_owned())
        })
        .collect();
    assert_eq!(stored.len(), 4, "{stored:?}");
    assert!(stored.iter().all(|(d, s)| d == "ESP32_001" && s == "mqtt"));

    // A device may not subscribe to anything.
    let output = Command::new("mosquitto_sub")
        .args([
            "-h",
            "localhost",
            "-p",
            &server.mqtts.unwrap().port().to_string(),
            "--cafile",
        ])
        .arg(ca(&server))
        .arg("--cert")
        .arg(&device.cert)
        .arg("--key")
        .arg(&device.key)
        .args(["-t", "vitalwatch/alerts/#", "-C", "1", "-W", "3", "-d"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&output.stdout).to_string()
        + &String::from_utf8_lossy(&output.stderr);
    assert!(text.contains("received SUBACK"), "{text}");
    assert!(
        text.contains("Subscription denied") || text.contains("128"),
        "{text}"
    );
}

#[test]
fn clients_without_a_valid_identity_are_refused_counted_and_audited() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start(dir.path());
    let good = issue(&server, "bed-1");
    let payload = seed_payload("bed-1", 5);

    // No client certificate: refused at the handshake.
    let (ok, out) = mosquitto_pub(&server, None, &["-q", "1", "-m", &payload]);
    assert!(!ok, "{out}");

    // A certificate from another CA (made with openssl, as an attacker would).
    let other = dir.path().join("other");
    std::fs::create_dir_all(&other).unwrap();
    let status = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-days",
            "30",
            "-subj",
            "/CN=bed-1",
        ])
        .arg("-keyout")
        .arg(other.join("k.pem"))
        .arg("-out")
        .arg(other.join("c.pem"))
        .output()
        .unwrap();
    assert!(status.status.success());
    let (ok, out) = mosquitto_pub(
        &server,
        Some((&other.join("c.pem"), &other.join("k.pem"))),
        &["-q", "1", "-m", &payload],
    );
    assert!(!ok, "{out}");

    // An expired certificate, signed by our own CA.
    let expired = expired_device_cert(&server, "bed-1", dir.path());
    let (ok, out) = mosquitto_pub(
        &server,
        Some((&expired.cert, &expired.key)),
        &["-q", "1", "-m", &payload],
    );
    assert!(!ok, "{out}");

    // Publishing another device's id: 3.1.1 closes the connection, 5.0 answers 0x87.
    let (_, out) = mosquitto_pub(
        &server,
        Some((&good.cert, &good.key)),
        &["-q", "1", "-m", &seed_payload("bed-2", 6)],
    );
    assert!(!out.contains("received PUBACK"), "{out}");
    let (_, out) = mosquitto_pub(
        &server,
        Some((&good.cert, &good.key)),
        &["-q", "1", "-V", "mqttv5", "-m", &seed_payload("bed-2", 7)],
    );
    assert!(out.contains("RC:135"), "{out}");

    // The good device still works; then it is revoked and refused at CONNECT at once.
    let (ok, out) = mosquitto_pub(
        &server,
        Some((&good.cert, &good.key)),
        &["-q", "1", "-m", &payload],
    );
    assert!(ok && out.contains("received PUBACK"), "{out}");
    let revoke = crate::support::on_store(&server.data_dir)
        .args(["certs", "revoke", "bed-1", "--data-dir"])
        .arg(&server.data_dir)
        .output()
        .unwrap();
    assert!(revoke.status.success());
    let (ok, out) = mosquitto_pub(
        &server,
        Some((&good.cert, &good.key)),
        &["-q", "1", "-m", &seed_payload("bed-1", 8)],
    );
    assert!(
        !ok && !out.contains("received PUBACK"),
        "a revoked certificate was accepted: {out}"
    );

    assert_eq!(
        counts(&server.data_dir).readings,
        1,
        "only the one good reading is stored"
    );
    let health = get(&agent(), &server.url("/health")).json;
    let rejected = &health["rejected"];
    assert!(
        rejected["tls_handshake_failed"].as_u64().unwrap() >= 3,
        "{rejected}"
    );
    assert!(
        rejected["unauthorized"].as_u64().unwrap() >= 2,
        "{rejected}"
    );
    assert!(
        rejected["connect_refused"].as_u64().unwrap() >= 1,
        "{rejected}"
    );
    // /metrics counts the failed handshakes on the mqtts listener (issue 15). ntex-tls reports
    // every rustls failure as "disconnected", so their reason there is `other` (the HTTPS
    // listeners name it: tests/it/ops.rs).
    let scrape = agent()
        .get(&server.url("/metrics"))
        .call()
        .unwrap()
        .body_mut()
        .read_to_string()
        .unwrap();
    let counted: f64 = scrape
        .lines()
        .filter_map(|line| {
            line.strip_prefix("vitalwatch_tls_handshake_failures_total{listener=\"mqtts\",")
        })
        .filter_map(|rest| rest.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    assert!(counted >= 3.0, "{counted}\n{scrape}");

    assert!(server.terminate(), "{}", server.log());
    let audited: Vec<String> = server
        .sql("SELECT action || ':' || target FROM audit_log ORDER BY id")
        .lines()
        .map(str::to_owned)
        .collect();
    for expected in [
        "certificate.issue:bed-1",
        "certificate.revoke:bed-1",
        "input.rejected:tls_handshake_failed",
        "input.rejected:unauthorized",
        "input.rejected:connect_refused",
    ] {
        assert!(
            audited.iter().any(|a| a == expected),
            "{expected} not in {audited:?}"
        );
    }
}

/// A device certificate signed by our CA whose validity ended yesterday.
fn expired_device_cert(server: &Server, device_id: &str, dir: &Path) -> DeviceCert {
    let certs = certs_dir(server);
    let ca_key =
        rcgen::KeyPair::from_pem(&std::fs::read_to_string(certs.join("ca.key")).unwrap()).unwrap();
    let issuer = rcgen::Issuer::from_ca_cert_pem(
        &std::fs::read_to_string(certs.join("ca.crt")).unwrap(),
        ca_key,
    )
    .unwrap();
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, device_id);
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::days(30);
    params.not_after = now - time::Duration::days(1);
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = params.signed_by(&key, &issuer).unwrap();
    let paths = DeviceCert {
        cert: dir.join("expired.crt"),
        key: dir.join("expired.key"),
    };
    std::fs::write(&paths.cert, cert.pem()).unwrap();
    std::fs::write(&paths.key, key.serialize_pem()).unwrap();
    paths
}

#[test]
fn paho_clients_v311_and_v5_at_every_qos_and_an_esp32_profile() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let device = issue(&server, "paho-1");
    let mut start = 0;
    for protocol in ["311", "5"] {
        for qos in ["0", "1", "2"] {
            let args = [
                "--protocol",
                protocol,
                "--qos",
                qos,
                "--count",
                "20",
                "--start",
                &start.to_string(),
            ];
            let summary = if qos == "0" {
                paho_until_stored(&server, "paho-1", &device, &args, start + 20)
            } else {
                paho(&server, "paho-1", Some(&device), &args)
            };
            assert_eq!(summary["sent"], 20, "{summary}");
            if qos != "0" {
                assert_eq!(summary["acked"], 20, "v{protocol} qos {qos}: {summary}");
            }
            start += 20;
        }
    }
    let esp32 = issue(&server, "ESP32_007");
    // QoS 0 has no acknowledgement: the client stays connected until the readings are stored.
    let summary = paho_until_stored(
        &server,
        "ESP32_007",
        &esp32,
        &[
            "--esp32",
            "--protocol",
            "311",
            "--qos",
            "0",
            "--count",
            "10",
            "--start",
            "1000",
        ],
        130,
    );
    assert_eq!(summary["sent"], 10, "{summary}");
    assert_eq!(counts(&server.data_dir).readings, 130);
}

#[test]
fn malformed_readings_are_refused_per_protocol_and_later_good_ones_flow() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let device = issue(&server, "dev-9");
    let bad = r#"{"device_id":"dev-9","heart_rate":"NaN"}"#;
    let good = r#"{"device_id":"dev-9","timestamp":1767225600000,"heart_rate":70,"body_temp":36.7,"signal_strength":-60,"battery_level":90}"#;
    let good2 = r#"{"device_id":"dev-9","timestamp":1767225601000,"heart_rate":71,"body_temp":36.7,"signal_strength":-60,"battery_level":90}"#;
    // 3.1.1 cannot say no: the bad one is acknowledged and recorded as rejected.
    let v3 = paho(
        &server,
        "dev-9",
        Some(&device),
        &[
            "--protocol",
            "311",
            "--payload-json",
            bad,
            "--payload-json",
            good,
            "--payload-json",
            "not json",
        ],
    );
    assert_eq!(v3["acked"], 3, "{v3}");
    // 5.0 answers 0x99 (payload format invalid) and keeps the session.
    let v5 = paho(
        &server,
        "dev-9",
        Some(&device),
        &[
            "--protocol",
            "5",
            "--payload-json",
            bad,
            "--payload-json",
            good2,
        ],
    );
    assert_eq!(v5["acked"], 2, "{v5}");
    let codes = v5["reason_codes"].as_object().unwrap();
    assert!(
        codes.keys().any(|k| k.contains("Payload format invalid")),
        "{v5}"
    );
    assert_eq!(counts(&server.data_dir).readings, 2);
    let health = get(&agent(), &server.url("/health")).json;
    assert_eq!(
        health["rejected"]["non_finite_number"], 2,
        "{}",
        health["rejected"]
    );
    assert_eq!(health["rejected"]["malformed_json"], 1);
}

fn hostile(server: &Server, cert: &DeviceCert, case: &str) -> Value {
    let output = Command::new(python())
        .arg(client_script("hostile_mqtt.py"))
        .args(["--port", &server.mqtts.unwrap().port().to_string(), "--ca"])
        .arg(ca(server))
        .arg("--cert")
        .arg(&cert.cert)
        .arg("--key")
        .arg(&cert.key)
        .arg(case)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{case}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(output.stdout.trim_ascii()).unwrap()
}

#[test]
fn hostile_mqtt_traffic_never_stops_the_broker() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start(dir.path());
    let device = issue(&server, "dev-h");
    let mut n = 0;
    let mut publish_ok = |server: &Server| {
        n += 1;
        let summary = paho(
            server,
            "dev-h",
            Some(&device),
            &["--qos", "1", "--count", "1", "--start", &n.to_string()],
        );
        assert_eq!(summary["acked"], 1, "{summary}");
    };
    publish_ok(&server);
    for case in [
        "garbage-after-connect",
        "malformed-packet",
        "oversized",
        "bad-utf8-topic",
    ] {
        let result = hostile(&server, &device, case);
        assert_eq!(result["closed"], true, "{case}: {result}");
        assert_ne!(result["puback"], true, "{case}: {result}");
        assert!(server.is_running(), "broker died on {case}");
        publish_ok(&server);
    }
    let result = hostile(&server, &device, "slowloris");
    assert_eq!(result["opened"], 20, "{result}");
    assert_eq!(result["served_while_held"], true, "{result}");
    let result = hostile(&server, &device, "churn");
    assert_eq!(result["opened"], 1000, "{result}");
    assert!(server.is_running());
    // Until the broker has seen the churn's sockets close, they count against this address's
    // handshakes in progress (`[mqtt] handshakes_per_address`) and a connection from it is
    // closed at once; the device is served as soon as they are gone, as it would be on its
    // next reconnect. The same reading each attempt: a retry never stores a second one.
    n += 1;
    let start = n.to_string();
    wait_until(WAIT, "the device to be served after the churn", || {
        let args = ["--qos", "1", "--count", "1", "--start", start.as_str()];
        paho(&server, "dev-h", Some(&device), &args)["acked"] == 1
    });
    assert_eq!(counts(&server.data_dir).readings, 6);
}

/// Issues a consumer certificate (OU = consumer) with the real CLI.
pub fn issue_consumer(server: &Server, name: &str) -> DeviceCert {
    issue_kind(server, "consumer", name, &[])
}

/// A running `mosquitto_sub -d -v`, read line by line.
struct Subscriber {
    _process: crate::support::Guarded,
    lines: crate::support::Lines,
}

impl Subscriber {
    fn start(server: &Server, cert: &DeviceCert, filter: &str, count: u32) -> Subscriber {
        // stdbuf: mosquitto_sub block-buffers a pipe; each line is needed as it happens.
        let mut process = crate::support::Guarded::spawn(
            Command::new("stdbuf")
                .args([
                    "-oL",
                    "mosquitto_sub",
                    "-h",
                    "localhost",
                    "-p",
                    &server.mqtts.unwrap().port().to_string(),
                    "--cafile",
                ])
                .arg(ca(server))
                .arg("--cert")
                .arg(&cert.cert)
                .arg("--key")
                .arg(&cert.key)
                .args([
                    "-t",
                    filter,
                    "-q",
                    "1",
                    "-v",
                    "-d",
                    "-C",
                    &count.to_string(),
                    "-W",
                    "30",
                ])
                .stdout(std::process::Stdio::piped()),
        );
        let lines = process.lines();
        Subscriber {
            _process: process,
            lines,
        }
    }

    /// The next line containing `needle` (waits at most 20 s).
    fn wait_for(&mut self, needle: &str) -> String {
        self.lines
            .find_containing(std::time::Duration::from_secs(20), needle)
            .unwrap_or_else(|| panic!("mosquitto_sub never printed {needle:?}"))
    }
}

#[test]
fn consumers_subscribe_to_alerts_and_telemetry_with_retained_alert_state() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let station = issue_consumer(&server, "nurse-station");
    let agent = agent();

    let mut alerts = Subscriber::start(&server, &station, "vitalwatch/alerts/#", 1);
    alerts.wait_for("received SUBACK");
    let mut telemetry = Subscriber::start(&server, &station, "vitalwatch/telemetry/+", 1);
    telemetry.wait_for("received SUBACK");

    // A reading far out of range raises a high-priority alert at once.
    let reading = r#"{"device_id":"bed-9","timestamp":1767225600000,"heart_rate":150,"body_temp":36.8,"signal_strength":-60,"battery_level":90}"#;
    assert_eq!(
        crate::support::post_json(&agent, &server.url("/api/telemetry"), reading).status,
        200
    );

    let line = alerts.wait_for("vitalwatch/alerts/bed-9 ");
    let message: Value = serde_json::from_str(line.split_once(' ').unwrap().1).unwrap();
    assert_eq!(message["device_id"], "bed-9");
    assert_eq!(message["transition"]["kind"], "raised", "{message}");
    assert_eq!(
        message["open_alerts"].as_array().unwrap().len(),
        1,
        "{message}"
    );
    let line = telemetry.wait_for("vitalwatch/telemetry/bed-9 ");
    let record: Value = serde_json::from_str(line.split_once(' ').unwrap().1).unwrap();
    assert_eq!(record["heart_rate"], 150.0);

    // A late subscriber learns the current alert state from the retained message.
    let mut late = Subscriber::start(&server, &station, "vitalwatch/alerts/+", 1);
    let publish = late.wait_for("received PUBLISH");
    assert!(publish.contains("r1"), "not retained: {publish}");
    late.wait_for("vitalwatch/alerts/bed-9 ");

    // Consumers read, never write; and only below vitalwatch/.
    let (_, out) = mosquitto_pub(
        &server,
        Some((&station.cert, &station.key)),
        &["-q", "1", "-V", "mqttv5", "-m", reading],
    );
    assert!(out.contains("RC:135"), "{out}");
    let mut denied = Subscriber::start(&server, &station, "/iot/health", 1);
    let suback = denied.wait_for("Subscribed (mid");
    assert!(suback.ends_with(": 128"), "{suback}");
    let mut granted = Subscriber::start(&server, &station, "vitalwatch/alerts/#", 1);
    let suback = granted.wait_for("Subscribed (mid");
    assert!(suback.ends_with(": 1"), "{suback}");
}

/// Runs `mosquitto_pub` against the plaintext listener.
fn mosquitto_pub_plain(port: u16, args: &[&str]) -> (bool, String) {
    let output = Command::new("mosquitto_pub")
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "-t",
            "/iot/health",
            "-d",
        ])
        .args(args)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), text)
}

#[test]
fn the_plaintext_listener_is_off_by_default_and_authenticates_when_on() {
    let default_dir = tempfile::tempdir().unwrap();
    let default = crate::support::Server::start(default_dir.path());
    assert!(default.mqtts.is_some() && !default.listeners.contains_key("mqtt"));
    drop(default);
    let dir = tempfile::tempdir().unwrap();
    let server = crate::support::Server::start_with(crate::support::ServerOptions {
        args: vec!["--mqtt-addr".into(), "127.0.0.1:0".into()],
        ..crate::support::ServerOptions::new(dir.path())
    });
    let port = server.listeners["mqtt"].port();
    assert!(server.log().contains("Plaintext MQTT is listening"));
    let secret = crate::support::on_store(&server.data_dir)
        .args(["certs", "secret", "lab-1", "--data-dir"])
        .arg(&server.data_dir)
        .output()
        .unwrap();
    assert!(secret.status.success());
    let secret = String::from_utf8_lossy(&secret.stdout).trim().to_owned();
    assert_eq!(secret.len(), 48);

    let payload = seed_payload("lab-1", 11);
    let (ok, out) = mosquitto_pub_plain(
        port,
        &["-u", "lab-1", "-P", &secret, "-q", "1", "-m", &payload],
    );
    assert!(ok && out.contains("received PUBACK"), "{out}");
    // A wrong password, another device's name, or no credentials: refused at CONNECT.
    let (ok, out) = mosquitto_pub_plain(
        port,
        &["-u", "lab-1", "-P", "guess", "-q", "1", "-m", &payload],
    );
    assert!(!ok && !out.contains("PUBACK"), "{out}");
    let (ok, _) = mosquitto_pub_plain(
        port,
        &["-u", "lab-2", "-P", &secret, "-q", "1", "-m", &payload],
    );
    assert!(!ok);
    let (ok, _) = mosquitto_pub_plain(port, &["-q", "1", "-m", &payload]);
    assert!(!ok);
    // An authenticated device still cannot publish for another one.
    let (_, out) = mosquitto_pub_plain(
        port,
        &[
            "-u",
            "lab-1",
            "-P",
            &secret,
            "-V",
            "mqttv5",
            "-q",
            "1",
            "-m",
            &seed_payload("lab-2", 12),
        ],
    );
    assert!(out.contains("RC:135"), "{out}");
    assert_eq!(counts(&server.data_dir).readings, 1);
}

#[test]
fn anonymous_plaintext_is_an_explicit_lab_choice() {
    let dir = tempfile::tempdir().unwrap();
    let server = crate::support::Server::start_with(crate::support::ServerOptions {
        args: vec![
            "--mqtt-addr".into(),
            "127.0.0.1:0".into(),
            "--mqtt-allow-anonymous".into(),
        ],
        ..crate::support::ServerOptions::new(dir.path())
    });
    let port = server.listeners["mqtt"].port();
    let (ok, out) = mosquitto_pub_plain(port, &["-q", "1", "-m", &seed_payload("bench-1", 13)]);
    assert!(ok && out.contains("received PUBACK"), "{out}");
    assert_eq!(counts(&server.data_dir).readings, 1);
    // Without the plaintext listener the flag is refused.
    let refused = Command::new(bin())
        .current_dir(dir.path())
        .args([
            "serve",
            "--mqtt-allow-anonymous",
            "--http-addr",
            "127.0.0.1:0",
        ])
        .output()
        .unwrap();
    assert!(!refused.status.success());
}

#[test]
fn mqtt_over_websocket_over_tls_with_a_device_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let server = crate::support::Server::start_with(crate::support::ServerOptions {
        args: vec!["--mqtt-wss-addr".into(), "127.0.0.1:0".into()],
        ..crate::support::ServerOptions::new(dir.path())
    });
    let wss = server.listeners["mqtt-wss"];
    let device = issue(&server, "browser-1");
    let run = |cert: Option<&DeviceCert>, protocol: &str, start: &str| {
        let mut command = Command::new(python());
        command
            .arg(client_script("paho_publish.py"))
            .args(["--port", &wss.port().to_string(), "--ca"])
            .arg(ca(&server))
            .args([
                "--device",
                "browser-1",
                "--transport",
                "websockets",
                "--qos",
                "1",
            ])
            .args(["--protocol", protocol, "--count", "10", "--start", start]);
        if let Some(cert) = cert {
            command
                .arg("--cert")
                .arg(&cert.cert)
                .arg("--key")
                .arg(&cert.key);
        }
        let output = command.output().unwrap();
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        serde_json::from_str::<Value>(
            String::from_utf8_lossy(&output.stdout)
                .lines()
                .last()
                .unwrap(),
        )
        .unwrap()
    };
    let v3 = run(Some(&device), "311", "0");
    assert_eq!(v3["acked"], 10, "{v3}");
    let v5 = run(Some(&device), "5", "100");
    assert_eq!(v5["acked"], 10, "{v5}");
    assert_eq!(counts(&server.data_dir).readings, 20);
    // Without a client certificate the TLS handshake refuses it, as on 8883.
    let refused = run(None, "311", "200");
    assert_eq!(refused["acked"], 0, "{refused}");
    assert!(refused["error"].is_string(), "{refused}");
    assert_eq!(counts(&server.data_dir).readings, 20);
}

#[test]
fn a_flooding_connection_is_slowed_not_dropped_and_others_are_served() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("vw.toml"),
        "[mqtt]\nmax_rate_per_connection = 20\n",
    )
    .unwrap();
    let server = crate::support::Server::start_with(crate::support::ServerOptions {
        args: vec!["--config".into(), "vw.toml".into()],
        ..crate::support::ServerOptions::new(dir.path())
    });
    let flooder = issue(&server, "flood-1");
    let calm = issue(&server, "calm-1");
    let flood = std::thread::scope(|scope| {
        let flood = scope.spawn(|| {
            paho(
                &server,
                "flood-1",
                Some(&flooder),
                &["--qos", "1", "--count", "80", "--inflight", "40"],
            )
        });
        let quiet = paho(
            &server,
            "calm-1",
            Some(&calm),
            &["--qos", "1", "--count", "10", "--start", "1000"],
        );
        assert_eq!(quiet["acked"], 10, "{quiet}");
        flood.join().unwrap()
    });
    // Every message of the flood was acknowledged (later), none dropped.
    assert_eq!(flood["acked"], 80, "{flood}");
    assert_eq!(counts(&server.data_dir).readings, 90);
    let health = get(&agent(), &server.url("/health")).json;
    assert!(
        health["readings"]["rate_limited"].as_u64().unwrap() > 0,
        "the flood was never slowed: {}",
        health["readings"]
    );
}
