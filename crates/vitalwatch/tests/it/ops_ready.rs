//! `/ready` follows the store for real (issue 15): with the database's files made immutable
//! (`chattr +i`: even root cannot write them, as on a volume gone read-only), commits fail and
//! `/ready` answers 503 with `store_unavailable`; once the files are writable again it answers
//! 200 and readings are stored again. `/health` stays the liveness answer throughout.

use crate::support::{Server, WAIT, agent, get, poll_until, post_json};
use std::path::PathBuf;
use std::process::Command;

/// Files made immutable until this is dropped (also when the test fails).
struct Immutable(Vec<PathBuf>);

impl Immutable {
    fn set(files: Vec<PathBuf>) -> Immutable {
        for file in &files {
            let status = Command::new("chattr").arg("+i").arg(file).status();
            assert!(
                status.is_ok_and(|s| s.success()),
                "chattr +i {} (root on a filesystem with attributes, e.g. ext4)",
                file.display()
            );
        }
        Immutable(files)
    }
}

impl Drop for Immutable {
    fn drop(&mut self) {
        for file in &self.0 {
            let _ = Command::new("chattr").arg("-i").arg(file).status();
        }
    }
}

fn reading(seq: u32) -> String {
    format!(r#"{{"device_id":"bed-1","seq":{seq},"heart_rate":72,"body_temp":36.8}}"#)
}

#[test]
fn ready_fails_while_the_store_cannot_commit_and_recovers_after() {
    let dir = tempfile::tempdir().unwrap();
    // PostgreSQL's outage is postgres_jepsen.rs (`pg_ctl stop -m immediate`).
    crate::support::sqlite_only(dir.path(), "it makes the SQLite file immutable");
    let server = Server::start(dir.path());
    let agent = agent();
    let telemetry = server.url("/api/telemetry");
    let ready = server.url("/ready");
    assert_eq!(post_json(&agent, &telemetry, &reading(1)).status, 200);
    assert_eq!(get(&agent, &ready).status, 200);

    let db = server.data_dir.join("anomalies.db");
    let mut wal = db.clone().into_os_string();
    wal.push("-wal");
    let frozen = Immutable::set(vec![db, PathBuf::from(wal)]);
    let refused = post_json(&agent, &telemetry, &reading(2)).status;
    assert!(
        refused >= 500,
        "a reading was answered {refused} on a read-only store"
    );
    let not_ready = poll_until(WAIT, || {
        let answer = get(&agent, &ready);
        (answer.status == 503).then_some(answer.json)
    });
    let body = not_ready.expect("/ready kept answering 200 while commits fail");
    assert_eq!(
        body["reasons"],
        serde_json::json!(["store_unavailable"]),
        "{body}"
    );
    // Liveness is not readiness: the process still answers /health.
    assert!(get(&agent, &server.url("/health")).status >= 200);

    drop(frozen);
    let recovered = poll_until(WAIT, || (get(&agent, &ready).status == 200).then_some(()));
    assert!(recovered.is_some(), "/ready did not recover");
    assert_eq!(post_json(&agent, &telemetry, &reading(3)).status, 200);
    println!("ready: 200 → 503 (store_unavailable) while read-only → 200 after");
}
