//! The PostgreSQL side of `bench http --database`: a scratch schema per run (so runs start
//! empty and nothing of the database's own is touched), and the bare write limits of the
//! server the same rows are measured against: one binary `COPY`, and one `INSERT` per
//! transaction.

use crate::store::postgres::connect;
use anyhow::Context;
use std::time::{Duration, Instant};
use tokio_postgres::types::{ToSql, Type};

/// A schema of its own on the given database, dropped by [`Scratch::drop_schema`].
pub struct Scratch {
    base_url: String,
    name: String,
    /// The database URL with this schema first on the search path.
    pub url: String,
}

async fn client(url: &str) -> anyhow::Result<deadpool_postgres::Object> {
    let target = connect::parse(url)?;
    let pool = connect::pool(&target, 2)?;
    pool.get()
        .await
        .map_err(|err| anyhow::anyhow!("connecting to {}: {err}", target.display))
}

impl Scratch {
    pub async fn create(url: &str, n: usize) -> anyhow::Result<Scratch> {
        let name = format!("vitalwatch_bench_{}_{n}", std::process::id());
        client(url)
            .await?
            .batch_execute(&format!("CREATE SCHEMA {name}"))
            .await
            .context("creating the bench's schema")?;
        let separator = if url.contains('?') { '&' } else { '?' };
        Ok(Scratch {
            base_url: url.to_owned(),
            url: format!("{url}{separator}options=-c%20search_path%3D{name}"),
            name,
        })
    }

    pub async fn drop_schema(self) -> anyhow::Result<()> {
        client(&self.base_url)
            .await?
            .batch_execute(&format!("DROP SCHEMA {} CASCADE", self.name))
            .await
            .context("dropping the bench's schema")
    }
}

const TABLE: &str = "CREATE TABLE bare (device_id text NOT NULL, timestamp timestamptz NOT NULL, \
    heart_rate float8, body_temp float8, signal_strength float8, battery_level float8, \
    source text NOT NULL, UNIQUE (device_id, timestamp))";

/// The rows the HTTP bench posts, as columns.
fn row(n: u64, clients: u64) -> (String, chrono::DateTime<chrono::Utc>, f64) {
    let ts =
        chrono::DateTime::from_timestamp_millis(1_767_225_600_000 + n as i64).unwrap_or_default();
    (format!("bench-{}", n % clients), ts, 60.0 + (n % 50) as f64)
}

/// Rows per second of a plain binary COPY of `n` rows, and of `n` single-row INSERTs, each
/// its own transaction.
pub async fn baselines(url: &str, n: u64, clients: u64) -> anyhow::Result<(f64, f64)> {
    let scratch = Scratch::create(url, 999).await?;
    let client = client(&scratch.url).await?;
    client.batch_execute(TABLE).await?;
    let started = Instant::now();
    let sink = client
        .copy_in("COPY bare FROM STDIN BINARY")
        .await
        .context("starting COPY")?;
    let writer = tokio_postgres::binary_copy::BinaryCopyInWriter::new(
        sink,
        &[
            Type::TEXT,
            Type::TIMESTAMPTZ,
            Type::FLOAT8,
            Type::FLOAT8,
            Type::FLOAT8,
            Type::FLOAT8,
            Type::TEXT,
        ],
    );
    let mut writer = std::pin::pin!(writer);
    for k in 0..n {
        let (device, ts, hr) = row(k, clients);
        let values: [&(dyn ToSql + Sync); 7] =
            [&device, &ts, &hr, &36.8f64, &-60.0f64, &80.0f64, &"http"];
        writer.as_mut().write(&values).await?;
    }
    writer.finish().await?;
    let copy = n as f64 / started.elapsed().as_secs_f64();

    client.batch_execute("TRUNCATE bare").await?;
    let insert = client
        .prepare("INSERT INTO bare VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT DO NOTHING")
        .await?;
    let started = Instant::now();
    let deadline = Duration::from_secs(60);
    let mut done = 0u64;
    while done < n && started.elapsed() < deadline {
        let (device, ts, hr) = row(done, clients);
        client
            .execute(
                &insert,
                &[&device, &ts, &hr, &36.8f64, &-60.0f64, &80.0f64, &"http"],
            )
            .await?;
        done += 1;
    }
    let one_per_tx = done as f64 / started.elapsed().as_secs_f64();
    drop(client);
    scratch.drop_schema().await?;
    Ok((copy, one_per_tx))
}
