//! The alarm-condition delay: which priority, if any, the recent sightings of a condition
//! have earned.
//!
//! Every observation of a condition on a device is remembered for a while (present with its
//! graded priority, or absent). A priority is earned when its onset is met by sightings at
//! that priority or above: `readings` of them within `window_s` (or consecutive, without a
//! window), the first at least `secs` before now. HIGH by default needs 2 sightings within
//! 15 s (2 of the last 3 readings at the usual 5 s): one reading alone, which may be motion or
//! a loose clip, never raises HIGH; a value beyond the "cannot be a glitch" bounds that another
//! vital corroborates raises at once (`immediate`, decided in `signal`).

use crate::alerting::Priority;
use crate::alerting::config::{AlertConfig, Onset};
use crate::telemetry::Timestamp;
use std::collections::VecDeque;

/// One observation of a condition: `None` when it was absent.
pub(super) type Sighting = (Timestamp, Option<(Priority, bool)>);

/// How far back sightings are kept: past the longest default window (the 5-minute mild onset).
const KEEP_S: i64 = 600;
/// ... and at most this many (a reading every 0.5 s for 10 minutes is 1 200).
const KEEP_MAX: usize = 1_500;

/// Remembers one observation (`None`: absent) and forgets the old ones.
pub(super) fn remember(
    seen: &mut VecDeque<Sighting>,
    now: Timestamp,
    present: Option<(Priority, bool)>,
) {
    // Only the newest absence matters (it ends a run; presents are what windows count), so
    // older ones are forgotten, and one with no present before it ends nothing and is not
    // kept: a device's stored state stays small while it is well.
    if present.is_none() {
        seen.retain(|(_, present)| present.is_some());
        if seen.is_empty() {
            return;
        }
    }
    seen.push_back((now, present));
    let from = now.saturating_add_micros(-KEEP_S * 1_000_000);
    while seen.front().is_some_and(|(at, _)| *at < from) || seen.len() > KEEP_MAX {
        seen.pop_front();
    }
}

/// The highest priority the sightings have earned, if any. `fixed` is a condition's own onset
/// (it replaces the by-priority ones).
pub(super) fn earned(
    config: &AlertConfig,
    fixed: Option<Onset>,
    seen: &VecDeque<Sighting>,
    now: Timestamp,
) -> Option<Priority> {
    [Priority::High, Priority::Medium, Priority::Low]
        .into_iter()
        .find(|priority| {
            let onset = |mild| fixed.unwrap_or_else(|| config.onset.for_priority(*priority, mild));
            if *priority == Priority::Low {
                // Graded LOW sightings use the LOW onset; sightings that are only outside the
                // patient's range (NEWS2 0, "mild") need the slower mild onset.
                met(onset(false), seen, *priority, false, now)
                    || met(onset(true), seen, *priority, true, now)
            } else {
                met(onset(false), seen, *priority, false, now)
            }
        })
}

/// Whether any present sighting is left within the longest onset window (else a pending
/// condition has lapsed).
pub(super) fn any_recent(
    config: &AlertConfig,
    fixed: Option<Onset>,
    seen: &VecDeque<Sighting>,
    now: Timestamp,
) -> bool {
    let window_s = [
        config.onset.high,
        config.onset.medium,
        config.onset.low,
        config.onset.mild,
    ]
    .into_iter()
    .chain(fixed)
    .filter_map(|onset| onset.window_s)
    .max()
    .unwrap_or(0);
    let from = now.saturating_add_micros(-super::secs_to_micros(window_s));
    match seen.back() {
        Some((_, Some(_))) => true,
        _ => seen
            .iter()
            .any(|(at, present)| present.is_some() && *at >= from && window_s > 0),
    }
}

/// Whether sightings at `priority` or above (including mild ones when `mild`) meet `onset`.
fn met(
    onset: Onset,
    seen: &VecDeque<Sighting>,
    priority: Priority,
    mild: bool,
    now: Timestamp,
) -> bool {
    let counts = |present: &Option<(Priority, bool)>| {
        present.is_some_and(|(p, is_mild)| p >= priority && (mild || !is_mild))
    };
    let (count, first) = match onset.window_s {
        Some(window_s) => {
            let from = now.saturating_add_micros(-super::secs_to_micros(window_s));
            let mut inside = seen
                .iter()
                .filter(|(at, present)| *at >= from && counts(present));
            let first = inside.next().map(|(at, _)| *at);
            (first.map_or(0, |_| 1 + inside.count()), first)
        }
        None => {
            let run: Vec<Timestamp> = seen
                .iter()
                .rev()
                .take_while(|(_, present)| counts(present))
                .map(|(at, _)| *at)
                .collect();
            (run.len(), run.last().copied())
        }
    };
    count >= usize::try_from(onset.readings).unwrap_or(usize::MAX)
        && first.is_some_and(|first| now.saturating_sub(first) >= super::secs_to_micros(onset.secs))
}
