//! The REST API (the seed's port 5000): routes, JSON errors, query parsing.
//!
//! Every error is `{"error": code, "detail": text}` with a 4xx status for client mistakes;
//! internal errors are a generic 500, logged once here, with no SQL or paths in the answer.
//! Handlers never see raw rusqlite or serde errors.

mod alerts;
mod dashboard;
mod devices;
mod health;
pub mod live;
mod model;
mod query;
mod telemetry;

use crate::pipeline::Pipeline;
use crate::store::{Store, StoreError};
use axum::Router;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use std::sync::Arc;

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    pub pipeline: Arc<Pipeline>,
    pub store: Arc<dyn Store>,
    /// MQTT ingest state (embedded broker, or external broker connection) for `/health`.
    pub broker: crate::ingest::BrokerStatus,
}

/// The whole API as one router, so tests can drive it in-process or over a socket.
pub fn app(state: AppState) -> Router {
    Router::new()
        .route("/health", get(health::health))
        .route("/api/telemetry", post(telemetry::post_telemetry))
        .route(
            "/api/devices",
            get(devices::list_devices).post(devices::register_device),
        )
        .route(
            "/api/devices/{id}",
            get(devices::get_device)
                .put(devices::update_device)
                .delete(devices::deactivate_device),
        )
        .route("/api/devices/{id}/readings", get(devices::device_readings))
        .route("/api/anomalies", get(devices::list_anomalies))
        .route("/api/model/reload", post(model::reload))
        .route("/api/alerts", get(alerts::list_alerts))
        .route("/api/alerts/{id}", get(alerts::get_alert))
        .route("/api/alerts/{id}/ack", post(alerts::acknowledge))
        .route("/api/alerts/{id}/silence", post(alerts::silence))
        .route("/api/alerts/{id}/resolve", post(alerts::resolve))
        .route("/api/alerts/{id}/verdict", post(alerts::verdict))
        .route("/api/devices/{id}/news2", get(alerts::device_news2))
        .route(
            "/api/devices/{id}/thresholds",
            get(alerts::get_thresholds)
                .put(alerts::put_thresholds)
                .delete(alerts::delete_thresholds),
        )
        .route("/api/thresholds/preview", post(alerts::preview_thresholds))
        .route("/api/webhooks/deliveries", get(alerts::webhook_deliveries))
        // The dashboard's reads (api/dashboard.rs); the live stream is `live::routes`.
        .route("/api/stats", get(dashboard::stats))
        .route("/api/series", get(dashboard::series))
        .route("/api/latest", get(dashboard::latest))
        .route("/api/readings", get(dashboard::readings))
        .route("/api/readings.csv", get(dashboard::readings_csv))
        .route("/api/ranges", get(dashboard::ranges))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(state)
}

async fn not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such route")
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "this route does not accept that method",
    )
}

/// An error answer: status, stable code, and a sentence a person can act on.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    detail: String,
    retry_after_s: Option<u64>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, detail: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code,
            detail: detail.into(),
            retry_after_s: None,
        }
    }

    pub fn bad_request(code: &'static str, detail: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, code, detail)
    }

    pub fn busy() -> ApiError {
        ApiError {
            retry_after_s: Some(1),
            ..ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "busy",
                "the pipeline is saturated; retry after a second",
            )
        }
    }

    pub fn internal() -> ApiError {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "internal error; it has been logged",
        )
    }
}

impl From<StoreError> for ApiError {
    fn from(err: StoreError) -> ApiError {
        match err {
            StoreError::DeviceNotFound(id) => ApiError::new(
                StatusCode::NOT_FOUND,
                "device_not_found",
                format!("device {id} is not registered"),
            ),
            StoreError::AlertNotFound(id) => ApiError::new(
                StatusCode::NOT_FOUND,
                "alert_not_found",
                format!("alert {id} does not exist"),
            ),
            StoreError::DeviceExists(id) => ApiError::new(
                StatusCode::CONFLICT,
                "device_exists",
                format!("device {id} is already registered"),
            ),
            StoreError::Busy => ApiError::busy(),
            StoreError::Closed => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "shutting_down",
                "the server is shutting down",
            ),
            other => {
                tracing::error!(message = "Store error while answering a request.", error = %other);
                ApiError::internal()
            }
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = axum::Json(serde_json::json!({ "error": self.code, "detail": self.detail }));
        let mut response = (self.status, body).into_response();
        if let Some(seconds) = self.retry_after_s {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, seconds.into());
        }
        response
    }
}

/// Requires a JSON content type (`application/json`, or `application/*+json`).
pub fn require_json(headers: &HeaderMap) -> Result<(), ApiError> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let essence = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    if essence == "application/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"))
    {
        return Ok(());
    }
    Err(ApiError::new(
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported_media_type",
        "send the body as JSON with Content-Type: application/json",
    ))
}

/// Reads a body of at most `limit` bytes; larger is 413 without reading it all.
pub async fn read_body(
    headers: &HeaderMap,
    body: axum::body::Body,
    limit: usize,
) -> Result<axum::body::Bytes, ApiError> {
    let too_large = || {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            format!("the body exceeds the limit of {limit} bytes"),
        )
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > limit as u64) {
        return Err(too_large());
    }
    axum::body::to_bytes(body, limit).await.map_err(|err| {
        let over_limit =
            std::iter::successors(Some(&err as &(dyn std::error::Error + 'static)), |e| {
                e.source()
            })
            .any(|e| e.is::<http_body_util::LengthLimitError>());
        if over_limit {
            too_large()
        } else {
            ApiError::bad_request("body_unreadable", "the request body could not be read")
        }
    })
}

/// The largest JSON body of an administrative request (devices, alerts, thresholds).
pub const MAX_JSON_BODY: usize = 16 * 1024;

/// Reads a small JSON request body into `T`: 415 without a JSON content type, 413 over
/// [`MAX_JSON_BODY`], 400 when unparseable, 422 when the shape is wrong. serde's message names
/// the field and the expectation, never a stored value.
pub async fn json_body<T: serde::de::DeserializeOwned>(
    headers: &HeaderMap,
    body: axum::body::Body,
) -> Result<T, ApiError> {
    require_json(headers)?;
    let bytes = read_body(headers, body, MAX_JSON_BODY).await?;
    serde_json::from_slice(&bytes).map_err(|err| {
        let status = if err.is_data() {
            StatusCode::UNPROCESSABLE_ENTITY
        } else {
            StatusCode::BAD_REQUEST
        };
        ApiError::new(status, "invalid_body", err.to_string())
    })
}

/// Who made a request, for the audit log (authentication arrives with the security issue).
pub fn actor(remote: Option<std::net::SocketAddr>) -> String {
    match remote {
        Some(addr) => format!("api:{}", addr.ip()),
        None => "api".to_owned(),
    }
}
