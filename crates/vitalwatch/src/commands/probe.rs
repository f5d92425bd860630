//! `vitalwatch probe`: asks a running server whether it is alive, for health checks where no
//! HTTP client is installed (a container's `HEALTHCHECK`, a minimal image without curl).
//!
//! It trusts only the server's own CA (`<certs-dir>/ca.crt`), exactly as a device does, and
//! exits 0 on a 2xx answer, 1 otherwise with the reason on standard error.

use super::StoreArgs;
use anyhow::Context;
use clap::Args;
use std::path::PathBuf;

#[derive(Debug, Args)]
pub struct ProbeArgs {
    /// The URL to ask; /health is the liveness answer.
    #[arg(
        long,
        env = "VITALWATCH_PROBE_URL",
        default_value = "https://localhost:5000/health"
    )]
    pub url: String,

    /// The CA that signed the server's certificate [default: <certs-dir>/ca.crt]. Ignored for
    /// http:// URLs.
    #[arg(long, value_name = "FILE")]
    pub ca: Option<PathBuf>,

    /// The PKI directory whose ca.crt is trusted [default: <data-dir>/certs].
    #[arg(long, env = "VITALWATCH_CERTS_DIR", value_name = "DIR")]
    pub certs_dir: Option<PathBuf>,

    #[command(flatten)]
    pub store: StoreArgs,
}

pub async fn run(args: ProbeArgs) -> anyhow::Result<()> {
    let ca = if args.url.starts_with("https://") {
        Some(match args.ca {
            Some(ca) => ca,
            None => {
                let certs_dir = args.certs_dir;
                let config = args.store.config_with(|config| {
                    if let Some(dir) = certs_dir {
                        config.mqtt.certs_dir = Some(dir);
                    }
                })?;
                config.certs_dir().join("ca.crt")
            }
        })
    } else {
        None
    };
    let target = crate::sim::http::HttpTarget {
        url: args.url.clone(),
        token: None,
        ca,
    };
    let agent = crate::sim::http::agent(&target)?;
    let url = args.url;
    let status = tokio::task::spawn_blocking(move || {
        agent
            .get(&url)
            .call()
            .map(|response| response.status())
            .with_context(|| format!("asking {url}"))
    })
    .await
    .context("the probe's thread failed")??;
    anyhow::ensure!(status.is_success(), "answered {status}");
    println!("ok {status}");
    Ok(())
}
