//! `vitalwatch simulate`: turns the flags into a scenario and a target, runs [`crate::sim`],
//! and prints the report. A run with unacknowledged or refused messages ends with an error.

use super::StoreArgs;
use crate::config::Config;
use crate::pki::CertsDir;
use crate::sim::mqtt::{MqttTarget, parse_broker};
use crate::sim::{Pace, SimOptions, Target, builtin};
use anyhow::{Context, bail};
use clap::Args;
use std::path::PathBuf;
use tokio_util::sync::CancellationToken;
use vitalwatch_core::scenario::Scenario;

#[derive(Debug, Args)]
pub struct SimulateArgs {
    #[command(flatten)]
    pub store: StoreArgs,

    /// Number of simulated devices (patients) in the built-in population; ignored with
    /// --scenario, whose patients are the devices.
    #[arg(long, value_name = "N", default_value_t = 10)]
    pub devices: usize,

    /// Time between two readings of a device (e.g. 3s, 500ms) [default: the scenario's, 5s
    /// for the built-in population].
    #[arg(long, value_name = "DURATION", value_parser = crate::sim::parse_duration)]
    pub interval: Option<std::time::Duration>,

    /// The MQTT broker: mqtts://HOST[:PORT] (TLS; port 8883 by default).
    #[arg(long, value_name = "URL", default_value = "mqtts://localhost:8883")]
    pub broker: String,

    /// The CA certificate that signed the broker's [default: <certs-dir>/ca.crt].
    #[arg(long, value_name = "FILE")]
    pub ca: Option<PathBuf>,

    /// Where device certificates are (devices/ID.crt, ID.key); a missing one is issued when
    /// the CA key is there [default: <data-dir>/certs].
    #[arg(long, env = "VITALWATCH_CERTS_DIR", value_name = "DIR")]
    pub certs_dir: Option<PathBuf>,

    /// The MQTT topic.
    #[arg(
        long,
        env = "MQTT_TOPIC",
        value_name = "TOPIC",
        default_value = "/iot/health"
    )]
    pub topic: String,

    /// MQTT QoS: 1 (acknowledged after the commit) or 0 (fire and forget).
    #[arg(long, value_name = "0|1", default_value_t = 1, value_parser = clap::value_parser!(u8).range(0..=1))]
    pub qos: u8,

    /// POST to this URL (e.g. http://127.0.0.1:5000/api/telemetry) instead of MQTT.
    #[arg(long, value_name = "URL", conflicts_with = "csv")]
    pub http: Option<String>,

    /// With --http: the API token to send (`vitalwatch tokens create --role device --device
    /// ID`; a device token posts for its own device only). Not needed against a server that
    /// trusts loopback (`demo`, `serve --trust-loopback`).
    #[arg(
        long,
        env = "VITALWATCH_TOKEN",
        value_name = "TOKEN",
        requires = "http",
        hide_env_values = true
    )]
    pub token: Option<String>,

    /// Write the labelled stream to this CSV file (no broker, no pacing) and exit.
    #[arg(long, value_name = "FILE")]
    pub csv: Option<PathBuf>,

    /// A scenario file (TOML, docs/scenarios.md) [default: the built-in population].
    #[arg(long, value_name = "FILE")]
    pub scenario: Option<PathBuf>,

    /// Seeds the physiology (overrides the scenario's seed) [default: 1 for the built-in
    /// population].
    #[arg(long, value_name = "S")]
    pub seed: Option<u64>,

    /// Scenario time to simulate (e.g. 10m, 24h) [default: the scenario's; 24h built in].
    #[arg(long, value_name = "DURATION", value_parser = crate::sim::parse_duration, conflicts_with = "count")]
    pub duration: Option<std::time::Duration>,

    /// Stop after this many messages per device.
    #[arg(long, value_name = "C")]
    pub count: Option<u64>,

    /// Scenario time per wall-clock time: 1x is real time, 60x a minute per second.
    #[arg(long, value_name = "FACTOR", default_value = "1x", value_parser = crate::sim::parse_speed)]
    pub speed: f64,

    /// Ignore the scenario's pacing: "max" sends as fast as acknowledgements allow (load
    /// mode: per-second counts on standard error); a number is messages per second in total.
    #[arg(long, value_name = "R")]
    pub rate: Option<String>,

    /// Print the final report as JSON.
    #[arg(long)]
    pub json: bool,
}

/// Scenario time the built-in population covers when neither --duration nor --count says.
const DEFAULT_DURATION_S: u64 = 86_400;

/// The scenario the flags describe: a file or the built-in population, with --seed,
/// --interval, --duration and --count applied.
pub fn scenario_of(args: &SimulateArgs) -> anyhow::Result<Scenario> {
    let interval_s = args.interval.map(|d| d.as_secs_f64());
    let duration_s = args.duration.map(|d| d.as_secs_f64().ceil() as u64);
    let mut scenario = match &args.scenario {
        Some(path) => crate::sim::load_scenario(path)?,
        None => {
            anyhow::ensure!(args.devices > 0, "--devices must be at least 1");
            let interval = interval_s.unwrap_or(5.0);
            let duration = match (duration_s, args.count) {
                (Some(duration), _) => duration,
                (None, Some(count)) => ((count as f64 + 1.0) * interval).ceil() as u64,
                (None, None) => DEFAULT_DURATION_S,
            };
            builtin::population(args.devices, args.seed.unwrap_or(1), interval, duration)
        }
    };
    if let Some(seed) = args.seed {
        scenario.seed = seed;
    }
    if let Some(interval) = interval_s {
        scenario.interval_s = interval;
    }
    if let Some(duration) = duration_s {
        scenario.duration_s = duration;
        // Events are cut at the new end; those starting after it are left out.
        for patient in &mut scenario.patients {
            patient.events.retain(|e| e.onset_s < duration);
            for event in &mut patient.events {
                event.end_s = event.end_s.min(duration);
            }
        }
    }
    Ok(scenario)
}

fn pace_of(args: &SimulateArgs) -> anyhow::Result<Pace> {
    match args.rate.as_deref() {
        None => Ok(Pace::Speed(args.speed)),
        Some("max") => Ok(Pace::Max),
        Some(text) => match text.parse::<f64>() {
            Ok(rate) if rate.is_finite() && rate > 0.0 => Ok(Pace::Rate(rate)),
            _ => bail!("--rate {text:?}: expected \"max\" or messages per second"),
        },
    }
}

/// Runs the simulation until it ends or SIGINT/SIGTERM.
pub async fn run(args: SimulateArgs) -> anyhow::Result<()> {
    let config = args.store.config()?;
    simulate(config, args, super::shutdown_on_signals()).await
}

async fn simulate(
    config: Config,
    args: SimulateArgs,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let scenario = scenario_of(&args)?;
    if let Some(path) = &args.csv {
        let rows = {
            let path = path.clone();
            let count = args.count;
            tokio::task::spawn_blocking(move || crate::sim::csv::write(&scenario, count, &path))
                .await
                .context("the CSV task failed")??
        };
        println!("wrote {rows} rows to {}", path.display());
        return Ok(());
    }
    let target = match &args.http {
        Some(url) => Target::Http(crate::sim::http::HttpTarget {
            url: url.clone(),
            token: args.token.clone(),
            // An https:// server's certificate comes from our CA: --ca, else the certs dir's.
            ca: url.starts_with("https://").then(|| {
                args.ca.clone().unwrap_or_else(|| {
                    CertsDir::new(args.certs_dir.clone().unwrap_or_else(|| config.certs_dir()))
                        .ca_cert()
                })
            }),
        }),
        None => {
            let (host, port) = parse_broker(&args.broker)?;
            let certs = CertsDir::new(args.certs_dir.clone().unwrap_or_else(|| config.certs_dir()));
            Target::Mqtt(MqttTarget {
                host,
                port,
                topic: args.topic.clone(),
                qos: args.qos,
                ca: args.ca.clone().unwrap_or_else(|| certs.ca_cert()),
                certs,
            })
        }
    };
    let pace = pace_of(&args)?;
    let options = SimOptions {
        scenario,
        target,
        pace,
        count: args.count,
        progress: pace == Pace::Max || matches!(pace, Pace::Rate(_)),
    };
    let report = crate::sim::run(options, shutdown).await?;
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        println!("simulated {report}");
    }
    if report.failed > 0 {
        bail!("{} messages were not acknowledged", report.failed);
    }
    Ok(())
}
