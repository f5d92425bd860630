//! `vitalwatch demo`: the whole system in one command on a fresh clone.
//!
//! Creates the PKI when missing, trains a small model when there is none (the same code as
//! `vitalwatch train`), runs `serve` in-process with every `serve` flag forwarded (the API
//! and the broker bind to 127.0.0.1 unless told otherwise), connects ten simulated patients
//! over MQTT with TLS and their own certificates (`sim`), and prints what to try. On Ctrl-C
//! or SIGTERM the simulators stop first, then the server shuts down gracefully.

use crate::cli::{DemoArgs, TrainArgs};
use crate::config::{Config, Overrides};
use crate::pki::{self, CertsDir};
use crate::sim::{self, Pace, SimOptions, Target, mqtt::MqttTarget};
use anyhow::Context;
use clap::Parser;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// The API's address unless a flag, the environment or the config says otherwise.
const DEMO_HTTP_ADDR: SocketAddr = SocketAddr::new(std::net::IpAddr::V4(Ipv4Addr::LOCALHOST), 5000);
/// The broker's port unless told otherwise (bound to loopback).
const DEMO_MQTT_PORT: u16 = 8883;
const DEMO_DASHBOARD_ADDR: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(Ipv4Addr::LOCALHOST), 8501);
/// The device whose certificate the banner's `mosquitto_pub` line uses.
const MANUAL_DEVICE: &str = "demo-pub";

#[derive(Clone, Debug)]
pub struct DemoOptions {
    pub speed: f64,
    pub seed: u64,
}

impl From<&DemoArgs> for DemoOptions {
    fn from(args: &DemoArgs) -> DemoOptions {
        DemoOptions {
            speed: args.speed,
            seed: args.seed,
        }
    }
}

/// `serve`'s overrides with the demo's loopback defaults filled in.
pub fn overrides(mut overrides: Overrides) -> Overrides {
    if overrides.http_addr.is_none() {
        overrides.http_addr = Some(DEMO_HTTP_ADDR);
    }
    if overrides.dashboard_addr.is_none() {
        overrides.dashboard_addr = Some(DEMO_DASHBOARD_ADDR);
    }
    // A workstation demo: the seed's `curl http://localhost:5000/...` examples work as
    // written because loopback clients are trusted over plaintext HTTP (said in the banner).
    overrides.trust_loopback = true;
    overrides.http_plaintext = true;
    if overrides.mqtts_addr.is_none() {
        let port = overrides.mqtt_port.unwrap_or(DEMO_MQTT_PORT);
        overrides.mqtts_addr = Some(SocketAddr::new(Ipv4Addr::LOCALHOST.into(), port));
    }
    overrides
}

/// `vitalwatch train`'s flags, parsed the way the command line would be.
#[derive(Parser)]
struct TrainFlags {
    #[command(flatten)]
    train: TrainArgs,
}

async fn train_if_missing(config: &Config) -> anyhow::Result<()> {
    let path = config.model_path();
    if path.exists() {
        return Ok(());
    }
    eprintln!(
        "No model at {}: training a small one on the synthetic population.",
        path.display()
    );
    let flags = TrainFlags::try_parse_from([
        "train".as_ref(),
        "--patients".as_ref(),
        "50".as_ref(),
        "--readings-per-patient".as_ref(),
        "200".as_ref(),
        "--output".as_ref(),
        path.as_os_str(),
    ])
    .context("building the training flags")?;
    crate::model_cmd::train(config.clone(), flags.train).await
}

async fn certs_ready(certs: &CertsDir) -> anyhow::Result<()> {
    let certs = certs.clone();
    tokio::task::spawn_blocking(move || {
        if !certs.dir.exists() {
            let report = pki::init(&certs, &[], false)?;
            eprintln!(
                "Created a PKI in {} (server names {}).",
                certs.dir.display(),
                report.sans.join(", ")
            );
        }
        if !certs.device_cert(MANUAL_DEVICE).exists() {
            pki::issue_device(&certs, MANUAL_DEVICE, true)?;
        }
        anyhow::Ok(())
    })
    .await
    .context("the certificate task failed")?
}

/// Binds `addr` and returns the port: for port 0, a free one (released for the server).
fn concrete(addr: SocketAddr) -> anyhow::Result<SocketAddr> {
    if addr.port() != 0 {
        return Ok(addr);
    }
    let probe = std::net::TcpListener::bind(addr).with_context(|| format!("binding {addr}"))?;
    Ok(probe.local_addr()?)
}

fn loopback_if_unspecified(mut addr: SocketAddr) -> SocketAddr {
    if addr.ip().is_unspecified() {
        addr.set_ip(Ipv4Addr::LOCALHOST.into());
    }
    addr
}

async fn wait_for_port(
    addr: SocketAddr,
    server: &tokio::task::JoinHandle<anyhow::Result<()>>,
) -> anyhow::Result<()> {
    for _ in 0..300 {
        if server.is_finished() {
            anyhow::bail!("the server stopped while starting");
        }
        if tokio::net::TcpStream::connect(addr).await.is_ok() {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    anyhow::bail!("the broker did not start listening on {addr} within 30 s")
}

pub async fn run(
    mut config: Config,
    options: DemoOptions,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    train_if_missing(&config).await?;
    let certs = CertsDir::new(config.certs_dir());
    certs_ready(&certs).await?;
    config.mqtt.mqtts_addr = concrete(config.mqtt.mqtts_addr)?;
    let listener = tokio::net::TcpListener::bind(config.http_addr)
        .await
        .with_context(|| format!("binding the API to {}", config.http_addr))?;
    let api_addr = loopback_if_unspecified(listener.local_addr()?);
    let dashboard_listener = tokio::net::TcpListener::bind(config.dashboard_addr)
        .await
        .with_context(|| format!("binding the dashboard to {}", config.dashboard_addr))?;
    let dashboard_addr = loopback_if_unspecified(dashboard_listener.local_addr()?);
    let mqtt_addr = loopback_if_unspecified(config.mqtt.mqtts_addr);
    let mqtt_enabled = config.mqtt.enabled;
    let topic = config.mqtt.topic.clone();
    let server_stop = CancellationToken::new();
    let mut server = tokio::spawn(crate::serve::serve_on(
        config,
        listener,
        Some(dashboard_listener),
        server_stop.clone(),
        true,
    ));
    let target = if mqtt_enabled {
        wait_for_port(mqtt_addr, &server).await?;
        Target::Mqtt(MqttTarget {
            host: mqtt_addr.ip().to_string(),
            port: mqtt_addr.port(),
            topic: topic.clone(),
            qos: 1,
            ca: certs.ca_cert(),
            certs: certs.clone(),
        })
    } else {
        Target::Http(crate::sim::http::HttpTarget {
            url: format!("http://{api_addr}/api/telemetry"),
            token: None,
            ca: None,
        })
    };
    let scenario = sim::builtin::demo(options.seed);
    let patients: Vec<String> = scenario
        .patients
        .iter()
        .map(|p| p.device_id.clone())
        .collect();
    let simulator = tokio::spawn(sim::run(
        SimOptions {
            scenario,
            target,
            pace: Pace::Speed(options.speed),
            count: None,
            progress: false,
        },
        shutdown.clone(),
    ));
    println!(
        "{}",
        banner(
            dashboard_addr,
            api_addr,
            mqtt_enabled.then_some(mqtt_addr),
            &topic,
            &certs,
            &patients,
            options.speed
        )
    );
    let mut simulator = Some(simulator);
    tokio::select! {
        () = shutdown.cancelled() => {}
        finished = &mut server => {
            shutdown.cancel();
            if let Some(simulator) = simulator.take() {
                simulator.abort();
            }
            return finished.context("the server task failed")?.context("the server stopped");
        }
        finished = async { simulator.as_mut().expect("set above").await } => {
            simulator = None;
            // The simulated week ended (or the devices could not connect): keep serving.
            match finished.context("the simulator task failed")? {
                Ok(report) => eprintln!("Simulated patients finished: {report}"),
                Err(err) => eprintln!("error: the simulated patients stopped: {err:#}"),
            }
            shutdown.cancelled().await;
        }
    }
    eprintln!("Stopping: simulated patients first, then the server.");
    if let Some(simulator) = simulator {
        match simulator.await.context("the simulator task failed")? {
            Ok(report) => eprintln!("Simulated patients: {report}"),
            Err(err) => eprintln!("error: the simulated patients: {err:#}"),
        }
    }
    server_stop.cancel();
    server.await.context("the server task failed")?
}

fn banner(
    dashboard: SocketAddr,
    api: SocketAddr,
    mqtt: Option<SocketAddr>,
    topic: &str,
    certs: &CertsDir,
    patients: &[String],
    speed: f64,
) -> String {
    let certs_dir = certs.dir.display();
    let mut text = String::new();
    text.push_str("\n==================== VitalWatch demo ====================\n");
    text.push_str(&format!("REST API:   http://{api}/api/devices\n"));
    text.push_str("Access:     --trust-loopback over plaintext HTTP: anyone on THIS host has full access\n            to the API and dashboard without a token. `vitalwatch serve` (HTTPS, tokens and\n            logins required) is the way to run it for real.\n");
    text.push_str(&format!("Dashboard:  http://{dashboard}/\n"));
    if !crate::assets::assets_built() {
        text.push_str("            (its page is not built: run scripts/build-web, then rerun; the API works meanwhile)\n");
    }
    match mqtt {
        Some(mqtt) => text.push_str(&format!(
            "MQTT:       mqtts://{mqtt} topic {topic} (TLS, client certificates from {certs_dir})\n"
        )),
        None => text.push_str("MQTT:       disabled (--no-mqtt); the patients post over HTTP\n"),
    }
    text.push_str(&format!(
        "Patients:   {} simulated at {speed}x: {} (fever bed-02, tachycardia bed-04, hypoxia bed-06, sepsis bed-08, weak signal bed-09, dropout bed-10)\n",
        patients.len(),
        patients.join(" ")
    ));
    text.push_str("\nTry:\n");
    text.push_str(&format!("  curl http://{api}/health\n"));
    text.push_str(&format!("  curl http://{api}/api/devices\n"));
    text.push_str(&format!(
        "  curl http://{api}/api/devices/bed-02/readings\n"
    ));
    text.push_str(&format!("  curl 'http://{api}/api/alerts?state=active'\n"));
    text.push_str(&format!(
        "  curl -X POST http://{api}/api/telemetry -H \"Content-Type: application/json\" -d '{{\"device_id\":\"TEST_001\",\"heart_rate\":75,\"body_temp\":36.8,\"signal_strength\":-55,\"battery_level\":90}}'\n"
    ));
    if let Some(mqtt) = mqtt {
        text.push_str(&format!(
            "  mosquitto_pub -h localhost -p {port} --cafile {dir}/ca.crt --cert {dir}/devices/{MANUAL_DEVICE}.crt --key {dir}/devices/{MANUAL_DEVICE}.key -t {topic} -q 1 -m '{{\"device_id\":\"{MANUAL_DEVICE}\",\"heart_rate\":75,\"body_temp\":36.8,\"signal_strength\":-55,\"battery_level\":90}}'\n",
            port = mqtt.port(),
            dir = certs_dir,
        ));
    }
    text.push_str("\nStop with Ctrl-C.\n");
    text.push_str("=========================================================");
    text
}
