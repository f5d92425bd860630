//! Several `vitalwatch serve` nodes on one PostgreSQL database (issue 14, "every node sees
//! everything"; issue 19, revocation on any node): live events cross nodes (an SSE stream and
//! MQTT consumers on another node see a reading, the retained alert state is on every node's
//! broker), a sign-in and a token revocation take effect on every node, a device revoked
//! through the API on one node is disconnected and refused on the others, and failed logins
//! spread over nodes count together. Each node has a data directory and a certificates
//! directory of its own (copies of one CA), so whatever crosses nodes crosses through the
//! database, not through shared files. Real clients: curl, mosquitto_sub, Eclipse Paho, ureq.

use crate::mqtt::{DeviceCert, client_script, python};
use crate::support::postgres::{Cluster, Database};
use crate::support::{Guarded, Lines, Server, ServerOptions, https_agent, run_with_stdin};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Nodes on one database, each with its own directories.
struct Nodes {
    servers: Vec<Server>,
    root: tempfile::TempDir,
    url: String,
}

impl Nodes {
    /// `n` nodes on `database`: HTTPS without trusted loopback when `secure`, else plaintext
    /// HTTP with loopback trusted (every role, as most tests use it).
    fn start(database: &Database<'_>, n: usize, secure: bool) -> Nodes {
        let root = tempfile::tempdir().unwrap();
        let url = database.url();
        let base = root.path().join("pki");
        // One PKI for the cluster, copied to every node (as a deployment mounts one Secret).
        vitalwatch(
            &base,
            &["certs", "init", "--data-dir", "data", "--database", &url],
            "",
        );
        let servers = (1..=n)
            .map(|i| {
                let dir = root.path().join(format!("node{i}"));
                std::fs::create_dir_all(dir.join("data")).unwrap();
                let status = Command::new("cp")
                    .arg("-a")
                    .arg(base.join("data/certs"))
                    .arg(dir.join("data/certs"))
                    .status()
                    .unwrap();
                assert!(status.success());
                let options = ServerOptions {
                    env: vec![
                        ("VITALWATCH_DATABASE_URL".to_owned(), url.clone()),
                        ("VITALWATCH_NODE_ID".to_owned(), format!("node-{i}")),
                    ],
                    ..ServerOptions::with_args(&dir, &["--data-dir", "data"])
                };
                if secure {
                    Server::start_secure(options)
                } else {
                    Server::start_with(options)
                }
            })
            .collect();
        Nodes { servers, root, url }
    }

    fn node(&self, i: usize) -> &Server {
        &self.servers[i - 1]
    }

    fn dir(&self, i: usize) -> PathBuf {
        self.root.path().join(format!("node{i}"))
    }

    /// `vitalwatch ARGS --data-dir data --database URL` in node `i`'s directory.
    fn cli(&self, i: usize, args: &[&str], stdin: &str) -> String {
        let mut args = args.to_vec();
        args.extend_from_slice(&["--data-dir", "data", "--database", &self.url]);
        vitalwatch(&self.dir(i), &args, stdin)
    }

    /// A certificate (`device` or `consumer`) issued in node `i`'s certificates directory.
    fn issue(&self, i: usize, kind: &str, name: &str) -> DeviceCert {
        self.cli(i, &["certs", kind, name], "");
        let devices = self.dir(i).join("data/certs/devices");
        DeviceCert {
            cert: devices.join(format!("{name}.crt")),
            key: devices.join(format!("{name}.key")),
        }
    }

    fn ca(&self) -> PathBuf {
        self.dir(1).join("data/certs/ca.crt")
    }

    fn mqtts_port(&self, i: usize) -> u16 {
        self.node(i).mqtts.expect("the embedded broker runs").port()
    }
}

fn vitalwatch(cwd: &Path, args: &[&str], stdin: &str) -> String {
    std::fs::create_dir_all(cwd).unwrap();
    let output = run_with_stdin(cwd, args, stdin);
    assert!(
        output.status.success(),
        "vitalwatch {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}

/// A reading far out of range: stored, and a high-priority alert at once.
fn reading(device_id: &str, heart_rate: f64) -> String {
    format!(
        r#"{{"device_id":"{device_id}","heart_rate":{heart_rate},"body_temp":36.8,"signal_strength":-60,"battery_level":90}}"#
    )
}

/// A long-lived process whose standard output is read line by line.
struct Watcher {
    _process: Guarded,
    lines: Lines,
}

impl Watcher {
    fn spawn(command: &mut Command) -> Watcher {
        let mut process = Guarded::spawn(command.stdout(Stdio::piped()));
        let lines = process.lines();
        Watcher {
            _process: process,
            lines,
        }
    }

    /// `GET /api/events` on a plaintext node (curl, unbuffered).
    fn sse(server: &Server) -> Watcher {
        Watcher::spawn(Command::new("curl").args(["-sN", &server.url("/api/events")]))
    }

    /// `mosquitto_sub -v -d` with a consumer certificate on node `i`'s broker.
    fn mosquitto_sub(nodes: &Nodes, i: usize, cert: &DeviceCert, filter: &str) -> Watcher {
        Watcher::spawn(
            Command::new("stdbuf")
                .args(["-oL", "mosquitto_sub", "-h", "localhost", "-p"])
                .arg(nodes.mqtts_port(i).to_string())
                .arg("--cafile")
                .arg(nodes.ca())
                .arg("--cert")
                .arg(&cert.cert)
                .arg("--key")
                .arg(&cert.key)
                .args(["-t", filter, "-q", "1", "-v", "-d", "-W", "60"]),
        )
    }

    fn wait_for(&mut self, needle: &str) -> String {
        self.lines
            .find_containing(Duration::from_secs(20), needle)
            .unwrap_or_else(|| panic!("never printed {needle:?}; printed {:?}", self.lines.seen()))
    }
}

#[test]
fn a_reading_and_an_alert_sent_to_one_node_reach_every_nodes_stream_and_broker() {
    let cluster = Cluster::shared();
    let database = cluster.database();
    let nodes = Nodes::start(&database, 3, false);
    let station = nodes.issue(3, "consumer", "station");
    let mut stream = Watcher::sse(nodes.node(2));
    stream.wait_for("event: hello");
    let mut telemetry = Watcher::mosquitto_sub(&nodes, 3, &station, "vitalwatch/telemetry/+");
    telemetry.wait_for("received SUBACK");

    let agent = crate::support::agent();
    let answer = crate::support::post_json(
        &agent,
        &nodes.node(1).url("/api/telemetry"),
        &reading("bed-x1", 150.0),
    );
    assert_eq!(answer.status, 200, "{}", answer.json);

    // Node 2's dashboard stream and node 3's MQTT consumers see node 1's reading.
    let line = stream.wait_for("bed-x1");
    assert!(line.starts_with("data: "), "{line}");
    let event: Value = serde_json::from_str(&line["data: ".len()..]).unwrap();
    assert_eq!(event["heart_rate"], 150.0);
    let line = telemetry.wait_for("vitalwatch/telemetry/bed-x1 ");
    let message: Value = serde_json::from_str(line.split_once(' ').unwrap().1).unwrap();
    assert_eq!(message["heart_rate"], 150.0, "{message}");
    stream.wait_for("event: alert");

    // The alert node 1 raised is retained on every node's broker: a consumer that connects
    // to node 2 (or 3) afterwards gets it at once.
    for i in [2, 3] {
        let mut alerts = Watcher::mosquitto_sub(&nodes, i, &station, "vitalwatch/alerts/#");
        let line = alerts.wait_for("vitalwatch/alerts/bed-x1 ");
        let message: Value = serde_json::from_str(line.split_once(' ').unwrap().1).unwrap();
        assert_eq!(message["device_id"], "bed-x1", "node {i}: {message}");
        assert_eq!(
            message["open_alerts"].as_array().map(Vec::len),
            Some(1),
            "node {i}: {message}"
        );
    }
    // Each node forwarded its own events only: one stored reading, one alert event each.
    assert_eq!(
        database.sql("SELECT count(*) FROM readings WHERE device_id = 'bed-x1'"),
        "1"
    );
    let seen = stream.lines.seen();
    let readings_on_2 = seen
        .windows(3)
        .filter(|lines| lines[0] == "event: reading" && lines[2].contains("bed-x1"))
        .count();
    assert_eq!(readings_on_2, 1, "{seen:?}");
}

/// An HTTPS request with optional bearer token, cookie and CSRF token: (status, headers, JSON).
fn call(
    server: &Server,
    method: &str,
    path: &str,
    auth: &[(&str, &str)],
    body: Option<Value>,
) -> (u16, Vec<(String, String)>, Value) {
    let agent = https_agent(&server.data_dir);
    let mut builder = ureq::http::Request::builder()
        .method(method)
        .uri(server.url(path));
    for (name, value) in auth {
        builder = builder.header(*name, *value);
    }
    let body = match body {
        Some(body) => {
            builder = builder.header("Content-Type", "application/json");
            body.to_string().into_bytes()
        }
        None => Vec::new(),
    };
    let mut response = agent.run(builder.body(body).unwrap()).unwrap();
    let headers = response
        .headers()
        .iter()
        .map(|(k, v)| (k.as_str().to_owned(), v.to_str().unwrap_or("").to_owned()))
        .collect();
    let status = response.status().as_u16();
    let text = response.body_mut().read_to_string().unwrap_or_default();
    (
        status,
        headers,
        serde_json::from_str(&text).unwrap_or(Value::Null),
    )
}

fn login(server: &Server, user: &str, password: &str) -> (u16, Option<(String, String)>) {
    let (status, headers, json) = call(
        server,
        "POST",
        "/auth/login",
        &[],
        Some(json!({ "username": user, "password": password })),
    );
    let cookie = headers
        .iter()
        .find(|(name, _)| name == "set-cookie")
        .and_then(|(_, value)| value.split(';').next().map(str::to_owned));
    let csrf = json["csrf_token"].as_str().map(str::to_owned);
    (status, cookie.zip(csrf))
}

#[test]
fn a_sign_in_works_on_every_node_and_a_revoked_token_is_refused_on_every_node() {
    let cluster = Cluster::shared();
    let database = cluster.database();
    let nodes = Nodes::start(&database, 3, true);
    let password = "correct horse battery staple 7";
    nodes.cli(
        1,
        &["users", "create", "--name", "alice", "--role", "clinician"],
        &format!("{password}\n"),
    );
    let viewer = nodes.cli(
        1,
        &["tokens", "create", "--role", "viewer", "--name", "v"],
        "",
    );
    let admin = nodes.cli(
        1,
        &["tokens", "create", "--role", "admin", "--name", "a"],
        "",
    );

    // Signed in on node 1, acting on node 2: reads, and state changes with the CSRF token.
    let (status, session) = login(nodes.node(1), "alice", password);
    assert_eq!(status, 200);
    let (cookie, csrf) = session.expect("a session cookie and a CSRF token");
    let (status, _, me) = call(
        nodes.node(2),
        "GET",
        "/auth/me",
        &[("cookie", &cookie)],
        None,
    );
    assert_eq!((status, me["name"].as_str()), (200, Some("alice")), "{me}");
    let change = "/api/alerts/999999/ack";
    let (status, _, refused) = call(
        nodes.node(2),
        "POST",
        change,
        &[("cookie", &cookie)],
        Some(json!({})),
    );
    assert_eq!((status, refused["error"].as_str()), (403, Some("csrf")));
    let with_csrf = [("cookie", cookie.as_str()), ("x-csrf-token", csrf.as_str())];
    let (status, _, answer) = call(
        nodes.node(2),
        "POST",
        change,
        &with_csrf,
        Some(json!({"by": "alice"})),
    );
    assert_eq!(status, 404, "past the guard, no such alert: {answer}");
    // Logged out on node 2: the cookie is refused on node 3 at the next request.
    let (status, _, _) = call(nodes.node(2), "POST", "/auth/logout", &with_csrf, None);
    assert_eq!(status, 204);
    let (status, _, ended) = call(
        nodes.node(3),
        "GET",
        "/auth/me",
        &[("cookie", &cookie)],
        None,
    );
    assert_eq!(
        (status, ended["error"].as_str()),
        (401, Some("session_expired"))
    );

    // A token revoked on node 3 is refused on node 1 at its next request.
    let bearer = format!("Bearer {viewer}");
    let (status, _, _) = call(
        nodes.node(1),
        "GET",
        "/api/devices",
        &[("authorization", &bearer)],
        None,
    );
    assert_eq!(status, 200);
    let token_id = viewer.split('_').nth(1).unwrap().to_owned();
    let (status, _, answer) = call(
        nodes.node(3),
        "DELETE",
        &format!("/api/tokens/{token_id}"),
        &[("authorization", &format!("Bearer {admin}"))],
        None,
    );
    assert!(status < 300, "{status} {answer}");
    let (status, _, refused) = call(
        nodes.node(1),
        "GET",
        "/api/devices",
        &[("authorization", &bearer)],
        None,
    );
    assert_eq!(
        (status, refused["error"].as_str()),
        (401, Some("token_revoked"))
    );
}

#[test]
fn failed_logins_spread_over_nodes_count_together() {
    let cluster = Cluster::shared();
    let database = cluster.database();
    let nodes = Nodes::start(&database, 2, true);
    let password = "correct horse battery staple 8";
    nodes.cli(
        1,
        &["users", "create", "--name", "bob", "--role", "viewer"],
        &format!("{password}\n"),
    );
    // Five failures (the default per name and address range), alternating between nodes.
    for attempt in 0..5 {
        let (status, _) = login(nodes.node(1 + attempt % 2), "bob", "wrong password");
        assert_eq!(status, 401, "attempt {attempt}");
    }
    // Either node now refuses this name from this address range, even the right password.
    for i in [1, 2] {
        let (status, session) = login(nodes.node(i), "bob", password);
        assert_eq!(
            status, 429,
            "node {i} did not count the other node's failures"
        );
        assert!(session.is_none());
    }
    assert_eq!(
        database.sql("SELECT failures FROM login_failures WHERE key LIKE 'user:bob'"),
        "5"
    );
}

/// One Paho session (`session_probe.py`) over TLS with a client certificate.
struct Probe {
    _process: Guarded,
    stdin: std::process::ChildStdin,
    lines: Lines,
}

impl Probe {
    fn tls(nodes: &Nodes, i: usize, cert: &DeviceCert, extra: &[&str]) -> Probe {
        let mut process = Guarded::spawn(
            Command::new(python())
                .arg(client_script("session_probe.py"))
                .args(["--host", "localhost", "--port"])
                .arg(nodes.mqtts_port(i).to_string())
                .arg("--ca")
                .arg(nodes.ca())
                .arg("--cert")
                .arg(&cert.cert)
                .arg("--key")
                .arg(&cert.key)
                .args(extra)
                .stdin(Stdio::piped())
                .stdout(Stdio::piped()),
        );
        let stdin = process.take_stdin();
        let lines = process.lines();
        Probe {
            _process: process,
            stdin,
            lines,
        }
    }

    fn event(&mut self, name: &str, timeout: Duration) -> Option<Value> {
        self.lines.find(timeout, |line| {
            let event: Value = serde_json::from_str(line).ok()?;
            (event["event"] == name).then_some(event)
        })
    }

    /// The CONNACK's return code (or -1 when the handshake failed).
    fn connack(&mut self) -> i64 {
        self.lines
            .find(crate::support::WAIT, |line| {
                let event: Value = serde_json::from_str(line).ok()?;
                match event["event"].as_str() {
                    Some("connected") => event["rc"].as_i64(),
                    Some("error") => Some(-1),
                    _ => None,
                }
            })
            .unwrap_or_else(|| panic!("no CONNACK; the probe said {:?}", self.lines.seen()))
    }

    fn publish(&mut self, payload: &str) {
        use std::io::Write;
        let _ = writeln!(self.stdin, "publish {payload}");
        let _ = self.stdin.flush();
    }
}

#[test]
fn a_device_revoked_through_the_api_on_one_node_is_disconnected_and_refused_on_the_others() {
    let cluster = Cluster::shared();
    let database = cluster.database();
    let nodes = Nodes::start(&database, 2, false);
    // Issued on node 1: node 2's certificates directory has only the CA, no index entry.
    let device = nodes.issue(1, "device", "bed-r1");
    let station = nodes.issue(1, "consumer", "station-r");

    let mut bed = Probe::tls(&nodes, 2, &device, &[]);
    assert_eq!(bed.connack(), 0);
    let mut consumer = Probe::tls(
        &nodes,
        2,
        &station,
        &["--subscribe", "vitalwatch/telemetry/+"],
    );
    assert_eq!(consumer.connack(), 0);
    assert!(consumer.event("subscribed", crate::support::WAIT).is_some());
    bed.publish(&reading("bed-r1", 72.0));
    assert!(bed.event("puback", crate::support::WAIT).is_some());
    assert!(consumer.event("message", crate::support::WAIT).is_some());
    let count = || database.sql("SELECT count(*) FROM readings WHERE device_id = 'bed-r1'");
    assert_eq!(count(), "1");

    // Revoked through node 1's API (admin: trusted loopback; the route is CSRF-checked).
    let agent = crate::support::agent();
    let answer = crate::support::send(
        &agent,
        "POST",
        &nodes.node(1).url("/api/devices/bed-r1/revoke"),
        None,
        b"",
    );
    assert_eq!(answer.status, 200, "{}", answer.json);
    assert_eq!(answer.json["serials"].as_array().map(Vec::len), Some(1));
    let answer = crate::support::send(
        &agent,
        "POST",
        &nodes.node(1).url("/api/devices/station-r/revoke"),
        None,
        b"",
    );
    assert_eq!(answer.status, 200, "{}", answer.json);
    let revoked = Instant::now();
    for (name, probe) in [("device", &mut bed), ("consumer", &mut consumer)] {
        let left = Duration::from_secs(5).saturating_sub(revoked.elapsed());
        assert!(
            probe.event("disconnected", left).is_some(),
            "the revoked {name}'s session on node 2 is still open after 5 s: {:?}",
            probe.lines.seen()
        );
    }
    eprintln!(
        "node 2 closed the revoked sessions {:?} after node 1 revoked them",
        revoked.elapsed()
    );
    // Its next publish is not stored, and a new CONNECT is refused on both nodes.
    bed.publish(&reading("bed-r1", 73.0));
    for i in [1, 2] {
        let mut again = Probe::tls(&nodes, i, &device, &[]);
        assert_ne!(again.connack(), 0, "node {i} let the revoked device in");
    }
    assert_eq!(count(), "1");
    let audited = database.sql(
        "SELECT count(*) FROM audit_log WHERE action = 'certificate.revoke' AND target = 'bed-r1'",
    );
    assert_eq!(audited, "1");
    // `certs revoke` on node 1's host has the same effect on node 2.
    let other = nodes.issue(1, "device", "bed-r2");
    let mut bed2 = Probe::tls(&nodes, 2, &other, &[]);
    assert_eq!(bed2.connack(), 0);
    let out = nodes.cli(1, &["certs", "revoke", "bed-r2"], "");
    assert!(out.contains("revoked bed-r2 serial"), "{out}");
    assert!(
        bed2.event("disconnected", Duration::from_secs(5)).is_some(),
        "node 2 kept the session revoked with the CLI on node 1: {:?}",
        bed2.lines.seen()
    );
    // Nothing left to revoke: said so.
    let again = crate::support::send(
        &agent,
        "POST",
        &nodes.node(2).url("/api/devices/bed-r1/revoke"),
        None,
        b"",
    );
    assert_eq!(again.status, 404, "{}", again.json);
}

#[test]
fn after_a_database_restart_the_bridge_listens_again_and_live_views_are_told_to_reload() {
    // A cluster of this test's own: it is stopped as a crash would stop it.
    let cluster = Cluster::start();
    let database = cluster.database();
    let nodes = Nodes::start(&database, 2, false);
    let mut stream = Watcher::sse(nodes.node(2));
    stream.wait_for("event: hello");
    cluster.stop_immediate();
    cluster.start_again();
    // Node 2's listening connection came back by itself; what crossed meanwhile is unknown,
    // so its live streams are told to reload.
    let line = stream.wait_for("bridge_reconnected");
    assert!(line.starts_with("data: "), "{line}");
    // And node 1's readings cross again, with no node restarted.
    let agent = crate::support::agent();
    crate::support::wait_until(crate::support::WAIT, "node 1 takes readings again", || {
        crate::support::post_json(
            &agent,
            &nodes.node(1).url("/api/telemetry"),
            &reading("bed-y1", 80.0),
        )
        .status
            == 200
    });
    let line = stream.wait_for("bed-y1");
    let event: Value = serde_json::from_str(&line["data: ".len()..]).unwrap();
    assert_eq!(event["device_id"], "bed-y1");
}
