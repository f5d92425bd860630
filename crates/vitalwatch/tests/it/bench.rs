//! The benchmarks still run: `vitalwatch bench ingest` against the default (HTTPS, trained
//! model) server and Debian's Mosquitto (driven by its rumqttc generator and by Debian's
//! `mosquitto_pub` processes), and `bench http`, each on a tiny load. They report
//! figures; this test asserts only that they ran the whole path and counted what they sent,
//! never a speed.

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
