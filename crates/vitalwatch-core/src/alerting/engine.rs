//! [`AlertEngine`]: the alert lifecycle, as pure state plus decisions.
//!
//! Per (device, condition) there is at most one open alert; readings that show the condition
//! again fold into it. A condition raises only after its onset delay (HIGH at once), clears
//! only after the value is back inside the limit by a margin for a hold time, and a latched
//! HIGH alert stays until someone acknowledges it. Audio pause is per channel (a device's
//! physiological or technical alerts, which never affect each other) and a new alert of higher
//! priority sounds through it. Unacknowledged alerts escalate and repeat.
//!
//! Timing uses the `now` the caller passes (server time), never device timestamps, so a
//! device with a wrong clock cannot hold an alert open or make one escalate early. The engine
//! keeps only open alerts; the store keeps history.

use super::config::AlertConfig;
use super::offline::offline_deadline;
use super::signal;
use super::{
    Alert, AlertClass, AlertCondition, AlertError, AlertId, AlertState, AlertTransition, Priority,
    TransitionKind,
};
use crate::news2::News2;
use crate::rules::{Finding, PatientThresholds};
use crate::telemetry::{DeviceId, Reading, Timestamp};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap, VecDeque};

mod device;
mod episode;
mod onset;

pub use device::{DeviceState, PROVISIONAL_ID_BASE, provisional_to, renumber_transitions};

const MICROS_PER_SEC: i64 = 1_000_000;

fn secs_to_micros(secs: u64) -> i64 {
    i64::try_from(secs)
        .unwrap_or(i64::MAX)
        .saturating_mul(MICROS_PER_SEC)
}

/// Open alerts and per-device timers; see the module docs.
#[derive(Clone, Debug)]
pub struct AlertEngine {
    config: AlertConfig,
    /// The last id handed out; the next alert gets this plus one.
    last_id: u64,
    /// Open (active or acknowledged) alerts; resolved ones leave.
    alerts: BTreeMap<AlertId, Alert>,
    /// Ordered by device so that `tick` raises in a deterministic order.
    devices: BTreeMap<DeviceId, DeviceAlertState>,
    /// One reading's observations, kept empty between readings so that `observe` reuses its
    /// allocation instead of making one per reading.
    observations: Vec<(AlertCondition, signal::Observation)>,
}

/// What the engine knows about one device.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
struct DeviceAlertState {
    /// The last time (server clock) a reading arrived: the offline timer runs from here.
    last_seen: Option<Timestamp>,
    /// The device's own reporting interval, when it differs from the configured default.
    expected_interval_ms: Option<u64>,
    tracks: HashMap<AlertCondition, Track>,
    /// Audio pause per channel.
    pauses: HashMap<AlertClass, Pause>,
    /// The previous pulse and SpO2, to tell an implausible jump (an artefact).
    previous: signal::Previous,
    /// The patient's own limits and SpO2 scale (set by a clinician; default: the site's).
    patient: PatientThresholds,
}

/// One condition on one device.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
struct Track {
    alert: Option<AlertId>,
    /// The condition is present but its onset delay has not yet passed.
    pending: Option<Pending>,
    /// Recent observations of the condition, oldest first (see `onset`).
    seen: VecDeque<onset::Sighting>,
    /// Since when the value has been cleared (hysteresis hold).
    clear_since: Option<Timestamp>,
    /// When the alert last emitted a transition (bounds `Updated` for folded readings).
    reported_at: Option<Timestamp>,
}

#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
struct Pending {
    count: u64,
    priority: Priority,
    mild: bool,
    value: Option<f64>,
    threshold: Option<f64>,
}

/// AUDIO PAUSED on one channel: alerts raised before `until` with a priority up to `priority`
/// start paused; higher ones sound.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct Pause {
    until: Timestamp,
    priority: Priority,
    by: String,
}

/// What to persist to rebuild an engine: open alerts and when each device was last seen.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EngineSnapshot {
    /// The highest alert id ever issued (the store's `max(id)`).
    pub last_id: u64,
    pub open_alerts: Vec<Alert>,
    pub devices: Vec<DeviceSnapshot>,
}

/// One device's offline timer.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DeviceSnapshot {
    #[serde(deserialize_with = "super::serde_time::device_id")]
    pub device_id: DeviceId,
    #[serde(with = "super::serde_time::ts")]
    pub last_seen: Timestamp,
    pub expected_interval_ms: Option<u64>,
}

/// The pieces of the engine one change needs, borrowed apart from the device being changed.
struct Ctx<'a> {
    config: &'a AlertConfig,
    last_id: &'a mut u64,
    alerts: &'a mut BTreeMap<AlertId, Alert>,
    out: &'a mut Vec<AlertTransition>,
    now: Timestamp,
}

impl AlertEngine {
    /// An engine with no open alerts; ids start after `last_id` (0 for a fresh store).
    pub fn new(config: AlertConfig, last_id: u64) -> AlertEngine {
        AlertEngine {
            config,
            last_id,
            alerts: BTreeMap::new(),
            devices: BTreeMap::new(),
            observations: Vec::with_capacity(AlertCondition::ALL.len()),
        }
    }

    /// Rebuilds an engine from what the store persisted. Onset and hysteresis timers restart
    /// (a condition that was clearing must hold again: the safe direction). To avoid a burst of
    /// DEVICE_OFFLINE alerts after downtime, pass `last_seen` no earlier than the restart.
    pub fn restore(
        config: AlertConfig,
        snapshot: EngineSnapshot,
    ) -> Result<AlertEngine, AlertError> {
        let mut engine = AlertEngine::new(config, snapshot.last_id);
        for device in snapshot.devices {
            let state = engine.devices.entry(device.device_id).or_default();
            state.last_seen = Some(device.last_seen);
            state.expected_interval_ms = device.expected_interval_ms;
        }
        for alert in snapshot.open_alerts {
            if alert.state == AlertState::Resolved {
                continue;
            }
            engine.last_id = engine.last_id.max(alert.id.0);
            let device = engine.devices.entry(alert.device_id.clone()).or_default();
            let track = device.tracks.entry(alert.condition).or_default();
            if let Some(other) = track.alert {
                return Err(AlertError::DuplicateEpisode(other, alert.id));
            }
            track.alert = Some(alert.id);
            if alert.silenced_until.is_some() {
                let pause = device.pauses.entry(alert.class).or_insert(Pause {
                    until: alert.silenced_until.unwrap_or(alert.opened_at),
                    priority: alert.priority,
                    by: alert.silenced_by.clone().unwrap_or_default(),
                });
                pause.priority = pause.priority.max(alert.priority);
            }
            engine.alerts.insert(alert.id, alert);
        }
        Ok(engine)
    }

    /// Everything [`AlertEngine::restore`] needs.
    pub fn snapshot(&self) -> EngineSnapshot {
        EngineSnapshot {
            last_id: self.last_id,
            open_alerts: self.alerts.values().cloned().collect(),
            devices: self
                .devices
                .iter()
                .filter_map(|(device_id, state)| {
                    Some(DeviceSnapshot {
                        device_id: device_id.clone(),
                        last_seen: state.last_seen?,
                        expected_interval_ms: state.expected_interval_ms,
                    })
                })
                .collect(),
        }
    }

    pub fn config(&self) -> &AlertConfig {
        &self.config
    }

    /// The highest id issued so far.
    pub fn last_id(&self) -> u64 {
        self.last_id
    }

    /// Open (active or acknowledged) alerts, by id.
    pub fn open_alerts(&self) -> impl Iterator<Item = &Alert> {
        self.alerts.values()
    }

    pub fn alert(&self, id: AlertId) -> Option<&Alert> {
        self.alerts.get(&id)
    }

    /// Sets a device's reporting interval for offline detection (`None`: the default).
    pub fn set_expected_interval(&mut self, device_id: &DeviceId, interval_ms: Option<u64>) {
        self.devices
            .entry(device_id.clone())
            .or_default()
            .expected_interval_ms = interval_ms;
    }

    /// Sets a patient's own limits (SpO2 scale and target, respiration, blood pressure) for the
    /// device's next readings; the default is the site's limits on SpO2 Scale 1.
    pub fn set_patient(&mut self, device_id: &DeviceId, patient: PatientThresholds) {
        self.devices.entry(device_id.clone()).or_default().patient = patient;
    }

    /// The patient's limits in force for a device.
    pub fn patient(&self, device_id: &DeviceId) -> PatientThresholds {
        self.devices
            .get(device_id)
            .map(|device| device.patient)
            .unwrap_or_default()
    }

    /// Feeds one accepted reading with its findings (seed rules plus SENSOR_FAULT, ML) and,
    /// when the caller computes it, the device's NEWS2. Ends DEVICE_OFFLINE for the device.
    pub fn observe(
        &mut self,
        reading: &Reading,
        findings: &[Finding],
        news2: Option<&News2>,
        now: Timestamp,
    ) -> Vec<AlertTransition> {
        let mut out = Vec::new();
        let device_id = &reading.device_id;
        if !self.devices.contains_key(device_id) {
            self.devices
                .insert(device_id.clone(), DeviceAlertState::default());
        }
        let device = self
            .devices
            .get_mut(device_id)
            .expect("inserted above when absent");
        device.last_seen = Some(device.last_seen.map_or(now, |seen| seen.max(now)));
        let mut ctx = Ctx {
            config: &self.config,
            last_id: &mut self.last_id,
            alerts: &mut self.alerts,
            out: &mut out,
            now,
        };
        if let Some(track) = device.tracks.get_mut(&AlertCondition::DeviceOffline)
            && let Some(id) = track.alert
        {
            ctx.resolve(id, None, track);
        }
        let observations = &mut self.observations;
        signal::observe(
            reading,
            findings,
            news2,
            &device.previous,
            &device.patient,
            ctx.config,
            observations,
        );
        device.previous.remember(reading, findings);
        for (condition, observation) in observations.drain(..) {
            ctx.apply(device_id, device, condition, observation);
        }
        out
    }

    /// Runs the timers due at `now`: audio pauses ending, DEVICE_OFFLINE for overdue devices,
    /// escalation of unacknowledged alerts. Call it at [`AlertEngine::next_deadline`].
    pub fn tick(&mut self, now: Timestamp) -> Vec<AlertTransition> {
        let mut out = Vec::new();
        for alert in self.alerts.values_mut() {
            if alert.silenced_until.is_some_and(|until| until <= now) {
                alert.silenced_until = None;
                alert.silenced_by = None;
                out.push(transition(TransitionKind::Updated, alert, now));
            }
        }
        let offline = self.config.condition(AlertCondition::DeviceOffline);
        let mut ctx = Ctx {
            config: &self.config,
            last_id: &mut self.last_id,
            alerts: &mut self.alerts,
            out: &mut out,
            now,
        };
        for (device_id, device) in self.devices.iter_mut() {
            device.pauses.retain(|_, pause| pause.until > now);
            let Some(deadline) = offline_deadline_of(ctx.config, device) else {
                continue;
            };
            let track = device
                .tracks
                .entry(AlertCondition::DeviceOffline)
                .or_default();
            if !offline.enabled || now < deadline || track.alert.is_some() {
                continue;
            }
            let seen = device.last_seen.unwrap_or(now);
            let pending = Pending {
                count: 1,
                priority: offline.priority.unwrap_or(Priority::Medium),
                mild: false,
                value: Some(now.saturating_sub(seen) as f64 / 1e6),
                threshold: Some(deadline.saturating_sub(seen) as f64 / 1e6),
            };
            ctx.raise(
                device_id,
                &device.pauses,
                AlertCondition::DeviceOffline,
                pending,
                track,
            );
        }
        let escalation = self.config.escalation;
        for alert in self.alerts.values_mut() {
            let Some(due) = next_escalation(&escalation, alert) else {
                continue;
            };
            if now < due {
                continue;
            }
            let after = secs_to_micros(escalation.after_s(alert.priority).unwrap_or(0));
            let repeat = secs_to_micros(escalation.repeat_every_s).max(1);
            let overdue = now
                .saturating_sub(alert.attention_since)
                .saturating_sub(after);
            let target = u32::try_from(1 + overdue / repeat).unwrap_or(u32::MAX);
            alert.escalation_level = target.min(escalation.max_level);
            out.push(transition(TransitionKind::Escalated, alert, now));
        }
        out
    }

    /// A device's connection was lost abruptly (its MQTT will fired): DEVICE_OFFLINE is raised
    /// now instead of at the offline deadline. Nothing for a device never seen, one already
    /// offline, or when the condition is off; its next reading resolves it as usual.
    pub fn device_lost(&mut self, device_id: &DeviceId, now: Timestamp) -> Vec<AlertTransition> {
        let mut out = Vec::new();
        let offline = self.config.condition(AlertCondition::DeviceOffline);
        let Some(device) = self.devices.get_mut(device_id) else {
            return out;
        };
        let Some(deadline) = offline_deadline_of(&self.config, device) else {
            return out;
        };
        let track = device
            .tracks
            .entry(AlertCondition::DeviceOffline)
            .or_default();
        if !offline.enabled || track.alert.is_some() {
            return out;
        }
        let seen = device.last_seen.unwrap_or(now);
        let pending = Pending {
            count: 1,
            priority: offline.priority.unwrap_or(Priority::Medium),
            mild: false,
            value: Some(now.saturating_sub(seen) as f64 / 1e6),
            threshold: Some(deadline.saturating_sub(seen) as f64 / 1e6),
        };
        let mut ctx = Ctx {
            config: &self.config,
            last_id: &mut self.last_id,
            alerts: &mut self.alerts,
            out: &mut out,
            now,
        };
        ctx.raise(
            device_id,
            &device.pauses,
            AlertCondition::DeviceOffline,
            pending,
            track,
        );
        out
    }

    /// The earliest time `tick` has work to do, if any: one timer task sleeps until then (or
    /// until a reading or user action changes things, then asks again).
    pub fn next_deadline(&self) -> Option<Timestamp> {
        let offline = self.devices.values().filter_map(|device| {
            let has_alert = device
                .tracks
                .get(&AlertCondition::DeviceOffline)
                .is_some_and(|track| track.alert.is_some());
            if has_alert || !self.config.condition(AlertCondition::DeviceOffline).enabled {
                None
            } else {
                offline_deadline_of(&self.config, device)
            }
        });
        let alerts = self.alerts.values().flat_map(|alert| {
            [
                next_escalation(&self.config.escalation, alert),
                alert.silenced_until,
            ]
        });
        offline.chain(alerts.flatten()).min()
    }

    /// A user acknowledges an alert: it stops sounding and escalating (this alert only; other
    /// alerts, and the other channel, are untouched). A latched alert whose condition has
    /// already cleared resolves.
    pub fn acknowledge(
        &mut self,
        id: AlertId,
        by: &str,
        note: Option<&str>,
        now: Timestamp,
    ) -> Result<Vec<AlertTransition>, AlertError> {
        let by = user(by)?;
        let alert = self.alerts.get_mut(&id).ok_or(AlertError::NotOpen(id))?;
        if alert.state == AlertState::Acknowledged {
            return Err(AlertError::AlreadyAcknowledged(id));
        }
        alert.state = AlertState::Acknowledged;
        alert.acknowledged_by = Some(by.to_owned());
        alert.acknowledged_at = Some(now);
        alert.acknowledged_note = note.map(str::to_owned);
        alert.silenced_until = None;
        alert.silenced_by = None;
        let mut out = vec![transition(TransitionKind::Acknowledged, alert, now)];
        if !alert.condition_present {
            self.resolve_into(id, Some(by), now, &mut out);
        }
        Ok(out)
    }

    /// AUDIO PAUSED: pauses the sound of the alert's channel (its device and class) for
    /// `duration_s`, capped at `audio_pause_max_s`. Every active alert of that channel is
    /// paused; the other channel keeps sounding. A later alert of higher priority sounds
    /// through the pause. Pausing is not acknowledging: escalation continues.
    pub fn silence(
        &mut self,
        id: AlertId,
        by: &str,
        duration_s: u64,
        now: Timestamp,
    ) -> Result<Vec<AlertTransition>, AlertError> {
        let by = user(by)?;
        if duration_s == 0 {
            return Err(AlertError::ZeroDuration);
        }
        let target = self.alerts.get(&id).ok_or(AlertError::NotOpen(id))?;
        let (device_id, class) = (target.device_id.clone(), target.class);
        let mut priority = target.priority;
        let until = now.saturating_add_micros(secs_to_micros(
            duration_s.min(self.config.audio_pause_max_s),
        ));
        let mut out = Vec::new();
        for alert in self.alerts.values_mut() {
            let in_channel = alert.device_id == device_id && alert.class == class;
            if in_channel && alert.state == AlertState::Active {
                alert.silenced_until = Some(until);
                alert.silenced_by = Some(by.to_owned());
                priority = priority.max(alert.priority);
                out.push(transition(TransitionKind::Silenced, alert, now));
            }
        }
        self.devices.entry(device_id).or_default().pauses.insert(
            class,
            Pause {
                until,
                priority,
                by: by.to_owned(),
            },
        );
        Ok(out)
    }

    /// A user resolves an alert. If the condition persists, a new episode starts after its
    /// onset delay: a user can end an alert, not a patient's condition.
    pub fn resolve(
        &mut self,
        id: AlertId,
        by: &str,
        now: Timestamp,
    ) -> Result<Vec<AlertTransition>, AlertError> {
        let by = user(by)?;
        if !self.alerts.contains_key(&id) {
            return Err(AlertError::NotOpen(id));
        }
        let mut out = Vec::new();
        self.resolve_into(id, Some(by), now, &mut out);
        Ok(out)
    }

    fn resolve_into(
        &mut self,
        id: AlertId,
        by: Option<&str>,
        now: Timestamp,
        out: &mut Vec<AlertTransition>,
    ) {
        let Some((device_id, condition)) = self
            .alerts
            .get(&id)
            .map(|alert| (alert.device_id.clone(), alert.condition))
        else {
            return;
        };
        let track = self
            .devices
            .entry(device_id)
            .or_default()
            .tracks
            .entry(condition)
            .or_default();
        let mut ctx = Ctx {
            config: &self.config,
            last_id: &mut self.last_id,
            alerts: &mut self.alerts,
            out,
            now,
        };
        ctx.resolve(id, by, track);
    }
}

fn user(by: &str) -> Result<&str, AlertError> {
    let by = by.trim();
    if by.is_empty() {
        Err(AlertError::MissingUser)
    } else {
        Ok(by)
    }
}

fn transition(kind: TransitionKind, alert: &Alert, at: Timestamp) -> AlertTransition {
    AlertTransition {
        kind,
        alert: alert.clone(),
        at,
        message: super::message(alert),
    }
}

fn offline_deadline_of(config: &AlertConfig, device: &DeviceAlertState) -> Option<Timestamp> {
    let interval = device
        .expected_interval_ms
        .unwrap_or(config.offline.expected_interval_ms);
    Some(offline_deadline(
        device.last_seen?,
        interval,
        config.offline.factor,
    ))
}

/// When an active alert escalates next, if it does.
fn next_escalation(config: &super::EscalationConfig, alert: &Alert) -> Option<Timestamp> {
    if alert.state != AlertState::Active || alert.escalation_level >= config.max_level {
        return None;
    }
    let after = secs_to_micros(config.after_s(alert.priority)?);
    let repeats =
        secs_to_micros(config.repeat_every_s).saturating_mul(i64::from(alert.escalation_level));
    Some(
        alert
            .attention_since
            .saturating_add_micros(after.saturating_add(repeats)),
    )
}
