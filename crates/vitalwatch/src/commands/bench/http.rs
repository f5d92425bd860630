//! `vitalwatch bench http`: end-to-end throughput of `POST /api/telemetry` against the real
//! server (in-process, on loopback) and the real store, with group commit, compared in the same
//! run with a naive baseline that commits one transaction per reading (`store.max_batch = 1`).
//!
//! Bounded: every run posts a fixed number of readings and stops.

use crate::config::Config;
use crate::server;

use anyhow::Context;
use clap::Args;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

#[derive(Clone, Debug, Args)]
pub struct HttpArgs {
    /// Readings posted in each of the four runs.
    #[arg(long, default_value_t = 5000)]
    pub readings: u64,
    /// Concurrent HTTP clients.
    #[arg(long, default_value_t = 16)]
    pub clients: u64,
    /// Readings per POST in the batched runs.
    #[arg(long, default_value_t = 100)]
    pub batch: u64,
    /// Also run the main four on this PostgreSQL database (each in a scratch schema, dropped
    /// afterwards), beside SQLite, and measure its bare COPY and one-INSERT-per-transaction
    /// limits on the same rows.
    #[arg(long, value_name = "URL")]
    pub database: Option<String>,
}

struct RunResult {
    label: String,
    readings: u64,
    elapsed: Duration,
}

impl RunResult {
    fn per_second(&self) -> f64 {
        self.readings as f64 / self.elapsed.as_secs_f64()
    }
}

pub async fn run(options: HttpArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        options.readings > 0 && options.clients > 0 && options.batch > 0,
        "--readings, --clients and --batch must be positive"
    );
    let mut results = Vec::new();
    for (label, max_batch, per_post) in [
        ("single POST, naive (1 transaction per reading)", 1, 1),
        ("single POST, group commit", 2048, 1),
        (
            "batched POST, naive (1 transaction per reading)",
            1,
            options.batch,
        ),
        ("batched POST, group commit", 2048, options.batch),
    ] {
        let result = run_once(label, max_batch, per_post, Caller::Loopback, &options, None).await?;
        eprintln!(
            "{label}: {} readings in {:.2} s",
            result.readings,
            result.elapsed.as_secs_f64()
        );
        results.push(result);
    }
    let on_postgres = match &options.database {
        Some(url) => Some(postgres_runs(url, &results[..4], &options).await?),
        None => None,
    };
    // What authentication costs: the same single-POST group-commit run, with each client
    // sending its device token (looked up on every request), then over HTTPS as well.
    for (label, caller) in [
        (
            "single POST, group commit, trusted loopback",
            Caller::Loopback,
        ),
        ("single POST, group commit, device token", Caller::Token),
        (
            "single POST, group commit, trusted loopback",
            Caller::Loopback,
        ),
        (
            "single POST, group commit, device token over HTTPS",
            Caller::TokenTls,
        ),
    ] {
        let result = run_once(label, 2048, 1, caller, &options, None).await?;
        eprintln!(
            "{label}: {} readings in {:.2} s",
            result.readings,
            result.elapsed.as_secs_f64()
        );
        results.push(result);
    }
    println!(
        "POST /api/telemetry, {} readings per run (keep-alive connections), {} clients, batches of {}, SQLite WAL synchronous=FULL",
        options.readings, options.clients, options.batch
    );
    println!("{:<52} {:>12} {:>8}", "run", "readings/s", "ratio");
    for pair in results.chunks(2) {
        let baseline = pair[0].per_second();
        for result in pair {
            println!(
                "{:<52} {:>12.0} {:>7.1}x",
                result.label,
                result.per_second(),
                result.per_second() / baseline
            );
        }
    }
    if let Some(lines) = on_postgres {
        println!();
        for line in lines {
            println!("{line}");
        }
    }
    Ok(())
}

/// The four main runs again on PostgreSQL, each beside its SQLite result, then the server's
/// bare write limits; the report's lines.
async fn postgres_runs(
    url: &str,
    sqlite: &[RunResult],
    options: &HttpArgs,
) -> anyhow::Result<Vec<String>> {
    let mut lines = vec![
        format!(
            "PostgreSQL ({}), the same runs, synchronous_commit as the server has it",
            crate::store::postgres::connect::parse(url)?.display
        ),
        format!(
            "{:<52} {:>12} {:>10} {:>10}",
            "run", "readings/s", "vs naive", "vs SQLite"
        ),
    ];
    let mut naive = 0.0f64;
    let mut group = 0.0f64;
    for (n, base) in sqlite.iter().enumerate() {
        let max_batch = if base.label.contains("naive") {
            1
        } else {
            2048
        };
        let per_post = if base.label.starts_with("batched") {
            options.batch
        } else {
            1
        };
        let scratch = super::postgres::Scratch::create(url, n).await?;
        let result = run_once(
            &base.label,
            max_batch,
            per_post,
            Caller::Loopback,
            options,
            Some(&scratch.url),
        )
        .await;
        scratch.drop_schema().await?;
        let result = result?;
        eprintln!(
            "{} (PostgreSQL): {} readings in {:.2} s",
            result.label,
            result.readings,
            result.elapsed.as_secs_f64()
        );
        if max_batch == 1 {
            naive = result.per_second();
        } else {
            group = group.max(result.per_second());
        }
        lines.push(format!(
            "{:<52} {:>12.0} {:>9.1}x {:>9.2}x",
            result.label,
            result.per_second(),
            result.per_second() / naive,
            result.per_second() / base.per_second()
        ));
    }
    let (copy, one_per_tx) =
        super::postgres::baselines(url, options.readings, options.clients).await?;
    lines.push(format!(
        "bare COPY (binary) of the same rows:             {copy:>12.0} readings/s; group commit reaches {:.2}x of it",
        group / copy
    ));
    lines.push(format!(
        "bare INSERT, one row per transaction:            {one_per_tx:>12.0} readings/s; group commit is {:.1}x it",
        group / one_per_tx
    ));
    Ok(lines)
}

/// How the bench's clients authenticate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Caller {
    /// Plain HTTP from loopback with `--trust-loopback`: no credential at all.
    Loopback,
    /// Plain HTTP, one device token per client.
    Token,
    /// HTTPS, one device token per client.
    TokenTls,
}

async fn run_once(
    label: &str,
    max_batch: usize,
    per_post: u64,
    caller: Caller,
    options: &HttpArgs,
    database: Option<&str>,
) -> anyhow::Result<RunResult> {
    let dir = tempfile::tempdir().context("creating a temporary data directory")?;
    let mut config = Config {
        data_dir: dir.path().join("data"),
        ..Config::default()
    };
    config.store.url = database.map(crate::secret::Secret::new);
    config.store.max_batch = max_batch;
    config.mqtt.enabled = false;
    config.http.tls = caller == Caller::TokenTls;
    config.http.trust_loopback = caller == Caller::Loopback;
    config.store.queue_capacity = 1024;
    config.store.queue_timeout_ms = 60_000;
    let mut tokens = Vec::new();
    if caller != Caller::Loopback {
        let store = server::open_store(&config).await?;
        for client in 0..options.clients {
            let request = crate::auth::TokenRequest {
                name: format!("bench-{client}"),
                role: crate::auth::Role::Device,
                device_id: Some(format!("bench-{client}")),
                expires_at: None,
            };
            tokens.push(Some(
                crate::auth::issue_token(&*store, request, "system:bench".to_owned())
                    .await?
                    .0,
            ));
        }
        store.close().await;
    } else {
        tokens.resize(options.clients as usize, None);
    }
    let ca = if caller == Caller::TokenTls {
        let certs = crate::pki::CertsDir::new(config.certs_dir());
        crate::pki::init(&certs, &[], false)?;
        Some(certs.ca_cert())
    } else {
        None
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let scheme = if ca.is_some() { "https" } else { "http" };
    let url = format!("{scheme}://{}/api/telemetry", listener.local_addr()?);
    let shutdown = CancellationToken::new();
    let server = tokio::spawn(server::run_on(config, listener, shutdown.clone(), false));

    let next = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let total = options.readings;
    let clients: Vec<_> = (0..options.clients)
        .map(|client| {
            let target = crate::sim::http::HttpTarget {
                url: url.clone(),
                token: tokens[client as usize].clone(),
                ca: ca.clone(),
            };
            let next = Arc::clone(&next);
            std::thread::spawn(move || post_until_done(&target, client, per_post, total, &next))
        })
        .collect();
    let mut posted = 0;
    for client in clients {
        posted += client
            .join()
            .map_err(|_| anyhow::anyhow!("a bench client panicked"))??;
    }
    let elapsed = started.elapsed();
    shutdown.cancel();
    server.await??;
    Ok(RunResult {
        label: label.to_owned(),
        readings: posted,
        elapsed,
    })
}

/// Posts readings (`per_post` at a time) until `total` have been claimed across clients.
fn post_until_done(
    target: &crate::sim::http::HttpTarget,
    client: u64,
    per_post: u64,
    total: u64,
    next: &AtomicU64,
) -> anyhow::Result<u64> {
    let agent = crate::sim::http::agent(target)?;
    let authorization = target.token.as_ref().map(|token| format!("Bearer {token}"));
    let mut posted = 0;
    loop {
        let first = next.fetch_add(per_post, Ordering::Relaxed);
        if first >= total {
            return Ok(posted);
        }
        let last = (first + per_post).min(total);
        let body = if per_post == 1 {
            reading_json(client, first)
        } else {
            let items: Vec<String> = (first..last).map(|n| reading_json(client, n)).collect();
            format!("[{}]", items.join(","))
        };
        let mut request = agent
            .post(&target.url)
            .header("Content-Type", "application/json");
        if let Some(authorization) = &authorization {
            request = request.header("Authorization", authorization);
        }
        let response = request.send(body.as_bytes()).context("posting a reading")?;
        anyhow::ensure!(
            response.status() == 200,
            "the server answered {}",
            response.status()
        );
        posted += last - first;
    }
}

fn reading_json(client: u64, n: u64) -> String {
    // Distinct timestamps per reading, so nothing is deduplicated.
    let ts = 1_767_225_600_000u64 + n;
    format!(
        r#"{{"device_id":"bench-{client}","timestamp":{ts},"heart_rate":{},"body_temp":36.8,"signal_strength":-60,"battery_level":80}}"#,
        60 + n % 50
    )
}
