//! `vitalwatch simulate`: turns the flags into a scenario and a target, runs, and prints the
//! report. A run with unacknowledged or refused messages ends with an error.

use super::mqtt::{MqttTarget, parse_broker};
use super::{Pace, SimOptions, Target, builtin};
use crate::cli::SimulateArgs;
use crate::config::Config;
use crate::pki::CertsDir;
use anyhow::{Context, bail};
use tokio_util::sync::CancellationToken;
use vitalwatch_core::scenario::Scenario;

/// Scenario time the built-in population covers when neither --duration nor --count says.
const DEFAULT_DURATION_S: u64 = 86_400;

/// The scenario the flags describe: a file or the built-in population, with --seed,
/// --interval, --duration and --count applied.
pub fn scenario_of(args: &SimulateArgs) -> anyhow::Result<Scenario> {
    let interval_s = args.interval.map(|d| d.as_secs_f64());
    let duration_s = args.duration.map(|d| d.as_secs_f64().ceil() as u64);
    let mut scenario = match &args.scenario {
        Some(path) => super::load_scenario(path)?,
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

pub async fn simulate(
    config: Config,
    args: SimulateArgs,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let scenario = scenario_of(&args)?;
    if let Some(path) = &args.csv {
        let rows = {
            let path = path.clone();
            let count = args.count;
            tokio::task::spawn_blocking(move || super::csv::write(&scenario, count, &path))
                .await
                .context("the CSV task failed")??
        };
        println!("wrote {rows} rows to {}", path.display());
        return Ok(());
    }
    let target = match &args.http {
        Some(url) => Target::Http(super::http::HttpTarget {
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
    let report = super::run(options, shutdown).await?;
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
