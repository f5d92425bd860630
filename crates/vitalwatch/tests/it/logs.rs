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
