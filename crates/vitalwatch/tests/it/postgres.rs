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
            matches!(outcome[0], ItemOutcome::Stored { .. }),
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
