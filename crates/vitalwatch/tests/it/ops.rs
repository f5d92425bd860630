//! Running it like a service (issue 15): a real Prometheus (Debian's) scraping `serve` over
//! HTTPS with a metrics token, `promtool` on a scrape and on the shipped rules, the Grafana
//! dashboard's metric names against a live scrape, and schemathesis against the OpenAPI
//! document of a live server.

use crate::support::{
    Guarded, Server, ServerOptions, WAIT, free_port, https_agent, poll_until, run_with_stdin,
};
use serde_json::Value;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn token(dir: &Path, role: &str, name: &str, extra: &[&str]) -> String {
    let mut args = vec!["tokens", "create", "--role", role, "--name", name];
    args.extend_from_slice(extra);
    let output = run_with_stdin(dir, &args, "");
    assert!(output.status.success(), "{output:?}");
    String::from_utf8(output.stdout).unwrap().trim().to_owned()
}

/// GET with an optional bearer token; (status, body text).
fn get_with(agent: &ureq::Agent, url: &str, bearer: Option<&str>) -> (u16, String) {
    let mut request = ureq::http::Request::builder().method("GET").uri(url);
    if let Some(bearer) = bearer {
        request = request.header("Authorization", format!("Bearer {bearer}"));
    }
    let mut response = agent
        .run(request.body(Vec::new()).unwrap())
        .expect("HTTP request failed at the transport");
    let status = response.status().as_u16();
    (
        status,
        response.body_mut().read_to_string().unwrap_or_default(),
    )
}

fn post_reading(agent: &ureq::Agent, server: &Server, bearer: &str, body: &str) -> u16 {
    let request = ureq::http::Request::builder()
        .method("POST")
        .uri(server.url("/api/telemetry"))
        .header("Authorization", format!("Bearer {bearer}"))
        .header("Content-Type", "application/json")
        .body(body.as_bytes().to_vec())
        .unwrap();
    agent.run(request).unwrap().status().as_u16()
}

/// The value of one series (`name{labels}` exactly as exported), if present.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|value| value.trim().parse().ok())
}

/// Sends a plaintext HTTP request to a TLS port and reads until the server closes.
fn plaintext_hello(addr: &std::net::SocketAddr) {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    let _ = stream.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n");
    let mut sink = Vec::new();
    let _ = stream.read_to_end(&mut sink);
}

/// The metric family names of an exposition (from its samples).
fn exported_names(text: &str) -> BTreeSet<String> {
    text.lines()
        .filter(|line| !line.starts_with('#') && !line.trim().is_empty())
        .filter_map(|line| line.split(['{', ' ']).next())
        .map(str::to_owned)
        .collect()
}

/// Every label name and value of an exposition.
fn labels(text: &str) -> Vec<(String, String)> {
    let mut found = Vec::new();
    for line in text.lines().filter(|line| !line.starts_with('#')) {
        let Some(open) = line.find('{') else { continue };
        let Some(close) = line.rfind('}') else {
            continue;
        };
        for pair in line[open + 1..close].split(',') {
            if let Some((name, value)) = pair.split_once('=') {
                found.push((name.to_owned(), value.trim_matches('"').to_owned()));
            }
        }
    }
    found
}

/// The metric names a PromQL expression reads: identifiers that are not functions,
/// keywords, label names (inside braces or `by (...)`) or numbers.
fn promql_metrics(expr: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut chars = expr.char_indices().peekable();
    let mut depth_braces = 0;
    let mut after_grouping = false;
    let mut in_grouping = false;
    let mut in_string = false;
    while let Some((start, c)) = chars.next() {
        if in_string {
            in_string = c != '"';
            continue;
        }
        match c {
            '"' => in_string = true,
            '{' => depth_braces += 1,
            '}' => depth_braces -= 1,
            '[' => {
                // A range: skip to its end.
                for (_, c) in chars.by_ref() {
                    if c == ']' {
                        break;
                    }
                }
            }
            '(' if after_grouping => {
                in_grouping = true;
                after_grouping = false;
            }
            ')' if in_grouping => in_grouping = false,
            c if c.is_ascii_alphabetic() || c == '_' => {
                let mut end = start + c.len_utf8();
                while let Some(&(i, c)) = chars.peek() {
                    if c.is_ascii_alphanumeric() || c == '_' || c == ':' {
                        end = i + c.len_utf8();
                        chars.next();
                    } else {
                        break;
                    }
                }
                let word = &expr[start..end];
                let next = expr[end..].trim_start().chars().next();
                let keyword = [
                    "by",
                    "without",
                    "bool",
                    "on",
                    "ignoring",
                    "group_left",
                    "group_right",
                    "and",
                    "or",
                    "unless",
                    "offset",
                ]
                .contains(&word);
                if matches!(word, "by" | "without" | "on" | "ignoring") {
                    after_grouping = true;
                }
                let aggregation = [
                    "sum",
                    "min",
                    "max",
                    "avg",
                    "count",
                    "stddev",
                    "stdvar",
                    "topk",
                    "bottomk",
                    "quantile",
                    "count_values",
                    "group",
                ]
                .contains(&word);
                let function = next == Some('(') || aggregation;
                if !keyword && !function && depth_braces == 0 && !in_grouping {
                    names.insert(word.to_owned());
                }
            }
            _ => {}
        }
    }
    names
}

/// A histogram's `_bucket`, `_count` and `_sum` series belong to its family.
fn family(name: &str, exported: &BTreeSet<String>) -> bool {
    exported.contains(name)
        || ["_bucket", "_count", "_sum"].iter().any(|suffix| {
            name.strip_suffix(suffix).is_some_and(|base| {
                exported
                    .iter()
                    .any(|e| e.starts_with(base) && e.ends_with(suffix))
            })
        })
}

fn promtool(args: &[&str], stdin: Option<&str>) -> (bool, String) {
    let mut command = Command::new("promtool");
    command
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = command
        .spawn()
        .expect("running promtool (scripts/test installs it)");
    if let Some(text) = stdin {
        use std::io::Write;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(text.as_bytes())
            .unwrap();
    }
    let output = child.wait_with_output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), text)
}

#[test]
fn promtool_checks_and_unit_tests_the_shipped_rules() {
    let dir = repo_root().join("deploy/prometheus");
    let rules = dir.join("vitalwatch.rules.yml");
    let (ok, text) = promtool(&["check", "rules", rules.to_str().unwrap()], None);
    assert!(ok, "{text}");
    assert!(text.contains("SUCCESS"), "{text}");
    let tests = dir.join("vitalwatch.rules.test.yml");
    let (ok, text) = promtool(&["test", "rules", tests.to_str().unwrap()], None);
    assert!(ok, "{text}");
    assert!(text.contains("SUCCESS"), "{text}");
}

/// One live server for the exposition tests: HTTPS, no trusted loopback; a metrics token, an
/// admin token and two devices' tokens; some readings stored, one duplicate, one refused.
struct Live {
    _dir: tempfile::TempDir,
    server: Server,
    agent: ureq::Agent,
    metrics_token: String,
    admin_token: String,
    stored: u64,
}

fn live() -> Live {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_secure(ServerOptions::new(dir.path()));
    let agent = https_agent(&server.data_dir);
    let metrics_token = token(dir.path(), "metrics", "prometheus", &[]);
    let admin_token = token(dir.path(), "admin", "ops", &[]);
    let mut stored = 0;
    for device in ["BED_SECRET_41", "BED_SECRET_42"] {
        let device_token = token(dir.path(), "device", device, &["--device", device]);
        for seq in 0..10 {
            let body = format!(
                r#"{{"device_id":"{device}","seq":{seq},"heart_rate":{},"body_temp":36.8,"patient_name":"Jane Doe"}}"#,
                70 + seq
            );
            assert_eq!(post_reading(&agent, &server, &device_token, &body), 200);
            stored += 1;
        }
        // A redelivery (the same seq), and a reading the decoder refuses.
        let again =
            format!(r#"{{"device_id":"{device}","seq":0,"heart_rate":70,"body_temp":36.8}}"#);
        assert_eq!(post_reading(&agent, &server, &device_token, &again), 200);
        let bad = format!(r#"{{"device_id":"{device}","heart_rate":"fast"}}"#);
        let status = post_reading(&agent, &server, &device_token, &bad);
        assert!((400..500).contains(&status), "{status}");
    }
    Live {
        _dir: dir,
        server,
        agent,
        metrics_token,
        admin_token,
        stored,
    }
}

#[test]
fn the_exposition_is_valid_labels_hold_no_ids_and_the_dashboard_and_rules_name_real_metrics() {
    let live = live();
    let url = live.server.url("/metrics");
    // The metrics role reads metrics and nothing else; no token, no metrics.
    assert_eq!(get_with(&live.agent, &url, None).0, 401);
    let (status, _) = get_with(
        &live.agent,
        &live.server.url("/api/devices"),
        Some(&live.metrics_token),
    );
    assert_eq!(status, 403);
    let (status, text) = get_with(&live.agent, &url, Some(&live.metrics_token));
    assert_eq!(status, 200, "{text}");

    // A scraper asking for OpenMetrics (as Prometheus does) gets OpenMetrics 1.0; the real
    // Prometheus scrape below parses it.
    let request = ureq::http::Request::builder()
        .uri(&url)
        .header("Authorization", format!("Bearer {}", live.metrics_token))
        .header(
            "Accept",
            "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5",
        )
        .body(Vec::new())
        .unwrap();
    let mut response = live.agent.run(request).unwrap();
    assert_eq!(
        response.headers()["content-type"],
        "application/openmetrics-text; version=1.0.0; charset=utf-8"
    );
    let openmetrics = response.body_mut().read_to_string().unwrap();
    assert!(openmetrics.ends_with("# EOF\n"), "{openmetrics}");
    assert!(
        openmetrics.contains("# TYPE vitalwatch_readings_stored counter\n"),
        "{openmetrics}"
    );
    assert!(!openmetrics.contains("\n\n"), "{openmetrics}");

    // Plaintext HTTP to the HTTPS port: a TLS failure of the api listener, reason plaintext.
    let failures = |text: &str| {
        sample(
            text,
            "vitalwatch_tls_handshake_failures_total{listener=\"api\",reason=\"plaintext\"}",
        )
    };
    let before = failures(&text);
    plaintext_hello(&live.server.api);
    let after = poll_until(WAIT, || {
        let (_, text) = get_with(&live.agent, &url, Some(&live.metrics_token));
        failures(&text).filter(|n| *n > before.unwrap_or(0.0))
    });
    assert!(after.is_some(), "no plaintext failure counted");
    // This scrape's own connection is open on the api listener.
    let (_, text) = get_with(&live.agent, &url, Some(&live.metrics_token));
    let open = sample(&text, "vitalwatch_connections_open{listener=\"api\"}");
    assert!(open.is_some_and(|n| n >= 1.0), "{text}");
    for series in [
        "vitalwatch_devices_connected",
        "vitalwatch_connections_open{listener=\"mqtts\"}",
        "vitalwatch_webhook_deliveries_total{outcome=\"delivered\"}",
        "vitalwatch_tls_handshake_failures_total{listener=\"mqtts\",reason=\"no_client_cert\"}",
    ] {
        assert!(sample(&text, series).is_some(), "{series} missing:\n{text}");
    }

    // /health's count and the exported counter are the same number.
    let (_, health) = get_with(
        &live.agent,
        &live.server.url("/health"),
        Some(&live.admin_token),
    );
    let health: Value = serde_json::from_str(&health).unwrap();
    assert_eq!(health["readings"]["stored"].as_u64(), Some(live.stored));
    let line = format!(
        "vitalwatch_readings_stored_total{{transport=\"http\"}} {}",
        live.stored
    );
    assert!(text.contains(&line), "{line} not in\n{text}");
    assert!(
        text.contains("vitalwatch_readings_duplicate_total{transport=\"http\"} 2"),
        "{text}"
    );
    assert!(
        text.contains(
            "vitalwatch_readings_rejected_total{transport=\"http\",reason=\"wrong_type\"} 2"
        ),
        "{text}"
    );
    for histogram in [
        "vitalwatch_commit_seconds",
        "vitalwatch_commit_batch_size",
        "vitalwatch_ack_seconds",
    ] {
        let count = text
            .lines()
            .find(|l| l.starts_with(&format!("{histogram}_count")))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|n| n.parse::<f64>().ok());
        assert!(
            count.is_some_and(|n| n >= 1.0),
            "{histogram}: {count:?}\n{text}"
        );
    }
    assert!(text.contains("process_resident_memory_bytes"), "{text}");

    // No device id or patient data anywhere in the exposition, and only known label names.
    for secret in ["BED_SECRET", "Jane", "Doe"] {
        assert!(!text.contains(secret), "{secret} in the exposition");
    }
    let allowed = [
        "transport",
        "reason",
        "listener",
        "priority",
        "condition",
        "certificate",
        "outcome",
        "version",
        "le",
        "quantile",
    ];
    for (name, value) in labels(&text) {
        assert!(allowed.contains(&name.as_str()), "label {name}={value}");
    }

    // promtool reads it as valid Prometheus text (its lint findings are printed, not fatal).
    let (ok, report) = promtool(&["check", "metrics"], Some(&text));
    assert!(ok || !report.contains("error"), "{report}");
    println!(
        "promtool check metrics: {}",
        if report.trim().is_empty() {
            "clean"
        } else {
            report.trim()
        }
    );

    // Every metric the dashboard and the rules read is exported.
    let exported = exported_names(&text);
    let dashboard: Value = serde_json::from_str(
        &std::fs::read_to_string(repo_root().join("deploy/grafana/vitalwatch.json")).unwrap(),
    )
    .unwrap();
    let mut expressions = Vec::new();
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().unwrap() {
            expressions.push(target["expr"].as_str().unwrap().to_owned());
        }
    }
    assert!(expressions.len() >= 6);
    let rules = std::fs::read_to_string(repo_root().join("deploy/prometheus/vitalwatch.rules.yml"))
        .unwrap();
    expressions.extend(
        rules
            .lines()
            .filter_map(|l| l.trim().strip_prefix("expr: "))
            .map(str::to_owned),
    );
    let mut checked = 0;
    for expr in &expressions {
        for name in promql_metrics(expr) {
            if name == "up" {
                continue; // Prometheus's own, per target.
            }
            assert!(
                family(&name, &exported),
                "{name} (in `{expr}`) is not exported:\n{exported:?}"
            );
            checked += 1;
        }
    }
    assert!(checked >= 15, "{checked}");
}

#[test]
fn a_real_prometheus_scrapes_serve_over_https_with_a_metrics_token() {
    let live = live();
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, &live.metrics_token).unwrap();
    let port = free_port();
    let config = dir.path().join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: vitalwatch\n    scheme: https\n    authorization:\n      type: Bearer\n      credentials_file: {}\n    tls_config:\n      ca_file: {}\n    static_configs:\n      - targets: ['{}']\n",
            token_file.display(),
            live.server.data_dir.join("certs/ca.crt").display(),
            live.server.api,
        ),
    )
    .unwrap();
    let _prometheus = Guarded::spawn(
        Command::new("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("tsdb").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.path().join("prometheus.log")).unwrap()),
    );
    let plain = crate::support::agent();
    let query = |promql: &str| -> Option<f64> {
        let url = format!(
            "http://127.0.0.1:{port}/api/v1/query?query={}",
            promql
                .bytes()
                .map(|b| if b.is_ascii_alphanumeric() {
                    (b as char).to_string()
                } else {
                    format!("%{b:02X}")
                })
                .collect::<String>()
        );
        // Prometheus may not listen yet: a refused connection is "no answer yet".
        let mut response = plain.get(&url).call().ok()?;
        let answer: Value = response.body_mut().read_json().ok()?;
        answer["data"]["result"][0]["value"][1]
            .as_str()
            .and_then(|v| v.parse().ok())
    };
    let up = poll_until(WAIT, || {
        query("up{job=\"vitalwatch\"}").filter(|v| *v == 1.0)
    });
    assert_eq!(
        up,
        Some(1.0),
        "target not up: {}",
        std::fs::read_to_string(dir.path().join("prometheus.log")).unwrap_or_default()
    );
    let stored = poll_until(WAIT, || {
        query("sum(vitalwatch_readings_stored_total)").filter(|v| *v == live.stored as f64)
    });
    assert_eq!(stored, Some(live.stored as f64));
    let acks = query("sum(vitalwatch_ack_seconds_count{transport=\"http\"})").unwrap_or(0.0);
    assert!(acks >= live.stored as f64, "{acks}");
    let commits = query("sum(vitalwatch_commit_batch_size_sum)").unwrap_or(0.0);
    assert!(commits >= live.stored as f64, "{commits}");
    let p99 = query("histogram_quantile(0.99, sum by (le) (vitalwatch_commit_seconds_bucket))");
    assert!(p99.is_some_and(|v| v > 0.0), "{p99:?}");
    println!(
        "prometheus: up=1, stored={} ack_count={acks} commit_p99={:?}s",
        live.stored, p99
    );
}

/// The number after `label` on a line of schemathesis's summary (`Tested: 48`).
fn summary_count(text: &str, label: &str) -> Option<usize> {
    text.lines().find_map(|line| {
        let rest = line.trim().strip_prefix(label)?.trim();
        rest.split(|c: char| !c.is_ascii_digit())
            .next()?
            .parse()
            .ok()
    })
}

#[test]
fn schemathesis_finds_no_server_error_and_every_answer_conforms() {
    let live = live();
    let schema = live.server.url("/api/openapi.json");
    let ca = live.server.data_dir.join("certs/ca.crt");
    // The live stream never ends while its caller may read it, so with the admin token it is
    // left out (its own tests, api::live, cover it); without a token it answers 401 at once.
    for (what, bearer, excluded) in [
        ("admin token", Some(live.admin_token.as_str()), 1),
        ("no token", None, 0),
    ] {
        let mut command = Command::new("schemathesis");
        command
            .args(["run", &schema, "--url", &live.server.url("")])
            .arg(format!("--tls-verify={}", ca.display()))
            .args([
                "--checks",
                "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance,response_headers_conformance",
                "--max-examples",
                "5",
                "--workers",
                "1",
                "--request-timeout",
                "10",
                "--no-color",
                // Every phase, coverage included. Its hostile paths once ended in a TLS EOF
                // with no HTTP answer on POST /api/alerts/{id}/verdict: a 404 sent before the
                // body was read, then the socket closed under the unread body (a reset). The
                // lingering close of http_listen (b04b215) reads it first; no longer seen.
                "--phases",
                "examples,coverage,fuzzing,stateful",
            ])
            .env("SCHEMATHESIS_HOOKS", "")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if excluded > 0 {
            command.args(["--exclude-path", "/api/events"]);
        }
        if let Some(bearer) = bearer {
            command.args(["--header", &format!("Authorization: Bearer {bearer}")]);
        }
        let output = command
            .output()
            .expect("running schemathesis (scripts/test installs it)");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        let summary: Vec<&str> = text
            .lines()
            .skip_while(|l| !l.contains("SUMMARY"))
            .collect();
        println!("schemathesis with {what}:\n{}", summary.join("\n"));
        assert!(
            output.status.success(),
            "schemathesis with {what} failed:\n{text}"
        );
        // Every operation schemathesis found in the document was exercised (all but the
        // excluded stream): `Selected: S/T` and `Tested: N` with N = S = T - excluded.
        let selected = summary_count(&text, "Selected:");
        let total = text.lines().find_map(|line| {
            let rest = line.trim().strip_prefix("Selected:")?;
            rest.split('/').nth(1)?.trim().parse::<usize>().ok()
        });
        let tested = summary_count(&text, "Tested:");
        assert!(
            total.is_some_and(|total| total >= 49)
                && selected == total.map(|total| total - excluded)
                && tested == selected,
            "schemathesis with {what} did not exercise every operation \
             (selected {selected:?} of {total:?}, tested {tested:?}):\n{text}"
        );
    }
}
