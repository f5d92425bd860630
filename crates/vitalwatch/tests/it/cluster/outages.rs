//! The rows of docs/SCALING.md's failure table that are not a node crash or a database
//! failover: the balancer restarted mid-flood (A), a node SIGKILLed and the broker restarted
//! in topology B, and the network between one node and the database cut and restored (A).
//! Reported in Jepsen's terms, as `crashes` does.

use super::fleet::{Fleet, assert_exactly_once, assert_none_invented, report, seed};
use super::topologies::{stored_by, text};
use crate::jepsen::{Lcg, Tally};
use crate::support::cluster::{Kind, Pair, Relay, Topology, exclusive};
use crate::support::mosquitto::Mosquitto;
use crate::support::postgres::{PASSWORD, ROLE};
use crate::support::{WAIT, agent, get, poll_until, wait_until};
use std::collections::HashSet;
use std::time::Duration;

const DEVICES: usize = 6;

#[test]
fn restarting_the_balancer_mid_flood_loses_no_acknowledged_reading() {
    let _one_at_a_time = exclusive();
    let pair = Pair::shared();
    let database = pair.database();
    let mut topology = Topology::start(Kind::A, 3, &pair.url(&database.name));
    let mut fleet = Fleet::new(&topology, "balanced", DEVICES);
    let mut rng = Lcg(seed());
    let flood = fleet.flood(&topology, 400, 10);
    let at = rng.next_in(100, 1200) as usize;
    wait_until(
        Duration::from_secs(60),
        format_args!("{at} acknowledgements before the balancer restart"),
        || flood.acked() >= at,
    );
    topology
        .balancer
        .as_mut()
        .expect("topology A has a balancer")
        .restart();
    let during = fleet.finish(flood, Duration::from_secs(60));
    // Every device reconnects through the new balancer and is acknowledged again.
    let again = fleet.flood(&topology, 50, 30);
    let acked = fleet.finish(again, Duration::from_secs(60));
    assert_eq!(
        acked,
        DEVICES * 50,
        "after the balancer restart every reading is acknowledged ({during} acknowledged before)"
    );
    for node in &mut topology.nodes {
        assert!(node.terminate(), "{} stops cleanly", node.name);
    }
    let tally = fleet.tally(&pair.primary, &database.name);
    assert_exactly_once("balancer restart", fleet.acked.len(), &tally);
}

/// Waits (bounded) until every reading the broker acknowledged is stored (in B the PUBACK is
/// the broker's; the nodes commit what it delivers), and returns the tally then.
fn tally_when_stored(fleet: &Fleet, pair: &Pair, database: &str, within: Duration) -> Tally {
    poll_until(within, || {
        let tally = fleet.tally(&pair.primary, database);
        (tally.lost == 0).then_some(())
    });
    fleet.tally(&pair.primary, database)
}

/// A flood of 300 readings per device in topology B, the broker restarted (`how`) once 300
/// are acknowledged, the flood finished, and every node back on the broker. Returns what the
/// broker had acknowledged before it was stopped.
fn flood_across_a_broker_restart(
    fleet: &mut Fleet,
    topology: &mut Topology,
    what: &str,
    how: impl FnOnce(&mut Mosquitto),
) -> HashSet<(String, u64)> {
    let flood = fleet.flood(topology, 300, 10);
    wait_until(
        Duration::from_secs(60),
        format!("acknowledgements before the broker {what}"),
        || flood.acked() >= 300,
    );
    let before = flood.acked_so_far();
    how(topology.broker.as_mut().expect("topology B has a broker"));
    fleet.finish(flood, Duration::from_secs(60));
    for node in &topology.nodes {
        topology.wait_ready(node);
    }
    before
}

/// Waits (bounded) until each set of `expected` (readings, what they are) is stored, then
/// reports the tally as `what` and asserts nothing was stored twice or invented.
fn assert_kept(
    fleet: &Fleet,
    pair: &Pair,
    database: &str,
    what: &str,
    expected: &[(&HashSet<(String, u64)>, &str)],
) {
    for (readings, description) in expected {
        let stored = || {
            super::fleet::stored(&pair.primary, database)
                .into_iter()
                .filter(|reading| readings.contains(reading))
                .collect::<HashSet<_>>()
                .len()
        };
        wait_until(
            Duration::from_secs(60),
            format!("{description} to be stored"),
            || stored() == readings.len(),
        );
    }
    let tally = fleet.tally(&pair.primary, database);
    report(what, fleet.acked.len(), &tally);
    assert_none_invented(&tally);
}

/// A flood of 50 readings per device, every one acknowledged; returns them.
fn flood_all_acknowledged(fleet: &mut Fleet, topology: &Topology) -> HashSet<(String, u64)> {
    let first = fleet.next_index();
    let after = fleet.flood(topology, 50, 30);
    let acked = fleet.finish(after, Duration::from_secs(60));
    assert_eq!(
        acked,
        DEVICES * 50,
        "devices reconnect to the restarted broker"
    );
    fleet
        .acked
        .iter()
        .filter(|(_, n)| *n >= first)
        .cloned()
        .collect()
}

#[test]
fn in_topology_b_a_killed_node_and_a_restarted_broker_lose_nothing_the_broker_kept() {
    let _one_at_a_time = exclusive();
    let pair = Pair::shared();
    let database = pair.database();
    let name = database.name.clone();
    let mut topology = Topology::start(Kind::B, 3, &pair.url(&name));
    let mut fleet = Fleet::new(&topology, "shared", DEVICES);
    let mut rng = Lcg(seed());

    // 1. SIGKILL of a node mid-flood: the broker acknowledged every reading; what it had
    // handed the dead node unacknowledged waits in that node's persistent session.
    let flood = fleet.flood(&topology, 300, 30);
    let at = rng.next_in(100, 900) as usize;
    wait_until(
        Duration::from_secs(60),
        format_args!("{at} acknowledgements before the kill"),
        || flood.acked() >= at,
    );
    let victim = rng.next_in(0, 3) as usize;
    topology.nodes[victim].kill9();
    fleet.finish(flood, Duration::from_secs(60));
    let down = fleet.flood(&topology, 50, 30);
    let acked = fleet.finish(down, Duration::from_secs(60));
    assert_eq!(
        acked,
        DEVICES * 50,
        "the broker acknowledges with a node down"
    );
    let survivors: Vec<usize> = (0..3).filter(|i| *i != victim).collect();
    let stored_by_survivors = || -> f64 {
        survivors
            .iter()
            .map(|i| stored_by(&text(&topology.nodes[*i].url("/metrics"))))
            .sum()
    };
    wait_until(WAIT, "the surviving nodes to store readings", || {
        stored_by_survivors() > 0.0
    });
    topology.restart(victim);
    let tally = tally_when_stored(&fleet, pair, &name, Duration::from_secs(60));
    assert_exactly_once("B: node SIGKILL", fleet.acked.len(), &tally);

    // 2. The broker stopped (SIGTERM: it saves its persistence file, the nodes' sessions and
    // their queues with it) and started again mid-flood: everything it acknowledged before the
    // stop is stored. What it acknowledges after its restart and before a node has subscribed
    // again goes to no one: Mosquitto 2.0.11 keeps a persistent session's plain subscriptions
    // across a restart but not its shared ones (`$share/…`, docs/SCALING.md), and drops a
    // QoS 1 message that has no subscriber — lost *by the broker*, after its PUBACK. Nothing is
    // stored twice or invented, and what it acknowledges once the nodes are back is stored.
    let before = flood_across_a_broker_restart(&mut fleet, &mut topology, "restart", |broker| {
        broker.restart_gracefully()
    });
    let after = flood_all_acknowledged(&mut fleet, &topology);
    assert_kept(
        &fleet,
        pair,
        &name,
        "B: broker restart (SIGTERM)",
        &[
            (
                &before,
                "the readings acknowledged before the broker's stop",
            ),
            (
                &after,
                "the readings acknowledged after the nodes resubscribed",
            ),
        ],
    );

    // 3. The broker crashes (SIGKILL) mid-flood: what it acknowledged since its last autosave
    // (1 s here) may be lost as well. Nothing is stored twice or invented, and what it
    // acknowledges after it is back is stored.
    flood_across_a_broker_restart(&mut fleet, &mut topology, "crash", |broker| {
        broker.restart()
    });
    let after = flood_all_acknowledged(&mut fleet, &topology);
    assert_kept(
        &fleet,
        pair,
        &name,
        "B: broker crash (SIGKILL)",
        &[(&after, "the readings acknowledged after the crash")],
    );
    for node in &mut topology.nodes {
        assert!(node.terminate(), "{} stops cleanly", node.name);
    }
}

#[test]
fn a_node_cut_from_the_database_holds_its_acknowledgements_and_resumes_by_itself() {
    let _one_at_a_time = exclusive();
    let pair = Pair::shared();
    let database = pair.database();
    let name = database.name.clone();
    let mut topology = Topology::start(Kind::A, 3, &pair.url(&name));
    // Node 1 reaches the database through a relay that the test cuts.
    let mut relay = Relay::start(pair.primary.port());
    assert!(topology.nodes[0].terminate(), "node1 stops cleanly");
    topology.nodes[0].set_database_url(&format!(
        "postgres://{ROLE}:{PASSWORD}@127.0.0.1:{}/{name}",
        relay.port
    ));
    topology.restart(0);
    let mut fleet = Fleet::new(&topology, "cut", DEVICES);
    let flood = fleet.flood(&topology, 800, 120);
    wait_until(
        Duration::from_secs(60),
        "200 acknowledgements before the cut",
        || flood.acked() >= 200,
    );
    let node1 = topology.nodes[0].url("/metrics");
    let stored_by_node1 = || stored_by(&text(&node1));
    wait_until(WAIT, "node1 to store readings of its devices", || {
        stored_by_node1() > 0.0
    });

    relay.cut();
    let ready = topology.nodes[0].url("/ready");
    wait_until(WAIT, "node1 to say it is not ready", || {
        get(&agent(), &ready).status == 503
    });
    let held = stored_by_node1();
    // The others carry on while node1 commits (and so acknowledges) nothing.
    let at_cut = flood.acked();
    wait_until(
        Duration::from_secs(60),
        "the other nodes to acknowledge 300 more",
        || flood.acked() >= at_cut + 300,
    );
    assert_eq!(
        stored_by_node1(),
        held,
        "node1 committed readings while cut from the database"
    );

    relay.restore();
    wait_until(
        Duration::from_secs(30),
        "node1 to commit again by itself",
        || stored_by_node1() > held,
    );
    wait_until(WAIT, "node1 to be ready again", || {
        get(&agent(), &ready).status == 200
    });
    fleet.finish(flood, Duration::from_secs(150));
    let again = fleet.flood(&topology, 50, 30);
    let acked = fleet.finish(again, Duration::from_secs(60));
    assert_eq!(acked, DEVICES * 50, "every device is served after the cut");
    for node in &mut topology.nodes {
        assert!(node.terminate(), "{} stops cleanly", node.name);
    }
    let tally = fleet.tally(&pair.primary, &name);
    assert_exactly_once("node-database cut", fleet.acked.len(), &tally);
}
