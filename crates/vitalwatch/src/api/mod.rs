//! The REST API (the seed's port 5000): routes, JSON errors, query parsing.
//!
//! Every error is `{"error": code, "detail": text}` with a 4xx status for client mistakes;
//! internal errors are a generic 500, logged once here, with no SQL or paths in the answer.
//! Handlers never see raw rusqlite or serde errors.

pub use crate::api_error::ApiError;

mod alerts;
mod auth;
mod devices;
mod fhir;
mod health;
mod limits;
pub mod live;
pub mod metrics;
mod model;
pub mod openapi;
mod query;
mod request_log;
mod series;
mod telemetry;
#[cfg(test)]
mod tests;

use crate::auth::Access;
use crate::auth::layer::{AuthService, Guard};
use crate::auth::routes::{Policy, RouteRule, Routes};
use crate::pipeline::Pipeline;
use crate::store::Store;
use axum::Router;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use std::sync::Arc;
use tokio_util::sync::CancellationToken;
use tower_http::set_header::SetResponseHeaderLayer;

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    pub pipeline: Arc<Pipeline>,
    pub store: Arc<dyn Store>,
    /// MQTT ingest state (embedded broker, or external broker connection) for `/health`.
    pub broker: crate::ingest::BrokerStatus,
    pub auth: Arc<AuthService>,
    /// What `/metrics` reads besides the pipeline and the store.
    pub ops: metrics::OpsInfo,
    /// This node and who leads (`/health`).
    pub cluster: Arc<crate::cluster::ClusterStatus>,
}

/// The API's routes, each with the access it needs (`auth::Access`).
pub fn api_routes() -> Routes<AppState> {
    use Access::{Admin, Authenticated, Clinical, Public, Read, Session, Telemetry};
    Routes::new()
        .get("/health", Public, health::health)
        .get("/ready", Public, health::ready)
        .get("/metrics", Access::Metrics, metrics::metrics)
        .get("/api/openapi.json", Public, openapi::document)
        .post("/auth/login", Public, auth::login)
        .post("/auth/logout", Authenticated, auth::logout)
        .get("/auth/me", Authenticated, auth::me)
        .post("/auth/password", Session, auth::change_own_password)
        .post("/api/telemetry", Telemetry, telemetry::post_telemetry)
        .get("/api/devices", Read, devices::list_devices)
        .post("/api/devices", Admin, devices::register_device)
        .get("/api/devices/{id}", Read, devices::get_device)
        .put("/api/devices/{id}", Admin, devices::update_device)
        .delete("/api/devices/{id}", Admin, devices::deactivate_device)
        .get("/api/devices/{id}/readings", Read, devices::device_readings)
        .post("/api/devices/{id}/revoke", Admin, devices::revoke_device)
        .get("/api/anomalies", Read, devices::list_anomalies)
        .post("/api/model/reload", Admin, model::reload)
        .get("/api/alerts", Read, alerts::list_alerts)
        .get("/api/alerts/{id}", Read, alerts::get_alert)
        .post("/api/alerts/{id}/ack", Clinical, alerts::acknowledge)
        .post("/api/alerts/{id}/silence", Clinical, alerts::silence)
        .post("/api/alerts/{id}/resolve", Clinical, alerts::resolve)
        .post("/api/alerts/{id}/verdict", Clinical, alerts::verdict)
        .get("/api/devices/{id}/news2", Read, alerts::device_news2)
        .get("/api/devices/{id}/thresholds", Read, alerts::get_thresholds)
        .put(
            "/api/devices/{id}/thresholds",
            Clinical,
            alerts::put_thresholds,
        )
        .delete(
            "/api/devices/{id}/thresholds",
            Clinical,
            alerts::delete_thresholds,
        )
        .post(
            "/api/thresholds/preview",
            Clinical,
            alerts::preview_thresholds,
        )
        .get(
            "/api/webhooks/deliveries",
            Admin,
            alerts::webhook_deliveries,
        )
        .get("/api/tokens", Admin, auth::list_tokens)
        .post("/api/tokens", Admin, auth::create_token)
        .delete("/api/tokens/{id}", Admin, auth::revoke_token)
        .get("/api/users", Admin, auth::list_users)
        .post("/api/users", Admin, auth::create_user)
        .put("/api/users/{name}", Admin, auth::update_user)
        // The dashboard's reads (api/series.rs); the live stream is `live::routes`.
        .get("/api/stats", Read, series::stats)
        .get("/api/series", Read, series::series)
        .get("/api/latest", Read, series::latest)
        .get("/api/readings", Read, series::readings)
        .get("/api/readings.csv", Read, series::readings_csv)
        .get("/api/ranges", Read, series::ranges)
        // The read-only FHIR R4 API (api/fhir.rs), resources from `crate::fhir`.
        .merge(fhir::routes())
}

/// The whole API (and the live stream) as one router with its route table; the guard is
/// applied by [`guarded`] once the listener's table is complete.
pub fn app(state: AppState, shutdown: CancellationToken) -> (Router, Vec<RouteRule>) {
    let (api, mut table) = api_routes()
        .map_router(|router| {
            router
                .fallback(not_found)
                .method_not_allowed_fallback(method_not_allowed)
        })
        .into_parts();
    let (live, live_table) = live::routes(state.clone(), shutdown);
    table.extend(live_table);
    (api.with_state(state).merge(live), table)
}

/// Every route of a listener (the API's, or the dashboard's, which adds its page).
pub fn route_table(dashboard: bool) -> Vec<RouteRule> {
    let mut table = api_routes().table().to_vec();
    table.extend(live::live_routes().table().iter().cloned());
    if dashboard {
        table.extend(crate::assets::page_routes().table().iter().cloned());
    }
    table
}

/// Puts the authentication guard in front of every route of `router` (built from `table`),
/// and the security headers on every answer.
pub fn guarded(
    router: Router,
    table: &[RouteRule],
    auth: Arc<AuthService>,
    tls: bool,
    http: &crate::config::HttpConfig,
) -> Router {
    let guard = Guard {
        service: auth,
        policy: Arc::new(Policy::from_rules(table)),
    };
    let shares = crate::http_listen::PerAddress::new(
        http.max_requests_per_address,
        http.max_requests_per_range,
    );
    let router = router
        .layer(axum::middleware::from_fn_with_state(
            guard,
            crate::auth::layer::authorize,
        ))
        // Outside the guard, so its refusals under /fhir become OperationOutcomes too.
        .layer(axum::middleware::from_fn(fhir::errors_as_outcomes))
        // Inside the global limit: the deadline runs while the request holds its slot.
        .layer(axum::middleware::from_fn_with_state(
            std::time::Duration::from_secs(http.request_timeout_s.max(1)),
            limits::body_deadline,
        ))
        .layer(tower::limit::GlobalConcurrencyLimitLayer::new(
            http.max_concurrent_requests.max(1),
        ))
        .layer(axum::middleware::from_fn_with_state(
            shares,
            limits::share_per_address,
        ))
        .layer(SetResponseHeaderLayer::if_not_present(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static("default-src 'none'; frame-ancestors 'none'"),
        ))
        .layer(SetResponseHeaderLayer::overriding(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ))
        .layer(SetResponseHeaderLayer::overriding(
            header::X_FRAME_OPTIONS,
            HeaderValue::from_static("DENY"),
        ))
        .layer(SetResponseHeaderLayer::if_not_present(
            header::REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        ))
        .layer(SetResponseHeaderLayer::if_not_present(
            header::CACHE_CONTROL,
            HeaderValue::from_static("no-store"),
        ));
    let router = if tls {
        router.layer(SetResponseHeaderLayer::overriding(
            header::STRICT_TRANSPORT_SECURITY,
            HeaderValue::from_static("max-age=63072000; includeSubDomains"),
        ))
    } else {
        router
    };
    // Every request's id and span, around everything that logs.
    let router = request_log::layer(router);
    let router = router.layer(axum::middleware::from_fn(
        crate::http_listen::close_when_body_unread,
    ));
    // Outermost: a request counts as its connection's activity until its body has been sent.
    router.layer(axum::middleware::from_fn(
        crate::http_listen::track_activity,
    ))
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

/// Requires a JSON content type (`application/json`, or `application/*+json`).
pub fn require_json(headers: &HeaderMap) -> Result<(), ApiError> {
    if crate::api_error::is_json(headers) {
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
        let timed_out =
            std::iter::successors(Some(&err as &(dyn std::error::Error + 'static)), |e| {
                e.source()
            })
            .any(|e| e.is::<tower_http::timeout::TimeoutError>());
        if over_limit {
            too_large()
        } else if timed_out {
            ApiError::new(
                StatusCode::REQUEST_TIMEOUT,
                "request_timeout",
                "the request body did not arrive in time",
            )
        } else {
            ApiError::bad_request("body_unreadable", "the request body could not be read")
        }
    })
}

/// The largest JSON body of an administrative request (devices, alerts, thresholds).
pub const MAX_JSON_BODY: usize = 16 * 1024;

/// Reads a small JSON request body into `T`: 415 without a JSON content type, 413 over
/// [`MAX_JSON_BODY`], 400 when unparseable, 422 when the shape is wrong. The detail says where
/// (line and column) and what kind of mistake, never serde's message: that quotes the
/// rejected value (`invalid value: string "…"`), which may be patient data.
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
        ApiError::new(status, "invalid_body", body_error_detail(&err))
    })
}

/// Where and what kind of mistake a JSON body has, without quoting a value from it.
fn body_error_detail(err: &serde_json::Error) -> String {
    let kind = match err.classify() {
        serde_json::error::Category::Io => "the body could not be read",
        serde_json::error::Category::Syntax => "the body is not well-formed JSON",
        serde_json::error::Category::Eof => "the body ends before the JSON does",
        serde_json::error::Category::Data => {
            // Missing and unknown fields are named by their key, which is safe to echo;
            // every other data message quotes the value.
            let message = err.to_string();
            let named = ["missing field `", "unknown field `"]
                .iter()
                .any(|prefix| message.starts_with(prefix));
            if named {
                let end = message.find('`').and_then(|open| {
                    message[open + 1..]
                        .find('`')
                        .map(|close| open + 1 + close + 1)
                });
                return match end {
                    Some(end) => format!(
                        "{} (line {}, column {})",
                        &message[..end],
                        err.line(),
                        err.column()
                    ),
                    None => format!(
                        "a field is missing or unknown (line {}, column {})",
                        err.line(),
                        err.column()
                    ),
                };
            }
            "a field has the wrong type or value"
        }
    };
    format!("{kind} (line {}, column {})", err.line(), err.column())
}

#[cfg(test)]
mod body_error_tests {
    use super::body_error_detail;

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Body {
        name: String,
        age: u32,
    }

    fn detail(json: &str) -> String {
        let err = serde_json::from_str::<Body>(json).expect_err("the body is invalid");
        body_error_detail(&err)
    }

    #[test]
    fn a_wrong_value_is_never_quoted() {
        let text = detail(r#"{"name": "Jane Doe", "age": "forty-two"}"#);
        assert!(!text.contains("forty-two"), "{text}");
        assert!(text.contains("wrong type or value"), "{text}");
        let text = detail(r#"{"name": 98.6, "age": 1}"#);
        assert!(!text.contains("98.6"), "{text}");
    }

    #[test]
    fn missing_and_unknown_fields_are_named() {
        assert!(detail(r#"{"name": "x"}"#).starts_with("missing field `age`"));
        let text = detail(r#"{"name": "x", "age": 1, "admin": true}"#);
        assert!(text.starts_with("unknown field `admin`"), "{text}");
        assert!(!text.contains("true"), "{text}");
    }

    #[test]
    fn syntax_errors_say_where() {
        let text = detail("{");
        assert!(text.contains("line 1"), "{text}");
    }
}
