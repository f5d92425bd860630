//! Nothing acknowledged is lost: across restarts, SIGTERM mid-stream and SIGKILL; and a
//! redelivered reading is stored once.

use crate::support::{Server, WAIT, agent, counts, get, post_json, reading, wait_until};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

#[test]
fn committed_readings_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let agent = agent();
    let mut server = Server::start(dir.path());
    for n in 0..50 {
        let answer = post_json(
            &agent,
            &server.url("/api/telemetry"),
            &reading("bed-1", n, 72.0 + n as f64),
        );
        assert_eq!(answer.status, 200);
    }
    assert!(server.terminate(), "{}", server.log());

    let server = Server::start(dir.path());
    assert_eq!(counts(&server.data_dir).readings, 50);
    let page = get(
        &agent,
        &server.url("/api/devices/bed-1/readings?limit=1000"),
    );
    assert_eq!(page.json["count"], 50);
    // Readings above 100 bpm (n = 29..49) each produced an anomaly that survived too.
    assert_eq!(counts(&server.data_dir).anomalies, 21);
}

#[test]
fn a_redelivered_reading_is_stored_once() {
    let dir = tempfile::tempdir().unwrap();
    let agent = agent();
    let server = Server::start(dir.path());
    let url = server.url("/api/telemetry");

    let first = post_json(&agent, &url, &reading("bed-1", 1, 130.0));
    let again = post_json(&agent, &url, &reading("bed-1", 1, 130.0));
    assert_eq!(first.json["stored"], true);
    assert_eq!(again.json["stored"], false);
    assert_eq!(again.json["duplicate"], true);
    assert_eq!(again.json["reading_id"], first.json["reading_id"]);

    // Same device and seq, no device clock: the second is a redelivery too.
    let with_seq = r#"{"device_id":"esp-9","seq":17,"heart_rate":70,"body_temp":36.6,"signal_strength":-60,"battery_level":80}"#;
    let a = post_json(&agent, &url, with_seq);
    let b = post_json(&agent, &url, with_seq);
    assert_eq!(a.json["stored"], true);
    assert_eq!(b.json["duplicate"], true);

    // The same reading twice in one batch is stored once as well.
    let batch = format!(
        "[{},{}]",
        reading("bed-2", 5, 70.0),
        reading("bed-2", 5, 70.0)
    );
    let answer = post_json(&agent, &url, &batch);
    assert_eq!(answer.json["results"][0]["stored"], true);
    assert_eq!(answer.json["results"][1]["duplicate"], true);

    let counts = counts(&server.data_dir);
    assert_eq!(counts.readings, 3);
    // Only the first 130 bpm reading produced an anomaly.
    assert_eq!(counts.anomalies, 1);
    let health = get(&agent, &server.url("/health"));
    assert_eq!(health.json["readings"]["duplicates"], 3);
}

/// Posts distinct readings from `threads` clients until `stop`; returns the acknowledged ones
/// and counts them in `n_acked` as they come.
fn flood(
    url: String,
    threads: u64,
    stop: Arc<AtomicBool>,
    n_acked: Arc<AtomicUsize>,
) -> Vec<std::thread::JoinHandle<Vec<u64>>> {
    (0..threads)
        .map(|t| {
            let url = url.clone();
            let stop = Arc::clone(&stop);
            let n_acked = Arc::clone(&n_acked);
            std::thread::spawn(move || {
                let agent = agent();
                let mut acked = Vec::new();
                let mut n = 0;
                while !stop.load(Ordering::Relaxed) && n < 200_000 {
                    let body = reading(&format!("flood-{t}"), n, 72.0);
                    let request = ureq::http::Request::builder()
                        .method("POST")
                        .uri(&url)
                        .header("Content-Type", "application/json")
                        .body(body.into_bytes())
                        .unwrap();
                    match agent.run(request) {
                        Ok(response) if response.status() == 200 => {
                            acked.push(t * 1_000_000 + n);
                            n_acked.fetch_add(1, Ordering::Relaxed);
                        }
                        // Refused connections once the server stops: not acknowledged.
                        _ => {}
                    }
                    n += 1;
                }
                acked
            })
        })
        .collect()
}

fn stored_keys(data_dir: &std::path::Path) -> std::collections::HashSet<u64> {
    let query = format!(
        "SELECT device_id, {} FROM readings",
        crate::support::backend::rfc3339(data_dir, "timestamp")
    );
    crate::support::sql(data_dir, &query)
        .lines()
        .map(|row| {
            let (device, ts) = row.split_once('|').expect("two columns");
            let t: u64 = device.trim_start_matches("flood-").parse().unwrap();
            let at = chrono::DateTime::parse_from_rfc3339(ts)
                .unwrap()
                .timestamp_millis() as u64;
            let n = (at - 1_767_225_600_000) / 1000;
            t * 1_000_000 + n
        })
        .collect()
}

fn check_no_acked_reading_lost(kill: impl FnOnce(&mut Server)) {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start(dir.path());
    let stop = Arc::new(AtomicBool::new(false));
    let n_acked = Arc::new(AtomicUsize::new(0));
    let handles = flood(
        server.url("/api/telemetry"),
        4,
        Arc::clone(&stop),
        Arc::clone(&n_acked),
    );
    // Stopped mid-stream: once the flood is well under way, while it still runs.
    wait_until(WAIT, "200 acknowledged readings", || {
        n_acked.load(Ordering::Relaxed) >= 200
    });
    kill(&mut server);
    stop.store(true, Ordering::Relaxed);
    let acked: Vec<u64> = handles
        .into_iter()
        .flat_map(|h| h.join().unwrap())
        .collect();
    assert!(
        acked.len() > 50,
        "the flood barely ran: {} acks",
        acked.len()
    );

    // Reopen through the server (recovery runs there), then read what is stored.
    let restarted = Server::start(dir.path());
    let stored = stored_keys(&restarted.data_dir);
    let lost: Vec<&u64> = acked.iter().filter(|k| !stored.contains(k)).collect();
    assert!(
        lost.is_empty(),
        "{} acknowledged readings lost, e.g. {:?}",
        lost.len(),
        &lost[..lost.len().min(5)]
    );
}

#[test]
fn sigterm_mid_stream_loses_no_acknowledged_reading() {
    check_no_acked_reading_lost(|server| {
        assert!(server.terminate(), "unclean stop:\n{}", server.log());
    });
}

#[test]
fn sigkill_mid_stream_loses_no_acknowledged_reading() {
    check_no_acked_reading_lost(Server::kill9);
}
