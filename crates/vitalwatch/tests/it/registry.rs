//! The device registry: strict and auto-register policies, the API and the CLI, and the audit
//! trail they leave.

use crate::support::{
    Server, ServerOptions, agent, counts, get, in_process, post_json, reading, run, send,
};

/// The registry's audit entries (`device.*`): the guard's audited reads are buffered, so
/// whether they are committed yet depends on timing (the security tests check those).
fn audit_actions(data_dir: &std::path::Path) -> Vec<(String, String, String)> {
    crate::support::sql(
        data_dir,
        "SELECT actor, action, target FROM audit_log ORDER BY id",
    )
    .lines()
    .map(|row| {
        let mut columns = row.splitn(3, '|').map(str::to_owned);
        let mut next = || columns.next().expect("three columns");
        (next(), next(), next())
    })
    .filter(|(_, action, _)| action.starts_with("device."))
    .collect()
}

#[test]
fn strict_policy_quarantines_unknown_devices_until_registered() {
    let dir = tempfile::tempdir().unwrap();
    let agent = agent();
    let server = Server::start_with(ServerOptions {
        args: vec!["--registry-policy".into(), "strict".into()],
        ..ServerOptions::new(dir.path())
    });
    let url = server.url("/api/telemetry");

    let answer = post_json(&agent, &url, &reading("stranger", 1, 72.0));
    assert_eq!(answer.status, 200, "{}\n{}", answer.json, server.log());
    assert_eq!(answer.json["quarantined"], true);
    assert_eq!(answer.json["stored"], false);
    assert_eq!(answer.json["anomalies"][0]["type"], "UNKNOWN_DEVICE");
    assert_eq!(answer.json["anomalies"][0]["severity"], "CRITICAL");
    let after = counts(&server.data_dir);
    assert_eq!((after.readings, after.quarantine, after.devices), (0, 1, 0));
    // Quarantined data is not patient data: the device has no readings to show.
    assert_eq!(
        get(&agent, &server.url("/api/devices/stranger")).status,
        404
    );

    // Registered through the CLI, beside the running server.
    let (ok, out, err) = run(
        dir.path(),
        &[
            "devices",
            "register",
            "stranger",
            "--patient-label",
            "Bed 4",
            "--location",
            "Ward 2",
            "--expected-interval",
            "3",
        ],
    );
    assert!(ok, "{err}");
    assert!(out.contains("\"Bed 4\""));
    let answer = post_json(&agent, &url, &reading("stranger", 2, 72.0));
    assert_eq!(answer.json["stored"], true);
    assert_eq!(counts(&server.data_dir).readings, 1);

    // Deactivated devices are quarantined again.
    let answer = send(
        &agent,
        "DELETE",
        &server.url("/api/devices/stranger"),
        None,
        b"",
    );
    assert_eq!(answer.json["status"], "inactive");
    let answer = post_json(&agent, &url, &reading("stranger", 3, 72.0));
    assert_eq!(answer.json["quarantined"], true);
    assert_eq!(
        answer.json["anomalies"][0]["details"],
        "device is deactivated"
    );

    let actions: Vec<String> = audit_actions(&server.data_dir)
        .into_iter()
        .map(|(_, a, _)| a)
        .collect();
    assert_eq!(actions, ["device.register", "device.deactivate"]);
    assert!(audit_actions(&server.data_dir)[0].0.starts_with("cli:"));
}

#[test]
fn auto_register_is_audited_and_devices_are_managed_over_the_api() {
    let dir = tempfile::tempdir().unwrap();
    let agent = agent();
    let server = Server::start(dir.path());
    post_json(
        &agent,
        &server.url("/api/telemetry"),
        &reading("ESP32_001", 1, 72.0),
    );

    let created = post_json(
        &agent,
        &server.url("/api/devices"),
        r#"{"device_id":"bed-7","patient_label":"Bed 7","expected_interval_s":3}"#,
    );
    assert_eq!(created.status, 201);
    assert_eq!(
        created.json["registered_by"]
            .as_str()
            .unwrap()
            .split(':')
            .next(),
        Some("loopback")
    );
    let again = post_json(
        &agent,
        &server.url("/api/devices"),
        r#"{"device_id":"bed-7"}"#,
    );
    assert_eq!(again.status, 409);
    assert_eq!(again.json["error"], "device_exists");

    let updated = send(
        &agent,
        "PUT",
        &server.url("/api/devices/bed-7"),
        Some("application/json"),
        br#"{"location":"ICU 2","patient_label":null}"#,
    );
    assert_eq!(updated.status, 200);
    assert_eq!(updated.json["location"], "ICU 2");
    assert_eq!(updated.json["patient_label"], serde_json::Value::Null);
    assert_eq!(updated.json["expected_interval_s"], 3.0);

    let list = get(&agent, &server.url("/api/devices"));
    let ids: Vec<&str> = list.json["devices"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["device_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["ESP32_001", "bed-7"]);

    let audit = audit_actions(&server.data_dir);
    assert_eq!(
        audit[0],
        (
            "auto-register:http".to_owned(),
            "device.register".to_owned(),
            "ESP32_001".to_owned()
        )
    );
    assert_eq!(audit[1].1, "device.register");
    assert_eq!(audit[2].1, "device.update");
    assert_eq!(audit.len(), 3);

    let (ok, out, _) = run(dir.path(), &["devices", "list"]);
    assert!(ok);
    assert_eq!(out.lines().count(), 2);
}

#[test]
fn readings_and_anomalies_filter_and_paginate() {
    let dir = tempfile::tempdir().unwrap();
    let agent = agent();
    // Only the HTTP API is needed: the service in this process, on a real socket.
    let server = in_process::start(in_process::config(dir.path()));
    let url = server.url("/api/telemetry");
    // 30 readings for bed-1 alternating normal and tachycardic; 5 for bed-2, all normal.
    for n in 0..30 {
        let hr = if n % 2 == 0 { 72.0 } else { 120.0 };
        assert_eq!(
            post_json(&agent, &url, &reading("bed-1", n, hr)).status,
            200
        );
    }
    for n in 0..5 {
        post_json(&agent, &url, &reading("bed-2", n, 70.0));
    }

    // Cursor pagination walks every anomaly exactly once, newest first.
    let mut seen = Vec::new();
    let mut next = String::from("/api/anomalies?device_id=bed-1&limit=4");
    loop {
        let page = get(&agent, &server.url(&next));
        assert_eq!(page.status, 200);
        for anomaly in page.json["anomalies"].as_array().unwrap() {
            seen.push(anomaly["id"].as_i64().unwrap());
        }
        match page.json["next_cursor"].as_str() {
            Some(cursor) => {
                next = format!("/api/anomalies?device_id=bed-1&limit=4&cursor={cursor}")
            }
            None => break,
        }
    }
    assert_eq!(seen.len(), 15);
    assert!(seen.windows(2).all(|w| w[0] > w[1]));

    let none = get(&agent, &server.url("/api/anomalies?device_id=bed-2"));
    assert_eq!(none.json["count"], 0);
    let critical = get(
        &agent,
        &server.url("/api/anomalies?severity=CRITICAL&type=OUT_OF_RANGE_HR&limit=1000"),
    );
    assert_eq!(critical.json["count"], 15);

    // Time window on readings: n = 10..=19 inclusive.
    let since = "2026-01-01T00:00:10Z";
    let until = "2026-01-01T00:00:19Z";
    let window = get(
        &agent,
        &server.url(&format!(
            "/api/devices/bed-1/readings?since={since}&until={until}"
        )),
    );
    assert_eq!(window.json["count"], 10);
    let first = &window.json["readings"][0];
    assert_eq!(first["timestamp"], "2026-01-01T00:00:19.000000Z");
    assert_eq!(first["heart_rate"], 120.0);
}
