//! Request bounds in front of every route: a client address's (and its range's) share of the
//! requests in service, and the deadline for a request's body.
//!
//! The share is taken before the listener's global concurrency limit, so a client over it is
//! answered 429 at once and never queues for a global slot; the body deadline starts once the
//! request holds a global slot, so a client that sends its body slowly (or never) gives the
//! slot back after `[http] request_timeout_s` with a 408.

use super::ApiError;
use crate::http_listen::PerAddress;
use axum::extract::{ConnectInfo, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

/// Answers 429 when the caller's address (or range) already has its share of requests in
/// service; the share is held until the response is ready.
pub async fn share_per_address(
    State(shares): State<Arc<PerAddress>>,
    request: Request,
    next: Next,
) -> Response {
    let Some(ConnectInfo(remote)) = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .copied()
    else {
        return next.run(request).await;
    };
    let Some(_slot) = shares.try_acquire(remote.ip()) else {
        return ApiError::too_many_requests(
            "too_many_requests",
            "this address has too many requests in progress",
            1,
        )
        .into_response();
    };
    next.run(request).await
}

/// Gives the request's body a deadline: reading it after `timeout` fails, and the body
/// readers answer 408 (`api::read_body`).
pub async fn body_deadline(
    State(timeout): State<Duration>,
    request: Request,
    next: Next,
) -> Response {
    let request = request
        .map(|body| axum::body::Body::new(tower_http::timeout::DeadlineBody::new(timeout, body)));
    next.run(request).await
}
