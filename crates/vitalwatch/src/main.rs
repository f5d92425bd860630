//! The `vitalwatch` binary: parses flags and wires the modules together; no logic here.

use clap::Parser;
use std::process::ExitCode;
use tokio_util::sync::CancellationToken;
use vitalwatch::cli::{
    AuditCommand, BenchCommand, Cli, Command, ConfigCommand, LogFormat, ServeArgs, StoreArgs,
};
use vitalwatch::config::{self, Config, Overrides};
use vitalwatch::{
    alerts_cmd, audit_cmd, bench, bench_ingest, certs_cmd, demo, devices_cmd, model_cmd, serve, sim,
};
fn main() -> ExitCode {
    let cli = Cli::parse();
    vitalwatch::tls::install_crypto_provider();
    // A benchmark's own report is what matters; the servers it starts log only warnings.
    let default_level = match cli.command {
        Command::Bench(_) => "vitalwatch=warn",
        _ => "vitalwatch=info",
    };
    init_tracing(cli.log_format, default_level);
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("error: starting the async runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli.command)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn init_tracing(format: LogFormat, default_level: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

fn load_config(store: &StoreArgs, mut overrides: Overrides) -> anyhow::Result<Config> {
    overrides.data_dir = store.data_dir.clone();
    Config::load(store.config.as_deref(), &overrides)
}

/// The configuration overrides `serve`'s flags give (`demo` forwards the same flags).
fn serve_overrides(args: &ServeArgs) -> Overrides {
    Overrides {
        http_addr: args.http_addr,
        dashboard_addr: args.dashboard_addr,
        http_plaintext: args.http_plaintext,
        trust_loopback: args.trust_loopback,
        registry_policy: args.registry_policy,
        mqtts_addr: args.mqtts_addr,
        mqtt_port: args.mqtt_port,
        mqtt_topic: args.mqtt_topic.clone(),
        certs_dir: args.certs_dir.clone(),
        mqtt_disabled: args.no_mqtt,
        mqtt_plaintext_addr: args.mqtt_addr,
        mqtt_allow_anonymous: args.mqtt_allow_anonymous,
        mqtt_wss_addr: args.mqtt_wss_addr,
        model_path: args.model.clone(),
        broker: args.external.broker.clone(),
        use_tls: args.external.mqtt_use_tls,
        broker_ca: args.external.broker_ca.clone(),
        broker_cert: args.external.broker_cert.clone(),
        broker_key: args.external.broker_key.clone(),
        client_id: args.external.client_id.clone(),
        share_group: args.external.share_group.clone(),
        ..Overrides::default()
    }
}

async fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Serve(args) => {
            let config = load_config(&args.store, serve_overrides(&args))?;
            let shutdown = CancellationToken::new();
            serve::cancel_on_signals(shutdown.clone());
            serve::run(config, shutdown).await
        }
        Command::Devices(args) => {
            let config = load_config(&args.store, Overrides::default())?;
            devices_cmd::run(config, args.command).await
        }
        Command::Thresholds(args) => {
            let config = load_config(&args.store, Overrides::default())?;
            alerts_cmd::thresholds(config, args.command).await
        }
        Command::Evaluate(args) => {
            let config = Config::load(args.config.as_deref(), &Overrides::default())?;
            alerts_cmd::evaluate(config, &args.paths, args.json, args.alerts).await
        }
        Command::Bench(args) => match args.command {
            BenchCommand::Http {
                readings,
                clients,
                batch,
            } => {
                bench::http(bench::HttpBenchOptions {
                    readings,
                    clients,
                    batch,
                })
                .await
            }
            BenchCommand::Ingest {
                devices,
                readings,
                inflight,
                idle,
                max_seconds,
                no_mosquitto,
                rate,
            } => {
                bench_ingest::run(bench_ingest::IngestBenchOptions {
                    devices,
                    readings,
                    inflight,
                    idle,
                    max_time: std::time::Duration::from_secs(max_seconds),
                    mosquitto: !no_mosquitto,
                    rate,
                })
                .await
            }
        },
        Command::Tokens(args) => {
            let config = load_config(&args.store, Overrides::default())?;
            vitalwatch::access_cmd::tokens(config, args.command).await
        }
        Command::Users(args) => {
            let config = load_config(&args.store, Overrides::default())?;
            vitalwatch::access_cmd::users(config, args.command).await
        }
        Command::Routes => {
            vitalwatch::access_cmd::routes();
            Ok(())
        }
        Command::Audit(args) => {
            let config = load_config(&args.store, Overrides::default())?;
            match args.command {
                AuditCommand::Verify => audit_cmd::verify(config).await,
                AuditCommand::Export { since } => {
                    let since = since
                        .map(|raw| {
                            vitalwatch_core::telemetry::Timestamp::parse_text(&raw)
                                .or_else(|| {
                                    raw.parse::<f64>().ok().and_then(
                                        vitalwatch_core::telemetry::Timestamp::parse_epoch,
                                    )
                                })
                                .ok_or_else(|| {
                                    anyhow::anyhow!(
                                        "--since must be an RFC 3339 time or epoch seconds"
                                    )
                                })
                        })
                        .transpose()?;
                    audit_cmd::export(config, since).await
                }
            }
        }
        Command::Certs(args) => {
            let config = load_config(
                &args.store,
                Overrides {
                    certs_dir: args.certs_dir,
                    ..Overrides::default()
                },
            )?;
            certs_cmd::run(config, args.command).await
        }
        Command::Train(args) => {
            let config = load_config(&args.store, Overrides::default())?;
            model_cmd::train(config, args).await
        }
        Command::Simulate(args) => {
            let config = load_config(&args.store, Overrides::default())?;
            let shutdown = CancellationToken::new();
            serve::cancel_on_signals(shutdown.clone());
            sim::cli::simulate(config, args, shutdown).await
        }
        Command::Demo(args) => {
            let overrides = demo::overrides(serve_overrides(&args.serve));
            let config = load_config(&args.serve.store, overrides)?;
            let shutdown = CancellationToken::new();
            serve::cancel_on_signals(shutdown.clone());
            demo::run(config, demo::DemoOptions::from(&args), shutdown).await
        }
        Command::Model(args) => model_cmd::run(args.command).await,
        Command::Config(args) => match args.command {
            ConfigCommand::Default => {
                print!("{}", config::DEFAULT_TOML);
                Ok(())
            }
            ConfigCommand::Show { store } => {
                let config = load_config(&store, Overrides::default())?;
                print!("{}", toml::to_string_pretty(&config)?);
                Ok(())
            }
        },
    }
}
