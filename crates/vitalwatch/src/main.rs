//! The `vitalwatch` binary: parses the command line and hands each subcommand to its module
//! in `vitalwatch::commands`; no logic here.

use clap::Parser;
use std::process::ExitCode;
use vitalwatch::commands::{self, Cli, Command};

fn main() -> ExitCode {
    let cli = Cli::parse();
    vitalwatch::tls::install_crypto_provider();
    commands::init_tracing(cli.log_format, cli.command.default_log_level());
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("error: starting the async runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(dispatch(cli.command)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

async fn dispatch(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Serve(args) => commands::serve::run(args).await,
        Command::Devices(args) => commands::devices::run(args).await,
        Command::Config(args) => commands::config::run(args),
        Command::Bench(args) => commands::bench::run(args).await,
        Command::Certs(args) => commands::certs::run(args).await,
        Command::Audit(args) => commands::audit::run(args).await,
        Command::Tokens(args) => commands::tokens::run(args).await,
        Command::Users(args) => commands::users::run(args).await,
        Command::Routes => {
            commands::routes::run();
            Ok(())
        }
        Command::Train(args) => commands::train::run(args).await,
        Command::Model(args) => commands::model::run(args).await,
        Command::Thresholds(args) => commands::thresholds::run(args).await,
        Command::Evaluate(args) => commands::evaluate::run(args).await,
        Command::Fhir(args) => commands::fhir::run(args).await,
        Command::Store(args) => commands::store::run(args).await,
        Command::Simulate(args) => commands::simulate::run(args).await,
        Command::Demo(args) => commands::demo::run(args).await,
        Command::Probe(args) => commands::probe::run(args).await,
    }
}
