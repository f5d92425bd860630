//! The anomaly model end to end: `vitalwatch train`, `model info`, `model score`, `serve`
//! scoring readings, hostile model files, and reloads through the API and SIGHUP.

use crate::support::{
    Server, ServerOptions, WAIT, agent, command, get, poll_until, post_json, send, signal,
};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Output;

fn vitalwatch(cwd: &Path, args: &[&str]) -> Output {
    command(cwd)
        .args(args)
        .output()
        .expect("running vitalwatch")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Trains on a small synthetic population (fast in debug builds) and returns the file.
fn train_small(cwd: &Path, output: &Path, seed: u64) -> PathBuf {
    let out = vitalwatch(
        cwd,
        &[
            "train",
            "--output",
            output.to_str().unwrap(),
            "--seed",
            &seed.to_string(),
            "--patients",
            "20",
            "--readings-per-patient",
            "250",
        ],
    );
    assert!(out.status.success(), "train failed: {}", text(&out.stderr));
    output.to_owned()
}

fn sha256_of(path: &Path) -> String {
    let out = vitalwatch(Path::new("."), &["model", "info", path.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    text(&out.stdout)
        .lines()
        .find_map(|line| line.strip_prefix("sha256:"))
        .expect("model info prints the sha256")
        .trim()
        .to_owned()
}

fn health(server: &Server) -> Value {
    let answer = get(&agent(), &server.url("/health"));
    assert_eq!(answer.status, 200);
    answer.json
}

fn audit_rows(data_dir: &Path) -> Vec<(String, String)> {
    crate::support::sql(
        data_dir,
        "SELECT actor, details FROM audit_log WHERE action = 'model.reload' ORDER BY id",
    )
    .lines()
    .map(|line| {
        let (actor, details) = line.split_once('|').expect("two columns");
        (actor.to_owned(), details.to_owned())
    })
    .collect()
}

fn reading(device: &str, n: u64, hr: f64, temp: f64) -> String {
    let ts = 1_767_225_600_000u64 + n * 1000;
    format!(
        r#"{{"device_id":"{device}","timestamp":{ts},"heart_rate":{hr},"body_temp":{temp},"signal_strength":-55,"battery_level":90}}"#
    )
}

#[test]
fn train_info_serve_scores_and_flags_an_unusual_reading() {
    let dir = tempfile::tempdir().unwrap();
    // The default synthetic population and the default model path, <data-dir>/model.json.
    let out = vitalwatch(dir.path(), &["train", "--seed", "7"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let model_path = dir.path().join("data/model.json");
    assert!(
        text(&out.stdout).contains("100 trees"),
        "{}",
        text(&out.stdout)
    );
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = |path: &Path| std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&dir.path().join("data")), 0o700);
        assert_eq!(mode(&model_path), 0o600);
    }

    let info = vitalwatch(dir.path(), &["model", "info", model_path.to_str().unwrap()]);
    assert!(info.status.success(), "{}", text(&info.stderr));
    let info = text(&info.stdout);
    for expected in [
        "heart_rate, body_temp, signal_strength, battery_level",
        "100 trees, sample size 256",
        "contamination 0.005",
        "training rows:  100000",
        "seed:           7",
    ] {
        assert!(
            info.contains(expected),
            "{expected:?} missing from:\n{info}"
        );
    }
    let sha256 = sha256_of(&model_path);

    let server = Server::start(dir.path());
    let health = health(&server);
    assert_eq!(health["model_loaded"], true, "{health}");
    let description = health["model"].as_str().unwrap();
    assert!(
        description.starts_with(&format!(
            "loaded (sha256 {sha256}, 100 trees, features heart_rate"
        )),
        "{description}"
    );

    let agent = agent();
    let normal = post_json(
        &agent,
        &server.url("/api/telemetry"),
        &reading("ward-1", 1, 72.0, 36.8),
    );
    assert_eq!(normal.status, 200, "{}", normal.json);
    assert_eq!(normal.json["anomalies"].as_array().unwrap().len(), 0);

    let fever = post_json(
        &agent,
        &server.url("/api/telemetry"),
        &reading("ward-1", 2, 130.0, 39.4),
    );
    assert_eq!(fever.status, 200, "{}", fever.json);
    let ml: Vec<&Value> = fever.json["anomalies"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["type"] == "ML_ANOMALY")
        .collect();
    assert_eq!(ml.len(), 1, "{}", fever.json);
    assert_eq!(ml[0]["severity"], "CRITICAL");
    let details = ml[0]["details"].as_str().unwrap();
    assert!(
        details.contains("body_temp") || details.contains("heart_rate"),
        "{details}"
    );
    assert!(ml[0]["value"].as_f64().unwrap() > ml[0]["threshold"].as_f64().unwrap());

    // A reading lacking a model feature is stored unscored, never scored on other columns.
    let partial = post_json(
        &agent,
        &server.url("/api/telemetry"),
        r#"{"device_id":"ward-1","timestamp":1767225700000,"heart_rate":72,"body_temp":36.8,"signal_strength":-55}"#,
    );
    assert_eq!(partial.status, 200, "{}", partial.json);

    let listed = get(&agent, &server.url("/api/anomalies?type=ML_ANOMALY"));
    assert_eq!(listed.status, 200);
    assert_eq!(listed.json["count"], 1, "{}", listed.json);
    assert_eq!(listed.json["anomalies"][0]["device_id"], "ward-1");
    assert_eq!(listed.json["anomalies"][0]["details"], details);

    let readings = get(&agent, &server.url("/api/devices/ward-1/readings"));
    assert_eq!(readings.status, 200);
    let readings = readings.json["readings"].as_array().unwrap().clone();
    assert_eq!(readings.len(), 3);
    // Newest first: partial, fever, normal.
    assert!(readings[0]["ml_score"].is_null(), "{}", readings[0]);
    let fever_score = readings[1]["ml_score"].as_f64().expect("fever scored");
    let normal_score = readings[2]["ml_score"].as_f64().expect("normal scored");
    assert!(fever_score > normal_score);

    // The database's own client (sqlite3 or psql) sees the same column.
    assert_eq!(
        server.sql("SELECT COUNT(*) FROM readings WHERE ml_score IS NOT NULL"),
        "2"
    );

    // Train again from the stored readings that raised no anomaly, beside the running server.
    let batch: Vec<String> = (0..300u64)
        .map(|n| {
            let hr = 66.0 + (n % 12) as f64;
            let temp = 36.5 + (n % 5) as f64 / 10.0;
            reading("ward-2", 1000 + n, hr, temp)
        })
        .collect();
    let answer = post_json(
        &agent,
        &server.url("/api/telemetry"),
        &format!("[{}]", batch.join(",")),
    );
    assert_eq!(answer.status, 200);
    let clean = answer.json["results"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["anomalies"].as_array().unwrap().is_empty())
        .count();
    assert!(clean > 250, "{clean}");
    let out = vitalwatch(
        dir.path(),
        &[
            "train",
            "--from-db",
            "--since",
            "2026-01-01T00:16:00Z",
            "--output",
            "from-db.json",
        ],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains(&format!("training rows:  {clean}\n")),
        "{stdout}"
    );
}

#[test]
fn training_is_deterministic_and_score_prints_one_line_per_row() {
    let dir = tempfile::tempdir().unwrap();
    let first = train_small(dir.path(), &dir.path().join("a.json"), 7);
    let second = train_small(dir.path(), &dir.path().join("b.json"), 7);
    let other = train_small(dir.path(), &dir.path().join("c.json"), 8);
    let bytes = std::fs::read(&first).unwrap();
    assert_eq!(bytes, std::fs::read(&second).unwrap());
    assert_ne!(bytes, std::fs::read(&other).unwrap());

    // The documented contract: --input CSV --output FILE --seed --trees --sample-size.
    let mut csv = String::from("battery_level,heart_rate,body_temp,signal_strength\n");
    for idx in 0..3000u32 {
        let hr = 64 + (idx * 7) % 17;
        let temp = 36.4 + f64::from((idx * 3) % 9) / 10.0;
        let signal = -80 + i64::from((idx * 11) % 30);
        let battery = 20 + (idx * 13) % 80;
        csv.push_str(&format!("{battery},{hr},{temp},{signal}\n"));
    }
    std::fs::write(dir.path().join("train.csv"), &csv).unwrap();
    let out = vitalwatch(
        dir.path(),
        &[
            "train",
            "--input",
            "train.csv",
            "--output",
            "csv.json",
            "--seed",
            "3",
            "--trees",
            "50",
            "--sample-size",
            "128",
        ],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let info = vitalwatch(dir.path(), &["model", "info", "csv.json"]);
    assert!(text(&info.stdout).contains("50 trees, sample size 128"));
    assert!(text(&info.stdout).contains("training rows:  3000"));

    // Columns in another order, an injected anomaly, and a row lacking a feature.
    std::fs::write(
        dir.path().join("score.csv"),
        "heart_rate,body_temp,signal_strength,battery_level\n\
         72,36.8,-60,60\n\
         140,40.1,-60,60\n\
         70,36.7,-62,55\n\
         71,36.9,,50\n",
    )
    .unwrap();
    for model in ["a.json", "csv.json"] {
        let out = vitalwatch(
            dir.path(),
            &["model", "score", "--model", model, "--input", "score.csv"],
        );
        assert!(out.status.success(), "{}", text(&out.stderr));
        let lines: Vec<String> = text(&out.stdout).lines().map(str::to_owned).collect();
        assert_eq!(lines.len(), 4, "{lines:?}");
        let scores: Vec<f64> = lines.iter().map(|l| l.parse().unwrap()).collect();
        assert!(scores[1] > scores[0] && scores[1] > scores[2], "{scores:?}");
        assert!(scores[3].is_nan());
    }

    // A CSV without a column the model needs is refused with its name.
    std::fs::write(dir.path().join("narrow.csv"), "heart_rate\n72\n").unwrap();
    let out = vitalwatch(
        dir.path(),
        &[
            "model",
            "score",
            "--model",
            "a.json",
            "--input",
            "narrow.csv",
        ],
    );
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("body_temp"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn a_labelled_csv_trains_the_random_forest_and_reports_precision_and_recall() {
    let dir = tempfile::tempdir().unwrap();
    let mut csv = String::from("heart_rate,body_temp,signal_strength,battery_level,is_anomaly\n");
    for idx in 0..2000u32 {
        let anomalous = idx % 10 == 0;
        let (hr, temp) = if anomalous {
            (125 + idx % 20, 39.0 + f64::from(idx % 7) / 10.0)
        } else {
            (64 + (idx * 7) % 17, 36.4 + f64::from((idx * 3) % 9) / 10.0)
        };
        let label = u8::from(anomalous);
        csv.push_str(&format!("{hr},{temp},-60,{},{label}\n", 20 + idx % 80));
    }
    std::fs::write(dir.path().join("labelled.csv"), csv).unwrap();
    let out = vitalwatch(
        dir.path(),
        &[
            "train",
            "--input",
            "labelled.csv",
            "--output",
            "rf.json",
            "--label-column",
            "is_anomaly",
            "--rf-trees",
            "20",
        ],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    let line = stdout
        .lines()
        .find(|line| line.starts_with("random forest:"))
        .expect("training reports the random forest");
    assert!(
        line.contains("20 trees, precision 1.000, recall 1.000"),
        "{line}"
    );
}

#[test]
fn hostile_model_files_are_refused_and_serve_runs_on_rules() {
    let dir = tempfile::tempdir().unwrap();
    let good = train_small(dir.path(), &dir.path().join("good.json"), 1);
    let good_text = std::fs::read_to_string(&good).unwrap();
    let mut wrong_version: Value = serde_json::from_str(&good_text).unwrap();
    wrong_version["version"] = 2.into();
    let threshold = {
        let value: Value = serde_json::from_str(&good_text).unwrap();
        value["iforest"]["threshold"].to_string()
    };
    let nan_threshold = good_text.replacen(
        &format!("\"threshold\":{threshold},\"contamination\""),
        "\"threshold\":NaN,\"contamination\"",
        1,
    );
    assert_ne!(
        nan_threshold, good_text,
        "the edit must hit the forest's threshold"
    );
    let random: Vec<u8> = (0u32..4096)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();

    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "truncated",
            good_text.as_bytes()[..good_text.len() / 2].to_vec(),
            "truncated",
        ),
        (
            "wrong-version",
            wrong_version.to_string().into_bytes(),
            "version 2",
        ),
        (
            "nan-threshold",
            nan_threshold.into_bytes(),
            "not valid JSON",
        ),
        ("random", random, "refused"),
    ];
    let mut paths = Vec::new();
    for (name, bytes, reason) in cases {
        let path = dir.path().join(format!("{name}.json"));
        std::fs::write(&path, bytes).unwrap();
        paths.push((path, reason.to_owned()));
    }
    // A file that claims 2 GB (sparse): refused from its length, never read.
    let huge = dir.path().join("huge.json");
    std::fs::File::create(&huge)
        .unwrap()
        .set_len(2 * 1024 * 1024 * 1024)
        .unwrap();
    paths.push((huge, "above the limit".to_owned()));

    for (case_idx, (path, reason)) in paths.iter().enumerate() {
        let out = vitalwatch(dir.path(), &["model", "info", path.to_str().unwrap()]);
        let stderr = text(&out.stderr);
        assert!(!out.status.success(), "{} was accepted", path.display());
        assert!(
            stderr.contains(reason.as_str()),
            "{}: {stderr}",
            path.display()
        );
        assert!(!stderr.contains("panicked"), "{stderr}");

        let server = Server::start_with(ServerOptions {
            args: vec!["--model".to_owned(), path.to_str().unwrap().to_owned()],
            ..ServerOptions::new(dir.path())
        });
        let health = health(&server);
        assert_eq!(health["status"], "healthy");
        assert_eq!(health["model_loaded"], false);
        let description = health["model"].as_str().unwrap();
        assert!(
            description.starts_with("unavailable (") && description.contains(reason.as_str()),
            "{description}"
        );
        // Rules alone still flag an out-of-range reading.
        let answer = post_json(
            &agent(),
            &server.url("/api/telemetry"),
            &reading("rules-only", case_idx as u64, 130.0, 39.4),
        );
        assert_eq!(answer.status, 200);
        let kinds: Vec<&str> = answer.json["anomalies"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a["type"].as_str().unwrap())
            .collect();
        assert!(
            kinds.contains(&"OUT_OF_RANGE_HR") && !kinds.contains(&"ML_ANOMALY"),
            "{kinds:?}"
        );
    }

    // No file at all: the default path, relative to the working directory like --data-dir.
    let server = Server::start(dir.path());
    let health = health(&server);
    assert_eq!(health["model_loaded"], false);
    assert_eq!(
        health["model"],
        "unavailable (no model file at data/model.json)"
    );
}

#[test]
fn reload_through_the_api_and_sighup_is_audited_and_a_refused_reload_keeps_the_model() {
    let dir = tempfile::tempdir().unwrap();
    let model_path = dir.path().join("data/model.json");
    std::fs::create_dir_all(model_path.parent().unwrap()).unwrap();
    train_small(dir.path(), &model_path, 1);
    let first = sha256_of(&model_path);
    let mut server = Server::start(dir.path());
    let agent = agent();
    assert!(health(&server)["model"].as_str().unwrap().contains(&first));

    // A new model, then POST /api/model/reload.
    train_small(dir.path(), &model_path, 2);
    let second = sha256_of(&model_path);
    assert_ne!(first, second);
    let answer = send(&agent, "POST", &server.url("/api/model/reload"), None, b"");
    assert_eq!(answer.status, 200, "{}", answer.json);
    assert_eq!(answer.json["sha256"], second.as_str());
    assert_eq!(answer.json["previous_sha256"], first.as_str());
    let health_now = health(&server);
    assert_eq!(health_now["model_loaded"], true);
    assert!(health_now["model"].as_str().unwrap().contains(&second));

    // A damaged file is refused; the previous model stays in use.
    std::fs::write(
        &model_path,
        b"{\"format\":\"vitalwatch-model\",\"version\":1,",
    )
    .unwrap();
    let answer = send(&agent, "POST", &server.url("/api/model/reload"), None, b"");
    assert_eq!(answer.status, 422, "{}", answer.json);
    assert_eq!(answer.json["error"], "model_refused");
    let detail = answer.json["detail"].as_str().unwrap();
    assert!(
        detail.contains("truncated") && detail.contains(&second),
        "{detail}"
    );
    assert!(health(&server)["model"].as_str().unwrap().contains(&second));
    let scored = post_json(
        &agent,
        &server.url("/api/telemetry"),
        &reading("ward-2", 1, 72.0, 36.8),
    );
    assert_eq!(scored.status, 200);
    let readings = get(&agent, &server.url("/api/devices/ward-2/readings"));
    assert!(
        readings.json["readings"][0]["ml_score"].is_f64(),
        "{}",
        readings.json
    );

    // SIGHUP reloads the file too.
    train_small(dir.path(), &model_path, 3);
    let third = sha256_of(&model_path);
    signal(server.pid(), "HUP");
    let reloaded = poll_until(WAIT, || {
        health(&server)["model"].as_str().unwrap().contains(&third)
    });
    assert!(
        reloaded.is_some(),
        "SIGHUP did not reload: {}",
        server.log()
    );
    assert!(server.is_running());

    // The reload's audit row is queued after the swap; wait (bounded) for its commit.
    let mut rows = Vec::new();
    let _ = poll_until(WAIT, || {
        rows = audit_rows(&server.data_dir);
        rows.len() >= 3
    });
    assert_eq!(rows.len(), 3, "{rows:?}");
    assert!(rows[0].0.starts_with("loopback:127.0.0.1"), "{rows:?}");
    assert!(rows[0].1.contains("\"outcome\":\"loaded\"") && rows[0].1.contains(&second));
    assert!(rows[1].1.contains("\"outcome\":\"refused\"") && rows[1].1.contains(&second));
    assert_eq!(rows[2].0, "system:sighup");
    assert!(rows[2].1.contains("\"outcome\":\"loaded\"") && rows[2].1.contains(&third));
    assert!(server.terminate());
}

#[test]
fn clinicians_verdicts_on_alerts_train_the_random_forest() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start(dir.path());
    let agent = agent();
    let url = server.url("/api/telemetry");
    // Calm patients, a tachycardia episode (a true alarm) and a bradycardia one (a false alarm:
    // say a probe that slipped).
    for n in 0..150 {
        for device in ["calm-1", "calm-2"] {
            let hr = 64.0 + (n % 17) as f64;
            assert_eq!(
                post_json(&agent, &url, &reading(device, n, hr, 36.7)).status,
                200
            );
        }
    }
    for n in 0..25 {
        post_json(
            &agent,
            &url,
            &reading("tachy-1", n, 150.0 + (n % 5) as f64, 38.9),
        );
        post_json(&agent, &url, &reading("brady-1", n, 35.0, 36.6));
    }
    let alerts = get(&agent, &server.url("/api/alerts")).json;
    let id_of = |device: &str| {
        alerts["alerts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["device_id"] == device)
            .unwrap_or_else(|| panic!("no alert for {device}: {alerts}"))["id"]
            .as_i64()
            .unwrap()
    };
    let verdict = |id: i64, verdict: &str| {
        send(
            &agent,
            "POST",
            &server.url(&format!("/api/alerts/{id}/verdict")),
            Some("application/json"),
            format!(r#"{{"by":"dr.ward","verdict":"{verdict}"}}"#).as_bytes(),
        )
    };
    assert_eq!(verdict(id_of("tachy-1"), "true_alarm").status, 200);
    assert_eq!(verdict(id_of("brady-1"), "false_alarm").status, 200);
    assert_eq!(verdict(id_of("brady-1"), "maybe").status, 422);
    assert_eq!(verdict(999_999, "true_alarm").status, 404);
    assert!(server.terminate(), "{}", server.log());

    let out = vitalwatch(
        dir.path(),
        &[
            "train",
            "--from-alerts",
            "--output",
            "rf.json",
            "--rf-trees",
            "20",
            "--trees",
            "20",
        ],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(
        stdout
            .lines()
            .any(|l| l.starts_with("random forest:") && l.contains("precision")),
        "{stdout}"
    );
    let out = vitalwatch(dir.path(), &["model", "info", "rf.json"]);
    assert!(out.status.success(), "{}", text(&out.stderr));

    let verdicts = crate::support::sql(
        &dir.path().join("data"),
        "SELECT actor || ':' || details FROM audit_log WHERE action = 'alert.verdict' ORDER BY id",
    );
    assert_eq!(verdicts.lines().count(), 2, "{verdicts}");
    assert!(
        verdicts.contains("dr.ward:") && verdicts.contains("false_alarm"),
        "{verdicts}"
    );
}
