//! Helpers for the integration tests, one set for every module:
//! - [`server`]: the real `vitalwatch` binary on free ports in a temporary directory, killed
//!   when its guard drops; [`in_process`]: the service started inside the test process;
//! - [`process`]: any other child process, guarded the same way, its output read by line;
//! - [`wait`]: bounded waits on a condition (the only place the tests poll);
//! - [`http`]: HTTP(S) requests with answers as values; [`net`]: loopback ports;
//! - [`mosquitto`]: a TLS Mosquitto from a config the test writes;
//! - [`postgres`]: real PostgreSQL 15 clusters and a database per test;
//! - [`backend`]: the store this run puts servers and commands on (SQLite, or PostgreSQL with
//!   `VITALWATCH_IT_BACKEND=postgres`), and SQL on a data directory's store on either;
//! - [`cluster`]: the scale-out topologies (primary + synchronous standby, HAProxy or
//!   Mosquitto, several nodes).

pub mod backend;
pub mod cluster;
pub mod h2_client;
pub mod http;
pub mod in_process;
pub mod mosquitto;
pub mod net;
pub mod postgres;
pub mod process;
pub mod server;
pub mod wait;

pub use backend::{sql, sqlite_only};
pub use http::{agent, get, https_agent, post_json, send};
pub use net::free_port;
pub use process::{Guarded, Lines};
pub use server::{Server, ServerOptions, bin, command, on_store, run, run_with_stdin};
pub use wait::{WAIT, poll_until, wait_until};

use std::path::Path;
use std::process::Command;

/// Sends a signal (`TERM`, `KILL`, `HUP`, …) to a process by its id.
pub fn signal(pid: u32, name: &str) {
    let status = Command::new("kill")
        .args([format!("-{name}"), pid.to_string()])
        .status()
        .expect("running kill");
    assert!(status.success(), "kill -{name} {pid} failed");
}

/// Row counts of the tables a rejected input must never change.
#[derive(Debug, PartialEq, Eq, Clone, Copy)]
pub struct Counts {
    pub readings: i64,
    pub anomalies: i64,
    pub devices: i64,
    pub quarantine: i64,
}

/// The [`Counts`] of the store of `data_dir`, on either backend.
pub fn counts(data_dir: &Path) -> Counts {
    let row = sql(
        data_dir,
        "SELECT (SELECT COUNT(*) FROM readings), (SELECT COUNT(*) FROM anomalies), \
         (SELECT COUNT(*) FROM devices), (SELECT COUNT(*) FROM quarantine)",
    );
    let numbers: Vec<i64> = row
        .split('|')
        .map(|n| n.parse().expect("a count is a number"))
        .collect();
    Counts {
        readings: numbers[0],
        anomalies: numbers[1],
        devices: numbers[2],
        quarantine: numbers[3],
    }
}

/// Runs a shell snippet (for commands that must run exactly as a README writes them).
pub fn sh(cwd: &Path, script: &str) -> (bool, String, String) {
    let output = Command::new("sh")
        .arg("-c")
        .arg(script)
        .current_dir(cwd)
        .output()
        .expect("running sh");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// A seed-shaped reading with a fixed timestamp offset, so each `n` is a distinct reading.
pub fn reading(device_id: &str, n: u64, heart_rate: f64) -> String {
    let ts = 1_767_225_600_000u64 + n * 1000; // 2026-01-01T00:00:00Z + n s, in ms
    format!(
        r#"{{"device_id":"{device_id}","timestamp":{ts},"heart_rate":{heart_rate},"body_temp":36.8,"signal_strength":-55,"battery_level":90}}"#
    )
}
