//! The audit trail is tamper-evident: editing, deleting or reordering a row with the real
//! `sqlite3` CLI makes `vitalwatch audit verify` fail and name the first bad entry.

use crate::support::{Server, agent, post_json, run, sh};
use std::path::Path;

fn audit(dir: &Path, args: &[&str]) -> (bool, String, String) {
    let mut all = vec!["audit"];
    all.extend_from_slice(args);
    run(dir, &all)
}

/// A copy of `src` (a cwd with `data/`) tampered with by `sql` through the sqlite3 CLI.
fn tampered(src: &Path, name: &str, sql: &str) -> tempfile::TempDir {
    let copy = tempfile::tempdir().unwrap();
    let (ok, _, err) = sh(
        src,
        &format!(
            "mkdir -p {0}/data && cp data/anomalies.db data/audit-anchors.jsonl {0}/data/",
            copy.path().display()
        ),
    );
    assert!(ok, "{err}");
    let (ok, _, err) = sh(copy.path(), &format!("sqlite3 data/anomalies.db \"{sql}\""));
    assert!(ok, "{name}: {err}");
    copy
}

#[test]
fn tampering_with_the_audit_log_is_detected_and_named() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start(dir.path());
    let agent = agent();
    for id in ["bed-1", "bed-2", "bed-3", "bed-4"] {
        let answer = post_json(
            &agent,
            &server.url("/api/devices"),
            &format!(r#"{{"device_id":"{id}"}}"#),
        );
        assert_eq!(answer.status, 201);
    }
    assert!(server.terminate());

    let (ok, out, err) = audit(dir.path(), &["verify"]);
    assert!(ok, "{err}");
    // The configuration in force at the first start, then four registrations.
    assert!(out.contains("5 entries, hash chain intact"), "{out}");

    let (ok, out, _) = audit(dir.path(), &["export"]);
    assert!(ok);
    let lines: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 5);
    assert_eq!(lines[0]["action"], "config.applied");
    assert_eq!(lines[2]["action"], "device.register");
    assert_eq!(lines[2]["target"], "bed-2");
    let (ok, out, _) = audit(dir.path(), &["export", "--since", "2999-01-01T00:00:00Z"]);
    assert!(ok && out.is_empty());

    let cases = [
        (
            "edit",
            "UPDATE audit_log SET actor = 'api:10.0.0.66' WHERE id = 2;",
            "entry #2",
            "edited",
        ),
        (
            "delete",
            "DELETE FROM audit_log WHERE id = 3;",
            "entry #4",
            "#3..#3 are missing",
        ),
        (
            "reorder",
            "UPDATE audit_log SET id = -id WHERE id IN (2, 3); UPDATE audit_log SET id = 3 WHERE id = -2; UPDATE audit_log SET id = 2 WHERE id = -3;",
            "entry #2",
            "broken",
        ),
        (
            // Every remaining row still chains; the anchor written at shutdown (outside the
            // database) is what shows the tail is gone.
            "truncate the end",
            "DELETE FROM audit_log WHERE id = 5;",
            "entry #5",
            "entries after #4 were deleted",
        ),
        (
            "truncate the start",
            "DELETE FROM audit_log WHERE id = 1;",
            "entry #2",
            "genesis",
        ),
    ];
    for (name, sql, entry, why) in cases {
        let copy = tampered(dir.path(), name, sql);
        let (ok, _, err) = audit(copy.path(), &["verify"]);
        assert!(!ok, "{name}: verify passed on a tampered log");
        assert!(err.contains(&format!("FAILED at {entry}")), "{name}: {err}");
        assert!(err.contains(why), "{name}: {err}");
    }
}

#[test]
fn a_changed_configuration_is_audited_with_what_changed() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("vw.toml");
    std::fs::write(
        &config,
        "[rules]\nheart_rate = { min = 60.0, max = 100.0, severity = \"CRITICAL\" }\n",
    )
    .unwrap();
    let start = |dir: &Path| {
        Server::start_with(crate::support::ServerOptions {
            args: vec!["--config".into(), "vw.toml".into()],
            ..crate::support::ServerOptions::new(dir)
        })
    };
    let mut server = start(dir.path());
    assert!(server.terminate());
    // The same configuration again: nothing new to audit.
    let mut server = start(dir.path());
    assert!(server.terminate());
    std::fs::write(
        &config,
        "[rules]\nheart_rate = { min = 45.0, max = 100.0, severity = \"CRITICAL\" }\n",
    )
    .unwrap();
    let mut server = start(dir.path());
    assert!(server.terminate());
    let (ok, out, _) = audit(dir.path(), &["export"]);
    assert!(ok);
    let applied: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|l| l["action"] == "config.applied")
        .collect();
    assert_eq!(applied.len(), 2, "{applied:?}");
    assert_eq!(
        applied[1]["details"]["changed"],
        serde_json::json!(["rules"])
    );
    assert_eq!(
        applied[1]["details"]["config"]["rules"]["heart_rate"]["min"],
        45.0
    );
}
