//! MQTT conformance of the embedded broker, packet by packet (issue 21): each case is a test
//! per protocol version (3.1.1 = OASIS 2014, 5.0 = OASIS 2019; the spec section is in the
//! test's name), run over TLS with a client certificate and over the plaintext listener with
//! credentials, with our own raw client ([`wire`]) so that the packets are exactly the ones
//! devices in the field send. Also: wills, and counters that equal the database.

mod wire;

use crate::mqtt::{DeviceCert, ca, client_script, issue, issue_consumer, python};
use crate::support::mosquitto::{Mosquitto, Pki};
use crate::support::{Server, ServerOptions, WAIT, agent, counts, get, reading, wait_until};
use std::path::Path;
use std::process::Command;
use std::time::Duration;
use wire::{Client, Connect, PINGRESP, PUBACK, PUBCOMP, PUBLISH, PUBREC, Version};

const TOPIC: &str = "/iot/health";
const DEVICE: &str = "bed-1";

#[derive(Clone, Copy, Debug)]
enum Transport {
    Tls,
    Plain,
}

/// A server with both listeners, a device certificate and the same device's secret.
struct Bench {
    server: Server,
    secret: String,
}

impl Bench {
    fn start(dir: &std::path::Path) -> Bench {
        let config = dir.join("vitalwatch.toml");
        std::fs::write(
            &config,
            "[registry]\ndefault_expected_interval_s = 3600.0\n",
        )
        .unwrap();
        let server = Server::start_with(ServerOptions::with_args(
            dir,
            &[
                "--mqtt-addr",
                "127.0.0.1:0",
                "--metrics-addr",
                "127.0.0.1:0",
                "--config",
                &config.display().to_string(),
            ],
        ));
        issue(&server, DEVICE);
        let output = crate::support::on_store(&server.data_dir)
            .args(["certs", "secret", DEVICE, "--data-dir"])
            .arg(&server.data_dir)
            .output()
            .unwrap();
        assert!(output.status.success());
        let secret = String::from_utf8_lossy(&output.stdout).trim().to_owned();
        Bench { server, secret }
    }

    fn client(&self, transport: Transport, version: Version) -> Client {
        let cert = DeviceCert {
            cert: self
                .server
                .data_dir
                .join(format!("certs/devices/{DEVICE}.crt")),
            key: self
                .server
                .data_dir
                .join(format!("certs/devices/{DEVICE}.key")),
        };
        self.client_with(transport, version, &cert)
    }

    fn client_with(&self, transport: Transport, version: Version, cert: &DeviceCert) -> Client {
        let stream = match transport {
            Transport::Tls => wire::tls(
                self.server.mqtts.unwrap(),
                &ca(&self.server),
                &cert.cert,
                &cert.key,
            ),
            Transport::Plain => wire::plain(self.server.listeners["mqtt"]),
        };
        Client::new(stream, version)
    }

    /// A CONNECT with this transport's credentials.
    fn connect<'a>(&'a self, transport: Transport, client_id: &'a str) -> Connect<'a> {
        let mut connect = Connect::new(client_id);
        if let Transport::Plain = transport {
            connect.username = Some(DEVICE);
            connect.password = Some(&self.secret);
        }
        connect
    }

    /// A connected device client.
    fn device(&self, transport: Transport, version: Version, client_id: &str) -> Client {
        let mut client = self.client(transport, version);
        let connack = client.connect(&self.connect(transport, client_id));
        assert_eq!(connack.body[1], 0, "{connack:?}");
        client
    }
}

const TRANSPORTS: [Transport; 2] = [Transport::Tls, Transport::Plain];

/// One test per protocol version for a case.
macro_rules! per_version {
    ($name:ident) => {
        mod $name {
            use super::wire::Version;

            #[test]
            fn v3_1_1() {
                super::$name(Version::V311);
            }

            #[test]
            fn v5() {
                super::$name(Version::V5);
            }
        }
    };
}

/// 3.1.1 section 4.3.3 / 5.0 section 3.7.2.1: a PUBREL without state is answered with
/// PUBCOMP (5.0: reason 0x92), and the connection stays up.
fn pubrel_without_state_gets_pubcomp_4_3_3(version: Version) {
    let dir = tempfile::tempdir().unwrap();
    let bench = Bench::start(dir.path());
    for transport in TRANSPORTS {
        let mut client = bench.device(transport, version, "c1");
        client.pubrel(9);
        let pubcomp = client.expect(PUBCOMP);
        assert_eq!(pubcomp.packet_id(), 9);
        let expected = if client.v5() { 0x92 } else { 0 };
        assert_eq!(pubcomp.ack_reason(), expected, "{transport:?}");
        client.pingreq();
        client.expect(PINGRESP);
    }
}
per_version!(pubrel_without_state_gets_pubcomp_4_3_3);

/// Section 4.3.3: a QoS 2 resend (DUP) before PUBREL gets PUBREC again and is stored once.
fn qos2_dup_resend_before_pubrel_gets_pubrec_4_3_3(version: Version) {
    let dir = tempfile::tempdir().unwrap();
    let bench = Bench::start(dir.path());
    for (n, transport) in TRANSPORTS.into_iter().enumerate() {
        let mut client = bench.device(transport, version, "c1");
        let payload = reading(DEVICE, n as u64, 72.0);
        client.publish(TOPIC, 2, 1, false, payload.as_bytes());
        let pubrec = client.expect(PUBREC);
        assert_eq!((pubrec.packet_id(), pubrec.ack_reason()), (1, 0));
        client.publish(TOPIC, 2, 1, true, payload.as_bytes());
        let again = client.expect(PUBREC);
        assert_eq!(
            (again.packet_id(), again.ack_reason()),
            (1, 0),
            "{transport:?}"
        );
        client.pubrel(1);
        let pubcomp = client.expect(PUBCOMP);
        assert_eq!((pubcomp.packet_id(), pubcomp.ack_reason()), (1, 0));
        assert_eq!(counts(&bench.server.data_dir).readings, n as i64 + 1);
    }
}
per_version!(qos2_dup_resend_before_pubrel_gets_pubrec_4_3_3);

/// 5.0 section 4.3.3 (and 3.3.4, Receive Maximum): 40 rejected QoS 2 readings (PUBREC 0x99,
/// which ends each exchange) do not exhaust the receive window; the packet id is reusable.
/// 3.1.1 acknowledges a rejected reading, so its exchanges end with PUBREL/PUBCOMP.
fn rejected_qos2_readings_keep_the_receive_window_4_3_3(version: Version) {
    let dir = tempfile::tempdir().unwrap();
    let bench = Bench::start(dir.path());
    for (n, transport) in TRANSPORTS.into_iter().enumerate() {
        let mut client = bench.device(transport, version, "c1");
        for packet_id in 1..=40 {
            client.publish(TOPIC, 2, packet_id, false, b"not a reading");
            let pubrec = client.expect(PUBREC);
            assert_eq!(pubrec.packet_id(), packet_id);
            if client.v5() {
                assert_eq!(pubrec.ack_reason(), 0x99, "{transport:?}");
            } else {
                client.pubrel(packet_id);
                client.expect(PUBCOMP);
            }
        }
        client.publish(
            TOPIC,
            2,
            1,
            false,
            reading(DEVICE, n as u64, 72.0).as_bytes(),
        );
        let pubrec = client.expect(PUBREC);
        assert_eq!((pubrec.packet_id(), pubrec.ack_reason()), (1, 0));
        client.pubrel(1);
        client.expect(PUBCOMP);
        assert_eq!(counts(&bench.server.data_dir).readings, n as i64 + 1);
    }
}
per_version!(rejected_qos2_readings_keep_the_receive_window_4_3_3);

/// 3.1.1 section 3.1.0 / 5.0 section 3.1.0 ([MQTT-3.1.0-2]): a second CONNECT is a protocol
/// violation; the broker closes the connection (5.0: DISCONNECT 0x82 first).
fn a_second_connect_closes_the_connection_3_1_0(version: Version) {
    let dir = tempfile::tempdir().unwrap();
    let bench = Bench::start(dir.path());
    for transport in TRANSPORTS {
        let mut client = bench.device(transport, version, "c1");
        let connect = bench.connect(transport, "c1");
        client.connect_no_answer(&connect);
        let closed = client.closed();
        let reason = closed.unwrap_or_else(|| panic!("{transport:?}: still open"));
        if client.v5() {
            assert_eq!(reason, Some(0x82), "{transport:?}");
        }
    }
    assert!(bench.server.log().contains("second_connect"));
}
per_version!(a_second_connect_closes_the_connection_3_1_0);

/// 3.1.1 section 3.1.3.1: an empty client id with CleanSession=1 is accepted, and with
/// CleanSession=0 gets CONNACK 0x02 ([MQTT-3.1.3-8]) and the connection is closed; 5.0 section
/// 3.2.2.3.7: the broker assigns one and says so in CONNACK.
fn an_empty_client_id_is_answered_3_1_3_1(version: Version) {
    let dir = tempfile::tempdir().unwrap();
    let bench = Bench::start(dir.path());
    for transport in TRANSPORTS {
        match version {
            Version::V311 => {
                let mut client = bench.client(transport, version);
                let mut connect = bench.connect(transport, "");
                connect.clean = false;
                let connack = client.connect(&connect);
                assert_eq!(connack.body, vec![0, 0x02], "{transport:?}");
                assert_eq!(client.closed(), Some(None), "{transport:?}");
                let mut client = bench.client(transport, version);
                let connack = client.connect(&bench.connect(transport, ""));
                assert_eq!(connack.body, vec![0, 0]);
            }
            Version::V5 => {
                let mut client = bench.client(transport, version);
                let mut connect = bench.connect(transport, "");
                connect.clean = false;
                let connack = client.connect(&connect);
                assert_eq!(connack.body[1], 0, "{connack:?}");
                let assigned =
                    wire::connack_property(&connack, 0x12).expect("an Assigned Client Identifier");
                assert!(assigned.len() > 2, "{assigned:?}");
            }
        }
    }
    assert!(
        bench.server.log().contains("empty_client_id_with_session") == (version == Version::V311)
    );
}
per_version!(an_empty_client_id_is_answered_3_1_3_1);

/// [MQTT-3.1.2-2]: a CONNECT with a protocol level the broker does not support (MQTT 3.1's
/// `MQIsdp` 3, `MQTT` 3 or 6) gets CONNACK 0x01 and the connection is closed.
#[test]
fn an_unsupported_protocol_level_gets_connack_0x01_3_1_2_2() {
    let dir = tempfile::tempdir().unwrap();
    let bench = Bench::start(dir.path());
    for transport in TRANSPORTS {
        for (name, level) in [(&b"MQIsdp"[..], 3u8), (b"MQTT", 3), (b"MQTT", 6)] {
            let mut client = bench.client(transport, Version::V311);
            let mut body = (name.len() as u16).to_be_bytes().to_vec();
            body.extend_from_slice(name);
            body.extend_from_slice(&[level, 0x02, 0, 60, 0, 2, b'c', b'1']);
            client.send(&wire::frame(0x10, &body));
            let connack = client.expect(wire::CONNACK);
            assert_eq!(connack.body, vec![0, 0x01], "{transport:?} level {level}");
            assert_eq!(client.closed(), Some(None), "{transport:?} level {level}");
        }
    }
    assert!(bench.server.log().contains("unsupported_protocol_level"));
}

/// 5.0 section 3.3.2.3.4 ([MQTT-3.3.2-8]): a Topic Alias of 0 is a protocol error: the
/// broker sends DISCONNECT 0x94 (Topic Alias invalid) and closes; what came before is kept.
#[test]
fn v5_topic_alias_0_gets_disconnect_0x94_3_3_2_8() {
    let dir = tempfile::tempdir().unwrap();
    let bench = Bench::start(dir.path());
    for (n, transport) in TRANSPORTS.into_iter().enumerate() {
        let mut client = bench.device(transport, Version::V5, "alias");
        client.publish(
            TOPIC,
            1,
            1,
            false,
            reading(DEVICE, n as u64, 72.0).as_bytes(),
        );
        client.expect(PUBACK);
        let mut body = (TOPIC.len() as u16).to_be_bytes().to_vec();
        body.extend_from_slice(TOPIC.as_bytes());
        body.extend_from_slice(&2u16.to_be_bytes());
        body.extend_from_slice(&[3, 0x23, 0, 0]);
        body.extend_from_slice(reading(DEVICE, 100 + n as u64, 72.0).as_bytes());
        client.send(&wire::frame(0x32, &body));
        assert_eq!(client.closed(), Some(Some(0x94)), "{transport:?}");
        assert_eq!(counts(&bench.server.data_dir).readings, n as i64 + 1);
    }
    assert!(bench.server.log().contains("topic_alias_invalid"));
}

/// Issue 21: Eclipse Paho with a persistent session (3.1.1 CleanSession=0; 5.0 Clean Start 0
/// with a Session Expiry) publishing QoS 2 through a link that loses each exchange's first
/// PUBCOMP (and the connection with it): it reconnects, resends PUBREL and completes every
/// message, on our broker as on Debian's Mosquitto; each reading is stored once.
fn paho_persistent_session_with_lost_pubcomps_completes_4_3_3(version: Version) {
    let protocol = if version == Version::V5 { "5" } else { "311" };
    let run = |port: u16, ca: &Path, device: (&Path, &Path), server: (&Path, &Path)| {
        let output = Command::new(python())
            .arg(client_script("paho_lost_pubcomp.py"))
            .args(["--port", &port.to_string(), "--ca"])
            .arg(ca)
            .arg("--cert")
            .arg(device.0)
            .arg("--key")
            .arg(device.1)
            .arg("--proxy-cert")
            .arg(server.0)
            .arg("--proxy-key")
            .arg(server.1)
            .args([
                "--device",
                DEVICE,
                "--protocol",
                protocol,
                "--messages",
                "4",
            ])
            .output()
            .expect("running python3 with paho-mqtt");
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        serde_json::from_str::<serde_json::Value>(stdout.lines().last().unwrap_or(""))
            .unwrap_or_else(|_| panic!("paho said: {stdout}"))
    };
    let dir = tempfile::tempdir().unwrap();
    let ours_dir = dir.path().join("ours");
    std::fs::create_dir(&ours_dir).unwrap();
    let bench = Bench::start(&ours_dir);
    let certs = bench.server.data_dir.join("certs");
    let ours = run(
        bench.server.mqtts.unwrap().port(),
        &certs.join("ca.crt"),
        (
            &certs.join(format!("devices/{DEVICE}.crt")),
            &certs.join(format!("devices/{DEVICE}.key")),
        ),
        (&certs.join("server.crt"), &certs.join("server.key")),
    );
    let pki = Pki::init(&dir.path().join("pki"));
    let mosquitto = Mosquitto::start(dir.path(), &pki);
    let (cert, key) = pki.client(DEVICE);
    let theirs = run(
        mosquitto.port,
        &pki.ca(),
        (&cert, &key),
        (&pki.dir.join("server.crt"), &pki.dir.join("server.key")),
    );
    for (broker, summary) in [("vitalwatch", &ours), ("mosquitto", &theirs)] {
        assert_eq!(
            summary["error"],
            serde_json::Value::Null,
            "{broker}: {summary}"
        );
        assert_eq!(summary["dropped"], 4, "{broker}: {summary}");
        assert_eq!(summary["completed"], 4, "{broker}: {summary}");
        let present: Vec<bool> = summary["connects"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["session_present"] == true)
            .collect();
        // The first connection finds no session; each reconnect finds it.
        assert_eq!(
            present,
            [false, true, true, true, true],
            "{broker}: {summary}"
        );
    }
    // The resent PUBREL finds no exchange (its PUBCOMP was sent): 5.0 allows success
    // (Mosquitto) or 0x92 Packet Identifier not found (ours); both end the exchange.
    let reasons = ours["pubcomp_reasons"].as_array().unwrap();
    let expected = if version == Version::V5 { 0x92 } else { 0 };
    assert!(reasons.iter().all(|r| r == expected), "{ours}");
    assert_eq!(
        counts(&bench.server.data_dir).readings,
        4,
        "stored once each"
    );
}
per_version!(paho_persistent_session_with_lost_pubcomps_completes_4_3_3);

/// 3.1.1 sections 3.1.2.4 and 3.2.2.2 / 5.0 sections 3.1.2.4 and 3.2.2.1.1: a persistent
/// session is present on reconnect, and a QoS 2 exchange whose PUBCOMP was lost completes
/// (PUBCOMP success, not a closed connection nor 0x92). Clean start discards it.
fn a_persistent_session_completes_a_lost_pubcomp_3_2_2_2(version: Version) {
    let dir = tempfile::tempdir().unwrap();
    let bench = Bench::start(dir.path());
    for (n, transport) in TRANSPORTS.into_iter().enumerate() {
        let client_id = format!("persistent-{n}");
        let mut connect = bench.connect(transport, &client_id);
        connect.clean = false;
        connect.session_expiry_s = Some(300);
        let mut client = bench.client(transport, version);
        let connack = client.connect(&connect);
        assert_eq!(connack.body[..2], [0, 0], "no session yet");
        client.publish(
            TOPIC,
            2,
            5,
            false,
            reading(DEVICE, n as u64, 72.0).as_bytes(),
        );
        client.expect(PUBREC);
        let saved_before = bench.server.log().matches("MQTT session saved.").count();
        drop(client);
        wait_until(WAIT, "the session saved", || {
            (bench.server.log().matches("MQTT session saved.").count() > saved_before).then_some(())
        });
        let mut client = bench.client(transport, version);
        let connack = client.connect(&connect);
        assert_eq!(connack.body[..2], [1, 0], "{transport:?}: session present");
        client.pubrel(5);
        let pubcomp = client.expect(PUBCOMP);
        assert_eq!((pubcomp.packet_id(), pubcomp.ack_reason()), (5, 0));
        client.disconnect();
        assert!(client.closed().is_some());
        let mut client = bench.client(transport, version);
        let mut clean = connect.clone();
        clean.clean = true;
        let connack = client.connect(&clean);
        assert_eq!(connack.body[..2], [0, 0], "clean start: no session");
    }
}
per_version!(a_persistent_session_completes_a_lost_pubcomp_3_2_2_2);

/// 3.1.1 / 5.0 section 3.1.2.10: the broker waits one and a half keep-alive intervals before
/// closing an idle connection, and then closes it; 5.0 section 3.2.2.3.14: a client asking
/// for no keep-alive is told the broker's Server Keep Alive.
fn keep_alive_is_one_and_a_half_intervals_3_1_2_10(version: Version) {
    let dir = tempfile::tempdir().unwrap();
    let bench = Bench::start(dir.path());
    for transport in TRANSPORTS {
        let mut client = bench.client(transport, version);
        let mut connect = bench.connect(transport, "idle");
        connect.keep_alive_s = 2;
        client.connect(&connect);
        // A device on a slow link: its PINGREQ comes at 1.3 intervals, which the spec allows.
        std::thread::sleep(Duration::from_millis(2600));
        client.pingreq();
        assert_eq!(
            client.next(Duration::from_secs(5)).map(|p| p.kind()),
            Some(PINGRESP),
            "{transport:?}: cut before 1.5 intervals"
        );
        assert!(client.closed().is_some(), "an idle connection is closed");
        if version == Version::V5 {
            let mut client = bench.client(transport, version);
            let mut connect = bench.connect(transport, "none");
            connect.keep_alive_s = 0;
            let connack = client.connect(&connect);
            let server_keep_alive = wire::connack_property(&connack, 0x13);
            assert_eq!(server_keep_alive, Some(1200u16.to_be_bytes().to_vec()));
        }
    }
    assert!(bench.server.log().contains("keep_alive_timeout"));
}
per_version!(keep_alive_is_one_and_a_half_intervals_3_1_2_10);

/// A device killed mid-session: its will raises DEVICE_OFFLINE at once (devices here report
/// hourly, so nothing else could) and reaches a consumer on `vitalwatch/wills/<device>`; a
/// device that says DISCONNECT has its will discarded (3.1.1 section 3.14.4).
#[test]
fn a_killed_device_s_will_raises_its_offline_alert_and_reaches_consumers() {
    let dir = tempfile::tempdir().unwrap();
    let bench = Bench::start(dir.path());
    let bed_2 = issue(&bench.server, "bed-2");
    let bed_1 = DeviceCert {
        cert: bench.server.data_dir.join("certs/devices/bed-1.crt"),
        key: bench.server.data_dir.join("certs/devices/bed-1.key"),
    };
    let station = issue_consumer(&bench.server, "station");
    let mut consumer = bench.client_with(Transport::Tls, Version::V311, &station);
    consumer.connect(&Connect::new("station"));
    consumer.subscribe(1, "vitalwatch/wills/#", 0);
    let alerts = |device: &str| -> Vec<serde_json::Value> {
        let answer = get(
            &agent(),
            &bench
                .server
                .url(&format!("/api/alerts?device_id={device}&state=active")),
        );
        answer.json["alerts"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    };
    for (device, cert, version, abrupt) in [
        ("bed-2", &bed_2, Version::V311, false),
        (DEVICE, &bed_1, Version::V5, true),
    ] {
        let mut client = bench.client_with(Transport::Tls, version, cert);
        let mut connect = Connect::new(device);
        connect.keep_alive_s = 5;
        connect.will = Some((TOPIC, b"power lost".as_slice()));
        assert_eq!(client.connect(&connect).body[1], 0);
        client.publish(TOPIC, 1, 1, false, reading(device, 1, 72.0).as_bytes());
        client.expect(PUBACK);
        if abrupt {
            drop(client);
        } else {
            client.disconnect();
            assert!(client.closed().is_some());
        }
    }
    let will = consumer.next(WAIT).expect("the will reaches the consumer");
    assert_eq!(will.kind(), PUBLISH);
    let text = String::from_utf8_lossy(&will.body).into_owned();
    assert!(text.contains("vitalwatch/wills/bed-1"), "{text}");
    assert!(text.contains("power lost"), "{text}");
    let offline = wait_until(WAIT, "DEVICE_OFFLINE from the will", || {
        alerts(DEVICE)
            .into_iter()
            .find(|alert| alert["condition"] == "DEVICE_OFFLINE")
    });
    assert_eq!(offline["class"], "technical");
    // The cleanly disconnected device: no will, no alert.
    assert!(consumer.next(Duration::from_millis(500)).is_none());
    assert!(alerts("bed-2").is_empty());
}

/// Issue 21: `/health` `readings.stored` equals `SELECT COUNT(*)` after a flood in which the
/// clients hang up with their QoS 1 publishes still in flight.
#[test]
fn stored_readings_counter_equals_the_database_after_a_flood_with_disconnects() {
    let dir = tempfile::tempdir().unwrap();
    let bench = Bench::start(dir.path());
    for round in 0..6u64 {
        let transport = TRANSPORTS[round as usize % 2];
        let version = if round < 3 {
            Version::V311
        } else {
            Version::V5
        };
        let mut client = bench.client(transport, version);
        client.connect_no_answer(&bench.connect(transport, &format!("flood-{round}")));
        let connack = client.next(WAIT);
        assert!(
            connack.as_ref().is_some_and(|c| c.body[1] == 0),
            "round {round}: {connack:?} {}",
            bench.server.log()
        );
        for n in 0..40u64 {
            let payload = reading(DEVICE, round * 100 + n, 72.0);
            client.publish(TOPIC, 1, (n + 1) as u16, false, payload.as_bytes());
        }
        // Hang up without waiting for a single PUBACK.
        drop(client);
    }
    let stored = || {
        let health = get(&agent(), &bench.server.url("/health"));
        health.json["readings"]["stored"].as_i64().unwrap_or(-1)
    };
    // /metrics, from the token-free loopback listener: the sum over transports.
    let exported = || {
        let url = format!("http://{}/metrics", bench.server.listeners["metrics"]);
        let text = agent()
            .get(&url)
            .call()
            .ok()
            .and_then(|mut response| response.body_mut().read_to_string().ok())
            .unwrap_or_default();
        text.lines()
            .filter(|line| line.starts_with("vitalwatch_readings_stored_total{"))
            .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
            .sum::<f64>() as i64
    };
    // All three settle once the last commit is in; they must settle equal.
    let settled = crate::support::poll_until(WAIT, || {
        let before = counts(&bench.server.data_dir).readings;
        let counted = stored();
        let metric = exported();
        let after = counts(&bench.server.data_dir).readings;
        (before == after && counted == after && metric == after && after > 0).then_some(after)
    });
    let rows = counts(&bench.server.data_dir).readings;
    assert!(
        settled.is_some(),
        "stored={} metrics={} rows={rows}",
        stored(),
        exported()
    );
}
