//! Durability under SIGKILL, reported in Jepsen's terms: a flood of QoS 1 readings from Paho
//! clients, the server killed with SIGKILL at random moments (after a random number of
//! acknowledgements), restarted, and every acknowledged reading checked to be stored exactly
//! once.
//!
//! - lost: acknowledged but not stored (must be 0);
//! - duplicated: stored more than once (must be 0);
//! - recovered: stored but never acknowledged (the PUBACK was lost with the process; allowed);
//! - unexpected: stored but never sent (must be 0).
//!
//! The harness (flood clients, their acknowledgements, the tally) is shared with the same test
//! on PostgreSQL (`postgres_jepsen.rs`).

use crate::mqtt::{DeviceCert, ca, client_script, issue, python};
use crate::support::{Guarded, Server, wait_until};
use std::collections::HashSet;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const CLIENTS: usize = 4;
const MIN_ACKED: usize = 20_000;
const MIN_KILLS: usize = 5;
const MAX_ROUNDS: usize = 12;
const PER_ROUND: u64 = 100_000;
pub(crate) const BASE_MS: u64 = 1_767_225_600_000;

/// A small deterministic generator for kill moments (no test-time dependency on a RNG crate).
pub(crate) struct Lcg(pub(crate) u64);

impl Lcg {
    /// A number in `lo..hi`.
    pub(crate) fn next_in(&mut self, lo: u64, hi: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        lo + (self.0 >> 33) % (hi - lo)
    }
}

/// Runs one Paho flood client, which prints each acknowledged index.
fn spawn_client(server: &Server, device: &str, cert: &DeviceCert, start: u64) -> Guarded {
    spawn_flood_client(server, device, cert, start, PER_ROUND / 2, 5)
}

/// A Paho flood client sending readings `start..start + count` of `device` at QoS 1, printing
/// each acknowledged index; once all are sent it waits `timeout_s` at most for the last acks.
pub(crate) fn spawn_flood_client(
    server: &Server,
    device: &str,
    cert: &DeviceCert,
    start: u64,
    count: u64,
    timeout_s: u64,
) -> Guarded {
    let port = server.mqtts.unwrap().port();
    spawn_flood_client_at(port, &ca(server), device, cert, start, count, timeout_s)
}

/// [`spawn_flood_client`] against any broker on loopback `port` whose certificate `ca` signed
/// (a balancer in front of several servers, an external broker).
pub(crate) fn spawn_flood_client_at(
    port: u16,
    ca: &std::path::Path,
    device: &str,
    cert: &DeviceCert,
    start: u64,
    count: u64,
    timeout_s: u64,
) -> Guarded {
    let mut command = Command::new(python());
    command
        .arg(client_script("paho_publish.py"))
        .args(["--port", &port.to_string(), "--ca"])
        .arg(ca)
        .arg("--cert")
        .arg(&cert.cert)
        .arg("--key")
        .arg(&cert.key)
        .args([
            "--device",
            device,
            "--qos",
            "1",
            "--inflight",
            "64",
            "--stream-acks",
        ])
        .args([
            "--count",
            &count.to_string(),
            "--start",
            &start.to_string(),
            "--timeout",
            &timeout_s.to_string(),
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    Guarded::spawn(&mut command)
}

/// A thread reading one client's acknowledgements into the flood's [`Acks`]; it ends with the
/// client's output.
pub(crate) type AckReader = std::thread::JoinHandle<()>;

/// The acknowledgements of a flood so far, as its clients print them.
#[derive(Default)]
pub(crate) struct Acks(Mutex<Vec<(String, u64)>>);

impl Acks {
    /// How many so far.
    pub(crate) fn count(&self) -> usize {
        self.0.lock().unwrap().len()
    }

    /// The (device, index) pairs acknowledged so far.
    pub(crate) fn so_far(&self) -> HashSet<(String, u64)> {
        self.0.lock().unwrap().iter().cloned().collect()
    }
}

/// Readers of the clients' acknowledgements: those so far (as the clients print them), and
/// one [`AckReader`] per client.
pub(crate) fn read_acks(children: &mut [(String, Guarded)]) -> (Arc<Acks>, Vec<AckReader>) {
    let acks = Arc::new(Acks::default());
    let readers = children
        .iter_mut()
        .map(|(id, child)| {
            let stdout = child.take_stdout();
            let id = id.clone();
            let acks = Arc::clone(&acks);
            std::thread::spawn(move || {
                for line in BufReader::new(stdout).lines() {
                    let Ok(line) = line else { break };
                    if let Some(n) = line.strip_prefix("ack ") {
                        let acked = (id.clone(), n.trim().parse::<u64>().unwrap());
                        acks.0.lock().unwrap().push(acked);
                    }
                }
            })
        })
        .collect();
    (acks, readers)
}

/// The tally of a run: `stored_list` holds every stored (device, index), repeats included.
#[derive(Debug)]
pub(crate) struct Tally {
    pub lost: usize,
    pub duplicated: usize,
    pub recovered: usize,
    pub unexpected: usize,
    pub stored: usize,
}

pub(crate) fn tally(
    acked: &HashSet<(String, u64)>,
    sent: &HashSet<(String, u64)>,
    stored_list: &[(String, u64)],
) -> Tally {
    let stored: HashSet<(String, u64)> = stored_list.iter().cloned().collect();
    Tally {
        lost: acked.difference(&stored).count(),
        duplicated: stored_list.len() - stored.len(),
        recovered: stored.difference(acked).count(),
        unexpected: stored.difference(sent).count(),
        stored: stored.len(),
    }
}

#[test]
fn sigkill_mid_flood_loses_no_acknowledged_reading() {
    let dir = tempfile::tempdir().unwrap();
    // PostgreSQL's twin is postgres_jepsen.rs; this one is about SQLite's WAL.
    crate::support::sqlite_only(dir.path(), "SIGKILL against SQLite's WAL");
    let mut server = Server::start(dir.path());
    let devices: Vec<(String, DeviceCert)> = (0..CLIENTS)
        .map(|c| {
            let id = format!("jepsen-{c}");
            let cert = issue(&server, &id);
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
    for round in 0..MAX_ROUNDS as u64 {
        if kills >= MIN_KILLS && acked.len() >= MIN_ACKED {
            break;
        }
        if round > 0 {
            server = Server::start(dir.path());
        }
        let start = round * PER_ROUND;
        let mut children: Vec<_> = devices
            .iter()
            .map(|(id, cert)| (id.clone(), spawn_client(&server, id, cert, start)))
            .collect();
        let (acks, readers) = read_acks(&mut children);
        // The kill lands at a random point of the flood: after a random number of
        // acknowledgements (the clients can send 200 000 this round).
        let kill_after = rng.next_in(2_000, 8_000) as usize;
        wait_until(
            Duration::from_secs(60),
            format_args!("{kill_after} acknowledgements in round {round}"),
            || acks.count() >= kill_after,
        );
        server.kill9();
        kills += 1;
        // The clients give up by themselves (--timeout 5) once the server is gone.
        let deadline = Instant::now() + Duration::from_secs(30);
        for (_, child) in &mut children {
            if child
                .wait_timeout(deadline.saturating_duration_since(Instant::now()))
                .is_none()
            {
                child.kill();
            }
        }
        for reader in readers {
            reader.join().unwrap();
        }
        acked.extend(acks.so_far());
        for (id, _) in &devices {
            for n in start..start + PER_ROUND / 2 {
                sent.insert((id.clone(), n));
            }
        }
    }

    // Restart once more so recovery runs, then read what is stored.
    let server = Server::start(dir.path());
    let conn = rusqlite::Connection::open(server.data_dir.join("anomalies.db")).unwrap();
    let rows: Vec<(String, String)> = conn
        .prepare("SELECT device_id, timestamp FROM readings")
        .unwrap()
        .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let stored_list: Vec<(String, u64)> = rows
        .into_iter()
        .map(|(device, ts)| {
            let ms = chrono::DateTime::parse_from_rfc3339(&ts)
                .unwrap()
                .timestamp_millis() as u64;
            (device, ms - BASE_MS)
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
        "jepsen: {kills} SIGKILLs, {} acknowledged, {stored} stored: lost {lost}, duplicated {duplicated}, recovered {recovered}, unexpected {unexpected}",
        acked.len(),
    );
    assert!(kills >= MIN_KILLS);
    assert!(
        acked.len() >= MIN_ACKED,
        "only {} readings were acknowledged",
        acked.len()
    );
    assert_eq!(lost, 0, "acknowledged readings were lost");
    assert_eq!(duplicated, 0, "readings were stored twice");
    assert_eq!(unexpected, 0, "readings that were never sent were stored");
}
