//! `GET /health` (liveness) and `GET /ready` (readiness).
//!
//! `/health` answers 200 while the process serves HTTP. Anonymously it says only `status`,
//! `version` and `ready`; an authenticated caller also gets the seed's `model_loaded` and the
//! state of every part (counts and states only, never patient data). Both say `cluster`:
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
use serde_json::{Value, json};

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
        (status = 200, description = "Alive. Anonymous callers get status, version and ready only; a token or session adds the state of every part", body = Value),
        (status = 503, description = "Alive but the store is unavailable", body = Object),
    )
)]
pub async fn health(
    State(state): State<AppState>,
    principal: Option<Extension<Principal>>,
) -> (StatusCode, Json<Value>) {
    let store = state.store.health().await;
    let healthy = store.status == "ok";
    let readiness = decide(healthy, state.broker.is_connected());
    let status = if healthy {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let mut body = json!({
        "status": if healthy { "healthy" } else { "unhealthy" },
        "version": env!("CARGO_PKG_VERSION"),
        "ready": readiness.ready,
        "cluster": state.cluster.view(),
    });
    if principal.is_some() {
        let metrics = state.pipeline.metrics();
        let model = state.pipeline.model().status();
        let details = json!({
            "model_loaded": model.loaded,
            "model": model.description,
            "uptime_s": metrics.uptime_s(),
            "store": store,
            "readings": metrics.counts(),
            "rejected": metrics.refusals(),
            "broker": state.broker.to_json(),
        });
        if let (Some(body), Value::Object(details)) = (body.as_object_mut(), details) {
            body.extend(details);
        }
    }
    (status, Json(body))
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
