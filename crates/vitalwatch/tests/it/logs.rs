//! Logs carry device ids and counts, never vital values, payloads, patient labels, keys or
//! secrets: a full session with sentinel values, logged at debug level, is searched for them.

use crate::mqtt::{issue, paho};
use crate::support::{Server, ServerOptions, agent, post_json, send};

const SENTINEL_HR: &str = "87.654321";
const SENTINEL_TEMP: &str = "36.987654";
const SENTINEL_LABEL: &str = "Patient-ZQXJ-Sentinel";
const SENTINEL_SECRET: &str = "webhook-secret-QWERTY-sentinel";
const SENTINEL_NOTE: &str = "note-sentinel-7731";

#[test]
fn logs_hold_no_vital_values_labels_or_secrets() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("vw.toml"),
        format!(
            "[[alerting.webhooks]]\nurl = \"http://127.0.0.1:9/hook\"\nsecret = \"{SENTINEL_SECRET}\"\n\
             [alerting.webhook_delivery]\nmax_attempts = 1\n"
        ),
    )
    .unwrap();
    let mut server = Server::start_with(ServerOptions {
        args: vec!["--config".into(), "vw.toml".into()],
        ..ServerOptions::new(dir.path())
    });
    let agent = agent();
    let url = server.url("/api/telemetry");
    let payload = format!(
        r#"{{"device_id":"bed-1","heart_rate":{SENTINEL_HR},"body_temp":{SENTINEL_TEMP},"signal_strength":-60,"battery_level":80}}"#
    );
    assert_eq!(post_json(&agent, &url, &payload).status, 200);
    // Rejected and malformed input with the sentinels in it.
    let bad =
        format!(r#"{{"device_id":"bed-1","heart_rate":"{SENTINEL_HR}","note":"{SENTINEL_NOTE}"}}"#);
    assert_eq!(post_json(&agent, &url, &bad).status, 422);
    assert_eq!(
        post_json(&agent, &url, &format!("{{{SENTINEL_HR}")).status,
        400
    );
    let register = format!(r#"{{"device_id":"bed-2","patient_label":"{SENTINEL_LABEL}"}}"#);
    assert_eq!(
        post_json(&agent, &server.url("/api/devices"), &register).status,
        201
    );
    // An alert (with a webhook attempt) and an acknowledgement with a note.
    let high = format!(
        r#"{{"device_id":"bed-2","heart_rate":155.123456,"body_temp":{SENTINEL_TEMP},"signal_strength":-60,"battery_level":80}}"#
    );
    assert_eq!(post_json(&agent, &url, &high).status, 200);
    let alerts = crate::support::get(&agent, &server.url("/api/alerts")).json;
    if let Some(id) = alerts["alerts"][0]["id"].as_i64() {
        let body = format!(r#"{{"by":"nurse","note":"{SENTINEL_NOTE}"}}"#);
        send(
            &agent,
            "POST",
            &server.url(&format!("/api/alerts/{id}/ack")),
            Some("application/json"),
            body.as_bytes(),
        );
    }
    // The same over MQTT, good and bad.
    let device = issue(&server, "bed-3");
    let mqtt_payload = format!(
        r#"{{"device_id":"bed-3","timestamp":1767225600000,"heart_rate":{SENTINEL_HR},"body_temp":{SENTINEL_TEMP},"signal_strength":-60,"battery_level":80}}"#
    );
    paho(
        &server,
        "bed-3",
        Some(&device),
        &["--payload-json", &mqtt_payload, "--payload-json", &bad],
    );
    assert!(server.terminate());

    let log = server.log();
    assert!(
        log.contains("VitalWatch is serving"),
        "the log was captured: {log}"
    );
    let key = std::fs::read_to_string(server.data_dir.join("certs/devices/bed-3.key")).unwrap();
    let key_body: String = key.lines().filter(|l| !l.starts_with("-----")).collect();
    for sentinel in [
        SENTINEL_HR,
        SENTINEL_TEMP,
        SENTINEL_LABEL,
        SENTINEL_SECRET,
        SENTINEL_NOTE,
        "155.123456",
        &key_body[..40],
    ] {
        assert!(!log.contains(sentinel), "the log holds {sentinel:?}");
    }
}

/// Every tracing call of the service names its `event` (a stable name an operator can alert
/// on), listed in docs/OPERATIONS.md: the source is read, each `info!`/`warn!`/`error!`/
/// `debug!`/`trace!` call checked.
#[test]
fn every_log_call_names_its_event() {
    let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let documented = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/OPERATIONS.md"),
    )
    .unwrap();
    let mut missing = Vec::new();
    let mut undocumented = Vec::new();
    let mut n_calls = 0;
    let mut stack = vec![src];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            if path.extension().is_none_or(|ext| ext != "rs") {
                continue;
            }
            let text = std::fs::read_to_string(&path).unwrap();
            for (line, call) in log_calls(&text) {
                n_calls += 1;
                match call.split_once("event = \"") {
                    Some((_, rest)) => {
                        let name = rest.split('"').next().unwrap_or("");
                        if !documented.contains(&format!("| `{name}` |")) {
                            undocumented.push(name.to_owned());
                        }
                    }
                    None => missing.push(format!("{}:{line}", path.display())),
                }
            }
        }
    }
    assert!(n_calls > 50, "{n_calls} calls found: the scan is broken");
    assert!(
        missing.is_empty(),
        "log calls without an event: {missing:#?}"
    );
    assert!(
        undocumented.is_empty(),
        "events missing from docs/OPERATIONS.md (Log events): {undocumented:?}"
    );
}

/// The argument text of every log macro call, with its line number.
fn log_calls(text: &str) -> Vec<(usize, String)> {
    let mut calls = Vec::new();
    for level in ["info!(", "warn!(", "error!(", "debug!(", "trace!("] {
        let mut from = 0;
        while let Some(at) = text[from..].find(level) {
            let start = from + at;
            from = start + level.len();
            let before = text[..start].chars().next_back();
            if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
                continue; // e.g. `log_info!(`
            }
            let (mut depth, mut in_string, mut escaped) = (1, false, false);
            let mut end = from;
            for (i, c) in text[from..].char_indices() {
                if in_string {
                    match (escaped, c) {
                        (true, _) => escaped = false,
                        (false, '\\') => escaped = true,
                        (false, '"') => in_string = false,
                        _ => {}
                    }
                    continue;
                }
                match c {
                    '"' => in_string = true,
                    '(' => depth += 1,
                    ')' => depth -= 1,
                    _ => {}
                }
                if depth == 0 {
                    end = from + i;
                    break;
                }
            }
            let line = text[..start].lines().count() + 1;
            calls.push((line, text[from..end].to_owned()));
        }
    }
    calls
}

/// A JSON log of a server run: every line is JSON with `fields.event`; HTTP lines carry the
/// request id (the caller's when it is plain, and returned as X-Request-Id), MQTT lines the
/// connection id.
#[test]
fn json_log_lines_carry_an_event_and_their_request_or_connection_id() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start_with(ServerOptions {
        args: vec!["--log-format".into(), "json".into()],
        ..ServerOptions::new(dir.path())
    });
    let agent = agent();
    let post = |id: &str, body: &str| {
        let request = ureq::http::Request::builder()
            .method("POST")
            .uri(server.url("/api/telemetry"))
            .header("Content-Type", "application/json")
            .header("X-Request-Id", id)
            .body(body.as_bytes().to_vec())
            .unwrap();
        agent.run(request).unwrap()
    };
    let good = r#"{"device_id":"bed-1","heart_rate":72,"body_temp":36.8}"#;
    let response = post("trace-abc-123", good);
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["x-request-id"], "trace-abc-123");
    // An id that is not a plain token is replaced by a new one.
    let response = post(
        "bad id \"quoted\"",
        r#"{"device_id":"bed-1","heart_rate":"x"}"#,
    );
    assert_eq!(response.status(), 422);
    let made = response.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_owned();
    assert_eq!(made.len(), 36, "{made}");
    // MQTT: a good device, and a client without a certificate.
    let device = issue(&server, "bed-3");
    let payload = r#"{"device_id":"bed-3","timestamp":1767225600000,"heart_rate":70,"body_temp":36.8,"signal_strength":-60,"battery_level":80}"#;
    paho(
        &server,
        "bed-3",
        Some(&device),
        &["--payload-json", payload],
    );
    {
        use std::io::{Read, Write};
        let mut plain = std::net::TcpStream::connect(server.mqtts.unwrap()).unwrap();
        plain
            .set_read_timeout(Some(std::time::Duration::from_secs(10)))
            .unwrap();
        let _ = plain.write_all(b"\x10\x0c\x00\x04MQTT\x04\x02\x00\x3c\x00\x00");
        let _ = plain.read_to_end(&mut Vec::new());
    }
    assert!(server.terminate());

    let log = server.log();
    let mut events = std::collections::BTreeSet::new();
    let mut request_ids = Vec::new();
    let mut mqtt_conns = 0;
    for line in log.lines().filter(|l| !l.trim().is_empty()) {
        let entry: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|err| panic!("not JSON ({err}): {line}"));
        let event = entry["fields"]["event"].as_str();
        assert!(event.is_some_and(|e| !e.is_empty()), "no event: {line}");
        events.insert(event.unwrap().to_owned());
        if event == Some("http.request") {
            let id = entry["span"]["request_id"].as_str();
            assert!(id.is_some_and(|id| !id.is_empty()), "{line}");
            request_ids.push(id.unwrap().to_owned());
        }
        let target = entry["target"].as_str().unwrap_or("");
        let mqtt = target.starts_with("vitalwatch::ingest::embedded")
            || target.starts_with("vitalwatch::ingest::protocol");
        if mqtt && entry["span"]["conn"].as_u64().is_some() {
            mqtt_conns += 1;
        }
    }
    assert!(
        request_ids.iter().any(|id| id == "trace-abc-123"),
        "{request_ids:?}"
    );
    assert!(request_ids.contains(&made), "{request_ids:?}");
    assert!(
        mqtt_conns >= 1,
        "no MQTT line with its connection id:\n{log}"
    );
    for expected in ["server.serving", "server.stopped", "tls.handshake_failed"] {
        assert!(events.contains(expected), "{expected} not in {events:?}");
    }
    assert!(!log.contains('\u{1b}'), "ANSI codes in a JSON log");
}
