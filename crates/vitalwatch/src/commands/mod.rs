//! The command line: one module per subcommand, named as [`Command`] names it, each owning its
//! clap `Args` struct (whose doc comments are its `--help`) and its `run`.
//!
//! What several commands share lives here: the top-level [`Cli`], the database flags
//! ([`StoreArgs`], which turn into a [`Config`]), who runs a change ([`actor`]), and the parsing
//! of device ids, roles and times. The commands turn flags into calls on the library (the server
//! is [`crate::server`]); they hold no service logic of their own, and nothing below this layer
//! imports them.

pub mod audit;
pub mod bench;
pub mod certs;
pub mod config;
pub mod demo;
pub mod devices;
pub mod evaluate;
pub mod fhir;
pub mod model;
pub mod probe;
pub mod routes;
pub mod serve;
pub mod simulate;
pub mod store;
pub mod thresholds;
pub mod tokens;
pub mod train;
pub mod users;

use crate::auth::Role;
use crate::config::Config;
use anyhow::Context;
use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;
use tokio_util::sync::CancellationToken;
use vitalwatch_core::telemetry::{DeviceId, Timestamp};

/// VitalWatch: secure, fast healthcare IoT monitoring.
///
/// Devices stream vital signs; VitalWatch checks every reading against medical ranges, stores
/// it durably, and answers on a REST API (port 5000 by default).
#[derive(Debug, Parser)]
#[command(name = "vitalwatch", version, propagate_version = true)]
pub struct Cli {
    /// Log format on standard error. The level comes from RUST_LOG (default: vitalwatch=info).
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text, env = "VITALWATCH_LOG_FORMAT")]
    pub log_format: LogFormat,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the service: pipeline, SQLite store and REST API.
    Serve(serve::ServeArgs),
    /// Register, list, update and deactivate devices (works beside a running server).
    Devices(devices::DevicesArgs),
    /// Show configuration.
    Config(config::ConfigArgs),
    /// Measure throughput end to end (bounded runs on loopback).
    Bench(bench::BenchArgs),
    /// Manage the PKI: the CA, the server certificate and device certificates.
    Certs(certs::CertsArgs),
    /// Check or export the tamper-evident audit trail.
    Audit(audit::AuditArgs),
    /// API tokens for scripts, integrations and devices: create (shown once), list, revoke.
    Tokens(tokens::TokensArgs),
    /// Dashboard users (passwords are read from standard input): create, list, passwd,
    /// disable, enable.
    Users(users::UsersArgs),
    /// List every route of the API and dashboard with the role it needs.
    Routes,
    /// Train the anomaly model (isolation forest) and write the model file.
    Train(train::TrainArgs),
    /// Score a CSV with a model file, or show a model file's metadata.
    Model(model::ModelArgs),
    /// Per-patient alert thresholds: set, show, clear, and preview before applying.
    Thresholds(thresholds::ThresholdsArgs),
    /// Replay labelled scenarios (TOML files or directories of them) through the real rules
    /// and alert engine, and score the alerts against the ground truth and the seed's
    /// one-alert-per-reading behaviour.
    Evaluate(evaluate::EvaluateArgs),
    /// The store itself: copy a SQLite store into PostgreSQL (`store copy`).
    Store(store::StoreCommandArgs),
    /// HL7 FHIR R4: export the store as NDJSON (Device, Patient, Observation, Flag).
    Fhir(fhir::FhirArgs),
    /// Simulated patients as real devices: MQTT over TLS with their own certificates (or
    /// HTTP, or a labelled CSV), paced in real or compressed time, or as fast as acks allow.
    Simulate(simulate::SimulateArgs),
    /// The whole system in one command: certificates, a model, the server and ten simulated
    /// patients, until Ctrl-C.
    Demo(demo::DemoArgs),
    /// Ask a running server whether it is alive (exit 0 on a 2xx answer from /health): the
    /// health check of the container image, which has no curl.
    Probe(probe::ProbeArgs),
}

impl Command {
    /// The log filter when RUST_LOG is unset: a benchmark's own report is what matters, so the
    /// servers it starts log only warnings.
    pub fn default_log_level(&self) -> &'static str {
        match self {
            Command::Bench(_) => "vitalwatch=warn",
            _ => "vitalwatch=info",
        }
    }
}

/// Options shared by every command that opens the database.
#[derive(Debug, Args, Clone, Default)]
pub struct StoreArgs {
    /// Configuration file (TOML). Its values sit between the built-in defaults and the
    /// environment/flags. `vitalwatch config default` prints every key.
    #[arg(long, global = true, env = "VITALWATCH_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Directory for the database (<DIR>/anomalies.db) [default: data].
    #[arg(long, global = true, env = "VITALWATCH_DATA_DIR", value_name = "DIR")]
    pub data_dir: Option<PathBuf>,

    /// The database: a PostgreSQL URL (postgres://user:password@host:port/db, with
    /// ?sslmode=verify-full&sslrootcert=FILE for TLS) [default: SQLite in the data directory].
    #[arg(
        long,
        global = true,
        env = "VITALWATCH_DATABASE_URL",
        value_name = "URL",
        hide_env_values = true
    )]
    pub database: Option<String>,

    /// PostgreSQL: start even when the database's synchronous_commit is off or local.
    #[arg(long, global = true)]
    pub allow_async_commit: bool,
}

impl StoreArgs {
    /// The configuration in force: defaults < `--config` file < these flags.
    pub fn config(&self) -> anyhow::Result<Config> {
        self.config_with(|_| {})
    }

    /// [`StoreArgs::config`] with a command's own flags (and their environment variables)
    /// written over the file by `flags`.
    pub fn config_with(&self, flags: impl FnOnce(&mut Config)) -> anyhow::Result<Config> {
        Config::load(self.config.as_deref(), |config| {
            if let Some(data_dir) = &self.data_dir {
                config.data_dir = data_dir.clone();
            }
            if let Some(url) = &self.database {
                config.store.url = Some(crate::secret::Secret::new(url.clone()));
            }
            if self.allow_async_commit {
                config.store.allow_async_commit = true;
            }
            flags(config);
        })
    }
}

/// Installs the tracing subscriber on standard error; RUST_LOG wins over `default_level`.
pub fn init_tracing(format: LogFormat, default_level: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_level));
    use std::io::IsTerminal;
    // Colour codes only for a person at a terminal: never in a file, a pipe or a journal.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

/// Who runs a command-line change, as the audit trail records it: `cli:<login name>`.
pub fn actor() -> String {
    let user = std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .unwrap_or_else(|_| "unknown".to_owned());
    format!("cli:{user}")
}

/// A token that is cancelled on SIGINT or SIGTERM.
pub fn shutdown_on_signals() -> CancellationToken {
    let token = CancellationToken::new();
    let cancel = token.clone();
    tokio::spawn(async move {
        let ctrl_c = tokio::signal::ctrl_c();
        #[cfg(unix)]
        let terminate = async {
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(mut signal) => {
                    signal.recv().await;
                }
                Err(err) => {
                    tracing::warn!(event = "server.signal_handler_failed", message = "SIGTERM handler not installed.", error = %err);
                    std::future::pending::<()>().await;
                }
            }
        };
        #[cfg(not(unix))]
        let terminate = std::future::pending::<()>();
        tokio::select! {
            _ = ctrl_c => {}
            () = terminate => {}
        }
        tracing::info!(
            event = "server.signal",
            message = "Signal received; stopping."
        );
        cancel.cancel();
    });
    token
}

/// A device id from the command line, checked like one in a payload.
pub fn device_id(raw: &str, config: &Config) -> anyhow::Result<DeviceId> {
    DeviceId::parse(raw, config.limits.max_device_id_len).map_err(|_| {
        anyhow::anyhow!("invalid device id {raw:?}: use 1 to 64 characters of A-Z a-z 0-9 _ . : -")
    })
}

/// A role named on the command line.
pub fn role(text: &str) -> anyhow::Result<Role> {
    Role::parse(text)
        .with_context(|| format!("unknown role {text:?}: use viewer, clinician, admin or device"))
}

/// A time given to `flag` as RFC 3339 or epoch seconds.
pub fn time_or_epoch(raw: &str, flag: &str) -> anyhow::Result<Timestamp> {
    Timestamp::parse_text(raw)
        .or_else(|| raw.parse::<f64>().ok().and_then(Timestamp::parse_epoch))
        .with_context(|| format!("{flag} must be an RFC 3339 time or epoch seconds"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    /// Every command path below `command`, `command` itself first (as `["devices", "list"]`).
    fn paths(command: &clap::Command, prefix: &[String], out: &mut Vec<Vec<String>>) {
        out.push(prefix.to_vec());
        // clap's generated `help` subcommands are not ours to document.
        for sub in command
            .get_subcommands()
            .filter(|sub| sub.get_name() != "help")
        {
            let mut path = prefix.to_vec();
            path.push(sub.get_name().to_owned());
            paths(sub, &path, out);
        }
    }

    fn find<'a>(command: &'a clap::Command, path: &[String]) -> &'a clap::Command {
        path.iter().fold(command, |command, name| {
            command
                .find_subcommand(name)
                .unwrap_or_else(|| panic!("no subcommand {name}"))
        })
    }

    #[test]
    fn clap_accepts_the_definitions() {
        Cli::command().debug_assert();
    }

    #[test]
    fn every_command_and_option_has_help() {
        let mut root = Cli::command();
        root.build();
        let mut all = Vec::new();
        paths(&root, &[], &mut all);
        // The walk reaches the sub-subcommands (e.g. `bench ingest`), not only the first level.
        assert!(
            all.iter().any(|path| path == &["bench", "ingest"]),
            "{all:?}"
        );
        assert!(all.len() > 40, "only {} commands found", all.len());
        let mut missing = Vec::new();
        for path in &all {
            let command = find(&root, path);
            let name = format!("vitalwatch {}", path.join(" "));
            if !path.is_empty() && command.get_about().is_none() {
                missing.push(format!("{name}: the command has no doc comment"));
            }
            for arg in command.get_arguments().filter(|arg| !arg.is_hide_set()) {
                if arg.get_help().is_none() && arg.get_long_help().is_none() {
                    missing.push(format!("{name}: {} has no doc comment", arg.get_id()));
                }
            }
        }
        assert!(missing.is_empty(), "undocumented:\n{}", missing.join("\n"));
    }

    #[test]
    fn every_command_renders_its_help() {
        let mut root = Cli::command();
        root.build();
        let mut all = Vec::new();
        paths(&root, &[], &mut all);
        for path in &all {
            let args = std::iter::once("vitalwatch")
                .chain(path.iter().map(String::as_str))
                .chain(["--help"]);
            let err = Cli::command()
                .try_get_matches_from(args)
                .expect_err("--help ends parsing");
            let name = format!("vitalwatch {}", path.join(" "));
            assert_eq!(
                err.kind(),
                clap::error::ErrorKind::DisplayHelp,
                "{name}: {err}"
            );
            let text = err.render().to_string();
            assert!(text.contains("Usage: "), "{name}:\n{text}");
            let about = find(&root, path)
                .get_about()
                .map(ToString::to_string)
                .unwrap_or_default();
            let first_line = about.lines().next().unwrap_or_default();
            assert!(
                text.contains(first_line),
                "{name} help lacks {first_line:?}:\n{text}"
            );
        }
    }

    #[test]
    fn times_parse_as_rfc3339_or_epoch_seconds() {
        let text = time_or_epoch("2026-01-01T00:00:00Z", "--since").unwrap();
        let epoch = time_or_epoch("1767225600", "--since").unwrap();
        assert_eq!(text, epoch);
        let err = time_or_epoch("yesterday", "--since").unwrap_err();
        assert_eq!(
            err.to_string(),
            "--since must be an RFC 3339 time or epoch seconds"
        );
    }
}
