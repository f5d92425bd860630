//! The seed README's examples, run exactly as written (port 5000, `data/anomalies.db`). The
//! curl examples run on both backends (the PostgreSQL pass starts `serve --database
//! postgres://…`); the `sqlite3` example is about the SQLite file, so the PostgreSQL pass asks
//! its question with `psql`.

use crate::support::backend::{self, Backend};
use crate::support::{Server, ServerOptions, sh};

// The seed's examples exactly as README.md shows them; the second test checks it still does.
const HEALTH: &str = "curl http://localhost:5000/health";
const TELEMETRY: &str = r#"curl -X POST http://localhost:5000/api/telemetry \
  -H "Content-Type: application/json" \
  -d '{"device_id":"TEST_001","heart_rate":75,"body_temp":36.8,"signal_strength":-55,"battery_level":90}'"#;
/// `sqlite3` and then what is typed into it.
const SQLITE3: &str = "sqlite3 data/anomalies.db";
const SQLITE3_INPUT: &str = "SELECT COUNT(*) FROM anomalies;\n.quit";

#[test]
fn seed_curl_and_sqlite3_examples_work_as_written() {
    let dir = tempfile::tempdir().unwrap();
    // The defaults: 0.0.0.0:5000 and ./data, as the seed's examples assume.
    let database = backend::database_url(&dir.path().join("data"), dir.path());
    let args: Vec<String> = database
        .into_iter()
        .flat_map(|url| ["--database".to_owned(), url])
        .collect();
    let server = Server::start_with(ServerOptions {
        free_port: false,
        args,
        ..ServerOptions::new(dir.path())
    });
    assert_eq!(server.api.port(), 5000);

    let (ok, health, err) = sh(dir.path(), HEALTH);
    assert!(ok, "{err}");
    let health: serde_json::Value = serde_json::from_str(&health).unwrap();
    assert_eq!(health["status"], "healthy");
    assert_eq!(health["model_loaded"], false);

    let (ok, answer, err) = sh(dir.path(), TELEMETRY);
    assert!(ok, "{err}");
    let answer: serde_json::Value = serde_json::from_str(&answer).unwrap();
    assert_eq!(answer["status"], "received");
    assert_eq!(answer["stored"], true);
    assert_eq!(answer["anomalies"].as_array().unwrap().len(), 0);

    // An out-of-range reading produces anomalies the sqlite3 example then counts.
    let (ok, answer, _) = sh(
        dir.path(),
        r#"curl -s -X POST http://localhost:5000/api/telemetry -H "Content-Type: application/json" -d '{"device_id":"TEST_001","heart_rate":130,"body_temp":39.5,"signal_strength":-55,"battery_level":90}'"#,
    );
    assert!(ok);
    let answer: serde_json::Value = serde_json::from_str(&answer).unwrap();
    let kinds: Vec<&str> = answer["anomalies"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["type"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["OUT_OF_RANGE_HR", "OUT_OF_RANGE_TEMP"]);

    let stored = match backend::backend() {
        Backend::Sqlite => {
            let (ok, out, err) = sh(
                dir.path(),
                &format!("{SQLITE3} <<'SQL'\n{SQLITE3_INPUT}\nSQL"),
            );
            assert!(ok, "{err}");
            out.trim().to_owned()
        }
        Backend::Postgres => {
            assert!(!dir.path().join("data/anomalies.db").exists());
            server.sql("SELECT COUNT(*) FROM anomalies;")
        }
    };
    assert_eq!(stored, "2");

    let (ok, out, _) = sh(dir.path(), "curl -s http://localhost:5000/api/devices");
    assert!(ok);
    let devices: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(devices["devices"][0]["device_id"], "TEST_001");
    assert_eq!(devices["devices"][0]["total_readings"], 2);

    let (ok, out, _) = sh(
        dir.path(),
        "curl -s 'http://localhost:5000/api/anomalies?type=OUT_OF_RANGE_TEMP'",
    );
    assert!(ok);
    let anomalies: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(anomalies["count"], 1);
    assert_eq!(anomalies["anomalies"][0]["severity"], "CRITICAL");
    drop(server);
}

#[test]
fn the_readme_shows_the_seed_examples_as_the_test_above_runs_them() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../README.md");
    let readme = std::fs::read_to_string(path).unwrap();
    let block = format!(
        "# Health check\n{HEALTH}\n\n# Send test telemetry\n{TELEMETRY}\n\n# Check the database\n{SQLITE3}\n{SQLITE3_INPUT}\n"
    );
    assert!(
        readme.contains(&block),
        "README.md no longer shows the seed's examples as seed.rs runs them:\n{block}"
    );
}
