//! Every HTTP request gets a request id — the caller's `X-Request-Id` when it is a plain token
//! (a proxy's id, so both logs correlate), else a new UUID — returned as `X-Request-Id` and
//! carried by every log line of the request (a `request` span), and one DEBUG line
//! (`event = "http.request"`) when it is answered.
//!
//! It logs the method, the path without its query (a query may hold a patient label or a
//! name) and the status; never headers, bodies or tokens.

use axum::extract::Request;
use axum::middleware::Next;
use axum::response::Response;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tracing::Instrument;

/// The header of the request id, both ways.
pub const HEADER: &str = "x-request-id";

/// The longest caller-supplied id kept.
const MAX_ID_LEN: usize = 64;

/// Whether a caller's id is kept: 1–64 ASCII letters, digits, `-`, `_`, `.` or `:`.
pub fn acceptable(id: &[u8]) -> bool {
    (1..=MAX_ID_LEN).contains(&id.len())
        && id
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'))
}

/// Drops a caller's id that is not [`acceptable`], so a new one is made.
async fn sanitise(mut request: Request, next: Next) -> Response {
    let mut ids = request.headers().get_all(HEADER).iter();
    let keep = match (ids.next(), ids.next()) {
        (Some(id), None) => acceptable(id.as_bytes()),
        _ => false,
    };
    if !keep {
        request.headers_mut().remove(HEADER);
    }
    next.run(request).await
}

/// Runs the request inside its `request` span and logs its answer.
async fn span(request: Request, next: Next) -> Response {
    let id = request
        .headers()
        .get(HEADER)
        .and_then(|id| id.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let span = tracing::info_span!("request", request_id = %id);
    async move {
        let started = std::time::Instant::now();
        let response = next.run(request).await;
        tracing::debug!(
            message = "Request answered.",
            event = "http.request",
            method = %method,
            path = %path,
            status = response.status().as_u16(),
            duration_ms = started.elapsed().as_secs_f64() * 1000.0,
        );
        response
    }
    .instrument(span)
    .await
}

/// Puts the request id and its span around `router` (outermost of the API's layers).
pub fn layer(router: axum::Router) -> axum::Router {
    router
        .layer(axum::middleware::from_fn(span))
        .layer(PropagateRequestIdLayer::x_request_id())
        .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
        .layer(axum::middleware::from_fn(sanitise))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_short_ids_are_kept() {
        assert!(acceptable(b"3f2c9a1e-7b6d-4c5e-9f8a-0b1c2d3e4f5a"));
        assert!(acceptable(b"haproxy:1234.5_x"));
        assert!(!acceptable(b""));
        assert!(!acceptable(&[b'a'; 65]));
        assert!(!acceptable(b"id with spaces"));
        assert!(!acceptable(b"id\"},{\"event\":\"forged"));
    }
}
