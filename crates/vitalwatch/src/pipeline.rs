//! The one path every reading takes, whatever door it came in by:
//! decode → validate → rules → store (group commit) → answer, then publish [`Event`]s.
//!
//! The pipeline knows nothing of MQTT or HTTP: transports hand it bytes and a [`Source`] and
//! get back, only after the commit, what became of each reading. Refusals are counted by
//! reason and summarised into the audit log once a minute (a flood of bad input costs one
//! audit row per reason, not one per message).

use crate::metrics::{Metrics, Refusal};
use crate::store::{
    AnomalyRecord, AuditEntry, ItemOutcome, PreparedReading, ReadingRecord, Source, Store,
    StoreError,
};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::broadcast;
use vitalwatch_core::rules::{self, RuleSet};
use vitalwatch_core::telemetry::{self, Decoded, Limits, Reading, Rejection, Timestamp};

/// What happened to one accepted reading.
#[derive(Clone, Debug)]
pub struct ReadingOutcome {
    pub device_id: String,
    pub timestamp: Timestamp,
    pub outcome: ItemOutcome,
}

/// What happened to an HTTP body.
#[derive(Debug)]
pub enum BodyOutcome {
    One(ReadingOutcome),
    Batch(Vec<Result<ReadingOutcome, Rejection>>),
}

#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error("reading refused: {}", .0.reason.as_str())]
    Refused(Rejection),
    #[error("the pipeline is saturated; retry later")]
    Busy,
    #[error(transparent)]
    Store(StoreError),
}

/// What happened, for live consumers (dashboard stream, webhooks, MQTT alert topics).
/// Published after the commit; a lagging subscriber misses events and never slows ingest.
#[derive(Clone, Debug, serde::Serialize)]
#[serde(tag = "kind", content = "data", rename_all = "snake_case")]
pub enum Event {
    Reading(ReadingRecord),
    Anomaly(AnomalyRecord),
}

/// Events kept for slow subscribers before they start missing some.
const EVENT_BUFFER: usize = 4096;

pub struct Pipeline {
    store: Arc<dyn Store>,
    limits: Limits,
    rules: RuleSet,
    metrics: Arc<Metrics>,
    queue_timeout: Duration,
    events: broadcast::Sender<Event>,
    /// Refusals not yet summarised into the audit log, by (reason, source).
    pending_refusals: Mutex<BTreeMap<(&'static str, &'static str), u64>>,
}

impl Pipeline {
    pub fn new(
        store: Arc<dyn Store>,
        limits: Limits,
        rules: RuleSet,
        metrics: Arc<Metrics>,
        queue_timeout: Duration,
    ) -> Pipeline {
        let (events, _) = broadcast::channel(EVENT_BUFFER);
        Pipeline {
            store,
            limits,
            rules,
            metrics,
            queue_timeout,
            events,
            pending_refusals: Mutex::new(BTreeMap::new()),
        }
    }

    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// The rule set in force (the dashboard draws its ranges as chart bands).
    pub fn rules(&self) -> &RuleSet {
        &self.rules
    }

    /// Live events from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.events.subscribe()
    }

    /// Counts a refusal and remembers it for the next audit summary.
    pub fn refuse(&self, refusal: Refusal, source: Source) {
        self.metrics.refused(refusal);
        *self
            .pending_refusals
            .lock()
            .expect("the refusal map mutex is never poisoned: no code panics holding it")
            .entry((refusal.as_str(), source.as_str()))
            .or_default() += 1;
    }

    fn prepare(&self, reading: Reading, source: Source) -> PreparedReading {
        let mut findings = Vec::new();
        rules::check(&reading, &self.rules, &mut findings);
        PreparedReading {
            reading,
            findings,
            source,
        }
    }

    /// An HTTP body: one reading or a batch. Gives up with [`IngestError::Busy`] when the
    /// queue stays full for the configured time (the caller answers 429).
    pub async fn ingest_body(
        &self,
        bytes: &[u8],
        source: Source,
    ) -> Result<BodyOutcome, IngestError> {
        let decoded = telemetry::decode_body(bytes, now(), &self.limits).map_err(|rejection| {
            self.refuse(Refusal::Decode(rejection.reason), source);
            IngestError::Refused(rejection)
        })?;
        match decoded {
            Decoded::One(Err(rejection)) => {
                self.refuse(Refusal::Decode(rejection.reason), source);
                Err(IngestError::Refused(rejection))
            }
            Decoded::One(Ok(reading)) => {
                let mut outcomes = self
                    .commit(
                        vec![self.prepare(reading, source)],
                        Some(self.queue_timeout),
                    )
                    .await?;
                Ok(BodyOutcome::One(outcomes.remove(0)))
            }
            Decoded::Batch(items) => {
                let mut prepared = Vec::new();
                let mut slots = Vec::with_capacity(items.len());
                for item in items {
                    match item {
                        Ok(reading) => {
                            prepared.push(self.prepare(reading, source));
                            slots.push(Ok(()));
                        }
                        Err(rejection) => {
                            self.refuse(Refusal::Decode(rejection.reason), source);
                            slots.push(Err(rejection));
                        }
                    }
                }
                let mut outcomes = self
                    .commit(prepared, Some(self.queue_timeout))
                    .await?
                    .into_iter();
                let results = slots
                    .into_iter()
                    .map(|slot| {
                        slot.map(|()| {
                            outcomes
                                .next()
                                .expect("the store answers once per reading it was given")
                        })
                    })
                    .collect();
                Ok(BodyOutcome::Batch(results))
            }
        }
    }

    async fn commit(
        &self,
        prepared: Vec<PreparedReading>,
        wait: Option<Duration>,
    ) -> Result<Vec<ReadingOutcome>, IngestError> {
        if prepared.is_empty() {
            return Ok(Vec::new());
        }
        let keys: Vec<(String, Timestamp)> = prepared
            .iter()
            .map(|p| (p.reading.device_id.as_str().to_owned(), p.reading.timestamp))
            .collect();
        let source = prepared[0].source;
        // Only build event payloads when someone listens.
        let published: Option<Vec<Reading>> = (self.events.receiver_count() > 0)
            .then(|| prepared.iter().map(|p| p.reading.clone()).collect());
        let res = match wait {
            Some(wait) => self.store.try_write_readings(prepared, wait).await,
            None => self.store.write_readings(prepared).await,
        };
        let outcomes = match res {
            Ok(outcomes) => outcomes,
            Err(StoreError::Busy) => {
                self.refuse(Refusal::Busy, source);
                return Err(IngestError::Busy);
            }
            Err(err) => return Err(IngestError::Store(err)),
        };
        let mut results = Vec::with_capacity(outcomes.len());
        for (idx, ((device_id, timestamp), outcome)) in keys.into_iter().zip(outcomes).enumerate() {
            match &outcome {
                ItemOutcome::Stored {
                    reading_id,
                    anomalies,
                    ..
                } => {
                    self.metrics.stored(anomalies.len());
                    if let Some(readings) = &published {
                        let record =
                            ReadingRecord::from_reading(*reading_id, &readings[idx], source);
                        let _ = self.events.send(Event::Reading(record));
                        for anomaly in anomalies {
                            let _ = self.events.send(Event::Anomaly(anomaly.clone()));
                        }
                    }
                }
                ItemOutcome::Duplicate { .. } => self.metrics.duplicate(),
                ItemOutcome::Quarantined { anomalies, .. } => {
                    self.metrics.quarantined();
                    if published.is_some() {
                        for anomaly in anomalies {
                            let _ = self.events.send(Event::Anomaly(anomaly.clone()));
                        }
                    }
                }
            }
            results.push(ReadingOutcome {
                device_id,
                timestamp,
                outcome,
            });
        }
        Ok(results)
    }

    /// Writes one audit row per (reason, source) refused since the last call.
    pub async fn flush_refusal_audit(&self) {
        let pending = std::mem::take(
            &mut *self
                .pending_refusals
                .lock()
                .expect("the refusal map mutex is never poisoned"),
        );
        for ((reason, source), count) in pending {
            let entry = AuditEntry {
                actor: format!("system:{source}"),
                action: "input.rejected".to_owned(),
                target: reason.to_owned(),
                details: serde_json::json!({ "count": count, "source": source }),
            };
            if let Err(err) = self.store.audit(entry).await {
                tracing::warn!(message = "Refusal summary not audited.", error = %err);
            }
        }
    }
}

/// The server clock, as a [`Timestamp`].
pub fn now() -> Timestamp {
    Timestamp::from_datetime(chrono::Utc::now())
}
