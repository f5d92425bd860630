//! The PostgreSQL backend end to end: the test clusters themselves, the service and its
//! commands on `--database postgres://…`.

use crate::support::postgres::Cluster;

#[test]
fn a_test_cluster_gives_each_test_a_database_of_its_own() {
    let cluster = Cluster::shared();
    let one = cluster.database();
    let two = cluster.database();
    one.sql("CREATE TABLE t (x int); INSERT INTO t VALUES (1)");
    assert_eq!(one.sql("SELECT count(*) FROM t"), "1");
    assert_eq!(
        two.sql("SELECT count(*) FROM pg_tables WHERE tablename = 't'"),
        "0",
        "databases are separate"
    );
    assert_eq!(
        cluster.superuser_sql("SHOW server_version_num").get(..2),
        Some("15")
    );
    assert!(
        one.url()
            .ends_with(&format!(":{}/{}", cluster.port(), one.name)),
        "{}",
        one.url()
    );
    assert!(
        cluster
            .log()
            .contains("database system is ready to accept connections"),
        "the server's log is readable"
    );
    let name = one.name.clone();
    drop(one);
    assert_eq!(
        cluster.superuser_sql(&format!(
            "SELECT count(*) FROM pg_database WHERE datname = '{name}'"
        )),
        "0",
        "a database is dropped with its guard"
    );
}

mod store {
    use crate::store_conformance::{at, normal, options, prepared};
    use crate::support::postgres::{Cluster, PASSWORD};
    use crate::support::wait::eventually;
    use std::time::Duration;
    use vitalwatch::store::postgres::{PostgresSettings, PostgresStore};
    use vitalwatch::store::{ItemOutcome, ReadingQuery, Store, StoreError};

    async fn open(url: &str, settings: PostgresSettings) -> Result<PostgresStore, StoreError> {
        PostgresStore::open(url, options(), settings).await
    }

    #[tokio::test]
    async fn lossy_commit_settings_are_refused_unless_allowed() {
        let cluster = Cluster::shared();
        let database = cluster.database();
        for lossy in ["off", "local"] {
            database.sql(&format!(
                "ALTER DATABASE {} SET synchronous_commit = {lossy}",
                database.name
            ));
            let err = open(&database.url(), PostgresSettings::default())
                .await
                .err()
                .expect("a lossy synchronous_commit is refused");
            let text = err.to_string();
            assert!(
                text.contains(&format!("synchronous_commit={lossy}")),
                "{text}"
            );
            assert!(
                text.contains("allow_async_commit"),
                "says how to opt in: {text}"
            );
            assert!(!text.contains(PASSWORD), "{text}");
            let allowed = open(
                &database.url(),
                PostgresSettings {
                    allow_async_commit: true,
                    ..PostgresSettings::default()
                },
            )
            .await
            .expect("opens when the operator opted in");
            assert_eq!(allowed.health().await.synchronous, lossy);
            allowed.close().await;
        }
    }

    /// Two stores on one database (two processes, in effect) extend one chain: every entry
    /// links to the one before, whichever writer wrote it.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_audit_chain_stays_exact_under_concurrent_writers() {
        use vitalwatch::store::DeviceRegistration;
        use vitalwatch::store::audit::ChainCheck;
        let database = Cluster::shared().database();
        let stores: Vec<std::sync::Arc<PostgresStore>> = vec![
            std::sync::Arc::new(
                open(&database.url(), PostgresSettings::default())
                    .await
                    .unwrap(),
            ),
            std::sync::Arc::new(
                open(&database.url(), PostgresSettings::default())
                    .await
                    .unwrap(),
            ),
        ];
        let tasks: Vec<_> = (0..4)
            .map(|task| {
                let store = std::sync::Arc::clone(&stores[task % 2]);
                tokio::spawn(async move {
                    for n in 0..25 {
                        store
                            .register_device(
                                DeviceRegistration {
                                    device_id: format!("bed-{task}-{n}"),
                                    ..DeviceRegistration::default()
                                },
                                format!("writer-{task}"),
                            )
                            .await
                            .expect("an audited registration commits");
                    }
                })
            })
            .collect();
        for task in tasks {
            task.await.unwrap();
        }
        let rows = stores[0].audit_log(0, 1000).await.unwrap();
        assert_eq!(rows.len(), 100);
        assert_eq!(
            rows.iter().map(|r| r.id).collect::<Vec<_>>(),
            (1..=100).collect::<Vec<i64>>(),
            "one gap-free sequence of entries"
        );
        let writers: std::collections::HashSet<&str> =
            rows.iter().map(|r| r.actor.as_str()).collect();
        assert_eq!(writers.len(), 4, "every writer's entries are in the chain");
        let mut check = ChainCheck::default();
        check
            .feed(&rows)
            .expect("each entry links to the one before");
        check.finish().expect("from the genesis");
        for store in stores {
            store.close().await;
        }
    }

    #[tokio::test]
    async fn a_wrong_password_is_an_error_that_does_not_repeat_it() {
        let cluster = Cluster::shared();
        let database = cluster.database();
        let wrong = database.url().replace(PASSWORD, "Wrong-Password-913");
        let err = open(&wrong, PostgresSettings::default())
            .await
            .err()
            .expect("a wrong password is refused");
        let text = err.to_string();
        assert!(!text.contains("Wrong-Password-913"), "{text}");
        assert!(
            text.contains(&format!(
                "vitalwatch@127.0.0.1:{}/{}",
                cluster.port(),
                database.name
            )),
            "names the database without its password: {text}"
        );
    }

    #[tokio::test]
    async fn ingest_waits_while_the_database_is_down_and_resumes_by_itself() {
        let cluster = Cluster::start();
        let database = cluster.database();
        let store = std::sync::Arc::new(
            open(&database.url(), PostgresSettings::default())
                .await
                .expect("opens"),
        );
        store
            .write_readings(vec![prepared(normal("bed-1", at(0)))])
            .await
            .expect("stored while up");

        cluster.stop_immediate();
        let pending = tokio::spawn({
            let store = std::sync::Arc::clone(&store);
            async move {
                store
                    .write_readings(vec![prepared(normal("bed-1", at(1)))])
                    .await
            }
        });
        eventually("health to report the database unavailable", || {
            let store = std::sync::Arc::clone(&store);
            async move {
                let health = store.health().await;
                (health.status == "unavailable").then_some(health)
            }
        })
        .await;
        eventually("new writes to be refused as busy", || {
            let store = std::sync::Arc::clone(&store);
            async move {
                let res = store
                    .try_write_readings(
                        vec![prepared(normal("bed-1", at(2)))],
                        Duration::from_millis(50),
                    )
                    .await;
                matches!(res, Err(StoreError::Busy)).then_some(())
            }
        })
        .await;
        assert!(
            !pending.is_finished(),
            "nothing is answered while the database is down"
        );

        cluster.start_again();
        let outcome = pending
            .await
            .expect("the write task ends")
            .expect("the waiting write commits once the database is back");
        assert!(
            matches!(outcome[0].outcome, ItemOutcome::Stored { .. }),
            "{outcome:?}"
        );
        eventually("health to be ok again", || {
            let store = std::sync::Arc::clone(&store);
            async move { (store.health().await.status == "ok").then_some(()) }
        })
        .await;
        let stored = store
            .readings(ReadingQuery {
                limit: 10,
                ..ReadingQuery::default()
            })
            .await
            .unwrap();
        assert_eq!(
            stored.len(),
            2,
            "the reading before and the one during the outage"
        );
        store.close().await;
    }

    /// Partitions are made one node at a time: a store opening while another session holds
    /// the partition lock waits for it (seen in `pg_locks`), then opens and finds every day's
    /// partition there.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn partitions_are_created_one_node_at_a_time() {
        /// The store's partition lock (`schema::PARTITION_LOCK`, 0x5657_0000_0000_0004) as
        /// `pg_locks` shows a bigint key: its high half, then its low half.
        const CLASSID: &str = "1448542208";
        const OBJID: &str = "4";
        let database = Cluster::shared().database();
        let first = open(&database.url(), PostgresSettings::default())
            .await
            .unwrap();
        let partitions = "SELECT COUNT(*) FROM pg_inherits WHERE inhparent = 'readings'::regclass";
        let made = database.sql(partitions);
        let (holder, connection) = tokio_postgres::connect(&database.url(), tokio_postgres::NoTls)
            .await
            .unwrap();
        tokio::spawn(connection);
        holder
            .batch_execute("SELECT pg_advisory_lock(x'5657000000000004'::bigint)")
            .await
            .unwrap();
        let url = database.url();
        let second = tokio::spawn(async move { open(&url, PostgresSettings::default()).await });
        let waiting = format!(
            "SELECT COUNT(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted \
             AND classid = {CLASSID} AND objid = {OBJID}"
        );
        eventually("the second store to wait for the partition lock", || {
            let waits = database.sql(&waiting) == "1" || second.is_finished();
            async move { waits.then_some(()) }
        })
        .await;
        assert!(
            !second.is_finished(),
            "it waits while the lock is held: {:?}",
            second.await.unwrap().err()
        );
        holder
            .batch_execute("SELECT pg_advisory_unlock(x'5657000000000004'::bigint)")
            .await
            .unwrap();
        let second = second.await.unwrap().expect("opens once the lock is free");
        assert_eq!(database.sql(partitions), made, "it found the days made");
        second.close().await;
        first.close().await;
    }
}

mod service {
    use crate::support::postgres::{Cluster, PASSWORD};
    use crate::support::{Server, ServerOptions, command, sh};

    /// `vitalwatch ARGS` in `cwd` on the database `url` (given as the environment variable,
    /// as an operator would keep a password out of the process list).
    fn run_on(cwd: &std::path::Path, url: &str, args: &[&str]) -> (bool, String, String) {
        let output = command(cwd)
            .args(args)
            .env("VITALWATCH_DATABASE_URL", url)
            .output()
            .expect("running vitalwatch");
        (
            output.status.success(),
            String::from_utf8_lossy(&output.stdout).into_owned(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    }

    #[test]
    fn the_seed_examples_and_the_store_commands_work_on_postgres() {
        let cluster = Cluster::shared();
        let database = cluster.database();
        let dir = tempfile::tempdir().unwrap();
        let mut server = Server::start_with(ServerOptions {
            env: vec![("VITALWATCH_DATABASE_URL".to_owned(), database.url())],
            ..ServerOptions::new(dir.path())
        });
        let api = server.url("");

        let (ok, health, err) = sh(dir.path(), &format!("curl -s {api}/health"));
        assert!(ok, "{err}");
        let health: serde_json::Value = serde_json::from_str(&health).unwrap();
        assert_eq!(health["status"], "healthy", "{health}");
        assert_eq!(health["store"]["backend"], "postgres", "{health}");
        assert_eq!(health["store"]["status"], "ok", "{health}");
        assert_eq!(health["store"]["synchronous"], "on", "{health}");

        let post = |body: &str| {
            let (ok, answer, err) = sh(
                dir.path(),
                &format!(
                    "curl -s -X POST {api}/api/telemetry -H \"Content-Type: application/json\" -d '{body}'"
                ),
            );
            assert!(ok, "{err}");
            serde_json::from_str::<serde_json::Value>(&answer).unwrap()
        };
        let answer = post(
            r#"{"device_id":"TEST_001","heart_rate":75,"body_temp":36.8,"signal_strength":-55,"battery_level":90}"#,
        );
        assert_eq!(answer["status"], "received", "{answer}");
        assert_eq!(answer["stored"], true, "{answer}");
        let answer = post(
            r#"{"device_id":"TEST_001","heart_rate":130,"body_temp":39.5,"signal_strength":-55,"battery_level":90}"#,
        );
        let kinds: Vec<&str> = answer["anomalies"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a["type"].as_str().unwrap())
            .collect();
        assert_eq!(kinds, ["OUT_OF_RANGE_HR", "OUT_OF_RANGE_TEMP"]);
        // The sqlite3 example's question, asked of PostgreSQL with its own client.
        assert_eq!(database.sql("SELECT COUNT(*) FROM anomalies"), "2");
        // Readings of today sit in today's partition, not in the default one.
        assert_eq!(database.sql("SELECT COUNT(*) FROM readings"), "2");
        assert_eq!(database.sql("SELECT COUNT(*) FROM readings_default"), "0");
        let (ok, out, _) = sh(dir.path(), &format!("curl -s {api}/api/devices"));
        assert!(ok);
        let devices: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(devices["devices"][0]["device_id"], "TEST_001");
        assert_eq!(devices["devices"][0]["total_readings"], 2);

        // The commands that open the store take the same database, beside the server.
        let (ok, _, err) = run_on(
            dir.path(),
            &database.url(),
            &["devices", "register", "bed-7", "--location", "ward 3"],
        );
        assert!(ok, "{err}");
        let (ok, out, err) = run_on(dir.path(), &database.url(), &["devices", "list"]);
        assert!(ok, "{err}");
        assert!(out.contains("bed-7") && out.contains("TEST_001"), "{out}");
        let (ok, out, err) = run_on(dir.path(), &database.url(), &["audit", "verify"]);
        assert!(ok, "{err}");
        assert!(out.contains("hash chain intact"), "{out}");

        assert!(server.terminate(), "a clean stop: {}", server.log());
        let log = server.log();
        assert!(log.contains("PostgreSQL store open"), "{log}");
        assert!(
            !log.contains(PASSWORD),
            "the password never reaches the log"
        );

        // A row edited behind VitalWatch's back is found by `audit verify`.
        database.sql("UPDATE audit_log SET actor = 'mallory' WHERE id = 1");
        let (ok, out, err) = run_on(dir.path(), &database.url(), &["audit", "verify"]);
        assert!(!ok, "{out}");
        assert!(err.contains("FAILED at entry #1"), "{err}");
        assert!(!err.contains(PASSWORD), "{err}");
    }

    #[test]
    fn a_database_that_cannot_be_reached_is_a_clear_error_without_the_password() {
        let dir = tempfile::tempdir().unwrap();
        let port = crate::support::free_port();
        let url = format!("postgres://vitalwatch:{PASSWORD}@127.0.0.1:{port}/nowhere");
        let (ok, out, err) = run_on(dir.path(), &url, &["devices", "list"]);
        assert!(!ok, "{out}");
        assert!(
            err.contains(&format!("vitalwatch@127.0.0.1:{port}/nowhere")),
            "names the database: {err}"
        );
        assert!(!err.contains(PASSWORD), "{err}");
        let (ok, out, _) = run_on(dir.path(), &url, &["config", "show"]);
        assert!(ok);
        assert!(!out.contains(PASSWORD), "{out}");
        assert!(out.contains("[redacted]"), "{out}");
    }
}

mod copy {
    use crate::store_conformance::alerts::{
        acknowledged, delivery, raised, thresholds, transition,
    };
    use crate::store_conformance::auth::{token, user};
    use crate::store_conformance::{at, normal, options, prepared, tachycardic};
    use crate::support::command;
    use crate::support::postgres::{Cluster, PASSWORD};
    use std::path::Path;
    use std::sync::Arc;
    use vitalwatch::store::postgres::{PostgresSettings, PostgresStore};
    use vitalwatch::store::sqlite::SqliteStore;
    use vitalwatch::store::{
        AlertQuery, AnomalyQuery, AuditEntry, AuthWrite, DeviceRegistration, DeviceUpdate,
        ReadingQuery, Store,
    };
    use vitalwatch_core::alerting::{AlertCondition, TransitionKind};

    /// A SQLite store with a row of every kind.
    async fn populate(store: &dyn Store) {
        let admin = "admin".to_owned();
        store
            .register_device(
                DeviceRegistration {
                    device_id: "bed-1".to_owned(),
                    patient_label: Some("Bed 1, J.D.".to_owned()),
                    location: Some("ward 3".to_owned()),
                    expected_interval_s: Some(10.0),
                },
                admin.clone(),
            )
            .await
            .unwrap();
        store
            .register_device(
                DeviceRegistration {
                    device_id: "bed-3".to_owned(),
                    ..DeviceRegistration::default()
                },
                admin.clone(),
            )
            .await
            .unwrap();
        store
            .update_device(
                "bed-3".to_owned(),
                DeviceUpdate {
                    active: Some(false),
                    ..DeviceUpdate::default()
                },
                admin.clone(),
            )
            .await
            .unwrap();
        let mut full = normal("bed-1", at(0));
        full.seq = Some(7);
        full.extra = Some(r#"{"ward":"3B"}"#.to_owned());
        full.spo2_pct = Some(96.0);
        full.on_oxygen = Some(true);
        full.consciousness = Some(vitalwatch_core::telemetry::Consciousness::Alert);
        let mut scored = prepared(full);
        scored.ml_score = Some(0.42);
        store
            .write_readings(vec![
                scored,
                prepared(tachycardic("bed-1", at(5))),
                prepared(normal("bed-2", at(10))),
                prepared(normal("bed-3", at(11))),
            ])
            .await
            .unwrap();
        let alert = raised(1, "bed-1", AlertCondition::HeartRateHigh, at(5));
        let acked = acknowledged(alert.clone(), "nurse", at(6));
        store
            .write_alert_transitions(vec![
                transition(TransitionKind::Raised, &alert, at(5)),
                transition(TransitionKind::Acknowledged, &acked, at(6)),
            ])
            .await
            .unwrap();
        store
            .set_alert_verdict(1, true, "dr".to_owned())
            .await
            .unwrap();
        store
            .set_thresholds(thresholds("bed-1", 120.0))
            .await
            .unwrap();
        store
            .record_webhook_delivery(delivery(1, "failed"))
            .await
            .unwrap();
        for write in [
            AuthWrite::CreateToken(token(
                "0123456789abcdef",
                "bed-1-token",
                "2026-01-01T00:00:00Z",
            )),
            AuthWrite::CreateUser(user("carol")),
        ] {
            assert!(store.auth_write(write, admin.clone()).await.unwrap());
        }
        store
            .audit(AuditEntry {
                actor: admin,
                action: "test.note".to_owned(),
                target: "store".to_owned(),
                details: serde_json::json!({ "n": 1 }),
            })
            .await
            .unwrap();
    }

    fn vitalwatch(cwd: &Path, args: &[&str], url: Option<&str>) -> (bool, String, String) {
        let mut command = command(cwd);
        command.args(args);
        if let Some(url) = url {
            command.env("VITALWATCH_DATABASE_URL", url);
        }
        let output = command.output().expect("running vitalwatch");
        (
            output.status.success(),
            String::from_utf8_lossy(&output.stdout).into_owned(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    }

    /// Everything the API reads, as values to compare.
    async fn everything(store: &dyn Store) -> Vec<String> {
        let readings = store
            .readings(ReadingQuery {
                limit: 1000,
                ..ReadingQuery::default()
            })
            .await
            .unwrap();
        let anomalies = store
            .anomalies(AnomalyQuery {
                limit: 1000,
                ..AnomalyQuery::default()
            })
            .await
            .unwrap();
        let alerts = store
            .alerts(AlertQuery {
                limit: 100,
                ..AlertQuery::default()
            })
            .await
            .unwrap();
        vec![
            format!("{:?}", store.list_devices().await.unwrap()),
            format!("{readings:?}"),
            format!("{anomalies:?}"),
            format!("{:?}", store.audit_log(0, 1000).await.unwrap()),
            format!("{alerts:?}"),
            format!("{:?}", store.alert(1).await.unwrap()),
            format!("{:?}", store.verdict_readings(100).await.unwrap()),
            format!("{:?}", store.thresholds(None).await.unwrap()),
            format!("{:?}", store.webhook_deliveries(None, 100).await.unwrap()),
            format!("{:?}", store.list_tokens().await.unwrap()),
            format!("{:?}", store.list_users().await.unwrap()),
            format!("{:?}", store.max_event_ids().await.unwrap()),
        ]
    }

    #[tokio::test]
    async fn a_sqlite_store_copies_to_postgres_resumably_and_stays_tamper_evident() {
        let cluster = Cluster::shared();
        let database = cluster.database();
        let dir = tempfile::tempdir().unwrap();
        let db_path = dir.path().join("data/anomalies.db");
        std::fs::create_dir_all(dir.path().join("data")).unwrap();
        let source = SqliteStore::open(&db_path, options()).unwrap();
        populate(&source).await;
        // `audit` only queues its entry: closing drains the writer, so the snapshot (read
        // from a reopened store) holds every row the copy will see.
        source.close().await;
        let source = SqliteStore::open(&db_path, options()).unwrap();
        let expected = everything(&source).await;
        source.close().await;

        let copy = ["store", "copy", "--from", "data/anomalies.db", "--to"];
        let url = database.url();
        let args: Vec<&str> = copy.iter().copied().chain([url.as_str()]).collect();
        let (ok, out, err) = vitalwatch(dir.path(), &args, None);
        assert!(ok, "{out}{err}");
        assert!(
            out.contains("readings: 3 rows in the source, 3 copied now, 3 on the target"),
            "{out}"
        );
        assert!(
            out.contains("quarantine: 1 rows in the source, 1 copied now"),
            "{out}"
        );
        assert!(out.contains("audit chain verified on the target"), "{out}");
        assert!(
            !out.contains(PASSWORD) && !err.contains(PASSWORD),
            "{out}{err}"
        );

        let target = Arc::new(
            PostgresStore::open(&url, options(), PostgresSettings::default())
                .await
                .unwrap(),
        );
        let copied = everything(&*target).await;
        for (want, got) in expected.iter().zip(&copied) {
            assert_eq!(
                want, got,
                "the PostgreSQL store answers as the SQLite one did"
            );
        }
        // New rows continue after the copied ids.
        let outcome = target
            .write_readings(vec![prepared(normal("bed-2", at(20)))])
            .await
            .unwrap();
        let (max_reading, _) = source_max(&expected);
        match &outcome[0].outcome {
            vitalwatch::store::ItemOutcome::Stored { reading_id, .. } => {
                assert!(
                    *reading_id > max_reading,
                    "{reading_id} after {max_reading}"
                )
            }
            other => panic!("{other:?}"),
        }
        target.close().await;

        // Run again: it resumes, copies nothing twice, and still verifies (the target now has
        // a row the source lacks, so the counts differ and it says so).
        let (ok, out, err) = vitalwatch(dir.path(), &args, None);
        assert!(!ok, "{out}");
        assert!(
            err.contains("readings: 3 rows in the source but 4 on the target"),
            "{err}"
        );
        database.sql("DELETE FROM readings WHERE device_id = 'bed-2' AND id > 3");
        database.sql("UPDATE devices SET total_readings = 1 WHERE device_id = 'bed-2'");
        let (ok, out, err) = vitalwatch(dir.path(), &args, None);
        assert!(ok, "{out}{err}");
        assert!(
            out.contains("readings: 3 rows in the source, 0 copied now, 3 on the target"),
            "{out}"
        );

        // On the target, `audit verify` passes, and finds a row edited there.
        let (ok, out, err) = vitalwatch(dir.path(), &["audit", "verify"], Some(&url));
        assert!(ok, "{out}{err}");
        database.sql("UPDATE audit_log SET details = '{}' WHERE id = 2");
        let (ok, _, err) = vitalwatch(dir.path(), &["audit", "verify"], Some(&url));
        assert!(!ok);
        assert!(err.contains("FAILED at entry #2"), "{err}");
    }

    /// The highest reading id in `everything`'s answer.
    fn source_max(everything: &[String]) -> (i64, i64) {
        let text = &everything[11];
        let inner = text.trim_matches(|c| c == '(' || c == ')');
        let mut parts = inner.split(", ").map(|p| p.parse::<i64>().unwrap());
        (parts.next().unwrap(), parts.next().unwrap())
    }
}

mod plans {
    use crate::store_conformance::{normal, options, prepared, tachycardic};
    use crate::support::postgres::Cluster;
    use vitalwatch::store::postgres::{PostgresSettings, PostgresStore};
    use vitalwatch::store::series::{SeriesQuery, Window};
    use vitalwatch::store::{AnomalyQuery, ReadingQuery, Store};
    use vitalwatch_core::telemetry::Timestamp;

    const DEVICES: usize = 40;
    const PER_DEVICE: i64 = 400;

    /// The plans PostgreSQL chose for the API's and dashboard's main reads, as executed
    /// (auto_explain logs each), show no sequential scan of a readings partition.
    #[tokio::test]
    async fn the_main_queries_never_scan_readings_sequentially() {
        let cluster = Cluster::start();
        let database = cluster.database();
        for setting in [
            "session_preload_libraries = 'auto_explain'",
            "auto_explain.log_min_duration = 0",
            "auto_explain.log_nested_statements = on",
        ] {
            cluster.superuser_sql(&format!("ALTER DATABASE {} SET {setting}", database.name));
        }
        let store = PostgresStore::open(&database.url(), options(), PostgresSettings::default())
            .await
            .unwrap();
        // Readings of the last days (daily partitions) and an old backlog (the default one).
        let now = Timestamp::from_datetime(chrono::Utc::now());
        for device in 0..DEVICES {
            let id = format!("bed-{device}");
            let items: Vec<_> =
                (0..PER_DEVICE)
                    .map(|n| {
                        let ts = now.saturating_add_micros(-(n * 300 + device as i64) * 1_000_000);
                        if n % 10 == 0 {
                            prepared(tachycardic(&id, ts))
                        } else {
                            prepared(normal(&id, ts))
                        }
                    })
                    .chain((0..50).map(|n| {
                        prepared(normal(&id, Timestamp::from_secs(1_767_225_600 + n * 60)))
                    }))
                    .collect();
            store.write_readings(items).await.unwrap();
        }
        database.sql("ANALYZE");
        let before = cluster.log().len();

        let hour = Window {
            since: Some(now.saturating_add_micros(-3_600_000_000)),
            until: Some(now),
            device_id: None,
        };
        let one_device = Window {
            device_id: Some("bed-7".to_owned()),
            ..hour.clone()
        };
        let page = store
            .readings(ReadingQuery {
                device_id: Some("bed-7".to_owned()),
                limit: 100,
                ..ReadingQuery::default()
            })
            .await
            .unwrap();
        assert_eq!(page.len(), 100);
        store
            .readings(ReadingQuery {
                device_id: Some("bed-7".to_owned()),
                before_id: Some(page[99].id),
                limit: 100,
                ..ReadingQuery::default()
            })
            .await
            .unwrap();
        store
            .readings(ReadingQuery {
                limit: 100,
                ..ReadingQuery::default()
            })
            .await
            .unwrap();
        store
            .anomalies(AnomalyQuery {
                device_id: Some("bed-7".to_owned()),
                limit: 100,
                ..AnomalyQuery::default()
            })
            .await
            .unwrap();
        let latest = store.latest_readings(hour.clone()).await.unwrap();
        assert_eq!(latest.len(), DEVICES);
        let stats = store.dashboard_stats(hour.clone(), now).await.unwrap();
        assert!(stats.readings > 0);
        store.dashboard_stats(one_device, now).await.unwrap();
        let series = store
            .series(SeriesQuery {
                device_ids: vec!["bed-7".to_owned(), "bed-8".to_owned()],
                since: hour.since.unwrap(),
                until: now,
                points: 60,
                metrics: vec!["heart_rate"],
            })
            .await
            .unwrap();
        assert_eq!(series.len(), 2);
        let (max_reading, max_anomaly) = store.max_event_ids().await.unwrap();
        store
            .events_after(max_reading - 50, max_anomaly - 5, 100)
            .await
            .unwrap();
        store.close().await;

        let log = cluster.log()[before..].to_owned();
        assert!(
            log.contains("Index") && log.contains("readings"),
            "auto_explain logged the plans: {log}"
        );
        // A partition without rows costs nothing to scan; the others must be read by index.
        let with_rows: Vec<String> = database
            .sql("SELECT DISTINCT tableoid::regclass::text FROM readings")
            .lines()
            .map(str::to_owned)
            .collect();
        assert!(with_rows.len() >= 2, "{with_rows:?}");
        let seq_scans: Vec<&str> = log
            .lines()
            .filter(|line| {
                with_rows
                    .iter()
                    .any(|partition| line.contains(&format!("Seq Scan on {partition} ")))
            })
            .collect();
        assert!(
            seq_scans.is_empty(),
            "sequential scans of readings: {seq_scans:?}\n{log}"
        );
    }
}
