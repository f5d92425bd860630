//! The routes the dashboard page reads: top metrics and statistics, downsampled series, the
//! newest reading per device (with NEWS2), all devices' readings (Logs), a streamed CSV export
//! and the normal ranges. Every route takes the same window: `since`, `until` (RFC 3339 or
//! epoch) and `device_id`; times are UTC on the wire, the page shows them in local time.

use super::query::{Params, next_cursor};
use super::{ApiError, AppState};
use crate::store::series::{DashboardStats, DeviceSeries, SeriesQuery, Window};
use crate::store::{ReadingQuery, ReadingRecord};
use axum::Json;
use axum::body::{Body, Bytes};
use axum::extract::{RawQuery, State};
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use std::fmt::Write as _;
use tokio_stream::wrappers::ReceiverStream;
use vitalwatch_core::news2::{News2, Spo2Scale};
use vitalwatch_core::rules::RuleSet;

use vitalwatch_core::telemetry::{DeviceId, Timestamp, VitalKey};

/// Buckets a series has when the page does not say.
const DEFAULT_POINTS: usize = 300;
/// Enough for a 4K-wide chart; more buckets than pixels only cost bandwidth.
const MAX_POINTS: usize = 2000;
/// Devices one series request may name.
const MAX_SERIES_DEVICES: usize = 100;
/// The CSV export stops after this many rows (a 24 h day of 100 devices at 1 reading / 3 s
/// is 2.88 M rows); the `X-VitalWatch-Row-Limit` header says so.
pub const CSV_MAX_ROWS: usize = 3_000_000;
/// Rows fetched per store query while streaming the CSV.
const CSV_PAGE: usize = 5000;
/// The window a series covers when the page gives no `since`: the last 24 hours.
const DEFAULT_SERIES_SPAN_US: i64 = 24 * 3600 * 1_000_000;

fn parse_device_id(raw: &str, state: &AppState) -> Result<String, ApiError> {
    DeviceId::parse(raw, state.pipeline.limits().max_device_id_len)
        .map(|id| id.as_str().to_owned())
        .map_err(|_| {
            ApiError::bad_request(
                "invalid_device_id",
                "device ids are 1 to 64 characters of A-Z a-z 0-9 _ . : -",
            )
        })
}

fn window(params: &Params, state: &AppState) -> Result<Window, ApiError> {
    let since = params.time("since")?;
    let until = params.time("until")?;
    if let (Some(since), Some(until)) = (since, until)
        && since > until
    {
        return Err(ApiError::bad_request(
            "invalid_query",
            "since must not be later than until",
        ));
    }
    Ok(Window {
        since,
        until,
        device_id: params
            .text("device_id")
            .map(|raw| parse_device_id(raw, state))
            .transpose()?,
    })
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct SeriesAnswer {
    /// The window the buckets cover (RFC 3339).
    #[schema(format = DateTime)]
    since: String,
    #[schema(format = DateTime)]
    until: String,
    series: Vec<DeviceSeries>,
}

/// One device's newest reading.
#[derive(Serialize, utoipa::ToSchema)]
pub struct LatestReading {
    reading: ReadingRecord,
    /// Its NEWS2 (the engine's, or the reading's own); null when it carries no NEWS2 vitals.
    news2: Option<News2>,
    spo2_scale: Spo2Scale,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct LatestAnswer {
    latest: Vec<LatestReading>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct ReadingPage {
    count: usize,
    /// Newest first.
    readings: Vec<ReadingRecord>,
    /// The `cursor` of the next page; null on the last one.
    next_cursor: Option<String>,
}

/// `GET /api/stats`: top metrics, counts by type (with last detected), severity and device.
#[utoipa::path(
    get,
    path = "/api/stats",
    tag = "dashboard",
    params(super::query::WindowParams, super::query::DeviceFilter),
    responses(
        (status = 200, description = "Top metrics and the Statistics view for the window", body = DashboardStats),
        (status = "4XX", description = "A client mistake or refusal: `{error, detail}`", body = super::openapi::ErrorBody),
        (status = 503, description = "The store or the audit buffer cannot take it now", body = super::openapi::ErrorBody),
    )
)]
pub async fn stats(
    State(state): State<AppState>,
    RawQuery(raw): RawQuery,
) -> Result<Json<DashboardStats>, ApiError> {
    let params = Params::parse(raw.as_deref(), &["since", "until", "device_id"])?;
    let window = window(&params, &state)?;
    let stats = state
        .store
        .dashboard_stats(window, crate::clock::now())
        .await?;
    Ok(Json(stats))
}

/// `GET /api/series`: mean/min/max per bucket of each named device (comma-separated
/// `device_id`, or every registered device up to 100), `points` buckets over the window,
/// for the vitals named in `metrics` (comma-separated; all when absent).
#[utoipa::path(
    get,
    path = "/api/series",
    tag = "dashboard",
    params(
        super::query::WindowParams,
        ("device_id" = Option<String>, Query, description = "Comma-separated device ids (at most 100); default every registered device up to 100"),
        ("points" = Option<u32>, Query, description = "Buckets over the window, 1 to 2000 (default 300)", minimum = 1, maximum = 2000),
        ("metrics" = Option<String>, Query, description = "Comma-separated vitals (payload keys); default all"),
    ),
    responses(
        (status = 200, description = "Mean, minimum and maximum per bucket of each device", body = SeriesAnswer),
        (status = "4XX", description = "A client mistake or refusal: `{error, detail}`", body = super::openapi::ErrorBody),
        (status = 503, description = "The store or the audit buffer cannot take it now", body = super::openapi::ErrorBody),
    )
)]
pub async fn series(
    State(state): State<AppState>,
    RawQuery(raw): RawQuery,
) -> Result<Json<SeriesAnswer>, ApiError> {
    let params = Params::parse(
        raw.as_deref(),
        &["since", "until", "device_id", "points", "metrics"],
    )?;
    let until = params.time("until")?.unwrap_or_else(crate::clock::now);
    let since = params
        .time("since")?
        .unwrap_or_else(|| until.saturating_add_micros(-DEFAULT_SERIES_SPAN_US));
    if since > until {
        return Err(ApiError::bad_request(
            "invalid_query",
            "since must not be later than until",
        ));
    }
    let points = match params.text("points") {
        None => DEFAULT_POINTS,
        Some(raw) => match raw.parse::<usize>() {
            Ok(n) if (1..=MAX_POINTS).contains(&n) => n,
            _ => {
                return Err(ApiError::bad_request(
                    "invalid_query",
                    format!("points must be a whole number from 1 to {MAX_POINTS}"),
                ));
            }
        },
    };
    let device_ids: Vec<String> = match params.text("device_id") {
        Some(list) => list
            .split(',')
            .map(|raw| parse_device_id(raw.trim(), &state))
            .collect::<Result<_, _>>()?,
        None => state
            .store
            .list_devices()
            .await?
            .into_iter()
            .map(|d| d.device_id)
            .take(MAX_SERIES_DEVICES)
            .collect(),
    };
    let metrics: Vec<&'static str> = match params.text("metrics") {
        None => Vec::new(),
        Some(list) => list
            .split(',')
            .map(|raw| {
                VitalKey::SERIES
                    .into_iter()
                    .map(VitalKey::key)
                    .find(|name| *name == raw.trim())
                    .ok_or_else(|| {
                        let names = VitalKey::SERIES.map(VitalKey::key).join(", ");
                        ApiError::bad_request(
                            "invalid_query",
                            format!("metrics must be among {names}"),
                        )
                    })
            })
            .collect::<Result<_, _>>()?,
    };
    if device_ids.len() > MAX_SERIES_DEVICES {
        return Err(ApiError::bad_request(
            "invalid_query",
            format!("at most {MAX_SERIES_DEVICES} devices per series request"),
        ));
    }
    let series = state
        .store
        .series(SeriesQuery {
            device_ids,
            since,
            until,
            points,
            metrics,
        })
        .await?;
    Ok(Json(SeriesAnswer {
        since: since.to_rfc3339(),
        until: until.to_rfc3339(),
        series,
    }))
}

/// `GET /api/latest`: each device's newest reading in the window, with its NEWS2 score as the
/// alert engine scores it (each parameter's validity, stale ones flagged, the patient's SpO2
/// scale), or, for a device the engine has not seen since the server started, the reading's
/// own score on the patient's scale.
#[utoipa::path(
    get,
    path = "/api/latest",
    tag = "dashboard",
    params(super::query::WindowParams, super::query::DeviceFilter),
    responses(
        (status = 200, description = "Each device's newest reading in the window, with its NEWS2", body = LatestAnswer),
        (status = "4XX", description = "A client mistake or refusal: `{error, detail}`", body = super::openapi::ErrorBody),
        (status = 503, description = "The store or the audit buffer cannot take it now", body = super::openapi::ErrorBody),
    )
)]
pub async fn latest(
    State(state): State<AppState>,
    RawQuery(raw): RawQuery,
) -> Result<Json<LatestAnswer>, ApiError> {
    let params = Params::parse(raw.as_deref(), &["since", "until", "device_id"])?;
    let window = window(&params, &state)?;
    let readings = state.store.latest_readings(window).await?;
    let alerts = state.pipeline.alerts();
    let mut items: Vec<LatestReading> = Vec::with_capacity(readings.len());
    for reading in readings {
        let device = vitalwatch_core::telemetry::DeviceId::parse(&reading.device_id, 1024).ok();
        let scale = device
            .as_ref()
            .map(|id| alerts.patient(id).scale())
            .unwrap_or_default();
        let engine = match &device {
            Some(id) => alerts.news2(id).await.map(|(news2, _)| news2),
            None => None,
        };
        // As for a single reading: heart rate and temperature alone make no NEWS2 worth showing.
        let news2 = engine
            .filter(|news2| {
                use vitalwatch_core::news2::Parameter;
                [
                    Parameter::RespirationRate,
                    Parameter::Spo2,
                    Parameter::SystolicBp,
                    Parameter::Consciousness,
                ]
                .into_iter()
                .any(|p| news2.subscores.get(p).is_some() || news2.stale.contains(&p))
            })
            .or_else(|| reading.news2(scale));
        items.push(LatestReading {
            reading,
            news2,
            spo2_scale: scale,
        });
    }
    Ok(Json(LatestAnswer { latest: items }))
}

/// `GET /api/readings`: every device's readings in the window, newest first, paged.
#[utoipa::path(
    get,
    path = "/api/readings",
    tag = "dashboard",
    params(super::query::WindowParams, super::query::DeviceFilter, super::query::PageParams),
    responses(
        (status = 200, description = "Every device's readings in the window, newest first", body = ReadingPage),
        (status = "4XX", description = "A client mistake or refusal: `{error, detail}`", body = super::openapi::ErrorBody),
        (status = 503, description = "The store or the audit buffer cannot take it now", body = super::openapi::ErrorBody),
    )
)]
pub async fn readings(
    State(state): State<AppState>,
    RawQuery(raw): RawQuery,
) -> Result<Json<ReadingPage>, ApiError> {
    let params = Params::parse(
        raw.as_deref(),
        &["since", "until", "device_id", "limit", "cursor"],
    )?;
    let window = window(&params, &state)?;
    let limit = params.limit()?;
    let readings = state
        .store
        .readings(ReadingQuery {
            device_id: window.device_id,
            since: window.since,
            until: window.until,
            before_id: params.cursor()?,
            limit,
        })
        .await?;
    let cursor = next_cursor(readings.iter().map(|r| r.id), readings.len(), limit);
    Ok(Json(ReadingPage {
        count: readings.len(),
        readings,
        next_cursor: cursor,
    }))
}

/// `GET /api/ranges`: the normal ranges in force (the rules' thresholds), for chart bands.
#[utoipa::path(
    get,
    path = "/api/ranges",
    tag = "dashboard",
    responses(
        (status = 200, description = "The rules' thresholds in force", body = RuleSet),
        (status = "4XX", description = "A client mistake or refusal: `{error, detail}`", body = super::openapi::ErrorBody),
        (status = 503, description = "The store or the audit buffer cannot take it now", body = super::openapi::ErrorBody),
    )
)]
pub async fn ranges(State(state): State<AppState>) -> Json<RuleSet> {
    Json(state.pipeline.rules().clone())
}

const CSV_HEADER: &str = "id,device_id,timestamp_utc,received_at_utc,heart_rate,body_temp,\
signal_strength,battery_level,spo2,respiratory_rate,systolic_bp,diastolic_bp,consciousness,\
on_oxygen,seq,source\n";

fn push_opt<T: std::fmt::Display>(line: &mut String, value: Option<T>) {
    line.push(',');
    if let Some(value) = value {
        let _ = write!(line, "{value}");
    }
}

/// One CSV line. Every text column is restricted by the decoder (device ids, ACVPU letters,
/// RFC 3339 times, source names), so nothing needs quoting and no cell can start a formula.
fn csv_line(out: &mut String, r: &ReadingRecord) {
    let _ = write!(
        out,
        "{},{},{},{}",
        r.id, r.device_id, r.timestamp, r.received_at
    );
    push_opt(out, r.heart_rate);
    push_opt(out, r.body_temp);
    push_opt(out, r.signal_strength);
    push_opt(out, r.battery_level);
    push_opt(out, r.spo2);
    push_opt(out, r.respiratory_rate);
    push_opt(out, r.systolic_bp);
    push_opt(out, r.diastolic_bp);
    push_opt(out, r.consciousness.as_deref());
    push_opt(out, r.on_oxygen);
    push_opt(out, r.seq);
    out.push(',');
    out.push_str(&r.source);
    out.push('\n');
}

/// `GET /api/readings.csv`: the window's readings as CSV, newest first, streamed page by page
/// (memory stays at one page whatever the window), at most [`CSV_MAX_ROWS`] rows.
#[utoipa::path(
    get,
    path = "/api/readings.csv",
    tag = "dashboard",
    params(super::query::WindowParams, super::query::DeviceFilter),
    responses(
        (status = 200, description = "Readings as CSV", content_type = "text/csv", body = String),
        (status = "4XX", description = "Refused", body = super::openapi::ErrorBody),
        (status = 503, description = "The audit buffer is full or the store is unavailable", body = super::openapi::ErrorBody),
    )
)]
pub async fn readings_csv(
    State(state): State<AppState>,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let params = Params::parse(raw.as_deref(), &["since", "until", "device_id"])?;
    let window = window(&params, &state)?;
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(4);
    let store = state.store.clone();
    tokio::spawn(async move {
        if tx
            .send(Ok(Bytes::from_static(CSV_HEADER.as_bytes())))
            .await
            .is_err()
        {
            return;
        }
        let mut before_id = None;
        let mut sent = 0usize;
        while sent < CSV_MAX_ROWS {
            let page = store
                .readings(ReadingQuery {
                    device_id: window.device_id.clone(),
                    since: window.since,
                    until: window.until,
                    before_id,
                    limit: CSV_PAGE.min(CSV_MAX_ROWS - sent),
                })
                .await;
            let page = match page {
                Ok(page) => page,
                Err(err) => {
                    tracing::error!(event = "http.csv_export_failed", message = "CSV export stopped by a store error.", error = %err);
                    let _ = tx.send(Err(std::io::Error::other("store error"))).await;
                    return;
                }
            };
            let mut chunk = String::with_capacity(page.len() * 96);
            for reading in &page {
                csv_line(&mut chunk, reading);
            }
            sent += page.len();
            before_id = page.last().map(|r| r.id);
            if !chunk.is_empty() && tx.send(Ok(Bytes::from(chunk))).await.is_err() {
                return;
            }
            if page.len() < CSV_PAGE {
                return;
            }
        }
    });
    let filename = format!(
        "attachment; filename=\"vitalwatch-readings-{}.csv\"",
        Timestamp::to_rfc3339(crate::clock::now())
            .get(..19)
            .unwrap_or("export")
            .replace(':', "-")
    );
    let mut response = Body::from_stream(ReceiverStream::new(rx)).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/csv; charset=utf-8"),
    );
    if let Ok(value) = HeaderValue::from_str(&filename) {
        headers.insert(header::CONTENT_DISPOSITION, value);
    }
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(
        "x-vitalwatch-row-limit",
        HeaderValue::from(CSV_MAX_ROWS as u64),
    );
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;
    use vitalwatch_core::news2::Spo2Scale;

    fn record() -> ReadingRecord {
        ReadingRecord {
            id: 7,
            device_id: "BED_1".to_owned(),
            timestamp: "2026-01-01T00:00:00.000000Z".to_owned(),
            timestamp_from_device: true,
            received_at: "2026-01-01T00:00:01.000000Z".to_owned(),
            heart_rate: Some(72.5),
            body_temp: None,
            signal_strength: Some(-60.0),
            battery_level: Some(90.0),
            spo2: None,
            respiratory_rate: None,
            systolic_bp: None,
            diastolic_bp: None,
            consciousness: None,
            on_oxygen: None,
            seq: None,
            extra: None,
            ml_score: None,
            source: "http".to_owned(),
        }
    }

    #[test]
    fn csv_line_has_one_cell_per_header_column_and_empty_cells_for_missing_values() {
        let mut line = String::new();
        csv_line(&mut line, &record());
        assert_eq!(
            line,
            "7,BED_1,2026-01-01T00:00:00.000000Z,2026-01-01T00:00:01.000000Z,72.5,,-60,90,,,,,,,,http\n"
        );
        assert_eq!(
            line.split(',').count(),
            CSV_HEADER.split(',').count(),
            "header and rows have the same number of columns"
        );
    }

    #[test]
    fn vitals_csv_header_and_series_follow_the_vitals_table() {
        let header: Vec<&str> = CSV_HEADER.trim_end().split(',').collect();
        assert_eq!(
            header[4..header.len() - 2],
            VitalKey::ALL.map(VitalKey::key)
        );
        assert_eq!(
            crate::store::series::SERIES_METRICS,
            VitalKey::SERIES.map(VitalKey::key)
        );
    }

    #[test]
    fn news2_is_only_scored_when_a_news2_only_vital_is_present() {
        let mut reading = record();
        assert!(reading.news2(Spo2Scale::Scale1).is_none());
        reading.respiratory_rate = Some(26.0);
        reading.spo2 = Some(91.0);
        let score = reading.news2(Spo2Scale::Scale1).expect("scored");
        // RR 26 → 3, SpO2 91 (scale 1) → 3, pulse 72.5 → 0.
        assert_eq!(score.total, 6);
        assert!(score.partial);
    }
}
