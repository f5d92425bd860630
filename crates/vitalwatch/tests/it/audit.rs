//! The audit trail is tamper-evident: editing, deleting or reordering a row with the
//! database's own client (`sqlite3`, or `psql` in the PostgreSQL pass) makes `vitalwatch audit
//! verify` fail and name the first bad entry.

use crate::support::{Server, agent, backend, post_json, run, sh};
use std::path::Path;

fn audit(dir: &Path, args: &[&str]) -> (bool, String, String) {
    let mut all = vec!["audit"];
    all.extend_from_slice(args);
    run(dir, &all)
}

/// A copy of `src` (a cwd with `data/`, its server stopped) tampered with by `sql` through
/// the database's own client.
fn tampered(src: &Path, name: &str, sql: &str) -> tempfile::TempDir {
    let copy = tempfile::tempdir().unwrap();
    let data = copy.path().join("data");
    backend::copy_store(&src.join("data"), &data, copy.path());
    std::fs::copy(
        src.join("data/audit-anchors.jsonl"),
        data.join("audit-anchors.jsonl"),
    )
    .unwrap_or_else(|err| panic!("{name}: copying the anchors: {err}"));
    backend::sql(&data, sql);
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

/// An attacker with write access to the data directory (not to the audit key) rewriting the
/// chain with Python: `mode` "purge" deletes the oldest half and appends a forged
/// `retention.purge`; "rechain" edits row 2 and recomputes every hash and the anchors.
const FORGE: &str = r#"
import hashlib, json, sqlite3, sys, datetime
db = sqlite3.connect('data/anomalies.db')
def h(*parts):
    m = hashlib.sha256()
    for p in parts:
        b = str(p).encode()
        m.update(len(b).to_bytes(8, 'little')); m.update(b)
    return m.hexdigest()
rows = db.execute('SELECT id, at, actor, action, target, details, prev_hash, hash FROM audit_log ORDER BY id').fetchall()
if sys.argv[1] == 'purge':
    half = len(rows) // 2
    db.execute('DELETE FROM audit_log WHERE id <= ?', (rows[half - 1][0],))
    first, last = rows[half], rows[-1]
    at = datetime.datetime.now(datetime.timezone.utc).strftime('%Y-%m-%dT%H:%M:%S.%fZ')
    cutoff = (datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(days=2191)).isoformat()
    details = json.dumps({'audit': half, 'anchor': {'id': first[0], 'prev_hash': first[6]}, 'audit_cutoff': cutoff})
    nid = last[0] + 1
    hh = h(last[7], nid, at, 'system:retention', 'retention.purge', 'store', details)
    db.execute('INSERT INTO audit_log VALUES (?, ?, ?, ?, ?, ?, ?, ?)', (nid, at, 'system:retention', 'retention.purge', 'store', details, last[7], hh))
else:
    prev = '0' * 64
    anchors = []
    for (id, at, actor, action, target, details, _, _) in rows:
        if id == 2: actor = 'cli:mallory'
        hh = h(prev, id, at, actor, action, target, details)
        db.execute('UPDATE audit_log SET actor = ?, prev_hash = ?, hash = ? WHERE id = ?', (actor, prev, hh, id))
        anchors.append(json.dumps({'at': at, 'id': id, 'hash': hh, 'row_at': at}))
        prev = hh
    open('data/audit-anchors.jsonl', 'w').write('\n'.join(anchors) + '\n')
db.commit()
"#;

#[test]
fn tampering_that_needs_no_key_is_detected_with_and_without_the_key() {
    let dir = tempfile::tempdir().unwrap();
    backend::sqlite_only(
        dir.path(),
        "the forger rewrites the SQLite file with Python",
    );
    std::fs::write(
        dir.path().join("vw.toml"),
        "[store]\naudit_anchor_every = 2\n",
    )
    .unwrap();
    let mut server = Server::start_with(crate::support::ServerOptions {
        args: vec!["--config".into(), "vw.toml".into()],
        ..crate::support::ServerOptions::new(dir.path())
    });
    let agent = agent();
    for id in ["bed-1", "bed-2", "bed-3", "bed-4", "bed-5", "bed-6"] {
        let answer = post_json(
            &agent,
            &server.url("/api/devices"),
            &format!(r#"{{"device_id":"{id}"}}"#),
        );
        assert_eq!(answer.status, 201);
    }
    // Anchored every 2 new rows while running: wait for the one covering the registrations,
    // then crash (no anchor at shutdown).
    let anchors = dir.path().join("data/audit-anchors.jsonl");
    crate::support::wait_until(crate::support::WAIT, "an anchor of entry #7", || {
        std::fs::read_to_string(&anchors).is_ok_and(|text| text.contains("\"id\":7"))
    });
    server.kill9();
    let key = dir.path().join("data/certs/audit.key");
    let key_arg = key.to_str().unwrap();
    let (ok, _, err) = audit(dir.path(), &["verify", "--key", key_arg]);
    assert!(ok, "{err}");
    let forged = |mode: &str| {
        let copy = tampered(dir.path(), mode, "SELECT 1;");
        std::fs::write(copy.path().join("forge.py"), FORGE).unwrap();
        let (ok, _, err) = sh(copy.path(), &format!("python3 forge.py {mode}"));
        assert!(ok, "{err}");
        copy
    };
    let verdicts = |copy: &Path| {
        [
            audit(copy, &["verify"]),
            audit(copy, &["verify", "--key", key_arg]),
        ]
    };
    // 1. The oldest half deleted and a forged purge appended (anchors untouched).
    let copy = forged("purge");
    for (ok, _, err) in verdicts(copy.path()) {
        assert!(!ok, "a forged purge passed");
        assert!(err.contains("younger than the retention cutoff"), "{err}");
    }
    // 2. Every row and the anchors file deleted, while the devices remain.
    let copy = tampered(dir.path(), "wipe", "DELETE FROM audit_log;");
    std::fs::remove_file(copy.path().join("data/audit-anchors.jsonl")).unwrap();
    for (ok, _, err) in verdicts(copy.path()) {
        assert!(!ok, "an emptied log passed");
        assert!(err.contains("the log was deleted"), "{err}");
    }
    // 3. After the crash, the rows written since start-up deleted: anchored, so detected.
    let copy = tampered(dir.path(), "tail", "DELETE FROM audit_log WHERE id > 2;");
    for (ok, _, err) in verdicts(copy.path()) {
        assert!(!ok, "a cut tail passed");
        assert!(err.contains("were deleted"), "{err}");
    }
    // 4. The whole chain recomputed after an edit, and the anchors rewritten to match: only
    // the key tells.
    let copy = forged("rechain");
    let [(ok, _, _), (ok_keyed, _, err)] = verdicts(copy.path());
    assert!(ok, "a consistent rewrite is only detectable with the key");
    assert!(!ok_keyed, "a rewritten chain passed with the key");
    assert!(err.contains("not signed by this audit key"), "{err}");
}
