//! Readings and anomalies: what is stored comes back as it went in, a reading is stored once
//! (by timestamp, and by a redelivered `seq` within the window), findings become anomalies,
//! and the list queries filter and page as documented.

use super::{Fixture, Open, at, normal, options, prepared, stored_id, tachycardic};
use std::time::Duration;
use vitalwatch::store::{AnomalyQuery, ItemOutcome, ReadingQuery, ReadingRecord, Source};
use vitalwatch_core::rules::AnomalyType;
use vitalwatch_core::telemetry::{Consciousness, Timestamp};

fn of_device(device_id: &str) -> ReadingQuery {
    ReadingQuery {
        device_id: Some(device_id.to_owned()),
        limit: 100,
        ..ReadingQuery::default()
    }
}

fn ids(records: &[ReadingRecord]) -> Vec<i64> {
    records.iter().map(|r| r.id).collect()
}

pub async fn readings_round_trip(open: Open) {
    let fx = Fixture::new(&open).await;
    let mut full = normal("bed-1", at(0));
    full.received_at = at(2);
    full.timestamp_from_device = true;
    full.spo2_pct = Some(97.0);
    full.respiratory_rate_per_min = Some(16.0);
    full.systolic_bp_mmhg = Some(120.0);
    full.diastolic_bp_mmhg = Some(80.0);
    full.consciousness = Some(Consciousness::Alert);
    full.on_oxygen = Some(false);
    full.seq = Some(41);
    full.extra = Some(r#"{"ward":"3B"}"#.to_owned());
    let mut sparse = vitalwatch_core::telemetry::Reading::empty(super::device("bed-1"), at(5));
    sparse.timestamp_from_device = false;

    let mut items = vec![prepared(full.clone()), prepared(sparse.clone())];
    items[0].ml_score = Some(0.25);
    items[1].source = Source::Mqtt;
    let written = fx.store.write_readings(items).await.unwrap();
    // Each reading comes back, in order, with its outcome.
    assert_eq!(written.len(), 2);
    assert_eq!(written[0].item.reading, full);
    assert_eq!(written[0].item.ml_score, Some(0.25));
    assert_eq!(written[1].item.reading, sparse);
    assert_eq!(written[1].item.source, Source::Mqtt);
    let outcomes: Vec<ItemOutcome> = written.into_iter().map(|w| w.outcome).collect();
    let first = stored_id(&outcomes[0]);
    let second = stored_id(&outcomes[1]);
    assert!(second > first, "ids grow: {first} then {second}");
    assert!(
        matches!(
            outcomes[0],
            ItemOutcome::Stored {
                registered: true,
                ..
            }
        ),
        "the first reading registers its device: {:?}",
        outcomes[0]
    );
    assert!(
        matches!(
            outcomes[1],
            ItemOutcome::Stored {
                registered: false,
                ..
            }
        ),
        "{:?}",
        outcomes[1]
    );

    let stored = fx.store.readings(of_device("bed-1")).await.unwrap();
    assert_eq!(
        stored,
        vec![
            ReadingRecord::from_reading(second, &sparse, Source::Mqtt),
            ReadingRecord::from_reading(first, &full, Source::Http).with_ml_score(Some(0.25)),
        ],
        "newest first, every field as written"
    );
    assert_eq!(stored[1].extra, Some(serde_json::json!({ "ward": "3B" })));
    fx.store.close().await;
}

pub async fn an_empty_write_stores_nothing(open: Open) {
    let fx = Fixture::new(&open).await;
    assert!(
        fx.store
            .write_readings(Vec::new())
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        fx.store
            .try_write_readings(Vec::new(), Duration::from_secs(1))
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(fx.store.max_event_ids().await.unwrap(), (0, 0));
    assert!(fx.store.list_devices().await.unwrap().is_empty());
    fx.store.close().await;
}

pub async fn the_same_timestamp_is_stored_once(open: Open) {
    let fx = Fixture::new(&open).await;
    let first = fx.store_one(normal("bed-1", at(0))).await;
    // Again later, and twice within one batch: each time the first one's id.
    let mut again = normal("bed-1", at(0));
    again.heart_rate_bpm = Some(99.0);
    again.received_at = at(30);
    let outcomes = fx
        .write(vec![again.clone(), again, normal("bed-1", at(1))])
        .await;
    assert_eq!(outcomes[0], ItemOutcome::Duplicate { reading_id: first });
    assert_eq!(outcomes[1], ItemOutcome::Duplicate { reading_id: first });
    let third = stored_id(&outcomes[2]);
    // The same timestamp on another device is another reading.
    fx.store_one(normal("bed-2", at(0))).await;

    let stored = fx.store.readings(of_device("bed-1")).await.unwrap();
    assert_eq!(ids(&stored), vec![third, first]);
    assert_eq!(stored[1].heart_rate, Some(72.0), "the first write wins");
    let device = fx.store.get_device("bed-1".to_owned()).await.unwrap();
    assert_eq!(
        device.unwrap().total_readings,
        2,
        "duplicates are not counted"
    );
    fx.store.close().await;
}

pub async fn a_redelivered_seq_is_a_duplicate_within_the_window(open: Open) {
    let fx = Fixture::with(
        &open,
        vitalwatch::store::StoreOptions {
            redelivery_window_s: 60,
            ..options()
        },
    )
    .await;
    let with_seq = |seq: u64, timestamp: i64, received: i64| {
        let mut reading = normal("bed-1", at(timestamp));
        reading.seq = Some(seq);
        reading.received_at = at(received);
        reading
    };
    let first = fx.store_one(with_seq(7, 0, 0)).await;
    // A redelivery with a re-stamped timestamp, 30 s later: the same reading.
    let outcomes = fx.write(vec![with_seq(7, 1, 30)]).await;
    assert_eq!(outcomes[0], ItemOutcome::Duplicate { reading_id: first });
    // Past the window the sequence number may have wrapped or restarted: a new reading.
    let late = fx.store_one(with_seq(7, 2, 120)).await;
    // Another sequence number within the window is another reading.
    let other = fx.store_one(with_seq(8, 3, 121)).await;
    // The same seq on another device is another reading.
    let mut elsewhere = with_seq(7, 4, 121);
    elsewhere.device_id = super::device("bed-2");
    fx.store_one(elsewhere).await;

    let stored = fx.store.readings(of_device("bed-1")).await.unwrap();
    assert_eq!(ids(&stored), vec![other, late, first]);
    fx.store.close().await;
}

pub async fn findings_become_anomalies_of_their_reading(open: Open) {
    let fx = Fixture::new(&open).await;
    let outcomes = fx
        .write(vec![tachycardic("bed-1", at(0)), normal("bed-1", at(1))])
        .await;
    let ItemOutcome::Stored {
        reading_id,
        anomalies,
        ..
    } = &outcomes[0]
    else {
        panic!("stored: {:?}", outcomes[0]);
    };
    let hr: Vec<_> = anomalies
        .iter()
        .filter(|a| a.kind == AnomalyType::OutOfRangeHr)
        .collect();
    assert_eq!(hr.len(), 1, "{anomalies:?}");
    assert_eq!(hr[0].value, Some(150.0));
    assert!(hr[0].threshold.is_some());
    for anomaly in anomalies {
        assert_eq!(anomaly.reading_id, Some(*reading_id));
        assert_eq!(anomaly.device_id, "bed-1");
        assert_eq!(
            anomaly.detected_at,
            at(0).to_rfc3339(),
            "detected when received"
        );
    }
    match &outcomes[1] {
        ItemOutcome::Stored { anomalies, .. } => assert!(anomalies.is_empty(), "{anomalies:?}"),
        other => panic!("stored: {other:?}"),
    }
    let listed = fx
        .store
        .anomalies(AnomalyQuery {
            device_id: Some("bed-1".to_owned()),
            limit: 100,
            ..AnomalyQuery::default()
        })
        .await
        .unwrap();
    let mut expected = anomalies.clone();
    expected.reverse();
    assert_eq!(listed, expected, "as returned at write time, newest first");
    fx.store.close().await;
}

pub async fn reading_queries_filter_and_page(open: Open) {
    let fx = Fixture::new(&open).await;
    let mut ids_by_time = Vec::new();
    for secs in 0..5 {
        ids_by_time.push(fx.store_one(normal("bed-1", at(secs * 60))).await);
    }
    fx.store_one(normal("bed-2", at(60))).await;
    let query =
        |since: Option<Timestamp>, until: Option<Timestamp>, before_id, limit| ReadingQuery {
            device_id: Some("bed-1".to_owned()),
            since,
            until,
            before_id,
            limit,
        };
    let get = |q: ReadingQuery| {
        let store = std::sync::Arc::clone(&fx.store);
        async move { ids(&store.readings(q).await.unwrap()) }
    };
    let newest_first: Vec<i64> = ids_by_time.iter().rev().copied().collect();
    assert_eq!(get(query(None, None, None, 100)).await, newest_first);
    // Bounds are inclusive, on the reading's timestamp.
    assert_eq!(
        get(query(Some(at(60)), Some(at(180)), None, 100)).await,
        newest_first[1..4]
    );
    // A page and the next one.
    assert_eq!(get(query(None, None, None, 2)).await, newest_first[..2]);
    assert_eq!(
        get(query(None, None, Some(newest_first[1]), 2)).await,
        newest_first[2..4]
    );
    // Every device when none is named.
    let all = fx
        .store
        .readings(ReadingQuery {
            limit: 100,
            ..ReadingQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(all.len(), 6);
    assert!(
        get(query(Some(at(10_000)), None, None, 100))
            .await
            .is_empty()
    );
    fx.store.close().await;
}

pub async fn anomaly_queries_filter_and_page(open: Open) {
    let fx = Fixture::new(&open).await;
    for secs in 0..3 {
        fx.store_one(tachycardic("bed-1", at(secs * 60))).await;
    }
    let mut weak = normal("bed-2", at(30));
    weak.signal_strength_dbm = Some(-120.0);
    fx.store_one(weak).await;
    let hr = |before_id, limit| AnomalyQuery {
        kind: Some(AnomalyType::OutOfRangeHr),
        before_id,
        limit,
        ..AnomalyQuery::default()
    };
    let all_hr = fx.store.anomalies(hr(None, 100)).await.unwrap();
    assert_eq!(all_hr.len(), 3, "{all_hr:?}");
    assert!(all_hr.windows(2).all(|w| w[0].id > w[1].id), "newest first");
    assert!(all_hr.iter().all(|a| a.device_id == "bed-1"));
    let page = fx.store.anomalies(hr(None, 2)).await.unwrap();
    assert_eq!(page, all_hr[..2]);
    let next = fx.store.anomalies(hr(Some(page[1].id), 2)).await.unwrap();
    assert_eq!(next, all_hr[2..]);

    let bed2 = fx
        .store
        .anomalies(AnomalyQuery {
            device_id: Some("bed-2".to_owned()),
            limit: 100,
            ..AnomalyQuery::default()
        })
        .await
        .unwrap();
    assert!(!bed2.is_empty());
    assert!(bed2.iter().all(|a| a.kind != AnomalyType::OutOfRangeHr));
    let severity = all_hr[0].severity;
    let by_severity = fx
        .store
        .anomalies(AnomalyQuery {
            severity: Some(severity),
            limit: 100,
            ..AnomalyQuery::default()
        })
        .await
        .unwrap();
    assert!(by_severity.iter().all(|a| a.severity == severity));
    assert!(by_severity.len() >= 3);
    // Time bounds are on detection (receive) time.
    let windowed = fx
        .store
        .anomalies(AnomalyQuery {
            since: Some(at(60)),
            until: Some(at(60)),
            kind: Some(AnomalyType::OutOfRangeHr),
            limit: 100,
            ..AnomalyQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(windowed, all_hr[1..2]);
    fx.store.close().await;
}

pub async fn normal_readings_are_those_without_anomalies(open: Open) {
    let fx = Fixture::new(&open).await;
    let a = fx.store_one(normal("bed-1", at(0))).await;
    fx.store_one(tachycardic("bed-1", at(60))).await;
    let b = fx.store_one(normal("bed-2", at(120))).await;
    let c = fx.store_one(normal("bed-1", at(180))).await;
    let all = fx.store.normal_readings(None, 100).await.unwrap();
    assert_eq!(
        ids(&all),
        vec![a, b, c],
        "oldest first, anomalous ones left out"
    );
    let since = fx.store.normal_readings(Some(at(120)), 100).await.unwrap();
    assert_eq!(ids(&since), vec![b, c]);
    let limited = fx.store.normal_readings(None, 2).await.unwrap();
    assert_eq!(ids(&limited), vec![a, b]);
    fx.store.close().await;
}

pub async fn events_after_resume_a_stream(open: Open) {
    let fx = Fixture::new(&open).await;
    let first = fx.store_one(tachycardic("bed-1", at(0))).await;
    let (max_reading, max_anomaly) = fx.store.max_event_ids().await.unwrap();
    assert_eq!(max_reading, first);
    assert!(max_anomaly > 0);
    let second = fx.store_one(tachycardic("bed-1", at(60))).await;
    let third = fx.store_one(normal("bed-1", at(120))).await;

    let (readings, anomalies) = fx
        .store
        .events_after(max_reading, max_anomaly, 100)
        .await
        .unwrap();
    assert_eq!(ids(&readings), vec![second, third], "oldest first");
    assert!(!anomalies.is_empty());
    assert!(anomalies.iter().all(|a| a.id > max_anomaly));
    assert!(anomalies.iter().all(|a| a.reading_id == Some(second)));
    assert!(anomalies.windows(2).all(|w| w[0].id < w[1].id));
    let (limited, _) = fx.store.events_after(0, 0, 1).await.unwrap();
    assert_eq!(ids(&limited), vec![first]);
    let (max_reading, max_anomaly_now) = fx.store.max_event_ids().await.unwrap();
    assert_eq!(max_reading, third);
    assert_eq!(max_anomaly_now, anomalies.last().unwrap().id);
    fx.store.close().await;
}

pub async fn try_write_stores_when_there_is_room(open: Open) {
    let fx = Fixture::new(&open).await;
    let outcomes = fx
        .store
        .try_write_readings(
            vec![prepared(normal("bed-1", at(0)))],
            Duration::from_secs(5),
        )
        .await
        .unwrap();
    let id = stored_id(&outcomes[0].outcome);
    let stored = fx.store.readings(of_device("bed-1")).await.unwrap();
    assert_eq!(ids(&stored), vec![id]);
    fx.store.close().await;
}
