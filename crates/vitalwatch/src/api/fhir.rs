//! The read-only FHIR R4 API under `/fhir`: the CapabilityStatement (public), Observation,
//! Device, Patient and Flag reads and searches (viewer and up, each read audited as
//! `phi.read` by the guard like every patient-data route). The resources come from
//! `crate::fhir`; this file parses requests and answers `application/fhir+json`, errors as
//! `OperationOutcome`. Search parameters it does not support are refused with 400, never
//! ignored.

use super::AppState;
use crate::auth::Access;
use crate::auth::routes::Routes;
use crate::fhir::search::{self, Cursor, ObservationQuery};
use crate::fhir::{self, FHIR_JSON, ObservationId, Part};
use crate::store::AlertQuery;
use crate::store::{DeviceRecord, StoreError};
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::Value;
use vitalwatch_core::alerting::AlertState;
use vitalwatch_core::telemetry::Timestamp;

const DEFAULT_COUNT: usize = 50;
const MAX_COUNT: usize = 1000;

/// The FHIR routes, merged into the API's table.
pub fn routes() -> Routes<AppState> {
    use Access::{Public, Read};
    Routes::new()
        .get("/fhir/metadata", Public, metadata)
        .get("/fhir/Observation", Read, search_observations)
        .get("/fhir/Observation/{id}", Read, read_observation)
        .get("/fhir/Device", Read, search_devices)
        .get("/fhir/Device/{id}", Read, read_device)
        .get("/fhir/Patient", Read, search_patients)
        .get("/fhir/Patient/{id}", Read, read_patient)
        .get("/fhir/Flag", Read, search_flags)
        .get("/fhir/Flag/{id}", Read, read_flag)
}

/// An error answer: an `OperationOutcome` with the status.
#[derive(Debug)]
pub struct FhirError {
    status: StatusCode,
    /// FHIR issue type (`invalid`, `not-found`, `not-supported`, `exception`, …).
    code: &'static str,
    diagnostics: String,
}

impl FhirError {
    fn invalid(diagnostics: impl Into<String>) -> FhirError {
        FhirError {
            status: StatusCode::BAD_REQUEST,
            code: "invalid",
            diagnostics: diagnostics.into(),
        }
    }

    fn not_supported(diagnostics: impl Into<String>) -> FhirError {
        FhirError {
            status: StatusCode::BAD_REQUEST,
            code: "not-supported",
            diagnostics: diagnostics.into(),
        }
    }

    fn not_found(what: &str) -> FhirError {
        FhirError {
            status: StatusCode::NOT_FOUND,
            code: "not-found",
            diagnostics: format!("{what} does not exist"),
        }
    }
}

impl From<StoreError> for FhirError {
    fn from(err: StoreError) -> FhirError {
        // The API's mapping decides the status (and logs internal errors once).
        let status = super::ApiError::from(err).status();
        let (code, diagnostics) = match status {
            StatusCode::TOO_MANY_REQUESTS => ("throttled", "the server is busy; retry shortly"),
            StatusCode::SERVICE_UNAVAILABLE => ("transient", "the server is shutting down"),
            StatusCode::NOT_FOUND => ("not-found", "not found"),
            _ => ("exception", "internal error; it has been logged"),
        };
        FhirError {
            status,
            code,
            diagnostics: diagnostics.to_owned(),
        }
    }
}

impl IntoResponse for FhirError {
    fn into_response(self) -> Response {
        let body = fhir::operation_outcome("error", self.code, &self.diagnostics);
        let mut response = fhir_json(&body);
        *response.status_mut() = self.status;
        response
    }
}

fn fhir_json(value: &Value) -> Response {
    let mut response = value.to_string().into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/fhir+json; charset=utf-8"),
    );
    response
}

/// The query string as pairs, each key checked against `allowed` (plus `_format`); a key
/// that is not supported is a 400, not silently dropped.
struct Query {
    pairs: Vec<(String, String)>,
}

impl Query {
    fn parse(raw: Option<&str>, allowed: &[&str], headers: &HeaderMap) -> Result<Query, FhirError> {
        let pairs: Vec<(String, String)> = serde_urlencoded::from_str(raw.unwrap_or(""))
            .map_err(|_| FhirError::invalid("the query string is malformed"))?;
        for (key, _) in &pairs {
            if key != "_format" && !allowed.contains(&key.as_str()) {
                return Err(FhirError::not_supported(format!(
                    "search parameter {key:?} is not supported here; supported: {}",
                    allowed.join(", ")
                )));
            }
        }
        let query = Query { pairs };
        negotiate(headers, query.one("_format")?)?;
        Ok(query)
    }

    fn all(&self, key: &str) -> impl Iterator<Item = &str> {
        self.pairs
            .iter()
            .filter(move |(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// A parameter given at most once.
    fn one(&self, key: &str) -> Result<Option<&str>, FhirError> {
        let mut values = self.all(key);
        let first = values.next();
        if values.next().is_some() {
            return Err(FhirError::invalid(format!("{key} may be given only once")));
        }
        Ok(first)
    }

    fn count(&self) -> Result<usize, FhirError> {
        match self.one("_count")? {
            None => Ok(DEFAULT_COUNT),
            Some(raw) => match raw.parse::<usize>() {
                Ok(n) if (1..=MAX_COUNT).contains(&n) => Ok(n),
                _ => Err(FhirError::invalid(format!(
                    "_count must be a whole number from 1 to {MAX_COUNT}"
                ))),
            },
        }
    }

    /// The query string again, without `_cursor`, with `extra` appended.
    fn link(&self, path: &str, extra: Option<(&str, String)>) -> String {
        let mut pairs: Vec<(&str, &str)> = self
            .pairs
            .iter()
            .filter(|(k, _)| k != "_cursor")
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        if let Some((key, value)) = &extra {
            pairs.push((key, value));
        }
        let encoded = serde_urlencoded::to_string(&pairs).unwrap_or_default();
        if encoded.is_empty() {
            path.to_owned()
        } else {
            format!("{path}?{encoded}")
        }
    }
}

/// JSON only: `_format` json / application/json / application/fhir+json, and an `Accept`
/// that admits one of those (or none at all).
fn negotiate(headers: &HeaderMap, format: Option<&str>) -> Result<(), FhirError> {
    let json_like = |text: &str| {
        let essence = text
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        matches!(
            essence.as_str(),
            "json" | "application/json" | "application/fhir+json" | "*/*" | "application/*"
        )
    };
    let refuse = |what: &str| FhirError {
        status: StatusCode::NOT_ACCEPTABLE,
        code: "not-supported",
        diagnostics: format!("{what}: this server answers {FHIR_JSON} only"),
    };
    if let Some(format) = format
        && (format == "*/*" || !json_like(format))
    {
        return Err(refuse("_format"));
    }
    if let Some(accept) = headers.get(header::ACCEPT) {
        let text = accept.to_str().unwrap_or("");
        if !text.trim().is_empty() && !text.split(',').any(json_like) {
            return Err(refuse("Accept"));
        }
    }
    Ok(())
}

/// `GET /fhir/metadata`.
#[utoipa::path(
    get,
    path = "/fhir/metadata",
    tag = "fhir",
    responses(
        (status = 200, description = "A FHIR R4 resource or Bundle", content_type = "application/fhir+json", body = Value),
        (status = "4XX", description = "An OperationOutcome", content_type = "application/fhir+json", body = Value),
        (status = 503, description = "The audit buffer is full or the store is unavailable", content_type = "application/fhir+json", body = Value),
    )
)]
async fn metadata(headers: HeaderMap, RawQuery(raw): RawQuery) -> Result<Response, FhirError> {
    Query::parse(raw.as_deref(), &[], &headers)?;
    Ok(fhir_json(&fhir::capability::statement(
        env!("CARGO_PKG_VERSION"),
        &crate::clock::now_rfc3339_millis(),
    )))
}

/// A reference parameter's id for `kind` (`Device/x` or, when `bare` is allowed, `x`).
fn reference<'a>(raw: &'a str, kind: &str, bare: bool) -> Result<&'a str, FhirError> {
    match raw.split_once('/') {
        Some((k, id)) if k == kind && !id.is_empty() => Ok(id),
        None if bare && !raw.is_empty() => Ok(raw),
        _ => Err(FhirError::invalid(format!(
            "expected a reference to {kind} ({kind}/{{id}})"
        ))),
    }
}

/// The devices a subject/patient/device parameter selects (`None`: no such parameter).
fn selected_devices(
    query: &Query,
    devices: &[DeviceRecord],
) -> Result<Option<Vec<DeviceRecord>>, FhirError> {
    let given: Vec<(&str, &str)> = ["subject", "patient", "device"]
        .into_iter()
        .filter_map(|key| query.one(key).transpose().map(|v| v.map(|v| (key, v))))
        .collect::<Result<_, _>>()?;
    let [(key, raw)] = given[..] else {
        if given.is_empty() {
            return Ok(None);
        }
        return Err(FhirError::invalid(
            "give one of subject, patient and device, not several",
        ));
    };
    let by_patient = |id: &str| {
        devices
            .iter()
            .filter(|d| {
                d.patient_label
                    .as_deref()
                    .map(fhir::patient_resource_id)
                    .as_deref()
                    == Some(id)
            })
            .cloned()
            .collect()
    };
    let by_device = |id: &str| {
        let device_id = fhir::device_id_of_resource(id);
        devices
            .iter()
            .filter(|d| Some(&d.device_id) == device_id.as_ref())
            .cloned()
            .collect()
    };
    Ok(Some(match key {
        "patient" => by_patient(reference(raw, "Patient", true)?),
        "device" => by_device(reference(raw, "Device", true)?),
        _ if raw.starts_with("Patient/") => by_patient(reference(raw, "Patient", false)?),
        _ => by_device(reference(raw, "Device", false)?),
    }))
}

/// The parts `code=` selects; `None` when not given.
fn selected_parts(query: &Query) -> Result<Option<Vec<Part>>, FhirError> {
    let Some(raw) = query.one("code")? else {
        return Ok(None);
    };
    let mut parts = Vec::new();
    for token in raw.split(',') {
        let (system, code) = match token.split_once('|') {
            Some((system, code)) => (Some(system), code),
            None => (None, token),
        };
        for part in Part::all() {
            let matches = part.codings().iter().any(|(s, c)| {
                *c == code && system.is_none_or(|system| system.is_empty() || system == *s)
            });
            if matches && !parts.contains(&part) {
                parts.push(part);
            }
        }
    }
    Ok(Some(parts))
}

/// `date=` bounds (device timestamps, inclusive): prefixes ge, gt, le, lt; a date or a
/// date-time.
fn date_bounds(query: &Query) -> Result<(Option<Timestamp>, Option<Timestamp>), FhirError> {
    let (mut since, mut until) = (None, None);
    for raw in query.all("date") {
        let bad = || {
            FhirError::invalid(
                "date must be ge, gt, le or lt followed by a date (YYYY-MM-DD) or an RFC 3339 date-time",
            )
        };
        let (prefix, value) = raw.split_at_checked(2).ok_or_else(bad)?;
        let day = (value.len() == 10)
            .then(|| Timestamp::parse_text(&format!("{value}T00:00:00Z")))
            .flatten();
        let instant = if day.is_some() {
            None
        } else {
            Timestamp::parse_text(value)
        };
        const DAY_US: i64 = 86_400_000_000;
        let bound = match (prefix, day, instant) {
            ("ge", Some(d), _) => (Some(d), None),
            ("gt", Some(d), _) => (Some(d.saturating_add_micros(DAY_US)), None),
            ("le", Some(d), _) => (None, Some(d.saturating_add_micros(DAY_US - 1))),
            ("lt", Some(d), _) => (None, Some(d.saturating_add_micros(-1))),
            ("ge", None, Some(t)) => (Some(t), None),
            ("gt", None, Some(t)) => (Some(t.saturating_add_micros(1)), None),
            ("le", None, Some(t)) => (None, Some(t)),
            ("lt", None, Some(t)) => (None, Some(t.saturating_add_micros(-1))),
            _ => return Err(bad()),
        };
        if let Some(s) = bound.0 {
            if since.is_some() {
                return Err(FhirError::invalid(
                    "give at most one lower bound (ge or gt) for date",
                ));
            }
            since = Some(s);
        }
        if let Some(u) = bound.1 {
            if until.is_some() {
                return Err(FhirError::invalid(
                    "give at most one upper bound (le or lt) for date",
                ));
            }
            until = Some(u);
        }
    }
    Ok((since, until))
}

/// `GET /fhir/Observation`.
#[utoipa::path(
    get,
    path = "/fhir/Observation",
    tag = "fhir",
    responses(
        (status = 200, description = "A FHIR R4 resource or Bundle", content_type = "application/fhir+json", body = Value),
        (status = "4XX", description = "An OperationOutcome", content_type = "application/fhir+json", body = Value),
        (status = 503, description = "The audit buffer is full or the store is unavailable", content_type = "application/fhir+json", body = Value),
    )
)]
async fn search_observations(
    State(state): State<AppState>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Result<Response, FhirError> {
    let query = Query::parse(
        raw.as_deref(),
        &[
            "subject", "patient", "device", "code", "date", "_count", "_sort", "_cursor",
        ],
        &headers,
    )?;
    if let Some(sort) = query.one("_sort")?
        && sort != "-date"
    {
        return Err(FhirError::not_supported(
            "_sort supports -date only (newest first, the default)",
        ));
    }
    let count = query.count()?;
    let cursor = query
        .one("_cursor")?
        .map(|raw| {
            Cursor::parse(raw)
                .ok_or_else(|| FhirError::invalid("_cursor must come from a next link"))
        })
        .transpose()?;
    let (since, until) = date_bounds(&query)?;
    let parts = selected_parts(&query)?;
    let devices = state.store.list_devices().await?;
    let selected = selected_devices(&query, &devices)?;
    let self_link = query.link(
        "/fhir/Observation",
        cursor.map(|c| ("_cursor", c.to_string())),
    );
    let nothing =
        parts.as_ref().is_some_and(Vec::is_empty) || selected.as_ref().is_some_and(Vec::is_empty);
    if nothing {
        return Ok(fhir_json(&fhir::searchset(Vec::new(), &self_link, None)));
    }
    let search = ObservationQuery {
        devices: selected.map(|devices| {
            devices
                .into_iter()
                .map(|d| (d.device_id, d.patient_label))
                .collect()
        }),
        labels: devices
            .into_iter()
            .map(|d| (d.device_id, d.patient_label))
            .collect(),
        parts: parts.unwrap_or_default(),
        since,
        until,
        count,
        cursor,
    };
    let page = search::observations(&*state.store, &search).await?;
    let next = page
        .next
        .map(|c| query.link("/fhir/Observation", Some(("_cursor", c.to_string()))));
    Ok(fhir_json(&fhir::searchset(
        page.observations,
        &self_link,
        next.as_deref(),
    )))
}

/// `GET /fhir/Observation/{id}`.
#[utoipa::path(
    get,
    path = "/fhir/Observation/{id}",
    tag = "fhir",
    params(("id" = String, Path, description = "The id in the path")),
    responses(
        (status = 200, description = "A FHIR R4 resource or Bundle", content_type = "application/fhir+json", body = Value),
        (status = "4XX", description = "An OperationOutcome", content_type = "application/fhir+json", body = Value),
        (status = 503, description = "The audit buffer is full or the store is unavailable", content_type = "application/fhir+json", body = Value),
    )
)]
async fn read_observation(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(raw_id): Path<String>,
    RawQuery(raw): RawQuery,
) -> Result<Response, FhirError> {
    Query::parse(raw.as_deref(), &[], &headers)?;
    let not_found = || FhirError::not_found(&format!("Observation/{raw_id}"));
    let id = ObservationId::parse(&raw_id).ok_or_else(not_found)?;
    let reading = search::reading(&*state.store, id.reading_id)
        .await?
        .ok_or_else(not_found)?;
    let device = state.store.get_device(reading.device_id.clone()).await?;
    let findings = search::reading_findings(&*state.store, &reading).await?;
    let label = device.and_then(|d| d.patient_label);
    let thresholds = state
        .store
        .thresholds(Some(reading.device_id.clone()))
        .await?;
    let scale = fhir::spo2_scale_for(&reading, thresholds.first());
    let observation = fhir::observation(&reading, id.part, &findings, label.as_deref(), scale)
        .ok_or_else(not_found)?;
    Ok(fhir_json(&observation))
}

/// `GET /fhir/Device/{id}`.
#[utoipa::path(
    get,
    path = "/fhir/Device/{id}",
    tag = "fhir",
    params(("id" = String, Path, description = "The id in the path")),
    responses(
        (status = 200, description = "A FHIR R4 resource or Bundle", content_type = "application/fhir+json", body = Value),
        (status = "4XX", description = "An OperationOutcome", content_type = "application/fhir+json", body = Value),
        (status = 503, description = "The audit buffer is full or the store is unavailable", content_type = "application/fhir+json", body = Value),
    )
)]
async fn read_device(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(raw_id): Path<String>,
    RawQuery(raw): RawQuery,
) -> Result<Response, FhirError> {
    Query::parse(raw.as_deref(), &[], &headers)?;
    let not_found = || FhirError::not_found(&format!("Device/{raw_id}"));
    let device_id = fhir::device_id_of_resource(&raw_id).ok_or_else(not_found)?;
    let device = state
        .store
        .get_device(device_id)
        .await?
        .ok_or_else(not_found)?;
    Ok(fhir_json(&fhir::device(&device)))
}

/// A token parameter's value, with an optional `system|` that must be `system`.
fn token<'a>(raw: &'a str, system: &str) -> Option<&'a str> {
    match raw.split_once('|') {
        Some((s, value)) if s.is_empty() || s == system => Some(value),
        Some(_) => None,
        None => Some(raw),
    }
}

/// `GET /fhir/Device`.
#[utoipa::path(
    get,
    path = "/fhir/Device",
    tag = "fhir",
    responses(
        (status = 200, description = "A FHIR R4 resource or Bundle", content_type = "application/fhir+json", body = Value),
        (status = "4XX", description = "An OperationOutcome", content_type = "application/fhir+json", body = Value),
        (status = 503, description = "The audit buffer is full or the store is unavailable", content_type = "application/fhir+json", body = Value),
    )
)]
async fn search_devices(
    State(state): State<AppState>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Result<Response, FhirError> {
    let query = Query::parse(
        raw.as_deref(),
        &["_id", "identifier", "patient", "status", "_count"],
        &headers,
    )?;
    let count = query.count()?;
    let id = query.one("_id")?;
    let identifier = query.one("identifier")?;
    let patient = query
        .one("patient")?
        .map(|raw| reference(raw, "Patient", true))
        .transpose()?;
    let status = query.one("status")?;
    if let Some(status) = status
        && !matches!(status, "active" | "inactive")
    {
        return Err(FhirError::invalid("status must be active or inactive"));
    }
    let resources: Vec<Value> = state
        .store
        .list_devices()
        .await?
        .iter()
        .map(fhir::device)
        .filter(|device| id.is_none_or(|id| device["id"] == id))
        .filter(|device| {
            identifier.is_none_or(|raw| {
                token(raw, fhir::SYSTEM_DEVICE_ID)
                    .is_some_and(|value| device["identifier"][0]["value"] == value)
            })
        })
        .filter(|device| {
            patient.is_none_or(|p| device["patient"]["reference"] == format!("Patient/{p}"))
        })
        .filter(|device| status.is_none_or(|s| device["status"] == s))
        .take(count)
        .collect();
    let self_link = query.link("/fhir/Device", None);
    Ok(fhir_json(&fhir::searchset(resources, &self_link, None)))
}

/// Every distinct patient label of the registry, in registry order.
fn labels(devices: &[DeviceRecord]) -> Vec<&str> {
    let mut out: Vec<&str> = Vec::new();
    for label in devices.iter().filter_map(|d| d.patient_label.as_deref()) {
        if !out.contains(&label) {
            out.push(label);
        }
    }
    out
}

/// `GET /fhir/Patient/{id}`.
#[utoipa::path(
    get,
    path = "/fhir/Patient/{id}",
    tag = "fhir",
    params(("id" = String, Path, description = "The id in the path")),
    responses(
        (status = 200, description = "A FHIR R4 resource or Bundle", content_type = "application/fhir+json", body = Value),
        (status = "4XX", description = "An OperationOutcome", content_type = "application/fhir+json", body = Value),
        (status = 503, description = "The audit buffer is full or the store is unavailable", content_type = "application/fhir+json", body = Value),
    )
)]
async fn read_patient(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(raw_id): Path<String>,
    RawQuery(raw): RawQuery,
) -> Result<Response, FhirError> {
    Query::parse(raw.as_deref(), &[], &headers)?;
    let devices = state.store.list_devices().await?;
    let label = labels(&devices)
        .into_iter()
        .find(|label| fhir::patient_resource_id(label) == raw_id)
        .ok_or_else(|| FhirError::not_found(&format!("Patient/{raw_id}")))?;
    Ok(fhir_json(&fhir::patient(label)))
}

/// `GET /fhir/Patient`.
#[utoipa::path(
    get,
    path = "/fhir/Patient",
    tag = "fhir",
    responses(
        (status = 200, description = "A FHIR R4 resource or Bundle", content_type = "application/fhir+json", body = Value),
        (status = "4XX", description = "An OperationOutcome", content_type = "application/fhir+json", body = Value),
        (status = 503, description = "The audit buffer is full or the store is unavailable", content_type = "application/fhir+json", body = Value),
    )
)]
async fn search_patients(
    State(state): State<AppState>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Result<Response, FhirError> {
    let query = Query::parse(raw.as_deref(), &["_id", "identifier", "_count"], &headers)?;
    let count = query.count()?;
    let id = query.one("_id")?;
    let identifier = query.one("identifier")?;
    let devices = state.store.list_devices().await?;
    let resources: Vec<Value> = labels(&devices)
        .into_iter()
        .filter(|label| id.is_none_or(|id| fhir::patient_resource_id(label) == id))
        .filter(|label| {
            identifier.is_none_or(|raw| token(raw, fhir::SYSTEM_PATIENT_LABEL) == Some(*label))
        })
        .take(count)
        .map(fhir::patient)
        .collect();
    let self_link = query.link("/fhir/Patient", None);
    Ok(fhir_json(&fhir::searchset(resources, &self_link, None)))
}

/// `GET /fhir/Flag/{id}`.
#[utoipa::path(
    get,
    path = "/fhir/Flag/{id}",
    tag = "fhir",
    params(("id" = String, Path, description = "The id in the path")),
    responses(
        (status = 200, description = "A FHIR R4 resource or Bundle", content_type = "application/fhir+json", body = Value),
        (status = "4XX", description = "An OperationOutcome", content_type = "application/fhir+json", body = Value),
        (status = 503, description = "The audit buffer is full or the store is unavailable", content_type = "application/fhir+json", body = Value),
    )
)]
async fn read_flag(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(raw_id): Path<String>,
    RawQuery(raw): RawQuery,
) -> Result<Response, FhirError> {
    Query::parse(raw.as_deref(), &[], &headers)?;
    let not_found = || FhirError::not_found(&format!("Flag/{raw_id}"));
    let id = raw_id.parse::<u64>().map_err(|_| not_found())?;
    let (record, _) = state.store.alert(id).await?.ok_or_else(not_found)?;
    let device = state
        .store
        .get_device(record.alert.device_id.as_str().to_owned())
        .await?;
    let label = device.and_then(|d| d.patient_label);
    Ok(fhir_json(&fhir::flag(&record, label.as_deref())))
}

/// `GET /fhir/Flag`: newest first (open alerts first, as the store orders them), at most
/// `_count`.
#[utoipa::path(
    get,
    path = "/fhir/Flag",
    tag = "fhir",
    responses(
        (status = 200, description = "A FHIR R4 resource or Bundle", content_type = "application/fhir+json", body = Value),
        (status = "4XX", description = "An OperationOutcome", content_type = "application/fhir+json", body = Value),
        (status = 503, description = "The audit buffer is full or the store is unavailable", content_type = "application/fhir+json", body = Value),
    )
)]
async fn search_flags(
    State(state): State<AppState>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Result<Response, FhirError> {
    let query = Query::parse(
        raw.as_deref(),
        &["subject", "patient", "status", "date", "_count"],
        &headers,
    )?;
    let count = query.count()?;
    let (open_only, state_filter) = match query.one("status")? {
        None => (false, None),
        Some("active") => (true, None),
        Some("inactive") => (false, Some(AlertState::Resolved)),
        Some(_) => return Err(FhirError::invalid("status must be active or inactive")),
    };
    let (since, until) = date_bounds(&query)?;
    if until.is_some() {
        return Err(FhirError::not_supported(
            "Flag supports date=ge… (or gt) only",
        ));
    }
    let devices = state.store.list_devices().await?;
    let selected = selected_devices(&query, &devices)?;
    let label_of = |device_id: &str| {
        devices
            .iter()
            .find(|d| d.device_id == device_id)
            .and_then(|d| d.patient_label.clone())
    };
    let device_ids: Vec<Option<String>> = match selected {
        None => vec![None],
        Some(selected) => selected.into_iter().map(|d| Some(d.device_id)).collect(),
    };
    let mut resources = Vec::new();
    for device_id in device_ids {
        let alerts = state
            .store
            .alerts(AlertQuery {
                state: state_filter,
                open_only,
                priority: None,
                device_id,
                since,
                limit: count,
            })
            .await?;
        for record in alerts {
            let label = label_of(record.alert.device_id.as_str());
            resources.push(fhir::flag(&record, label.as_deref()));
        }
    }
    resources.truncate(count);
    let self_link = query.link("/fhir/Flag", None);
    Ok(fhir_json(&fhir::searchset(resources, &self_link, None)))
}

/// Every error answer under `/fhir` is an `OperationOutcome`, including those made before a
/// FHIR handler runs (the guard's 401/403/503, the router's 404 and 405, a 413): the API's
/// `{"error","detail"}` body is rewritten with the same status and headers (`WWW-Authenticate`,
/// `Retry-After` stay). Installed outside the guard by `api::guarded`.
pub async fn errors_as_outcomes(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let path = request.uri().path();
    let is_fhir = path == "/fhir" || path.starts_with("/fhir/");
    let response = next.run(request).await;
    let status = response.status();
    let is_api_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if !is_fhir || !(status.is_client_error() || status.is_server_error()) || !is_api_json {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, 64 * 1024).await else {
        return outcome_response(parts, issue_type(status), "the error could not be read");
    };
    let error: Value = serde_json::from_slice(&bytes).unwrap_or_default();
    let diagnostics = match (error["error"].as_str(), error["detail"].as_str()) {
        (Some(code), Some(detail)) => format!("{code}: {detail}"),
        (Some(code), None) => code.to_owned(),
        _ => status.canonical_reason().unwrap_or("error").to_owned(),
    };
    parts.headers.remove(header::CONTENT_LENGTH);
    outcome_response(parts, issue_type(status), &diagnostics)
}

/// FHIR's issue type (value set `issue-type`) for an HTTP error status.
fn issue_type(status: StatusCode) -> &'static str {
    match status {
        StatusCode::UNAUTHORIZED => "login",
        StatusCode::FORBIDDEN => "forbidden",
        StatusCode::NOT_FOUND => "not-found",
        StatusCode::METHOD_NOT_ALLOWED | StatusCode::NOT_ACCEPTABLE => "not-supported",
        StatusCode::PAYLOAD_TOO_LARGE => "too-long",
        StatusCode::TOO_MANY_REQUESTS => "throttled",
        StatusCode::SERVICE_UNAVAILABLE => "transient",
        status if status.is_client_error() => "invalid",
        _ => "exception",
    }
}

fn outcome_response(
    mut parts: axum::http::response::Parts,
    code: &str,
    diagnostics: &str,
) -> Response {
    let body = fhir::operation_outcome("error", code, diagnostics).to_string();
    parts.headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/fhir+json; charset=utf-8"),
    );
    Response::from_parts(parts, axum::body::Body::from(body))
}
