//! The Jepsen-style durability test on PostgreSQL (the harness is `jepsen.rs`'s): a QoS 1
//! flood from Paho clients into `serve` on a real cluster, VitalWatch killed with SIGKILL at
//! random moments and restarted, then the database itself crashed mid-flood
//! (`pg_ctl stop -m immediate`) and started again while VitalWatch keeps running: it must
//! recover on its own and acknowledge the rest. Every acknowledged reading is stored exactly
//! once.

use crate::jepsen::{BASE_MS, Lcg, Tally, read_acks, spawn_flood_client, tally};
use crate::mqtt::{DeviceCert, issue_on};
use crate::support::postgres::Cluster;
use crate::support::{Guarded, Server, ServerOptions, agent, get, wait_until};
use std::collections::HashSet;
use std::path::Path;
use std::time::{Duration, Instant};

const CLIENTS: usize = 4;
const MIN_ACKED: usize = 5_000;
const MIN_KILLS: usize = 5;
const MAX_ROUNDS: u64 = 10;
const PER_ROUND: u64 = 100_000;
/// Readings per client in the round whose database crashes: all must be acknowledged.
const CRASH_ROUND_COUNT: u64 = 2_500;

fn start(dir: &Path, url: &str) -> Server {
    Server::start_with(ServerOptions {
        env: vec![("VITALWATCH_DATABASE_URL".to_owned(), url.to_owned())],
        ..ServerOptions::new(dir)
    })
}

/// Waits (bounded) for every client to exit, killing the ones that do not.
fn finish(children: &mut [(String, Guarded)], within: Duration) {
    let deadline = Instant::now() + within;
    for (_, child) in children.iter_mut() {
        if child
            .wait_timeout(deadline.saturating_duration_since(Instant::now()))
            .is_none()
        {
            child.kill();
        }
    }
}

#[test]
fn sigkills_and_a_database_crash_mid_flood_lose_no_acknowledged_reading() {
    let cluster = Cluster::start();
    let database = cluster.database();
    let url = database.url();
    let dir = tempfile::tempdir().unwrap();
    let mut server = start(dir.path(), &url);
    let devices: Vec<(String, DeviceCert)> = (0..CLIENTS)
        .map(|c| {
            let id = format!("jepsen-{c}");
            let cert = issue_on(&server, &id, &url);
            (id, cert)
        })
        .collect();
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    let mut rng = Lcg(seed);
    let mut acked: HashSet<(String, u64)> = HashSet::new();
    let mut sent: HashSet<(String, u64)> = HashSet::new();
    let mut kills = 0;
    let mut round = 0;
    while round < MAX_ROUNDS && (kills < MIN_KILLS || acked.len() < MIN_ACKED) {
        if round > 0 {
            server = start(dir.path(), &url);
        }
        let first = round * PER_ROUND;
        let mut children: Vec<_> = devices
            .iter()
            .map(|(id, cert)| {
                let child = spawn_flood_client(&server, id, cert, first, PER_ROUND / 2, 5);
                (id.clone(), child)
            })
            .collect();
        let (acks, readers) = read_acks(&mut children);
        let kill_after = rng.next_in(500, 2_500) as usize;
        wait_until(
            Duration::from_secs(120),
            format_args!("{kill_after} acknowledgements in round {round}"),
            || acks.count() >= kill_after,
        );
        server.kill9();
        kills += 1;
        finish(&mut children, Duration::from_secs(30));
        for reader in readers {
            reader.join().unwrap();
        }
        acked.extend(acks.so_far());
        for (id, _) in &devices {
            sent.extend((first..first + PER_ROUND / 2).map(|n| (id.clone(), n)));
        }
        round += 1;
    }

    // The database crashes mid-flood and comes back; VitalWatch is not restarted.
    let mut server = start(dir.path(), &url);
    let first = round * PER_ROUND;
    let mut children: Vec<_> = devices
        .iter()
        .map(|(id, cert)| {
            let child = spawn_flood_client(&server, id, cert, first, CRASH_ROUND_COUNT, 90);
            (id.clone(), child)
        })
        .collect();
    let (acks, readers) = read_acks(&mut children);
    wait_until(
        Duration::from_secs(120),
        "1000 acknowledgements before the database crashes",
        || acks.count() >= 1_000,
    );
    cluster.stop_immediate();
    let during = acks.count();
    cluster.start_again();
    finish(&mut children, Duration::from_secs(180));
    for reader in readers {
        reader.join().unwrap();
    }
    let crash_round = acks.so_far();
    for (id, _) in &devices {
        sent.extend((first..first + CRASH_ROUND_COUNT).map(|n| (id.clone(), n)));
    }
    assert!(server.is_running(), "VitalWatch rode out the crash");
    assert_eq!(
        crash_round.len(),
        CLIENTS * CRASH_ROUND_COUNT as usize,
        "after the database came back every reading was acknowledged ({during} before the crash)"
    );
    let health = get(&agent(), &server.url("/health"));
    assert_eq!(health.status, 200, "{:?}", health.json);
    assert_eq!(health.json["store"]["status"], "ok", "{:?}", health.json);
    let log = server.log();
    assert!(
        log.contains("The database is reachable again"),
        "the writer noticed the outage and its end: {log}"
    );
    acked.extend(crash_round);
    assert!(server.terminate(), "a clean stop");

    let stored_list: Vec<(String, u64)> = database
        .sql(
            "SELECT device_id || ' ' || (extract(epoch FROM timestamp) * 1000)::int8 FROM readings",
        )
        .lines()
        .map(|line| {
            let (device, ms) = line.split_once(' ').expect("device and time");
            (device.to_owned(), ms.parse::<u64>().unwrap() - BASE_MS)
        })
        .collect();
    let Tally {
        lost,
        duplicated,
        recovered,
        unexpected,
        stored,
    } = tally(&acked, &sent, &stored_list);
    eprintln!(
        "jepsen (postgres): {kills} SIGKILLs and 1 database crash, {} acknowledged, {stored} stored: lost {lost}, duplicated {duplicated}, recovered {recovered}, unexpected {unexpected}",
        acked.len(),
    );
    assert!(kills >= MIN_KILLS);
    assert!(
        acked.len() >= MIN_ACKED,
        "only {} acknowledged",
        acked.len()
    );
    assert_eq!(lost, 0, "acknowledged readings were lost");
    assert_eq!(duplicated, 0, "readings were stored twice");
    assert_eq!(unexpected, 0, "readings that were never sent were stored");
}
