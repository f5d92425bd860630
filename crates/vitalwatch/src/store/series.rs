//! What the dashboard asks the store: aggregates over a time window, downsampled series, the
//! newest reading per device, and the rows a live stream missed. Types only; each backend
//! answers with its own SQL (aggregates are computed in the database, never by loading rows).

use serde::Serialize;
use vitalwatch_core::telemetry::Timestamp;
use vitalwatch_core::telemetry::VitalKey;

/// The time window and device filter every dashboard view applies.
#[derive(Clone, Debug, Default)]
pub struct Window {
    pub since: Option<Timestamp>,
    pub until: Option<Timestamp>,
    pub device_id: Option<String>,
}

/// The top metrics and the Statistics view, for one [`Window`].
#[derive(Clone, Debug, Default, PartialEq, Serialize, utoipa::ToSchema)]
pub struct DashboardStats {
    /// Registered devices (1 when the filter names one that exists).
    pub total_devices: i64,
    /// Devices whose last reading arrived within the hour before `now` (window-independent).
    pub active_last_hour: i64,
    /// Readings whose timestamp is in the window.
    pub readings: i64,
    /// Anomalies detected in the window.
    pub anomalies: i64,
    /// Readings in the window with at least one anomaly.
    pub anomalous_readings: i64,
    /// `anomalous_readings / readings`, 0 when there are no readings.
    pub anomaly_rate: f64,
    pub by_type: Vec<TypeCount>,
    pub by_severity: Vec<SeverityCount>,
    pub by_device: Vec<DeviceCount>,
}

#[derive(Clone, Debug, PartialEq, Serialize, utoipa::ToSchema)]
pub struct TypeCount {
    #[serde(rename = "type")]
    pub kind: String,
    pub count: i64,
    pub last_detected: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, utoipa::ToSchema)]
pub struct SeverityCount {
    pub severity: String,
    pub count: i64,
}

#[derive(Clone, Debug, PartialEq, Serialize, utoipa::ToSchema)]
pub struct DeviceCount {
    pub device_id: String,
    pub readings: i64,
    pub anomalies: i64,
}

/// A downsampled series request: `points` buckets of equal width over `[since, until]`.
#[derive(Clone, Debug)]
pub struct SeriesQuery {
    pub device_ids: Vec<String>,
    pub since: Timestamp,
    pub until: Timestamp,
    pub points: usize,
    /// Which of [`SERIES_METRICS`] to aggregate, in that order; each costs three aggregates
    /// per row, so the overview asks only for what it draws.
    pub metrics: Vec<&'static str>,
}

/// The vitals a series carries, in the vitals table's order (their payload keys, also the
/// series' names on the wire); derived from core's table, never listed here.
pub const SERIES_METRICS: [&str; VitalKey::SERIES.len()] = {
    let mut names = [""; VitalKey::SERIES.len()];
    let mut idx = 0;
    while idx < names.len() {
        names[idx] = VitalKey::SERIES[idx].key();
        idx += 1;
    }
    names
};

/// One device's series, columnar: bucket `i` covers readings with time in
/// `[t[i], t[i] + bucket_s)` seconds since the epoch. Buckets without readings are absent.
#[derive(Clone, Debug, Default, PartialEq, Serialize, utoipa::ToSchema)]
pub struct DeviceSeries {
    pub device_id: String,
    pub bucket_s: i64,
    pub t: Vec<i64>,
    pub count: Vec<i64>,
    /// One entry per requested metric, in [`SERIES_METRICS`] order.
    pub metrics: Vec<MetricSeries>,
}

/// Mean, minimum and maximum of one vital per bucket (`None`: no value in that bucket), so a
/// chart draws the mean with the min/max envelope and no spike is lost to downsampling.
#[derive(Clone, Debug, Default, PartialEq, Serialize, utoipa::ToSchema)]
pub struct MetricSeries {
    pub name: &'static str,
    pub avg: Vec<Option<f64>>,
    pub min: Vec<Option<f64>>,
    pub max: Vec<Option<f64>>,
}

/// What a [`SeriesQuery`] asks of the database, the same on every backend: the window's start
/// in whole seconds, the bucket width that gives at most `points` buckets, the metrics in
/// [`SERIES_METRICS`] order and their aggregate columns (`, AVG(c), MIN(c), MAX(c)` each,
/// named from the vitals table, never from the request).
pub struct SeriesPlan {
    pub since_s: i64,
    pub bucket_s: i64,
    pub names: Vec<&'static str>,
    pub aggregates: String,
}

impl SeriesPlan {
    pub fn new(query: &SeriesQuery) -> SeriesPlan {
        let since_s = query.since.millis().div_euclid(1000);
        let until_s = query.until.millis().div_euclid(1000);
        let span_s = (until_s - since_s).max(1);
        let points = i64::try_from(query.points.max(1)).unwrap_or(i64::MAX);
        // Ceiling division: `points` buckets cover the whole window.
        let bucket_s = ((span_s + points - 1) / points).max(1);
        let names: Vec<&'static str> = SERIES_METRICS
            .into_iter()
            .filter(|name| query.metrics.is_empty() || query.metrics.contains(name))
            .collect();
        let aggregates = names
            .iter()
            .filter_map(|name| VitalKey::from_key(name))
            .map(|vital| {
                let column = vital.info().column;
                format!(", AVG({column}), MIN({column}), MAX({column})")
            })
            .collect();
        SeriesPlan {
            since_s,
            bucket_s,
            names,
            aggregates,
        }
    }

    /// `device_id`'s series before any bucket: one empty entry per planned metric.
    pub fn empty(&self, device_id: &str) -> DeviceSeries {
        DeviceSeries {
            device_id: device_id.to_owned(),
            bucket_s: self.bucket_s,
            metrics: self
                .names
                .iter()
                .map(|name| MetricSeries {
                    name,
                    ..MetricSeries::default()
                })
                .collect(),
            ..DeviceSeries::default()
        }
    }
}
