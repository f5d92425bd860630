//! The database fails over mid-flood: the primary stops as a crash would (`pg_ctl stop -m
//! immediate`) and the synchronous standby is promoted (`pg_ctl promote`). No node is
//! restarted: each reconnects through the multi-host URL (`target_session_attrs=read-write`
//! picks the new primary), ingest resumes within 30 s, and every reading acknowledged before
//! or after is on the new primary exactly once.

use super::fleet::{Fleet, assert_exactly_once};
use crate::support::cluster::{Kind, Pair, Topology, exclusive};
use crate::support::{agent, get, poll_until, wait_until};
use std::time::{Duration, Instant};

const DEVICES: usize = 4;
const COUNT: u64 = 1_500;

#[test]
fn failing_the_database_over_mid_flood_loses_no_acknowledged_reading() {
    let _one_at_a_time = exclusive();
    let pair = Pair::start();
    let database = pair.database();
    let name = database.name.clone();
    let mut topology = Topology::start(Kind::A, 3, &pair.url(&name));
    let mut fleet = Fleet::new(&topology, "failover", DEVICES);
    // A client waits at most 90 s for its last acknowledgements: the outage fits in that.
    let flood = fleet.flood(&topology, COUNT, 90);
    wait_until(
        Duration::from_secs(60),
        "500 acknowledgements before the failover",
        || flood.acked() >= 500,
    );
    pair.primary.stop_immediate();
    let stopped = Instant::now();
    let at_failure = flood.acked();
    pair.standby.promote();
    // Ingest resumes by itself: acknowledgements flow again, committed on the new primary.
    let resumed = poll_until(Duration::from_secs(30), || flood.acked() > at_failure + 100);
    assert!(
        resumed.is_some(),
        "ingest did not resume within 30 s of the failover ({} acknowledged, {at_failure} at the failure); logs:\n{}",
        flood.acked(),
        topology
            .nodes
            .iter()
            .map(|n| n.log())
            .collect::<Vec<_>>()
            .join("\n")
    );
    eprintln!(
        "failover: acknowledgements resumed {:.1} s after the primary stopped",
        stopped.elapsed().as_secs_f64()
    );
    let acked = fleet.finish(flood, Duration::from_secs(150));
    assert_eq!(
        acked,
        DEVICES * COUNT as usize,
        "after the failover every reading was acknowledged ({at_failure} before it)"
    );
    for node in &mut topology.nodes {
        assert!(
            node.server.as_mut().is_some_and(|s| s.is_running()),
            "{} rode it out",
            node.name
        );
        let health = get(&agent(), &node.url("/health"));
        assert_eq!(
            health.json["store"]["status"], "ok",
            "{}: {:?}",
            node.name, health.json
        );
    }
    for node in &mut topology.nodes {
        assert!(node.terminate(), "{} stops cleanly", node.name);
    }
    let tally = fleet.tally(&pair.standby, &name);
    assert_exactly_once("failover", fleet.acked.len(), &tally);
}
