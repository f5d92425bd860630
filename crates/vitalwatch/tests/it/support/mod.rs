//! Helpers for the integration tests: start the real `vitalwatch` binary on free ports in a
//! temporary directory, talk to it over real sockets, stop it by its process id. A TLS
//! Mosquitto from a config the test writes is in [`mosquitto`].

pub mod mosquitto;

use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_vitalwatch")
}

/// A running `vitalwatch serve`.
pub struct Server {
    /// "http" or "https".
    pub scheme: &'static str,
    child: Option<Child>,
    pub api: SocketAddr,
    /// The embedded broker's TLS address, when it runs.
    pub mqtts: Option<SocketAddr>,
    /// Every `listening NAME=ADDR` line the server printed.
    pub listeners: std::collections::HashMap<String, SocketAddr>,
    pub data_dir: PathBuf,
    stderr_log: PathBuf,
}

pub struct ServerOptions<'a> {
    /// Working directory; the data dir defaults to `<cwd>/data`.
    pub cwd: &'a Path,
    /// Extra arguments after `serve`.
    pub args: Vec<String>,
    /// Pass `--http-addr 127.0.0.1:0` (otherwise the default address is used).
    pub free_port: bool,
}

impl Server {
    /// Starts `serve` on a free loopback port with `<dir>/data` as its data directory.
    pub fn start(dir: &Path) -> Server {
        Server::start_with(ServerOptions {
            cwd: dir,
            args: Vec::new(),
            free_port: true,
        })
    }

    /// Starts `serve` as most tests want it: plaintext HTTP with loopback trusted, so they can
    /// talk to the API without tokens. The security tests use [`Server::start_secure`].
    pub fn start_with(options: ServerOptions<'_>) -> Server {
        let mut options = options;
        options.args.splice(
            0..0,
            ["--http-plaintext", "--trust-loopback"].map(str::to_owned),
        );
        Server::launch(options, "http")
    }

    /// Starts `serve` with its defaults: HTTPS, no trusted loopback, every route but
    /// `/health` behind a token or login.
    pub fn start_secure(options: ServerOptions<'_>) -> Server {
        Server::launch(options, "https")
    }

    fn launch(options: ServerOptions<'_>, scheme: &'static str) -> Server {
        let stderr_log = options.cwd.join(format!(
            "server-{}.log",
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos()
        ));
        let mut command = Command::new(bin());
        command.current_dir(options.cwd).arg("serve");
        if options.free_port {
            command.args(["--http-addr", "127.0.0.1:0", "--mqtts-addr", "127.0.0.1:0"]);
        }
        if !options.args.iter().any(|a| a == "--dashboard-addr") {
            // Tests run in parallel: never let them fight over the default port 8501.
            command.args(["--dashboard-addr", "127.0.0.1:0"]);
        }
        command
            .args(&options.args)
            .env("RUST_LOG", "vitalwatch=debug")
            .env_remove("VITALWATCH_DATA_DIR")
            .env_remove("VITALWATCH_HTTP_ADDR")
            .env_remove("VITALWATCH_DASHBOARD_ADDR")
            .env_remove("VITALWATCH_CONFIG")
            .env_remove("VITALWATCH_CERTS_DIR")
            .env_remove("MQTT_PORT")
            .env_remove("MQTT_TOPIC")
            .env_remove("MQTT_BROKER")
            .env_remove("MQTT_USE_TLS")
            .env_remove("MQTT_TLS_CA_CERTS")
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&stderr_log).unwrap());
        let mut child = command.spawn().expect("spawning vitalwatch serve");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some(rest) = line.strip_prefix("listening ")
                    && let Some((name, addr)) = rest.split_once('=')
                {
                    let _ = tx.send((name.to_owned(), addr.trim().to_owned()));
                }
            }
        });
        let mut addrs = std::collections::HashMap::new();
        // The API line comes last, once everything else listens.
        while !addrs.contains_key("api") {
            match rx.recv_timeout(Duration::from_secs(30)) {
                Ok((name, addr)) => {
                    let mut addr: SocketAddr = addr.parse().unwrap();
                    if addr.ip().is_unspecified() {
                        addr.set_ip([127, 0, 0, 1].into());
                    }
                    addrs.insert(name, addr);
                }
                Err(_) => {
                    let _ = child.kill();
                    panic!(
                        "server did not start; its log:\n{}",
                        std::fs::read_to_string(&stderr_log).unwrap_or_default()
                    );
                }
            }
        }
        let api = addrs["api"];
        let mqtts = addrs.get("mqtts").copied();
        let data_dir = options
            .args
            .iter()
            .position(|a| a == "--data-dir")
            .map(|i| options.cwd.join(&options.args[i + 1]))
            .unwrap_or_else(|| options.cwd.join("data"));
        Server {
            scheme,
            child: Some(child),
            api,
            mqtts,
            listeners: addrs.clone(),
            data_dir,
            stderr_log,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}://{}{}", self.scheme, self.api, path)
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().unwrap().id()
    }

    pub fn is_running(&mut self) -> bool {
        matches!(self.child.as_mut().map(|c| c.try_wait()), Some(Ok(None)))
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.stderr_log).unwrap_or_default()
    }

    /// Sends SIGTERM and waits for a clean exit; returns the exit status success.
    pub fn terminate(&mut self) -> bool {
        signal(self.pid(), "TERM");
        let mut child = self.child.take().unwrap();
        wait_with_timeout(&mut child, Duration::from_secs(60))
    }

    /// SIGKILL: no chance to flush anything.
    pub fn kill9(&mut self) {
        signal(self.pid(), "KILL");
        let mut child = self.child.take().unwrap();
        let _ = child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

pub fn signal(pid: u32, name: &str) {
    let status = Command::new("kill")
        .args([format!("-{name}"), pid.to_string()])
        .status()
        .expect("running kill");
    assert!(status.success(), "kill -{name} {pid} failed");
}

fn wait_with_timeout(child: &mut Child, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return status.success();
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// An HTTP agent that returns 4xx/5xx as values instead of errors.
pub fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(30)))
        .build()
        .into()
}

/// A response: status and body parsed as JSON (Null when the body is not JSON).
pub struct Answer {
    pub status: u16,
    pub json: Value,
}

pub fn send(
    agent: &ureq::Agent,
    method: &str,
    url: &str,
    content_type: Option<&str>,
    body: &[u8],
) -> Answer {
    if body.len() > 1024 * 1024 {
        return send_with_curl(method, url, content_type, body);
    }
    let mut builder = ureq::http::Request::builder().method(method).uri(url);
    if let Some(content_type) = content_type {
        builder = builder.header("Content-Type", content_type);
    }
    let request = builder.body(body.to_vec()).unwrap();
    let mut response = agent
        .run(request)
        .expect("HTTP request failed at the transport");
    let status = response.status().as_u16();
    let text = response
        .body_mut()
        .with_config()
        .limit(64 * 1024 * 1024)
        .read_to_string()
        .unwrap_or_default();
    Answer {
        status,
        json: serde_json::from_str(&text).unwrap_or(Value::Null),
    }
}

/// Large bodies go through real curl, which waits for `100 Continue` and so sees an early
/// 413 cleanly instead of a reset connection.
fn send_with_curl(method: &str, url: &str, content_type: Option<&str>, body: &[u8]) -> Answer {
    let dir = tempfile::tempdir().unwrap();
    let body_path = dir.path().join("body");
    let out_path = dir.path().join("out");
    std::fs::write(&body_path, body).unwrap();
    let mut command = Command::new("curl");
    command.args(["-sS", "-X", method, "-o"]).arg(&out_path);
    command.args(["-w", "%{http_code}", "--data-binary"]);
    command.arg(format!("@{}", body_path.display()));
    if let Some(content_type) = content_type {
        command.args(["-H", &format!("Content-Type: {content_type}")]);
    }
    let output = command.arg(url).output().expect("running curl");
    let status: u16 = String::from_utf8_lossy(&output.stdout)
        .trim()
        .parse()
        .unwrap_or(0);
    let text = std::fs::read_to_string(&out_path).unwrap_or_default();
    Answer {
        status,
        json: serde_json::from_str(&text).unwrap_or(Value::Null),
    }
}

pub fn get(agent: &ureq::Agent, url: &str) -> Answer {
    send(agent, "GET", url, None, b"")
}

pub fn post_json(agent: &ureq::Agent, url: &str, body: &str) -> Answer {
    send(
        agent,
        "POST",
        url,
        Some("application/json"),
        body.as_bytes(),
    )
}

/// Row counts of the tables a rejected input must never change.
#[derive(Debug, PartialEq, Eq, Clone, Copy)]
pub struct Counts {
    pub readings: i64,
    pub anomalies: i64,
    pub devices: i64,
    pub quarantine: i64,
}

pub fn counts(data_dir: &Path) -> Counts {
    let conn = rusqlite::Connection::open_with_flags(
        data_dir.join("anomalies.db"),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )
    .unwrap();
    let count = |table: &str| -> i64 {
        conn.query_row(&format!("SELECT COUNT(*) FROM {table}"), [], |row| {
            row.get(0)
        })
        .unwrap()
    };
    Counts {
        readings: count("readings"),
        anomalies: count("anomalies"),
        devices: count("devices"),
        quarantine: count("quarantine"),
    }
}

/// Runs a shell snippet (for commands that must run exactly as a README writes them).
pub fn sh(cwd: &Path, script: &str) -> (bool, String, String) {
    let output = Command::new("sh")
        .arg("-c")
        .arg(script)
        .current_dir(cwd)
        .output()
        .expect("running sh");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// A seed-shaped reading with a fixed timestamp offset, so each `n` is a distinct reading.
pub fn reading(device_id: &str, n: u64, heart_rate: f64) -> String {
    let ts = 1_767_225_600_000u64 + n * 1000; // 2026-01-01T00:00:00Z + n s, in ms
    format!(
        r#"{{"device_id":"{device_id}","timestamp":{ts},"heart_rate":{heart_rate},"body_temp":36.8,"signal_strength":-55,"battery_level":90}}"#
    )
}
