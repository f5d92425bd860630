//! The one error answer of the HTTP listeners: `{"error": code, "detail": text}` with a
//! status, used by the API's handlers, the auth guard and the dashboard's asset router.
//!
//! Client mistakes get a 4xx with a stable code; internal errors a generic 500, logged once
//! here, with no SQL, path or stored value in the answer. It sits below `auth` and `api` so
//! both can answer with it without importing each other.

use crate::store::StoreError;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

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

    pub fn too_many_requests(code: &'static str, detail: &str, retry_after_s: u64) -> ApiError {
        ApiError {
            retry_after_s: Some(retry_after_s),
            ..ApiError::new(StatusCode::TOO_MANY_REQUESTS, code, detail)
        }
    }

    /// The HTTP status this error answers with.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    pub fn internal() -> ApiError {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "internal error; it has been logged",
        )
    }
}

/// Whether the request declares a JSON body (`application/json`, or `application/*+json`).
pub fn is_json(headers: &axum::http::HeaderMap) -> bool {
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
    essence == "application/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"))
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
                tracing::error!(event = "http.store_error", message = "Store error while answering a request.", error = %other);
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
