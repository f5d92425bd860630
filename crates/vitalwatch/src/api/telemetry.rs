//! `POST /api/telemetry`: the seed's endpoint, answered only after the reading is committed.

use super::{ApiError, AppState, read_body, require_json};
use crate::auth::Principal;
use crate::metrics::Refusal;
use crate::pipeline::{BodyOutcome, IngestError, ReadingOutcome};
use crate::store::AuditEntry;
use crate::store::{ItemOutcome, Source};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde_json::{Value, json};
use vitalwatch_core::telemetry::{Limits, RejectReason, Rejection};

#[utoipa::path(
    post,
    path = "/api/telemetry",
    tag = "telemetry",
    request_body(content = Object, content_type = "application/json"),
    responses(
        (status = 200, description = "Done", body = Value),
        (status = 207, description = "A batch with some readings refused", body = Value),
        (status = "4XX", description = "A client mistake or refusal: `{error, detail}`", body = super::openapi::ErrorBody),
        (status = 503, description = "The store or the audit buffer cannot take it now", body = super::openapi::ErrorBody),
    )
)]
pub async fn post_telemetry(
    State(state): State<AppState>,
    Extension(who): Extension<Principal>,
    headers: HeaderMap,
    body: axum::body::Body,
) -> Result<Response, ApiError> {
    let pipeline = &state.pipeline;
    if let Err(err) = require_json(&headers) {
        pipeline.refuse(Refusal::UnsupportedMediaType, Source::Http);
        return Err(err);
    }
    let limits = pipeline.limits();
    let max_body = limits.max_batch_bytes.max(limits.max_payload_bytes);
    let bytes = match read_body(&headers, body, max_body).await {
        Ok(bytes) => bytes,
        Err(err) => {
            if err.status() == StatusCode::PAYLOAD_TOO_LARGE {
                pipeline.refuse(Refusal::Decode(RejectReason::PayloadTooLarge), Source::Http);
            }
            return Err(err);
        }
    };
    match pipeline
        .ingest_body(&bytes, Source::Http, who.device_id.as_deref())
        .await
    {
        Ok(BodyOutcome::One(outcome)) => Ok(Json(one_json(&outcome)).into_response()),
        Ok(BodyOutcome::Batch(items)) => {
            let accepted = items.iter().filter(|item| item.is_ok()).count();
            let results: Vec<Value> = items
                .iter()
                .enumerate()
                .map(|(index, item)| {
                    let mut entry = match item {
                        Ok(outcome) => one_json(outcome),
                        Err(rejection) => rejection_json(rejection, limits),
                    };
                    entry["index"] = json!(index);
                    entry
                })
                .collect();
            let status = if accepted == 0 {
                StatusCode::UNPROCESSABLE_ENTITY
            } else {
                StatusCode::OK
            };
            let body = json!({
                "status": if accepted == 0 { "rejected" } else { "received" },
                "accepted": accepted,
                "rejected": items.len() - accepted,
                "results": results,
            });
            Ok((status, Json(body)).into_response())
        }
        Err(IngestError::Refused(rejection)) => Err(refusal_error(&rejection, limits)),
        Err(IngestError::Busy) => Err(ApiError::busy()),
        Err(IngestError::Unauthorized) => {
            let _ = state.auth.audit.record(AuditEntry {
                actor: who.actor(),
                action: "device.refused".to_owned(),
                target: who.device_id.clone().unwrap_or_default(),
                details: json!({ "reason": "reading for another device id", "source": "http" }),
            });
            Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "unauthorized",
                "this token may only post readings for its own device id",
            ))
        }
        Err(IngestError::Store(err)) => Err(err.into()),
    }
}

/// The answer for one reading; keeps the seed's `"status": "received"`.
fn one_json(outcome: &ReadingOutcome) -> Value {
    let base = json!({
        "status": "received",
        "device_id": outcome.device_id,
        "timestamp": outcome.timestamp.to_rfc3339(),
    });
    let extra = match &outcome.outcome {
        ItemOutcome::Stored {
            reading_id,
            anomalies,
            registered,
        } => json!({
            "stored": true,
            "duplicate": false,
            "reading_id": reading_id,
            "device_registered": registered,
            "anomalies": anomalies,
        }),
        ItemOutcome::Duplicate { reading_id } => json!({
            "stored": false,
            "duplicate": true,
            "reading_id": reading_id,
            "anomalies": [],
        }),
        ItemOutcome::Quarantined {
            quarantine_id,
            anomalies,
        } => json!({
            "stored": false,
            "duplicate": false,
            "quarantined": true,
            "quarantine_id": quarantine_id,
            "anomalies": anomalies,
        }),
    };
    merge(base, extra)
}

fn merge(mut base: Value, extra: Value) -> Value {
    if let (Some(base_map), Value::Object(extra_map)) = (base.as_object_mut(), extra) {
        base_map.extend(extra_map);
    }
    base
}

fn rejection_json(rejection: &Rejection, limits: &Limits) -> Value {
    json!({
        "status": "rejected",
        "error": rejection.reason.as_str(),
        "field": rejection.field.map(|f| f.as_str()),
        "detail": rejection.detail(limits),
    })
}

/// The HTTP status for a refused body: 413 for size, 400 for syntax, 422 for content.
pub fn status_for(reason: RejectReason) -> StatusCode {
    match reason {
        RejectReason::PayloadTooLarge | RejectReason::BatchTooLarge => {
            StatusCode::PAYLOAD_TOO_LARGE
        }
        RejectReason::InvalidUtf8
        | RejectReason::MalformedJson
        | RejectReason::TooDeep
        | RejectReason::NotAnObject
        | RejectReason::EmptyBatch
        | RejectReason::DuplicateField
        | RejectReason::TooManyFields
        | RejectReason::NumberOutOfRange => StatusCode::BAD_REQUEST,
        RejectReason::MissingDeviceId
        | RejectReason::InvalidDeviceId
        | RejectReason::WrongType
        | RejectReason::NonFinite
        | RejectReason::OutOfBounds
        | RejectReason::StringTooLong
        | RejectReason::InvalidTimestamp
        | RejectReason::TimestampInFuture
        | RejectReason::InvalidConsciousness => StatusCode::UNPROCESSABLE_ENTITY,
    }
}

fn refusal_error(rejection: &Rejection, limits: &Limits) -> ApiError {
    ApiError::new(
        status_for(rejection.reason),
        rejection.reason.as_str(),
        rejection.detail(limits),
    )
}
