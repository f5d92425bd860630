//! Hostile input: every case gets the right 4xx and a stable error code, the server stays up,
//! and the database changes only for accepted readings.
//!
//! Set `VITALWATCH_EXPORT_CORPUS=DIR` to write the telemetry bodies into DIR as seeds for the
//! fuzzer (`scripts/fuzz` does this), so the fuzz corpus grows from these cases.

use crate::support::{Server, agent, counts, get, in_process, post_json, send};

struct Case {
    name: &'static str,
    method: &'static str,
    path: &'static str,
    content_type: Option<&'static str>,
    body: Vec<u8>,
    status: u16,
    error: &'static str,
}

const JSON: Option<&str> = Some("application/json");

fn telemetry(
    name: &'static str,
    body: impl Into<Vec<u8>>,
    status: u16,
    error: &'static str,
) -> Case {
    Case {
        name,
        method: "POST",
        path: "/api/telemetry",
        content_type: JSON,
        body: body.into(),
        status,
        error,
    }
}

fn route(
    name: &'static str,
    method: &'static str,
    path: &'static str,
    body: &str,
    status: u16,
    error: &'static str,
) -> Case {
    Case {
        name,
        method,
        path,
        content_type: if body.is_empty() { None } else { JSON },
        body: body.as_bytes().to_vec(),
        status,
        error,
    }
}

fn cases() -> Vec<Case> {
    let mut cases = vec![
        telemetry("unterminated object", "{", 400, "malformed_json"),
        telemetry(
            "trailing comma",
            r#"{"device_id":"a",}"#,
            400,
            "malformed_json",
        ),
        telemetry("empty body", "", 400, "malformed_json"),
        telemetry(
            "trailing garbage",
            r#"{"device_id":"a"} x"#,
            400,
            "malformed_json",
        ),
        telemetry("single quotes", "{'device_id':'a'}", 400, "malformed_json"),
        telemetry(
            "comment",
            "{\"device_id\":\"a\" // hi\n}",
            400,
            "malformed_json",
        ),
        telemetry("json null", "null", 400, "not_an_object"),
        telemetry("json string", "\"reading\"", 400, "not_an_object"),
        telemetry("json number", "42", 400, "not_an_object"),
        telemetry("empty batch", "[]", 400, "empty_batch"),
        telemetry("empty object", "{}", 422, "missing_device_id"),
        telemetry("numeric device id", r#"{"device_id":7}"#, 422, "wrong_type"),
        telemetry(
            "empty device id",
            r#"{"device_id":""}"#,
            422,
            "invalid_device_id",
        ),
        telemetry(
            "space in device id",
            r#"{"device_id":"a b"}"#,
            422,
            "invalid_device_id",
        ),
        telemetry(
            "mqtt wildcards in device id",
            r#"{"device_id":"a/+/#"}"#,
            422,
            "invalid_device_id",
        ),
        telemetry(
            "nul in device id",
            r#"{"device_id":"a\u0000b"}"#,
            422,
            "invalid_device_id",
        ),
        telemetry(
            "65-char device id",
            format!(r#"{{"device_id":"{}"}}"#, "d".repeat(65)),
            422,
            "invalid_device_id",
        ),
        telemetry(
            "huge device id",
            format!(r#"{{"device_id":"{}"}}"#, "d".repeat(3000)),
            422,
            "invalid_device_id",
        ),
        telemetry(
            "heart rate as string",
            r#"{"device_id":"a","heart_rate":"72"}"#,
            422,
            "wrong_type",
        ),
        telemetry(
            "heart rate as bool",
            r#"{"device_id":"a","heart_rate":true}"#,
            422,
            "wrong_type",
        ),
        telemetry(
            "heart rate as array",
            r#"{"device_id":"a","heart_rate":[72]}"#,
            422,
            "wrong_type",
        ),
        telemetry(
            "heart rate as object",
            r#"{"device_id":"a","heart_rate":{"v":1}}"#,
            422,
            "wrong_type",
        ),
        telemetry(
            "NaN as string",
            r#"{"device_id":"a","heart_rate":"NaN"}"#,
            422,
            "non_finite_number",
        ),
        telemetry(
            "Infinity as string",
            r#"{"device_id":"a","body_temp":"Infinity"}"#,
            422,
            "non_finite_number",
        ),
        telemetry(
            "-inf as string",
            r#"{"device_id":"a","body_temp":"-inf"}"#,
            422,
            "non_finite_number",
        ),
        telemetry(
            "bare NaN",
            r#"{"device_id":"a","heart_rate":NaN}"#,
            400,
            "malformed_json",
        ),
        telemetry(
            "bare Infinity",
            r#"{"device_id":"a","heart_rate":Infinity}"#,
            400,
            "malformed_json",
        ),
        telemetry(
            "1e309",
            r#"{"device_id":"a","heart_rate":1e309}"#,
            400,
            "number_out_of_range",
        ),
        telemetry(
            "-1e309",
            r#"{"device_id":"a","body_temp":-1e309}"#,
            400,
            "number_out_of_range",
        ),
        telemetry(
            "heart rate 10000",
            r#"{"device_id":"a","heart_rate":10000}"#,
            422,
            "value_out_of_bounds",
        ),
        telemetry(
            "negative battery",
            r#"{"device_id":"a","battery_level":-5}"#,
            422,
            "value_out_of_bounds",
        ),
        telemetry(
            "spo2 above 100",
            r#"{"device_id":"a","spo2":101}"#,
            422,
            "value_out_of_bounds",
        ),
        telemetry(
            "absurd temperature",
            r#"{"device_id":"a","body_temp":1e300}"#,
            422,
            "value_out_of_bounds",
        ),
        telemetry(
            "duplicate device id",
            r#"{"device_id":"a","device_id":"b"}"#,
            400,
            "duplicate_field",
        ),
        telemetry(
            "duplicate heart rate",
            r#"{"device_id":"a","heart_rate":70,"heart_rate":200}"#,
            400,
            "duplicate_field",
        ),
        telemetry(
            "duplicate unknown key",
            r#"{"device_id":"a","x":1,"x":2}"#,
            400,
            "duplicate_field",
        ),
        telemetry(
            "timestamp words",
            r#"{"device_id":"a","timestamp":"yesterday"}"#,
            422,
            "invalid_timestamp",
        ),
        telemetry(
            "timestamp before 2000",
            r#"{"device_id":"a","timestamp":"1990-01-01T00:00:00"}"#,
            422,
            "invalid_timestamp",
        ),
        telemetry(
            "timestamp far future",
            r#"{"device_id":"a","timestamp":"2099-01-01T00:00:00Z"}"#,
            422,
            "timestamp_in_future",
        ),
        telemetry(
            "consciousness letter",
            r#"{"device_id":"a","consciousness":"Z"}"#,
            422,
            "invalid_consciousness",
        ),
        telemetry(
            "oxygen as string",
            r#"{"device_id":"a","on_oxygen":"yes"}"#,
            422,
            "wrong_type",
        ),
        telemetry(
            "negative seq",
            r#"{"device_id":"a","seq":-1}"#,
            422,
            "value_out_of_bounds",
        ),
        telemetry(
            "long unknown string",
            format!(r#"{{"device_id":"a","note":"{}"}}"#, "n".repeat(300)),
            422,
            "string_too_long",
        ),
        telemetry(
            "invalid utf-8",
            b"{\"device_id\":\"a\xff\xfe\"}".to_vec(),
            400,
            "invalid_utf8",
        ),
        telemetry(
            "utf-8 bom",
            "\u{feff}{\"device_id\":\"a\"}",
            400,
            "malformed_json",
        ),
        telemetry(
            "10000-deep nesting",
            format!("{}{}", "[".repeat(10_000), "]".repeat(10_000)),
            400,
            "too_deep",
        ),
        telemetry(
            "deep unknown field",
            format!(
                r#"{{"device_id":"a","x":{}1{}}}"#,
                "[".repeat(9),
                "]".repeat(9)
            ),
            400,
            "too_deep",
        ),
        telemetry(
            "5 MB body",
            vec![b' '; 5 * 1024 * 1024],
            413,
            "payload_too_large",
        ),
        telemetry(
            "5 KB reading",
            format!(r#"{{"device_id":"a","pad":[{}0]}}"#, "0,".repeat(2600)),
            413,
            "payload_too_large",
        ),
        telemetry(
            "70 fields",
            format!(
                r#"{{"device_id":"a"{}}}"#,
                (0..70).map(|i| format!(r#","f{i}":1"#)).collect::<String>()
            ),
            400,
            "too_many_fields",
        ),
        telemetry(
            "batch of 1001",
            format!("[{}]", vec![r#"{"device_id":"a"}"#; 1001].join(",")),
            413,
            "batch_too_large",
        ),
        telemetry(
            "batch with only bad readings",
            r#"[{"device_id":"a","heart_rate":"x"},{"heart_rate":70}]"#,
            422,
            "",
        ),
        Case {
            content_type: Some("text/plain"),
            ..telemetry(
                "text/plain",
                r#"{"device_id":"a"}"#,
                415,
                "unsupported_media_type",
            )
        },
        Case {
            content_type: None,
            ..telemetry(
                "no content type",
                r#"{"device_id":"a"}"#,
                415,
                "unsupported_media_type",
            )
        },
        Case {
            content_type: Some("application/x-www-form-urlencoded"),
            ..telemetry("form encoded", "device_id=a", 415, "unsupported_media_type")
        },
        route(
            "bad device id in path",
            "GET",
            "/api/devices/bad%20id",
            "",
            400,
            "invalid_device_id",
        ),
        route(
            "unknown device",
            "GET",
            "/api/devices/NOPE",
            "",
            404,
            "device_not_found",
        ),
        route(
            "readings of unknown device",
            "GET",
            "/api/devices/NOPE/readings",
            "",
            404,
            "device_not_found",
        ),
        route(
            "limit zero",
            "GET",
            "/api/anomalies?limit=0",
            "",
            400,
            "invalid_query",
        ),
        route(
            "limit text",
            "GET",
            "/api/anomalies?limit=abc",
            "",
            400,
            "invalid_query",
        ),
        route(
            "limit huge",
            "GET",
            "/api/anomalies?limit=100000000000",
            "",
            400,
            "invalid_query",
        ),
        route(
            "unknown type",
            "GET",
            "/api/anomalies?type=BOGUS",
            "",
            400,
            "invalid_query",
        ),
        route(
            "bad since",
            "GET",
            "/api/anomalies?since=notatime",
            "",
            400,
            "invalid_query",
        ),
        route(
            "unknown parameter",
            "GET",
            "/api/anomalies?foo=1",
            "",
            400,
            "invalid_query",
        ),
        route(
            "repeated parameter",
            "GET",
            "/api/anomalies?limit=1&limit=2",
            "",
            400,
            "invalid_query",
        ),
        route(
            "bad cursor",
            "GET",
            "/api/anomalies?cursor=x",
            "",
            400,
            "invalid_query",
        ),
        route("unknown route", "GET", "/nowhere", "", 404, "not_found"),
        route(
            "wrong method",
            "DELETE",
            "/api/telemetry",
            "",
            405,
            "method_not_allowed",
        ),
        route(
            "register: id wrong type",
            "POST",
            "/api/devices",
            r#"{"device_id":5}"#,
            422,
            "invalid_body",
        ),
        route(
            "register: malformed",
            "POST",
            "/api/devices",
            "{",
            400,
            "invalid_body",
        ),
        route(
            "register: unknown field",
            "POST",
            "/api/devices",
            r#"{"device_id":"x","admin":true}"#,
            422,
            "invalid_body",
        ),
        route(
            "register: bad interval",
            "POST",
            "/api/devices",
            r#"{"device_id":"x","expected_interval_s":-1}"#,
            422,
            "invalid_body",
        ),
        route(
            "register: bad id",
            "POST",
            "/api/devices",
            r#"{"device_id":"x y"}"#,
            400,
            "invalid_device_id",
        ),
        route(
            "update unknown device",
            "PUT",
            "/api/devices/NOPE",
            r#"{"location":"ward 3"}"#,
            404,
            "device_not_found",
        ),
        route(
            "deactivate unknown device",
            "DELETE",
            "/api/devices/NOPE",
            "",
            404,
            "device_not_found",
        ),
    ];
    cases.retain(|case| !case.name.is_empty());
    cases
}

#[test]
fn hostile_inputs_get_precise_4xx_and_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start(dir.path());
    let agent = agent();
    // One accepted reading first, so the tables exist and are non-empty.
    let ok = post_json(
        &agent,
        &server.url("/api/telemetry"),
        &crate::support::reading("calm", 1, 72.0),
    );
    assert_eq!(ok.status, 200);
    let before = counts(&server.data_dir);

    let cases = cases();
    assert!(cases.len() >= 40, "the corpus must hold at least 40 cases");
    if let Ok(dir) = std::env::var("VITALWATCH_EXPORT_CORPUS") {
        export(&cases, std::path::Path::new(&dir));
    }
    let mut n_telemetry_refusals = 0;
    for case in &cases {
        let answer = send(
            &agent,
            case.method,
            &server.url(case.path),
            case.content_type,
            &case.body,
        );
        assert_eq!(
            answer.status, case.status,
            "{}: {:?}",
            case.name, answer.json
        );
        if !case.error.is_empty() {
            assert_eq!(
                answer.json["error"], case.error,
                "{}: {:?}",
                case.name, answer.json
            );
            assert!(
                answer.json["detail"]
                    .as_str()
                    .is_some_and(|d| !d.is_empty()),
                "{}: no detail",
                case.name
            );
        }
        if case.path == "/api/telemetry" && case.method == "POST" {
            n_telemetry_refusals += 1;
        }
        assert!(server.is_running(), "server died on {}", case.name);
    }

    assert_eq!(
        counts(&server.data_dir),
        before,
        "a refused input changed the database"
    );
    let health = get(&agent, &server.url("/health"));
    assert_eq!(health.status, 200);
    let rejected = health.json["readings"]["rejected"].as_u64().unwrap();
    // The all-bad batch counts each of its two readings.
    assert_eq!(
        rejected,
        n_telemetry_refusals + 1,
        "{:?}",
        health.json["rejected"]
    );
    assert_eq!(health.json["rejected"]["malformed_json"], 9);
    assert_eq!(health.json["rejected"]["unsupported_media_type"], 3);

    // The server still serves good readings after all of that.
    let ok = post_json(
        &agent,
        &server.url("/api/telemetry"),
        &crate::support::reading("calm", 2, 72.0),
    );
    assert_eq!(ok.status, 200);
    assert_eq!(counts(&server.data_dir).readings, before.readings + 1);
    assert!(
        server.terminate(),
        "server did not stop cleanly:\n{}",
        server.log()
    );
}

#[test]
fn a_batch_stores_its_good_readings_and_reports_each_bad_one() {
    let dir = tempfile::tempdir().unwrap();
    let server = in_process::start(in_process::config(dir.path()));
    let agent = agent();
    let body = format!(
        "[{},{},{}]",
        crate::support::reading("bed-1", 1, 72.0),
        r#"{"device_id":"bed-1","heart_rate":"fast"}"#,
        crate::support::reading("bed-2", 1, 140.0),
    );
    let answer = post_json(&agent, &server.url("/api/telemetry"), &body);
    assert_eq!(answer.status, 200);
    assert_eq!(answer.json["accepted"], 2);
    assert_eq!(answer.json["rejected"], 1);
    let results = answer.json["results"].as_array().unwrap();
    assert_eq!(results[0]["stored"], true);
    assert_eq!(results[1]["status"], "rejected");
    assert_eq!(results[1]["error"], "wrong_type");
    assert_eq!(results[1]["field"], "heart_rate");
    assert_eq!(results[2]["anomalies"][0]["type"], "OUT_OF_RANGE_HR");
    let counts = counts(&server.data_dir);
    assert_eq!(counts.readings, 2);
    assert_eq!(counts.anomalies, 1);
}

fn export(cases: &[Case], dir: &std::path::Path) {
    std::fs::create_dir_all(dir).unwrap();
    for (i, case) in cases.iter().enumerate() {
        if case.path == "/api/telemetry" && case.body.len() <= 64 * 1024 {
            std::fs::write(dir.join(format!("hostile-{i:03}")), &case.body).unwrap();
        }
    }
}

#[test]
fn a_saturated_writer_answers_429_and_stores_exactly_what_it_accepted() {
    let dir = tempfile::tempdir().unwrap();
    // A tiny queue, no patience, one transaction per reading: the writer saturates at once.
    std::fs::write(
        dir.path().join("vw.toml"),
        "[store]\nqueue_capacity = 1\nqueue_timeout_ms = 0\nmax_batch = 1\n",
    )
    .unwrap();
    let server = Server::start_with(crate::support::ServerOptions {
        args: vec!["--config".into(), "vw.toml".into()],
        ..crate::support::ServerOptions::new(dir.path())
    });
    let url = server.url("/api/telemetry");
    let handles: Vec<_> = (0..12u64)
        .map(|t| {
            let url = url.clone();
            std::thread::spawn(move || {
                let agent = agent();
                let mut outcomes = Vec::new();
                for b in 0..10u64 {
                    let first = (t * 100 + b) * 20;
                    let body = format!(
                        "[{}]",
                        (first..first + 20)
                            .map(|n| crate::support::reading(&format!("load-{t}"), n, 72.0))
                            .collect::<Vec<_>>()
                            .join(",")
                    );
                    let request = ureq::http::Request::builder()
                        .method("POST")
                        .uri(&url)
                        .header("Content-Type", "application/json")
                        .body(body.into_bytes())
                        .unwrap();
                    let response = agent.run(request).unwrap();
                    let retry_after = response.headers().get("retry-after").is_some();
                    outcomes.push((response.status().as_u16(), retry_after, first));
                }
                outcomes
            })
        })
        .collect();
    let outcomes: Vec<(u16, bool, u64)> = handles
        .into_iter()
        .flat_map(|h| h.join().unwrap())
        .collect();
    let accepted: Vec<u64> = outcomes
        .iter()
        .filter(|o| o.0 == 200)
        .map(|o| o.2)
        .collect();
    let busy: Vec<&(u16, bool, u64)> = outcomes.iter().filter(|o| o.0 == 429).collect();
    assert!(
        !busy.is_empty(),
        "no request was answered 429: {outcomes:?}"
    );
    assert!(!accepted.is_empty());
    assert!(busy.iter().all(|o| o.1), "a 429 without Retry-After");
    assert!(
        outcomes.iter().all(|o| o.0 == 200 || o.0 == 429),
        "{outcomes:?}"
    );
    // Exactly the accepted batches are stored: nothing refused slipped in, nothing acked is lost.
    assert_eq!(
        counts(&server.data_dir).readings,
        accepted.len() as i64 * 20
    );
    let health = get(&agent(), &server.url("/health")).json;
    assert_eq!(health["rejected"]["busy"], busy.len());
}
