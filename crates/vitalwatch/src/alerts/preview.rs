//! What-if for thresholds: loads stored history and replays it (on the blocking pool) under the
//! settings in force and under proposed thresholds. Shared by `POST /api/thresholds/preview`
//! and `vitalwatch thresholds preview`; changes nothing.

use super::ThresholdsError;
use super::replay::{self, Preview, ReplaySettings};
use crate::config::AlertingConfig;
use crate::store::{AlertQuery, ReadingQuery, Store, StoreError};
use serde::Serialize;
use std::sync::Arc;
use vitalwatch_core::rules::{PatientThresholds, RuleSet};
use vitalwatch_core::telemetry::Timestamp;

/// Readings a preview replays at most (the newest within its window).
const PREVIEW_MAX_READINGS: usize = 200_000;
/// A recorded episode counts as kept when a proposed one is open within this of it.
const PREVIEW_GRACE_S: u64 = 60;

#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct PreviewAnswer {
    pub device_id: Option<String>,
    pub proposed: PatientThresholds,
    /// The window asked for, on the readings' own timestamps (absent: unbounded).
    pub since: Option<String>,
    pub until: Option<String>,
    /// True when the window held more readings than a preview replays (the newest were used).
    pub truncated: bool,
    #[serde(flatten)]
    pub preview: Preview,
}

/// Replays `device`'s history (or every device's, for a site-wide proposal), optionally only
/// readings timestamped between `since` and `until`; at most the newest
/// `PREVIEW_MAX_READINGS`. Recorded episodes are those opened while the replayed readings were
/// received.
pub async fn preview_history(
    store: Arc<dyn Store>,
    config: &AlertingConfig,
    site: &RuleSet,
    device: Option<String>,
    thresholds: PatientThresholds,
    since: Option<Timestamp>,
    until: Option<Timestamp>,
) -> Result<PreviewAnswer, ThresholdsError> {
    let proposed_rules = thresholds.apply(site)?;
    let mut records = store
        .readings(ReadingQuery {
            device_id: device.clone(),
            since,
            until,
            before_id: None,
            limit: PREVIEW_MAX_READINGS,
        })
        .await?;
    let truncated = records.len() == PREVIEW_MAX_READINGS;
    records.reverse();
    let received: Vec<Timestamp> = records
        .iter()
        .filter_map(|r| Timestamp::parse_text(&r.received_at))
        .collect();
    let first = received.iter().min().copied();
    let last = received
        .iter()
        .max()
        .copied()
        .unwrap_or_else(crate::clock::now);
    let recorded: Vec<_> = match first {
        None => Vec::new(),
        Some(first) => store
            .alerts(AlertQuery {
                device_id: device.clone(),
                since: Some(first),
                limit: 100_000,
                ..AlertQuery::default()
            })
            .await?
            .into_iter()
            .map(|record| record.alert)
            .filter(|alert| alert.opened_at >= first && alert.opened_at <= last)
            .collect(),
    };
    let mut current = ReplaySettings {
        ticks: false,
        ..ReplaySettings::from_config(config, site.clone())
    };
    for record in store.thresholds(None).await? {
        current.set_patient(&record.device_id, record.thresholds);
    }
    let mut proposed = current.clone();
    match &device {
        Some(device) => {
            proposed.overrides.insert(device.clone(), proposed_rules);
            proposed.patients.insert(device.clone(), thresholds);
        }
        None => {
            proposed.overrides.clear();
            proposed.patients.clear();
            proposed.site = proposed_rules;
        }
    }
    let preview = tokio::task::spawn_blocking(move || {
        let mut readings: Vec<_> = records
            .iter()
            .filter_map(replay::reading_from_record)
            .collect();
        readings.sort_by_key(|r| r.received_at);
        replay::preview(
            &readings,
            &current,
            &proposed,
            &recorded,
            last,
            PREVIEW_GRACE_S,
        )
    })
    .await
    .map_err(|err| StoreError::Other(format!("preview task failed: {err}")))?;
    Ok(PreviewAnswer {
        device_id: device,
        proposed: thresholds,
        since: since.map(Timestamp::to_rfc3339),
        until: until.map(Timestamp::to_rfc3339),
        truncated,
        preview,
    })
}
