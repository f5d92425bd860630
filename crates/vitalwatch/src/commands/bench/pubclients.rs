//! `bench ingest --clients mosquitto_pub`: the load driven by clients we did not write, one
//! Debian `mosquitto_pub -l -q 1` process per device over mutual TLS, each reading its
//! readings as lines on stdin.
//!
//! mosquitto_pub reports no acknowledgements, so the run counts at the receiving end: the
//! server's `/health` stored count (VitalWatch, where a PUBACK means committed) or the one
//! subscriber's count (the forwarding brokers). Each process first publishes one warm-up
//! reading; the clock starts once every warm-up reading has been counted (so the TLS
//! handshakes and process start-ups are not timed) and stops when the last process has exited
//! after its stdin closed (mosquitto_pub waits for its last PUBACK) and everything is counted.

use super::ingest::{CONCURRENT_HANDSHAKES, IngestArgs, LoadResult, TOPIC, reading_json};
use super::peers::{ChildGuard, sample};
use crate::pki::CertsDir;
use anyhow::{Context, bail};
use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Runs the load; `count` reads how many readings the receiving end has seen so far.
pub fn drive(
    port: u16,
    certs: &CertsDir,
    ids: &[String],
    options: &IngestArgs,
    server_pid: u32,
    count: &dyn Fn() -> anyhow::Result<u64>,
    at_start: &mut dyn FnMut() -> anyhow::Result<()>,
) -> anyhow::Result<LoadResult> {
    let deadline = Instant::now() + Duration::from_secs(options.max_seconds);
    let n_devices = ids.len() as u64;
    let per_device = options.readings / n_devices;
    let base = count()?;
    let mut children = Vec::with_capacity(ids.len());
    let mut stdins = Vec::with_capacity(ids.len());
    // Started a few at a time (the brokers bound concurrent TLS handshakes per address), each
    // wave's warm-up reading (number 0) counted before the next; the timed readings are
    // 1..=per_device.
    for wave in ids.chunks(CONCURRENT_HANDSHAKES) {
        for id in wave {
            let mut child = Command::new("mosquitto_pub")
                // By name: mosquitto_pub matches the host against the certificate's DNS
                // names only (the server certificate names localhost).
                .args(["-h", "localhost", "-p", &port.to_string(), "-q", "1", "-l"])
                .args(["-t", TOPIC, "-i", id])
                .arg("--cafile")
                .arg(certs.ca_cert())
                .arg("--cert")
                .arg(certs.device_cert(id))
                .arg("--key")
                .arg(certs.device_key(id))
                .stdin(Stdio::piped())
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .context("starting mosquitto_pub (apt-get install mosquitto-clients)")?;
            let mut stdin = child.stdin.take().context("mosquitto_pub has no stdin")?;
            children.push(ChildGuard(Some(child)));
            writeln!(stdin, "{}", reading_json(id, 0))?;
            stdin.flush()?;
            stdins.push(stdin);
        }
        wait_for(count, base + children.len() as u64, deadline, &mut children)
            .context("waiting for every mosquitto_pub's warm-up reading")?;
    }

    let gap =
        (options.rate > 0).then(|| Duration::from_secs_f64(n_devices as f64 / options.rate as f64));
    at_start()?;
    let before = sample(server_pid)?;
    let started = Instant::now();
    let (tx, rx) = mpsc::channel::<(usize, anyhow::Result<Instant>)>();
    let mut pids = Vec::with_capacity(children.len());
    for (i, ((id, stdin), mut guard)) in ids.iter().cloned().zip(stdins).zip(children).enumerate() {
        pids.push(guard.pid());
        let tx = tx.clone();
        std::thread::spawn(move || {
            let result = (|| {
                let mut stdin = std::io::BufWriter::new(stdin);
                for n in 1..=per_device {
                    if let Some(gap) = gap {
                        let due = started + gap.mul_f64(n as f64);
                        if let Some(wait) = due.checked_duration_since(Instant::now()) {
                            // Pacing an open-loop load, not synchronising.
                            std::thread::sleep(wait);
                        }
                    }
                    writeln!(stdin, "{}", reading_json(&id, n))?;
                    if gap.is_some() {
                        stdin.flush()?;
                    }
                }
                drop(stdin);
                let mut child = guard.0.take().context("no child")?;
                let status = child.wait()?;
                let done = Instant::now();
                if !status.success() {
                    let mut err = String::new();
                    if let Some(mut stderr) = child.stderr.take() {
                        let _ = stderr.read_to_string(&mut err);
                    }
                    bail!("{id}: mosquitto_pub exited with {status}: {}", err.trim());
                }
                Ok(done)
            })();
            let _ = tx.send((i, result));
        });
    }
    drop(tx);
    let mut last_exit = started;
    let mut exited = vec![false; pids.len()];
    let mut first_error = None;
    for _ in 0..pids.len() {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok((i, result)) => {
                exited[i] = true;
                match result {
                    Ok(at) => last_exit = last_exit.max(at),
                    Err(err) => {
                        first_error.get_or_insert(err);
                    }
                }
            }
            Err(_) => {
                // Past the deadline: stop the processes still running (ours, by pid).
                for (pid, _) in pids.iter().zip(&exited).filter(|(_, done)| !**done) {
                    let _ = Command::new("kill")
                        .args(["-KILL", &pid.to_string()])
                        .status();
                }
                bail!("mosquitto_pub processes still running after --max-seconds");
            }
        }
    }
    if let Some(err) = first_error {
        return Err(err);
    }
    let target = base + n_devices * (per_device + 1);
    let end = if count()? >= target {
        last_exit
    } else {
        wait_for(count, target, deadline, &mut [])?;
        Instant::now()
    };
    let after = sample(server_pid)?;
    Ok(LoadResult {
        acked: n_devices * per_device,
        elapsed: end.duration_since(started),
        latencies: Vec::new(),
        server: (before, after),
        metrics_at_start: None,
    })
}

/// Polls `count` until it reaches `target` (bounded by `deadline`), failing early when one of
/// `children` has exited.
fn wait_for(
    count: &dyn Fn() -> anyhow::Result<u64>,
    target: u64,
    deadline: Instant,
    children: &mut [ChildGuard],
) -> anyhow::Result<()> {
    loop {
        let seen = count()?;
        if seen >= target {
            return Ok(());
        }
        for child in children.iter_mut() {
            if let Some(c) = child.0.as_mut()
                && let Ok(Some(status)) = c.try_wait()
            {
                let mut err = String::new();
                if let Some(mut stderr) = c.stderr.take() {
                    let _ = stderr.read_to_string(&mut err);
                }
                bail!("mosquitto_pub exited early with {status}: {}", err.trim());
            }
        }
        if Instant::now() > deadline {
            bail!("counted {seen} of {target} readings before --max-seconds");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}
