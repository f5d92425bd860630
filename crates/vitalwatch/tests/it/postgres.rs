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
