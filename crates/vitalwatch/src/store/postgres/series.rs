//! The dashboard's queries on PostgreSQL: aggregates computed in SQL over the
//! `(device_id, timestamp)` index (one index range per device and partition), so a window's
//! cost grows with the rows in it and rows are never loaded to be counted.

use super::readings::{ANOMALY_COLUMNS, anomalies_from_rows, readings_from_rows, select_columns};
use super::{pg, to_utc};
use crate::store::series::{
    DashboardStats, DeviceCount, DeviceSeries, SeriesPlan, SeriesQuery, SeverityCount, TypeCount,
    Window,
};
use crate::store::{AnomalyRecord, ReadingRecord, StoreError};
use chrono::{DateTime, Utc};
use deadpool_postgres::GenericClient;
use vitalwatch_core::telemetry::Timestamp;

/// The latest time a window can name (9999-12-31T23:59:59Z).
const END_OF_TIME_S: i64 = 253_402_300_799;

/// A window's bounds; an open end is the epoch or the year 9999.
fn bounds(window: &Window) -> (DateTime<Utc>, DateTime<Utc>) {
    (
        to_utc(window.since.unwrap_or(Timestamp::from_micros(0))),
        to_utc(window.until.unwrap_or(Timestamp::from_secs(END_OF_TIME_S))),
    )
}

pub(super) async fn stats(
    client: &impl GenericClient,
    window: &Window,
    now: Timestamp,
) -> Result<DashboardStats, StoreError> {
    let (since, until) = bounds(window);
    let device = window.device_id.as_deref();
    let hour_ago = now.saturating_add_micros(-3_600_000_000).to_rfc3339();

    let total_devices: i64 = client
        .query_one(
            "SELECT COUNT(*) FROM devices WHERE ($1::text IS NULL OR device_id = $1)",
            &[&device],
        )
        .await
        .map_err(pg)?
        .get(0);
    let active_last_hour: i64 = client
        .query_one(
            "SELECT COUNT(*) FROM devices WHERE last_seen >= $2 AND ($1::text IS NULL OR device_id = $1)",
            &[&device, &hour_ago],
        )
        .await
        .map_err(pg)?
        .get(0);
    let mut by_device: Vec<DeviceCount> = client
        .query(
            "SELECT d.device_id, (SELECT COUNT(*) FROM readings r WHERE r.device_id = d.device_id \
             AND r.timestamp >= $2 AND r.timestamp <= $3) \
             FROM devices d WHERE ($1::text IS NULL OR d.device_id = $1) ORDER BY d.device_id",
            &[&device, &since, &until],
        )
        .await
        .map_err(pg)?
        .iter()
        .map(|row| DeviceCount {
            device_id: row.get(0),
            readings: row.get(1),
            anomalies: 0,
        })
        .collect();
    let anomaly_filter =
        "detected_at >= $2 AND detected_at <= $3 AND ($1::text IS NULL OR device_id = $1)";
    let per_device = client
        .query(
            &format!(
                "SELECT device_id, COUNT(*) FROM anomalies WHERE {anomaly_filter} GROUP BY device_id"
            ),
            &[&device, &since, &until],
        )
        .await
        .map_err(pg)?;
    for row in per_device {
        let device_id: String = row.get(0);
        let count: i64 = row.get(1);
        match by_device.binary_search_by(|d| d.device_id.as_str().cmp(&device_id)) {
            Ok(idx) => by_device[idx].anomalies = count,
            // Quarantined readings' anomalies name devices that are not registered.
            Err(idx) => by_device.insert(
                idx,
                DeviceCount {
                    device_id,
                    readings: 0,
                    anomalies: count,
                },
            ),
        }
    }
    let by_type: Vec<TypeCount> = client
        .query(
            &format!(
                "SELECT type, COUNT(*), MAX(detected_at) FROM anomalies WHERE {anomaly_filter} \
                 GROUP BY type ORDER BY COUNT(*) DESC, type"
            ),
            &[&device, &since, &until],
        )
        .await
        .map_err(pg)?
        .iter()
        .map(|row| TypeCount {
            kind: row.get(0),
            count: row.get(1),
            last_detected: row.get::<_, Option<DateTime<Utc>>>(2).map(super::text_time),
        })
        .collect();
    let by_severity: Vec<SeverityCount> = client
        .query(
            &format!(
                "SELECT severity, COUNT(*) FROM anomalies WHERE {anomaly_filter} \
                 GROUP BY severity ORDER BY severity"
            ),
            &[&device, &since, &until],
        )
        .await
        .map_err(pg)?
        .iter()
        .map(|row| SeverityCount {
            severity: row.get(0),
            count: row.get(1),
        })
        .collect();
    // Per device, one index range of its readings, each checked for an anomaly.
    let anomalous_readings: i64 = client
        .query_one(
            "SELECT COUNT(*) FROM devices d CROSS JOIN LATERAL (\
               SELECT 1 FROM readings r WHERE r.device_id = d.device_id \
               AND r.timestamp >= $2 AND r.timestamp <= $3 \
               AND EXISTS (SELECT 1 FROM anomalies a WHERE a.reading_id = r.id)) flagged \
             WHERE ($1::text IS NULL OR d.device_id = $1)",
            &[&device, &since, &until],
        )
        .await
        .map_err(pg)?
        .get(0);

    let readings: i64 = by_device.iter().map(|d| d.readings).sum();
    let anomalies: i64 = by_type.iter().map(|t| t.count).sum();
    let anomaly_rate = if readings > 0 {
        (anomalous_readings as f64 / readings as f64).min(1.0)
    } else {
        0.0
    };
    Ok(DashboardStats {
        total_devices,
        active_last_hour,
        readings,
        anomalies,
        anomalous_readings,
        anomaly_rate,
        by_type,
        by_severity,
        by_device,
    })
}

pub(super) async fn series(
    client: &impl GenericClient,
    query: &SeriesQuery,
) -> Result<Vec<DeviceSeries>, StoreError> {
    let plan = SeriesPlan::new(query);
    let (since_s, bucket_s, aggregates) = (plan.since_s, plan.bucket_s, &plan.aggregates);
    let stmt = client
        .prepare_cached(&format!(
            "SELECT (floor(extract(epoch FROM timestamp))::int8 - $2) / $3 AS bucket, \
             COUNT(*){aggregates} FROM readings WHERE device_id = $1 AND timestamp >= $4 \
             AND timestamp <= $5 GROUP BY bucket ORDER BY bucket"
        ))
        .await
        .map_err(pg)?;
    let since = to_utc(query.since);
    let until = to_utc(query.until);
    let mut out = Vec::with_capacity(query.device_ids.len());
    for device_id in &query.device_ids {
        let mut series = plan.empty(device_id);
        let rows = client
            .query(&stmt, &[device_id, &since_s, &bucket_s, &since, &until])
            .await
            .map_err(pg)?;
        for row in rows {
            let bucket: i64 = row.get(0);
            series.t.push(since_s + bucket * bucket_s);
            series.count.push(row.get(1));
            for (idx, metric) in series.metrics.iter_mut().enumerate() {
                let col = 2 + idx * 3;
                metric.avg.push(row.get(col));
                metric.min.push(row.get(col + 1));
                metric.max.push(row.get(col + 2));
            }
        }
        if !series.t.is_empty() {
            out.push(series);
        }
    }
    Ok(out)
}

pub(super) async fn latest(
    client: &impl GenericClient,
    window: &Window,
) -> Result<Vec<ReadingRecord>, StoreError> {
    let (since, until) = bounds(window);
    let stmt = client
        .prepare_cached(&format!(
            "SELECT r.* FROM devices d CROSS JOIN LATERAL (\
               SELECT {} FROM readings r WHERE r.device_id = d.device_id \
               AND r.timestamp >= $2 AND r.timestamp <= $3 ORDER BY r.timestamp DESC LIMIT 1) r \
             WHERE ($1::text IS NULL OR d.device_id = $1) ORDER BY d.device_id",
            select_columns()
        ))
        .await
        .map_err(pg)?;
    let rows = client
        .query(&stmt, &[&window.device_id.as_deref(), &since, &until])
        .await
        .map_err(pg)?;
    readings_from_rows(&rows)
}

pub(super) async fn events_after(
    client: &impl GenericClient,
    reading_id: i64,
    anomaly_id: i64,
    limit: usize,
) -> Result<(Vec<ReadingRecord>, Vec<AnomalyRecord>), StoreError> {
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let readings = client
        .query(
            &format!(
                "SELECT {} FROM readings WHERE id > $1 ORDER BY id LIMIT $2",
                select_columns()
            ),
            &[&reading_id, &limit],
        )
        .await
        .map_err(pg)?;
    let anomalies = client
        .query(
            &format!("SELECT {ANOMALY_COLUMNS} FROM anomalies WHERE id > $1 ORDER BY id LIMIT $2"),
            &[&anomaly_id, &limit],
        )
        .await
        .map_err(pg)?;
    Ok((
        readings_from_rows(&readings)?,
        anomalies_from_rows(&anomalies)?,
    ))
}

pub(super) async fn max_event_ids(client: &impl GenericClient) -> Result<(i64, i64), StoreError> {
    let row = client
        .query_one(
            "SELECT (SELECT COALESCE(MAX(id), 0) FROM readings), \
             (SELECT COALESCE(MAX(id), 0) FROM anomalies)",
            &[],
        )
        .await
        .map_err(pg)?;
    Ok((row.get(0), row.get(1)))
}
