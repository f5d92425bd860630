//! One device's state taken out of an engine, serialised and put back. The comparison with
//! one engine over generated scenarios is in `scenario/split_alerts.rs` (a higher layer).

use super::*;

#[test]
fn a_device_taken_out_and_put_back_keeps_its_alerts_and_timers() {
    let mut engine = AlertEngine::new(high_at_once(AlertConfig::default()), 0);
    let mut reading = Reading::empty(device("dev-1"), at(0));
    reading.heart_rate_bpm = Some(190.0);
    let findings = {
        let mut out = Vec::new();
        rules::check(&reading, &RuleSet::default(), &mut out);
        out
    };
    let raised = engine.observe(&reading, &findings, None, at(0));
    assert_eq!(raised.len(), 1);
    let deadline = engine.next_deadline();
    let state = engine.take_device(&device("dev-1"));
    assert_eq!(engine.open_alerts().count(), 0);
    assert_eq!(engine.next_deadline(), None);
    assert_eq!(state.open_alerts().len(), 1);
    assert_eq!(state.last_seen(), Some(at(0)));
    let json = serde_json::to_value(&state).expect("serialises");
    let mut other = AlertEngine::new(AlertConfig::default(), PROVISIONAL_ID_BASE);
    other.put_device(
        device("dev-1"),
        serde_json::from_value(json).expect("parses"),
    );
    assert_eq!(other.next_deadline(), deadline);
    let state = other.take_device(&device("dev-1"));
    assert_eq!(state.next_deadline(&AlertConfig::default()), deadline);
    other.put_device(device("dev-1"), state);
    assert_eq!(other.alert(AlertId(1)).map(|a| a.priority), Some(High));
    assert_eq!(other.provisional_raised(), 0);
}
