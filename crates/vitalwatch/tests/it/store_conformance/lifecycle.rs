//! The store's life: retention purges each kind of row by its own age and records itself in
//! the audit chain (which still verifies), health while open, and refusals once closed.

use super::{Fixture, Open, normal, options, prepared, tachycardic};
use std::time::Duration;
use vitalwatch::store::audit::ChainCheck;
use vitalwatch::store::{
    AuditEntry, DeviceRegistration, PurgeCounts, RegistryPolicy, Retention, StoreError,
    StoreOptions,
};
use vitalwatch_core::telemetry::Timestamp;

const DAY_MICROS: i64 = 86_400 * 1_000_000;

fn days_before(now: Timestamp, days: i64) -> Timestamp {
    now.saturating_add_micros(-days * DAY_MICROS)
}

pub async fn retention_purges_by_age_and_keeps_the_chain_verifiable(open: Open) {
    // Audit rows are stamped with the wall clock, so ages are measured from it.
    let now = Timestamp::from_datetime(chrono::Utc::now());
    let strict = StoreOptions {
        policy: RegistryPolicy::Strict,
        ..options()
    };
    let fx = Fixture::with(&open, strict).await;
    let keep = Retention {
        readings_days: 30,
        anomalies_days: 365,
        audit_days: 2190,
    };
    let nothing = fx.store.purge(now, keep).await.unwrap();
    assert_eq!(nothing, PurgeCounts::default());
    assert_eq!(
        fx.store
            .last_audit("retention.purge".to_owned())
            .await
            .unwrap(),
        None,
        "a purge that removed nothing is not recorded"
    );

    fx.store
        .register_device(
            DeviceRegistration {
                device_id: "bed-1".to_owned(),
                ..DeviceRegistration::default()
            },
            "admin".to_owned(),
        )
        .await
        .unwrap();
    fx.write(vec![
        tachycardic("bed-1", days_before(now, 40)),
        tachycardic("bed-1", days_before(now, 35)),
        tachycardic("bed-1", days_before(now, 1)),
        normal("ghost", days_before(now, 40)),
    ])
    .await;
    let purged = fx.store.purge(now, keep).await.unwrap();
    assert_eq!(purged.readings, 2);
    assert_eq!(purged.quarantine, 1);
    assert_eq!(purged.anomalies, 0, "anomalies outlive their readings");
    assert_eq!(purged.audit, 0);
    let left = fx
        .store
        .readings(vitalwatch::store::ReadingQuery {
            limit: 100,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(left.len(), 1);
    let anomalies = fx
        .store
        .anomalies(vitalwatch::store::AnomalyQuery {
            limit: 100,
            ..Default::default()
        })
        .await
        .unwrap();
    let orphaned = anomalies.iter().filter(|a| a.reading_id.is_none()).count();
    // The two purged readings' anomalies, and the quarantined reading's (never had one).
    assert!(orphaned >= 3, "{anomalies:?}");
    let recorded = fx
        .store
        .last_audit("retention.purge".to_owned())
        .await
        .unwrap()
        .expect("a purge is audited");
    assert_eq!(recorded.actor, "system:retention");

    let shorter = Retention {
        anomalies_days: 10,
        ..keep
    };
    let purged = fx.store.purge(now, shorter).await.unwrap();
    assert!(purged.anomalies >= 3, "{purged:?}");
    assert_eq!(purged.readings, 0);

    // Purge the audit rows too (a day from now, keeping none older than a day): the purge's
    // own entry starts what remains, and the chain still verifies.
    let n_audit = fx.store.audit_log(0, 1000).await.unwrap().len() as u64;
    let later = now.saturating_add_micros(2 * DAY_MICROS);
    let purged = fx
        .store
        .purge(
            later,
            Retention {
                audit_days: 1,
                ..shorter
            },
        )
        .await
        .unwrap();
    assert_eq!(purged.audit, n_audit);
    let rows = fx.store.audit_log(0, 1000).await.unwrap();
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0].action, "retention.purge");
    let mut check = ChainCheck::default();
    check.feed(&rows).expect("the remaining chain verifies");
    check.finish().expect("and is vouched for");
    fx.store.close().await;
}

pub async fn health_is_ok_while_open(open: Open) {
    let fx = Fixture::new(&open).await;
    let health = fx.store.health().await;
    assert_eq!(health.status, "ok", "{health:?}");
    assert!(!health.backend.is_empty());
    assert_eq!(health.error, None);
    fx.store.close().await;
}

pub async fn a_closed_store_refuses_work(open: Open) {
    let fx = Fixture::new(&open).await;
    fx.store_one(normal("bed-1", super::at(0))).await;
    fx.store.close().await;
    let closed = |res: Result<(), StoreError>| matches!(res, Err(StoreError::Closed));

    let write = fx
        .store
        .write_readings(vec![prepared(normal("bed-1", super::at(1)))])
        .await;
    assert!(closed(write.map(drop)));
    let try_write = fx
        .store
        .try_write_readings(
            vec![prepared(normal("bed-1", super::at(2)))],
            Duration::from_secs(1),
        )
        .await;
    assert!(closed(try_write.map(drop)));
    let register = fx
        .store
        .register_device(
            DeviceRegistration {
                device_id: "bed-2".to_owned(),
                ..DeviceRegistration::default()
            },
            "admin".to_owned(),
        )
        .await;
    assert!(closed(register.map(drop)));
    let entry = AuditEntry {
        actor: "a".to_owned(),
        action: "b".to_owned(),
        target: "c".to_owned(),
        details: serde_json::json!({}),
    };
    assert!(closed(fx.store.audit(entry.clone()).await));
    match fx.store.try_audit_batch(vec![entry.clone()]) {
        Err((StoreError::Closed, back)) => assert_eq!(back, vec![entry], "handed back"),
        other => panic!("closed: {other:?}"),
    }
    // Closing twice is harmless.
    fx.store.close().await;
}
