//! Alerts, per-patient thresholds (with a what-if preview), NEWS2 and webhook deliveries.
//!
//! Alert actions (acknowledge, silence, resolve) go through the live engine, are answered after
//! their transitions commit, and are audited. Threshold changes are validated against the
//! NEWS2 floors (`PatientThresholds::apply`), audited by the store, and in force from the
//! device's next reading.

use super::query::Params;
use super::{ApiError, AppState, json_body};
use crate::alerts::PreviewAnswer;
use crate::alerts::{ActionError, ThresholdsError};
use crate::auth::Principal;
use crate::store::{
    AlertEventRecord, AlertQuery, AlertRecord, AnomalyRecord, AuditEntry, ReadingQuery,
    ReadingRecord, ThresholdsRecord, WebhookDeliveryRecord,
};
use axum::Extension;
use axum::Json;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::sync::Arc;
use vitalwatch_core::alerting::{Alert, AlertError, AlertState, Priority};
use vitalwatch_core::news2::{News2, Parameter, Spo2Scale};
use vitalwatch_core::rules::{PatientThresholds, RangeRule};
use vitalwatch_core::telemetry::{DeviceId, Timestamp};

const MAX_USER_LEN: usize = 128;
const MAX_NOTE_LEN: usize = 1000;
/// Anomalies shown from this long before an alert opened.
const AROUND_S: i64 = 300;
/// Readings shown on each side of the alert's first offending reading.
const READINGS_AROUND: usize = 20;

fn device_id(raw: &str, state: &AppState) -> Result<DeviceId, ApiError> {
    DeviceId::parse(raw, state.pipeline.limits().max_device_id_len).map_err(|_| {
        ApiError::bad_request(
            "invalid_device_id",
            "device ids are 1 to 64 characters of A-Z a-z 0-9 _ . : -",
        )
    })
}

fn alert_id(raw: &str) -> Result<u64, ApiError> {
    raw.parse::<u64>()
        .ok()
        .filter(|id| *id > 0 && *id <= i64::MAX as u64)
        .ok_or_else(|| ApiError::bad_request("invalid_alert_id", "alert ids are positive integers"))
}

/// A stored alert as served: its fields plus its short `message` for people and pagers
/// ("HR 142 bpm (limit 130) for 45 s, bed-7").
#[derive(Serialize, utoipa::ToSchema)]
pub struct AlertView {
    #[serde(flatten)]
    record: AlertRecord,
    message: String,
}

impl AlertView {
    fn of(record: AlertRecord) -> AlertView {
        let message = vitalwatch_core::alerting::message(&record.alert);
        AlertView { record, message }
    }
}

/// An alert as an action left it, with its `message`.
#[derive(Serialize, utoipa::ToSchema)]
pub struct AlertNow {
    #[serde(flatten)]
    alert: Alert,
    message: String,
}

impl AlertNow {
    fn of(alert: Alert) -> AlertNow {
        let message = vitalwatch_core::alerting::message(&alert);
        AlertNow { alert, message }
    }
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct AlertList {
    count: usize,
    /// Active first, then by priority.
    alerts: Vec<AlertView>,
}

/// An alert with its history and its device's data around it.
#[derive(Serialize, utoipa::ToSchema)]
pub struct AlertDetail {
    alert: AlertView,
    /// Its transitions, oldest first.
    events: Vec<AlertEventRecord>,
    /// The device's anomalies from shortly before it opened until it resolved.
    anomalies: Vec<AnomalyRecord>,
    /// The device's readings around its first offending reading.
    readings: Vec<ReadingRecord>,
}

fn unprocessable(detail: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_body", detail)
}

fn check_text(name: &str, value: &str, max: usize, required: bool) -> Result<(), ApiError> {
    if (required && value.trim().is_empty())
        || value.chars().count() > max
        || value.chars().any(char::is_control)
    {
        return Err(unprocessable(format!(
            "{name} must be {}at most {max} characters, without control characters",
            if required { "1 to " } else { "" }
        )));
    }
    Ok(())
}

impl From<ActionError> for ApiError {
    fn from(err: ActionError) -> ApiError {
        match err {
            ActionError::NotFound(id) => ApiError::new(
                StatusCode::NOT_FOUND,
                "alert_not_found",
                format!("no alert has id {id}"),
            ),
            ActionError::Refused(
                err @ (AlertError::NotOpen(_) | AlertError::AlreadyAcknowledged(_)),
            ) => {
                let detail = match err {
                    AlertError::NotOpen(id) => format!("alert {id} is resolved"),
                    other => other.to_string(),
                };
                ApiError::new(StatusCode::CONFLICT, "alert_not_open", detail)
            }
            ActionError::Refused(err) => unprocessable(err.to_string()),
            ActionError::Store(err) => err.into(),
        }
    }
}

impl From<ThresholdsError> for ApiError {
    fn from(err: ThresholdsError) -> ApiError {
        match err {
            ThresholdsError::Invalid(err) => ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_thresholds",
                err.to_string(),
            ),
            ThresholdsError::Field(detail) => ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_thresholds",
                detail,
            ),
            ThresholdsError::Store(err) => err.into(),
        }
    }
}

fn parse_state(raw: &str) -> Result<(Option<AlertState>, bool), ApiError> {
    match raw {
        "open" => Ok((None, true)),
        "active" => Ok((Some(AlertState::Active), false)),
        "acknowledged" => Ok((Some(AlertState::Acknowledged), false)),
        "resolved" => Ok((Some(AlertState::Resolved), false)),
        _ => Err(ApiError::bad_request(
            "invalid_query",
            "state must be one of open, active, acknowledged, resolved",
        )),
    }
}

fn parse_priority(raw: &str) -> Result<Priority, ApiError> {
    match raw.to_ascii_lowercase().as_str() {
        "low" => Ok(Priority::Low),
        "medium" => Ok(Priority::Medium),
        "high" => Ok(Priority::High),
        _ => Err(ApiError::bad_request(
            "invalid_query",
            "severity must be one of low, medium, high",
        )),
    }
}

/// `GET /api/alerts?state=&severity=&device_id=&limit=`: active first, then by priority.
#[utoipa::path(
    get,
    path = "/api/alerts",
    tag = "alerts",
    params(
        ("state" = Option<String>, Query, description = "`open` (active or acknowledged), `active`, `acknowledged` or `resolved`", pattern = "^(open|active|acknowledged|resolved)$"),
        ("severity" = Option<Priority>, Query, description = "Only this priority"),
        super::query::DeviceFilter,
        ("since" = Option<String>, Query, description = "Alerts still open at, or opened after, this time: RFC 3339 or epoch seconds or milliseconds"),
        ("limit" = Option<u32>, Query, description = "At most this many, 1 to 1000 (default 100)", minimum = 1, maximum = 1000),
    ),
    responses(
        (status = 200, description = "Alerts, active first, then by priority", body = AlertList),
        (status = "4XX", description = "A client mistake or refusal: `{error, detail}`", body = super::openapi::ErrorBody),
        (status = 503, description = "The store or the audit buffer cannot take it now", body = super::openapi::ErrorBody),
    )
)]
pub async fn list_alerts(
    State(state): State<AppState>,
    RawQuery(raw): RawQuery,
) -> Result<Json<AlertList>, ApiError> {
    let params = Params::parse(
        raw.as_deref(),
        &["state", "severity", "device_id", "since", "limit"],
    )?;
    let (alert_state, open_only) = match params.text("state") {
        Some(raw) => parse_state(raw)?,
        None => (None, false),
    };
    let query = AlertQuery {
        state: alert_state,
        open_only,
        priority: params.text("severity").map(parse_priority).transpose()?,
        device_id: params
            .text("device_id")
            .map(|raw| device_id(raw, &state).map(|id| id.as_str().to_owned()))
            .transpose()?,
        since: params.time("since")?,
        limit: params.limit()?,
    };
    let alerts: Vec<AlertView> = state
        .store
        .alerts(query)
        .await?
        .into_iter()
        .map(AlertView::of)
        .collect();
    Ok(Json(AlertList {
        count: alerts.len(),
        alerts,
    }))
}

/// `GET /api/alerts/{id}`: the alert, its history, its device's anomalies while it was open
/// and the readings around its opening.
#[utoipa::path(
    get,
    path = "/api/alerts/{id}",
    tag = "alerts",
    params(("id" = u64, Path, description = "The alert id", minimum = 1)),
    responses(
        (status = 200, description = "The alert, its history, and its device's anomalies and readings around it", body = AlertDetail),
        (status = "4XX", description = "A client mistake or refusal: `{error, detail}`", body = super::openapi::ErrorBody),
        (status = 503, description = "The store or the audit buffer cannot take it now", body = super::openapi::ErrorBody),
    )
)]
pub async fn get_alert(
    State(state): State<AppState>,
    Path(raw_id): Path<String>,
) -> Result<Json<AlertDetail>, ApiError> {
    let id = alert_id(&raw_id)?;
    let Some((record, events)) = state.store.alert(id).await? else {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "alert_not_found",
            format!("no alert has id {id}"),
        ));
    };
    let alert = &record.alert;
    let device = alert.device_id.as_str().to_owned();
    let around = AROUND_S * 1_000_000;
    let anomalies = state
        .store
        .anomalies(crate::store::AnomalyQuery {
            device_id: Some(device.clone()),
            since: Some(alert.opened_at.saturating_add_micros(-around)),
            until: alert.resolved_at,
            limit: 200,
            ..Default::default()
        })
        .await?;
    // Readings are found by id around the first offending one (their own timestamps are the
    // device's clock; the alert's times are the server's).
    let anchor = anomalies.iter().filter_map(|a| a.reading_id).min();
    let readings = state
        .store
        .readings(ReadingQuery {
            device_id: Some(device),
            since: None,
            until: None,
            before_id: anchor.map(|id| id.saturating_add(READINGS_AROUND as i64 + 1)),
            limit: 2 * READINGS_AROUND + 1,
        })
        .await?;
    Ok(Json(AlertDetail {
        alert: AlertView::of(record),
        events,
        anomalies,
        readings,
    }))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AckBody {
    by: String,
    note: Option<String>,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SilenceBody {
    by: String,
    duration_s: u64,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ResolveBody {
    by: String,
}

async fn audit_action(
    state: &AppState,
    who: &Principal,
    action: &str,
    alert: &vitalwatch_core::alerting::Alert,
    by: &str,
    extra: Value,
) {
    let entry = AuditEntry {
        actor: format!("{} ({})", by, who.actor()),
        action: format!("alert.{action}"),
        target: alert.id.to_string(),
        details: json!({
            "device_id": alert.device_id.as_str(),
            "condition": alert.condition.as_str(),
            "state": crate::store::alert_state_str(alert.state),
            "extra": extra,
        }),
    };
    if let Err(err) = state.store.audit(entry).await {
        tracing::warn!(event = "audit.not_written", message = "Alert action not audited.", error = %err);
    }
}

#[utoipa::path(
    post,
    path = "/api/alerts/{id}/ack",
    tag = "alerts",
    params(("id" = u64, Path, description = "The alert id", minimum = 1)),
    request_body(content = AckBody, content_type = "application/json"),
    responses(
        (status = 200, description = "The alert, acknowledged", body = AlertNow),
        (status = "4XX", description = "A client mistake or refusal: `{error, detail}`", body = super::openapi::ErrorBody),
        (status = 503, description = "The store or the audit buffer cannot take it now", body = super::openapi::ErrorBody),
    )
)]
pub async fn acknowledge(
    State(state): State<AppState>,
    Path(raw_id): Path<String>,
    Extension(who): Extension<Principal>,
    headers: HeaderMap,
    body: axum::body::Body,
) -> Result<Json<AlertNow>, ApiError> {
    let id = alert_id(&raw_id)?;
    let body: AckBody = json_body(&headers, body).await?;
    check_text("by", &body.by, MAX_USER_LEN, true)?;
    let by = who.acting_as(&body.by);
    if let Some(note) = &body.note {
        check_text("note", note, MAX_NOTE_LEN, false)?;
    }
    let alert = state
        .pipeline
        .alerts()
        .acknowledge(id, by, body.note.as_deref())
        .await?;
    audit_action(
        &state,
        &who,
        "acknowledge",
        &alert,
        by,
        json!({ "note_set": body.note.is_some() }),
    )
    .await;
    Ok(Json(AlertNow::of(alert)))
}

#[utoipa::path(
    post,
    path = "/api/alerts/{id}/silence",
    tag = "alerts",
    params(("id" = u64, Path, description = "The alert id", minimum = 1)),
    request_body(content = SilenceBody, content_type = "application/json"),
    responses(
        (status = 200, description = "The alert, its audio paused", body = AlertNow),
        (status = "4XX", description = "A client mistake or refusal: `{error, detail}`", body = super::openapi::ErrorBody),
        (status = 503, description = "The store or the audit buffer cannot take it now", body = super::openapi::ErrorBody),
    )
)]
pub async fn silence(
    State(state): State<AppState>,
    Path(raw_id): Path<String>,
    Extension(who): Extension<Principal>,
    headers: HeaderMap,
    body: axum::body::Body,
) -> Result<Json<AlertNow>, ApiError> {
    let id = alert_id(&raw_id)?;
    let body: SilenceBody = json_body(&headers, body).await?;
    check_text("by", &body.by, MAX_USER_LEN, true)?;
    let by = who.acting_as(&body.by);
    let alerts = state.pipeline.alerts();
    let max = alerts.config().engine.audio_pause_max_s;
    if body.duration_s == 0 || body.duration_s > max {
        return Err(unprocessable(format!(
            "duration_s must be between 1 and {max} seconds"
        )));
    }
    let alert = alerts.silence(id, by, body.duration_s).await?;
    audit_action(
        &state,
        &who,
        "silence",
        &alert,
        by,
        json!({ "duration_s": body.duration_s }),
    )
    .await;
    Ok(Json(AlertNow::of(alert)))
}

#[utoipa::path(
    post,
    path = "/api/alerts/{id}/resolve",
    tag = "alerts",
    params(("id" = u64, Path, description = "The alert id", minimum = 1)),
    request_body(content = ResolveBody, content_type = "application/json"),
    responses(
        (status = 200, description = "The alert, resolved", body = AlertNow),
        (status = "4XX", description = "A client mistake or refusal: `{error, detail}`", body = super::openapi::ErrorBody),
        (status = 503, description = "The store or the audit buffer cannot take it now", body = super::openapi::ErrorBody),
    )
)]
pub async fn resolve(
    State(state): State<AppState>,
    Path(raw_id): Path<String>,
    Extension(who): Extension<Principal>,
    headers: HeaderMap,
    body: axum::body::Body,
) -> Result<Json<AlertNow>, ApiError> {
    let id = alert_id(&raw_id)?;
    let body: ResolveBody = json_body(&headers, body).await?;
    check_text("by", &body.by, MAX_USER_LEN, true)?;
    let by = who.acting_as(&body.by);
    let alert = state.pipeline.alerts().resolve(id, by).await?;
    audit_action(&state, &who, "resolve", &alert, by, Value::Null).await;
    Ok(Json(AlertNow::of(alert)))
}

/// `GET /api/devices/{id}/news2`: the device's NEWS2 from its latest values.
#[utoipa::path(
    get,
    path = "/api/devices/{id}/news2",
    tag = "alerts",
    params(("id" = String, Path, description = "The device id", pattern = "^[A-Za-z0-9_.:-]{1,64}$")),
    responses(
        (status = 200, description = "The device's NEWS2 from its latest values", body = DeviceNews2),
        (status = "4XX", description = "A client mistake or refusal: `{error, detail}`", body = super::openapi::ErrorBody),
        (status = 503, description = "The store or the audit buffer cannot take it now", body = super::openapi::ErrorBody),
    )
)]
pub async fn device_news2(
    State(state): State<AppState>,
    Path(raw_id): Path<String>,
) -> Result<Json<DeviceNews2>, ApiError> {
    let id = device_id(&raw_id, &state)?;
    let alerts = state.pipeline.alerts();
    match alerts.news2(&id).await {
        Some((news2, at)) => Ok(Json(DeviceNews2 {
            device_id: id.as_str().to_owned(),
            at: at.to_rfc3339(),
            spo2_scale: alerts.patient(&id).scale(),
            stale: news2.stale.clone(),
            news2,
        })),
        None => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "no_recent_readings",
            format!(
                "no reading of device {} since the server started",
                id.as_str()
            ),
        )),
    }
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct DeviceNews2 {
    device_id: String,
    /// When its latest value was received.
    #[schema(format = DateTime)]
    at: String,
    /// The scale the clinician set (also `news2.scale`).
    spo2_scale: Spo2Scale,
    /// The parameters measured longer ago than they stay valid (also `news2.stale`).
    stale: Vec<Parameter>,
    news2: News2,
}

/// A device's thresholds: its override, if any, and the site's values it overrides.
#[derive(Serialize, utoipa::ToSchema)]
pub struct DeviceThresholds {
    device_id: String,
    /// The device's override; null when it has none.
    #[serde(rename = "override")]
    override_: Option<ThresholdsRecord>,
    site: SiteThresholds,
}

/// The site's values a patient override replaces.
#[derive(Serialize, utoipa::ToSchema)]
pub struct SiteThresholds {
    heart_rate: RangeRule,
    body_temp: RangeRule,
    /// Severe hypertension from this systolic pressure (mmHg).
    systolic_bp_max: f64,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct ThresholdsRemoved {
    device_id: String,
    /// False when the device had no override.
    removed: bool,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct DeliveryList {
    count: usize,
    deliveries: Vec<WebhookDeliveryRecord>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct VerdictRecorded {
    id: i64,
    /// `true_alarm` or `false_alarm`.
    verdict: String,
    by: String,
}

async fn require_device(state: &AppState, id: &DeviceId) -> Result<(), ApiError> {
    match state.store.get_device(id.as_str().to_owned()).await? {
        Some(_) => Ok(()),
        None => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "device_not_found",
            format!("device {} is not registered", id.as_str()),
        )),
    }
}

#[utoipa::path(
    get,
    path = "/api/devices/{id}/thresholds",
    tag = "alerts",
    params(("id" = String, Path, description = "The device id", pattern = "^[A-Za-z0-9_.:-]{1,64}$")),
    responses(
        (status = 200, description = "The device's override and the site's values", body = DeviceThresholds),
        (status = "4XX", description = "A client mistake or refusal: `{error, detail}`", body = super::openapi::ErrorBody),
        (status = 503, description = "The store or the audit buffer cannot take it now", body = super::openapi::ErrorBody),
    )
)]
pub async fn get_thresholds(
    State(state): State<AppState>,
    Path(raw_id): Path<String>,
) -> Result<Json<DeviceThresholds>, ApiError> {
    let id = device_id(&raw_id, &state)?;
    require_device(&state, &id).await?;
    let record = state
        .store
        .thresholds(Some(id.as_str().to_owned()))
        .await?
        .into_iter()
        .next();
    let alerts = state.pipeline.alerts();
    let site = alerts.site_rules();
    let hypertension = alerts.config().engine.hypertension;
    Ok(Json(DeviceThresholds {
        device_id: id.as_str().to_owned(),
        override_: record,
        site: SiteThresholds {
            heart_rate: site.heart_rate,
            body_temp: site.body_temp,
            systolic_bp_max: hypertension.systolic_at_or_above,
        },
    }))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ThresholdsBody {
    #[serde(flatten)]
    thresholds: PatientThresholds,
    author: String,
    reason: String,
    /// In force from this time (RFC 3339); default now.
    #[schema(format = DateTime)]
    effective_from: Option<String>,
}

#[utoipa::path(
    put,
    path = "/api/devices/{id}/thresholds",
    tag = "alerts",
    params(("id" = String, Path, description = "The device id", pattern = "^[A-Za-z0-9_.:-]{1,64}$")),
    request_body(content = ThresholdsBody, content_type = "application/json"),
    responses(
        (status = 200, description = "The override as stored", body = ThresholdsRecord),
        (status = "4XX", description = "A client mistake or refusal: `{error, detail}`", body = super::openapi::ErrorBody),
        (status = 503, description = "The store or the audit buffer cannot take it now", body = super::openapi::ErrorBody),
    )
)]
pub async fn put_thresholds(
    State(state): State<AppState>,
    Path(raw_id): Path<String>,
    Extension(who): Extension<Principal>,
    headers: HeaderMap,
    body: axum::body::Body,
) -> Result<Json<ThresholdsRecord>, ApiError> {
    let id = device_id(&raw_id, &state)?;
    let body: ThresholdsBody = json_body(&headers, body).await?;
    check_text("author", &body.author, MAX_USER_LEN, true)?;
    check_text("reason", &body.reason, MAX_NOTE_LEN, true)?;
    let effective_from = body
        .effective_from
        .as_deref()
        .map(|raw| {
            Timestamp::parse_text(raw)
                .ok_or_else(|| unprocessable("effective_from must be an RFC 3339 time"))
        })
        .transpose()?;
    require_device(&state, &id).await?;
    let author = format!("{} ({})", who.acting_as(&body.author), who.actor());
    let record = state
        .pipeline
        .alerts()
        .set_thresholds(&id, body.thresholds, author, body.reason, effective_from)
        .await?;
    Ok(Json(record))
}

#[utoipa::path(
    delete,
    path = "/api/devices/{id}/thresholds",
    tag = "alerts",
    params(("id" = String, Path, description = "The device id", pattern = "^[A-Za-z0-9_.:-]{1,64}$"),
        ("by" = Option<String>, Query, description = "Who removes it (a session user is always named as themselves)", max_length = 128),
        ("reason" = Option<String>, Query, description = "Why, for the audit log"),
    ),
    responses(
        (status = 200, description = "Whether an override was removed", body = ThresholdsRemoved),
        (status = "4XX", description = "A client mistake or refusal: `{error, detail}`", body = super::openapi::ErrorBody),
        (status = 503, description = "The store or the audit buffer cannot take it now", body = super::openapi::ErrorBody),
    )
)]
pub async fn delete_thresholds(
    State(state): State<AppState>,
    Path(raw_id): Path<String>,
    Extension(who): Extension<Principal>,
    RawQuery(raw): RawQuery,
) -> Result<Json<ThresholdsRemoved>, ApiError> {
    let id = device_id(&raw_id, &state)?;
    let params = Params::parse(raw.as_deref(), &["by", "reason"])?;
    let by = who.acting_as(params.text("by").unwrap_or("unknown"));
    check_text("by", by, MAX_USER_LEN, true)?;
    require_device(&state, &id).await?;
    let removed = state
        .pipeline
        .alerts()
        .clear_thresholds(
            &id,
            format!("{by} ({})", who.actor()),
            params.text("reason").map(str::to_owned),
        )
        .await?;
    Ok(Json(ThresholdsRemoved {
        device_id: id.as_str().to_owned(),
        removed,
    }))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PreviewBody {
    /// One device's override; absent: the thresholds for every device (a site-wide change).
    device_id: Option<String>,
    thresholds: PatientThresholds,
    /// Replay readings timestamped from this time (RFC 3339).
    #[schema(format = DateTime)]
    since: Option<String>,
    /// ... until this time (RFC 3339).
    #[schema(format = DateTime)]
    until: Option<String>,
}

/// `POST /api/thresholds/preview`: replays stored history under the proposed thresholds and
/// the current ones; changes nothing.
#[utoipa::path(
    post,
    path = "/api/thresholds/preview",
    tag = "alerts",
    request_body(content = PreviewBody, content_type = "application/json"),
    responses(
        (status = 200, description = "What the history would have raised under the proposed and the current thresholds", body = PreviewAnswer),
        (status = "4XX", description = "A client mistake or refusal: `{error, detail}`", body = super::openapi::ErrorBody),
        (status = 503, description = "The store or the audit buffer cannot take it now", body = super::openapi::ErrorBody),
    )
)]
pub async fn preview_thresholds(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: axum::body::Body,
) -> Result<Json<PreviewAnswer>, ApiError> {
    let body: PreviewBody = json_body(&headers, body).await?;
    let alerts = state.pipeline.alerts();
    let device = body
        .device_id
        .as_deref()
        .map(|raw| device_id(raw, &state))
        .transpose()?;
    let time = |raw: Option<&str>, name: &str| {
        raw.map(|raw| {
            Timestamp::parse_text(raw)
                .ok_or_else(|| unprocessable(format!("{name} must be an RFC 3339 time")))
        })
        .transpose()
    };
    let until = time(body.until.as_deref(), "until")?;
    let since = time(body.since.as_deref(), "since")?;
    if let Some(device) = &device {
        require_device(&state, device).await?;
    }
    let answer = crate::alerts::preview_history(
        Arc::clone(&state.store),
        alerts.config(),
        alerts.site_rules(),
        device.map(|d| d.as_str().to_owned()),
        body.thresholds,
        since,
        until,
    )
    .await?;
    Ok(Json(answer))
}
/// `GET /api/webhooks/deliveries?state=failed|delivered&limit=`.
#[utoipa::path(
    get,
    path = "/api/webhooks/deliveries",
    tag = "alerts",
    params(
        ("state" = Option<String>, Query, description = "Only failed or only delivered ones", pattern = "^(failed|delivered)$"),
        ("limit" = Option<u32>, Query, description = "At most this many, 1 to 1000 (default 100)", minimum = 1, maximum = 1000),
    ),
    responses(
        (status = 200, description = "Finished webhook deliveries, newest first", body = DeliveryList),
        (status = "4XX", description = "A client mistake or refusal: `{error, detail}`", body = super::openapi::ErrorBody),
        (status = 503, description = "The store or the audit buffer cannot take it now", body = super::openapi::ErrorBody),
    )
)]
pub async fn webhook_deliveries(
    State(state): State<AppState>,
    RawQuery(raw): RawQuery,
) -> Result<Json<DeliveryList>, ApiError> {
    let params = Params::parse(raw.as_deref(), &["state", "limit"])?;
    let filter = match params.text("state") {
        None => None,
        Some(s @ ("failed" | "delivered")) => Some(s.to_owned()),
        Some(_) => {
            return Err(ApiError::bad_request(
                "invalid_query",
                "state must be failed or delivered",
            ));
        }
    };
    let deliveries = state
        .store
        .webhook_deliveries(filter, params.limit()?)
        .await?;
    Ok(Json(DeliveryList {
        count: deliveries.len(),
        deliveries,
    }))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VerdictBody {
    by: String,
    /// "true_alarm" or "false_alarm".
    #[schema(pattern = "^(true_alarm|false_alarm)$")]
    verdict: String,
}

/// A clinician's verdict on an alert episode: the labels `vitalwatch train --from-alerts`
/// trains the supervised model from. Audited.
#[utoipa::path(
    post,
    path = "/api/alerts/{id}/verdict",
    tag = "alerts",
    params(("id" = u64, Path, description = "The alert id", minimum = 1)),
    request_body(content = VerdictBody, content_type = "application/json"),
    responses(
        (status = 200, description = "The verdict as recorded", body = VerdictRecorded),
        (status = "4XX", description = "A client mistake or refusal: `{error, detail}`", body = super::openapi::ErrorBody),
        (status = 503, description = "The store or the audit buffer cannot take it now", body = super::openapi::ErrorBody),
    )
)]
pub async fn verdict(
    State(state): State<AppState>,
    Path(raw_id): Path<String>,
    Extension(who): Extension<Principal>,
    headers: HeaderMap,
    body: axum::body::Body,
) -> Result<Json<VerdictRecorded>, ApiError> {
    let id = alert_id(&raw_id)?;
    let body: VerdictBody = json_body(&headers, body).await?;
    check_text("by", &body.by, MAX_USER_LEN, true)?;
    let by = who.acting_as(&body.by);
    let true_alarm = match body.verdict.as_str() {
        "true_alarm" => true,
        "false_alarm" => false,
        _ => {
            return Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_body",
                "verdict must be \"true_alarm\" or \"false_alarm\"",
            ));
        }
    };
    let id = i64::try_from(id)
        .map_err(|_| ApiError::new(StatusCode::NOT_FOUND, "alert_not_found", "no such alert"))?;
    state
        .store
        .set_alert_verdict(id, true_alarm, by.to_owned())
        .await?;
    Ok(Json(VerdictRecorded {
        id,
        verdict: body.verdict,
        by: by.to_owned(),
    }))
}
