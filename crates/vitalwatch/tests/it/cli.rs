//! The command line: help for every option, the default config, refusals with clear messages.

use crate::support::bin;
use std::process::Command;

fn run(args: &[&str], cwd: &std::path::Path) -> (bool, String, String) {
    let output = Command::new(bin())
        .args(args)
        .current_dir(cwd)
        .env_remove("VITALWATCH_DATA_DIR")
        .output()
        .unwrap();
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn every_command_documents_its_options() {
    let dir = tempfile::tempdir().unwrap();
    let expectations: &[(&[&str], &[&str])] = &[
        (&["--help"], &["serve", "devices", "config", "--log-format"]),
        (
            &["serve", "--help"],
            &[
                "--data-dir",
                "--http-addr",
                "--config",
                "--registry-policy",
                "VITALWATCH_DATA_DIR",
            ],
        ),
        (
            &["devices", "--help"],
            &[
                "list",
                "show",
                "register",
                "update",
                "deactivate",
                "reactivate",
            ],
        ),
        (
            &["devices", "register", "--help"],
            &["--patient-label", "--location", "--expected-interval"],
        ),
        (
            &["devices", "update", "--help"],
            &["--clear-patient-label", "--clear-location"],
        ),
        (&["devices", "list", "--help"], &["--data-dir"]),
        (&["config", "--help"], &["default", "show"]),
        (
            &["config", "default", "--help"],
            &["Print the default configuration"],
        ),
    ];
    for (args, needles) in expectations {
        let (ok, out, err) = run(args, dir.path());
        assert!(ok, "{args:?}: {err}");
        for needle in *needles {
            assert!(out.contains(needle), "{args:?} help lacks {needle}:\n{out}");
        }
    }
}

#[test]
fn config_default_prints_a_file_that_loads() {
    let dir = tempfile::tempdir().unwrap();
    let (ok, out, _) = run(&["config", "default"], dir.path());
    assert!(ok);
    assert!(out.contains("[rules]") && out.contains("severity = \"CRITICAL\""));
    std::fs::write(dir.path().join("vw.toml"), &out).unwrap();
    let (ok, shown, err) = run(&["config", "show", "--config", "vw.toml"], dir.path());
    assert!(ok, "{err}");
    assert!(shown.contains("http_addr = \"0.0.0.0:5000\""), "{shown}");
}

#[test]
fn a_bad_config_file_is_refused_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("bad.toml"),
        "[rules]\nheart_rate = { min = 60.0, max = 100.0, severity = \"LOUD\" }\n",
    )
    .unwrap();
    let (ok, _, err) = run(
        &[
            "serve",
            "--config",
            "bad.toml",
            "--http-addr",
            "127.0.0.1:0",
        ],
        dir.path(),
    );
    assert!(!ok);
    assert!(
        err.contains("bad.toml") && err.contains("severity"),
        "{err}"
    );
}

#[test]
fn a_database_from_a_newer_version_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    // Create the database with this version, then pretend a newer one migrated it.
    let (ok, _, err) = run(&["devices", "list"], dir.path());
    assert!(ok, "{err}");
    crate::support::sql(
        &dir.path().join("data"),
        "INSERT INTO refinery_schema_history (version, name, applied_on, checksum) VALUES (99, 'future', '2030-01-01', '0')",
    );
    let (ok, _, err) = run(
        &[
            "serve",
            "--http-addr",
            "127.0.0.1:0",
            "--dashboard-addr",
            "127.0.0.1:0",
            "--mqtts-addr",
            "127.0.0.1:0",
        ],
        dir.path(),
    );
    assert!(!ok);
    assert!(
        err.contains("schema is version 99, newer than this VitalWatch supports"),
        "{err}"
    );
}

#[test]
fn the_data_dir_and_database_are_private() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    crate::support::sqlite_only(dir.path(), "the SQLite file's permissions");
    let (ok, _, err) = run(&["devices", "list", "--data-dir", "private"], dir.path());
    assert!(ok, "{err}");
    let mode = |p: &str| {
        std::fs::metadata(dir.path().join(p))
            .unwrap()
            .permissions()
            .mode()
            & 0o777
    };
    assert_eq!(mode("private"), 0o700);
    assert_eq!(mode("private/anomalies.db"), 0o600);
}
