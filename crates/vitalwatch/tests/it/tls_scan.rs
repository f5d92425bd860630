//! The TLS ports, judged by tools we did not write: sslyze checks the embedded broker's port
//! and the HTTPS API and dashboard ports against Mozilla's "intermediate" profile, and
//! plaintext MQTT sent to the broker's port is refused.

use crate::mqtt::{ca, issue, python};
use crate::support::{Server, ServerOptions, WAIT, agent, get, poll_until};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::Duration;

#[test]
fn sslyze_finds_the_mqtts_port_compliant_with_mozilla_intermediate() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    // mTLS is required on the port, so sslyze presents a device certificate.
    let scanner = issue(&server, "sslyze-scan");
    let output = Command::new(python())
        .args(["-m", "sslyze", "--mozilla_config=intermediate"])
        // Our CA is private: sslyze validates the server's chain against it.
        .arg("--certinfo_ca_file")
        .arg(ca(&server))
        .arg("--cert")
        .arg(&scanner.cert)
        .arg("--key")
        .arg(&scanner.key)
        .arg(format!("127.0.0.1:{}", server.mqtts.unwrap().port()))
        .output()
        .expect("running sslyze (scripts/test installs it)");
    let report = String::from_utf8_lossy(&output.stdout).to_string()
        + &String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "sslyze: not compliant (exit {:?}):\n{report}",
        output.status.code()
    );
    assert!(report.contains("OK - Compliant"), "{report}");
    // What it saw: no TLS 1.0/1.1, forward-secret AEAD suites only.
    assert!(!report.contains("TLS_RSA_WITH"), "{report}");
}

#[test]
fn sslyze_finds_the_https_api_and_dashboard_ports_compliant_with_mozilla_intermediate() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_secure(ServerOptions {
        args: Vec::new(),
        ..ServerOptions::new(dir.path())
    });
    let mut command = Command::new(python());
    command
        .args(["-m", "sslyze", "--mozilla_config=intermediate"])
        .arg("--certinfo_ca_file")
        .arg(ca(&server));
    for addr in [server.api, server.listeners["dashboard"]] {
        command.arg(format!("127.0.0.1:{}", addr.port()));
    }
    let output = command
        .output()
        .expect("running sslyze (scripts/test installs it)");
    let report = String::from_utf8_lossy(&output.stdout).to_string()
        + &String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "sslyze: not compliant (exit {:?}):\n{report}",
        output.status.code()
    );
    assert_eq!(report.matches("OK - Compliant").count(), 2, "{report}");
    assert!(!report.contains("TLS_RSA_WITH"), "{report}");
}

/// An MQTT 3.1.1 CONNECT for client id "plain", clean session, keep-alive 60 s.
const PLAINTEXT_CONNECT: &[u8] = &[
    0x10, 17, 0x00, 0x04, b'M', b'Q', b'T', b'T', 0x04, 0x02, 0x00, 0x3c, 0x00, 0x05, b'p', b'l',
    b'a', b'i', b'n',
];

#[test]
fn plaintext_mqtt_on_the_tls_port_is_refused_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start(dir.path());
    let mut stream = TcpStream::connect(server.mqtts.unwrap()).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream.write_all(PLAINTEXT_CONNECT).unwrap();
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    // No CONNACK (0x20): at most a TLS alert record (content type 0x15), then the close.
    assert!(
        answer.first() != Some(&0x20),
        "the TLS port answered plaintext MQTT: {answer:?}"
    );
    assert!(
        answer.is_empty() || answer[0] == 0x15,
        "unexpected answer {answer:?}"
    );
    assert!(server.is_running());
    // The refusal is counted as the broker closes the connection: poll (bounded) for it.
    let mut health = serde_json::Value::Null;
    let _ = poll_until(WAIT, || {
        health = get(&agent(), &server.url("/health")).json;
        health["rejected"]["tls_handshake_failed"].as_u64() >= Some(1)
    });
    assert!(
        health["rejected"]["tls_handshake_failed"].as_u64() >= Some(1),
        "{health}"
    );
    // mosquitto_pub without TLS gets nowhere either.
    let output = Command::new("mosquitto_pub")
        .args(["-h", "127.0.0.1", "-p"])
        .arg(server.mqtts.unwrap().port().to_string())
        .args(["-t", "/iot/health", "-q", "1", "-m", "{}", "-d"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&output.stdout).to_string()
        + &String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{text}");
    assert!(!text.contains("received CONNACK"), "{text}");
}
