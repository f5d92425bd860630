//! `GET /health`: the seed's keys (`status`, `model_loaded`) plus the state of every part.
//! It reveals counts and states only, never patient data.

use super::AppState;
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde_json::{Value, json};

pub async fn health(State(state): State<AppState>) -> (StatusCode, Json<Value>) {
    let store = state.store.health().await;
    let healthy = store.status == "ok";
    let metrics = state.pipeline.metrics();
    let model = state.pipeline.model().status();
    let body = json!({
        "status": if healthy { "healthy" } else { "unhealthy" },
        "model_loaded": model.loaded,
        "model": model.description,
        "version": env!("CARGO_PKG_VERSION"),
        "uptime_s": metrics.uptime_s(),
        "store": store,
        "readings": metrics.counts(),
        "rejected": metrics.refusals(),
        "broker": state.broker.to_json(),
    });
    let status = if healthy {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(body))
}
