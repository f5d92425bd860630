//! The device registry and the quarantine: explicit registration, partial updates, the two
//! registry policies, deactivation, and the per-device counters.

use super::{Fixture, Open, at, normal, options, stored_id};
use vitalwatch::store::{
    DeviceRegistration, DeviceUpdate, ItemOutcome, ReadingQuery, RegistryPolicy, StoreError,
    StoreOptions,
};
use vitalwatch_core::rules::{AnomalyType, Severity};

fn registration(device_id: &str) -> DeviceRegistration {
    DeviceRegistration {
        device_id: device_id.to_owned(),
        patient_label: Some("Bed 1, J. Doe".to_owned()),
        location: Some("Ward 3B".to_owned()),
        expected_interval_s: Some(2.5),
    }
}

pub async fn registration_is_explicit_and_unique(open: Open) {
    let fx = Fixture::new(&open).await;
    let record = fx
        .store
        .register_device(registration("bed-2"), "admin:alice".to_owned())
        .await
        .unwrap();
    assert_eq!(record.device_id, "bed-2");
    assert_eq!(record.patient_label.as_deref(), Some("Bed 1, J. Doe"));
    assert_eq!(record.location.as_deref(), Some("Ward 3B"));
    assert_eq!(record.expected_interval_s, 2.5);
    assert_eq!(record.status, "active");
    assert_eq!(record.registered_by, "admin:alice");
    assert_eq!(record.total_readings, 0);
    assert_eq!(record.last_seen, None);
    assert_eq!(
        fx.store.get_device("bed-2".to_owned()).await.unwrap(),
        Some(record.clone())
    );

    let again = fx
        .store
        .register_device(registration("bed-2"), "admin:bob".to_owned())
        .await;
    assert!(
        matches!(&again, Err(StoreError::DeviceExists(id)) if id == "bed-2"),
        "{again:?}"
    );
    // Without an interval, the store's default applies.
    let plain = fx
        .store
        .register_device(
            DeviceRegistration {
                device_id: "bed-1".to_owned(),
                ..DeviceRegistration::default()
            },
            "admin:alice".to_owned(),
        )
        .await
        .unwrap();
    assert_eq!(
        plain.expected_interval_s,
        options().default_expected_interval_s
    );
    assert_eq!(plain.patient_label, None);

    let listed = fx.store.list_devices().await.unwrap();
    assert_eq!(listed, vec![plain, record], "by device id");
    assert_eq!(fx.store.get_device("bed-9".to_owned()).await.unwrap(), None);
    let audited = fx
        .store
        .last_audit("device.register".to_owned())
        .await
        .unwrap()
        .expect("registration is audited");
    assert_eq!(audited.target, "bed-1");
    assert_eq!(audited.actor, "admin:alice");
    fx.store.close().await;
}

pub async fn updates_are_partial_and_audited(open: Open) {
    let fx = Fixture::new(&open).await;
    let before = fx
        .store
        .register_device(registration("bed-1"), "admin".to_owned())
        .await
        .unwrap();
    let after = fx
        .store
        .update_device(
            "bed-1".to_owned(),
            DeviceUpdate {
                patient_label: Some(Some("Bed 1, R. Roe".to_owned())),
                location: Some(None),
                ..DeviceUpdate::default()
            },
            "nurse".to_owned(),
        )
        .await
        .unwrap();
    assert_eq!(after.patient_label.as_deref(), Some("Bed 1, R. Roe"));
    assert_eq!(after.location, None, "Some(None) clears");
    assert_eq!(
        after.expected_interval_s, before.expected_interval_s,
        "untouched"
    );
    assert_eq!(after.status, "active");
    let audited = fx
        .store
        .last_audit("device.update".to_owned())
        .await
        .unwrap()
        .expect("an update is audited");
    assert_eq!(audited.actor, "nurse");
    assert_eq!(audited.target, "bed-1");
    assert!(
        !audited.details.contains("R. Roe"),
        "no patient data in the audit trail: {}",
        audited.details
    );

    let deactivate = DeviceUpdate {
        active: Some(false),
        ..DeviceUpdate::default()
    };
    let inactive = fx
        .store
        .update_device("bed-1".to_owned(), deactivate.clone(), "admin".to_owned())
        .await
        .unwrap();
    assert_eq!(inactive.status, "inactive");
    assert!(
        fx.store
            .last_audit("device.deactivate".to_owned())
            .await
            .unwrap()
            .is_some()
    );
    let active = fx
        .store
        .update_device(
            "bed-1".to_owned(),
            DeviceUpdate {
                active: Some(true),
                expected_interval_s: Some(10.0),
                ..DeviceUpdate::default()
            },
            "admin".to_owned(),
        )
        .await
        .unwrap();
    assert_eq!(active.status, "active");
    assert_eq!(active.expected_interval_s, 10.0);
    assert!(
        fx.store
            .last_audit("device.reactivate".to_owned())
            .await
            .unwrap()
            .is_some()
    );

    let missing = fx
        .store
        .update_device("bed-9".to_owned(), deactivate, "admin".to_owned())
        .await;
    assert!(
        matches!(&missing, Err(StoreError::DeviceNotFound(id)) if id == "bed-9"),
        "{missing:?}"
    );
    fx.store.close().await;
}

pub async fn auto_register_registers_on_the_first_reading(open: Open) {
    let fx = Fixture::new(&open).await;
    let outcomes = fx.write(vec![normal("bed-1", at(0))]).await;
    assert!(
        matches!(
            outcomes[0],
            ItemOutcome::Stored {
                registered: true,
                ..
            }
        ),
        "{:?}",
        outcomes[0]
    );
    let device = fx
        .store
        .get_device("bed-1".to_owned())
        .await
        .unwrap()
        .expect("registered");
    assert_eq!(device.registered_by, "auto-register:http");
    assert_eq!(device.status, "active");
    assert_eq!(
        device.expected_interval_s,
        options().default_expected_interval_s
    );
    let audited = fx
        .store
        .last_audit("device.register".to_owned())
        .await
        .unwrap()
        .expect("auto-registration is audited");
    assert_eq!(audited.actor, "auto-register:http");
    fx.store.close().await;
}

pub async fn strict_policy_quarantines_unknown_devices(open: Open) {
    let strict = StoreOptions {
        policy: RegistryPolicy::Strict,
        unknown_device_severity: Severity::Warning,
        ..options()
    };
    let fx = Fixture::with(&open, strict).await;
    let outcomes = fx.write(vec![normal("ghost", at(0))]).await;
    let ItemOutcome::Quarantined {
        quarantine_id,
        anomalies,
    } = &outcomes[0]
    else {
        panic!("quarantined: {:?}", outcomes[0]);
    };
    assert!(*quarantine_id > 0);
    assert_eq!(anomalies.len(), 1, "{anomalies:?}");
    assert_eq!(anomalies[0].kind, AnomalyType::UnknownDevice);
    assert_eq!(anomalies[0].severity, Severity::Warning, "as configured");
    assert_eq!(anomalies[0].reading_id, None, "not patient data");
    assert_eq!(anomalies[0].device_id, "ghost");
    assert_eq!(fx.store.get_device("ghost".to_owned()).await.unwrap(), None);
    let readings = fx
        .store
        .readings(ReadingQuery {
            limit: 100,
            ..ReadingQuery::default()
        })
        .await
        .unwrap();
    assert!(readings.is_empty(), "{readings:?}");

    // A registered device reports normally under the strict policy.
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
    let outcomes = fx.write(vec![normal("bed-1", at(1))]).await;
    assert!(
        matches!(
            outcomes[0],
            ItemOutcome::Stored {
                registered: false,
                ..
            }
        ),
        "{:?}",
        outcomes[0]
    );
    fx.store.close().await;
}

pub async fn deactivated_devices_are_quarantined(open: Open) {
    let fx = Fixture::new(&open).await;
    fx.store_one(normal("bed-1", at(0))).await;
    fx.store
        .update_device(
            "bed-1".to_owned(),
            DeviceUpdate {
                active: Some(false),
                ..DeviceUpdate::default()
            },
            "admin".to_owned(),
        )
        .await
        .unwrap();
    let outcomes = fx.write(vec![normal("bed-1", at(1))]).await;
    match &outcomes[0] {
        ItemOutcome::Quarantined { anomalies, .. } => {
            assert_eq!(anomalies[0].kind, AnomalyType::UnknownDevice);
            assert_eq!(anomalies[0].severity, options().unknown_device_severity);
        }
        other => panic!("quarantined: {other:?}"),
    }
    fx.store
        .update_device(
            "bed-1".to_owned(),
            DeviceUpdate {
                active: Some(true),
                ..DeviceUpdate::default()
            },
            "admin".to_owned(),
        )
        .await
        .unwrap();
    fx.store_one(normal("bed-1", at(2))).await;
    let device = fx.store.get_device("bed-1".to_owned()).await.unwrap();
    assert_eq!(
        device.unwrap().total_readings,
        2,
        "the quarantined one is not counted"
    );
    fx.store.close().await;
}

pub async fn stored_readings_count_and_touch_their_device(open: Open) {
    let fx = Fixture::new(&open).await;
    let mut newer = normal("bed-1", at(60));
    newer.received_at = at(61);
    let mut older = normal("bed-1", at(0));
    older.received_at = at(62);
    let mut late = normal("bed-1", at(30));
    late.received_at = at(50);
    stored_id(&fx.write(vec![newer]).await[0]);
    stored_id(&fx.write(vec![older]).await[0]);
    stored_id(&fx.write(vec![late]).await[0]);
    let device = fx
        .store
        .get_device("bed-1".to_owned())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(device.total_readings, 3);
    assert_eq!(
        device.last_seen,
        Some(at(62).to_rfc3339()),
        "the latest receive time, whatever order they arrive in"
    );
    fx.store.close().await;
}

pub async fn one_write_of_many_readings_counts_each_device_s_own(open: Open) {
    let fx = Fixture::new(&open).await;
    let mut batch = Vec::new();
    for (device, sent, received) in [
        ("bed-1", 60, 61),
        ("bed-2", 10, 70),
        ("bed-1", 0, 62),
        ("bed-1", 30, 50),
        ("bed-2", 20, 65),
    ] {
        let mut reading = normal(device, at(sent));
        reading.received_at = at(received);
        batch.push(reading);
    }
    // The same reading again in the same write: a duplicate, not counted.
    let mut again = normal("bed-1", at(60));
    again.received_at = at(99);
    batch.push(again);
    let outcomes = fx.write(batch).await;
    assert!(
        matches!(outcomes[5], ItemOutcome::Duplicate { .. }),
        "{outcomes:?}"
    );
    for (device, total, last_seen) in [("bed-1", 3, 62), ("bed-2", 2, 70)] {
        let record = fx
            .store
            .get_device(device.to_owned())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(record.total_readings, total, "{device}");
        assert_eq!(
            record.last_seen,
            Some(at(last_seen).to_rfc3339()),
            "{device}"
        );
    }
    fx.store.close().await;
}
