//! Command-line definitions (clap derive). Every option's doc comment is its `--help` text;
//! flag docs are written once, here.

use crate::config::RegistryPolicy;
use clap::{Args, Parser, Subcommand, ValueEnum};
use std::net::SocketAddr;
use std::path::PathBuf;

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
    Serve(ServeArgs),
    /// Register, list, update and deactivate devices (works beside a running server).
    Devices(DevicesArgs),
    /// Show configuration.
    Config(ConfigArgs),
    /// Measure throughput end to end (bounded runs on loopback).
    Bench(BenchArgs),
}

#[derive(Debug, Args)]
pub struct BenchArgs {
    #[command(subcommand)]
    pub command: BenchCommand,
}

#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// POST /api/telemetry throughput, single and batched, group commit vs one transaction per
    /// reading, each against a fresh temporary database.
    Http {
        /// Readings posted in each of the four runs.
        #[arg(long, default_value_t = 5000)]
        readings: u64,
        /// Concurrent HTTP clients.
        #[arg(long, default_value_t = 16)]
        clients: u64,
        /// Readings per POST in the batched runs.
        #[arg(long, default_value_t = 100)]
        batch: u64,
    },
}

/// Options shared by every command that opens the database.
#[derive(Debug, Args, Clone)]
pub struct StoreArgs {
    /// Configuration file (TOML). Its values sit between the built-in defaults and the
    /// environment/flags. `vitalwatch config default` prints every key.
    #[arg(long, global = true, env = "VITALWATCH_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Directory for the database (<DIR>/anomalies.db) [default: data].
    #[arg(long, global = true, env = "VITALWATCH_DATA_DIR", value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    #[command(flatten)]
    pub store: StoreArgs,

    /// Address of the REST API [default: 0.0.0.0:5000]. Port 0 picks a free port; the bound
    /// address is printed on standard output as `listening api=ADDR`.
    #[arg(long, env = "VITALWATCH_HTTP_ADDR", value_name = "ADDR")]
    pub http_addr: Option<SocketAddr>,

    /// Address of the live dashboard [default: 0.0.0.0:8501]. Port 0 picks a free port; the
    /// bound address is printed on standard output as `listening dashboard=ADDR`.
    #[arg(long, env = "VITALWATCH_DASHBOARD_ADDR", value_name = "ADDR")]
    pub dashboard_addr: Option<SocketAddr>,

    /// What to do with readings from devices that are not registered
    /// [default: auto-register].
    #[arg(
        long,
        env = "VITALWATCH_REGISTRY_POLICY",
        value_enum,
        value_name = "POLICY"
    )]
    pub registry_policy: Option<RegistryPolicy>,
}

#[derive(Debug, Args)]
pub struct DevicesArgs {
    #[command(flatten)]
    pub store: StoreArgs,

    #[command(subcommand)]
    pub command: DevicesCommand,
}

#[derive(Debug, Subcommand)]
pub enum DevicesCommand {
    /// List registered devices as JSON lines.
    List,
    /// Show one device as JSON.
    Show {
        /// The device id.
        id: String,
    },
    /// Register a device.
    Register {
        /// The device id: 1 to 64 characters of A-Z a-z 0-9 _ . : -
        id: String,
        #[command(flatten)]
        fields: DeviceFields,
    },
    /// Change a device's label, location or expected interval.
    Update {
        /// The device id.
        id: String,
        #[command(flatten)]
        fields: DeviceFields,
        /// Remove the patient label.
        #[arg(long, conflicts_with = "patient_label")]
        clear_patient_label: bool,
        /// Remove the location.
        #[arg(long, conflicts_with = "location")]
        clear_location: bool,
    },
    /// Deactivate a device: its history stays, its new readings are quarantined.
    Deactivate {
        /// The device id.
        id: String,
    },
    /// Reactivate a deactivated device.
    Reactivate {
        /// The device id.
        id: String,
    },
}

#[derive(Debug, Args, Default)]
pub struct DeviceFields {
    /// A label that identifies the patient to clinicians (e.g. bed and initials).
    #[arg(long, value_name = "TEXT")]
    pub patient_label: Option<String>,
    /// Where the device is (ward, room).
    #[arg(long, value_name = "TEXT")]
    pub location: Option<String>,
    /// Seconds expected between two readings (used to detect an offline device).
    #[arg(long, value_name = "SECONDS")]
    pub expected_interval: Option<f64>,
}

#[derive(Debug, Args)]
pub struct ConfigArgs {
    #[command(subcommand)]
    pub command: ConfigCommand,
}

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Print the default configuration as commented TOML.
    Default,
    /// Print the configuration in force after defaults, file, environment and flags.
    Show {
        #[command(flatten)]
        store: StoreArgs,
    },
}
