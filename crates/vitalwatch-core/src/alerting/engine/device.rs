//! One device's part of an [`AlertEngine`], taken out whole and put back: what lets several
//! processes share one patient's story through a database row.
//!
//! Nothing in the engine links two devices: a device's tracks, pauses, previous values,
//! limits, timers and open alerts decide everything its readings, timers and users' actions
//! do. So an engine holding only the devices one change touches, put together from their
//! stored [`DeviceState`]s, gives exactly the transitions a single engine holding every device
//! would, except for the ids of the alerts it raises: those are handed out from
//! [`PROVISIONAL_ID_BASE`] and given their real values by [`DeviceState::renumber`] and
//! [`renumber_transitions`] once the store has allocated them.

use super::{AlertEngine, DeviceAlertState, next_escalation, offline_deadline_of};
use crate::alerting::{Alert, AlertCondition, AlertConfig, AlertId, AlertTransition};
use crate::telemetry::{DeviceId, Timestamp};
use serde::{Deserialize, Serialize};

/// Ids at or above this are provisional: an engine built for one change starts here, and the
/// store replaces them with ids it allocated (stored ids stay far below: 2^62).
pub const PROVISIONAL_ID_BASE: u64 = 1 << 62;

/// One device's engine state: its onset, hysteresis and latch tracks, audio pauses, previous
/// pulse and SpO2, patient limits, offline timer and its open alerts. Serialisable.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct DeviceState {
    device: DeviceAlertState,
    /// The device's open alerts, by id.
    alerts: Vec<Alert>,
}

impl DeviceState {
    /// The device's open (active or acknowledged) alerts.
    pub fn open_alerts(&self) -> &[Alert] {
        &self.alerts
    }

    /// When a reading of the device last arrived (server clock).
    pub fn last_seen(&self) -> Option<Timestamp> {
        self.device.last_seen
    }

    /// The earliest time a timer of this device is due (what [`AlertEngine::next_deadline`]
    /// answers for an engine holding only this device).
    pub fn next_deadline(&self, config: &AlertConfig) -> Option<Timestamp> {
        let offline_open = self
            .device
            .tracks
            .get(&AlertCondition::DeviceOffline)
            .is_some_and(|track| track.alert.is_some());
        let offline = (!offline_open && config.condition(AlertCondition::DeviceOffline).enabled)
            .then(|| offline_deadline_of(config, &self.device))
            .flatten();
        let alerts = self.alerts.iter().flat_map(|alert| {
            [
                next_escalation(&config.escalation, alert),
                alert.silenced_until,
            ]
        });
        offline.into_iter().chain(alerts.flatten()).min()
    }

    /// Replaces every alert id (in the open alerts and in the tracks) by `map`'s answer.
    pub fn renumber(&mut self, map: impl Fn(AlertId) -> AlertId) {
        for alert in &mut self.alerts {
            alert.id = map(alert.id);
        }
        for track in self.device.tracks.values_mut() {
            if let Some(id) = track.alert.as_mut() {
                *id = map(*id);
            }
        }
        self.alerts.sort_by_key(|alert| alert.id);
    }
}

/// Replaces the alert ids of `transitions` by `map`'s answer.
pub fn renumber_transitions(transitions: &mut [AlertTransition], map: impl Fn(AlertId) -> AlertId) {
    for transition in transitions {
        transition.alert.id = map(transition.alert.id);
    }
}

/// The real id of each provisional id: `allocated` in ascending order, one per raised alert,
/// the first to the first raised. Ids below [`PROVISIONAL_ID_BASE`] are kept.
pub fn provisional_to(allocated: &[u64]) -> impl Fn(AlertId) -> AlertId + '_ {
    move |id| {
        if id.0 <= PROVISIONAL_ID_BASE {
            return id;
        }
        let index = usize::try_from(id.0 - PROVISIONAL_ID_BASE - 1).unwrap_or(usize::MAX);
        allocated.get(index).map_or(id, |real| AlertId(*real))
    }
}

impl AlertEngine {
    /// How many alerts this engine raised since it was built from [`PROVISIONAL_ID_BASE`].
    pub fn provisional_raised(&self) -> usize {
        usize::try_from(self.last_id.saturating_sub(PROVISIONAL_ID_BASE)).unwrap_or(usize::MAX)
    }

    /// The device's state, taken out of the engine (with its open alerts); a device the
    /// engine never saw gives the default state.
    pub fn take_device(&mut self, device_id: &DeviceId) -> DeviceState {
        let device = self.devices.remove(device_id).unwrap_or_default();
        let ids: Vec<AlertId> = self
            .alerts
            .iter()
            .filter(|(_, alert)| &alert.device_id == device_id)
            .map(|(id, _)| *id)
            .collect();
        let alerts = ids
            .into_iter()
            .filter_map(|id| self.alerts.remove(&id))
            .collect();
        DeviceState { device, alerts }
    }

    /// Puts a device's state (taken out by [`AlertEngine::take_device`], possibly in another
    /// process) into the engine, replacing what the engine held for it.
    pub fn put_device(&mut self, device_id: DeviceId, state: DeviceState) {
        let _ = self.take_device(&device_id);
        for alert in state.alerts {
            if alert.id.0 <= PROVISIONAL_ID_BASE {
                self.last_id = self.last_id.max(alert.id.0);
            }
            self.alerts.insert(alert.id, alert);
        }
        self.devices.insert(device_id, state.device);
    }

    /// The ids of the devices the engine holds, in order.
    pub fn device_ids(&self) -> impl Iterator<Item = &DeviceId> {
        self.devices.keys()
    }
}
