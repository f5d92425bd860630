//! The alert service's shared path, on a store that keeps the engine's state per device for
//! every node (PostgreSQL, [`SharedAlertState`]).
//!
//! Every change to a device's story is one transaction: its row locked (rows in device-id
//! order), its registry interval and threshold overrides read under the lock, the pure core
//! engine built from the rows it touches and run, its transitions and the new rows written,
//! commit; only then are the transitions published on the local event bus and handed to the
//! webhooks. Readings are queued for evaluation right after their own commit and evaluated in
//! the order this node committed them (one evaluation at a time per node, as the in-memory
//! engine's lock does; batches that queued up meanwhile share one transaction); a reading is
//! acknowledged once its evaluation is committed. A node that dies between a reading's commit
//! and its evaluation has not acknowledged it: the device sends it again, it arrives (on any
//! node) as a duplicate and is evaluated then, once — the device's row keeps the times of its
//! latest evaluated readings ([`first_evaluation`]), so a reading is never evaluated twice;
//! readings of one device committed by two nodes are evaluated in the order their
//! evaluations take the device's row, which is the order one node would have seen them in
//! had they arrived there. The engine itself never links two devices, so an engine holding
//! only the locked devices decides exactly what one engine holding all of them would
//! (`vitalwatch-core`'s `alerting::tests::shared` checks this over generated scenarios).
//!
//! Timers (DEVICE_OFFLINE, escalation, end of audio pause) run on the leader only
//! ([`AlertService::shared_tick`], called by `cluster::leader`), over the devices whose
//! stored deadline has passed, each under its row lock: a timer fires once even if two nodes
//! briefly both believe they lead.

use super::{
    ActionError, AlertService, Committed, NO_OFFLINE_MS, interval_ms, news2_validity, patient_of,
};
use crate::clock;
use crate::config::AlertingConfig;
use crate::store::alert_state::{DeviceRow, LockedDevice, Outcome, SharedAlertState};
use std::time::Duration;
use vitalwatch_core::alerting::{
    Alert, AlertEngine, AlertError, AlertId, AlertTransition, DeviceSnapshot, DeviceState,
    EngineSnapshot, PROVISIONAL_ID_BASE,
};
use vitalwatch_core::news2::LatestVitals;
use vitalwatch_core::rules::RuleSet;
use vitalwatch_core::telemetry::{DeviceId, FieldSet, Timestamp};

/// Batches of committed readings waiting for their evaluation; when full, ingest waits.
/// Room for more than the readings in flight under load (MQTT commits one reading a batch),
/// so an evaluation takes many readings per device and its per-device row writes are shared
/// by them: evaluation grows with the load instead of pacing ingest.
pub(super) const EVALUATION_QUEUE: usize = 2048;
/// Readings one evaluation takes from the queue at most (one transaction).
const MAX_EVALUATION: usize = 4096;
/// Devices one timer pass evaluates per transaction.
const TICK_BATCH: usize = 64;
/// Attempts at a timer pass or an action the database could not take (it is away or failing
/// over); the evaluation of readings retries until the database is back, as the writer does.
const ATTEMPTS: u32 = 3;
const RETRY_AFTER: Duration = Duration::from_millis(200);
/// The longest wait between two attempts at evaluating readings.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(2);
/// How many of a device's latest evaluated readings its row remembers: more than a device
/// can have unacknowledged (`[mqtt] max_inflight`, 32 by default) when its node dies.
pub(crate) const REMEMBERED_READINGS: usize = 64;

/// Readings committed together, and who waits for their evaluation.
pub(crate) struct Job {
    pub(super) items: Vec<Committed>,
    done: Vec<tokio::sync::oneshot::Sender<Result<(), crate::store::StoreError>>>,
}

impl Job {
    pub(super) fn new(
        items: Vec<Committed>,
        done: tokio::sync::oneshot::Sender<Result<(), crate::store::StoreError>>,
    ) -> Job {
        Job {
            items,
            done: vec![done],
        }
    }
}

/// Whether a reading at `at` (µs) is to be evaluated, given the device's latest evaluated
/// readings (`evaluated`, oldest first, updated when it is): not when it already was, nor when
/// it was sent again (`resent`) and is older than everything remembered (then it was
/// evaluated long ago). A first arrival older than the rest (out of order) is evaluated.
pub(crate) fn first_evaluation(evaluated: &mut Vec<i64>, at: i64, resent: bool) -> bool {
    if evaluated.contains(&at) {
        return false;
    }
    let forgotten = evaluated.len() >= REMEMBERED_READINGS
        && evaluated.iter().min().is_some_and(|oldest| at < *oldest);
    if resent && forgotten {
        return false;
    }
    evaluated.push(at);
    if evaluated.len() > REMEMBERED_READINGS {
        evaluated.remove(0);
    }
    true
}

/// What an evaluation needs besides the rows: the node's alerting settings and site rules
/// (every node of a cluster runs the same configuration).
pub(super) struct SharedParts {
    pub(super) config: AlertingConfig,
    pub(super) site: RuleSet,
    /// One evaluation at a time on this node, in the order they were asked for.
    pub(super) order: tokio::sync::Mutex<()>,
}

/// The locked devices in an engine of their own.
struct Batch {
    engine: AlertEngine,
    devices: Vec<(DeviceId, LockedDevice)>,
    now: Timestamp,
}

impl Batch {
    fn open(config: &AlertingConfig, locked: Vec<LockedDevice>, now: Timestamp) -> Batch {
        // A node whose clock is a little behind never moves a device's time back.
        let now = locked
            .iter()
            .filter_map(|d| d.evaluated_at)
            .fold(now, Timestamp::max);
        let mut engine = AlertEngine::new(config.engine.clone(), PROVISIONAL_ID_BASE);
        let mut devices = Vec::with_capacity(locked.len());
        for mut device in locked {
            let Ok(device_id) = DeviceId::parse(&device.device_id, 1024) else {
                continue;
            };
            let state = match device.state.take() {
                Some(state) => state,
                None => fresh_state(config, &device_id, &device, now),
            };
            engine.put_device(device_id.clone(), state);
            let interval = device.expected_interval_s.map(interval_ms);
            engine.set_expected_interval(&device_id, Some(interval.unwrap_or(NO_OFFLINE_MS)));
            devices.push((device_id, device));
        }
        Batch {
            engine,
            devices,
            now,
        }
    }

    fn device(&mut self, device_id: &DeviceId) -> Option<&mut LockedDevice> {
        self.devices
            .iter_mut()
            .find(|(id, _)| id == device_id)
            .map(|(_, device)| device)
    }

    fn close(mut self, config: &AlertingConfig, transitions: Vec<AlertTransition>) -> Outcome {
        let raised = self.engine.provisional_raised();
        let rows = self
            .devices
            .into_iter()
            .map(|(device_id, device)| {
                let state = self.engine.take_device(&device_id);
                DeviceRow {
                    next_deadline: state.next_deadline(&config.engine),
                    device_id: device.device_id,
                    state,
                    vitals: device.vitals,
                    evaluated_at: self.now,
                    evaluated: device.evaluated,
                }
            })
            .collect();
        Outcome {
            transitions,
            rows,
            raised,
        }
    }
}

/// The state of a device without a row: rebuilt from its open alerts as a restart rebuilds
/// the in-memory engine (its offline timer starting now).
fn fresh_state(
    config: &AlertingConfig,
    device_id: &DeviceId,
    device: &LockedDevice,
    now: Timestamp,
) -> DeviceState {
    let snapshot = EngineSnapshot {
        last_id: 0,
        open_alerts: device.open_alerts.clone(),
        devices: device
            .expected_interval_s
            .map(|s| DeviceSnapshot {
                device_id: device_id.clone(),
                last_seen: now,
                expected_interval_ms: Some(interval_ms(s)),
            })
            .into_iter()
            .collect(),
    };
    match AlertEngine::restore(config.engine.clone(), snapshot) {
        Ok(mut engine) => engine.take_device(device_id),
        Err(_) => DeviceState::default(),
    }
}

/// The pure part of evaluating committed readings.
fn evaluate_readings(
    parts: &SharedParts,
    locked: Vec<LockedDevice>,
    items: &[Committed],
    now: Timestamp,
) -> Outcome {
    let config = &parts.config;
    let mut batch = Batch::open(config, locked, now);
    let now = batch.now;
    let mut transitions = Vec::new();
    for item in items {
        let device_id = &item.reading.device_id;
        let Some(device) = batch.device(device_id) else {
            continue;
        };
        if !first_evaluation(
            &mut device.evaluated,
            item.reading.timestamp.micros(),
            item.resent,
        ) {
            continue;
        }
        let patient = patient_of(
            &parts.site,
            device.thresholds.as_ref(),
            item.reading.received_at,
        );
        let news2 = item.stored.then(|| {
            let faulted = item
                .findings
                .iter()
                .fold(FieldSet::EMPTY, |mut all, finding| {
                    for field in finding.faulted_fields().iter() {
                        all.insert(field);
                    }
                    all
                });
            device.vitals.observe(&item.reading, faulted);
            // The stored window keeps only what the smoothing uses (scores unchanged).
            device.vitals.forget_unsmoothed(config.news2_smooth_s);
            let interval = device.expected_interval_s.map(interval_ms);
            device.vitals.score_at(
                item.reading.timestamp,
                &news2_validity(config, interval),
                config.news2_smooth_s,
                patient.scale(),
            )
        });
        if batch.engine.patient(device_id) != patient {
            batch.engine.set_patient(device_id, patient);
        }
        transitions.extend(batch.engine.observe(
            &item.reading,
            &item.findings,
            news2.as_ref(),
            now,
        ));
    }
    batch.close(config, transitions)
}

/// An engine action on an alert (acknowledge, silence, resolve).
type Action =
    Box<dyn FnOnce(&mut AlertEngine, Timestamp) -> Result<Vec<AlertTransition>, AlertError> + Send>;

impl AlertService {
    fn shared_store(&self) -> Option<&dyn SharedAlertState> {
        self.shared.as_ref()?;
        self.store.shared_alerts()
    }

    /// Whether this service keeps its alert state in the store (every node shares it).
    pub fn is_shared(&self) -> bool {
        self.shared_store().is_some()
    }

    /// Runs one evaluation, retrying while the database is away: `attempts` times at most, or
    /// (`None`) until it is back.
    async fn shared_run(
        &self,
        attempts: Option<u32>,
        devices: Vec<String>,
        run: impl Fn(Vec<LockedDevice>) -> Result<Outcome, AlertError> + Send + Sync + Clone + 'static,
    ) -> Result<Result<Vec<AlertTransition>, AlertError>, crate::store::StoreError> {
        let store = self
            .shared_store()
            .ok_or(crate::store::StoreError::Closed)?;
        let _order = match &self.shared {
            Some(parts) => Some(parts.order.lock().await),
            None => None,
        };
        let mut attempt = 0;
        let mut pause = RETRY_AFTER;
        loop {
            attempt += 1;
            let res = store.evaluate(devices.clone(), Box::new(run.clone())).await;
            match res {
                Err(err)
                    if attempts.is_none_or(|n| attempt < n)
                        && crate::store::postgres::is_transient(&err) =>
                {
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(MAX_RETRY_AFTER);
                }
                other => return other,
            }
        }
    }

    /// Evaluates committed readings in the order they were queued, merging what queued up
    /// meanwhile into one transaction, and answers their waiters; at shutdown, evaluates what
    /// is queued.
    pub(super) async fn shared_evaluator(
        self: std::sync::Arc<Self>,
        mut queue: tokio::sync::mpsc::Receiver<Job>,
        shutdown: tokio_util::sync::CancellationToken,
    ) {
        loop {
            let first = tokio::select! {
                biased;
                job = queue.recv() => match job {
                    Some(job) => job,
                    None => return,
                },
                () = shutdown.cancelled() => break,
            };
            self.shared_evaluate_job(take_more(first, &mut queue)).await;
        }
        queue.close();
        while let Some(first) = queue.recv().await {
            self.shared_evaluate_job(take_more(first, &mut queue)).await;
        }
    }

    async fn shared_evaluate_job(&self, job: Job) {
        let res = self.shared_after_commit(job.items).await;
        for done in job.done {
            let answer = match &res {
                Ok(()) => Ok(()),
                Err(err) => Err(crate::store::StoreError::backend(format!(
                    "alert evaluation not committed: {err}"
                ))),
            };
            let _ = done.send(answer);
        }
    }

    /// [`AlertService::after_commit`] on the shared path: evaluates and commits, retrying
    /// until the database takes it; fails only when the store is closed or refuses for good.
    pub(super) async fn shared_after_commit(
        &self,
        items: Vec<Committed>,
    ) -> Result<(), crate::store::StoreError> {
        let Some(parts) = self.shared.clone() else {
            return Err(crate::store::StoreError::Closed);
        };
        let now = clock::now();
        let devices = items
            .iter()
            .map(|item| item.reading.device_id.as_str().to_owned())
            .collect();
        let items = std::sync::Arc::new(items);
        let run = move |locked| Ok(evaluate_readings(&parts, locked, &items, now));
        let res = self.shared_run(None, devices, run).await;
        let failed = match &res {
            Err(err) => Some(crate::store::StoreError::backend(err.to_string())),
            Ok(_) => None,
        };
        self.shared_finish(res, now);
        failed.map_or(Ok(()), Err)
    }

    /// [`AlertService::device_lost`] on the shared path.
    pub(super) async fn shared_device_lost(&self, device_id: &DeviceId) {
        let Some(parts) = self.shared.clone() else {
            return;
        };
        let now = clock::now();
        let id = device_id.clone();
        let run = move |locked| {
            let mut batch = Batch::open(&parts.config, locked, now);
            let transitions = batch.engine.device_lost(&id, batch.now);
            Ok(batch.close(&parts.config, transitions))
        };
        let devices = vec![device_id.as_str().to_owned()];
        self.shared_finish(self.shared_run(Some(ATTEMPTS), devices, run).await, now);
    }

    /// Publishes what an evaluation committed, or says why nothing was.
    fn shared_finish(
        &self,
        res: Result<Result<Vec<AlertTransition>, AlertError>, crate::store::StoreError>,
        now: Timestamp,
    ) {
        match res {
            Ok(Ok(transitions)) => self.announce(&transitions, now),
            Ok(Err(err)) => {
                tracing::warn!(event = "alerts.shared_refused", message = "Shared alert evaluation refused.", error = %err)
            }
            Err(err) => {
                tracing::error!(event = "alerts.shared_failed", message = "Shared alert state not updated.", error = %err)
            }
        }
    }

    /// A user action on the shared path: the alert's device row locked as for a reading.
    pub(super) async fn shared_act(&self, id: u64, action: Action) -> Result<Alert, ActionError> {
        let Some(parts) = self.shared.clone() else {
            return Err(ActionError::Store(crate::store::StoreError::Closed));
        };
        let stored = self.stored_alert(id).await?;
        let now = clock::now();
        let action = std::sync::Arc::new(parking_lot::Mutex::new(Some(action)));
        let run = move |locked| {
            let mut batch = Batch::open(&parts.config, locked, now);
            let action = action
                .lock()
                .take()
                .ok_or(AlertError::NotOpen(AlertId(id)))?;
            let transitions = action(&mut batch.engine, batch.now)?;
            Ok(batch.close(&parts.config, transitions))
        };
        let devices = vec![stored.device_id.as_str().to_owned()];
        match self.shared_run(Some(ATTEMPTS), devices, run).await? {
            Ok(transitions) => {
                self.announce(&transitions, now);
                match transitions.iter().rev().find(|t| t.alert.id.0 == id) {
                    Some(t) => Ok(t.alert.clone()),
                    None => self.stored_alert(id).await,
                }
            }
            Err(AlertError::NotOpen(_)) => {
                Err(ActionError::Refused(AlertError::NotOpen(AlertId(id))))
            }
            Err(err) => Err(ActionError::Refused(err)),
        }
    }

    /// The leader's timer pass: every device whose deadline has passed, a batch per
    /// transaction; also gives a row to devices seen before the shared state existed (their
    /// offline timer starts now). Returns how many transitions it committed.
    pub async fn shared_tick(&self) -> usize {
        let (Some(store), Some(parts)) = (self.shared_store(), self.shared.clone()) else {
            return 0;
        };
        let mut committed = 0;
        match store.devices_without_state(TICK_BATCH).await {
            Ok(devices) if !devices.is_empty() => {
                let parts = parts.clone();
                let now = clock::now();
                let run = move |locked| {
                    Ok(Batch::open(&parts.config, locked, now).close(&parts.config, Vec::new()))
                };
                self.shared_finish(self.shared_run(Some(ATTEMPTS), devices, run).await, now);
            }
            Ok(_) => {}
            Err(err) => {
                tracing::warn!(event = "alerts.shared_failed", message = "Shared alert state not updated.", error = %err)
            }
        }
        loop {
            let now = clock::now();
            let due = match store.due_devices(now, TICK_BATCH).await {
                Ok(due) => due,
                Err(err) => {
                    tracing::warn!(event = "alerts.shared_failed", message = "Shared alert state not updated.", error = %err);
                    return committed;
                }
            };
            let full = due.len() == TICK_BATCH;
            if due.is_empty() {
                return committed;
            }
            let parts = parts.clone();
            let run = move |locked| {
                let mut batch = Batch::open(&parts.config, locked, now);
                let transitions = batch.engine.tick(batch.now);
                Ok(batch.close(&parts.config, transitions))
            };
            let res = self.shared_run(Some(ATTEMPTS), due, run).await;
            if let Ok(Ok(transitions)) = &res {
                committed += transitions.len();
            }
            let failed = !matches!(res, Ok(Ok(_)));
            self.shared_finish(res, now);
            if !full || failed {
                return committed;
            }
        }
    }

    /// The device's NEWS2 from its stored window.
    pub(super) async fn shared_news2(
        &self,
        device_id: &DeviceId,
    ) -> Option<(LatestVitals, Option<u64>)> {
        let store = self.shared_store()?;
        let vitals = store
            .vitals(device_id.as_str().to_owned())
            .await
            .ok()
            .flatten()?;
        let interval = match self.store.get_device(device_id.as_str().to_owned()).await {
            Ok(Some(device)) if device.status == "active" => {
                Some(interval_ms(device.expected_interval_s))
            }
            _ => None,
        };
        Some((vitals, interval))
    }
}

/// `first` and whatever else is already queued, up to [`MAX_EVALUATION`] readings.
fn take_more(mut job: Job, queue: &mut tokio::sync::mpsc::Receiver<Job>) -> Job {
    while job.items.len() < MAX_EVALUATION {
        match queue.try_recv() {
            Ok(more) => {
                job.items.extend(more.items);
                job.done.extend(more.done);
            }
            Err(_) => break,
        }
    }
    job
}

/// The site rules and settings a shared evaluation needs (unused fields stay cheap to hold).
pub(super) fn parts(config: &AlertingConfig, site: &RuleSet) -> std::sync::Arc<SharedParts> {
    std::sync::Arc::new(SharedParts {
        config: config.clone(),
        site: site.clone(),
        order: tokio::sync::Mutex::new(()),
    })
}

#[cfg(test)]
mod tests {
    use super::{REMEMBERED_READINGS, first_evaluation};

    #[test]
    fn a_reading_is_evaluated_once_even_when_sent_again() {
        let mut evaluated = Vec::new();
        assert!(first_evaluation(&mut evaluated, 10, false));
        assert!(!first_evaluation(&mut evaluated, 10, false), "twice");
        assert!(!first_evaluation(&mut evaluated, 10, true), "sent again");
        // Stored by a node that died before evaluating it: evaluated when sent again.
        assert!(first_evaluation(&mut evaluated, 20, true));
        // Out of order, first arrival: evaluated.
        assert!(first_evaluation(&mut evaluated, 5, false));
        assert_eq!(evaluated, vec![10, 20, 5]);
    }

    #[test]
    fn the_row_remembers_the_latest_readings_only() {
        let mut evaluated = Vec::new();
        let n = i64::try_from(REMEMBERED_READINGS).unwrap();
        for at in 0..n + 10 {
            assert!(first_evaluation(&mut evaluated, at * 5, false));
        }
        assert_eq!(evaluated.len(), REMEMBERED_READINGS);
        assert_eq!(evaluated[0], 50, "the oldest forgotten");
        // Sent again and older than anything remembered: evaluated long ago.
        assert!(!first_evaluation(&mut evaluated, 0, true));
        // A first arrival that old is still evaluated (a late reading).
        assert!(first_evaluation(&mut evaluated, 1, false));
    }
}
