//! The CLI's security chores (issue 19, findings 10 and 14): `certs` audits to the store of
//! the server whose certificates it changes, wherever it is run from, never to a stray
//! database; and the data directory is 0700 whoever created it.

use crate::support::run;
use std::os::unix::fs::PermissionsExt;

fn audited(data_dir: &std::path::Path, action: &str) -> Vec<String> {
    let conn = rusqlite::Connection::open(data_dir.join("anomalies.db")).unwrap();
    let mut stmt = conn
        .prepare("SELECT target FROM audit_log WHERE action = ?1 ORDER BY id")
        .unwrap();
    stmt.query_map([action], |row| row.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

#[test]
fn certs_audits_to_the_servers_store_from_any_directory_and_never_to_a_stray_one() {
    let home = tempfile::tempdir().unwrap();
    let elsewhere = tempfile::tempdir().unwrap();
    for dir in [&home, &elsewhere] {
        crate::support::sqlite_only(dir.path(), "a stray SQLite file is what must not appear");
    }
    let data = home.path().join("data");
    let certs = data.join("certs");
    // `certs init` creates the data directory (for the certs) and says it creates the store.
    let (ok, _, stderr) = run(home.path(), &["certs", "init"]);
    assert!(ok, "{stderr}");
    assert!(stderr.contains("creating a new database"), "{stderr}");
    let mode = std::fs::metadata(&data).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o700, "data/ is {mode:o}");
    // From another directory, naming only the certs dir: the trail is the server's.
    let certs_arg = certs.to_str().unwrap();
    let (ok, _, stderr) = run(
        elsewhere.path(),
        &["certs", "device", "bed-1", "--certs-dir", certs_arg],
    );
    assert!(ok, "{stderr}");
    let (ok, _, stderr) = run(
        elsewhere.path(),
        &["certs", "revoke", "bed-1", "--certs-dir", certs_arg],
    );
    assert!(ok, "{stderr}");
    assert_eq!(audited(&data, "certificate.issue"), ["bed-1"]);
    assert_eq!(audited(&data, "certificate.revoke"), ["bed-1"]);
    assert!(
        !elsewhere.path().join("data").exists(),
        "a stray data directory"
    );
    // A data dir without a database is refused, not silently created.
    let empty = elsewhere.path().join("empty");
    let (ok, _, stderr) = run(
        elsewhere.path(),
        &[
            "certs",
            "device",
            "bed-2",
            "--certs-dir",
            certs_arg,
            "--data-dir",
            empty.to_str().unwrap(),
        ],
    );
    assert!(!ok);
    assert!(stderr.contains("no database at"), "{stderr}");
    assert!(!empty.join("anomalies.db").exists());
}
