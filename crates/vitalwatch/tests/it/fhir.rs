//! The FHIR R4 API and export against a real server: every kind of resource fetched over
//! HTTP and validated by the independent `fhir.resources` models (`clients/fhir_validate.py`),
//! LOINC codes and UCUM units checked against the vitals table, paging that walks a device's
//! whole history while readings keep arriving, refusals as OperationOutcome, reads in the
//! audit trail, and `vitalwatch fhir export` as NDJSON.

use crate::support::in_process::{self, InProcess};
use crate::support::{WAIT, agent, post_json, run, send, wait_until};
use serde_json::{Value, json};
use std::collections::HashSet;
use std::path::Path;
use std::process::Command;
use vitalwatch_core::telemetry::VITALS;

struct Fetched {
    status: u16,
    content_type: String,
    json: Value,
}

fn fetch(agent: &ureq::Agent, url: &str, accept: Option<&str>) -> Fetched {
    let mut builder = ureq::http::Request::builder().method("GET").uri(url);
    if let Some(accept) = accept {
        builder = builder.header("Accept", accept);
    }
    let mut response = agent
        .run(builder.body(Vec::new()).unwrap())
        .expect("HTTP request failed at the transport");
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let text = response.body_mut().read_to_string().unwrap_or_default();
    Fetched {
        status: response.status().as_u16(),
        content_type,
        json: serde_json::from_str(&text).unwrap_or(Value::Null),
    }
}

/// A FHIR answer: status 200 and `application/fhir+json`.
fn fhir_ok(server: &InProcess, path: &str) -> Value {
    let answer = fetch(&agent(), &server.url(path), Some("application/fhir+json"));
    assert_eq!(answer.status, 200, "{path}: {}", answer.json);
    assert!(
        answer.content_type.starts_with("application/fhir+json"),
        "{path}: {}",
        answer.content_type
    );
    answer.json
}

/// Runs the `fhir.resources` validator over `resources`; returns its summary line.
fn validate(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/it/clients/fhir_validate.py");
    let output = Command::new("python3")
        .arg(script)
        .arg(&path)
        .output()
        .expect("running python3");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "fhir.resources refused a resource: {stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

/// A reading carrying every vital; `n` makes each one distinct.
fn full_reading(device: &str, n: u64, heart_rate: f64) -> String {
    json!({
        "device_id": device,
        "timestamp": 1_767_225_600_000u64 + n * 1000,
        "heart_rate": heart_rate,
        "body_temp": 36.8,
        "signal_strength": -55,
        "battery_level": 90,
        "spo2": 95,
        "respiratory_rate": 22,
        "systolic_bp": 105,
        "diastolic_bp": 70,
        "consciousness": "A",
        "on_oxygen": false,
    })
    .to_string()
}

fn entries(bundle: &Value) -> Vec<Value> {
    bundle["entry"]
        .as_array()
        .map(|e| e.iter().map(|entry| entry["resource"].clone()).collect())
        .unwrap_or_default()
}

fn next_link(bundle: &Value) -> Option<String> {
    bundle["link"]
        .as_array()?
        .iter()
        .find(|link| link["relation"] == "next")
        .and_then(|link| link["url"].as_str())
        .map(str::to_owned)
}

fn register(server: &InProcess, device: &str, label: Option<&str>) {
    let answer = post_json(
        &agent(),
        &server.url("/api/devices"),
        &json!({ "device_id": device, "patient_label": label }).to_string(),
    );
    assert_eq!(answer.status, 201, "{}", answer.json);
}

fn post(server: &InProcess, body: &str) -> i64 {
    let answer = post_json(&agent(), &server.url("/api/telemetry"), body);
    assert_eq!(answer.status, 200, "{}", answer.json);
    answer.json["reading_id"]
        .as_i64()
        .unwrap_or_else(|| panic!("no reading_id in {}", answer.json))
}

#[test]
fn every_resource_validates_with_fhir_resources_and_carries_loinc_and_ucum() {
    let dir = tempfile::tempdir().unwrap();
    let server = in_process::start(in_process::config(dir.path()));
    register(&server, "bed-1", Some("Jane Doe"));
    let mut reading_ids = Vec::new();
    for n in 0..12 {
        reading_ids.push(post(&server, &full_reading("bed-1", n, 150.0)));
    }
    let last = *reading_ids.last().unwrap();
    let mut resources: Vec<Value> = Vec::new();

    // The CapabilityStatement is public and names every resource it serves.
    let metadata = fhir_ok(&server, "/fhir/metadata?_format=json");
    assert_eq!(metadata["resourceType"], "CapabilityStatement");
    assert_eq!(metadata["fhirVersion"], "4.0.1");
    let served: Vec<&str> = metadata["rest"][0]["resource"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["type"].as_str().unwrap())
        .collect();
    assert_eq!(served, ["Observation", "Device", "Patient", "Flag"]);
    resources.push(metadata);

    // Each vital of the newest reading, read by id: the table's LOINC and UCUM.
    let mut checked = 0;
    for info in VITALS.iter().filter(|info| info.loinc.is_some()) {
        if matches!(info.key, "systolic_bp" | "diastolic_bp") {
            continue;
        }
        let id = format!("{last}-{}", info.key.replace('_', "-"));
        let observation = fhir_ok(&server, &format!("/fhir/Observation/{id}"));
        assert_eq!(observation["id"], id);
        assert_eq!(observation["status"], "final");
        assert_eq!(
            observation["category"][0]["coding"][0]["code"],
            "vital-signs"
        );
        assert_eq!(
            observation["code"]["coding"][0]["system"],
            "http://loinc.org"
        );
        assert_eq!(
            observation["code"]["coding"][0]["code"],
            info.loinc.unwrap()
        );
        if let Some(also) = info.loinc_also {
            assert_eq!(observation["code"]["coding"][1]["code"], also);
        }
        assert_eq!(
            observation["valueQuantity"]["system"],
            "http://unitsofmeasure.org"
        );
        assert_eq!(observation["valueQuantity"]["code"], info.ucum.unwrap());
        assert_eq!(observation["device"]["reference"], "Device/bed-1");
        assert!(
            observation["subject"]["reference"]
                .as_str()
                .unwrap()
                .starts_with("Patient/p-")
        );
        assert!(
            observation["effectiveDateTime"]
                .as_str()
                .unwrap()
                .starts_with("2026-01-01T00:00:11")
        );
        resources.push(observation);
        checked += 1;
    }
    assert_eq!(
        checked, 4,
        "heart rate, temperature, SpO2, respiratory rate"
    );
    // HR 150 is above the seed's CRITICAL range: critical high.
    let heart_rate = fhir_ok(&server, &format!("/fhir/Observation/{last}-heart-rate"));
    assert_eq!(heart_rate["interpretation"][0]["coding"][0]["code"], "HH");

    // The blood pressure panel and the NEWS2 total.
    let bp = fhir_ok(&server, &format!("/fhir/Observation/{last}-bp"));
    assert_eq!(bp["code"]["coding"][0]["code"], "85354-9");
    let components: Vec<(&str, &str)> = bp["component"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["code"]["coding"][0]["code"].as_str().unwrap(),
                c["valueQuantity"]["code"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(components, [("8480-6", "mm[Hg]"), ("8462-4", "mm[Hg]")]);
    resources.push(bp);
    let news2 = fhir_ok(&server, &format!("/fhir/Observation/{last}-news2"));
    assert_eq!(
        news2["code"]["coding"][0]["system"],
        "http://snomed.info/sct"
    );
    assert_eq!(news2["code"]["coding"][0]["code"], "1104051000000101");
    // RR 22 → 2, SpO2 95 → 1, air → 0, SBP 105 → 1, pulse 150 → 3, A → 0, 36.8 → 0.
    assert_eq!(news2["valueQuantity"]["value"], 7);
    assert!(
        news2["valueQuantity"].get("comparator").is_none(),
        "complete"
    );
    assert_eq!(news2["component"].as_array().unwrap().len(), 7);
    resources.push(news2);

    // A search Bundle with paging.
    let page = fhir_ok(
        &server,
        "/fhir/Observation?subject=Device/bed-1&_count=4&_sort=-date",
    );
    assert_eq!(page["type"], "searchset");
    assert_eq!(entries(&page).len(), 4);
    let next = next_link(&page).expect("a next link");
    let second = fhir_ok(&server, &next);
    assert_eq!(entries(&second).len(), 4);
    resources.push(page);
    resources.push(second);
    let by_code = fhir_ok(
        &server,
        "/fhir/Observation?patient=Patient/nobody&code=http://loinc.org|8867-4",
    );
    assert!(entries(&by_code).is_empty());
    let hr_only = fhir_ok(
        &server,
        "/fhir/Observation?device=bed-1&code=http://loinc.org|8867-4&date=ge2026-01-01&date=le2026-01-01T00:00:05Z",
    );
    let hr_entries = entries(&hr_only);
    assert_eq!(hr_entries.len(), 6, "readings 0 to 5 s: {hr_only}");
    assert!(
        hr_entries
            .iter()
            .all(|o| o["code"]["coding"][0]["code"] == "8867-4")
    );

    // The Device and its Patient.
    let device = fhir_ok(&server, "/fhir/Device/bed-1");
    assert_eq!(device["identifier"][0]["value"], "bed-1");
    let patient_ref = device["patient"]["reference"].as_str().unwrap().to_owned();
    let patient = fhir_ok(&server, &format!("/fhir/{patient_ref}"));
    assert_eq!(patient["identifier"][0]["value"], "Jane Doe");
    assert!(patient.get("name").is_none(), "no invented demographics");
    resources.push(device);
    resources.push(patient);
    resources.push(fhir_ok(&server, "/fhir/Device?identifier=bed-1"));
    resources.push(fhir_ok(&server, "/fhir/Patient"));

    // The alert as a Flag, once the engine has raised it.
    let flags = wait_until(WAIT, "a Flag for the high heart rate", || {
        let bundle = fhir_ok(&server, "/fhir/Flag?subject=Device/bed-1&status=active");
        entries(&bundle)
            .iter()
            .any(|f| f["code"]["coding"][0]["code"] == "HEART_RATE_HIGH")
            .then_some(bundle)
    });
    let flag = entries(&flags)
        .into_iter()
        .find(|f| f["code"]["coding"][0]["code"] == "HEART_RATE_HIGH")
        .unwrap();
    assert_eq!(flag["status"], "active");
    assert_eq!(
        flag["extension"][0]["valueCodeableConcept"]["coding"][0]["code"],
        "PH"
    );
    let read = fhir_ok(
        &server,
        &format!("/fhir/Flag/{}", flag["id"].as_str().unwrap()),
    );
    assert_eq!(read["id"], flag["id"]);
    resources.push(flags);
    resources.push(read);

    // Refusals are OperationOutcomes with the right status.
    for (path, accept, status) in [
        ("/fhir/Observation?name=x", None, 400),
        ("/fhir/Observation?_sort=date", None, 400),
        ("/fhir/Observation?date=2026-01-01", None, 400),
        ("/fhir/Observation?_count=0", None, 400),
        ("/fhir/Device?_count=5&color=red", None, 400),
        ("/fhir/Observation/999999-heart-rate", None, 404),
        ("/fhir/Device/no-such-device", None, 404),
        ("/fhir/metadata?_format=xml", None, 406),
        ("/fhir/metadata", Some("application/fhir+xml"), 406),
        // Made by the router before any FHIR handler runs, rewritten by the FHIR layer.
        ("/fhir/NoSuchType", None, 404),
        ("/fhir/Observation/1/2/3", None, 404),
    ] {
        let answer = fetch(&agent(), &server.url(path), accept);
        assert_eq!(answer.status, status, "{path}: {}", answer.json);
        assert_eq!(answer.json["resourceType"], "OperationOutcome", "{path}");
        assert!(answer.content_type.starts_with("application/fhir+json"));
        resources.push(answer.json);
    }

    let summary = validate(
        dir.path(),
        "resources.json",
        &Value::Array(resources).to_string(),
    );
    for kind in [
        "Bundle",
        "CapabilityStatement",
        "Device",
        "Flag",
        "Observation",
        "OperationOutcome",
        "Patient",
    ] {
        assert!(summary.contains(&format!("{kind}=")), "{summary}");
    }

    // The reads are in the audit trail as phi.read, with the FHIR route.
    wait_until(WAIT, "phi.read entries for the FHIR reads", || {
        let n: i64 = server
            .sql(
                "SELECT COUNT(*) FROM audit_log WHERE action = 'phi.read' \
                 AND target LIKE '/fhir/Observation/%' AND details LIKE '%/fhir/Observation/{id}%'",
            )
            .parse()
            .unwrap();
        n >= 6
    });
    let metadata_reads: i64 = server
        .sql("SELECT COUNT(*) FROM audit_log WHERE action = 'phi.read' AND target = '/fhir/metadata'")
        .parse()
        .unwrap();
    assert_eq!(
        metadata_reads, 0,
        "the CapabilityStatement is public, not patient data"
    );

    // The export: NDJSON, one valid resource per line, every kind.
    let data_dir = server.data_dir.display().to_string();
    let (ok, stdout, stderr) = run(
        dir.path(),
        &[
            "fhir",
            "export",
            "--data-dir",
            &data_dir,
            "--device",
            "bed-1",
        ],
    );
    assert!(ok, "{stderr}");
    let lines: Vec<Value> = stdout
        .lines()
        .map(|line| serde_json::from_str(line).expect("each line is one JSON resource"))
        .collect();
    let observations = lines
        .iter()
        .filter(|r| r["resourceType"] == "Observation")
        .count();
    // 12 readings × (4 vitals + BP panel + NEWS2).
    assert_eq!(observations, 12 * 6);
    for kind in ["Device", "Patient", "Flag"] {
        assert!(lines.iter().any(|r| r["resourceType"] == kind), "{kind}");
    }
    let summary = validate(dir.path(), "bundle.ndjson", &stdout);
    assert!(
        summary.contains(&format!("Observation={observations}")),
        "{summary}"
    );
}

#[test]
fn paging_walks_a_devices_whole_history_once_while_readings_keep_arriving() {
    let dir = tempfile::tempdir().unwrap();
    let server = in_process::start(in_process::config(dir.path()));
    register(&server, "bed-2", None);
    let mut before_walk = HashSet::new();
    for n in 0..45 {
        before_walk.insert(post(&server, &crate::support::reading("bed-2", n, 72.0)));
    }
    // Another device's readings interleave and must not appear.
    for n in 0..5 {
        post(&server, &crate::support::reading("bed-3", n, 72.0));
    }
    let mut seen = HashSet::new();
    let mut url = "/fhir/Observation?subject=Device/bed-2&_count=7".to_owned();
    let mut arriving = 1000;
    let mut pages = 0;
    loop {
        let bundle = fhir_ok(&server, &url);
        for observation in entries(&bundle) {
            assert_eq!(observation["device"]["reference"], "Device/bed-2");
            let id = observation["id"].as_str().unwrap().to_owned();
            assert!(seen.insert(id.clone()), "{id} was returned twice");
        }
        pages += 1;
        // Readings keep arriving between the pages.
        post(&server, &crate::support::reading("bed-2", arriving, 72.0));
        arriving += 1;
        match next_link(&bundle) {
            Some(next) => url = next,
            None => break,
        }
        assert!(pages < 100, "the walk does not end");
    }
    // Heart rate and temperature of every reading stored before the walk began.
    let expected: HashSet<String> = before_walk
        .iter()
        .flat_map(|id| [format!("{id}-heart-rate"), format!("{id}-body-temp")])
        .collect();
    assert_eq!(seen, expected, "every reading once, and only those");
    assert!(pages >= 13, "{pages} pages of 7 for 90 Observations");
}

/// A reading of a COPD patient at their prescribed saturation: SpO2 88 % on air.
fn copd_reading(device: &str, n: u64) -> String {
    json!({
        "device_id": device,
        "timestamp": 1_767_225_600_000u64 + n * 1000,
        "heart_rate": 80,
        "body_temp": 36.8,
        "signal_strength": -55,
        "battery_level": 90,
        "spo2": 88,
        "respiratory_rate": 18,
        "systolic_bp": 125,
        "diastolic_bp": 80,
        "consciousness": "A",
        "on_oxygen": false,
    })
    .to_string()
}

/// The SpO2 points and the scale (`method`) of a NEWS2 Observation.
fn spo2_and_scale(news2: &Value) -> (Value, Value) {
    let spo2 = news2["component"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["code"]["coding"][0]["code"] == "spo2")
        .unwrap_or_else(|| panic!("no SpO2 component in {news2}"))["valueInteger"]
        .clone();
    (spo2, news2["method"]["coding"][0]["code"].clone())
}

/// Issue 18: the NEWS2 Observation scores SpO2 on the patient's scale, as the alert engine
/// and the dashboard do: a Scale 2 patient at 88 % scores 0 for SpO2, a Scale 1 patient 3,
/// and a reading received before the clinician set Scale 2 stays on Scale 1.
#[test]
fn a_scale_2_patients_news2_observation_is_scored_on_scale_2() {
    let dir = tempfile::tempdir().unwrap();
    let server = in_process::start(in_process::config(dir.path()));
    register(&server, "copd-1", Some("COPD patient"));
    register(&server, "bed-2", Some("Scale 1 patient"));
    let before = post(&server, &copd_reading("copd-1", 0));
    let set = send(
        &agent(),
        "PUT",
        &server.url("/api/devices/copd-1/thresholds"),
        Some("application/json"),
        br#"{"spo2_scale":"scale2","spo2_min":88,"author":"dr.b","reason":"COPD, type 2 RF; target 88-92 %"}"#,
    );
    assert_eq!(set.status, 200, "{}", set.json);
    let after = post(&server, &copd_reading("copd-1", 1));
    let scale1 = post(&server, &copd_reading("bed-2", 1));

    let news2 = |id: i64| fhir_ok(&server, &format!("/fhir/Observation/{id}-news2"));
    let copd = news2(after);
    // RR 18 → 0, SpO2 88 on Scale 2 → 0, air → 0, SBP 125 → 0, pulse 80 → 0, A → 0, 36.8 → 0.
    assert_eq!(spo2_and_scale(&copd), (json!(0), json!("scale2")), "{copd}");
    assert_eq!(copd["valueQuantity"]["value"], 0);
    assert!(
        copd["method"]["text"].as_str().unwrap().contains("Scale 2"),
        "{copd}"
    );
    let other = news2(scale1);
    assert_eq!(
        spo2_and_scale(&other),
        (json!(3), json!("scale1")),
        "{other}"
    );
    assert_eq!(other["valueQuantity"]["value"], 3);
    let earlier = news2(before);
    assert_eq!(
        spo2_and_scale(&earlier),
        (json!(3), json!("scale1")),
        "{earlier}"
    );

    // A search answers the same scores (the export pages through the same search).
    let bundle = fhir_ok(
        &server,
        "/fhir/Observation?device=copd-1&code=http://snomed.info/sct|1104051000000101",
    );
    let found: Vec<(Value, (Value, Value))> = entries(&bundle)
        .iter()
        .map(|o| (o["id"].clone(), spo2_and_scale(o)))
        .collect();
    assert_eq!(
        found,
        [
            (json!(format!("{after}-news2")), (json!(0), json!("scale2"))),
            (
                json!(format!("{before}-news2")),
                (json!(3), json!("scale1"))
            ),
        ]
    );
    let summary = validate(
        dir.path(),
        "scale2.json",
        &serde_json::to_string(&json!([copd, other, bundle])).unwrap(),
    );
    assert!(summary.contains("Bundle=1 Observation=4"), "{summary}");
}

#[test]
fn a_patient_on_two_devices_is_searched_across_both_with_a_code_filter() {
    let dir = tempfile::tempdir().unwrap();
    let server = in_process::start(in_process::config(dir.path()));
    register(&server, "bed-4", Some("Shared"));
    register(&server, "bed-5", Some("Shared"));
    register(&server, "bed-6", Some("Someone else"));
    let mut expected = HashSet::new();
    for n in 0..20 {
        for device in ["bed-4", "bed-5"] {
            let id = post(&server, &crate::support::reading(device, n, 72.0));
            expected.insert(format!("{id}-heart-rate"));
        }
        post(&server, &crate::support::reading("bed-6", n, 72.0));
    }
    let patients = fhir_ok(&server, "/fhir/Patient?identifier=Shared");
    let patient = entries(&patients)[0]["id"].as_str().unwrap().to_owned();
    let mut url = format!("/fhir/Observation?patient=Patient/{patient}&code=8867-4&_count=6");
    let mut seen = HashSet::new();
    for _ in 0..100 {
        let bundle = fhir_ok(&server, &url);
        for observation in entries(&bundle) {
            assert_eq!(
                observation["subject"]["reference"],
                format!("Patient/{patient}")
            );
            assert!(seen.insert(observation["id"].as_str().unwrap().to_owned()));
        }
        match next_link(&bundle) {
            Some(next) => url = next,
            None => break,
        }
    }
    assert_eq!(seen, expected);
}

/// The guard's refusals under /fhir (no token, a viewer-less role) are OperationOutcomes with
/// the guard's status and challenge, validated like every other resource; the same refusal
/// elsewhere stays the API's JSON.
#[test]
fn the_guards_refusals_under_fhir_are_operation_outcomes() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = in_process::config(dir.path());
    config.http.trust_loopback = false;
    let server = in_process::start(config);
    let (ok, token, err) = run(
        dir.path(),
        &[
            "tokens",
            "create",
            "--data-dir",
            server.data_dir.to_str().unwrap(),
            "--role",
            "device",
            "--name",
            "a-device",
            "--device",
            "bed-1",
        ],
    );
    assert!(ok, "{err}");
    let token = token.trim().to_owned();
    let mut resources = Vec::new();
    for (authorization, status, issue) in [
        (None, 401, "login"),
        (
            Some("Bearer vw_0123456789abcdef_00".to_owned()),
            401,
            "login",
        ),
        (Some(format!("Bearer {token}")), 403, "forbidden"),
    ] {
        let mut request = agent().get(server.url("/fhir/Observation?subject=Device/bed-1"));
        if let Some(value) = &authorization {
            request = request.header("Authorization", value);
        }
        let mut response = request.call().expect("an answer");
        assert_eq!(response.status().as_u16(), status);
        let content_type = response.headers()["content-type"]
            .to_str()
            .unwrap()
            .to_owned();
        assert!(
            content_type.starts_with("application/fhir+json"),
            "{content_type}"
        );
        if status == 401 {
            assert!(response.headers().contains_key("www-authenticate"));
        }
        let json: Value = response.body_mut().read_json().expect("a JSON body");
        assert_eq!(json["resourceType"], "OperationOutcome", "{json}");
        assert_eq!(json["issue"][0]["code"], issue, "{json}");
        resources.push(json);
    }
    validate(
        dir.path(),
        "refusals.json",
        &Value::Array(resources).to_string(),
    );
    // Outside /fhir the API's own error shape is unchanged.
    let mut response = agent()
        .get(server.url("/api/devices"))
        .call()
        .expect("an answer");
    assert_eq!(response.status().as_u16(), 401);
    let json: Value = response.body_mut().read_json().expect("a JSON body");
    assert!(json["error"].is_string(), "{json}");
}
