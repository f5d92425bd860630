//! A simulated fleet (`vitalwatch simulate`, 100 devices at QoS 1) through each topology:
//! every reading stored exactly once, and every node's API answers the same devices, reading
//! counts and alerts (they all read the one database).

use crate::support::cluster::{Kind, Pair, Topology, exclusive};
use crate::support::{WAIT, agent, command, get, poll_until, wait_until};
use serde_json::Value;

const DEVICES: u64 = 100;
const COUNT: u64 = 20;

/// `vitalwatch simulate` of the built-in population against the topology's way in; returns
/// its JSON report.
fn simulate(topology: &Topology) -> Value {
    let output = command(topology.dir.path())
        .arg("simulate")
        .args(["--devices", &DEVICES.to_string()])
        .args(["--count", &COUNT.to_string()])
        .args([
            "--interval",
            "1s",
            "--rate",
            "max",
            "--qos",
            "1",
            "--seed",
            "14",
        ])
        .args([
            "--broker",
            &format!("mqtts://127.0.0.1:{}", topology.mqtts_port()),
        ])
        .arg("--ca")
        .arg(topology.ca())
        .arg("--certs-dir")
        .arg(&topology.pki.dir)
        .args(["--data-dir", "simulator", "--json"])
        .env_remove("MQTT_TOPIC")
        .output()
        .expect("running vitalwatch simulate");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "simulate failed: {stdout}\n{}\nthe nodes' refusals:\n{}",
        String::from_utf8_lossy(&output.stderr),
        topology
            .nodes
            .iter()
            .flat_map(|n| n
                .log()
                .lines()
                .filter(|l| l.contains("WARN") || l.contains("ERROR") || l.contains("tls."))
                .map(str::to_owned)
                .collect::<Vec<_>>())
            .collect::<Vec<_>>()
            .join("\n")
    );
    serde_json::from_str(stdout.lines().last().unwrap_or("")).expect("a JSON report")
}

fn fleet_through(kind: Kind) {
    let _one_at_a_time = exclusive();
    let pair = Pair::shared();
    let database = pair.database();
    let topology = Topology::start(kind, 3, &pair.url(&database.name));
    let report = simulate(&topology);
    let total = DEVICES * COUNT;
    assert_eq!(report["sent"], total, "{report}");
    assert_eq!(report["acked"], total, "{report}");
    assert_eq!(report["failed"], 0, "{report}");
    // In A a PUBACK means committed; in B the broker acknowledged and the nodes commit what
    // it delivers: wait for that.
    let count = |sql: &str| database.sql(sql).parse::<u64>().expect("a count");
    wait_until(WAIT, "every acknowledged reading to be stored", || {
        count("SELECT count(*) FROM readings") >= total
    });
    assert_eq!(
        count("SELECT count(*) FROM readings"),
        total,
        "stored once each"
    );
    assert_eq!(
        count("SELECT count(DISTINCT (device_id, timestamp)) FROM readings"),
        total,
        "no reading stored twice"
    );

    // The same story from every node (the balancer's API too, in A). Alert transitions are
    // committed just after the readings that caused them: wait until every node agrees.
    let ask = || -> Vec<(Value, Value)> {
        topology
            .nodes
            .iter()
            .map(|node| {
                let devices = get(&agent(), &node.url("/api/devices"));
                assert_eq!(devices.status, 200, "{}", node.name);
                let alerts = get(&agent(), &node.url("/api/alerts?limit=1000"));
                assert_eq!(alerts.status, 200, "{}", node.name);
                (devices.json, alerts.json)
            })
            .collect()
    };
    let answers = poll_until(WAIT, || {
        let answers = ask();
        answers.iter().all(|a| a == &answers[0]).then_some(answers)
    })
    .unwrap_or_else(|| {
        let answers = ask();
        let summary: Vec<String> = answers
            .iter()
            .map(|(d, a)| format!("{} devices, {} alerts", d["count"], a["count"]))
            .collect();
        panic!("the nodes never agreed: {summary:?}")
    });
    let (devices, _) = &answers[0];
    assert_eq!(devices["count"], DEVICES, "{devices}");
    let readings: u64 = devices["devices"]
        .as_array()
        .expect("a device list")
        .iter()
        .map(|d| d["total_readings"].as_u64().expect("a reading count"))
        .sum();
    assert_eq!(readings, total, "the API counts every stored reading");
    if let Some(balancer) = &topology.balancer {
        let through = get(&agent(), &balancer.url("/api/devices"));
        assert_eq!(through.json, answers[0].0, "the balancer's API");
    }
    if kind == Kind::B {
        // The share group split the stream: every node committed part of it.
        for node in &topology.nodes {
            let metrics = text(&node.url("/metrics"));
            assert!(
                stored_by(&metrics) > 0.0,
                "{} stored nothing:\n{metrics}",
                node.name
            );
        }
    }
    eprintln!("topology {kind:?}: {report}");
}

/// A GET's body as text (`curl`: the exposition is not JSON).
pub(super) fn text(url: &str) -> String {
    let output = std::process::Command::new("curl")
        .args(["-sf", url])
        .output()
        .expect("running curl");
    assert!(output.status.success(), "GET {url} failed");
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// `vitalwatch_readings_stored_total` (all labels summed) from a Prometheus exposition.
pub(super) fn stored_by(metrics: &str) -> f64 {
    metrics
        .lines()
        .filter(|line| line.starts_with("vitalwatch_readings_stored_total"))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[test]
fn topology_a_stores_a_simulated_fleet_once_and_every_node_agrees() {
    fleet_through(Kind::A);
}

#[test]
fn topology_b_stores_a_simulated_fleet_once_and_every_node_agrees() {
    fleet_through(Kind::B);
}
