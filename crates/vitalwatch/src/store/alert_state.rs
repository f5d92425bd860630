//! Alert state shared through the database: the seam between the alert service's shared path
//! (`alerts/shared.rs`) and a store that can hold one row per device for every node.
//!
//! Only the PostgreSQL store offers it ([`crate::store::Store::shared_alerts`] answers `None`
//! on SQLite: the single-box path keeps its engine in memory). An evaluation is one
//! transaction: the devices' rows locked in device-id order, their registry interval and
//! thresholds read under the lock, the pure engine run by the caller's closure, then its
//! transitions (the alert tables) and the new rows written and committed together.

use super::{StoreError, ThresholdsRecord};
use async_trait::async_trait;
use vitalwatch_core::alerting::{Alert, AlertError, AlertTransition, DeviceState};
use vitalwatch_core::news2::LatestVitals;
use vitalwatch_core::telemetry::Timestamp;

/// One device's row as the evaluation found it, locked.
#[derive(Clone, Debug)]
pub struct LockedDevice {
    pub device_id: String,
    /// `None` when the device has no row yet.
    pub state: Option<DeviceState>,
    pub vitals: LatestVitals,
    /// The latest server time an evaluation of this device ran at (clocks of nodes differ a
    /// little: the engine's `now` never goes back for a device).
    pub evaluated_at: Option<Timestamp>,
    /// The registry's `expected_interval_s` of an active device; `None` when the device is
    /// not registered or not active (quarantined readings).
    pub expected_interval_s: Option<f64>,
    /// The device's threshold overrides, read under the lock.
    pub thresholds: Option<ThresholdsRecord>,
    /// For a device without a row: its open alerts in the alert tables (from before the
    /// shared state existed), to rebuild its state from.
    pub open_alerts: Vec<Alert>,
    /// The times (µs) of the device's latest evaluated readings, oldest first: a reading sent
    /// again is evaluated only when its time is not among them.
    pub evaluated: Vec<i64>,
}

/// One device's row to write back.
#[derive(Clone, Debug)]
pub struct DeviceRow {
    pub device_id: String,
    pub state: DeviceState,
    pub vitals: LatestVitals,
    pub evaluated_at: Timestamp,
    /// When the leader's timer must look at the device next.
    pub next_deadline: Option<Timestamp>,
    /// [`LockedDevice::evaluated`] with this evaluation's readings.
    pub evaluated: Vec<i64>,
}

/// What an evaluation produced. Alert ids at or above
/// [`vitalwatch_core::alerting::PROVISIONAL_ID_BASE`] are provisional: the store allocates
/// real ones (in raise order) before writing.
#[derive(Clone, Debug, Default)]
pub struct Outcome {
    pub transitions: Vec<AlertTransition>,
    pub rows: Vec<DeviceRow>,
    /// How many alerts the evaluation raised (provisional ids base+1 ..= base+raised).
    pub raised: usize,
}

/// The caller's part of an evaluation: pure, run with the rows locked. An error rolls back.
pub type Evaluate = Box<dyn FnOnce(Vec<LockedDevice>) -> Result<Outcome, AlertError> + Send>;

/// A store that keeps the alert engine's state per device for every node.
#[async_trait]
pub trait SharedAlertState: Send + Sync {
    /// Locks the rows of `devices` (created when missing) in device-id order, runs `run` on
    /// them and commits its transitions and rows; returns the transitions with their real ids.
    async fn evaluate(
        &self,
        devices: Vec<String>,
        run: Evaluate,
    ) -> Result<Result<Vec<AlertTransition>, AlertError>, StoreError>;
    /// Devices whose deadline is at or before `now`, at most `limit`, in device-id order.
    async fn due_devices(&self, now: Timestamp, limit: usize) -> Result<Vec<String>, StoreError>;
    /// The earliest deadline of any device.
    async fn next_deadline(&self) -> Result<Option<Timestamp>, StoreError>;
    /// A device's stored NEWS2 window (no lock).
    async fn vitals(&self, device_id: String) -> Result<Option<LatestVitals>, StoreError>;
    /// Active devices seen before that have no row yet (their offline timer would never run).
    async fn devices_without_state(&self, limit: usize) -> Result<Vec<String>, StoreError>;
}

/// One node's attempt at leadership: a session-level lock on a connection of its own.
#[async_trait]
pub trait LeaderLock: Send + Sync {
    /// Tries to take the lock (or checks that it is still held). `Ok(true)`: this node leads.
    /// A lost connection ends leadership: the next call reconnects and tries again.
    async fn try_lead(&mut self, node_id: &str) -> Result<bool, StoreError>;
    /// The node id of whoever holds the lock now, if anyone.
    async fn leader(&mut self) -> Result<Option<String>, StoreError>;
    /// Gives the lock up (a graceful stop).
    async fn release(&mut self);
}
