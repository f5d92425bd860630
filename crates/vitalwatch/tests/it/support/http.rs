//! HTTP to a server under test: an agent that returns 4xx/5xx as values, JSON answers, and
//! real curl for bodies large enough to need `100 Continue`.

use serde_json::Value;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

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
    // A workstation's client, not a cross-site page: with trusted loopback, state changes
    // need this header (any value) unless their body is JSON.
    let mut builder = ureq::http::Request::builder()
        .method(method)
        .uri(url)
        .header("X-CSRF-Token", "1");
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
    command.args([
        "-w",
        "%{http_code}",
        "-H",
        "X-CSRF-Token: 1",
        "--data-binary",
    ]);
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

/// An HTTPS agent that trusts the server's CA (`<data_dir>/certs/ca.crt`) and returns 4xx/5xx
/// as values. Each request has a connection of its own: a pooled keep-alive connection the
/// server has just closed (idle timeout, a stream it ended) would fail a POST, which a client
/// may not retry.
pub fn https_agent(data_dir: &Path) -> ureq::Agent {
    vitalwatch::tls::install_crypto_provider();
    let pem = std::fs::read(data_dir.join("certs/ca.crt")).expect("reading the server's CA");
    let ca = ureq::tls::Certificate::from_pem(&pem).expect("the server's CA is PEM");
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(30)))
        .max_idle_connections(0)
        .tls_config(
            ureq::tls::TlsConfig::builder()
                .root_certs(ureq::tls::RootCerts::Specific(std::sync::Arc::new(vec![
                    ca,
                ])))
                .build(),
        )
        .build()
        .into()
}
