//! The device registry, device readings and anomalies.

use super::query::{Params, next_cursor};
use super::{ApiError, AppState, json_body};
use crate::auth::Principal;
use crate::store::{
    AnomalyQuery, AnomalyRecord, DeviceRecord, DeviceRegistration, DeviceUpdate, ReadingQuery,
    ReadingRecord,
};
use axum::Extension;
use axum::Json;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use serde::{Deserialize, Serialize};
use vitalwatch_core::rules::{AnomalyType, Severity};
use vitalwatch_core::telemetry::DeviceId;

const MAX_LABEL_LEN: usize = 128;
const MAX_INTERVAL_S: f64 = 86_400.0;

fn device_id(raw: &str, state: &AppState) -> Result<String, ApiError> {
    DeviceId::parse(raw, state.pipeline.limits().max_device_id_len)
        .map(|id| id.as_str().to_owned())
        .map_err(|_| {
            ApiError::bad_request(
                "invalid_device_id",
                "device ids are 1 to 64 characters of A-Z a-z 0-9 _ . : -",
            )
        })
}

#[utoipa::path(
    get,
    path = "/api/devices",
    tag = "devices",
    responses(
        (status = 200, description = "Every registered device", body = DeviceList),
        (status = "4XX", description = "A client mistake or refusal: `{error, detail}`", body = super::openapi::ErrorBody),
        (status = 503, description = "The store or the audit buffer cannot take it now", body = super::openapi::ErrorBody),
    )
)]
pub async fn list_devices(State(state): State<AppState>) -> Result<Json<DeviceList>, ApiError> {
    let devices = state.store.list_devices().await?;
    Ok(Json(DeviceList {
        count: devices.len(),
        devices,
    }))
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct DeviceList {
    count: usize,
    devices: Vec<DeviceRecord>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct DeviceReadings {
    device_id: String,
    count: usize,
    /// Newest first.
    readings: Vec<ReadingRecord>,
    /// The `cursor` of the next page; null on the last one.
    next_cursor: Option<String>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct AnomalyList {
    count: usize,
    /// Newest first.
    anomalies: Vec<AnomalyRecord>,
    /// The `cursor` of the next page; null on the last one.
    next_cursor: Option<String>,
}

#[utoipa::path(
    get,
    path = "/api/devices/{id}",
    tag = "devices",
    params(("id" = String, Path, description = "The device id", pattern = "^[A-Za-z0-9_.:-]{1,64}$")),
    responses(
        (status = 200, description = "The device", body = DeviceRecord),
        (status = "4XX", description = "A client mistake or refusal: `{error, detail}`", body = super::openapi::ErrorBody),
        (status = 503, description = "The store or the audit buffer cannot take it now", body = super::openapi::ErrorBody),
    )
)]
pub async fn get_device(
    State(state): State<AppState>,
    Path(raw_id): Path<String>,
) -> Result<Json<DeviceRecord>, ApiError> {
    let id = device_id(&raw_id, &state)?;
    match state.store.get_device(id.clone()).await? {
        Some(device) => Ok(Json(device)),
        None => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "device_not_found",
            format!("device {id} is not registered"),
        )),
    }
}

/// `patient_label: null` clears the label; leaving it out keeps it.
fn double_option<'de, D>(de: D) -> Result<Option<Option<String>>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    Option::<String>::deserialize(de).map(Some)
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct RegistrationBody {
    device_id: String,
    patient_label: Option<String>,
    location: Option<String>,
    expected_interval_s: Option<f64>,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct UpdateBody {
    #[serde(default, deserialize_with = "double_option")]
    patient_label: Option<Option<String>>,
    #[serde(default, deserialize_with = "double_option")]
    location: Option<Option<String>>,
    expected_interval_s: Option<f64>,
    active: Option<bool>,
}

fn check_label(name: &str, value: Option<&str>) -> Result<(), ApiError> {
    match value {
        Some(text)
            if text.chars().count() > MAX_LABEL_LEN || text.chars().any(char::is_control) =>
        {
            Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_body",
                format!(
                    "{name} must be at most {MAX_LABEL_LEN} characters, without control characters"
                ),
            ))
        }
        _ => Ok(()),
    }
}

fn check_interval(value: Option<f64>) -> Result<(), ApiError> {
    match value {
        Some(v) if !(v.is_finite() && v > 0.0 && v <= MAX_INTERVAL_S) => Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_body",
            format!("expected_interval_s must be a number of seconds in (0, {MAX_INTERVAL_S}]"),
        )),
        _ => Ok(()),
    }
}

#[utoipa::path(
    post,
    path = "/api/devices",
    tag = "devices",
    request_body(content = RegistrationBody, content_type = "application/json"),
    responses(
        (status = 201, description = "Registered", body = DeviceRecord),
        (status = "4XX", description = "A client mistake or refusal: `{error, detail}`", body = super::openapi::ErrorBody),
        (status = 503, description = "The store or the audit buffer cannot take it now", body = super::openapi::ErrorBody),
    )
)]
pub async fn register_device(
    State(state): State<AppState>,
    Extension(who): Extension<Principal>,
    headers: HeaderMap,
    body: axum::body::Body,
) -> Result<(StatusCode, Json<DeviceRecord>), ApiError> {
    let body: RegistrationBody = json_body(&headers, body).await?;
    let id = device_id(&body.device_id, &state)?;
    check_label("patient_label", body.patient_label.as_deref())?;
    check_label("location", body.location.as_deref())?;
    check_interval(body.expected_interval_s)?;
    let registration = DeviceRegistration {
        device_id: id,
        patient_label: body.patient_label,
        location: body.location,
        expected_interval_s: body.expected_interval_s,
    };
    let device = state
        .store
        .register_device(registration, who.actor())
        .await?;
    Ok((StatusCode::CREATED, Json(device)))
}

#[utoipa::path(
    put,
    path = "/api/devices/{id}",
    tag = "devices",
    params(("id" = String, Path, description = "The device id", pattern = "^[A-Za-z0-9_.:-]{1,64}$")),
    request_body(content = UpdateBody, content_type = "application/json", description = "Only the fields to change; `null` clears a label"),
    responses(
        (status = 200, description = "The device as updated", body = DeviceRecord),
        (status = "4XX", description = "A client mistake or refusal: `{error, detail}`", body = super::openapi::ErrorBody),
        (status = 503, description = "The store or the audit buffer cannot take it now", body = super::openapi::ErrorBody),
    )
)]
pub async fn update_device(
    State(state): State<AppState>,
    Path(raw_id): Path<String>,
    Extension(who): Extension<Principal>,
    headers: HeaderMap,
    body: axum::body::Body,
) -> Result<Json<DeviceRecord>, ApiError> {
    let id = device_id(&raw_id, &state)?;
    let body: UpdateBody = json_body(&headers, body).await?;
    check_label(
        "patient_label",
        body.patient_label.as_ref().and_then(|v| v.as_deref()),
    )?;
    check_label(
        "location",
        body.location.as_ref().and_then(|v| v.as_deref()),
    )?;
    check_interval(body.expected_interval_s)?;
    let update = DeviceUpdate {
        patient_label: body.patient_label,
        location: body.location,
        expected_interval_s: body.expected_interval_s,
        active: body.active,
    };
    let device = state.store.update_device(id, update, who.actor()).await?;
    Ok(Json(device))
}

/// Deactivation, not deletion: the device's history stays, its new readings are quarantined.
#[utoipa::path(
    delete,
    path = "/api/devices/{id}",
    tag = "devices",
    params(("id" = String, Path, description = "The device id", pattern = "^[A-Za-z0-9_.:-]{1,64}$")),
    responses(
        (status = 200, description = "The device, now inactive", body = DeviceRecord),
        (status = "4XX", description = "A client mistake or refusal: `{error, detail}`", body = super::openapi::ErrorBody),
        (status = 503, description = "The store or the audit buffer cannot take it now", body = super::openapi::ErrorBody),
    )
)]
pub async fn deactivate_device(
    State(state): State<AppState>,
    Path(raw_id): Path<String>,
    Extension(who): Extension<Principal>,
) -> Result<Json<DeviceRecord>, ApiError> {
    let id = device_id(&raw_id, &state)?;
    let update = DeviceUpdate {
        active: Some(false),
        ..DeviceUpdate::default()
    };
    let device = state.store.update_device(id, update, who.actor()).await?;
    Ok(Json(device))
}

#[utoipa::path(
    get,
    path = "/api/devices/{id}/readings",
    tag = "devices",
    params(("id" = String, Path, description = "The device id", pattern = "^[A-Za-z0-9_.:-]{1,64}$"), super::query::WindowParams, super::query::PageParams),
    responses(
        (status = 200, description = "The device's readings, newest first", body = DeviceReadings),
        (status = "4XX", description = "A client mistake or refusal: `{error, detail}`", body = super::openapi::ErrorBody),
        (status = 503, description = "The store or the audit buffer cannot take it now", body = super::openapi::ErrorBody),
    )
)]
pub async fn device_readings(
    State(state): State<AppState>,
    Path(raw_id): Path<String>,
    RawQuery(raw): RawQuery,
) -> Result<Json<DeviceReadings>, ApiError> {
    let id = device_id(&raw_id, &state)?;
    let params = Params::parse(raw.as_deref(), &["since", "until", "limit", "cursor"])?;
    if state.store.get_device(id.clone()).await?.is_none() {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "device_not_found",
            format!("device {id} is not registered"),
        ));
    }
    let limit = params.limit()?;
    let readings = state
        .store
        .readings(ReadingQuery {
            device_id: Some(id.clone()),
            since: params.time("since")?,
            until: params.time("until")?,
            before_id: params.cursor()?,
            limit,
        })
        .await?;
    let cursor = next_cursor(readings.iter().map(|r| r.id), readings.len(), limit);
    Ok(Json(DeviceReadings {
        device_id: id,
        count: readings.len(),
        readings,
        next_cursor: cursor,
    }))
}

#[utoipa::path(
    get,
    path = "/api/anomalies",
    tag = "devices",
    params(
        super::query::DeviceFilter,
        ("type" = Option<AnomalyType>, Query, description = "Only this kind of anomaly"),
        ("severity" = Option<Severity>, Query, description = "Only this severity"),
        super::query::WindowParams,
        super::query::PageParams,
    ),
    responses(
        (status = 200, description = "Anomalies, newest first", body = AnomalyList),
        (status = "4XX", description = "A client mistake or refusal: `{error, detail}`", body = super::openapi::ErrorBody),
        (status = 503, description = "The store or the audit buffer cannot take it now", body = super::openapi::ErrorBody),
    )
)]
pub async fn list_anomalies(
    State(state): State<AppState>,
    RawQuery(raw): RawQuery,
) -> Result<Json<AnomalyList>, ApiError> {
    let params = Params::parse(
        raw.as_deref(),
        &[
            "device_id",
            "type",
            "severity",
            "since",
            "until",
            "limit",
            "cursor",
        ],
    )?;
    let device = params
        .text("device_id")
        .map(|raw| device_id(raw, &state))
        .transpose()?;
    let kind = params
        .text("type")
        .map(|raw| {
            AnomalyType::parse(raw).ok_or_else(|| {
                let known: Vec<&str> = AnomalyType::ALL.iter().map(|t| t.as_str()).collect();
                ApiError::bad_request(
                    "invalid_query",
                    format!("type must be one of {}", known.join(", ")),
                )
            })
        })
        .transpose()?;
    let severity = params
        .text("severity")
        .map(|raw| {
            Severity::parse(raw).ok_or_else(|| {
                ApiError::bad_request("invalid_query", "severity must be CRITICAL or WARNING")
            })
        })
        .transpose()?;
    let limit = params.limit()?;
    let anomalies = state
        .store
        .anomalies(AnomalyQuery {
            device_id: device,
            kind,
            severity,
            since: params.time("since")?,
            until: params.time("until")?,
            before_id: params.cursor()?,
            limit,
        })
        .await?;
    let cursor = next_cursor(anomalies.iter().map(|a| a.id), anomalies.len(), limit);
    Ok(Json(AnomalyList {
        count: anomalies.len(),
        anomalies,
        next_cursor: cursor,
    }))
}

/// `POST /api/devices/{id}/revoke`: what `vitalwatch certs revoke` does, from the API —
/// revokes the device's (or consumer's) certificates and removes its plaintext-MQTT secret.
/// Its live MQTT sessions end within seconds and new CONNECTs are refused; on a database the
/// nodes share, on every node.
#[utoipa::path(
    post,
    path = "/api/devices/{id}/revoke",
    tag = "devices",
    params(("id" = String, Path, description = "The device (or consumer) id")),
    responses(
        (status = 200, description = "Revoked", body = crate::ingest::revocation::Revoked),
        (status = 404, description = "No unrevoked certificate and no secret: `nothing_to_revoke`", body = super::openapi::ErrorBody),
        (status = "4XX", description = "A client mistake or refusal: `{error, detail}`", body = super::openapi::ErrorBody),
        (status = 503, description = "The store or the audit buffer cannot take it now", body = super::openapi::ErrorBody),
    )
)]
pub async fn revoke_device(
    State(state): State<AppState>,
    Extension(who): Extension<Principal>,
    Path(raw_id): Path<String>,
) -> Result<Json<crate::ingest::revocation::Revoked>, ApiError> {
    let id = device_id(&raw_id, &state)?;
    let certs = crate::pki::CertsDir::new(state.ops.certs_dir.clone());
    match crate::ingest::revocation::revoke_device(certs, &*state.store, &id, who.actor()).await {
        Ok(Some(revoked)) => Ok(Json(revoked)),
        Ok(None) => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "nothing_to_revoke",
            format!("device {id} has no unrevoked certificate and no MQTT secret"),
        )),
        Err(err) => {
            tracing::error!(event = "api.revoke_failed", message = "Revoking a device failed.", device_id = %id, error = %format!("{err:#}"));
            Err(ApiError::internal())
        }
    }
}
