//! `vitalwatch bench ingest`: MQTT over TLS with QoS 1, end to end, against a real
//! `vitalwatch serve` (embedded broker, temporary data dir and PKI), compared in the same run
//! with Debian's Mosquitto forwarding the same load to one subscriber; then idle connections.
//!
//! The server runs as a child process (this same binary, `serve`), not inside the bench, so
//! its CPU and memory (read from `/proc/<pid>/stat` and `/proc/<pid>/status`) are not mixed
//! with those of the thousands of simulated clients; Mosquitto is measured the same way.
//! Every simulated device is a rumqttc client with its own certificate from the temporary PKI.
//! A device's PUBACK from VitalWatch means the reading is committed, so acknowledged readings
//! per second are committed readings per second; the run checks `/health` agrees at the end.
//!
//! Bounded: a fixed number of readings, and every phase gives up after `--max-seconds`.
//! The server child inherits the environment, so `VITALWATCH_CONFIG=FILE` benchmarks a
//! configuration other than the defaults (its data and certs directories are overridden).

use super::own_view::{self, OwnView};
use super::peers::{self, ChildGuard, ProcSample, cpu_percent, cpu_us_per_message, sample};
use super::pubclients;
use crate::pki::{self, CertsDir};
use anyhow::{Context, bail};
use clap::Args;
use rumqttc::{
    AsyncClient, Event, MqttOptions, NetworkOptions, Outgoing, Packet, QoS, TlsConfiguration,
    Transport,
};
use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::Barrier;

#[derive(Clone, Debug, Args)]
pub struct IngestArgs {
    /// Simulated devices, each its own TLS connection and certificate.
    #[arg(long, default_value_t = 100)]
    pub devices: u64,
    /// Readings in total, spread over the devices.
    #[arg(long, default_value_t = 20_000)]
    pub readings: u64,
    /// Unacknowledged publishes each device keeps in flight.
    #[arg(long, default_value_t = 8)]
    pub inflight: u16,
    /// Idle TLS device connections to open for the memory measurement (0 skips it).
    #[arg(long, default_value_t = 2000)]
    pub idle: u64,
    /// Give up on a run after this many seconds.
    #[arg(long, default_value_t = 120)]
    pub max_seconds: u64,
    /// Skip the Mosquitto baseline (when mosquitto is not installed).
    #[arg(long)]
    pub no_mosquitto: bool,
    /// Offered load in readings/s over all devices, paced per device (open loop), to
    /// read latency at a given rate; 0 publishes as fast as acknowledgements allow.
    #[arg(long, default_value_t = 0)]
    pub rate: u64,
    /// Also run VitalWatch on this PostgreSQL database (in a scratch schema, dropped
    /// afterwards), beside the same run on SQLite.
    #[arg(long, value_name = "URL")]
    pub database: Option<String>,
    /// Also measure rumqttd (the binary at PATH, built with its `verify-client-cert` feature)
    /// forwarding the same load to one subscriber, like Mosquitto.
    #[arg(long, value_name = "PATH")]
    pub rumqttd: Option<PathBuf>,
    /// Which clients drive the load: the built-in rumqttc generator (reports PUBACK latency),
    /// or one Debian `mosquitto_pub -l -q 1` process per device (counted at the receiving end).
    #[arg(long, value_enum, default_value_t = Clients::Rumqttc)]
    pub clients: Clients,
}

/// The load generator of `bench ingest --clients`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Clients {
    /// Built-in rumqttc clients, one task per device.
    Rumqttc,
    /// One `mosquitto_pub -l -q 1` process per device.
    #[value(name = "mosquitto_pub")]
    MosquittoPub,
}

impl IngestArgs {
    /// Each phase gives up after this long.
    fn max_time(&self) -> Duration {
        Duration::from_secs(self.max_seconds)
    }
}

pub(super) const TOPIC: &str = "/iot/health";
/// TLS handshakes the bench runs at once: the brokers bound concurrent handshakes per client
/// address (VitalWatch closes the 17th from one address before its handshake), and every
/// simulated device comes from 127.0.0.1.
pub(super) const CONCURRENT_HANDSHAKES: usize = 8;

/// One device's credentials, loaded once.
#[derive(Clone)]
struct Device {
    id: String,
    tls: Arc<rustls::ClientConfig>,
}

/// What a load run measured.
pub(super) struct LoadResult {
    pub(super) acked: u64,
    pub(super) elapsed: Duration,
    /// Publish written → PUBACK received, per message (empty when the clients cannot tell).
    pub(super) latencies: Vec<Duration>,
    pub(super) server: (ProcSample, ProcSample),
    /// VitalWatch's `/metrics` when the timed phase began (its runs only), so its own view
    /// leaves out the connections and warm-up readings.
    pub(super) metrics_at_start: Option<String>,
}

impl LoadResult {
    fn per_second(&self) -> f64 {
        self.acked as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx].as_secs_f64() * 1000.0
}

pub async fn run(options: IngestArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        options.devices > 0 && options.readings >= options.devices && options.inflight > 0,
        "--devices and --inflight must be positive and --readings at least --devices"
    );
    let dir = tempfile::tempdir().context("creating a temporary directory")?;
    let certs = CertsDir::new(dir.path().join("pki"));
    pki::init(&certs, &[], false)?;
    let ids: Vec<String> = (0..options.devices).map(|i| format!("bench-{i}")).collect();
    let mut all_ids = ids.clone();
    all_ids.push("bench-subscriber".to_owned());
    let started = Instant::now();
    pki::issue_devices(&certs, &all_ids)?;
    eprintln!(
        "issued {} device certificates in {:.1} s",
        all_ids.len(),
        started.elapsed().as_secs_f64()
    );
    let load = |id: &str| -> anyhow::Result<Device> {
        Ok(Device {
            id: id.to_owned(),
            tls: crate::tls::client_config(
                &certs.ca_cert(),
                Some((&certs.device_cert(id), &certs.device_key(id))),
            )?,
        })
    };
    let devices = ids
        .iter()
        .map(|id| load(id))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let subscriber = load("bench-subscriber")?;

    // The whole path includes the anomaly model: the servers load one trained here.
    let model = dir.path().join("model.json");
    let train_config = crate::config::Config {
        data_dir: dir.path().join("train"),
        ..crate::config::Config::default()
    };
    crate::commands::train::train_small_if_missing(&model, &train_config).await?;

    let bench = Bench {
        options: &options,
        certs: &certs,
        ids: &ids,
        devices: &devices,
        subscriber: &subscriber,
    };

    // VitalWatch.
    let (server, api, mqtts) = start_server(dir.path(), &certs, &model, None)?;
    let ours = bench
        .load(mqtts.port(), server.pid(), Receiver::Server(api))
        .await?;
    let health = health(api, &certs)?;
    anyhow::ensure!(
        health["model_loaded"] == serde_json::Value::Bool(true),
        "VitalWatch ran without its model: {}",
        health["model"]
    );
    let own = OwnView::between(
        ours.metrics_at_start.as_deref().unwrap_or_default(),
        &own_view::get(api, &certs, "/metrics")?,
    )
    .context("the server's /metrics has no MQTT acknowledgements or commits")?;
    let stored = health["readings"]["stored"]
        .as_u64()
        .context("/health has no readings.stored")?;
    if stored < ours.acked {
        bail!(
            "VitalWatch acknowledged {} readings but /health counts {stored} stored",
            ours.acked
        );
    }

    server.terminate(Duration::from_secs(30));

    // The same run with the readings committed to PostgreSQL.
    let on_postgres = match &options.database {
        Some(url) => {
            let scratch = super::postgres::Scratch::create(url, 0).await?;
            let res = async {
                let (server, api, mqtts) =
                    start_server(&dir.path().join("pg"), &certs, &model, Some(&scratch.url))?;
                let result = bench
                    .load(mqtts.port(), server.pid(), Receiver::Server(api))
                    .await;
                server.terminate(Duration::from_secs(30));
                result
            }
            .await;
            scratch.drop_schema().await?;
            Some(res?)
        }
        None => None,
    };

    // Idle connections, against a fresh server (so the load run's buffers are not counted).
    let idle = if options.idle > 0 {
        let (server, _, mqtts) = start_server(&dir.path().join("idle"), &certs, &model, None)?;
        let result = idle_connections(mqtts.port(), &devices, &options, server.pid()).await?;
        server.terminate(Duration::from_secs(30));
        Some(result)
    } else {
        None
    };

    // Mosquitto forwarding the same load to one subscriber.
    let mosquitto = if !options.no_mosquitto {
        let (mosquitto, port) = peers::start_mosquitto(dir.path(), &certs)?;
        let result = bench
            .load(port, mosquitto.pid(), Receiver::Subscriber)
            .await?;
        mosquitto.terminate(Duration::from_secs(10));
        Some(result)
    } else {
        None
    };

    // rumqttd, the same way, when installed.
    let rumqttd = match &options.rumqttd {
        Some(exe) => {
            let (rumqttd, port) = peers::start_rumqttd(exe, dir.path(), &certs)?;
            let result = bench
                .load(port, rumqttd.pid(), Receiver::Subscriber)
                .await?;
            rumqttd.terminate(Duration::from_secs(10));
            Some(result)
        }
        None => None,
    };

    report(
        &options,
        &ours,
        own,
        mosquitto.as_ref(),
        rumqttd.as_ref(),
        idle,
    );
    if let Some(pg) = on_postgres {
        let mut sorted = pg.latencies.clone();
        sorted.sort_unstable();
        println!(
            "VitalWatch on PostgreSQL: broker -> commit -> PUBACK: {:.0} readings/s, p50 {:.2} ms, p99 {:.2} ms, VitalWatch CPU {:.1} us/msg (the database's own not counted); ratio PostgreSQL / SQLite: {:.2}x",
            pg.per_second(),
            percentile(&sorted, 0.50),
            percentile(&sorted, 0.99),
            cpu_us_per_message(pg.server.0, pg.server.1, pg.acked),
            pg.per_second() / ours.per_second()
        );
    }
    Ok(())
}

/// Where a run's readings are counted when the clients cannot see acknowledgements.
#[derive(Clone, Copy)]
enum Receiver {
    /// VitalWatch's `/health` stored count (a PUBACK means committed).
    Server(SocketAddr),
    /// The one QoS 1 subscriber of a forwarding broker.
    Subscriber,
}

/// What every load run shares: the options, the PKI and the simulated devices.
struct Bench<'a> {
    options: &'a IngestArgs,
    certs: &'a CertsDir,
    ids: &'a [String],
    devices: &'a [Device],
    subscriber: &'a Device,
}

impl Bench<'_> {
    /// One load run against the broker on `port` (process `pid`) with the chosen clients.
    async fn load(&self, port: u16, pid: u32, receiver: Receiver) -> anyhow::Result<LoadResult> {
        let options = self.options;
        let (certs, ids) = (self.certs, self.ids);
        let mut metrics_at_start = None;
        let mut at_start = || -> anyhow::Result<()> {
            if let Receiver::Server(api) = receiver {
                metrics_at_start = Some(own_view::get(api, certs, "/metrics")?);
            }
            Ok(())
        };
        let subscriber = matches!(receiver, Receiver::Subscriber).then_some(self.subscriber);
        let mut result = if options.clients == Clients::Rumqttc {
            drive(port, self.devices, options, pid, subscriber, &mut at_start).await?
        } else {
            match receiver {
                Receiver::Server(api) => tokio::task::block_in_place(|| {
                    let stored = || -> anyhow::Result<u64> {
                        health(api, certs)?["readings"]["stored"]
                            .as_u64()
                            .context("/health has no readings.stored")
                    };
                    pubclients::drive(port, certs, ids, options, pid, &stored, &mut at_start)
                })?,
                Receiver::Subscriber => {
                    let deadline = tokio::time::Instant::now() + options.max_time();
                    let n = ids.len() as u64;
                    // Every device's share plus its warm-up reading.
                    let total = n * (options.readings / n + 1);
                    let (counter, task) =
                        start_subscriber(port, self.subscriber, total, deadline).await?;
                    let result = tokio::task::block_in_place(|| {
                        let seen =
                            || -> anyhow::Result<u64> { Ok(counter.load(Ordering::Relaxed)) };
                        pubclients::drive(port, certs, ids, options, pid, &seen, &mut at_start)
                    });
                    task.abort();
                    result?
                }
            }
        };
        result.metrics_at_start = metrics_at_start;
        Ok(result)
    }
}

fn report(
    options: &IngestArgs,
    ours: &LoadResult,
    own: OwnView,
    mosquitto: Option<&LoadResult>,
    rumqttd: Option<&LoadResult>,
    idle: Option<IdleResult>,
) {
    println!(
        "MQTT over TLS (mutual, ECDSA P-256), QoS 1: {} devices, {} readings, {} clients{}, offered rate {}",
        options.devices,
        options.readings,
        match options.clients {
            Clients::Rumqttc => "rumqttc",
            Clients::MosquittoPub => "mosquitto_pub -l -q 1",
        },
        match options.clients {
            Clients::Rumqttc => format!(" ({} in flight per device)", options.inflight),
            Clients::MosquittoPub => String::new(),
        },
        if options.rate > 0 {
            format!("{}/s", options.rate)
        } else {
            "unlimited".to_owned()
        }
    );
    println!(
        "{:<46} {:>10} {:>8} {:>8} {:>6} {:>10} {:>7}",
        "run", "msg/s", "p50 ms", "p99 ms", "CPU %", "CPU us/msg", "RSS MB"
    );
    let row = |label: &str, result: &LoadResult| {
        let mut sorted = result.latencies.clone();
        sorted.sort_unstable();
        let ms = |p: f64| {
            let v = percentile(&sorted, p);
            if v.is_nan() {
                "-".to_owned()
            } else {
                format!("{v:.2}")
            }
        };
        println!(
            "{:<46} {:>10.0} {:>8} {:>8} {:>6.0} {:>10.1} {:>7.1}",
            label,
            result.per_second(),
            ms(0.50),
            ms(0.99),
            cpu_percent(result.server.0, result.server.1),
            cpu_us_per_message(result.server.0, result.server.1, result.acked),
            result.server.1.rss_kb as f64 / 1024.0,
        );
    };
    row("VitalWatch: broker -> commit -> PUBACK", ours);
    if let Some(theirs) = mosquitto {
        row("Mosquitto: broker -> 1 subscriber (no store)", theirs);
    }
    if let Some(theirs) = rumqttd {
        row("rumqttd: broker -> 1 subscriber (no store)", theirs);
    }
    println!(
        "VitalWatch's own view (its /metrics, timed phase): arrival -> answer {:.2} ms mean; {:.0} readings per commit, {:.2} ms per commit (the clients' latency less this is TLS, the broker's turn, the network and the clients)",
        own.ack_mean_ms, own.readings_per_commit, own.commit_mean_ms
    );
    println!();
    println!("{:<62} {:>10} {:>18}", "system", "msg/s", "VitalWatch / it");
    let ratio_row = |label: &str, result: &LoadResult| {
        println!(
            "{:<62} {:>10.0} {:>17.2}x",
            label,
            result.per_second(),
            ours.per_second() / result.per_second().max(1e-9)
        );
    };
    ratio_row(
        "VitalWatch serve (TLS, rules, model, alerts, SQLite commit)",
        ours,
    );
    match mosquitto {
        Some(theirs) => ratio_row("Mosquitto (TLS, forward to one QoS 1 subscriber)", theirs),
        None => println!("Mosquitto: not measured (--no-mosquitto)"),
    }
    match rumqttd {
        Some(theirs) => ratio_row("rumqttd (TLS, forward to one QoS 1 subscriber)", theirs),
        None => println!("rumqttd: not measured (pass --rumqttd PATH)"),
    }
    if let Some(theirs) = mosquitto {
        println!(
            "ratio VitalWatch / Mosquitto: {:.2}x",
            ours.per_second() / theirs.per_second().max(1e-9)
        );
    }
    if let Some(theirs) = rumqttd {
        println!(
            "ratio VitalWatch / rumqttd: {:.2}x",
            ours.per_second() / theirs.per_second().max(1e-9)
        );
    }
    if let Some(idle) = idle {
        println!(
            "idle TLS device connections: {} of {} opened; server RSS {:.1} MB before, {:.1} MB after ({:.1} KB per connection){}",
            idle.opened,
            idle.asked,
            idle.before_kb as f64 / 1024.0,
            idle.after_kb as f64 / 1024.0,
            (idle.after_kb.saturating_sub(idle.before_kb)) as f64 / idle.opened.max(1) as f64,
            idle.failure
                .as_deref()
                .map(|f| format!("; first failure: {f}"))
                .unwrap_or_default(),
        );
    }
    println!(
        "CPU % and RSS are the broker process's (100 % = one core); latency is publish written -> PUBACK read."
    );
}

/// Starts `vitalwatch serve` (this binary) on free ports; returns it, the API and MQTT addresses.
fn start_server(
    dir: &Path,
    certs: &CertsDir,
    model: &Path,
    database: Option<&str>,
) -> anyhow::Result<(ChildGuard, SocketAddr, SocketAddr)> {
    let exe = std::env::current_exe().context("finding the vitalwatch binary")?;
    let mut command = Command::new(exe);
    match database {
        Some(url) => command.env("VITALWATCH_DATABASE_URL", url),
        None => command.env_remove("VITALWATCH_DATABASE_URL"),
    };
    let mut child = command
        .arg("serve")
        .arg("--data-dir")
        .arg(dir.join("data"))
        .arg("--certs-dir")
        .arg(&certs.dir)
        .arg("--model")
        .arg(model)
        // Loopback and free ports only: a bench server never takes the dashboard port 8501.
        .args(["--http-addr", "127.0.0.1:0", "--mqtts-addr", "127.0.0.1:0"])
        .args(["--dashboard-addr", "127.0.0.1:0"])
        // The final check reads /health's counts, which only an authenticated caller sees;
        // the bench is loopback-only.
        .arg("--trust-loopback")
        .env("RUST_LOG", "vitalwatch=warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .context("starting vitalwatch serve")?;
    let stdout = child.stdout.take().context("no stdout")?;
    let guard = ChildGuard(Some(child));
    let mut addrs = HashMap::new();
    for line in BufReader::new(stdout).lines() {
        let line = line?;
        if let Some((name, addr)) = line
            .strip_prefix("listening ")
            .and_then(|rest| rest.split_once('='))
        {
            addrs.insert(name.to_owned(), addr.trim().parse::<SocketAddr>()?);
            if name == "api" {
                break;
            }
        }
    }
    let (Some(api), Some(mqtts)) = (addrs.get("api"), addrs.get("mqtts")) else {
        bail!("vitalwatch serve did not announce its addresses");
    };
    Ok((guard, *api, *mqtts))
}

/// `/health`, over the server's default HTTPS (trusting the bench's own CA).
fn health(api: SocketAddr, certs: &CertsDir) -> anyhow::Result<serde_json::Value> {
    Ok(serde_json::from_str(&own_view::get(
        api, certs, "/health",
    )?)?)
}

fn mqtt_options(client_id: &str, port: u16, device: &Device, inflight: u16) -> MqttOptions {
    let mut options = MqttOptions::new(client_id, "127.0.0.1", port);
    options
        .set_keep_alive(Duration::from_secs(60))
        .set_clean_session(true)
        .set_inflight(inflight)
        .set_transport(Transport::tls_with_config(TlsConfiguration::Rustls(
            Arc::clone(&device.tls),
        )));
    options
}

/// The generator's sockets send at once (TCP_NODELAY, as every broker under test sets on its
/// side): with Nagle's algorithm a publish written behind an unacknowledged one waits for the
/// peer's ACK, which measures the kernel's delayed-ACK timer instead of the broker.
fn network_options() -> NetworkOptions {
    let mut options = NetworkOptions::new();
    options.set_tcp_nodelay(true);
    options
}

pub(super) fn reading_json(device: &str, n: u64) -> String {
    // Distinct timestamps per reading of a device, so nothing is deduplicated.
    let ts = 1_767_225_600_000u64 + n;
    format!(
        r#"{{"device_id":"{device}","timestamp":{ts},"heart_rate":{},"body_temp":36.8,"signal_strength":-60,"battery_level":80}}"#,
        60 + n % 50
    )
}

/// Connects every device, then all publish their share at full speed; with `subscriber`
/// (the Mosquitto run), the run ends when the subscriber has received everything.
async fn drive(
    port: u16,
    devices: &[Device],
    options: &IngestArgs,
    server_pid: u32,
    subscriber: Option<&Device>,
    at_start: &mut (dyn FnMut() -> anyhow::Result<()> + Send),
) -> anyhow::Result<LoadResult> {
    let deadline = tokio::time::Instant::now() + options.max_time();
    let n_devices = devices.len() as u64;
    let per_device = options.readings / n_devices;
    let total = per_device * n_devices;
    let barrier = Arc::new(Barrier::new(devices.len() + 1));
    let received = match subscriber {
        Some(device) => Some(start_subscriber(port, device, total, deadline).await?.1),
        None => None,
    };
    let handshakes = Arc::new(tokio::sync::Semaphore::new(CONCURRENT_HANDSHAKES));
    let mut tasks = Vec::with_capacity(devices.len());
    for device in devices {
        let device = device.clone();
        let barrier = Arc::clone(&barrier);
        let handshakes = Arc::clone(&handshakes);
        let inflight = options.inflight;
        // Each device's share of the offered rate, as the gap between its publishes.
        let gap = (options.rate > 0)
            .then(|| Duration::from_secs_f64(n_devices as f64 / options.rate as f64));
        tasks.push(tokio::spawn(async move {
            let permit = handshakes.acquire_owned().await;
            publish_all(
                port,
                device,
                per_device,
                inflight,
                gap,
                (barrier, permit.ok()),
                deadline,
            )
            .await
        }));
    }
    barrier.wait().await;
    tokio::task::block_in_place(&mut *at_start)?;
    let before = sample(server_pid)?;
    let started = Instant::now();
    let mut acked = 0;
    let mut latencies = Vec::with_capacity(total as usize);
    let mut first_error = None;
    for task in tasks {
        match task.await? {
            Ok((n, mut lat)) => {
                acked += n;
                latencies.append(&mut lat);
            }
            Err(err) => {
                first_error.get_or_insert(err);
            }
        }
    }
    let mut elapsed = started.elapsed();
    if let Some(received) = received {
        let (n, done_at) = received.await??;
        if n < total {
            bail!("the subscriber received {n} of {total} messages in time");
        }
        elapsed = done_at.duration_since(started).max(elapsed);
    }
    let after = sample(server_pid)?;
    if let Some(err) = first_error {
        return Err(err.context("a simulated device failed"));
    }
    if acked < total {
        bail!("only {acked} of {total} publishes were acknowledged within the time limit");
    }
    Ok(LoadResult {
        acked,
        elapsed,
        latencies,
        server: (before, after),
        metrics_at_start: None,
    })
}

/// One device: connect, wait for everyone, publish `count` readings, collect ack latencies.
async fn publish_all(
    port: u16,
    device: Device,
    count: u64,
    inflight: u16,
    gap: Option<Duration>,
    // The start barrier, and the permit to handshake now (released once connected).
    (barrier, handshake): (Arc<Barrier>, Option<tokio::sync::OwnedSemaphorePermit>),
    deadline: tokio::time::Instant,
) -> anyhow::Result<(u64, Vec<Duration>)> {
    let options = mqtt_options(&device.id, port, &device, inflight);
    let (client, mut eventloop) = AsyncClient::new(options, usize::from(inflight) * 2 + 4);
    eventloop.set_network_options(network_options());
    let connected = loop {
        match tokio::time::timeout_at(deadline, eventloop.poll()).await {
            Ok(Ok(Event::Incoming(Packet::ConnAck(_)))) => break Ok(()),
            Ok(Ok(_)) => {}
            Ok(Err(err)) => break Err(anyhow::anyhow!("{}: connecting: {err}", device.id)),
            Err(_) => break Err(anyhow::anyhow!("{}: connect timed out", device.id)),
        }
    };
    drop(handshake);
    // Everyone reaches the barrier, connected or not, so a failure cannot hang the others.
    barrier.wait().await;
    connected?;
    let publisher = {
        let client = client.clone();
        let id = device.id.clone();
        tokio::spawn(async move {
            let mut ticks = gap.map(tokio::time::interval);
            for n in 0..count {
                if let Some(ticks) = ticks.as_mut() {
                    ticks.tick().await;
                }
                if client
                    .publish(TOPIC, QoS::AtLeastOnce, false, reading_json(&id, n))
                    .await
                    .is_err()
                {
                    break;
                }
            }
        })
    };
    let mut sent_at: HashMap<u16, Instant> = HashMap::with_capacity(usize::from(inflight) * 2);
    let mut latencies = Vec::with_capacity(count as usize);
    while (latencies.len() as u64) < count {
        match tokio::time::timeout_at(deadline, eventloop.poll()).await {
            Ok(Ok(Event::Outgoing(Outgoing::Publish(pkid)))) => {
                sent_at.insert(pkid, Instant::now());
            }
            Ok(Ok(Event::Incoming(Packet::PubAck(ack)))) => {
                if let Some(at) = sent_at.remove(&ack.pkid) {
                    latencies.push(at.elapsed());
                }
            }
            Ok(Ok(_)) => {}
            Ok(Err(err)) => bail!("{}: connection lost: {err}", device.id),
            Err(_) => break,
        }
    }
    publisher.abort();
    let _ = client.try_disconnect();
    let _ = tokio::time::timeout(Duration::from_millis(200), eventloop.poll()).await;
    Ok((latencies.len() as u64, latencies))
}

/// Subscribes (QoS 1) and counts messages (also into the returned counter) until `total`
/// arrived; the task resolves to (count, when).
async fn start_subscriber(
    port: u16,
    device: &Device,
    total: u64,
    deadline: tokio::time::Instant,
) -> anyhow::Result<(
    Arc<AtomicU64>,
    tokio::task::JoinHandle<anyhow::Result<(u64, Instant)>>,
)> {
    let options = mqtt_options("bench-subscriber", port, device, 100);
    let (client, mut eventloop) = AsyncClient::new(options, 16);
    eventloop.set_network_options(network_options());
    client.subscribe(TOPIC, QoS::AtLeastOnce).await?;
    loop {
        match tokio::time::timeout_at(deadline, eventloop.poll()).await {
            Ok(Ok(Event::Incoming(Packet::SubAck(_)))) => break,
            Ok(Ok(_)) => {}
            Ok(Err(err)) => bail!("subscriber: {err}"),
            Err(_) => bail!("subscriber: no SUBACK in time"),
        }
    }
    let counter = Arc::new(AtomicU64::new(0));
    let counted = Arc::clone(&counter);
    let task = tokio::spawn(async move {
        let _client = client;
        let mut received = 0;
        while received < total {
            match tokio::time::timeout_at(deadline, eventloop.poll()).await {
                Ok(Ok(Event::Incoming(Packet::Publish(_)))) => {
                    received += 1;
                    counted.store(received, Ordering::Relaxed);
                }
                Ok(Ok(_)) => {}
                Ok(Err(err)) => bail!("subscriber: {err}"),
                Err(_) => break,
            }
        }
        Ok((received, Instant::now()))
    });
    Ok((counter, task))
}

struct IdleResult {
    asked: u64,
    opened: u64,
    before_kb: u64,
    after_kb: u64,
    failure: Option<String>,
}

/// Opens `options.idle` device connections (certificates reused round-robin, distinct client
/// ids), keeps them idle, and reads the server's RSS before and after.
async fn idle_connections(
    port: u16,
    devices: &[Device],
    options: &IngestArgs,
    server_pid: u32,
) -> anyhow::Result<IdleResult> {
    let before_kb = sample(server_pid)?.rss_kb;
    let deadline = tokio::time::Instant::now() + options.max_time();
    // Bounded concurrent handshakes, so the listen backlog is not the thing measured.
    let handshakes = Arc::new(tokio::sync::Semaphore::new(CONCURRENT_HANDSHAKES));
    let stop = tokio_util::sync::CancellationToken::new();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Result<(), String>>();
    let mut tasks = Vec::new();
    for i in 0..options.idle {
        let device = devices[(i % devices.len() as u64) as usize].clone();
        let handshakes = Arc::clone(&handshakes);
        let stop = stop.clone();
        let tx = tx.clone();
        tasks.push(tokio::spawn(async move {
            let permit = handshakes.acquire_owned().await;
            let options = mqtt_options(&format!("idle-{i}"), port, &device, 1);
            let (_client, mut eventloop) = AsyncClient::new(options, 1);
            let first = tokio::time::timeout_at(deadline, async {
                loop {
                    match eventloop.poll().await {
                        Ok(Event::Incoming(Packet::ConnAck(_))) => return Ok(()),
                        Ok(_) => {}
                        Err(err) => return Err(err.to_string()),
                    }
                }
            })
            .await
            .unwrap_or_else(|_| Err("timed out".to_owned()));
            drop(permit);
            let ok = first.is_ok();
            let _ = tx.send(first);
            drop(tx);
            if ok {
                // Stay connected (answering keep-alives) until told to stop.
                loop {
                    tokio::select! {
                        () = stop.cancelled() => break,
                        res = eventloop.poll() => if res.is_err() { break },
                    }
                }
            }
        }));
    }
    drop(tx);
    let mut opened = 0;
    let mut failure = None;
    // One answer per connection (connected tasks keep their sender, so count, not close).
    for _ in 0..options.idle {
        match rx.recv().await {
            Some(Ok(())) => opened += 1,
            Some(Err(err)) => {
                failure.get_or_insert(err);
            }
            None => break,
        }
    }
    // Let the server settle (buffers shrink after the handshakes).
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after_kb = sample(server_pid)?.rss_kb;
    stop.cancel();
    for task in tasks {
        let _ = task.await;
    }
    Ok(IdleResult {
        asked: options.idle,
        opened,
        before_kb,
        after_kb,
        failure,
    })
}
