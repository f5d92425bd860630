//! Handlers driven in process through the real router with `oneshot` (no socket, no
//! binary), over a real SQLite store in a temporary directory. Loopback is trusted, so the
//! requests need no token; the guard's own tests are in `auth::layer`.

use crate::testing::{Service, reading_json, service};
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{Request, StatusCode, header};
use serde_json::Value;
use std::net::SocketAddr;
use tower::ServiceExt;

async fn trusted() -> Service {
    service(|config| config.http.trust_loopback = true).await
}

/// One request from loopback; the answer's status and JSON body (`Null` when not JSON).
async fn call(
    service: &Service,
    method: &str,
    uri: &str,
    json: Option<&str>,
) -> (StatusCode, Value) {
    let mut builder = Request::builder()
        .method(method)
        .uri(uri)
        .header(header::HOST, "localhost");
    if json.is_some() {
        builder = builder.header(header::CONTENT_TYPE, "application/json");
    }
    let mut request = builder
        .body(json.map_or_else(Body::empty, |text| Body::from(text.to_owned())))
        .expect("a well-formed request");
    let remote: SocketAddr = ([127, 0, 0, 1], 40000).into();
    request.extensions_mut().insert(ConnectInfo(remote));
    let response = service
        .app()
        .oneshot(request)
        .await
        .expect("the router is infallible");
    let status = response.status();
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
        .await
        .expect("reading the answer");
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

#[tokio::test]
async fn bad_dashboard_queries_are_400s() {
    let service = trusted().await;
    for (bad, code) in [
        (
            "/api/stats?since=2026-01-02T00:00:00Z&until=2026-01-01T00:00:00Z",
            "invalid_query",
        ),
        ("/api/series?points=0", "invalid_query"),
        ("/api/series?points=5000", "invalid_query"),
        ("/api/series?metrics=heart_rate,password", "invalid_query"),
        ("/api/readings?bogus=1", "invalid_query"),
        ("/api/readings.csv?device_id=bad%20id", "invalid_device_id"),
    ] {
        let (status, json) = call(&service, "GET", bad, None).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}");
        assert_eq!(json["error"], code, "{bad}");
    }
}

#[tokio::test]
async fn a_posted_reading_is_answered_after_its_commit_and_read_back() {
    let service = trusted().await;
    let (status, json) = call(
        &service,
        "POST",
        "/api/telemetry",
        Some(&reading_json("bed-1", 72.0)),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{json}");
    assert_eq!(json["stored"], true, "{json}");
    let (status, json) = call(&service, "GET", "/api/devices/bed-1/readings", None).await;
    assert_eq!(status, StatusCode::OK, "{json}");
    assert_eq!(json["count"], 1, "{json}");
    assert_eq!(json["readings"][0]["heart_rate"], 72.0, "{json}");
    let (status, json) = call(&service, "GET", "/api/devices", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(json["devices"][0]["device_id"], "bed-1", "{json}");
}

#[tokio::test]
async fn client_mistakes_get_a_stable_code_and_a_detail() {
    let service = trusted().await;
    let cases = [
        (
            "POST",
            "/api/telemetry",
            Some("not json"),
            StatusCode::BAD_REQUEST,
            "malformed_json",
        ),
        (
            "GET",
            "/api/devices/nobody",
            None,
            StatusCode::NOT_FOUND,
            "device_not_found",
        ),
        (
            "GET",
            "/api/no-such-route",
            None,
            StatusCode::NOT_FOUND,
            "not_found",
        ),
        (
            "DELETE",
            "/health",
            None,
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
        ),
    ];
    for (method, uri, body, status, code) in cases {
        let (got, json) = call(&service, method, uri, body).await;
        assert_eq!(got, status, "{method} {uri}: {json}");
        assert_eq!(json["error"], code, "{method} {uri}");
        assert!(
            json["detail"].as_str().is_some_and(|d| !d.is_empty()),
            "{method} {uri}: no detail"
        );
    }
}

#[tokio::test]
async fn health_reports_the_counts_of_what_was_ingested() {
    let service = trusted().await;
    call(
        &service,
        "POST",
        "/api/telemetry",
        Some(&reading_json("bed-2", 70.0)),
    )
    .await;
    call(&service, "POST", "/api/telemetry", Some("[]x")).await;
    let (status, json) = call(&service, "GET", "/health", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(json["readings"]["stored"], 1, "{json}");
    assert_eq!(json["readings"]["rejected"], 1, "{json}");
}
