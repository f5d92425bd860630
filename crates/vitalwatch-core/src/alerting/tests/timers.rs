//! Timer tests: escalation, audio pause, device offline and the next deadline.
//!
//! These scripts start from one HIGH reading; they test timers, not the HIGH persistence
//! (tested in `mod.rs` and `artefacts.rs`), so they run with HIGH raised on one reading.

use super::*;

#[test]
fn escalation_and_reminders_until_acknowledged() {
    let ticks = [119, 120, 121, 419, 420, 900];
    let mut steps = vec![(0, Step::Vitals(135.0, 36.8))];
    steps.extend(ticks.iter().map(|secs| (*secs, Step::Tick)));
    let result = check(
        high_at_once(no_offline()),
        &steps,
        &[
            (0, Raised, 1, HeartRateHigh, High),
            (120, Escalated, 1, HeartRateHigh, High),
            (420, Escalated, 1, HeartRateHigh, High),
            (900, Escalated, 1, HeartRateHigh, High),
        ],
    );
    let levels: Vec<u32> = result
        .log
        .iter()
        .filter(|t| t.kind == Escalated)
        .map(|t| t.alert.escalation_level)
        .collect();
    // A late tick catches up in one transition (120 + 2 × 300 < 900 < 120 + 3 × 300).
    assert_eq!(levels, [1, 2, 3]);
    // Acknowledged alerts stop escalating; LOW alerts never escalate by default.
    steps.insert(1, (60, Step::Ack(1)));
    check(
        high_at_once(no_offline()),
        &steps,
        &[
            (0, Raised, 1, HeartRateHigh, High),
            (60, Acknowledged, 1, HeartRateHigh, High),
        ],
    );
    let mut low = every(0, 63, 3, Step::Vitals(105.0, 36.8));
    low.push((5000, Step::Tick));
    check(
        high_at_once(no_offline()),
        &low,
        &[(60, Raised, 1, HeartRateHigh, Low)],
    );
    // MEDIUM escalates after 10 minutes.
    let mut medium = every(0, 20, 5, Step::Vitals(115.0, 36.8));
    medium.extend([(614, Step::Tick), (615, Step::Tick)]);
    check(
        high_at_once(no_offline()),
        &medium,
        &[
            (15, Raised, 1, HeartRateHigh, Medium),
            (615, Escalated, 1, HeartRateHigh, Medium),
        ],
    );
}

#[test]
fn audio_pause_is_bounded_and_ends() {
    let result = check(
        high_at_once(no_offline()),
        &[
            (0, Step::Vitals(135.0, 36.8)),
            (10, Step::Silence(1, 3600)),
            (129, Step::Tick),
            (130, Step::Tick),
        ],
        &[
            (0, Raised, 1, HeartRateHigh, High),
            (10, Silenced, 1, HeartRateHigh, High),
            // The pause does not stop escalation: it is not an acknowledgement.
            (129, Escalated, 1, HeartRateHigh, High),
        ],
    );
    let silenced = &result.log[1].alert;
    assert_eq!(silenced.silenced_until, Some(at(130)), "capped at 120 s");
    assert!(!silenced.audible(at(129)));
    assert!(silenced.audible(at(130)));
    let ended = result.log.last().expect("pause ended");
    assert_eq!(ended.kind, Updated);
    assert_eq!(ended.alert.silenced_until, None);

    let errors = run(
        high_at_once(AlertConfig::default()),
        &[
            (0, Step::Vitals(135.0, 36.8)),
            (1, Step::Silence(1, 0)),
            (2, Step::Silence(7, 60)),
            (3, Step::Ack(7)),
            (4, Step::Ack(1)),
            (5, Step::Ack(1)),
            (6, Step::Resolve(1)),
            (7, Step::Resolve(1)),
        ],
    )
    .errors;
    assert_eq!(
        errors,
        [
            AlertError::ZeroDuration,
            AlertError::NotOpen(AlertId(7)),
            AlertError::NotOpen(AlertId(7)),
            AlertError::AlreadyAcknowledged(AlertId(1)),
            AlertError::NotOpen(AlertId(1)),
        ]
    );
}

#[test]
fn escalation_continues_through_a_pause() {
    check(
        high_at_once(no_offline()),
        &[
            (0, Step::Vitals(135.0, 36.8)),
            (10, Step::Silence(1, 120)),
            (120, Step::Tick),
        ],
        &[
            (0, Raised, 1, HeartRateHigh, High),
            (10, Silenced, 1, HeartRateHigh, High),
            (120, Escalated, 1, HeartRateHigh, High),
        ],
    );
}

#[test]
fn device_offline_raises_and_resolves() {
    let steps = [
        (0, Step::Vitals(72.0, 36.8)),
        (0, Step::Other("dev-2")),
        (10, Step::Other("dev-2")),
        (14, Step::Tick),
        (15, Step::Tick),
        (20, Step::Tick),
        (30, Step::Vitals(72.0, 36.8)),
    ];
    let result = check(
        high_at_once(AlertConfig::default()),
        &steps,
        &[
            (15, Raised, 1, DeviceOffline, Medium),
            (30, Resolved, 1, DeviceOffline, Medium),
        ],
    );
    let raised = &result.log[0].alert;
    assert_eq!(raised.class, AlertClass::Technical);
    assert_eq!(raised.device_id, device("dev-1"));
    assert_eq!(raised.threshold, Some(15.0));
    // dev-2 was last seen at 10: its deadline is 25, dev-1's is now 45.
    let mut engine = result.engine;
    assert_eq!(engine.next_deadline(), Some(at(25)));
    let dev2 = engine.tick(at(25));
    assert_eq!(dev2.len(), 1);
    assert_eq!(dev2[0].alert.device_id, device("dev-2"));
    assert_eq!(engine.next_deadline(), Some(at(45)));
    // A slower device can say so.
    engine.set_expected_interval(&device("dev-1"), Some(60_000));
    assert_eq!(engine.next_deadline(), Some(at(210)));
}

#[test]
fn a_lost_connection_raises_device_offline_at_once() {
    let steps = [
        (0, Step::Vitals(72.0, 36.8)),
        (3, Step::Lost("dev-1")),
        // Already offline; never seen: nothing.
        (4, Step::Lost("dev-1")),
        (5, Step::Lost("dev-9")),
        // The offline deadline (15) raises nothing more; the next reading resolves it.
        (15, Step::Tick),
        (20, Step::Vitals(72.0, 36.8)),
    ];
    let result = check(
        high_at_once(AlertConfig::default()),
        &steps,
        &[
            (3, Raised, 1, DeviceOffline, Medium),
            (20, Resolved, 1, DeviceOffline, Medium),
        ],
    );
    let raised = &result.log[0].alert;
    assert_eq!(raised.class, AlertClass::Technical);
    assert_eq!(raised.device_id, device("dev-1"));
    // Silent for 3 s of the 15 s the device was allowed.
    assert_eq!(raised.last_value, Some(3.0));
    assert_eq!(raised.threshold, Some(15.0));
    // With DEVICE_OFFLINE off, a lost connection raises nothing.
    let quiet = run(
        high_at_once(no_offline()),
        &[(0, Step::Vitals(72.0, 36.8)), (3, Step::Lost("dev-1"))],
    );
    assert!(quiet.log.is_empty(), "{:?}", quiet.log);
}

#[test]
fn next_deadline_covers_escalation_and_pauses() {
    let result = run(
        high_at_once(AlertConfig::default()),
        &[(0, Step::Vitals(135.0, 36.8)), (1, Step::Silence(1, 30))],
    );
    let mut config = high_at_once(AlertConfig::default());
    config.conditions.insert(
        DeviceOffline,
        ConditionOverride {
            enabled: Some(false),
            ..ConditionOverride::default()
        },
    );
    let mut engine = result.engine;
    // Offline deadline at 15 comes first, then the pause end at 31, then escalation at 120.
    assert_eq!(engine.next_deadline(), Some(at(15)));
    engine.tick(at(15));
    assert_eq!(engine.next_deadline(), Some(at(31)));
    engine.tick(at(31));
    assert_eq!(engine.next_deadline(), Some(at(120)));
    let quiet = run(config, &[(0, Step::Vitals(72.0, 36.8))]);
    assert_eq!(quiet.engine.next_deadline(), None);
}
