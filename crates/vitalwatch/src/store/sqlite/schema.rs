//! Opening the database file: a private directory and file, the durability pragmas (checked,
//! not assumed), the read-only connections, and the schema migrations with their refusal to
//! run on a schema newer than this build knows.
//!
//! Nothing here runs after the store is open; the schema itself lives in
//! `migrations/sqlite/*.sql`, applied in order by refinery.

use crate::store::StoreError;
use rusqlite::{Connection, OpenFlags};
use std::path::Path;
use std::time::Duration;

mod embedded {
    refinery::embed_migrations!("migrations/sqlite");
}

/// How long a connection waits for a lock held by another process (the CLI beside a server).
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// A failure while opening, described with what was being done (`context` names the file).
fn failed(context: String, err: impl std::fmt::Display) -> StoreError {
    StoreError::backend(format!("{context}: {err}"))
}

/// Opens (creating if needed) the read-write connection at `path`, with the durability
/// settings in force and the schema migrated to this build's version.
pub(super) fn open_writer(path: &Path) -> Result<Connection, StoreError> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        create_private_dir(dir)
            .map_err(|err| failed(format!("creating data directory {}", dir.display()), err))?;
    }
    let mut conn = Connection::open(path)
        .map_err(|err| failed(format!("opening database {}", path.display()), err))?;
    set_mode(path, 0o600).map_err(|err| failed(format!("restricting {}", path.display()), err))?;
    configure_writer(&conn)?;
    migrate(&mut conn)?;
    Ok(conn)
}

/// Creates the data directory 0700, or tightens it to 0700 when something else (`certs init`
/// making `<data-dir>/certs`, an operator's mkdir) created it first. A directory we do not own
/// is left alone (its owner decides).
fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    if !dir.exists() {
        std::fs::create_dir_all(dir)?;
    }
    match set_mode(dir, 0o700) {
        Err(err) if err.kind() == std::io::ErrorKind::PermissionDenied => Ok(()),
        res => res,
    }
}

#[cfg(unix)]
fn set_mode(path: &Path, mode: u32) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
}

#[cfg(not(unix))]
fn set_mode(_path: &Path, _mode: u32) -> std::io::Result<()> {
    Ok(())
}

fn configure_writer(conn: &Connection) -> Result<(), StoreError> {
    conn.busy_timeout(BUSY_TIMEOUT)?;
    let mode: String = conn.query_row("PRAGMA journal_mode=WAL", [], |row| row.get(0))?;
    conn.execute_batch("PRAGMA synchronous=FULL; PRAGMA foreign_keys=ON;")?;
    // Commits never checkpoint: the checkpointer does (`checkpoint.rs`), and its WAL hook
    // replaces SQLite's auto-checkpoint on this connection.
    conn.execute_batch("PRAGMA wal_autocheckpoint=0;")?;
    let synchronous: i64 = conn.query_row("PRAGMA synchronous", [], |row| row.get(0))?;
    // Refuse to run without the settings that make an acknowledgement mean "on disk".
    if !mode.eq_ignore_ascii_case("wal") || synchronous != 2 {
        return Err(StoreError::backend(format!(
            "database durability settings not in force (journal_mode={mode}, synchronous={synchronous}); \
             VitalWatch requires WAL with synchronous=FULL"
        )));
    }
    Ok(())
}

/// The checkpointer's read-write connection to the database the writer opened. Its
/// checkpoints fsync the database file (`synchronous=FULL`) before the WAL is reused.
pub(super) fn open_checkpointer(path: &Path) -> Result<Connection, StoreError> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    conn.execute_batch("PRAGMA synchronous=FULL;")?;
    Ok(conn)
}

/// A read-only connection; queries on it never take the write lock.
pub(super) fn open_reader(path: &Path) -> Result<Connection, StoreError> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    Ok(conn)
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

fn migrate(conn: &mut Connection) -> Result<(), StoreError> {
    let has_history: bool = conn.query_row(
        "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type='table' AND name='refinery_schema_history')",
        [],
        |row| row.get(0),
    )?;
    if has_history {
        let applied: Option<i64> = conn.query_row(
            "SELECT MAX(version) FROM refinery_schema_history",
            [],
            |row| row.get(0),
        )?;
        let supported = latest_known_version();
        if let Some(found) = applied.filter(|v| *v > supported) {
            return Err(StoreError::SchemaTooNew { found, supported });
        }
    }
    embedded::migrations::runner()
        .set_abort_divergent(true)
        .set_abort_missing(true)
        .run(conn)
        .map_err(|err| failed("applying database migrations".to_owned(), err))?;
    Ok(())
}
