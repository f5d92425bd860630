//! The benchmarks still run: `vitalwatch bench ingest` against the default (HTTPS, trained
//! model) server and Debian's Mosquitto (driven by its rumqttc generator and by Debian's
//! `mosquitto_pub` processes), and `bench http`, each on a tiny load. They report
//! figures; this test asserts only that they ran the whole path and counted what they sent,
//! never a speed. With `--database postgres://…` (a database on the test cluster) both also
//! run on PostgreSQL beside SQLite: the report has the PostgreSQL rows, their figures parse.

use crate::support::postgres::{Cluster, Database, PASSWORD};
use crate::support::run;

#[test]
fn bench_ingest_runs_the_whole_path_with_its_model_and_the_mosquitto_peer() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let (ok, out, err) = run(
        dir.path(),
        &[
            "bench",
            "ingest",
            "--devices",
            "3",
            "--readings",
            "90",
            "--idle",
            "6",
            "--max-seconds",
            "60",
        ],
    );
    assert!(ok, "bench ingest failed:\n{out}\n{err}");
    assert!(
        out.contains("VitalWatch: broker -> commit -> PUBACK"),
        "{out}"
    );
    assert!(out.contains("Mosquitto: broker -> 1 subscriber"), "{out}");
    assert!(out.contains("ratio VitalWatch / Mosquitto"), "{out}");
    assert!(out.contains("6 of 6 opened"), "{out}");
    // The server's own view comes from its /metrics: its readings were timed and committed.
    let own = out
        .lines()
        .find_map(|line| {
            line.strip_prefix(
                "VitalWatch's own view (its /metrics, timed phase): arrival -> answer ",
            )
        })
        .unwrap_or_else(|| panic!("no own-view line:\n{out}"));
    let figures: Vec<f64> = own
        .split(|c: char| !(c.is_ascii_digit() || c == '.'))
        .filter_map(|word| word.parse().ok())
        .take(3)
        .collect();
    assert!(
        figures.len() == 3 && figures.iter().all(|v| *v > 0.0),
        "the ack mean, readings per commit and commit time are positive: {own}"
    );
    assert!(
        err.contains("training a small one") && out.contains("model written to"),
        "the run trains the model its servers load:\n{out}\n{err}"
    );
}

#[test]
fn bench_ingest_drives_the_load_with_mosquitto_pub_processes() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let (ok, out, err) = run(
        dir.path(),
        &[
            "bench",
            "ingest",
            "--clients",
            "mosquitto_pub",
            "--devices",
            "3",
            "--readings",
            "60",
            "--idle",
            "0",
            "--max-seconds",
            "60",
        ],
    );
    assert!(
        ok,
        "bench ingest --clients mosquitto_pub failed:\n{out}\n{err}"
    );
    assert!(out.contains("mosquitto_pub -l -q 1 clients"), "{out}");
    // Both systems ran and counted every reading: a rate is printed for each, and the
    // ratio table names the peer that was not given.
    for label in [
        "VitalWatch: broker -> commit -> PUBACK",
        "Mosquitto: broker -> 1 subscriber (no store)",
    ] {
        let line = out
            .lines()
            .find(|line| line.starts_with(label))
            .unwrap_or_else(|| panic!("no {label:?} row:\n{out}"));
        let rate: f64 = line[label.len()..]
            .split_whitespace()
            .next()
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no rate in {line:?}"));
        assert!(rate > 0.0, "{line}");
    }
    assert!(out.contains("ratio VitalWatch / Mosquitto"), "{out}");
    assert!(
        out.contains("rumqttd: not measured (pass --rumqttd PATH)"),
        "{out}"
    );
}

#[test]
fn bench_http_runs_against_the_real_server() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let (ok, out, err) = run(
        dir.path(),
        &[
            "bench",
            "http",
            "--readings",
            "200",
            "--clients",
            "2",
            "--batch",
            "10",
        ],
    );
    assert!(ok, "bench http failed:\n{out}\n{err}");
    assert!(out.contains("readings/s"), "{out}");
}

/// The numbers of a report row after its label (`1234`, `0.45x`), each checked to be a
/// positive finite number.
fn row_numbers(row: &str, label: &str) -> Vec<f64> {
    let numbers: Vec<f64> = row[label.len()..]
        .split_whitespace()
        .map(|word| {
            word.trim_end_matches('x')
                .parse::<f64>()
                .unwrap_or_else(|_| panic!("{word:?} in {row:?} is not a number"))
        })
        .collect();
    assert!(
        !numbers.is_empty() && numbers.iter().all(|n| n.is_finite() && *n > 0.0),
        "{row}"
    );
    numbers
}

/// `bench` leaves no scratch schema behind on the database it was given.
fn assert_no_scratch_left(database: &Database<'_>) {
    assert_eq!(
        database.sql("SELECT COUNT(*) FROM pg_namespace WHERE nspname LIKE 'vitalwatch_bench%'"),
        "0"
    );
}

#[test]
fn bench_http_with_a_database_runs_the_main_four_on_postgres_beside_sqlite() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let database = Cluster::shared().database();
    let url = database.url();
    let (ok, out, err) = run(
        dir.path(),
        &[
            "bench",
            "http",
            "--readings",
            "100",
            "--clients",
            "2",
            "--batch",
            "10",
            "--database",
            &url,
        ],
    );
    assert!(ok, "bench http --database failed:\n{out}\n{err}");
    assert!(
        !format!("{out}{err}").contains(PASSWORD),
        "the password leaked"
    );
    // The SQLite table's first four runs, then the PostgreSQL section with the same four.
    let sqlite_labels: Vec<&str> = out
        .lines()
        .skip_while(|line| !line.starts_with("run "))
        .skip(1)
        .take(4)
        .map(|row| row.split("  ").next().unwrap_or_default().trim_end())
        .collect();
    assert_eq!(sqlite_labels.len(), 4, "{out}");
    let postgres: Vec<&str> = out
        .lines()
        .skip_while(|line| !line.starts_with("PostgreSQL"))
        .collect();
    assert!(!postgres.is_empty(), "no PostgreSQL section:\n{out}");
    for label in &sqlite_labels {
        let row = postgres
            .iter()
            .find(|row| row.starts_with(label))
            .unwrap_or_else(|| panic!("no PostgreSQL row {label:?}:\n{out}"));
        // readings/s and its ratios (vs the naive run, vs SQLite).
        assert!(row_numbers(row, label).len() >= 2, "{row}");
    }
    // The bare server's limits on the same rows.
    for kind in ["COPY", "INSERT"] {
        let row = postgres
            .iter()
            .find(|row| row.contains(kind))
            .unwrap_or_else(|| panic!("no bare {kind} row:\n{out}"));
        assert!(
            row.split_whitespace()
                .any(|word| word.parse::<f64>().is_ok_and(|n| n > 0.0)),
            "{row}"
        );
    }
    assert_no_scratch_left(&database);
}

#[test]
fn bench_ingest_with_a_database_runs_the_mqtt_path_on_postgres_beside_sqlite() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let database = Cluster::shared().database();
    let url = database.url();
    let (ok, out, err) = run(
        dir.path(),
        &[
            "bench",
            "ingest",
            "--devices",
            "2",
            "--readings",
            "40",
            "--idle",
            "0",
            "--no-mosquitto",
            "--max-seconds",
            "60",
            "--database",
            &url,
        ],
    );
    assert!(ok, "bench ingest --database failed:\n{out}\n{err}");
    assert!(
        !format!("{out}{err}").contains(PASSWORD),
        "the password leaked"
    );
    let sqlite = out
        .lines()
        .find(|line| line.starts_with("VitalWatch: broker -> commit -> PUBACK"))
        .unwrap_or_else(|| panic!("no SQLite row:\n{out}"));
    let postgres = out
        .lines()
        .find(|line| line.contains("PostgreSQL") && line.contains("readings/s"))
        .unwrap_or_else(|| panic!("no PostgreSQL row:\n{out}"));
    // Both rates, and the ratio, are numbers.
    for row in [sqlite, postgres] {
        let rates: Vec<f64> = row
            .split_whitespace()
            .map(|word| word.trim_end_matches([',', ';', 'x']))
            .filter_map(|word| word.parse().ok())
            .collect();
        assert!(
            !rates.is_empty() && rates.iter().all(|n: &f64| n.is_finite() && *n >= 0.0),
            "{row}"
        );
        assert!(rates[0] > 0.0, "no readings/s in {row}");
    }
    assert!(
        postgres.split_whitespace().any(|word| word
            .strip_suffix('x')
            .is_some_and(|ratio| ratio.parse::<f64>().is_ok_and(|n| n > 0.0))),
        "no PostgreSQL / SQLite ratio in {postgres}"
    );
    assert_no_scratch_left(&database);
}
