//! `vitalwatch bench http|ingest`: bounded end-to-end throughput runs on loopback, each
//! reported as a ratio to a baseline measured in the same run.

pub mod http;
pub mod ingest;
mod own_view;
mod peers;
mod postgres;
mod pubclients;

use clap::{Args, Subcommand};

#[derive(Debug, Args)]
pub struct BenchArgs {
    #[command(subcommand)]
    pub command: BenchCommand,
}

#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// POST /api/telemetry throughput, single and batched, group commit vs one transaction per
    /// reading, each against a fresh temporary database.
    Http(http::HttpArgs),
    /// MQTT over TLS, QoS 1, end to end: simulated devices (one client certificate each)
    /// against an in-process `serve` with the embedded broker, compared in the same run with
    /// Debian's Mosquitto forwarding the same load to one subscriber; then idle connections.
    Ingest(ingest::IngestArgs),
}

pub async fn run(args: BenchArgs) -> anyhow::Result<()> {
    match args.command {
        BenchCommand::Http(args) => http::run(args).await,
        BenchCommand::Ingest(args) => ingest::run(args).await,
    }
}
