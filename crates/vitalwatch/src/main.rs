//! The `vitalwatch` binary: parses flags and wires the modules together; no logic here.

use clap::Parser;
use std::process::ExitCode;
use tokio_util::sync::CancellationToken;
use vitalwatch::cli::{BenchCommand, Cli, Command, ConfigCommand, LogFormat, StoreArgs};
use vitalwatch::config::{self, Config, Overrides};
use vitalwatch::{bench, devices_cmd, serve};
fn main() -> ExitCode {
    let cli = Cli::parse();
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

async fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Serve(args) => {
            let config = load_config(
                &args.store,
                Overrides {
                    http_addr: args.http_addr,
                    dashboard_addr: args.dashboard_addr,
                    registry_policy: args.registry_policy,
                    ..Overrides::default()
                },
            )?;
            let shutdown = CancellationToken::new();
            serve::cancel_on_signals(shutdown.clone());
            serve::run(config, shutdown).await
        }
        Command::Devices(args) => {
            let config = load_config(&args.store, Overrides::default())?;
            devices_cmd::run(config, args.command).await
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
        },
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
