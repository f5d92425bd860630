//! `POST /api/telemetry`: the seed's endpoint, answered only after the reading is committed.

use super::{ApiError, AppState, read_body, require_json};
use crate::auth::Principal;
use crate::metrics::Refusal;
use crate::pipeline::{BodyOutcome, IngestError, ReadingOutcome};
use crate::store::AnomalyRecord;
use crate::store::AuditEntry;
use crate::store::{ItemOutcome, Source};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde::Serialize;
use serde_json::json;
use vitalwatch_core::telemetry::{Limits, RejectReason, Rejection};

#[utoipa::path(
    post,
    path = "/api/telemetry",
    tag = "telemetry",
    request_body(content = Object, content_type = "application/json", description = "One reading (the seed's JSON object) or a batch (an array of them); the schema is built from the vitals table (`api::openapi`)"),
    responses(
        (status = 200, description = "Committed: one reading's answer, or a batch's (some readings may be refused)", body = TelemetryAnswer),
        (status = 422, description = "A refused reading (`{error, detail}`), or a batch whose every reading was refused", body = TelemetryRefusal),
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
        Ok(BodyOutcome::One(outcome)) => {
            Ok(Json(TelemetryAnswer::One(ReadingAnswer::of(&outcome, None))).into_response())
        }
        Ok(BodyOutcome::Batch(items)) => {
            let accepted = items.iter().filter(|item| item.is_ok()).count();
            let results: Vec<BatchItem> = items
                .iter()
                .enumerate()
                .map(|(index, item)| match item {
                    Ok(outcome) => BatchItem::Answer(ReadingAnswer::of(outcome, Some(index))),
                    Err(rejection) => BatchItem::Rejected(ItemRejection {
                        status: "rejected",
                        error: rejection.reason.as_str(),
                        field: rejection.field.map(|f| f.as_str()),
                        detail: rejection.detail(limits),
                        index,
                    }),
                })
                .collect();
            let body = BatchAnswer {
                status: if accepted == 0 {
                    "rejected"
                } else {
                    "received"
                },
                accepted,
                rejected: items.len() - accepted,
                results,
            };
            if accepted == 0 {
                let refusal = TelemetryRefusal::Batch(body);
                Ok((StatusCode::UNPROCESSABLE_ENTITY, Json(refusal)).into_response())
            } else {
                Ok(Json(TelemetryAnswer::Batch(body)).into_response())
            }
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
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ReadingAnswer {
    /// Always `received` (the seed's answer).
    status: &'static str,
    device_id: String,
    /// The reading's time, RFC 3339 UTC.
    #[schema(format = DateTime)]
    timestamp: String,
    /// Newly stored now.
    stored: bool,
    /// Stored before (same device and timestamp, or a recent sequence number).
    duplicate: bool,
    /// The stored reading's id (new or earlier); absent for a quarantined reading.
    #[serde(skip_serializing_if = "Option::is_none")]
    reading_id: Option<i64>,
    /// True when this reading registered its device (auto-register policy).
    #[serde(skip_serializing_if = "Option::is_none")]
    device_registered: Option<bool>,
    /// From an unregistered or deactivated device: kept apart, not patient data.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    quarantined: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    quarantine_id: Option<i64>,
    /// The anomalies recorded for it (none for a duplicate).
    anomalies: Vec<AnomalyRecord>,
    /// Its position in a batch.
    #[serde(skip_serializing_if = "Option::is_none")]
    index: Option<usize>,
}

impl ReadingAnswer {
    fn of(outcome: &ReadingOutcome, index: Option<usize>) -> ReadingAnswer {
        let mut answer = ReadingAnswer {
            status: "received",
            device_id: outcome.device_id.clone(),
            timestamp: outcome.timestamp.to_rfc3339(),
            stored: false,
            duplicate: false,
            reading_id: None,
            device_registered: None,
            quarantined: false,
            quarantine_id: None,
            anomalies: Vec::new(),
            index,
        };
        match &outcome.outcome {
            ItemOutcome::Stored {
                reading_id,
                anomalies,
                registered,
            } => {
                answer.stored = true;
                answer.reading_id = Some(*reading_id);
                answer.device_registered = Some(*registered);
                answer.anomalies = anomalies.clone();
            }
            ItemOutcome::Duplicate { reading_id } => {
                answer.duplicate = true;
                answer.reading_id = Some(*reading_id);
            }
            ItemOutcome::Quarantined {
                quarantine_id,
                anomalies,
            } => {
                answer.quarantined = true;
                answer.quarantine_id = Some(*quarantine_id);
                answer.anomalies = anomalies.clone();
            }
        }
        answer
    }
}

/// One refused reading of a batch.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ItemRejection {
    /// Always `rejected`.
    status: &'static str,
    /// The stable rejection reason (`missing_device_id`, `out_of_bounds`, …).
    error: &'static str,
    /// The payload key at fault, if one is.
    field: Option<&'static str>,
    detail: String,
    index: usize,
}

/// One entry of a batch answer, in the batch's order.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(untagged)]
pub enum BatchItem {
    Answer(ReadingAnswer),
    Rejected(ItemRejection),
}

/// The answer for a batch (a JSON array of readings).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct BatchAnswer {
    /// `received` when any reading was accepted, else `rejected` (and the status is 422).
    status: &'static str,
    accepted: usize,
    rejected: usize,
    results: Vec<BatchItem>,
}

/// `POST /api/telemetry`'s 2xx body: one reading's answer, or a batch's.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(untagged)]
pub enum TelemetryAnswer {
    One(ReadingAnswer),
    Batch(BatchAnswer),
}

/// A 422: the API error, or a batch whose every reading was refused.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(untagged)]
pub enum TelemetryRefusal {
    /// A refused body (`ApiError`'s shape).
    #[expect(
        dead_code,
        reason = "ApiError answers it; this variant describes that answer"
    )]
    Error(super::openapi::ErrorBody),
    Batch(BatchAnswer),
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
