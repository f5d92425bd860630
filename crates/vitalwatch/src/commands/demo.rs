//! `vitalwatch demo`: the whole system in one command on a fresh clone.
//!
//! Creates the PKI when missing, trains a small model when there is none (the same code as
//! `vitalwatch train`), starts the server in-process with every `serve` flag (the API and the
//! broker bind to 127.0.0.1 unless told otherwise), connects ten simulated patients over MQTT
//! with TLS and their own certificates (`sim`), and prints what to try. On Ctrl-C or SIGTERM
//! the simulators stop first, then the server shuts down gracefully.

use super::serve::ServeArgs;
use crate::config::Config;
use crate::pki::{self, CertsDir};
use crate::sim::{self, Pace, SimOptions, Target, mqtt::MqttTarget};
use anyhow::Context;
use clap::Args;
use std::net::{Ipv4Addr, SocketAddr};
use tokio_util::sync::CancellationToken;

/// The API's address unless a flag or the environment says otherwise.
const DEMO_HTTP_ADDR: SocketAddr = SocketAddr::new(std::net::IpAddr::V4(Ipv4Addr::LOCALHOST), 5000);
/// The broker's port unless told otherwise (bound to loopback).
const DEMO_MQTT_PORT: u16 = 8883;
const DEMO_DASHBOARD_ADDR: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(Ipv4Addr::LOCALHOST), 8501);
/// The device whose certificate the banner's `mosquitto_pub` line uses.
const MANUAL_DEVICE: &str = "demo-pub";

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Every `serve` flag (the API and the broker bind to 127.0.0.1 unless given).
    #[command(flatten)]
    pub serve: ServeArgs,

    /// Scenario time per wall-clock time for the simulated patients.
    #[arg(long, value_name = "FACTOR", default_value = "20x", value_parser = crate::sim::parse_speed)]
    pub speed: f64,

    /// Seeds the simulated patients.
    #[arg(long, value_name = "S", default_value_t = 1)]
    pub seed: u64,
}

impl DemoArgs {
    /// `serve`'s configuration with the demo's loopback defaults in place of flags not given.
    pub fn config(&self) -> anyhow::Result<Config> {
        let mut serve = self.serve.clone();
        serve.http_addr.get_or_insert(DEMO_HTTP_ADDR);
        serve.dashboard_addr.get_or_insert(DEMO_DASHBOARD_ADDR);
        // A workstation demo: the seed's `curl http://localhost:5000/...` examples work as
        // written because loopback clients are trusted over plaintext HTTP (said in the banner).
        serve.trust_loopback = true;
        serve.http_plaintext = true;
        if serve.mqtts_addr.is_none() {
            let port = serve.mqtt_port.unwrap_or(DEMO_MQTT_PORT);
            serve.mqtts_addr = Some(SocketAddr::new(Ipv4Addr::LOCALHOST.into(), port));
        }
        serve.config()
    }
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

fn loopback_if_unspecified(mut addr: SocketAddr) -> SocketAddr {
    if addr.ip().is_unspecified() {
        addr.set_ip(Ipv4Addr::LOCALHOST.into());
    }
    addr
}

/// Runs the demo until SIGINT or SIGTERM.
pub async fn run(args: DemoArgs) -> anyhow::Result<()> {
    let config = args.config()?;
    demo(config, args.speed, args.seed, super::shutdown_on_signals()).await
}

async fn demo(
    config: Config,
    speed: f64,
    seed: u64,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    super::train::train_small_if_missing(&config.model_path(), &config).await?;
    let certs = CertsDir::new(config.certs_dir());
    certs_ready(&certs).await?;
    let topic = config.mqtt.topic.clone();
    let server_stop = CancellationToken::new();
    let mut server = crate::server::start(config, server_stop.clone()).await?;
    server.announce();
    let api_addr = loopback_if_unspecified(server.api);
    let dashboard_addr = server.dashboard.map(loopback_if_unspecified);
    let mqtt_addr = server.mqtts.map(loopback_if_unspecified);
    let target = match mqtt_addr {
        Some(mqtt_addr) => Target::Mqtt(MqttTarget {
            host: mqtt_addr.ip().to_string(),
            port: mqtt_addr.port(),
            topic: topic.clone(),
            qos: 1,
            ca: certs.ca_cert(),
            certs: certs.clone(),
        }),
        None => Target::Http(crate::sim::http::HttpTarget {
            url: format!("http://{api_addr}/api/telemetry"),
            token: None,
            ca: None,
        }),
    };
    let scenario = sim::builtin::demo(seed);
    let patients: Vec<String> = scenario
        .patients
        .iter()
        .map(|p| p.device_id.clone())
        .collect();
    let simulator = tokio::spawn(sim::run(
        SimOptions {
            scenario,
            target,
            pace: Pace::Speed(speed),
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
            mqtt_addr,
            &topic,
            &certs,
            &patients,
            speed
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
            return finished.context("the server stopped");
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
    server.await
}

fn banner(
    dashboard: Option<SocketAddr>,
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
    if let Some(dashboard) = dashboard {
        text.push_str(&format!("Dashboard:  http://{dashboard}/\n"));
        if !crate::assets::assets_built() {
            text.push_str("            (its page is not built: run scripts/build-web, then rerun; the API works meanwhile)\n");
        }
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
