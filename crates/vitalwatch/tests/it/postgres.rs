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
