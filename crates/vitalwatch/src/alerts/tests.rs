//! The alert service over a real SQLite store, fed through the real pipeline. Its timers
//! (DEVICE_OFFLINE, escalation, the end of an audio pause) are tested with tokio's clock
//! paused: the tests advance it, and the service's clock follows (`crate::clock::now`), so
//! nothing waits for real time.
//!
//! With the clock paused, a wait that nothing ends jumps straight to its deadline, so
//! "no such transition within `d`" is [`next`] timing out after `d` of tokio time: every timer
//! due before then has fired by the time it does. Store I/O (a writer thread) is done before
//! pausing, or after resuming.

use super::*;
use crate::store::Source;
use crate::testing::{Service, reading_json, service};
use tokio::sync::broadcast::Receiver;
use vitalwatch_core::alerting::{AlertCondition, AlertState, TransitionKind};

async fn ingest(service: &Service, device_id: &str, heart_rate: f64) {
    service
        .pipeline
        .ingest_body(
            reading_json(device_id, heart_rate).as_bytes(),
            Source::Http,
            None,
        )
        .await
        .expect("the reading is accepted");
}

/// The next alert transition for which `pick` holds, within `within` of tokio time.
async fn next(
    events: &mut Receiver<Event>,
    within: Duration,
    pick: impl Fn(&AlertTransition) -> bool,
) -> Option<AlertTransition> {
    let wanted = async {
        loop {
            match events.recv().await {
                Ok(Event::Alert(transition)) if pick(&transition) => return transition,
                Ok(_) => {}
                Err(err) => panic!("the event bus failed: {err}"),
            }
        }
    };
    tokio::time::timeout(within, wanted).await.ok()
}

fn is(
    kind: TransitionKind,
    condition: AlertCondition,
    device_id: &'static str,
) -> impl Fn(&AlertTransition) -> bool {
    move |t| {
        t.kind == kind && t.alert.condition == condition && t.alert.device_id.as_str() == device_id
    }
}

/// A HEART_RATE_HIGH alert raised for `device_id`: 150 bpm is a high-priority value, and the
/// second such reading within 15 s confirms it (one alone may be an artefact).
async fn raise(service: &mut Service, device_id: &'static str) -> Alert {
    ingest(service, device_id, 150.0).await;
    ingest(service, device_id, 150.0).await;
    let raised = is(
        TransitionKind::Raised,
        AlertCondition::HeartRateHigh,
        device_id,
    );
    let mut found = None;
    while let Ok(event) = service.events.try_recv() {
        if let Event::Alert(transition) = event
            && raised(&transition)
        {
            found = Some(transition.alert);
        }
    }
    found.expect("published before the reading was answered")
}

#[tokio::test]
async fn a_silent_device_goes_offline_after_its_interval_times_the_factor() {
    // Expected every 60 s; offline after 3 intervals (the default factor).
    let mut service = service(|config| config.registry.default_expected_interval_s = 60.0).await;
    ingest(&service, "bed-1", 72.0).await;
    tokio::time::pause();
    let offline = is(
        TransitionKind::Raised,
        AlertCondition::DeviceOffline,
        "bed-1",
    );
    let early = next(&mut service.events, Duration::from_secs(175), &offline).await;
    assert!(early.is_none(), "offline too early: {early:?}");
    let raised = next(&mut service.events, Duration::from_secs(10), &offline).await;
    let raised = raised.expect("DEVICE_OFFLINE 180 s after the last reading");
    assert_eq!(raised.alert.state, AlertState::Active);

    // A reading resolves it.
    tokio::time::resume();
    ingest(&service, "bed-1", 72.0).await;
    let resolved = is(
        TransitionKind::Resolved,
        AlertCondition::DeviceOffline,
        "bed-1",
    );
    let resolved = next(&mut service.events, Duration::from_secs(5), &resolved).await;
    assert!(resolved.is_some(), "a reading resolves DEVICE_OFFLINE");

    // The transitions were committed (the persister drains at shutdown).
    let dir = service.stop().await;
    let restarted = crate::testing::service_in(dir, None, |_| {}).await;
    let (record, _) = restarted
        .store
        .alert(raised.alert.id.0)
        .await
        .expect("reading the alert")
        .expect("the offline alert was stored");
    assert_eq!(record.alert.state, AlertState::Resolved);
}

#[tokio::test]
async fn an_unacknowledged_high_alert_escalates_and_an_acknowledged_one_does_not() {
    let mut service = service(|_| {}).await;
    let first = raise(&mut service, "bed-2").await;
    let second = raise(&mut service, "bed-3").await;
    service
        .alerts
        .acknowledge(second.id.0, "nurse", None)
        .await
        .expect("acknowledging an open alert");
    tokio::time::pause();
    let escalated = |device_id| {
        is(
            TransitionKind::Escalated,
            AlertCondition::HeartRateHigh,
            device_id,
        )
    };
    // A HIGH alert escalates 120 s after it was raised (EscalationConfig's default).
    let early = next(
        &mut service.events,
        Duration::from_secs(115),
        escalated("bed-2"),
    )
    .await;
    assert!(early.is_none(), "escalated too early: {early:?}");
    let up = next(
        &mut service.events,
        Duration::from_secs(10),
        escalated("bed-2"),
    )
    .await;
    let up = up.expect("escalated 120 s after it was raised");
    assert_eq!(up.alert.id, first.id);
    // Reminders follow every 300 s; the acknowledged alert never escalated meanwhile.
    let any_escalation =
        |t: &AlertTransition| t.kind == TransitionKind::Escalated && t.alert.id == second.id;
    let acknowledged = next(
        &mut service.events,
        Duration::from_secs(600),
        any_escalation,
    )
    .await;
    assert!(
        acknowledged.is_none(),
        "an acknowledged alert escalated: {acknowledged:?}"
    );
}

#[tokio::test]
async fn an_audio_pause_ends_by_itself_after_its_duration() {
    let mut service = service(|_| {}).await;
    let alert = raise(&mut service, "bed-4").await;
    let paused = service
        .alerts
        .silence(alert.id.0, "nurse", 60)
        .await
        .expect("silencing an open alert");
    assert!(paused.silenced_until.is_some());
    tokio::time::pause();
    let unsilenced = |t: &AlertTransition| {
        t.kind == TransitionKind::Updated
            && t.alert.id == alert.id
            && t.alert.silenced_until.is_none()
    };
    let early = next(&mut service.events, Duration::from_secs(55), unsilenced).await;
    assert!(early.is_none(), "the pause ended early: {early:?}");
    let ended = next(&mut service.events, Duration::from_secs(10), unsilenced).await;
    let ended = ended.expect("the audio pause ends after 60 s");
    assert_eq!(ended.alert.silenced_by, None);
    assert_eq!(
        ended.alert.state,
        AlertState::Active,
        "a pause is not an acknowledgement"
    );
}

#[tokio::test]
async fn user_actions_answer_with_the_alert_and_refuse_what_cannot_be_done() {
    let mut service = service(|_| {}).await;
    let alert = raise(&mut service, "bed-5").await;
    let acked = service
        .alerts
        .acknowledge(alert.id.0, "nurse", Some("on my way"))
        .await
        .expect("acknowledging an open alert");
    assert_eq!(acked.state, AlertState::Acknowledged);
    assert_eq!(acked.acknowledged_by.as_deref(), Some("nurse"));
    let resolved = service
        .alerts
        .resolve(alert.id.0, "nurse")
        .await
        .expect("resolving an acknowledged alert");
    assert_eq!(resolved.state, AlertState::Resolved);
    // Closed: a conflict, not a missing alert; an id never used: not found.
    let again = service.alerts.acknowledge(alert.id.0, "nurse", None).await;
    assert!(
        matches!(again, Err(ActionError::Refused(AlertError::NotOpen(_)))),
        "{again:?}"
    );
    let unknown = service.alerts.acknowledge(9_999, "nurse", None).await;
    assert!(
        matches!(unknown, Err(ActionError::NotFound(9_999))),
        "{unknown:?}"
    );
    let zero = service.alerts.silence(alert.id.0, "nurse", 60).await;
    assert!(zero.is_err(), "a closed alert cannot be silenced: {zero:?}");
}

#[tokio::test]
async fn open_alerts_survive_a_restart_without_an_offline_burst() {
    let mut service = service(|config| config.registry.default_expected_interval_s = 60.0).await;
    let alert = raise(&mut service, "bed-6").await;
    let dir = service.stop().await;
    let mut restarted = crate::testing::service_in(dir, None, |config| {
        config.registry.default_expected_interval_s = 60.0;
    })
    .await;
    // Restored: actions on the alert work after the restart.
    let acked = restarted
        .alerts
        .acknowledge(alert.id.0, "nurse", None)
        .await
        .expect("the open alert was restored");
    assert_eq!(acked.device_id.as_str(), "bed-6");
    // The device counts as seen at the restart: offline only 3 intervals after it.
    tokio::time::pause();
    let offline = is(
        TransitionKind::Raised,
        AlertCondition::DeviceOffline,
        "bed-6",
    );
    let early = next(&mut restarted.events, Duration::from_secs(170), &offline).await;
    assert!(
        early.is_none(),
        "an offline burst after the restart: {early:?}"
    );
    let late = next(&mut restarted.events, Duration::from_secs(20), &offline).await;
    assert!(late.is_some(), "offline 3 intervals after the restart");
}

#[test]
fn thresholds_need_a_value_an_author_and_a_reason() {
    let site = RuleSet::default();
    let device = DeviceId::parse("bed-7", 64).expect("a valid id");
    let check = |thresholds: PatientThresholds, author: &str, reason: &str| {
        validate_thresholds(
            &site,
            &device,
            thresholds,
            author.to_owned(),
            reason.to_owned(),
            None,
        )
    };
    let tighter = PatientThresholds {
        heart_rate_max: Some(90.0),
        ..PatientThresholds::default()
    };
    assert!(check(tighter, "dr. who", "post-op").is_ok());
    assert!(matches!(
        check(PatientThresholds::default(), "dr. who", "post-op"),
        Err(ThresholdsError::Field(_))
    ));
    assert!(matches!(
        check(tighter, " ", "post-op"),
        Err(ThresholdsError::Field(_))
    ));
    assert!(matches!(
        check(tighter, "dr. who", ""),
        Err(ThresholdsError::Field(_))
    ));
}
