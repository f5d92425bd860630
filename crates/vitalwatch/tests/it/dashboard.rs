//! The dashboard's API on the real binary: window aggregates, downsampled series, the CSV
//! export (read with the real curl) and the live stream's resume from `Last-Event-ID`.

use crate::support::{Server, agent, get, post_json, reading, sh};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

const HOUR: &str = "since=2026-01-01T00:00:00Z&until=2026-01-01T01:00:00Z";

#[test]
fn stats_series_and_csv_agree_with_what_was_posted() {
    let dir = tempfile::tempdir().unwrap();
    let agent = agent();
    let server = Server::start(dir.path());
    for n in 0..10 {
        let hr = if n == 4 { 130.0 } else { 70.0 + n as f64 };
        assert_eq!(
            post_json(
                &agent,
                &server.url("/api/telemetry"),
                &reading("BED_1", n, hr)
            )
            .status,
            200
        );
        assert_eq!(
            post_json(
                &agent,
                &server.url("/api/telemetry"),
                &reading("BED_2", n, 80.0)
            )
            .status,
            200
        );
    }
    // Outside the hour: counted by neither the stats nor the series.
    assert_eq!(
        post_json(
            &agent,
            &server.url("/api/telemetry"),
            &reading("BED_2", 7200, 80.0)
        )
        .status,
        200
    );

    let stats = get(&agent, &server.url(&format!("/api/stats?{HOUR}")));
    assert_eq!(stats.status, 200);
    assert_eq!(stats.json["total_devices"], 2);
    assert_eq!(stats.json["readings"], 20);
    assert_eq!(stats.json["anomalous_readings"], 1);
    assert_eq!(stats.json["anomaly_rate"], 0.05);
    assert_eq!(stats.json["by_device"][0]["device_id"], "BED_1");
    assert_eq!(stats.json["by_device"][0]["readings"], 10);
    // Whole hours are counted from reading_hours (V3), partial ones from the readings.
    let partial = get(
        &agent,
        &server.url("/api/stats?since=2026-01-01T00:00:05Z&until=2026-01-01T02:00:00Z"),
    );
    assert_eq!(
        partial.json["readings"], 11,
        "5 + 5 in the partial hour, 1 at 02:00"
    );
    let whole = get(&agent, &server.url("/api/stats"));
    assert_eq!(whole.json["readings"], 21);
    let one = get(
        &agent,
        &server.url(&format!("/api/stats?{HOUR}&device_id=BED_2")),
    );
    assert_eq!(one.json["total_devices"], 1);
    assert_eq!(one.json["readings"], 10);

    let series = get(
        &agent,
        &server.url(&format!(
            "/api/series?{HOUR}&device_id=BED_1,BED_2&points=2"
        )),
    );
    assert_eq!(series.status, 200);
    let bed1 = &series.json["series"][0];
    assert_eq!(bed1["device_id"], "BED_1");
    assert_eq!(bed1["bucket_s"], 1800);
    assert_eq!(
        bed1["count"],
        serde_json::json!([10]),
        "10 readings in the first 30 min bucket"
    );
    let hr = &bed1["metrics"][0];
    assert_eq!(hr["name"], "heart_rate");
    assert_eq!(hr["max"][0], 130.0, "the spike survives downsampling");
    assert_eq!(hr["min"][0], 70.0);
    let two = get(
        &agent,
        &server.url(&format!(
            "/api/series?{HOUR}&device_id=BED_1&metrics=battery_level,heart_rate"
        )),
    );
    let names: Vec<&str> = two.json["series"][0]["metrics"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["heart_rate", "battery_level"]);

    let latest = get(&agent, &server.url(&format!("/api/latest?{HOUR}")));
    assert_eq!(latest.json["latest"][0]["reading"]["heart_rate"], 79.0);

    let (ok, csv, _) = sh(
        dir.path(),
        &format!(
            "curl -sf '{}'",
            server.url(&format!("/api/readings.csv?{HOUR}&device_id=BED_1"))
        ),
    );
    assert!(ok);
    let lines: Vec<&str> = csv.lines().collect();
    assert!(lines[0].starts_with("id,device_id,timestamp_utc,"));
    assert_eq!(lines.len(), 11, "header + 10 readings:\n{csv}");
    assert!(
        lines[1..]
            .iter()
            .all(|l| l.split(',').nth(1) == Some("BED_1"))
    );
    assert!(lines.iter().any(|l| l.contains(",130,")));

    // SQLite's V3 rollup matches the readings, also after rows are deleted (retention does
    // that). PostgreSQL keeps no rollup (its series queries read the partitions' indexes).
    drop(server);
    if crate::support::backend::is_postgres(&dir.path().join("data")) {
        return;
    }
    let conn = rusqlite::Connection::open(dir.path().join("data/anomalies.db")).unwrap();
    let rollup_matches = |conn: &rusqlite::Connection| -> bool {
        conn.query_row(
            "SELECT NOT EXISTS (SELECT device_id, substr(timestamp, 1, 13) AS hour, COUNT(*) AS n \
             FROM readings GROUP BY 1, 2 EXCEPT SELECT device_id, hour, n FROM reading_hours WHERE n > 0) \
             AND NOT EXISTS (SELECT device_id, hour, n FROM reading_hours WHERE n > 0 EXCEPT \
             SELECT device_id, substr(timestamp, 1, 13), COUNT(*) FROM readings GROUP BY 1, 2)",
            [],
            |row| row.get(0),
        )
        .unwrap()
    };
    assert!(rollup_matches(&conn));
    conn.execute(
        "DELETE FROM readings WHERE device_id = 'BED_1' AND heart_rate < 75",
        [],
    )
    .unwrap();
    assert!(rollup_matches(&conn));
    let bed1: i64 = conn
        .query_row(
            "SELECT n FROM reading_hours WHERE device_id = 'BED_1'",
            [],
            |row| row.get(0),
        )
        .unwrap();
    assert_eq!(bed1, 6, "70–74 deleted, 75–79 and 130 left");
}

/// Reads SSE frames from a raw socket until `done` holds for the text read so far.
fn read_until(stream: &mut TcpStream, done: impl Fn(&str) -> bool) -> String {
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let mut text = String::new();
    let mut buf = [0u8; 4096];
    while !done(&text) {
        let n = stream
            .read(&mut buf)
            .unwrap_or_else(|err| panic!("stream ended early ({err}); read so far:\n{text}"));
        assert!(n > 0, "stream closed; read so far:\n{text}");
        text.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    text
}

fn open_stream(server: &Server, last_event_id: Option<&str>) -> TcpStream {
    let mut stream = TcpStream::connect(server.api).unwrap();
    let resume = last_event_id
        .map(|id| format!("Last-Event-ID: {id}\r\n"))
        .unwrap_or_default();
    write!(
        stream,
        "GET /api/events HTTP/1.1\r\nHost: localhost\r\nAccept: text/event-stream\r\n{resume}\r\n"
    )
    .unwrap();
    stream
}

#[test]
fn event_stream_is_live_and_resumes_from_last_event_id() {
    let dir = tempfile::tempdir().unwrap();
    let agent = agent();
    let server = Server::start(dir.path());
    post_json(
        &agent,
        &server.url("/api/telemetry"),
        &reading("BED_1", 0, 70.0),
    );

    let mut first = open_stream(&server, None);
    let hello = read_until(&mut first, |t| {
        t.contains("event: hello") && t.contains("retry:")
    });
    assert!(hello.contains("text/event-stream"), "{hello}");
    let id = hello
        .lines()
        .find_map(|l| l.strip_prefix("id: "))
        .expect("hello carries the cursor")
        .trim()
        .to_owned();
    assert_eq!(id, "1-0", "one reading and no anomaly stored so far");
    // Live: a new reading arrives on the open stream.
    post_json(
        &agent,
        &server.url("/api/telemetry"),
        &reading("BED_1", 1, 71.0),
    );
    let live = read_until(&mut first, |t| t.contains("event: reading"));
    assert!(live.contains("\"heart_rate\":71.0"), "{live}");
    drop(first);

    // Missed while disconnected: replayed from the database on resume, then live again.
    post_json(
        &agent,
        &server.url("/api/telemetry"),
        &reading("BED_2", 2, 72.0),
    );
    post_json(
        &agent,
        &server.url("/api/telemetry"),
        &reading("BED_2", 3, 150.0),
    );
    let mut resumed = open_stream(&server, Some("2-0"));
    let replay = read_until(&mut resumed, |t| t.contains("event: anomaly"));
    assert!(replay.contains("\"resumed\":true"), "{replay}");
    assert_eq!(replay.matches("event: reading").count(), 2, "{replay}");
    assert!(replay.contains("\"heart_rate\":150.0"));
    assert!(replay.contains("id: 4-1"), "the cursor advances: {replay}");
    assert!(
        !replay.contains("\"heart_rate\":71.0"),
        "nothing before the cursor is resent"
    );
}
