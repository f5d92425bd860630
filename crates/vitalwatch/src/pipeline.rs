//! The one path every reading takes, whatever door it came in by:
//! decode → validate → rules → store (group commit) → publish [`Event`]s → answer.
//!
//! The pipeline knows nothing of MQTT or HTTP: transports hand it bytes and a [`Source`] and
//! get back, only after the commit, what became of each reading. Refusals are counted by
//! reason and summarised into the audit log once a minute (a flood of bad input costs one
//! audit row per reason, not one per message).

use crate::alerts::{AlertService, Committed};
use crate::clock;
use crate::events::{Event, EventBus};
use crate::metrics::prometheus as exposition;
use crate::metrics::{Metrics, Refusal, Transport};
use crate::model::{self, ModelSlot};
use crate::store::{
    AuditEntry, ItemOutcome, PreparedReading, ReadingRecord, Source, Store, StoreError, Written,
};
use parking_lot::Mutex;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
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
    #[error("the reading's device id is not the sender's identity")]
    Unauthorized,
    #[error(transparent)]
    Store(StoreError),
}

/// What a pipeline is built from. The alert service and the event bus exist before it, so
/// every reading takes the same path: checks and engine always included.
pub struct PipelineParts {
    pub store: Arc<dyn Store>,
    pub limits: Limits,
    pub rules: RuleSet,
    pub metrics: Arc<Metrics>,
    /// How long an HTTP body waits for room in the writer's queue before a 429.
    pub queue_timeout: Duration,
    /// The anomaly model every reading is scored with, swapped on reload.
    pub model: Arc<ModelSlot>,
    /// Thresholds, SENSOR_FAULT and the alert engine.
    pub alerts: Arc<AlertService>,
    /// Where committed readings and anomalies are published.
    pub events: EventBus,
}

pub struct Pipeline {
    store: Arc<dyn Store>,
    limits: Limits,
    rules: RuleSet,
    metrics: Arc<Metrics>,
    queue_timeout: Duration,
    events: EventBus,
    /// Refusals not yet summarised into the audit log, by (reason, source).
    pending_refusals: Mutex<BTreeMap<(&'static str, &'static str), u64>>,
    /// The anomaly model every reading is scored with, swapped on reload.
    model: Arc<ModelSlot>,
    /// Thresholds, SENSOR_FAULT and the alert engine.
    alerts: Arc<AlertService>,
}

impl Pipeline {
    pub fn new(parts: PipelineParts) -> Pipeline {
        Pipeline {
            store: parts.store,
            limits: parts.limits,
            rules: parts.rules,
            metrics: parts.metrics,
            queue_timeout: parts.queue_timeout,
            events: parts.events,
            pending_refusals: Mutex::new(BTreeMap::new()),
            model: parts.model,
            alerts: parts.alerts,
        }
    }

    /// The model slot, for `/health` and reloads.
    pub fn model(&self) -> &Arc<ModelSlot> {
        &self.model
    }

    /// The alert service readings are routed through.
    pub fn alerts(&self) -> &Arc<AlertService> {
        &self.alerts
    }

    /// The event bus committed readings are published on.
    pub fn events(&self) -> &EventBus {
        &self.events
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
    pub fn subscribe(&self) -> tokio::sync::broadcast::Receiver<Event> {
        self.events.subscribe()
    }

    /// Counts a refusal and remembers it for the next audit summary.
    pub fn refuse(&self, refusal: Refusal, source: Source) {
        self.metrics.refused(refusal, transport(source));
        *self
            .pending_refusals
            .lock()
            .entry((refusal.as_str(), source.as_str()))
            .or_default() += 1;
    }

    /// Checks the readings of one body against the rules and scores them together with the
    /// model in use (one snapshot for the whole body, one `score_batch` call).
    fn prepare(&self, readings: Vec<Reading>, source: Source) -> Vec<PreparedReading> {
        let scored = self.model.current().map(|model| {
            let started = std::time::Instant::now();
            let scored = model::score_readings(&model, &readings, self.rules.ml_anomaly.severity);
            exposition::observe(
                exposition::MODEL_SCORE_SECONDS,
                started.elapsed().as_secs_f64(),
            );
            scored
        });
        let mut scored = scored.map(Vec::into_iter);
        readings
            .into_iter()
            .map(|reading| {
                let mut findings = self.alerts.findings(&reading);
                let (ml_score, ml_finding) = scored
                    .as_mut()
                    .and_then(Iterator::next)
                    .unwrap_or((None, None));
                findings.extend(ml_finding);
                PreparedReading {
                    reading,
                    findings,
                    source,
                    ml_score,
                }
            })
            .collect()
    }

    /// One reading from an authenticated device (an MQTT message). `identity` is the device id
    /// the sender proved (certificate CN or credentials); a reading for any other device id is
    /// refused as [`IngestError::Unauthorized`]. Waits for room in the writer's queue, so a
    /// saturated store slows the sender down (the acknowledgement waits) instead of dropping.
    pub async fn ingest_device_payload(
        &self,
        bytes: &[u8],
        source: Source,
        identity: Option<&str>,
    ) -> Result<ReadingOutcome, IngestError> {
        let arrived = std::time::Instant::now();
        let reading = self.accept_device_payload(bytes, source, identity)?;
        let mut outcomes = self
            .ingest_arrivals(vec![(reading, arrived)], source)
            .await?;
        Ok(outcomes.remove(0))
    }

    /// Decodes one device's payload and checks it is the sender's own (see
    /// [`Pipeline::ingest_device_payload`]); a refusal is counted.
    pub fn accept_device_payload(
        &self,
        bytes: &[u8],
        source: Source,
        identity: Option<&str>,
    ) -> Result<Reading, IngestError> {
        let reading =
            telemetry::decode(bytes, clock::now(), &self.limits).map_err(|rejection| {
                self.refuse(Refusal::Decode(rejection.reason), source);
                IngestError::Refused(rejection)
            })?;
        if let Some(identity) = identity
            && reading.device_id.as_str() != identity
        {
            self.refuse(Refusal::Unauthorized, source);
            return Err(IngestError::Unauthorized);
        }
        Ok(reading)
    }

    /// Readings that arrived separately (one MQTT publish each, gathered by the broker) with
    /// when each arrived, checked, scored and committed together as one write: one answer per
    /// reading, in order, or one error for all. Waits for room in the writer's queue.
    pub async fn ingest_arrivals(
        &self,
        arrivals: Vec<(Reading, std::time::Instant)>,
        source: Source,
    ) -> Result<Vec<ReadingOutcome>, IngestError> {
        let (readings, arrived): (Vec<Reading>, Vec<std::time::Instant>) =
            arrivals.into_iter().unzip();
        let outcomes = self.commit(self.prepare(readings, source), None).await?;
        let acks = exposition::ack_histogram(transport(source));
        for arrived in arrived {
            acks.record(arrived.elapsed().as_secs_f64());
        }
        Ok(outcomes)
    }

    /// An HTTP body: one reading or a batch. Gives up with [`IngestError::Busy`] when the
    /// queue stays full for the configured time (the caller answers 429). With `identity`
    /// (a device token), a body with a reading for any other device id is refused whole as
    /// [`IngestError::Unauthorized`].
    pub async fn ingest_body(
        &self,
        bytes: &[u8],
        source: Source,
        identity: Option<&str>,
    ) -> Result<BodyOutcome, IngestError> {
        let arrived = std::time::Instant::now();
        let decoded =
            telemetry::decode_body(bytes, clock::now(), &self.limits).map_err(|rejection| {
                self.refuse(Refusal::Decode(rejection.reason), source);
                IngestError::Refused(rejection)
            })?;
        if let Some(identity) = identity {
            let foreign = match &decoded {
                Decoded::One(Ok(reading)) => reading.device_id.as_str() != identity,
                Decoded::One(Err(_)) => false,
                Decoded::Batch(items) => items
                    .iter()
                    .flatten()
                    .any(|reading| reading.device_id.as_str() != identity),
            };
            if foreign {
                self.refuse(Refusal::Unauthorized, source);
                return Err(IngestError::Unauthorized);
            }
        }
        match decoded {
            Decoded::One(Err(rejection)) => {
                self.refuse(Refusal::Decode(rejection.reason), source);
                Err(IngestError::Refused(rejection))
            }
            Decoded::One(Ok(reading)) => {
                let mut outcomes = self
                    .commit(
                        self.prepare(vec![reading], source),
                        Some(self.queue_timeout),
                    )
                    .await?;
                exposition::observe_ack(transport(source), arrived.elapsed().as_secs_f64());
                Ok(BodyOutcome::One(outcomes.remove(0)))
            }
            Decoded::Batch(items) => {
                let mut accepted = Vec::new();
                let mut slots = Vec::with_capacity(items.len());
                for item in items {
                    match item {
                        Ok(reading) => {
                            accepted.push(reading);
                            slots.push(Ok(()));
                        }
                        Err(rejection) => {
                            self.refuse(Refusal::Decode(rejection.reason), source);
                            slots.push(Err(rejection));
                        }
                    }
                }
                let prepared = self.prepare(accepted, source);
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
                exposition::observe_ack(transport(source), arrived.elapsed().as_secs_f64());
                Ok(BodyOutcome::Batch(results))
            }
        }
    }

    /// Commits prepared readings and answers what became of each. The commit and everything
    /// that follows it (counting, alerting, publishing) run on their own task: a caller that
    /// goes away mid-commit (an MQTT connection closed while its publish was in flight) stops
    /// waiting for the answer, but the readings the store commits are still counted once each
    /// and seen by the alert engine (issue 21: `readings.stored` equals the table).
    async fn commit(
        &self,
        prepared: Vec<PreparedReading>,
        wait: Option<Duration>,
    ) -> Result<Vec<ReadingOutcome>, IngestError> {
        if prepared.is_empty() {
            return Ok(Vec::new());
        }
        let source = prepared[0].source;
        let committer = Committer {
            store: Arc::clone(&self.store),
            metrics: Arc::clone(&self.metrics),
            events: self.events.clone(),
            alerts: Arc::clone(&self.alerts),
        };
        match tokio::spawn(committer.run(prepared, wait)).await {
            Ok(Ok(results)) => Ok(results),
            Ok(Err(StoreError::Busy)) => {
                self.refuse(Refusal::Busy, source);
                Err(IngestError::Busy)
            }
            Ok(Err(err)) => Err(IngestError::Store(err)),
            Err(_) => Err(IngestError::Store(StoreError::Closed)),
        }
    }

    /// Writes one audit row per (reason, source) refused since the last call.
    pub async fn flush_refusal_audit(&self) {
        let pending = std::mem::take(&mut *self.pending_refusals.lock());
        for ((reason, source), count) in pending {
            let entry = AuditEntry {
                actor: format!("system:{source}"),
                action: "input.rejected".to_owned(),
                target: reason.to_owned(),
                details: serde_json::json!({ "count": count, "source": source }),
            };
            if let Err(err) = self.store.audit(entry).await {
                tracing::warn!(event = "audit.not_written", message = "Refusal summary not audited.", error = %err);
            }
        }
    }
}

/// What a commit needs, owned, so that it runs to its end on its own task.
struct Committer {
    store: Arc<dyn Store>,
    metrics: Arc<Metrics>,
    events: EventBus,
    alerts: Arc<AlertService>,
}

impl Committer {
    async fn run(
        self,
        prepared: Vec<PreparedReading>,
        wait: Option<Duration>,
    ) -> Result<Vec<ReadingOutcome>, StoreError> {
        let source = prepared[0].source;
        // Only build reading events when someone reads them.
        let publish = self.events.wants_readings();
        let res = match wait {
            Some(wait) => self.store.try_write_readings(prepared, wait).await,
            None => self.store.write_readings(prepared).await,
        };
        let written = res?;
        let mut committed = Vec::with_capacity(written.len());
        let mut results = Vec::with_capacity(written.len());
        for Written { item, outcome } in written {
            let PreparedReading {
                reading,
                findings,
                ml_score,
                ..
            } = item;
            let device_id = reading.device_id.as_str().to_owned();
            let timestamp = reading.timestamp;
            match &outcome {
                ItemOutcome::Stored {
                    reading_id,
                    anomalies,
                    ..
                } => {
                    self.metrics.stored(transport(source), anomalies.len());
                    if publish {
                        let record = ReadingRecord::from_reading(*reading_id, &reading, source)
                            .with_ml_score(ml_score);
                        self.events.publish(Event::Reading(record));
                        for anomaly in anomalies {
                            self.events.publish(Event::Anomaly(anomaly.clone()));
                        }
                    }
                    committed.push(Committed {
                        reading,
                        findings,
                        stored: true,
                        resent: false,
                    });
                }
                ItemOutcome::Duplicate { .. } => {
                    self.metrics.duplicate(transport(source));
                    committed.push(Committed {
                        reading,
                        findings,
                        stored: true,
                        resent: true,
                    });
                }
                ItemOutcome::Quarantined { anomalies, .. } => {
                    self.metrics.quarantined(transport(source));
                    if publish {
                        for anomaly in anomalies {
                            self.events.publish(Event::Anomaly(anomaly.clone()));
                        }
                    }
                    let findings = anomalies
                        .iter()
                        .map(|a| rules::Finding::unknown_device(a.severity, &a.details))
                        .collect();
                    committed.push(Committed {
                        reading,
                        findings,
                        stored: false,
                        resent: false,
                    });
                }
            }
            results.push(ReadingOutcome {
                device_id,
                timestamp,
                outcome,
            });
        }
        // On the shared path: the acknowledgement follows the evaluation's commit.
        self.alerts.after_commit(committed).await?;
        Ok(results)
    }
}

/// The metric label of a reading's source.
fn transport(source: Source) -> Transport {
    match source {
        Source::Http => Transport::Http,
        Source::Mqtt => Transport::Mqtt,
    }
}

#[cfg(test)]
mod tests;
