//! `GET /health` (liveness) and `GET /ready` (readiness).
//!
//! `/health` answers 200 while the process serves HTTP. Anonymously it says only `status`,
//! `version` and `ready`; an authenticated caller also gets the seed's `model_loaded` and the
//! state of every part (counts and states only, never patient data), `cluster` among them:
//! this node's id, the leader's and whether this node leads. `/ready` answers 503
//! while the node cannot commit readings: the store is unavailable, or (external-broker mode)
//! the broker connection is down; load balancers, Compose and Kubernetes stop sending work to
//! it until it answers 200 again.

use super::AppState;
use crate::auth::Principal;
use axum::Json;
use axum::extract::{Extension, State};
use axum::http::StatusCode;
use serde::Serialize;
use serde_json::Value;

/// Why a node is not ready, as `/ready` lists it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum NotReady {
    /// The store does not answer (or its writer stopped).
    StoreUnavailable,
    /// External-broker mode and the broker connection is down.
    BrokerDisconnected,
}

/// The readiness verdict and what it was made of.
#[derive(Clone, Debug)]
pub struct Readiness {
    pub ready: bool,
    pub store_up: bool,
    pub reasons: Vec<NotReady>,
}

/// The readiness decision, pure: the store's state and, in external-broker mode, the
/// broker connection's.
pub fn decide(store_up: bool, broker_connected: Option<bool>) -> Readiness {
    let mut reasons = Vec::new();
    if !store_up {
        reasons.push(NotReady::StoreUnavailable);
    }
    if broker_connected == Some(false) {
        reasons.push(NotReady::BrokerDisconnected);
    }
    Readiness {
        ready: reasons.is_empty(),
        store_up,
        reasons,
    }
}

pub async fn readiness(state: &AppState) -> Readiness {
    let store_up = state.store.health().await.status == "ok";
    decide(store_up, state.broker.is_connected())
}

/// `/ready`'s body.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ReadyBody {
    /// `ready` or `not_ready`.
    pub status: &'static str,
    /// Empty when ready.
    pub reasons: Vec<NotReady>,
}

#[utoipa::path(
    get,
    path = "/ready",
    tag = "operations",
    responses(
        (status = 200, description = "The node can commit readings", body = ReadyBody),
        (status = 503, description = "The store is unavailable or the external broker is disconnected", body = ReadyBody),
    )
)]
pub async fn ready(State(state): State<AppState>) -> (StatusCode, Json<ReadyBody>) {
    let readiness = readiness(&state).await;
    let status = if readiness.ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let body = ReadyBody {
        status: if readiness.ready {
            "ready"
        } else {
            "not_ready"
        },
        reasons: readiness.reasons,
    };
    (status, Json(body))
}

#[utoipa::path(
    get,
    path = "/health",
    tag = "operations",
    responses(
        (status = 200, description = "Alive. Anonymous callers get status, version and ready only; a token or session adds the state of every part", body = HealthBody),
        (status = 503, description = "Alive but the store is unavailable", body = HealthBody),
    )
)]
pub async fn health(
    State(state): State<AppState>,
    principal: Option<Extension<Principal>>,
) -> (StatusCode, Json<HealthBody>) {
    let store = state.store.health().await;
    let healthy = store.status == "ok";
    let readiness = decide(healthy, state.broker.is_connected());
    let status = if healthy {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let mut body = HealthBody {
        status: if healthy { "healthy" } else { "unhealthy" },
        version: env!("CARGO_PKG_VERSION"),
        ready: readiness.ready,
        model_loaded: None,
        model: None,
        uptime_s: None,
        store: None,
        readings: None,
        rejected: None,
        broker: None,
        cluster: None,
    };
    if principal.is_some() {
        let metrics = state.pipeline.metrics();
        let model = state.pipeline.model().status();
        body.model_loaded = Some(model.loaded);
        body.model = Some(model.description);
        body.uptime_s = Some(metrics.uptime_s());
        body.store = Some(store);
        body.readings = Some(metrics.counts());
        body.rejected = Some(metrics.refusals());
        body.broker = Some(state.broker.to_json());
        body.cluster = Some(state.cluster.view());
    }
    (status, Json(body))
}

/// `/health`'s body. Anonymously only `status`, `version` and `ready`; an authenticated
/// caller also gets the state of every part (counts and states only).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct HealthBody {
    /// `healthy`, or `unhealthy` while the store is unavailable.
    pub status: &'static str,
    pub version: &'static str,
    /// What `/ready` would answer.
    pub ready: bool,
    /// The seed's field.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model_loaded: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uptime_s: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub store: Option<crate::store::StoreHealth>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub readings: Option<crate::metrics::ReadingCounts>,
    /// Refused readings by reason.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rejected: Option<std::collections::BTreeMap<&'static str, u64>>,
    /// The MQTT ingest: embedded broker or external connection.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub broker: Option<Value>,
    /// This node, and which node leads (on SQLite: this one, alone).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cluster: Option<crate::cluster::ClusterView>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_needs_the_store_and_in_external_mode_the_broker() {
        let check = |store_up, broker, expected: &[NotReady]| {
            let readiness = decide(store_up, broker);
            assert_eq!(readiness.reasons, expected, "{store_up} {broker:?}");
            assert_eq!(readiness.ready, expected.is_empty());
        };
        check(true, None, &[]);
        check(true, Some(true), &[]);
        check(true, Some(false), &[NotReady::BrokerDisconnected]);
        check(false, None, &[NotReady::StoreUnavailable]);
        check(
            false,
            Some(false),
            &[NotReady::StoreUnavailable, NotReady::BrokerDisconnected],
        );
    }
}
