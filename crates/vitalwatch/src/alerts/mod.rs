//! The alert service: owns the core [`AlertEngine`] behind a tokio mutex and connects it to the
//! rest of the service.
//!
//! - Before the commit, [`AlertService::findings`] checks a reading (the device's thresholds,
//!   then SENSOR_FAULT); the findings become anomalies exactly as before.
//! - After the commit, the pipeline hands [`AlertService::after_commit`] the stored readings
//!   with their findings (and UNKNOWN_DEVICE for quarantined ones); the engine turns them into
//!   transitions (cheap, in memory).
//! - Every transition is queued, in engine order, to one persister task that writes it through
//!   the store's writer thread; then it is published on the pipeline's event bus
//!   ([`crate::events::Event::Alert`], the seam for the dashboard stream and MQTT alert
//!   topics) and queued for webhooks. Ingest never waits for a webhook.
//! - One timer task sleeps until [`AlertEngine::next_deadline`] (or a wake-up) and calls
//!   `tick`: DEVICE_OFFLINE, escalation, end of audio pause.
//! - At start the engine is restored from the open alerts, each known device's last-seen set to
//!   the restart time (no DEVICE_OFFLINE burst after downtime).
//!
//! Must not: log vital values or payloads, hold the engine lock across a store read.

mod checks;
mod preview;
pub mod replay;
mod scoring;
mod shared;
#[cfg(test)]
mod tests;
mod webhook_outbox;
pub mod webhooks;

pub use checks::{Checks, findings, patient_of, remember_temperature};
pub use preview::{PreviewAnswer, preview_history};

use crate::clock;
use crate::config::AlertingConfig;
use crate::events::{Event, EventBus};
use crate::store::{Store, StoreError, ThresholdsRecord};
use parking_lot::Mutex as SyncMutex;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{Mutex, Notify, mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use vitalwatch_core::alerting::{
    Alert, AlertEngine, AlertError, AlertId, AlertTransition, DeviceSnapshot, EngineSnapshot,
};
use vitalwatch_core::news2::{LatestVitals, News2};
use vitalwatch_core::rules::{Finding, PatientThresholds, RuleSet, ThresholdError};
use vitalwatch_core::telemetry::{DeviceId, Reading, Timestamp};
use webhooks::Webhooks;

/// How often overrides written by the CLI (beside a running server) are picked up.
const THRESHOLDS_RELOAD_EVERY: Duration = Duration::from_secs(2);
/// Transitions waiting for the persister; when full, the engine's caller waits (backpressure).
const PERSIST_QUEUE: usize = 1024;
/// A quarantined device has no registry interval; its offline timer must never fire.
const NO_OFFLINE_MS: u64 = u64::MAX / 4;

/// A reading the store accepted, with what the engine needs.
pub struct Committed {
    pub reading: Reading,
    pub findings: Vec<Finding>,
    /// False for a quarantined reading (unregistered or deactivated device).
    pub stored: bool,
    /// Stored before (the device sent it again): the in-memory engine has seen it; on the
    /// shared path it is evaluated only if no evaluation of it was committed (its first
    /// node died between the reading's commit and its evaluation).
    pub resent: bool,
}

struct PersistJob {
    transitions: Vec<AlertTransition>,
    done: Option<oneshot::Sender<Result<(), StoreError>>>,
}

/// The engine and what it needs per device, under one lock.
struct EngineState {
    engine: AlertEngine,
    vitals: HashMap<DeviceId, LatestVitals>,
}

/// Why a user action on an alert was refused.
#[derive(Debug, thiserror::Error)]
pub enum ActionError {
    #[error("no alert has id {0}")]
    NotFound(u64),
    #[error(transparent)]
    Refused(AlertError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Why a threshold change was refused.
#[derive(Debug, thiserror::Error)]
pub enum ThresholdsError {
    #[error(transparent)]
    Invalid(#[from] ThresholdError),
    #[error("{0}")]
    Field(&'static str),
    #[error(transparent)]
    Store(#[from] StoreError),
}

pub struct AlertService {
    store: Arc<dyn Store>,
    config: AlertingConfig,
    checks: Checks,
    state: Mutex<EngineState>,
    wake: Notify,
    persist: mpsc::Sender<PersistJob>,
    events: EventBus,
    webhooks: Option<Webhooks>,
    /// Devices whose registry interval the engine already has (`None`: quarantined only).
    known: SyncMutex<HashMap<DeviceId, Option<u64>>>,
    /// Set when the store keeps the engine's state for every node (PostgreSQL): the
    /// in-memory engine then stays empty and `shared.rs` does the work.
    shared: Option<Arc<shared::SharedParts>>,
    /// On the shared path: committed readings waiting for their evaluation (one task
    /// evaluates them in commit order, several batches per transaction when they queue up).
    evaluations: Option<mpsc::Sender<shared::Job>>,
}

impl AlertService {
    /// Restores the engine from the store and starts the persister, timer, threshold-reload
    /// and webhook tasks on `tasks`.
    pub async fn start(
        store: Arc<dyn Store>,
        config: AlertingConfig,
        site_rules: RuleSet,
        events: EventBus,
        tasks: &TaskTracker,
        shutdown: CancellationToken,
    ) -> anyhow::Result<Arc<AlertService>> {
        use anyhow::Context;
        let now = clock::now();
        let shared = store
            .shared_alerts()
            .is_some()
            .then(|| shared::parts(&config, &site_rules));
        let (last_id, open_alerts) = if shared.is_some() {
            (0, Vec::new())
        } else {
            store.open_alerts().await.context("loading open alerts")?
        };
        let devices = if shared.is_some() {
            Vec::new()
        } else {
            store.list_devices().await.context("loading devices")?
        };
        let mut known = HashMap::new();
        let mut snapshot_devices = Vec::new();
        for device in devices.iter().filter(|d| d.status == "active") {
            let Ok(device_id) = DeviceId::parse(&device.device_id, 1024) else {
                continue;
            };
            let interval_ms = interval_ms(device.expected_interval_s);
            known.insert(device_id.clone(), Some(interval_ms));
            if device.last_seen.is_some() {
                snapshot_devices.push(DeviceSnapshot {
                    device_id,
                    last_seen: now,
                    expected_interval_ms: Some(interval_ms),
                });
            }
        }
        let n_open = open_alerts.len();
        let engine = AlertEngine::restore(
            config.engine.clone(),
            EngineSnapshot {
                last_id,
                open_alerts,
                devices: snapshot_devices,
            },
        )
        .context("restoring open alerts")?;
        tracing::info!(
            event = "alerts.restored",
            message = "Alert engine restored.",
            open_alerts = n_open
        );
        let checks = Checks::new(site_rules, config.sensor_fault);
        checks.load(&store.thresholds(None).await.context("loading thresholds")?);

        let (persist, persist_rx) = mpsc::channel(PERSIST_QUEUE);
        let (evaluations, evaluations_rx) = match &shared {
            Some(_) => {
                let (tx, rx) = mpsc::channel(shared::EVALUATION_QUEUE);
                (Some(tx), Some(rx))
            }
            None => (None, None),
        };
        let webhooks = Webhooks::start(
            config.webhooks.clone(),
            config.webhook_delivery.clone(),
            Arc::clone(&store),
            tasks,
            shutdown.clone(),
        )?;
        let service = Arc::new(AlertService {
            store: Arc::clone(&store),
            config,
            checks,
            state: Mutex::new(EngineState {
                engine,
                vitals: HashMap::new(),
            }),
            wake: Notify::new(),
            persist,
            events,
            webhooks,
            known: SyncMutex::new(known),
            shared,
            evaluations,
        });
        tasks.spawn(persister(Arc::clone(&store), persist_rx, shutdown.clone()));
        if let Some(rx) = evaluations_rx {
            tasks.spawn(Arc::clone(&service).shared_evaluator(rx, shutdown.clone()));
        }
        if service.shared.is_none() {
            // On the shared path the timers run on the leader (`cluster::leader`).
            tasks.spawn(Arc::clone(&service).timer(shutdown.clone()));
        }
        tasks.spawn(Arc::clone(&service).reload_thresholds(shutdown));
        Ok(service)
    }

    pub fn config(&self) -> &AlertingConfig {
        &self.config
    }

    pub fn site_rules(&self) -> &RuleSet {
        self.checks.site()
    }

    /// Findings for a reading about to be stored (seed rules with the device's overrides, then
    /// SENSOR_FAULT).
    pub fn findings(&self, reading: &Reading) -> Vec<Finding> {
        self.checks.findings(reading)
    }

    /// Feeds committed readings to the engine, then persists and publishes the transitions.
    /// On the shared path it returns once their evaluation is committed (a reading is
    /// acknowledged after that: a node that dies has no acknowledged reading left
    /// unevaluated), and fails when it could not be.
    pub async fn after_commit(&self, mut items: Vec<Committed>) -> Result<(), StoreError> {
        if let Some(evaluations) = &self.evaluations {
            if items.is_empty() {
                return Ok(());
            }
            let (done, evaluated) = oneshot::channel();
            return match evaluations.send(shared::Job::new(items, done)).await {
                Ok(()) => evaluated.await.unwrap_or(Err(StoreError::Closed)),
                // The evaluator has stopped (shutdown): evaluate here, in order after it.
                Err(job) => self.shared_after_commit(job.0.items).await,
            };
        }
        items.retain(|item| !item.resent);
        if items.is_empty() {
            return Ok(());
        }
        // Registry look-ups happen before the engine lock is taken.
        let mut intervals = Vec::new();
        for item in &items {
            let device_id = &item.reading.device_id;
            let cached = self.known.lock().get(device_id).copied();
            let needs_lookup = match cached {
                None => true,
                Some(None) => item.stored,
                Some(Some(_)) => false,
            };
            if !needs_lookup || intervals.iter().any(|(id, _)| id == device_id) {
                continue;
            }
            let interval = if item.stored {
                match self.store.get_device(device_id.as_str().to_owned()).await {
                    Ok(Some(device)) => Some(interval_ms(device.expected_interval_s)),
                    _ => Some(self.config.engine.offline.expected_interval_ms),
                }
            } else {
                None
            };
            intervals.push((device_id.clone(), interval));
        }
        let now = clock::now();
        let mut state = self.state.lock().await;
        let state = &mut *state;
        let wake = !intervals.is_empty();
        for (device_id, interval) in intervals {
            state
                .engine
                .set_expected_interval(&device_id, Some(interval.unwrap_or(NO_OFFLINE_MS)));
            self.known.lock().insert(device_id, interval);
        }
        let mut transitions = Vec::new();
        for item in &items {
            let device_id = &item.reading.device_id;
            let patient = self
                .checks
                .patient_for(device_id.as_str(), item.reading.received_at);
            if state.engine.patient(device_id) != patient {
                state.engine.set_patient(device_id, patient);
            }
            let news2 = if item.stored {
                let faulted = item.findings.iter().fold(
                    vitalwatch_core::telemetry::FieldSet::EMPTY,
                    |mut all, finding| {
                        for field in finding.faulted_fields().iter() {
                            all.insert(field);
                        }
                        all
                    },
                );
                let vitals = state
                    .vitals
                    .entry(item.reading.device_id.clone())
                    .or_default();
                vitals.observe(&item.reading, faulted);
                let interval_s = self.known.lock().get(device_id).copied().flatten();
                Some(vitals.score_at(
                    item.reading.timestamp,
                    &self.news2_validity(interval_s),
                    self.config.news2_smooth_s,
                    patient.scale(),
                ))
            } else {
                None
            };
            transitions.extend(state.engine.observe(
                &item.reading,
                &item.findings,
                news2.as_ref(),
                now,
            ));
        }
        let changed = !transitions.is_empty();
        self.dispatch(transitions, None, now).await;
        drop(items);
        if wake || changed {
            self.wake.notify_one();
        }
        Ok(())
    }

    /// A device's connection was lost abruptly (the broker fired its MQTT will): raises its
    /// DEVICE_OFFLINE now, persisted and published like any transition.
    pub async fn device_lost(&self, device_id: &DeviceId) {
        if self.shared.is_some() {
            return self.shared_device_lost(device_id).await;
        }
        let now = clock::now();
        let state = &mut *self.state.lock().await;
        let transitions = state.engine.device_lost(device_id, now);
        let changed = !transitions.is_empty();
        self.dispatch(transitions, None, now).await;
        if changed {
            self.wake.notify_one();
        }
    }

    /// Queues transitions for the store (in engine order: call with the engine lock held),
    /// publishes them and hands them to the webhooks.
    async fn dispatch(
        &self,
        transitions: Vec<AlertTransition>,
        done: Option<oneshot::Sender<Result<(), StoreError>>>,
        now: Timestamp,
    ) {
        if transitions.is_empty() {
            if let Some(done) = done {
                let _ = done.send(Ok(()));
            }
            return;
        }
        self.announce(&transitions, now);
        let job = PersistJob { transitions, done };
        // The caller holds the engine lock: queue without awaiting when there is room, so
        // the lock waits on the persister only when its queue is full (backpressure).
        let sent = match self.persist.try_send(job) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Full(job)) => self.persist.send(job).await.is_ok(),
            Err(mpsc::error::TrySendError::Closed(_)) => false,
        };
        if !sent {
            tracing::error!(
                event = "alerts.not_persisted",
                message = "Alert transitions not persisted: the store is closing."
            );
        }
    }

    /// Publishes transitions on the event bus and hands them to the webhooks.
    fn announce(&self, transitions: &[AlertTransition], now: Timestamp) {
        for transition in transitions {
            if let Some(webhooks) = &self.webhooks {
                webhooks.notify(transition, now);
            }
            self.events.publish(Event::Alert(transition.clone()));
        }
    }

    /// Runs an engine action, persists its transitions and waits for their commit.
    async fn act(
        &self,
        id: u64,
        action: impl FnOnce(&mut AlertEngine, Timestamp) -> Result<Vec<AlertTransition>, AlertError>,
    ) -> Result<Alert, ActionError> {
        let now = clock::now();
        let (done, committed) = oneshot::channel();
        let res = {
            let mut state = self.state.lock().await;
            match action(&mut state.engine, now) {
                Ok(transitions) => {
                    let alert = transitions.last().map(|t| t.alert.clone());
                    self.dispatch(transitions, Some(done), now).await;
                    Ok(alert)
                }
                Err(err) => Err(err),
            }
        };
        self.wake.notify_one();
        match res {
            Ok(alert) => {
                committed
                    .await
                    .map_err(|_| ActionError::Store(StoreError::Closed))??;
                match alert {
                    Some(alert) => Ok(alert),
                    None => self.stored_alert(id).await,
                }
            }
            Err(AlertError::NotOpen(_)) => {
                // Known but closed is a conflict; unknown is not found.
                self.stored_alert(id).await?;
                Err(ActionError::Refused(AlertError::NotOpen(AlertId(id))))
            }
            Err(err) => Err(ActionError::Refused(err)),
        }
    }

    async fn stored_alert(&self, id: u64) -> Result<Alert, ActionError> {
        match self.store.alert(id).await? {
            Some((record, _)) => Ok(record.alert),
            None => Err(ActionError::NotFound(id)),
        }
    }

    pub async fn acknowledge(
        &self,
        id: u64,
        by: &str,
        note: Option<&str>,
    ) -> Result<Alert, ActionError> {
        if self.shared.is_some() {
            let (by, note) = (by.to_owned(), note.map(str::to_owned));
            return self
                .shared_act(
                    id,
                    Box::new(move |engine, now| {
                        engine.acknowledge(AlertId(id), &by, note.as_deref(), now)
                    }),
                )
                .await;
        }
        self.act(id, |engine, now| {
            engine.acknowledge(AlertId(id), by, note, now)
        })
        .await
    }

    pub async fn silence(&self, id: u64, by: &str, duration_s: u64) -> Result<Alert, ActionError> {
        if self.shared.is_some() {
            let by = by.to_owned();
            return self
                .shared_act(
                    id,
                    Box::new(move |engine, now| engine.silence(AlertId(id), &by, duration_s, now)),
                )
                .await;
        }
        let res = self
            .act(id, |engine, now| {
                engine.silence(AlertId(id), by, duration_s, now)
            })
            .await?;
        // The answer is the alert asked about, not the last one of its channel.
        let state = self.state.lock().await;
        Ok(state.engine.alert(AlertId(id)).cloned().unwrap_or(res))
    }

    pub async fn resolve(&self, id: u64, by: &str) -> Result<Alert, ActionError> {
        if self.shared.is_some() {
            let by = by.to_owned();
            return self
                .shared_act(
                    id,
                    Box::new(move |engine, now| engine.resolve(AlertId(id), &by, now)),
                )
                .await;
        }
        self.act(id, |engine, now| engine.resolve(AlertId(id), by, now))
            .await
    }

    /// Each NEWS2 parameter's validity for a device reporting every `interval_ms`.
    fn news2_validity(&self, interval_ms: Option<u64>) -> vitalwatch_core::news2::Validity {
        news2_validity(&self.config, interval_ms)
    }

    /// The device's current NEWS2, scored as the engine scores it (each parameter's validity,
    /// the patient's SpO2 scale), judged at the newest of its values (stale ones flagged), or
    /// `None` when no reading was seen since the server started.
    pub async fn news2(&self, device_id: &DeviceId) -> Option<(News2, Timestamp)> {
        if self.shared.is_some() {
            let (vitals, interval) = self.shared_news2(device_id).await?;
            return self.score_latest(device_id, &vitals, interval);
        }
        let state = self.state.lock().await;
        let vitals = state.vitals.get(device_id)?;
        let interval = self.known.lock().get(device_id).copied().flatten();
        self.score_latest(device_id, vitals, interval)
    }

    /// NEWS2 of `vitals` at their newest value, as the engine scores it.
    fn score_latest(
        &self,
        device_id: &DeviceId,
        vitals: &LatestVitals,
        interval_ms: Option<u64>,
    ) -> Option<(News2, Timestamp)> {
        let latest = vitals.latest_at()?;
        let scale = self.patient(device_id).scale();
        Some((
            vitals.score_at(
                latest,
                &self.news2_validity(interval_ms),
                self.config.news2_smooth_s,
                scale,
            ),
            latest,
        ))
    }

    /// The patient's thresholds in force for a device now (its SpO2 scale among them).
    pub fn patient(&self, device_id: &DeviceId) -> PatientThresholds {
        self.checks.patient_for(device_id.as_str(), clock::now())
    }

    /// Validates and stores a device's overrides (audited); in force for its next reading.
    pub async fn set_thresholds(
        &self,
        device_id: &DeviceId,
        thresholds: PatientThresholds,
        author: String,
        reason: String,
        effective_from: Option<Timestamp>,
    ) -> Result<ThresholdsRecord, ThresholdsError> {
        let record = validate_thresholds(
            self.checks.site(),
            device_id,
            thresholds,
            author,
            reason,
            effective_from,
        )?;
        let record = self.store.set_thresholds(record).await?;
        self.checks.set(&record);
        Ok(record)
    }

    pub async fn clear_thresholds(
        &self,
        device_id: &DeviceId,
        actor: String,
        reason: Option<String>,
    ) -> Result<bool, StoreError> {
        let removed = self
            .store
            .clear_thresholds(device_id.as_str().to_owned(), actor, reason)
            .await?;
        self.checks.clear(device_id.as_str());
        Ok(removed)
    }

    async fn timer(self: Arc<AlertService>, shutdown: CancellationToken) {
        loop {
            let deadline = self.state.lock().await.engine.next_deadline();
            let wait = match deadline {
                Some(deadline) => Duration::from_micros(
                    u64::try_from(deadline.saturating_sub(clock::now())).unwrap_or(0),
                ),
                None => Duration::from_secs(3600),
            };
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = self.wake.notified() => continue,
                () = tokio::time::sleep(wait) => {}
            }
            let now = clock::now();
            let mut state = self.state.lock().await;
            let transitions = state.engine.tick(now);
            self.dispatch(transitions, None, now).await;
        }
    }

    async fn reload_thresholds(self: Arc<AlertService>, shutdown: CancellationToken) {
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(THRESHOLDS_RELOAD_EVERY) => {}
            }
            match self.store.thresholds(None).await {
                Ok(records) => self.checks.load(&records),
                Err(err) => {
                    tracing::warn!(event = "alerts.thresholds_not_reloaded", message = "Thresholds not reloaded.", error = %err)
                }
            }
        }
    }
}

/// Checks a proposed override against the site's rules and builds the record to store.
pub fn validate_thresholds(
    site: &RuleSet,
    device_id: &DeviceId,
    thresholds: PatientThresholds,
    author: String,
    reason: String,
    effective_from: Option<Timestamp>,
) -> Result<ThresholdsRecord, ThresholdsError> {
    thresholds.apply(site)?;
    if thresholds.is_empty() {
        return Err(ThresholdsError::Field(
            "set at least one of heart_rate_min, heart_rate_max, body_temp_min, body_temp_max, \
             spo2_scale, spo2_min, respiratory_rate_min, respiratory_rate_max, systolic_bp_min, \
             systolic_bp_max",
        ));
    }
    if author.trim().is_empty() || author.chars().count() > 128 {
        return Err(ThresholdsError::Field(
            "author is required (at most 128 characters)",
        ));
    }
    if reason.trim().is_empty() || reason.chars().count() > 1000 {
        return Err(ThresholdsError::Field(
            "reason is required (at most 1000 characters)",
        ));
    }
    Ok(ThresholdsRecord {
        device_id: device_id.as_str().to_owned(),
        thresholds,
        author,
        reason,
        effective_from: effective_from.unwrap_or_else(clock::now).to_rfc3339(),
        updated_at: String::new(),
    })
}

/// Each NEWS2 parameter's validity for a device reporting every `interval_ms`.
fn news2_validity(
    config: &AlertingConfig,
    interval_ms: Option<u64>,
) -> vitalwatch_core::news2::Validity {
    let interval_s = interval_ms.filter(|ms| *ms < NO_OFFLINE_MS).unwrap_or(0) / 1000;
    config.news2_validity.at_least(interval_s)
}

fn interval_ms(seconds: f64) -> u64 {
    if seconds.is_finite() && seconds > 0.0 {
        (seconds * 1000.0).round() as u64
    } else {
        5_000
    }
}

/// Writes transitions in the order they were queued; at shutdown, drains what is queued.
async fn persister(
    store: Arc<dyn Store>,
    mut jobs: mpsc::Receiver<PersistJob>,
    shutdown: CancellationToken,
) {
    loop {
        let job = tokio::select! {
            biased;
            job = jobs.recv() => match job {
                Some(job) => job,
                None => return,
            },
            () = shutdown.cancelled() => break,
        };
        persist(&*store, job).await;
    }
    jobs.close();
    while let Some(job) = jobs.recv().await {
        persist(&*store, job).await;
    }
}

async fn persist(store: &dyn Store, job: PersistJob) {
    let res = store.write_alert_transitions(job.transitions).await;
    if let Err(err) = &res {
        tracing::error!(event = "alerts.not_persisted", message = "Alert transitions not persisted.", error = %err);
    }
    if let Some(done) = job.done {
        let _ = done.send(res);
    }
}
