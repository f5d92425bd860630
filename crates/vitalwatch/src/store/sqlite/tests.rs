//! Store behaviour that needs no server: retention and the durability settings.

use super::*;
use crate::store::{RegistryPolicy, Source};
use vitalwatch_core::rules::Severity;
use vitalwatch_core::rules::{RuleSet, check};
use vitalwatch_core::telemetry::DeviceId;
use vitalwatch_core::telemetry::Reading;

fn options() -> StoreOptions {
    StoreOptions {
        policy: RegistryPolicy::AutoRegister,
        default_expected_interval_s: 5.0,
        max_batch: 64,
        queue_capacity: 16,
        redelivery_window_s: 3600,
        unknown_device_severity: Severity::Critical,
    }
}

const DAY_MICROS: i64 = 86_400 * 1_000_000;

/// A reading received `days_ago` days before `now`, with a heart rate out of range.
fn reading(now: Timestamp, days_ago: i64, n: i64) -> PreparedReading {
    let at = now.saturating_add_micros(-days_ago * DAY_MICROS + n);
    let mut reading = Reading::empty(DeviceId::parse("bed-1", 64).unwrap(), at);
    reading.heart_rate_bpm = Some(130.0);
    reading.body_temp_c = Some(36.8);
    reading.signal_strength_dbm = Some(-60.0);
    reading.battery_pct = Some(80.0);
    let mut findings = Vec::new();
    check(&reading, &RuleSet::default(), &mut findings);
    PreparedReading {
        reading,
        findings,
        source: Source::Http,
        ml_score: None,
    }
}

fn count(path: &Path, table: &str) -> i64 {
    let conn = Connection::open(path).unwrap();
    conn.query_row(&format!("SELECT COUNT(*) FROM {table}"), [], |row| {
        row.get(0)
    })
    .unwrap()
}

#[tokio::test]
async fn retention_purges_each_kind_after_its_own_time() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("data/anomalies.db");
    let store = SqliteStore::open(&path, options()).unwrap();
    let now = Timestamp::from_secs(1_767_225_600);
    let items = vec![reading(now, 40, 0), reading(now, 40, 1), reading(now, 1, 2)];
    store.write_readings(items).await.unwrap();
    assert_eq!(count(&path, "readings"), 3);
    assert_eq!(count(&path, "anomalies"), 3);

    let retention = Retention {
        readings_days: 30,
        anomalies_days: 365,
        audit_days: 2190,
    };
    let purged = store.purge(now, retention).await.unwrap();
    assert_eq!(purged.readings, 2);
    assert_eq!(purged.anomalies, 0);
    assert_eq!(count(&path, "readings"), 1);
    // Anomalies outlive their readings; their reading reference is cleared, not dangling.
    assert_eq!(count(&path, "anomalies"), 3);
    let orphaned: i64 = Connection::open(&path)
        .unwrap()
        .query_row(
            "SELECT COUNT(*) FROM anomalies WHERE reading_id IS NULL",
            [],
            |row| row.get(0),
        )
        .unwrap();
    assert_eq!(orphaned, 2);

    let shorter = Retention {
        anomalies_days: 10,
        ..retention
    };
    let purged = store.purge(now, shorter).await.unwrap();
    assert_eq!(purged.anomalies, 2);
    assert_eq!(count(&path, "anomalies"), 1);
    // Each purge that removed something is itself audited.
    let conn = Connection::open(&path).unwrap();
    let purges: i64 = conn
        .query_row(
            "SELECT COUNT(*) FROM audit_log WHERE action = 'retention.purge'",
            [],
            |row| row.get(0),
        )
        .unwrap();
    assert_eq!(purges, 2);
    store.close().await;
}

#[tokio::test]
async fn durability_settings_are_in_force() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("anomalies.db");
    let store = SqliteStore::open(&path, options()).unwrap();
    let health = store.health().await;
    assert_eq!(health.status, "ok");
    assert_eq!(health.journal_mode, "wal");
    store.close().await;
    // A fresh connection sees the WAL mode persisted in the file.
    let mode: String = Connection::open(&path)
        .unwrap()
        .query_row("PRAGMA journal_mode", [], |row| row.get(0))
        .unwrap();
    assert_eq!(mode, "wal");
}

#[test]
fn the_checkpointer_copies_the_wal_back_without_a_commit_and_the_wal_starts_again() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("anomalies.db");
    let mut conn = schema::open_writer(&path).unwrap();
    let auto: i64 = conn
        .query_row("PRAGMA wal_autocheckpoint", [], |row| row.get(0))
        .unwrap();
    assert_eq!(auto, 0, "commits never checkpoint themselves");
    let checkpointer = checkpoint::start(&path, &mut conn).unwrap();
    conn.execute_batch("CREATE TABLE scratch (b BLOB)").unwrap();
    // Commits of about 64 pages each, until the WAL holds the checkpointer's threshold (its
    // file holds a 32-byte header and a 24-byte header per page).
    let wal = dir.path().join("anomalies.db-wal");
    let wal_pages = || (std::fs::metadata(&wal).unwrap().len().saturating_sub(32)) / (4096 + 24);
    let per_commit = 64;
    let mut commits = 0;
    while wal_pages() < checkpoint::CHECKPOINT_PAGES as u64 {
        let tx = conn.transaction().unwrap();
        for _ in 0..per_commit {
            tx.execute("INSERT INTO scratch VALUES (zeroblob(4000))", [])
                .unwrap();
        }
        tx.commit().unwrap();
        commits += 1;
    }
    // The checkpointer, woken by a commit's WAL hook, copies the whole WAL back on its own.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while checkpointer.complete() == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "no complete checkpoint within 60 s"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    // So the next commit starts the WAL again from its beginning: it holds that commit only.
    conn.execute("INSERT INTO scratch VALUES (zeroblob(10))", [])
        .unwrap();
    let observer = Connection::open(&path).unwrap();
    let (log, copied): (i64, i64) = observer
        .query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |row| {
            Ok((row.get(1)?, row.get(2)?))
        })
        .unwrap();
    assert!(log < 10 && copied == log, "log {log}, copied {copied}");
    let rows: i64 = observer
        .query_row("SELECT COUNT(*) FROM scratch", [], |row| row.get(0))
        .unwrap();
    assert_eq!(
        rows,
        per_commit * commits + 1,
        "every committed row is there"
    );
    checkpointer.stop(&mut conn);
}

/// (device, hour, readings) rows.
type HourCounts = Vec<(String, String, i64)>;

/// `reading_hours` as it would be recounted from `readings`, and as the writer kept it.
fn hours_recounted_and_kept(path: &Path) -> (HourCounts, HourCounts) {
    let conn = Connection::open(path).unwrap();
    let rows = |sql: &str| -> HourCounts {
        let mut stmt = conn.prepare(sql).unwrap();
        stmt.query_map([], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)))
            .unwrap()
            .map(Result::unwrap)
            .collect()
    };
    (
        rows(
            "SELECT device_id, substr(timestamp, 1, 13), COUNT(*) FROM readings GROUP BY 1, 2 ORDER BY 1, 2",
        ),
        rows("SELECT device_id, hour, n FROM reading_hours WHERE n > 0 ORDER BY 1, 2"),
    )
}

#[tokio::test]
async fn the_writer_counts_each_transactions_readings_per_device_and_hour() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("anomalies.db");
    let store = SqliteStore::open(&path, options()).unwrap();
    let now = Timestamp::from_secs(1_767_225_600);
    let hour = 3_600 * 1_000_000;
    let on = |device: &str, at_micros: i64| {
        let mut item = reading(now, 0, at_micros);
        item.reading.device_id = DeviceId::parse(device, 64).unwrap();
        item
    };
    // One transaction spanning two hours and two devices, with a redelivered reading.
    let first = vec![
        on("bed-1", 0),
        on("bed-1", 1),
        on("bed-1", hour),
        on("bed-2", 2),
        on("bed-1", 1),
    ];
    store.write_readings(first).await.unwrap();
    let (recounted, kept) = hours_recounted_and_kept(&path);
    assert_eq!(kept, recounted);
    assert_eq!(
        kept.iter().map(|(_, _, n)| n).sum::<i64>(),
        4,
        "the duplicate is not counted"
    );
    // A later transaction adds to the hours already counted.
    store
        .write_readings(vec![on("bed-1", 3), on("bed-2", hour + 1)])
        .await
        .unwrap();
    let (recounted, kept) = hours_recounted_and_kept(&path);
    assert_eq!(kept, recounted);
    assert_eq!(kept.len(), 4);
    store.close().await;
}
