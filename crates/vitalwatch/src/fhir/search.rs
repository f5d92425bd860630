//! Observation search over the store: readings newest first by reading id (the store's
//! `before_id` cursor), mapped to Observations, filtered by code, cut into pages.
//!
//! A page ends after `count` Observations; its cursor is `(reading id, how many of that
//! reading's matching Observations were taken)`, so a page never splits a reading wrongly and
//! readings that arrive meanwhile (higher ids) never shift a walk already under way: walking
//! `next` links visits every stored reading once. Used by `GET /fhir/Observation` and
//! `vitalwatch fhir export`, so neither ever loads more than a page of readings.

use super::{Part, reading_observations, spo2_scale_for};
use crate::store::{
    AnomalyQuery, AnomalyRecord, ReadingQuery, ReadingRecord, Store, StoreError, ThresholdsRecord,
};
use serde_json::Value;
use std::collections::HashMap;
use vitalwatch_core::telemetry::Timestamp;

/// Readings fetched per store query.
const BATCH: usize = 200;
/// Store queries one page may make before it answers with what it has (a rare code filter
/// must not scan the whole history in one request); the `next` link goes on from there.
const MAX_BATCHES: usize = 20;

/// Where a page starts: before reading `reading_id` (exclusive of the ones taken), skipping
/// the first `skip` matching Observations of that reading itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cursor {
    pub reading_id: i64,
    pub skip: usize,
}

impl Cursor {
    /// `<reading id>.<skip>`, as the `next` link carries it.
    pub fn parse(raw: &str) -> Option<Cursor> {
        let (id, skip) = raw.split_once('.')?;
        Some(Cursor {
            reading_id: id.parse().ok().filter(|id: &i64| *id > 0)?,
            skip: skip.parse().ok()?,
        })
    }
}

impl std::fmt::Display for Cursor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.reading_id, self.skip)
    }
}

/// What to search for.
#[derive(Clone, Debug, Default)]
pub struct ObservationQuery {
    /// The devices whose readings to search (with each one's patient label); `None` = all.
    pub devices: Option<Vec<(String, Option<String>)>>,
    /// Patient labels by device id, for the subjects when `devices` is `None`.
    pub labels: HashMap<String, Option<String>>,
    /// Only these parts (from `code=`); empty = every part.
    pub parts: Vec<Part>,
    /// Device timestamps, inclusive.
    pub since: Option<Timestamp>,
    pub until: Option<Timestamp>,
    pub count: usize,
    pub cursor: Option<Cursor>,
}

/// One page of Observations, and where the next one starts (`None`: this was the last).
pub struct Page {
    pub observations: Vec<Value>,
    pub next: Option<Cursor>,
}

/// The next `count` matching Observations, newest reading first.
pub async fn observations(store: &dyn Store, query: &ObservationQuery) -> Result<Page, StoreError> {
    let mut before = query.cursor.map(|c| c.reading_id.saturating_add(1));
    let mut skip_in = query.cursor;
    let mut out = Vec::new();
    // Each patient's thresholds record (their SpO2 scale), read once per page.
    let thresholds: HashMap<String, ThresholdsRecord> = store
        .thresholds(None)
        .await?
        .into_iter()
        .map(|record| (record.device_id.clone(), record))
        .collect();
    for _ in 0..MAX_BATCHES {
        let (readings, exhausted) = batch(store, query, before).await?;
        let findings = findings_of(store, &readings).await?;
        for reading in &readings {
            let label = query
                .devices
                .as_ref()
                .and_then(|devices| devices.iter().find(|(id, _)| *id == reading.device_id))
                .map(|(_, label)| label.clone())
                .or_else(|| query.labels.get(&reading.device_id).cloned())
                .flatten();
            let found = findings.get(&reading.id).map_or(&[][..], Vec::as_slice);
            let scale = spo2_scale_for(reading, thresholds.get(&reading.device_id));
            let matching: Vec<Value> =
                reading_observations(reading, found, label.as_deref(), scale)
                    .into_iter()
                    .filter(|observation| {
                        query.parts.is_empty()
                            || query.parts.iter().any(|part| is_part(observation, *part))
                    })
                    .collect();
            let skip = match skip_in {
                Some(cursor) if cursor.reading_id == reading.id => cursor.skip,
                _ => 0,
            };
            skip_in = None;
            for (taken, observation) in (skip..).zip(matching.into_iter().skip(skip)) {
                if out.len() == query.count {
                    return Ok(Page {
                        observations: out,
                        next: Some(Cursor {
                            reading_id: reading.id,
                            skip: taken,
                        }),
                    });
                }
                out.push(observation);
            }
        }
        let Some(last) = readings.last() else {
            return Ok(Page {
                observations: out,
                next: None,
            });
        };
        if exhausted {
            return Ok(Page {
                observations: out,
                next: None,
            });
        }
        before = Some(last.id);
        if out.len() == query.count {
            break;
        }
    }
    // A full page, or the batch budget spent: go on below the last reading looked at (a
    // cursor on the id just below it, skipping nothing, reads exactly those).
    Ok(Page {
        observations: out,
        next: before.filter(|id| *id > 1).map(|id| Cursor {
            reading_id: id - 1,
            skip: 0,
        }),
    })
}

fn is_part(observation: &Value, part: Part) -> bool {
    observation["id"]
        .as_str()
        .and_then(super::ObservationId::parse)
        .is_some_and(|id| id.part == part)
}

/// The next readings below `before`, newest first, from every device searched (merged by
/// id); `true` when no more remain.
async fn batch(
    store: &dyn Store,
    query: &ObservationQuery,
    before: Option<i64>,
) -> Result<(Vec<ReadingRecord>, bool), StoreError> {
    let read = |device_id: Option<String>| {
        store.readings(ReadingQuery {
            device_id,
            since: query.since,
            until: query.until,
            before_id: before,
            limit: BATCH,
        })
    };
    match &query.devices {
        None => {
            let readings = read(None).await?;
            let exhausted = readings.len() < BATCH;
            Ok((readings, exhausted))
        }
        Some(devices) => {
            let mut all = Vec::new();
            let mut any_full = false;
            for (device_id, _) in devices {
                let readings = read(Some(device_id.clone())).await?;
                any_full |= readings.len() == BATCH;
                all.extend(readings);
            }
            all.sort_by_key(|reading| std::cmp::Reverse(reading.id));
            let exhausted = !any_full && all.len() <= BATCH;
            all.truncate(BATCH);
            Ok((all, exhausted))
        }
    }
}

/// The stored findings of `readings`, by reading id. Findings are stored with the reading's
/// `received_at` as `detected_at`, so each device's range of those times finds them.
async fn findings_of(
    store: &dyn Store,
    readings: &[ReadingRecord],
) -> Result<HashMap<i64, Vec<AnomalyRecord>>, StoreError> {
    const PAGE: usize = 1000;
    let mut ranges: HashMap<&str, (&str, &str)> = HashMap::new();
    for reading in readings {
        let at = reading.received_at.as_str();
        let range = ranges.entry(&reading.device_id).or_insert((at, at));
        range.0 = range.0.min(at);
        range.1 = range.1.max(at);
    }
    let wanted: std::collections::HashSet<i64> = readings.iter().map(|r| r.id).collect();
    let mut out: HashMap<i64, Vec<AnomalyRecord>> = HashMap::new();
    for (device_id, (first, last)) in ranges {
        let mut before_id = None;
        loop {
            let page = store
                .anomalies(AnomalyQuery {
                    device_id: Some(device_id.to_owned()),
                    since: Timestamp::parse_text(first),
                    until: Timestamp::parse_text(last),
                    before_id,
                    limit: PAGE,
                    ..AnomalyQuery::default()
                })
                .await?;
            let full = page.len() == PAGE;
            before_id = page.last().map(|a| a.id);
            for anomaly in page {
                if let Some(reading_id) = anomaly.reading_id.filter(|id| wanted.contains(id)) {
                    out.entry(reading_id).or_default().push(anomaly);
                }
            }
            if !full {
                break;
            }
        }
    }
    Ok(out)
}

/// One stored reading by id (the store's cursor query, one row).
pub async fn reading(store: &dyn Store, id: i64) -> Result<Option<ReadingRecord>, StoreError> {
    let found = store
        .readings(ReadingQuery {
            before_id: Some(id.saturating_add(1)),
            limit: 1,
            ..ReadingQuery::default()
        })
        .await?;
    Ok(found.into_iter().next().filter(|reading| reading.id == id))
}

/// A reading's stored findings.
pub async fn reading_findings(
    store: &dyn Store,
    reading: &ReadingRecord,
) -> Result<Vec<AnomalyRecord>, StoreError> {
    let mut found = findings_of(store, std::slice::from_ref(reading)).await?;
    Ok(found.remove(&reading.id).unwrap_or_default())
}
