//! One condition's episode on one device: onset, folding, upgrade, clearing with hysteresis,
//! latching and resolution. Called by [`super::AlertEngine`] with the pieces it borrows.

use super::{Ctx, DeviceAlertState, Pause, Pending, Track, onset, secs_to_micros, transition};
use crate::alerting::signal::{self, Observation, Side};
use crate::alerting::{
    Alert, AlertClass, AlertCondition, AlertId, AlertState, Priority, TransitionKind,
};
use crate::telemetry::DeviceId;
use std::collections::HashMap;

impl Ctx<'_> {
    pub(super) fn apply(
        &mut self,
        device_id: &DeviceId,
        device: &mut DeviceAlertState,
        condition: AlertCondition,
        observation: Observation,
    ) {
        // A condition that is not present, on a device with nothing going on for it, changes
        // nothing: it gets no track (a well device's state holds only what it needs).
        let raises = matches!(
            observation,
            Observation::Present {
                priority: Some(_),
                ..
            }
        );
        if !raises && !device.tracks.contains_key(&condition) {
            return;
        }
        let settings = self.config.condition(condition);
        let track = device.tracks.entry(condition).or_default();
        match observation {
            Observation::Unknown => {}
            Observation::Present { priority: None, .. } => {
                track.clear_since = None;
                track.pending = None;
                track.seen.clear();
            }
            Observation::Present {
                priority: Some(priority),
                mild,
                value,
                threshold,
                immediate,
            } => {
                track.clear_since = None;
                onset::remember(&mut track.seen, self.now, Some((priority, mild)));
                let earned = if immediate && priority == Priority::High {
                    Some(Priority::High)
                } else {
                    onset::earned(self.config, settings.onset, &track.seen, self.now)
                };
                if let Some(id) = track.alert {
                    let latched = self
                        .alerts
                        .get(&id)
                        .is_some_and(|alert| !alert.condition_present);
                    if !latched {
                        // An upgrade to HIGH needs its own persistence (or corroboration): one
                        // artefact must not turn a MEDIUM alert into a latching HIGH one.
                        let current = self.alerts.get(&id).map_or(priority, |a| a.priority);
                        let priority = if priority == Priority::High && priority > current {
                            earned.unwrap_or(current).max(current)
                        } else {
                            priority
                        };
                        self.fold(id, track, &device.pauses, priority, value, threshold);
                        return;
                    }
                    // The latched episode's condition had cleared: this is a new event, which
                    // gets an episode of its own instead of being swallowed by the old one.
                    let seen = std::mem::take(&mut track.seen);
                    self.resolve(id, None, track);
                    track.seen = seen;
                }
                let pending = track.pending.get_or_insert(Pending {
                    count: 0,
                    priority,
                    mild,
                    value,
                    threshold,
                });
                pending.count += 1;
                pending.mild &= mild;
                pending.value = value;
                pending.threshold = threshold;
                if let Some(earned) = earned {
                    pending.priority = earned;
                    let pending = *pending;
                    track.pending = None;
                    self.raise(device_id, &device.pauses, condition, pending, track);
                }
            }
            Observation::Absent { value } => {
                onset::remember(&mut track.seen, self.now, None);
                if track.pending.is_some()
                    && !onset::any_recent(self.config, settings.onset, &track.seen, self.now)
                {
                    track.pending = None;
                }
                let Some(id) = track.alert else { return };
                let Some(alert) = self.alerts.get(&id) else {
                    return;
                };
                if !alert.condition_present {
                    return;
                }
                let margin = settings.clear_margin;
                let cleared = match (signal::side(condition), value, alert.threshold) {
                    (Side::Above, Some(value), Some(limit)) => value <= limit - margin,
                    (Side::Below, Some(value), Some(limit)) => value >= limit + margin,
                    _ => true,
                };
                if !cleared {
                    track.clear_since = None;
                    return;
                }
                let since = *track.clear_since.get_or_insert(self.now);
                if self.now.saturating_sub(since) >= secs_to_micros(settings.clear_hold_s) {
                    self.cleared(id, track);
                }
            }
        }
    }

    pub(super) fn raise(
        &mut self,
        device_id: &DeviceId,
        pauses: &HashMap<AlertClass, Pause>,
        condition: AlertCondition,
        pending: Pending,
        track: &mut Track,
    ) {
        *self.last_id += 1;
        let id = AlertId(*self.last_id);
        let class = condition.class();
        let pause = pauses
            .get(&class)
            .filter(|pause| pause.until > self.now && pending.priority <= pause.priority);
        let alert = Alert {
            last_value: pending.value,
            threshold: pending.threshold,
            count: pending.count,
            silenced_until: pause.map(|pause| pause.until),
            silenced_by: pause.map(|pause| pause.by.clone()),
            ..Alert::opened(id, device_id.clone(), condition, pending.priority, self.now)
        };
        track.alert = Some(id);
        track.clear_since = None;
        track.reported_at = Some(self.now);
        self.out
            .push(transition(TransitionKind::Raised, &alert, self.now));
        self.alerts.insert(id, alert);
    }

    /// Folds one more reading showing the condition into its open alert.
    fn fold(
        &mut self,
        id: AlertId,
        track: &mut Track,
        pauses: &HashMap<AlertClass, Pause>,
        priority: Priority,
        value: Option<f64>,
        threshold: Option<f64>,
    ) {
        let now = self.now;
        let Some(alert) = self.alerts.get_mut(&id) else {
            track.alert = None;
            return;
        };
        alert.count = alert.count.saturating_add(1);
        alert.last_seen = now;
        alert.last_value = value.or(alert.last_value);
        alert.threshold = threshold.or(alert.threshold);
        let mut kind = None;
        if !alert.condition_present {
            alert.condition_present = true;
            kind = Some(TransitionKind::Updated);
        }
        if priority > alert.priority {
            alert.priority = priority;
            alert.attention_since = now;
            alert.escalation_level = 0;
            let paused_at_this_priority = pauses
                .get(&alert.class)
                .is_some_and(|pause| pause.until > now && priority <= pause.priority);
            if !paused_at_this_priority {
                alert.silenced_until = None;
                alert.silenced_by = None;
            }
            if alert.state == AlertState::Acknowledged {
                alert.state = AlertState::Active;
                alert.acknowledged_by = None;
                alert.acknowledged_at = None;
                alert.acknowledged_note = None;
                kind = Some(TransitionKind::Reopened);
            } else {
                kind = Some(TransitionKind::Updated);
            }
        }
        let interval = secs_to_micros(self.config.update_interval_s);
        if kind.is_none()
            && track
                .reported_at
                .is_none_or(|at| now.saturating_sub(at) >= interval)
        {
            kind = Some(TransitionKind::Updated);
        }
        if let Some(kind) = kind {
            track.reported_at = Some(now);
            self.out.push(transition(kind, alert, now));
        }
    }

    /// The condition has been clear for its hold time: resolve, or latch a HIGH alert nobody
    /// has acknowledged yet.
    fn cleared(&mut self, id: AlertId, track: &mut Track) {
        let Some(alert) = self.alerts.get_mut(&id) else {
            return;
        };
        let latches = self.config.latch_high_priority
            && alert.priority == Priority::High
            && alert.state == AlertState::Active;
        if latches {
            alert.condition_present = false;
            track.clear_since = None;
            track.reported_at = Some(self.now);
            self.out
                .push(transition(TransitionKind::Updated, alert, self.now));
        } else {
            self.resolve(id, None, track);
        }
    }

    pub(super) fn resolve(&mut self, id: AlertId, by: Option<&str>, track: &mut Track) {
        let Some(mut alert) = self.alerts.remove(&id) else {
            return;
        };
        alert.state = AlertState::Resolved;
        alert.resolved_at = Some(self.now);
        alert.resolved_by = by.map(str::to_owned);
        alert.silenced_until = None;
        alert.silenced_by = None;
        *track = Track::default();
        self.out
            .push(transition(TransitionKind::Resolved, &alert, self.now));
    }
}
