//! Alerting: transitions persist an episode and its history, at most one open episode per
//! device and condition, the list order, verdicts and the readings they label, per-patient
//! thresholds, and finished webhook deliveries.

use super::{Fixture, Open, at, normal};
use vitalwatch::store::{AlertQuery, NewWebhookDelivery, StoreError, ThresholdsRecord};
use vitalwatch_core::alerting::{
    Alert, AlertCondition, AlertId, AlertState, AlertTransition, Priority, TransitionKind,
};
use vitalwatch_core::rules::PatientThresholds;
use vitalwatch_core::telemetry::Timestamp;

/// A freshly raised alert.
pub(crate) fn raised(
    id: u64,
    device_id: &str,
    condition: AlertCondition,
    opened: Timestamp,
) -> Alert {
    Alert {
        last_value: Some(150.0),
        threshold: Some(100.0),
        ..Alert::opened(
            AlertId(id),
            super::device(device_id),
            condition,
            Priority::Medium,
            opened,
        )
    }
}

pub(crate) fn transition(kind: TransitionKind, alert: &Alert, at: Timestamp) -> AlertTransition {
    AlertTransition {
        kind,
        alert: alert.clone(),
        at,
        message: String::new(),
    }
}

pub(crate) fn acknowledged(mut alert: Alert, by: &str, when: Timestamp) -> Alert {
    alert.state = AlertState::Acknowledged;
    alert.acknowledged_by = Some(by.to_owned());
    alert.acknowledged_at = Some(when);
    alert.acknowledged_note = Some("seen".to_owned());
    alert
}

fn resolved(mut alert: Alert, by: Option<&str>, when: Timestamp) -> Alert {
    alert.state = AlertState::Resolved;
    alert.condition_present = false;
    alert.resolved_at = Some(when);
    alert.resolved_by = by.map(str::to_owned);
    alert
}

fn all() -> AlertQuery {
    AlertQuery {
        limit: 100,
        ..AlertQuery::default()
    }
}

pub async fn transitions_persist_episodes_and_history(open: Open) {
    let fx = Fixture::new(&open).await;
    assert_eq!(fx.store.open_alerts().await.unwrap(), (0, Vec::new()));
    fx.store.write_alert_transitions(Vec::new()).await.unwrap();

    let alert = raised(1, "bed-1", AlertCondition::HeartRateHigh, at(0));
    let ack = acknowledged(alert.clone(), "nurse", at(30));
    let other = raised(2, "bed-2", AlertCondition::Spo2Low, at(10));
    fx.store
        .write_alert_transitions(vec![
            transition(TransitionKind::Raised, &alert, at(0)),
            transition(TransitionKind::Raised, &other, at(10)),
            transition(TransitionKind::Acknowledged, &ack, at(30)),
        ])
        .await
        .unwrap();
    let (max_id, mut open_alerts) = fx.store.open_alerts().await.unwrap();
    open_alerts.sort_by_key(|a| a.id);
    assert_eq!(max_id, 2);
    assert_eq!(
        open_alerts,
        vec![ack.clone(), other.clone()],
        "as last written"
    );

    let done = resolved(ack.clone(), Some("nurse"), at(60));
    fx.store
        .write_alert_transitions(vec![transition(TransitionKind::Resolved, &done, at(60))])
        .await
        .unwrap();
    let (max_id, open_alerts) = fx.store.open_alerts().await.unwrap();
    assert_eq!(max_id, 2, "resolved alerts still count for the next id");
    assert_eq!(open_alerts, vec![other]);

    let (record, history) = fx.store.alert(1).await.unwrap().expect("alert 1");
    assert_eq!(record.alert, done);
    assert!(!record.updated_at.is_empty());
    let kinds: Vec<&str> = history.iter().map(|e| e.kind.as_str()).collect();
    assert_eq!(kinds, ["raised", "acknowledged", "resolved"], "in order");
    assert!(history.iter().all(|e| e.alert_id == 1));
    assert_eq!(history[0].actor, None, "the engine raised it");
    assert_eq!(history[1].actor.as_deref(), Some("nurse"));
    assert_eq!(history[1].state, "acknowledged");
    assert_eq!(history[2].at, at(60).to_rfc3339());
    assert_eq!(history[2].value, Some(150.0));
    assert_eq!(fx.store.alert(99).await.unwrap(), None);
    fx.store.close().await;
}

pub async fn one_open_episode_per_device_and_condition(open: Open) {
    let fx = Fixture::new(&open).await;
    let first = raised(1, "bed-1", AlertCondition::HeartRateHigh, at(0));
    fx.store
        .write_alert_transitions(vec![transition(TransitionKind::Raised, &first, at(0))])
        .await
        .unwrap();
    let second = raised(2, "bed-1", AlertCondition::HeartRateHigh, at(5));
    let refused = fx
        .store
        .write_alert_transitions(vec![transition(TransitionKind::Raised, &second, at(5))])
        .await;
    assert!(refused.is_err(), "a second open episode is an error");
    assert_eq!(
        fx.store.alert(2).await.unwrap(),
        None,
        "nothing of it is stored"
    );
    // Another condition, or after the first resolved, is fine.
    let temp = raised(3, "bed-1", AlertCondition::TemperatureHigh, at(6));
    let done = resolved(first, None, at(7));
    let next = raised(4, "bed-1", AlertCondition::HeartRateHigh, at(8));
    fx.store
        .write_alert_transitions(vec![
            transition(TransitionKind::Raised, &temp, at(6)),
            transition(TransitionKind::Resolved, &done, at(7)),
            transition(TransitionKind::Raised, &next, at(8)),
        ])
        .await
        .unwrap();
    let (max_id, open_alerts) = fx.store.open_alerts().await.unwrap();
    assert_eq!(max_id, 4);
    assert_eq!(open_alerts.len(), 2);
    fx.store.close().await;
}

pub async fn alert_queries_list_open_first_then_by_priority(open: Open) {
    let fx = Fixture::new(&open).await;
    let low = Alert {
        priority: Priority::Low,
        ..raised(1, "bed-1", AlertCondition::LowBattery, at(0))
    };
    let high = Alert {
        priority: Priority::High,
        ..raised(2, "bed-2", AlertCondition::HeartRateHigh, at(10))
    };
    let ack = acknowledged(
        Alert {
            priority: Priority::High,
            ..raised(3, "bed-1", AlertCondition::HeartRateHigh, at(20))
        },
        "nurse",
        at(25),
    );
    let gone = resolved(
        Alert {
            priority: Priority::High,
            ..raised(4, "bed-1", AlertCondition::Spo2Low, at(30))
        },
        None,
        at(40),
    );
    let newer_low = Alert {
        priority: Priority::Low,
        ..raised(5, "bed-2", AlertCondition::LowBattery, at(50))
    };
    let transitions = [&low, &high, &ack, &gone, &newer_low]
        .into_iter()
        .map(|a| transition(TransitionKind::Raised, a, a.opened_at))
        .collect();
    fx.store.write_alert_transitions(transitions).await.unwrap();

    let ids = |records: Vec<vitalwatch::store::AlertRecord>| -> Vec<u64> {
        records.into_iter().map(|r| r.alert.id.0).collect()
    };
    // Active (high, then low newest first), acknowledged, resolved.
    assert_eq!(
        ids(fx.store.alerts(all()).await.unwrap()),
        vec![2, 5, 1, 3, 4]
    );
    let open_only = AlertQuery {
        open_only: true,
        ..all()
    };
    assert_eq!(
        ids(fx.store.alerts(open_only).await.unwrap()),
        vec![2, 5, 1, 3]
    );
    let resolved_only = AlertQuery {
        state: Some(AlertState::Resolved),
        ..all()
    };
    assert_eq!(ids(fx.store.alerts(resolved_only).await.unwrap()), vec![4]);
    let bed1_high = AlertQuery {
        device_id: Some("bed-1".to_owned()),
        priority: Some(Priority::High),
        ..all()
    };
    assert_eq!(ids(fx.store.alerts(bed1_high).await.unwrap()), vec![3, 4]);
    // Since: still open, or resolved at or after it.
    let since = AlertQuery {
        since: Some(at(45)),
        ..all()
    };
    assert_eq!(ids(fx.store.alerts(since).await.unwrap()), vec![2, 5, 1, 3]);
    let limited = AlertQuery { limit: 2, ..all() };
    assert_eq!(ids(fx.store.alerts(limited).await.unwrap()), vec![2, 5]);
    fx.store.close().await;
}

pub async fn verdicts_label_the_readings_of_their_episode(open: Open) {
    let fx = Fixture::new(&open).await;
    let missing = fx.store.set_alert_verdict(7, true, "dr".to_owned()).await;
    assert!(
        matches!(missing, Err(StoreError::AlertNotFound(7))),
        "{missing:?}"
    );
    assert!(fx.store.verdict_readings(100).await.unwrap().is_empty());

    let before = fx.store_one(normal("bed-1", at(0))).await;
    let during = [
        fx.store_one(normal("bed-1", at(100))).await,
        fx.store_one(normal("bed-1", at(150))).await,
    ];
    let after = fx.store_one(normal("bed-1", at(300))).await;
    let elsewhere = fx.store_one(normal("bed-2", at(120))).await;
    let true_alarm = resolved(
        raised(1, "bed-1", AlertCondition::HeartRateHigh, at(100)),
        None,
        at(200),
    );
    let false_alarm = raised(2, "bed-2", AlertCondition::Spo2Low, at(110));
    let unlabelled = raised(3, "bed-1", AlertCondition::TemperatureHigh, at(250));
    fx.store
        .write_alert_transitions(
            [&true_alarm, &false_alarm, &unlabelled]
                .into_iter()
                .map(|a| transition(TransitionKind::Raised, a, a.opened_at))
                .collect(),
        )
        .await
        .unwrap();
    fx.store
        .set_alert_verdict(1, true, "dr".to_owned())
        .await
        .unwrap();
    fx.store
        .set_alert_verdict(2, false, "dr".to_owned())
        .await
        .unwrap();

    let labelled = fx.store.verdict_readings(100).await.unwrap();
    let got: Vec<(i64, bool)> = labelled.iter().map(|(r, v)| (r.id, *v)).collect();
    assert_eq!(
        got,
        vec![(during[0], true), (during[1], true), (elsewhere, false)],
        "episodes in id order, each with its readings; before {before} and after {after} left out"
    );
    let limited = fx.store.verdict_readings(1).await.unwrap();
    assert_eq!(limited.len(), 1);
    let audited = fx
        .store
        .last_audit("alert.verdict".to_owned())
        .await
        .unwrap()
        .expect("a verdict is audited");
    assert_eq!(audited.target, "2");
    assert_eq!(audited.actor, "dr");
    fx.store.close().await;
}

pub(crate) fn thresholds(device_id: &str, max: f64) -> ThresholdsRecord {
    ThresholdsRecord {
        device_id: device_id.to_owned(),
        thresholds: PatientThresholds {
            heart_rate_min: Some(50.0),
            heart_rate_max: Some(max),
            body_temp_min: None,
            body_temp_max: None,
            // Issue 18's per-patient settings round-trip too (schema V6).
            spo2_scale: Some(vitalwatch_core::telemetry::Spo2Scale::Scale2),
            spo2_min: Some(88.0),
            respiratory_rate_min: None,
            respiratory_rate_max: Some(24.0),
            systolic_bp_min: Some(95.0),
            systolic_bp_max: None,
        },
        author: "dr".to_owned(),
        reason: "athlete".to_owned(),
        effective_from: at(0).to_rfc3339(),
        updated_at: String::new(),
    }
}

pub async fn thresholds_are_set_replaced_and_cleared(open: Open) {
    let fx = Fixture::new(&open).await;
    assert!(fx.store.thresholds(None).await.unwrap().is_empty());
    let set = fx
        .store
        .set_thresholds(thresholds("bed-2", 120.0))
        .await
        .unwrap();
    assert!(!set.updated_at.is_empty(), "the store stamps it");
    assert_eq!(set.thresholds.heart_rate_max, Some(120.0));
    fx.store
        .set_thresholds(thresholds("bed-1", 110.0))
        .await
        .unwrap();
    let replaced = fx
        .store
        .set_thresholds(thresholds("bed-2", 130.0))
        .await
        .unwrap();
    assert_eq!(
        fx.store.thresholds(Some("bed-2".to_owned())).await.unwrap(),
        vec![replaced]
    );
    let every: Vec<String> = fx
        .store
        .thresholds(None)
        .await
        .unwrap()
        .into_iter()
        .map(|t| t.device_id)
        .collect();
    assert_eq!(every, ["bed-1", "bed-2"], "by device");
    let audited = fx
        .store
        .last_audit("thresholds.set".to_owned())
        .await
        .unwrap()
        .expect("audited");
    assert_eq!(audited.target, "bed-2");

    let cleared = fx
        .store
        .clear_thresholds(
            "bed-2".to_owned(),
            "dr".to_owned(),
            Some("recovered".to_owned()),
        )
        .await
        .unwrap();
    assert!(cleared);
    assert!(
        fx.store
            .thresholds(Some("bed-2".to_owned()))
            .await
            .unwrap()
            .is_empty()
    );
    let again = fx
        .store
        .clear_thresholds("bed-2".to_owned(), "dr".to_owned(), None)
        .await
        .unwrap();
    assert!(!again, "nothing left to clear");
    let audited = fx
        .store
        .last_audit("thresholds.clear".to_owned())
        .await
        .unwrap()
        .expect("audited");
    assert_eq!(audited.target, "bed-2");
    fx.store.close().await;
}

pub(crate) fn delivery(n: u64, state: &'static str) -> NewWebhookDelivery {
    NewWebhookDelivery {
        url: format!("https://hooks.example/{n}"),
        alert_id: Some(n),
        transition: "raised".to_owned(),
        state,
        attempts: 1 + n as u32,
        last_status: Some(if state == "delivered" { 200 } else { 503 }),
        last_error: (state == "failed").then(|| "HTTP 503".to_owned()),
        created_at: at(n as i64),
        body: "{}".to_owned(),
    }
}

pub async fn webhook_deliveries_are_listed_newest_first(open: Open) {
    let fx = Fixture::new(&open).await;
    for (n, state) in [(1, "delivered"), (2, "failed"), (3, "delivered")] {
        fx.store
            .record_webhook_delivery(delivery(n, state))
            .await
            .unwrap();
    }
    let every = fx.store.webhook_deliveries(None, 100).await.unwrap();
    let alerts: Vec<Option<u64>> = every.iter().map(|d| d.alert_id).collect();
    assert_eq!(alerts, [Some(3), Some(2), Some(1)]);
    let failed = &every[1];
    assert_eq!(failed.url, "https://hooks.example/2");
    assert_eq!(failed.state, "failed");
    assert_eq!(failed.attempts, 3);
    assert_eq!(failed.last_status, Some(503));
    assert_eq!(failed.last_error.as_deref(), Some("HTTP 503"));
    assert_eq!(failed.created_at, at(2).to_rfc3339());
    assert!(!failed.finished_at.is_empty());
    let delivered = fx
        .store
        .webhook_deliveries(Some("delivered".to_owned()), 100)
        .await
        .unwrap();
    assert_eq!(delivered.len(), 2);
    assert!(delivered.iter().all(|d| d.state == "delivered"));
    assert_eq!(fx.store.webhook_deliveries(None, 1).await.unwrap().len(), 1);
    fx.store.close().await;
}
