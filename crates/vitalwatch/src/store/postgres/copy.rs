//! Moving a box to PostgreSQL: every row of a SQLite store copied as it is (ids, times, the
//! audit chain's hashes), table by table in key order, one transaction per page.
//!
//! Re-running resumes: tables keyed by a number continue after the highest key already on the
//! target, and every insert skips a row that is there (`ON CONFLICT DO NOTHING`). At the end
//! the counts of every table must match and the copied audit chain must verify on the target.
//! SQLite's `reading_hours` (a derived count) has no PostgreSQL counterpart and is not copied.

use super::{PostgresStore, pg, pool_error, thresholds};
use crate::store::audit::ChainCheck;
use crate::store::{Store, StoreError};
use chrono::{DateTime, Utc};
use rusqlite::types::Value;
use serde::Serialize;
use std::path::Path;
use tokio_postgres::types::ToSql;
use vitalwatch_core::telemetry::Timestamp;

/// Rows read from SQLite and written to PostgreSQL per transaction.
const PAGE: usize = 2000;

/// How a column is converted on its way.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Kind {
    Text,
    Int8,
    Int4,
    Float,
    /// SQLite's 0/1 integer as a boolean.
    Bool,
    /// SQLite's RFC 3339 text as a `timestamptz`.
    Time,
}

/// One table to copy: its columns (the first is the key rows are paged by) and whether the key
/// is a number (then a re-run starts after the target's highest key).
struct Table {
    name: &'static str,
    columns: Vec<(&'static str, Kind)>,
    numeric_key: bool,
}

fn kind_of_pg_type(sql_type: &str) -> Kind {
    match sql_type {
        "int8" => Kind::Int8,
        "float8" => Kind::Float,
        "bool" => Kind::Bool,
        "timestamptz" => Kind::Time,
        _ => Kind::Text,
    }
}

fn tables() -> Vec<Table> {
    use Kind::{Float, Int4, Int8, Text, Time};
    let text = |names: &[&'static str]| names.iter().map(|n| (*n, Text)).collect::<Vec<_>>();
    vec![
        Table {
            name: "devices",
            columns: vec![
                ("device_id", Text),
                ("patient_label", Text),
                ("location", Text),
                ("expected_interval_s", Float),
                ("active", Kind::Bool),
                ("registered_at", Text),
                ("registered_by", Text),
                ("updated_at", Text),
                ("last_seen", Text),
                ("total_readings", Int8),
            ],
            numeric_key: false,
        },
        Table {
            name: "readings",
            columns: super::readings::columns()
                .into_iter()
                .map(|(name, sql_type)| (name, kind_of_pg_type(sql_type)))
                .collect(),
            numeric_key: true,
        },
        Table {
            name: "anomalies",
            columns: vec![
                ("id", Int8),
                ("device_id", Text),
                ("reading_id", Int8),
                ("type", Text),
                ("severity", Text),
                ("value", Float),
                ("threshold", Float),
                ("detected_at", Time),
                ("details", Text),
            ],
            numeric_key: true,
        },
        Table {
            name: "quarantine",
            columns: vec![
                ("id", Int8),
                ("device_id", Text),
                ("timestamp", Time),
                ("received_at", Time),
                ("reason", Text),
                ("reading", Text),
                ("source", Text),
            ],
            numeric_key: true,
        },
        Table {
            name: "audit_log",
            columns: [("id", Int8)]
                .into_iter()
                .chain(text(&[
                    "at",
                    "actor",
                    "action",
                    "target",
                    "details",
                    "prev_hash",
                    "hash",
                ]))
                .collect(),
            numeric_key: true,
        },
        Table {
            name: "alerts",
            columns: [("id", Int8)]
                .into_iter()
                .chain(text(&["device_id", "condition", "class", "priority"]))
                .chain([("priority_rank", Int4)])
                .chain(text(&[
                    "state",
                    "opened_at",
                    "last_seen",
                    "acknowledged_by",
                    "acknowledged_at",
                    "acknowledged_note",
                    "silenced_until",
                    "silenced_by",
                    "resolved_at",
                    "resolved_by",
                ]))
                .chain([
                    ("last_value", Float),
                    ("threshold", Float),
                    ("count", Int8),
                    ("escalation_level", Int4),
                ])
                .chain(text(&[
                    "updated_at",
                    "alert",
                    "verdict",
                    "verdict_by",
                    "verdict_at",
                ]))
                .collect(),
            numeric_key: true,
        },
        Table {
            name: "alert_events",
            columns: [("id", Int8), ("alert_id", Int8)]
                .into_iter()
                .chain(text(&["kind", "at", "actor", "priority", "state"]))
                .chain([("escalation_level", Int4), ("value", Float)])
                .collect(),
            numeric_key: true,
        },
        Table {
            name: "patient_thresholds",
            columns: thresholds::COPY_COLUMNS.to_vec(),
            numeric_key: false,
        },
        Table {
            name: "webhook_deliveries",
            columns: [("id", Int8)]
                .into_iter()
                .chain(text(&["url"]))
                .chain([("alert_id", Int8)])
                .chain(text(&["transition", "state"]))
                .chain([("attempts", Int4), ("last_status", Int4)])
                .chain(text(&["last_error", "created_at", "finished_at", "body"]))
                .collect(),
            numeric_key: true,
        },
        Table {
            name: "api_tokens",
            columns: text(&[
                "id",
                "name",
                "role",
                "device_id",
                "secret_hash",
                "created_at",
                "created_by",
                "expires_at",
                "revoked_at",
            ]),
            numeric_key: false,
        },
        Table {
            name: "users",
            columns: text(&[
                "username",
                "role",
                "password_hash",
                "created_at",
                "created_by",
                "updated_at",
                "disabled_at",
            ]),
            numeric_key: false,
        },
    ]
}

/// What one table's copy did.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct TableCopy {
    pub table: &'static str,
    /// Rows in the source.
    pub source: i64,
    /// Rows written by this run (the others were there already).
    pub copied: u64,
    /// Rows on the target afterwards.
    pub target: i64,
}

/// The whole copy, verified.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct CopyReport {
    pub tables: Vec<TableCopy>,
    /// Audit entries whose chain verified on the target.
    pub audit_verified: u64,
}

fn failed(context: &str, err: impl std::fmt::Display) -> StoreError {
    StoreError::backend(format!("{context}: {err}"))
}

/// A SQLite value as a parameter of `kind`.
fn convert(value: Value, kind: Kind) -> Result<Box<dyn ToSql + Sync + Send>, StoreError> {
    Ok(match (kind, value) {
        (Kind::Text, Value::Null) => Box::new(None::<String>),
        (Kind::Text, Value::Text(text)) => Box::new(Some(text)),
        (Kind::Text, Value::Integer(n)) => Box::new(Some(n.to_string())),
        (Kind::Text, Value::Real(x)) => Box::new(Some(x.to_string())),
        (Kind::Int8, Value::Null) => Box::new(None::<i64>),
        (Kind::Int8, Value::Integer(n)) => Box::new(Some(n)),
        (Kind::Int4, Value::Null) => Box::new(None::<i32>),
        (Kind::Int4, Value::Integer(n)) => {
            Box::new(Some(i32::try_from(n).map_err(|_| {
                StoreError::InvalidData(format!("{n} out of range"))
            })?))
        }
        (Kind::Float, Value::Null) => Box::new(None::<f64>),
        (Kind::Float, Value::Real(x)) => Box::new(Some(x)),
        (Kind::Float, Value::Integer(n)) => Box::new(Some(n as f64)),
        (Kind::Bool, Value::Null) => Box::new(None::<bool>),
        (Kind::Bool, Value::Integer(n)) => Box::new(Some(n != 0)),
        (Kind::Time, Value::Null) => Box::new(None::<DateTime<Utc>>),
        (Kind::Time, Value::Text(text)) => Box::new(Some(
            Timestamp::parse_text(&text)
                .ok_or_else(|| StoreError::InvalidData(format!("not a time: {text:?}")))?
                .to_datetime(),
        )),
        (kind, value) => {
            return Err(StoreError::InvalidData(format!(
                "a {:?} value where a {kind:?} was expected",
                value.data_type()
            )));
        }
    })
}

/// The next page of `table` after `after` (the key's value), in key order.
fn read_page(
    conn: &rusqlite::Connection,
    table: &Table,
    after: &Value,
) -> Result<Vec<Vec<Value>>, StoreError> {
    let names: Vec<&str> = table.columns.iter().map(|(name, _)| *name).collect();
    let key = names[0];
    let sql = format!(
        "SELECT {} FROM {} WHERE {key} > ?1 ORDER BY {key} LIMIT {PAGE}",
        names.join(", "),
        table.name
    );
    let mut stmt = conn
        .prepare_cached(&sql)
        .map_err(|err| failed("reading the SQLite store", err))?;
    let rows = stmt
        .query_map([after], |row| {
            (0..names.len())
                .map(|idx| row.get::<_, Value>(idx))
                .collect::<rusqlite::Result<Vec<_>>>()
        })
        .map_err(|err| failed("reading the SQLite store", err))?;
    rows.collect::<rusqlite::Result<Vec<_>>>()
        .map_err(|err| failed("reading the SQLite store", err))
}

fn source_count(conn: &rusqlite::Connection, table: &str) -> Result<i64, StoreError> {
    conn.query_row(&format!("SELECT COUNT(*) FROM {table}"), [], |row| {
        row.get(0)
    })
    .map_err(|err| failed("counting the SQLite store", err))
}

/// Copies every row of the SQLite store at `source` into `target`, then checks counts and the
/// audit chain there.
pub async fn copy_from_sqlite(
    source: &Path,
    target: &PostgresStore,
) -> Result<CopyReport, StoreError> {
    let conn = rusqlite::Connection::open_with_flags(
        source,
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|err| failed(&format!("opening {}", source.display()), err))?;
    let mut reports = Vec::new();
    for table in tables() {
        let copied = copy_table(&conn, &table, target).await?;
        let source_rows = source_count(&conn, table.name)?;
        let client = target.pool.get().await.map_err(pool_error)?;
        let target_rows: i64 = client
            .query_one(&format!("SELECT COUNT(*) FROM {}", table.name), &[])
            .await
            .map_err(pg)?
            .get(0);
        if target_rows != source_rows {
            return Err(StoreError::Other(format!(
                "{}: {source_rows} rows in the source but {target_rows} on the target \
                 (was the target in use?)",
                table.name
            )));
        }
        reports.push(TableCopy {
            table: table.name,
            source: source_rows,
            copied,
            target: target_rows,
        });
    }
    restart_sequences(target).await?;
    let audit_verified = verify_chain(target).await?;
    Ok(CopyReport {
        tables: reports,
        audit_verified,
    })
}

async fn copy_table(
    conn: &rusqlite::Connection,
    table: &Table,
    target: &PostgresStore,
) -> Result<u64, StoreError> {
    let names: Vec<&str> = table.columns.iter().map(|(name, _)| *name).collect();
    let placeholders: Vec<String> = (1..=names.len()).map(|n| format!("${n}")).collect();
    let insert = format!(
        "INSERT INTO {} ({}) VALUES ({}) ON CONFLICT DO NOTHING",
        table.name,
        names.join(", "),
        placeholders.join(", ")
    );
    let mut client = target.pool.get().await.map_err(pool_error)?;
    // Resume after what a previous run copied.
    let mut after = if table.numeric_key {
        let max: Option<i64> = client
            .query_one(
                &format!("SELECT MAX({}) FROM {}", names[0], table.name),
                &[],
            )
            .await
            .map_err(pg)?
            .get(0);
        Value::Integer(max.unwrap_or(i64::MIN))
    } else {
        Value::Text(String::new())
    };
    let mut copied = 0u64;
    loop {
        let rows = read_page(conn, table, &after)?;
        let Some(last) = rows.last() else { break };
        after = last[0].clone();
        let tx = client.transaction().await.map_err(pg)?;
        let stmt = tx.prepare_cached(&insert).await.map_err(pg)?;
        for row in rows {
            let params = row
                .into_iter()
                .zip(&table.columns)
                .map(|(value, (_, kind))| convert(value, *kind))
                .collect::<Result<Vec<_>, _>>()?;
            let refs: Vec<&(dyn ToSql + Sync)> = params
                .iter()
                .map(|p| p.as_ref() as &(dyn ToSql + Sync))
                .collect();
            copied += tx.execute(&stmt, &refs).await.map_err(pg)?;
        }
        tx.commit().await.map_err(pg)?;
    }
    Ok(copied)
}

/// Moves every id sequence past the copied ids.
async fn restart_sequences(target: &PostgresStore) -> Result<(), StoreError> {
    let client = target.pool.get().await.map_err(pool_error)?;
    for (sequence, table) in [
        ("readings_id_seq", "readings"),
        ("anomalies_id_seq", "anomalies"),
        ("quarantine_id_seq", "quarantine"),
        ("alert_events_id_seq", "alert_events"),
        ("webhook_deliveries_id_seq", "webhook_deliveries"),
    ] {
        client
            .execute(
                &format!(
                    "SELECT setval('{sequence}', GREATEST((SELECT MAX(id) FROM {table}), 1), \
                     (SELECT MAX(id) FROM {table}) IS NOT NULL)"
                ),
                &[],
            )
            .await
            .map_err(pg)?;
    }
    Ok(())
}

/// Checks the copied chain on the target, page by page.
async fn verify_chain(target: &PostgresStore) -> Result<u64, StoreError> {
    let mut check = ChainCheck::default();
    let mut after = 0;
    loop {
        let rows = target.audit_log(after, PAGE).await?;
        let Some(last) = rows.last() else { break };
        after = last.id;
        check.feed(&rows).map_err(|brk| {
            StoreError::Other(format!(
                "the copied audit chain does not verify at entry #{}: {}",
                brk.id, brk.reason
            ))
        })?;
    }
    check.finish().map_err(|brk| {
        StoreError::Other(format!(
            "the copied audit chain does not verify at entry #{}: {}",
            brk.id, brk.reason
        ))
    })?;
    Ok(check.verified)
}
