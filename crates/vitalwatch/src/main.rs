//! The `vitalwatch` binary: parses flags and wires the modules together; no logic here.

mod api;
mod cli;
mod config;
mod devices_cmd;
mod metrics;
mod pipeline;
mod serve;
mod store;

use clap::Parser;
use cli::{Cli, Command, ConfigCommand, LogFormat, StoreArgs};
use config::{Config, Overrides};
use std::process::ExitCode;
use tokio_util::sync::CancellationToken;

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing(cli.log_format);
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

fn init_tracing(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("vitalwatch=info"));
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
