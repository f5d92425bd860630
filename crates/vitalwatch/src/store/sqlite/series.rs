//! The dashboard's queries on SQLite: aggregates in SQL over the `(device_id, timestamp)`
//! index, one index range per device, so a window's cost grows with the rows in it and never
//! loads them into memory.

use super::readings::{
    ANOMALY_COLUMNS, anomaly_from_row, hour_of, reading_from_row, select_columns,
};
use crate::store::series::{
    DashboardStats, DeviceCount, DeviceSeries, SeriesPlan, SeriesQuery, SeverityCount, TypeCount,
    Window,
};
use crate::store::{AnomalyRecord, ReadingRecord, StoreError};
use rusqlite::{Connection, params};
use vitalwatch_core::telemetry::Timestamp;

/// Text bounds of a window: stored times are fixed-width RFC 3339, so text order is time order
/// and these sentinels sort before and after every stored time.
fn bounds(window: &Window) -> (String, String) {
    (
        window
            .since
            .map_or_else(|| "0000".to_owned(), Timestamp::to_rfc3339),
        window
            .until
            .map_or_else(|| "9999".to_owned(), Timestamp::to_rfc3339),
    )
}

/// The first and last whole hours (`YYYY-MM-DDTHH`) inside `[since, until]`; first > last
/// when there is none, so the hour sum is empty and the index counts everything.
fn full_hours(since: &str, until: &str) -> (String, String) {
    let hour = |text: &str| hour_of(text).to_owned();
    // An hour is whole when the window starts at or before its first instant…
    let since_hour = hour(since);
    let first = if since.len() >= 13 && since[13..].trim_start_matches([':', '0', '.']) == "Z" {
        since_hour
    } else {
        next_hour(&since_hour)
    };
    // …and ends at or after its last: [HH:00, HH:59:59.999999].
    let until_hour = hour(until);
    let last = if until.get(13..) == Some(":59:59.999999Z") || until == "9999" {
        until_hour
    } else {
        prev_hour(&until_hour)
    };
    (first, last)
}

fn shift_hour(hour: &str, hours: i64) -> String {
    chrono::NaiveDateTime::parse_from_str(&format!("{hour}:00:00"), "%Y-%m-%dT%H:%M:%S")
        .map(|t| {
            (t + chrono::Duration::hours(hours))
                .format("%Y-%m-%dT%H")
                .to_string()
        })
        // The sentinels "0000"/"9999" are not hours: they already bound every stored time.
        .unwrap_or_else(|_| hour.to_owned())
}

fn next_hour(hour: &str) -> String {
    shift_hour(hour, 1)
}

fn prev_hour(hour: &str) -> String {
    shift_hour(hour, -1)
}

pub(super) fn stats(
    conn: &Connection,
    window: &Window,
    now: Timestamp,
) -> Result<DashboardStats, StoreError> {
    let (since, until) = bounds(window);
    let device = window.device_id.as_deref();
    let hour_ago = now.saturating_add_micros(-3_600_000_000).to_rfc3339();

    let total_devices: i64 = conn
        .prepare_cached("SELECT COUNT(*) FROM devices WHERE (?1 IS NULL OR device_id = ?1)")?
        .query_row(params![device], |row| row.get(0))?;
    let active_last_hour: i64 = conn
        .prepare_cached(
            "SELECT COUNT(*) FROM devices WHERE last_seen >= ?2 AND (?1 IS NULL OR device_id = ?1)",
        )?
        .query_row(params![device, hour_ago], |row| row.get(0))?;

    // Whole hours inside the window come from `reading_hours` (V3; counted by the writer, V8); only
    // the window's two partial hours walk the (device_id, timestamp) index.
    let (first_full, last_full) = full_hours(&since, &until);
    // The partial edges as two index ranges: [since, head_end) and [tail_start, until]. A
    // window without a whole hour is counted by the first range alone.
    let (head_end, tail_start) = if first_full <= last_full {
        (first_full.clone(), next_hour(&last_full))
    } else {
        ("9999".to_owned(), "9999".to_owned())
    };
    // One bound per side, or SQLite may pick the looser one for the index range. For stored
    // times (printable ASCII), `t <= until` is `t < until + "\u{1}"`.
    let until_excl = format!("{until}\u{1}");
    let head_end = head_end.min(until_excl);
    let tail_start = tail_start.max(since.clone());
    let mut by_device: Vec<DeviceCount> = conn
        .prepare_cached(
            "SELECT d.device_id, \
               IFNULL((SELECT SUM(h.n) FROM reading_hours h WHERE h.device_id = d.device_id \
                       AND h.hour >= ?4 AND h.hour <= ?5), 0) \
             + (SELECT COUNT(*) FROM readings r WHERE r.device_id = d.device_id \
                AND r.timestamp >= ?2 AND r.timestamp < ?6) \
             + (SELECT COUNT(*) FROM readings r WHERE r.device_id = d.device_id \
                AND r.timestamp >= ?7 AND r.timestamp <= ?3) \
             FROM devices d WHERE (?1 IS NULL OR d.device_id = ?1) ORDER BY d.device_id",
        )?
        .query_map(
            params![
                device, since, until, first_full, last_full, head_end, tail_start
            ],
            |row| {
                Ok(DeviceCount {
                    device_id: row.get(0)?,
                    readings: row.get(1)?,
                    anomalies: 0,
                })
            },
        )?
        .collect::<rusqlite::Result<_>>()?;
    let anomaly_filter =
        "detected_at >= ?2 AND detected_at <= ?3 AND (?1 IS NULL OR device_id = ?1)";
    {
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT device_id, COUNT(*) FROM anomalies WHERE {anomaly_filter} GROUP BY device_id"
        ))?;
        let rows = stmt.query_map(params![device, since, until], |row| {
            Ok((row.get::<_, String>(0)?, row.get::<_, i64>(1)?))
        })?;
        for row in rows {
            let (device_id, count) = row?;
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
    }
    let by_type: Vec<TypeCount> = conn
        .prepare_cached(&format!(
            "SELECT type, COUNT(*), MAX(detected_at) FROM anomalies WHERE {anomaly_filter} \
             GROUP BY type ORDER BY COUNT(*) DESC, type"
        ))?
        .query_map(params![device, since, until], |row| {
            Ok(TypeCount {
                kind: row.get(0)?,
                count: row.get(1)?,
                last_detected: row.get(2)?,
            })
        })?
        .collect::<rusqlite::Result<_>>()?;
    let by_severity: Vec<SeverityCount> = conn
        .prepare_cached(&format!(
            "SELECT severity, COUNT(*) FROM anomalies WHERE {anomaly_filter} \
             GROUP BY severity ORDER BY severity"
        ))?
        .query_map(params![device, since, until], |row| {
            Ok(SeverityCount {
                severity: row.get(0)?,
                count: row.get(1)?,
            })
        })?
        .collect::<rusqlite::Result<_>>()?;
    let anomalous_readings: i64 = conn
        .prepare_cached(
            "SELECT COUNT(DISTINCT a.reading_id) FROM anomalies a JOIN readings r ON r.id = a.reading_id \
             WHERE r.timestamp >= ?2 AND r.timestamp <= ?3 AND (?1 IS NULL OR a.device_id = ?1)",
        )?
        .query_row(params![device, since, until], |row| row.get(0))?;

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

pub(super) fn series(
    conn: &Connection,
    query: &SeriesQuery,
) -> Result<Vec<DeviceSeries>, StoreError> {
    let plan = SeriesPlan::new(query);
    let (since_s, bucket_s, aggregates) = (plan.since_s, plan.bucket_s, &plan.aggregates);
    let sql = format!(
        "SELECT CAST((unixepoch(timestamp) - ?2) / ?3 AS INTEGER) AS bucket, COUNT(*){aggregates} \
         FROM readings WHERE device_id = ?1 AND timestamp >= ?4 AND timestamp <= ?5 \
         GROUP BY bucket ORDER BY bucket"
    );
    let mut stmt = conn.prepare_cached(&sql)?;
    let since_text = query.since.to_rfc3339();
    let until_text = query.until.to_rfc3339();
    let mut out = Vec::with_capacity(query.device_ids.len());
    for device_id in &query.device_ids {
        let mut series = plan.empty(device_id);
        let mut rows = stmt.query(params![
            device_id, since_s, bucket_s, since_text, until_text
        ])?;
        while let Some(row) = rows.next()? {
            let bucket: i64 = row.get(0)?;
            series.t.push(since_s + bucket * bucket_s);
            series.count.push(row.get(1)?);
            for (idx, metric) in series.metrics.iter_mut().enumerate() {
                let col = 2 + idx * 3;
                metric.avg.push(row.get(col)?);
                metric.min.push(row.get(col + 1)?);
                metric.max.push(row.get(col + 2)?);
            }
        }
        if !series.t.is_empty() {
            out.push(series);
        }
    }
    Ok(out)
}

pub(super) fn latest(conn: &Connection, window: &Window) -> Result<Vec<ReadingRecord>, StoreError> {
    let (since, until) = bounds(window);
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {} FROM readings WHERE id IN (\
           SELECT (SELECT r.id FROM readings r WHERE r.device_id = d.device_id \
                   AND r.timestamp >= ?2 AND r.timestamp <= ?3 ORDER BY r.timestamp DESC LIMIT 1) \
           FROM devices d WHERE (?1 IS NULL OR d.device_id = ?1)) \
         ORDER BY device_id",
        select_columns()
    ))?;
    let rows = stmt.query_map(
        params![window.device_id.as_deref(), since, until],
        reading_from_row,
    )?;
    Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
}

pub(super) fn events_after(
    conn: &Connection,
    reading_id: i64,
    anomaly_id: i64,
    limit: usize,
) -> Result<(Vec<ReadingRecord>, Vec<AnomalyRecord>), StoreError> {
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let readings = conn
        .prepare_cached(&format!(
            "SELECT {} FROM readings WHERE id > ?1 ORDER BY id LIMIT ?2",
            select_columns()
        ))?
        .query_map(params![reading_id, limit], reading_from_row)?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    let anomalies = conn
        .prepare_cached(&format!(
            "SELECT {ANOMALY_COLUMNS} FROM anomalies WHERE id > ?1 ORDER BY id LIMIT ?2"
        ))?
        .query_map(params![anomaly_id, limit], anomaly_from_row)?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok((readings, anomalies))
}

pub(super) fn max_event_ids(conn: &Connection) -> Result<(i64, i64), StoreError> {
    Ok(conn
        .prepare_cached(
            "SELECT (SELECT IFNULL(MAX(id), 0) FROM readings), (SELECT IFNULL(MAX(id), 0) FROM anomalies)",
        )?
        .query_row([], |row| Ok((row.get(0)?, row.get(1)?)))?)
}

#[cfg(test)]
mod tests {
    use super::full_hours;

    #[test]
    fn whole_hours_inside_a_window() {
        let check = |since: &str, until: &str, first: &str, last: &str| {
            assert_eq!(
                full_hours(since, until),
                (first.to_owned(), last.to_owned()),
                "{since} … {until}"
            );
        };
        check(
            "2026-11-24T11:53:45.123456Z",
            "2026-11-25T11:53:45.000000Z",
            "2026-11-24T12",
            "2026-11-25T10",
        );
        check(
            "2026-11-24T11:00:00.000000Z",
            "2026-11-24T12:59:59.999999Z",
            "2026-11-24T11",
            "2026-11-24T12",
        );
        // Across midnight and a month end.
        check(
            "2026-11-30T23:10:00.000000Z",
            "2026-12-01T01:00:00.000000Z",
            "2026-12-01T00",
            "2026-12-01T00",
        );
        // Within one hour: none (first > last).
        check(
            "2026-11-24T11:10:00.000000Z",
            "2026-11-24T11:50:00.000000Z",
            "2026-11-24T12",
            "2026-11-24T10",
        );
        // Open ends: the sentinels.
        check("0000", "9999", "0000", "9999");
    }
}
