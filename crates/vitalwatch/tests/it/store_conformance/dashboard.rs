//! The dashboard's queries: counts over a window, downsampled series with mean/min/max per
//! bucket, and the newest reading of each device.

use super::{Fixture, Open, at, normal, tachycardic};
use vitalwatch::store::series::{SeriesQuery, Window};

pub async fn stats_count_the_window(open: Open) {
    let fx = Fixture::new(&open).await;
    // Two hours of bed-1 (one anomalous reading in each), one reading of bed-2.
    for minute in [0, 30, 59, 60, 90, 119] {
        let timestamp = at(minute * 60);
        let reading = if minute % 60 == 0 {
            tachycardic("bed-1", timestamp)
        } else {
            normal("bed-1", timestamp)
        };
        fx.store_one(reading).await;
    }
    fx.store_one(normal("bed-2", at(45 * 60))).await;
    let now = at(120 * 60);

    let everything = fx
        .store
        .dashboard_stats(Window::default(), now)
        .await
        .unwrap();
    assert_eq!(everything.total_devices, 2);
    assert_eq!(everything.readings, 7);
    assert_eq!(everything.anomalous_readings, 2);
    assert!(everything.anomalies >= 2);
    assert!((everything.anomaly_rate - 2.0 / 7.0).abs() < 1e-9);
    let by_device: Vec<(&str, i64)> = everything
        .by_device
        .iter()
        .map(|d| (d.device_id.as_str(), d.readings))
        .collect();
    assert_eq!(by_device, [("bed-1", 6), ("bed-2", 1)]);
    assert_eq!(
        everything.by_type.iter().map(|t| t.count).sum::<i64>(),
        everything.anomalies
    );
    assert!(
        everything
            .by_type
            .iter()
            .any(|t| t.kind == "OUT_OF_RANGE_HR")
    );
    assert_eq!(
        everything.by_severity.iter().map(|s| s.count).sum::<i64>(),
        everything.anomalies
    );
    // Devices seen in the hour before `now` (by receive time), whatever the window.
    assert_eq!(everything.active_last_hour, 1);

    // A window across the hour boundary, inclusive at both ends.
    let window = Window {
        since: Some(at(59 * 60)),
        until: Some(at(90 * 60)),
        device_id: None,
    };
    let part = fx.store.dashboard_stats(window, now).await.unwrap();
    assert_eq!(part.readings, 3, "minutes 59, 60 and 90");
    assert_eq!(part.anomalous_readings, 1);
    let one = Window {
        device_id: Some("bed-2".to_owned()),
        ..Window::default()
    };
    let bed2 = fx.store.dashboard_stats(one, now).await.unwrap();
    assert_eq!(bed2.total_devices, 1);
    assert_eq!(bed2.readings, 1);
    assert_eq!(bed2.anomalies, 0);
    assert_eq!(bed2.anomaly_rate, 0.0);
    fx.store.close().await;
}

pub async fn series_bucket_each_device(open: Open) {
    let fx = Fixture::new(&open).await;
    for (secs, bpm) in [(0, 60.0), (5, 70.0), (10, 80.0), (25, 90.0)] {
        let mut reading = normal("bed-1", at(secs));
        reading.heart_rate_bpm = Some(bpm);
        fx.store_one(reading).await;
    }
    fx.store_one(normal("bed-3", at(1000))).await;
    let series = fx
        .store
        .series(SeriesQuery {
            device_ids: vec!["bed-1".to_owned(), "bed-2".to_owned(), "bed-3".to_owned()],
            since: at(0),
            until: at(60),
            points: 6,
            metrics: vec!["heart_rate", "body_temp"],
        })
        .await
        .unwrap();
    assert_eq!(
        series.len(),
        1,
        "only devices with data in the window: {series:?}"
    );
    let bed1 = &series[0];
    assert_eq!(bed1.device_id, "bed-1");
    assert_eq!(bed1.bucket_s, 10);
    let t0 = at(0).millis() / 1000;
    assert_eq!(bed1.t, [t0, t0 + 10, t0 + 20]);
    assert_eq!(bed1.count, [2, 1, 1]);
    let names: Vec<&str> = bed1.metrics.iter().map(|m| m.name).collect();
    assert_eq!(names, ["heart_rate", "body_temp"]);
    let hr = &bed1.metrics[0];
    assert_eq!(hr.avg, [Some(65.0), Some(80.0), Some(90.0)]);
    assert_eq!(hr.min, [Some(60.0), Some(80.0), Some(90.0)]);
    assert_eq!(hr.max, [Some(70.0), Some(80.0), Some(90.0)]);
    assert_eq!(bed1.metrics[1].avg, [Some(36.8); 3]);
    fx.store.close().await;
}

pub async fn series_come_in_the_order_asked(open: Open) {
    // A backend may split the devices over several connections; the answer keeps the order
    // of the request, whatever the split.
    let fx = Fixture::new(&open).await;
    let ids = ["bed-5", "bed-1", "bed-4", "bed-2", "bed-3"];
    for (idx, id) in ids.iter().enumerate() {
        fx.store_one(normal(id, at(idx as i64))).await;
    }
    for count in 1..=ids.len() {
        let asked: Vec<String> = ids[..count].iter().map(|id| (*id).to_owned()).collect();
        let series = fx
            .store
            .series(SeriesQuery {
                device_ids: asked.clone(),
                since: at(0),
                until: at(60),
                points: 6,
                metrics: vec!["heart_rate"],
            })
            .await
            .unwrap();
        let got: Vec<&str> = series.iter().map(|s| s.device_id.as_str()).collect();
        assert_eq!(got, asked, "{count} devices");
        assert!(series.iter().all(|s| s.count.iter().sum::<i64>() == 1));
    }
    fx.store.close().await;
}

pub async fn latest_readings_are_one_per_device(open: Open) {
    let fx = Fixture::new(&open).await;
    fx.store_one(normal("bed-1", at(0))).await;
    let newest_1 = fx.store_one(normal("bed-1", at(60))).await;
    // Stored later, measured earlier: not the newest.
    fx.store_one(normal("bed-1", at(30))).await;
    let newest_2 = fx.store_one(normal("bed-2", at(10))).await;
    let latest = fx.store.latest_readings(Window::default()).await.unwrap();
    let got: Vec<(&str, i64)> = latest
        .iter()
        .map(|r| (r.device_id.as_str(), r.id))
        .collect();
    assert_eq!(got, [("bed-1", newest_1), ("bed-2", newest_2)]);
    let early = Window {
        until: Some(at(20)),
        ..Window::default()
    };
    let latest = fx.store.latest_readings(early).await.unwrap();
    let times: Vec<String> = latest.iter().map(|r| r.timestamp.clone()).collect();
    assert_eq!(times, [at(0).to_rfc3339(), at(10).to_rfc3339()]);
    let one = Window {
        device_id: Some("bed-2".to_owned()),
        ..Window::default()
    };
    assert_eq!(fx.store.latest_readings(one).await.unwrap().len(), 1);
    fx.store.close().await;
}
