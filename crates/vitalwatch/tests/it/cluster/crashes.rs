//! Nodes dying mid-flood in topology A: SIGKILL of a random node at random moments (five
//! times, restarted after each), and a rolling restart (SIGTERM, one node at a time). QoS 1
//! devices flood through HAProxy; after each stop the devices cut off reconnect through the
//! balancer to the surviving nodes (every reading they send then is acknowledged). Reported in
//! Jepsen's terms (`jepsen.rs`): 0 acknowledged readings lost, 0 duplicated, nothing stored
//! that was never sent.

use super::fleet::{Fleet, assert_exactly_once, seed};
use crate::jepsen::{Lcg, Tally};
use crate::support::cluster::{Kind, Node, Pair, Topology, exclusive};
use crate::support::wait_until;
use std::time::Duration;

const NODES: usize = 3;
const DEVICES: usize = 6;
/// Readings per device per round; the stop lands somewhere inside.
const PER_ROUND: u64 = 400;
/// Readings per device sent while the stopped node is down (all must be acknowledged).
const WHILE_DOWN: u64 = 50;

/// Rounds of: a flood, `stop` of one node (chosen by `pick`) after a random number of
/// acknowledgements, a flood while it is down (reconnecting through the balancer: all
/// acknowledged by the others), the node started again. Returns the tally.
fn flood_through_stops(
    prefix: &str,
    rounds: usize,
    mut pick: impl FnMut(usize, &mut Lcg) -> usize,
    mut stop: impl FnMut(&mut Node),
) -> (Tally, usize) {
    let _one_at_a_time = exclusive();
    let pair = Pair::shared();
    let database = pair.database();
    let mut topology = Topology::start(Kind::A, NODES, &pair.url(&database.name));
    let mut fleet = Fleet::new(&topology, prefix, DEVICES);
    let seed = seed();
    eprintln!("{prefix}: seed {seed}");
    let mut rng = Lcg(seed);
    for round in 0..rounds {
        let flood = fleet.flood(&topology, PER_ROUND, 10);
        let stop_after = rng.next_in(100, (DEVICES as u64 * PER_ROUND) / 2) as usize;
        wait_until(
            Duration::from_secs(60),
            format_args!("{stop_after} acknowledgements in round {round}"),
            || flood.acked() >= stop_after,
        );
        let victim = pick(round, &mut rng);
        stop(&mut topology.nodes[victim]);
        let during = fleet.finish(flood, Duration::from_secs(60));
        // The devices cut off reconnect through the balancer; the others take them.
        let again = fleet.flood(&topology, WHILE_DOWN, 30);
        let acked = fleet.finish(again, Duration::from_secs(60));
        assert_eq!(
            acked,
            DEVICES * WHILE_DOWN as usize,
            "round {round}: with {} down every reading sent through the balancer is acknowledged by the others ({during} acknowledged before)",
            topology.nodes[victim].name
        );
        topology.restart(victim);
    }
    for node in &mut topology.nodes {
        assert!(node.terminate(), "{} stops cleanly", node.name);
    }
    let tally = fleet.tally(&pair.primary, &database.name);
    (tally, fleet.acked.len())
}

fn assert_nothing_lost(what: &str, tally: &Tally, acked: usize, min_acked: usize) {
    assert!(acked >= min_acked, "only {acked} acknowledged");
    assert_exactly_once(what, acked, tally);
}

#[test]
fn sigkill_of_a_random_node_mid_flood_five_times_loses_no_acknowledged_reading() {
    const KILLS: usize = 5;
    let (tally, acked) = flood_through_stops(
        "killed",
        KILLS,
        |_, rng| rng.next_in(0, NODES as u64) as usize,
        Node::kill9,
    );
    assert_nothing_lost(
        &format!("{KILLS} SIGKILLs of a random node of {NODES}"),
        &tally,
        acked,
        KILLS * DEVICES * WHILE_DOWN as usize,
    );
}

#[test]
fn a_rolling_restart_mid_flood_loses_no_acknowledged_reading() {
    let (tally, acked) = flood_through_stops(
        "rolling",
        NODES,
        |round, _| round,
        |node| {
            let name = node.name.clone();
            assert!(node.terminate(), "{name} stops cleanly on SIGTERM");
        },
    );
    assert_nothing_lost("rolling restart of 3 nodes", &tally, acked, NODES * DEVICES);
    // A stopping node acknowledges every publish it took before it closes the connection:
    // nothing is stored without its device having seen the PUBACK.
    assert_eq!(
        tally.recovered, 0,
        "readings stored by a stopping node without their PUBACK"
    );
}
