//! Opening the database: the durability check (`synchronous_commit`), the migrations (one
//! process at a time, under a session lock; refused on a schema newer than this build), and
//! the readings' daily partitions, created ahead.
//!
//! The schema itself lives in `migrations/postgres/*.sql`, applied in order by refinery.

use super::{Failure, pg};
use crate::store::StoreError;
use chrono::{DateTime, Days, NaiveDate, Utc};
use deadpool_postgres::{GenericClient, Object};

mod embedded {
    refinery::embed_migrations!("migrations/postgres");
}

/// The advisory lock that serialises migrations between processes starting at once.
const MIGRATION_LOCK: i64 = 0x5657_0000_0000_0001;

/// The advisory lock under which partitions are created: one node at a time (the store's
/// other locks are ...0001 to ...0003).
const PARTITION_LOCK: i64 = 0x5657_0000_0000_0004;

/// Days of partitions kept ahead of today (and one behind, for late readings).
pub(super) const DAYS_AHEAD: u64 = 3;

/// What `synchronous_commit` must be for "committed" to mean "on disk" (or on a standby's).
pub(super) fn synchronous_commit_is_durable(value: &str) -> bool {
    matches!(value, "on" | "remote_write" | "remote_apply")
}

/// Refuses a server whose commits may be lost after they were acknowledged, unless the
/// operator said that is acceptable. Returns the setting.
pub(super) async fn check_durability(
    client: &Object,
    allow_async_commit: bool,
) -> Result<String, StoreError> {
    let value: String = client
        .query_one("SHOW synchronous_commit", &[])
        .await
        .map_err(pg)?
        .get(0);
    if !synchronous_commit_is_durable(&value) && !allow_async_commit {
        return Err(StoreError::backend(format!(
            "the database runs with synchronous_commit={value}: a commit it reports may be lost \
             on a crash, so VitalWatch would acknowledge readings that are not durable. Set \
             synchronous_commit=on (ALTER ROLE … SET synchronous_commit = on), or accept the risk \
             with [store] allow_async_commit = true (--allow-async-commit)"
        )));
    }
    Ok(value)
}

/// The newest schema version this build knows.
fn latest_known_version() -> i64 {
    embedded::migrations::runner()
        .get_migrations()
        .iter()
        .map(|m| i64::from(m.version()))
        .max()
        .unwrap_or(0)
}

/// Applies the migrations this build has and the database lacks.
pub(super) async fn migrate(client: &mut Object) -> Result<(), StoreError> {
    client
        .execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK])
        .await
        .map_err(pg)?;
    let res = migrate_locked(client).await;
    let unlocked = client
        .execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK])
        .await
        .map_err(pg);
    res.and(unlocked.map(drop))
}

async fn migrate_locked(client: &mut Object) -> Result<(), StoreError> {
    let has_history: bool = client
        .query_one(
            "SELECT to_regclass('refinery_schema_history') IS NOT NULL",
            &[],
        )
        .await
        .map_err(pg)?
        .get(0);
    if has_history {
        let applied: Option<i32> = client
            .query_one("SELECT MAX(version) FROM refinery_schema_history", &[])
            .await
            .map_err(pg)?
            .get(0);
        let supported = latest_known_version();
        if let Some(found) = applied.map(i64::from).filter(|v| *v > supported) {
            return Err(StoreError::SchemaTooNew { found, supported });
        }
    }
    let client: &mut tokio_postgres::Client = client;
    embedded::migrations::runner()
        .set_abort_divergent(true)
        .set_abort_missing(true)
        .run_async(client)
        .await
        .map_err(|err| StoreError::backend(format!("applying database migrations: {err}")))?;
    Ok(())
}

/// The partition that holds readings of `day`.
fn partition_name(day: NaiveDate) -> String {
    format!("readings_p{}", day.format("%Y%m%d"))
}

/// The day of a partition named by [`partition_name`].
pub(super) fn partition_day(name: &str) -> Option<NaiveDate> {
    NaiveDate::parse_from_str(name.strip_prefix("readings_p")?, "%Y%m%d").ok()
}

fn midnight(day: NaiveDate) -> DateTime<Utc> {
    day.and_hms_opt(0, 0, 0).unwrap_or_default().and_utc()
}

/// Creates the daily partitions from yesterday to [`DAYS_AHEAD`] days ahead that do not
/// exist yet; returns the last day covered. A day whose readings already sit in the default
/// partition (a clock that ran ahead) is left there, with a warning. Several nodes do this
/// one at a time, under a transaction-scoped advisory lock: the next finds the partitions the
/// first made and creates nothing.
pub(super) async fn ensure_partitions(
    client: &mut Object,
    today: NaiveDate,
) -> Result<NaiveDate, StoreError> {
    let mut tx = client.transaction().await.map_err(pg)?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&PARTITION_LOCK])
        .await
        .map_err(pg)?;
    let existing = existing_partitions(&tx).await?;
    let first = today.checked_sub_days(Days::new(1)).unwrap_or(today);
    let last = today
        .checked_add_days(Days::new(DAYS_AHEAD))
        .unwrap_or(today);
    let mut day = first;
    while day <= last {
        if !existing.contains(&day) {
            let next = day.succ_opt().unwrap_or(day);
            // Names and bounds are made here from dates, never from input.
            let sql = format!(
                "CREATE TABLE IF NOT EXISTS {} PARTITION OF readings FOR VALUES FROM ('{}') TO ('{}')",
                partition_name(day),
                midnight(day).to_rfc3339(),
                midnight(next).to_rfc3339()
            );
            // A savepoint each: a day that cannot be made leaves the others to be made.
            let attempt = tx.savepoint("partition").await.map_err(pg)?;
            match attempt.batch_execute(&sql).await {
                Ok(()) => attempt.commit().await.map_err(pg)?,
                Err(err) => {
                    drop(attempt);
                    let err = Failure::from_pg(&err);
                    if err.transient {
                        return Err(StoreError::Backend(Box::new(err)));
                    }
                    tracing::warn!(
                        event = "store.partitions_failed",
                        message = "A day's readings partition could not be created; its readings stay in the default partition.",
                        day = %day,
                        error = %err
                    );
                }
            }
        }
        match day.succ_opt() {
            Some(next) => day = next,
            None => break,
        }
    }
    tx.commit().await.map_err(pg)?;
    Ok(last)
}

/// The days that have a partition.
pub(super) async fn existing_partitions(
    client: &impl GenericClient,
) -> Result<Vec<NaiveDate>, StoreError> {
    let rows = client
        .query(
            "SELECT c.relname::text FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid \
             WHERE i.inhparent = 'readings'::regclass",
            &[],
        )
        .await
        .map_err(pg)?;
    Ok(rows
        .iter()
        .filter_map(|row| partition_day(row.get::<_, &str>(0)))
        .collect())
}

/// The name of a day's partition and its rows' upper bound, for retention.
pub(super) fn partition_of(day: NaiveDate) -> (String, DateTime<Utc>) {
    (partition_name(day), midnight(day.succ_opt().unwrap_or(day)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durable_commit_settings() {
        for durable in ["on", "remote_write", "remote_apply"] {
            assert!(synchronous_commit_is_durable(durable), "{durable}");
        }
        for lossy in ["off", "local"] {
            assert!(!synchronous_commit_is_durable(lossy), "{lossy}");
        }
    }

    #[test]
    fn partition_names_round_trip_to_their_day() {
        let day = NaiveDate::from_ymd_opt(2026, 12, 1).unwrap();
        assert_eq!(partition_name(day), "readings_p20261201");
        assert_eq!(partition_day("readings_p20261201"), Some(day));
        assert_eq!(partition_day("readings_default"), None);
        let (name, upper) = partition_of(day);
        assert_eq!(name, "readings_p20261201");
        assert_eq!(upper.to_rfc3339(), "2026-12-02T00:00:00+00:00");
    }
}
