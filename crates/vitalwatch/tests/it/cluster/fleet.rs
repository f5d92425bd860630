//! Flood clients for the cluster tests: Paho devices at QoS 1 through the topology's way in,
//! what each was acknowledged, and the tally against what PostgreSQL stored.

use crate::jepsen::{AckReader, Acks, BASE_MS, Tally, read_acks, spawn_flood_client_at, tally};
use crate::mqtt::DeviceCert;
use crate::support::Guarded;
use crate::support::cluster::Topology;
use crate::support::postgres::Cluster;
use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The devices of a test, and everything they sent and were acknowledged so far.
pub struct Fleet {
    devices: Vec<(String, DeviceCert)>,
    pub acked: HashSet<(String, u64)>,
    pub sent: HashSet<(String, u64)>,
    /// The first index of the next flood (indices never repeat: each is a distinct reading).
    next: u64,
}

/// One client per device, running.
pub struct Flood {
    children: Vec<(String, Guarded)>,
    readers: Vec<AckReader>,
    acks: Arc<Acks>,
    first: u64,
    count: u64,
}

impl Fleet {
    /// `n` devices named `<prefix>-<i>`, with certificates from the topology's CA.
    pub fn new(topology: &Topology, prefix: &str, n: usize) -> Fleet {
        let devices = (0..n)
            .map(|i| {
                let id = format!("{prefix}-{i}");
                let (cert, key) = topology.device(&id);
                (id, DeviceCert { cert, key })
            })
            .collect();
        Fleet {
            devices,
            acked: HashSet::new(),
            sent: HashSet::new(),
            next: 0,
        }
    }

    /// Starts a client per device sending `count` new readings through the topology; once
    /// all are sent a client waits `timeout_s` at most for the last acknowledgements. A
    /// client whose connection is cut stops (a device reconnects with a new client).
    pub fn flood(&mut self, topology: &Topology, count: u64, timeout_s: u64) -> Flood {
        let first = self.next;
        self.next += count;
        let mut children: Vec<(String, Guarded)> = self
            .devices
            .iter()
            .map(|(id, cert)| {
                let child = spawn_flood_client_at(
                    topology.mqtts_port(),
                    &topology.ca(),
                    id,
                    cert,
                    first,
                    count,
                    timeout_s,
                );
                (id.clone(), child)
            })
            .collect();
        let (acks, readers) = read_acks(&mut children);
        Flood {
            children,
            readers,
            acks,
            first,
            count,
        }
    }

    /// Waits (at most `within`) for the flood's clients to end, killing the rest, and records
    /// what they sent and were acknowledged; returns how many were acknowledged.
    pub fn finish(&mut self, flood: Flood, within: Duration) -> usize {
        let Flood {
            mut children,
            readers,
            acks,
            first,
            count,
        } = flood;
        let deadline = Instant::now() + within;
        for (_, child) in &mut children {
            if child
                .wait_timeout(deadline.saturating_duration_since(Instant::now()))
                .is_none()
            {
                child.kill();
            }
        }
        for reader in readers {
            reader.join().expect("an acknowledgement reader");
        }
        let acked = acks.count();
        self.acked.extend(acks.so_far());
        for (id, _) in &self.devices {
            self.sent
                .extend((first..first + count).map(|n| (id.clone(), n)));
        }
        acked
    }

    /// The index the next flood starts at (every index before it was sent by some flood).
    pub fn next_index(&self) -> u64 {
        self.next
    }

    /// Lost, duplicated, recovered and unexpected readings, from what `database` on
    /// `cluster` (the primary now) stores.
    pub fn tally(&self, cluster: &Cluster, database: &str) -> Tally {
        tally(&self.acked, &self.sent, &stored(cluster, database))
    }
}

impl Flood {
    /// Acknowledgements so far.
    pub fn acked(&self) -> usize {
        self.acks.count()
    }

    /// The (device, index) pairs acknowledged so far.
    pub fn acked_so_far(&self) -> HashSet<(String, u64)> {
        self.acks.so_far()
    }
}

/// Every stored reading as (device, index), repeats included.
pub fn stored(cluster: &Cluster, database: &str) -> Vec<(String, u64)> {
    cluster
        .sql(
            database,
            "SELECT device_id || ' ' || (extract(epoch FROM timestamp) * 1000)::int8 FROM readings",
        )
        .lines()
        .map(|line| {
            let (device, ms) = line.split_once(' ').expect("device and time");
            let ms: u64 = ms.parse().expect("milliseconds");
            (device.to_owned(), ms - BASE_MS)
        })
        .collect()
}

/// A time-based seed for the kill moments (printed, so a failing run can be replayed).
pub fn seed() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("the clock is after 1970")
        .as_nanos() as u64
}

/// Prints the Jepsen tally of a run (`what`), with how many readings were acknowledged.
pub fn report(what: &str, acked: usize, tally: &Tally) {
    eprintln!(
        "jepsen ({what}): {acked} acknowledged, {} stored: lost {}, duplicated {}, recovered {}, unexpected {}",
        tally.stored, tally.lost, tally.duplicated, tally.recovered, tally.unexpected
    );
}

/// Nothing stored twice and nothing stored that was never sent.
pub fn assert_none_invented(tally: &Tally) {
    assert_eq!(tally.duplicated, 0, "readings were stored twice");
    assert_eq!(
        tally.unexpected, 0,
        "readings that were never sent were stored"
    );
}

/// [`report`], then: every acknowledged reading stored exactly once, nothing invented.
pub fn assert_exactly_once(what: &str, acked: usize, tally: &Tally) {
    report(what, acked, tally);
    assert_eq!(tally.lost, 0, "{what}: acknowledged readings were lost");
    assert_none_invented(tally);
}
