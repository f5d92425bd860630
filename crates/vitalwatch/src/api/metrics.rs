//! `GET /metrics`: the Prometheus exposition (`metrics::prometheus`), behind the `metrics`
//! role on the API listener, and token-free on the optional loopback listener
//! (`--metrics-addr`). It holds counts, states and latencies only: every label is a transport,
//! reason, outcome, condition, priority or certificate role, never a device id or patient data.

use super::AppState;
use super::health::readiness;
use crate::metrics::openmetrics;
use crate::metrics::prometheus::{self, Snapshot};
use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use std::path::PathBuf;
use vitalwatch_core::alerting::Priority;

/// What the scrape reads besides the pipeline and the store: fixed when the server starts.
#[derive(Clone, Debug, Default)]
pub struct OpsInfo {
    /// Where the CA and server certificates are (their expiry is exported).
    pub certs_dir: PathBuf,
    /// The store writer queue's capacity, exported beside its depth.
    pub store_queue_capacity: u64,
}

/// The text format 0.0.4, unless the scraper asks for OpenMetrics 1.0 (`Accept:
/// application/openmetrics-text`, as Prometheus does): then `metrics::openmetrics` rewrites it.
const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

#[utoipa::path(
    get,
    path = "/metrics",
    tag = "operations",
    responses(
        (status = 200, description = "Prometheus text exposition format 0.0.4, or OpenMetrics 1.0 when `Accept` asks for application/openmetrics-text", content_type = "text/plain", body = String),
        (status = 401, description = "No or an invalid token", body = super::openapi::ErrorBody),
        (status = 403, description = "The token's role may not read metrics", body = super::openapi::ErrorBody),
    )
)]
pub async fn metrics(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let snapshot = snapshot(&state).await;
    let text = prometheus::render(state.pipeline.metrics(), &snapshot);
    let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok());
    let (content_type, body) = if openmetrics::wanted(accept) {
        (openmetrics::CONTENT_TYPE, openmetrics::from_text(&text))
    } else {
        (CONTENT_TYPE, text)
    };
    (
        [(header::CONTENT_TYPE, HeaderValue::from_static(content_type))],
        body,
    )
        .into_response()
}

async fn snapshot(state: &AppState) -> Snapshot {
    let ready = readiness(state).await;
    let open = state.store.open_alerts().await.ok();
    let open_alerts = [Priority::Low, Priority::Medium, Priority::High]
        .into_iter()
        .map(|priority| {
            let count = open.as_ref().map_or(0, |(_, alerts)| {
                alerts.iter().filter(|a| a.priority == priority).count() as u64
            });
            (priority.as_str(), count)
        })
        .collect();
    let audit = &state.auth.audit;
    let certs = crate::pki::CertsDir::new(state.ops.certs_dir.clone());
    let certificate_expiry = tokio::task::spawn_blocking(move || {
        [("ca", certs.ca_cert()), ("server", certs.server_cert())]
            .into_iter()
            .filter_map(|(role, path)| Some((role, not_after(&path)?)))
            .collect()
    })
    .await
    .unwrap_or_default();
    Snapshot {
        ready: ready.ready,
        store_up: ready.store_up,
        broker_connected: state.broker.is_connected(),
        model_loaded: state.pipeline.model().status().loaded,
        open_alerts,
        store_queue_capacity: state.ops.store_queue_capacity,
        audit_waiting: audit.waiting() as u64,
        audit_refused: audit.refused.load(std::sync::atomic::Ordering::Relaxed),
        audit_written: audit.written.load(std::sync::atomic::Ordering::Relaxed),
        certificate_expiry,
    }
}

/// A PEM certificate file's notAfter, in seconds since the epoch; `None` when unreadable.
fn not_after(path: &std::path::Path) -> Option<i64> {
    let pem = std::fs::read(path).ok()?;
    let (_, pem) = x509_parser::pem::parse_x509_pem(&pem).ok()?;
    let cert = pem.parse_x509().ok()?;
    Some(cert.validity().not_after.timestamp())
}

/// The token-free loopback listener's router: `/metrics` and nothing else.
pub fn local_router(state: AppState) -> Router {
    Router::new()
        .route("/metrics", axum::routing::get(metrics))
        .with_state(state)
}

/// Counts alert episodes raised and resolved, by condition and priority, from the event bus
/// (a lagging receiver misses some; the open-alerts gauge is read from the store instead).
pub async fn alert_counts(
    mut events: crate::events::QuietReceiver,
    shutdown: tokio_util::sync::CancellationToken,
) {
    use crate::events::Event;
    use tokio::sync::broadcast::error::RecvError;
    use vitalwatch_core::alerting::TransitionKind;
    loop {
        let event = tokio::select! {
            () = shutdown.cancelled() => return,
            event = events.recv() => event,
        };
        let transition = match event {
            Ok(Event::Alert(transition)) => transition,
            Ok(_) | Err(RecvError::Lagged(_)) => continue,
            Err(RecvError::Closed) => return,
        };
        let name = match transition.kind {
            TransitionKind::Raised => prometheus::ALERTS_OPENED,
            TransitionKind::Resolved => prometheus::ALERTS_CLOSED,
            _ => continue,
        };
        ::metrics::counter!(
            name,
            "condition" => transition.alert.condition.as_str(),
            "priority" => transition.alert.priority.as_str()
        )
        .increment(1);
    }
}

/// Binds the token-free loopback `/metrics` listener (plain HTTP) and serves it until
/// `shutdown`; returns the bound address.
pub async fn serve_local(
    addr: std::net::SocketAddr,
    state: AppState,
    shutdown: tokio_util::sync::CancellationToken,
) -> anyhow::Result<std::net::SocketAddr> {
    use anyhow::Context;
    anyhow::ensure!(
        addr.ip().is_loopback(),
        "the token-free metrics listener binds loopback only, not {addr}"
    );
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding the metrics listener to {addr}"))?;
    let bound = listener.local_addr()?;
    tracing::info!(message = "Metrics are served on loopback.", event = "metrics.listening", metrics = %bound);
    tokio::spawn(async move {
        let served = axum::serve(listener, local_router(state))
            .with_graceful_shutdown(shutdown.cancelled_owned())
            .await;
        if let Err(err) = served {
            tracing::error!(message = "The metrics listener failed.", event = "metrics.failed", error = %err);
        }
    });
    Ok(bound)
}

/// How often new audit rows are checked against the hash chain.
const AUDIT_CHECK_EVERY: std::time::Duration = std::time::Duration::from_secs(60);

/// Verifies the audit chain incrementally (the rows written since the last pass) and exports
/// the verdict as `vitalwatch_audit_chain_ok` (1 intact, 0 broken) for the alerting rule.
pub async fn audit_chain_check(
    store: std::sync::Arc<dyn crate::store::Store>,
    shutdown: tokio_util::sync::CancellationToken,
) {
    let mut check = crate::store::audit::ChainCheck::default();
    let mut after = 0;
    let mut broken = false;
    loop {
        while !broken {
            let rows = match store.audit_log(after, 1000).await {
                Ok(rows) => rows,
                Err(err) => {
                    tracing::warn!(message = "Audit chain check could not read the log.", event = "audit.check_failed", error = %err);
                    break;
                }
            };
            let Some(last) = rows.last() else { break };
            after = last.id;
            if let Err(brk) = check.feed(&rows) {
                tracing::error!(
                    message = "The audit chain does not verify.",
                    event = "audit.chain_broken",
                    entry = brk.id,
                    reason = %brk.reason,
                );
                broken = true;
            }
        }
        ::metrics::gauge!("vitalwatch_audit_chain_ok").set(if broken { 0.0 } else { 1.0 });
        ::metrics::gauge!("vitalwatch_audit_chain_verified_entries").set(check.verified as f64);
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(AUDIT_CHECK_EVERY) => {}
        }
    }
}
