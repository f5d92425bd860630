//! `vitalwatch serve`: wires store, pipeline and API together and runs until a signal.
//!
//! Shutdown order: stop accepting, let in-flight requests finish (their readings are
//! committed before they are answered), summarise refusals into the audit log, then close the
//! store, which commits anything still queued.

use crate::api::{self, AppState};
use crate::config::Config;
use crate::metrics::Metrics;
use crate::pipeline::{self, Pipeline};
use crate::store::sqlite::SqliteStore;
use crate::store::{Retention, Store, StoreOptions};
use anyhow::Context;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

const RETENTION_EVERY: Duration = Duration::from_secs(3600);
const REFUSAL_AUDIT_EVERY: Duration = Duration::from_secs(60);

pub fn store_options(config: &Config) -> StoreOptions {
    StoreOptions {
        policy: config.registry.policy,
        default_expected_interval_s: config.registry.default_expected_interval_s,
        max_batch: config.store.max_batch,
        queue_capacity: config.store.queue_capacity,
        redelivery_window_s: config.store.redelivery_window_s,
        unknown_device_severity: config.rules.unknown_device.severity,
    }
}

pub fn open_store(config: &Config) -> anyhow::Result<Arc<SqliteStore>> {
    let path = config.database_path();
    let store = SqliteStore::open(&path, store_options(config))
        .with_context(|| format!("opening the store at {}", path.display()))?;
    Ok(Arc::new(store))
}

pub async fn run(config: Config, shutdown: CancellationToken) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(config.http_addr)
        .await
        .with_context(|| format!("binding the API to {}", config.http_addr))?;
    let dashboard = tokio::net::TcpListener::bind(config.dashboard_addr)
        .await
        .with_context(|| format!("binding the dashboard to {}", config.dashboard_addr))?;
    serve_on(config, listener, Some(dashboard), shutdown, true).await
}

/// Serves on an already-bound listener (benchmarks bind their own). With `announce`, prints
/// `listening api=ADDR` on standard output once the store is open and requests are accepted.
pub async fn run_on(
    config: Config,
    listener: tokio::net::TcpListener,
    shutdown: CancellationToken,
    announce: bool,
) -> anyhow::Result<()> {
    serve_on(config, listener, None, shutdown, announce).await
}

/// [`run_on`] plus, when given, the dashboard's listener (assets + the same API routes).
async fn serve_on(
    config: Config,
    listener: tokio::net::TcpListener,
    dashboard: Option<tokio::net::TcpListener>,
    shutdown: CancellationToken,
    announce: bool,
) -> anyhow::Result<()> {
    let store: Arc<dyn Store> = open_store(&config)?;
    let metrics = Arc::new(Metrics::default());
    let pipeline = Arc::new(Pipeline::new(
        Arc::clone(&store),
        config.limits.clone(),
        config.rules.clone(),
        metrics,
        config.store.queue_timeout(),
    ));
    let api_addr = listener.local_addr()?;
    tracing::info!(
        message = "VitalWatch is serving.",
        api = %api_addr,
        database = %config.database_path().display(),
        registry_policy = config.registry.policy.as_str(),
    );
    if announce {
        // A machine-readable line for scripts and tests that asked for port 0.
        println!("listening api={api_addr}");
    }

    let tasks = TaskTracker::new();
    let retention = Retention {
        readings_days: config.store.retention_days,
        anomalies_days: config.store.anomaly_retention_days,
        audit_days: config.store.audit_retention_days,
    };
    tasks.spawn(retention_task(
        Arc::clone(&store),
        retention,
        shutdown.clone(),
    ));
    tasks.spawn(refusal_audit_task(Arc::clone(&pipeline), shutdown.clone()));

    let state = AppState {
        pipeline: Arc::clone(&pipeline),
        store: Arc::clone(&store),
    };
    let app = api::app(state.clone()).merge(api::live::routes(state.clone(), shutdown.clone()));
    if let Some(dashboard) = dashboard {
        let dashboard_addr = dashboard.local_addr()?;
        if !crate::dashboard::assets_built() {
            tracing::warn!(
                message = "Dashboard assets not built; the dashboard shows how to build them.",
                hint = "scripts/build-web"
            );
        }
        tracing::info!(message = "Dashboard is serving.", dashboard = %dashboard_addr);
        if announce {
            println!("listening dashboard={dashboard_addr}");
        }
        let dashboard_app = crate::dashboard::app(app.clone());
        let dashboard_shutdown = shutdown.clone();
        tasks.spawn(async move {
            let served = axum::serve(
                dashboard,
                dashboard_app.into_make_service_with_connect_info::<SocketAddr>(),
            )
            .with_graceful_shutdown(dashboard_shutdown.cancelled_owned())
            .await;
            if let Err(err) = served {
                tracing::error!(message = "The dashboard listener failed.", error = %err);
            }
        });
    }
    let served = axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown.clone().cancelled_owned())
    .await;
    tracing::info!(message = "Shutting down: committing what is queued.");
    shutdown.cancel();
    tasks.close();
    tasks.wait().await;
    pipeline.flush_refusal_audit().await;
    store.close().await;
    tracing::info!(message = "Stopped cleanly.");
    served.context("serving the API")
}

async fn retention_task(store: Arc<dyn Store>, retention: Retention, shutdown: CancellationToken) {
    // First pass shortly after start, then hourly.
    let mut delay = Duration::from_secs(10);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(delay) => {}
        }
        delay = RETENTION_EVERY;
        match store.purge(pipeline::now(), retention).await {
            Ok(counts) => tracing::debug!(message = "Retention pass done.", ?counts),
            Err(err) => tracing::warn!(message = "Retention pass failed.", error = %err),
        }
    }
}

async fn refusal_audit_task(pipeline: Arc<Pipeline>, shutdown: CancellationToken) {
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(REFUSAL_AUDIT_EVERY) => {}
        }
        pipeline.flush_refusal_audit().await;
    }
}

/// Cancels `token` on SIGINT or SIGTERM.
pub fn cancel_on_signals(token: CancellationToken) {
    tokio::spawn(async move {
        let ctrl_c = tokio::signal::ctrl_c();
        #[cfg(unix)]
        let terminate = async {
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(mut signal) => {
                    signal.recv().await;
                }
                Err(err) => {
                    tracing::warn!(message = "SIGTERM handler not installed.", error = %err);
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
        tracing::info!(message = "Signal received; stopping.");
        token.cancel();
    });
}
