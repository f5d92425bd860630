//! Which store the harness gives the servers and commands it starts: SQLite (the default) or,
//! with `VITALWATCH_IT_BACKEND=postgres` in the test process's environment, PostgreSQL. The
//! variable configures this harness, never the product: `scripts/test` runs the integration
//! binary once with it unset and once set, so every test that touches the store runs on both.
//!
//! On PostgreSQL each data directory gets one fresh database on [`Cluster::shared`], made on
//! first use and kept for the test's life, so a server restarted on the same data directory,
//! and every CLI command run beside it (`devices`, `tokens`, `audit verify`, …), sees the same
//! store. A test about SQLite itself declares that with [`sqlite_only`]. [`sql`] reads or
//! changes the store of a data directory on either backend (`sqlite3` or `psql`).

use super::postgres::{Cluster, Database};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, OnceLock};

/// The variable that selects the backend of a test run (`sqlite`, the default, or `postgres`).
pub const VARIABLE: &str = "VITALWATCH_IT_BACKEND";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// The backend this test run puts the stores of servers and commands on.
pub fn backend() -> Backend {
    static BACKEND: OnceLock<Backend> = OnceLock::new();
    *BACKEND.get_or_init(|| match std::env::var(VARIABLE).as_deref() {
        Err(_) | Ok("") | Ok("sqlite") => Backend::Sqlite,
        Ok("postgres") => Backend::Postgres,
        Ok(other) => panic!("{VARIABLE}={other}: expected `sqlite` or `postgres`"),
    })
}

/// A data directory's PostgreSQL database, and the directory whose removal ends it.
struct Entry {
    database: Database<'static>,
    /// The test's working directory: once it is gone (its `TempDir` dropped) the test is
    /// over and the database is dropped at the next allocation.
    owner: PathBuf,
}

#[derive(Default)]
struct Registry {
    databases: HashMap<PathBuf, Entry>,
    /// Directories whose tests are about SQLite itself (see [`sqlite_only`]).
    sqlite_only: Vec<PathBuf>,
}

fn registry() -> &'static Mutex<Registry> {
    static REGISTRY: OnceLock<Mutex<Registry>> = OnceLock::new();
    REGISTRY.get_or_init(Mutex::default)
}

/// Declares that the servers and commands under `dir` (a test's working or data directory)
/// store in SQLite whatever the backend of the run: for tests about SQLite itself (its file,
/// its WAL, the `sqlite3` client, `store copy --from` a SQLite file). `why` is for the reader.
pub fn sqlite_only(dir: &Path, why: &str) {
    assert!(!why.is_empty(), "say why the test is about SQLite");
    let mut registry = registry()
        .lock()
        .expect("the backend registry is never poisoned");
    registry.sqlite_only.push(dir.to_path_buf());
}

/// The PostgreSQL URL the store of `data_dir` lives at in this run, made on first use; `None`
/// for SQLite (`<data_dir>/anomalies.db`). `owner` is the test's working directory.
pub fn database_url(data_dir: &Path, owner: &Path) -> Option<String> {
    if backend() == Backend::Sqlite {
        return None;
    }
    let mut registry = registry()
        .lock()
        .expect("the backend registry is never poisoned");
    if registry
        .sqlite_only
        .iter()
        .any(|dir| data_dir.starts_with(dir) || owner.starts_with(dir))
    {
        return None;
    }
    if let Some(entry) = registry.databases.get(data_dir) {
        return Some(entry.database.url());
    }
    // The databases of finished tests go first (the cluster's disk is shared by them all).
    registry.databases.retain(|_, entry| entry.owner.exists());
    let database = Cluster::shared().database();
    let url = database.url();
    registry.databases.insert(
        data_dir.to_path_buf(),
        Entry {
            database,
            owner: owner.to_path_buf(),
        },
    );
    Some(url)
}

/// Makes the store of `to` (a data directory of the test whose working directory is `owner`)
/// a copy of the store of `from`, whose servers must have stopped: the SQLite file is copied,
/// or a PostgreSQL database made from `from`'s as its template.
pub fn copy_store(from: &Path, to: &Path, owner: &Path) {
    std::fs::create_dir_all(to).expect("creating the copy's data directory");
    let mut registry = registry()
        .lock()
        .expect("the backend registry is never poisoned");
    match registry.databases.get(from) {
        Some(source) => {
            let database = Cluster::shared().copy_of(&source.database);
            registry.databases.insert(
                to.to_path_buf(),
                Entry {
                    database,
                    owner: owner.to_path_buf(),
                },
            );
        }
        None => {
            // A copy of a SQLite store is one too, whatever the run's backend.
            registry.sqlite_only.push(owner.to_path_buf());
            std::fs::copy(from.join("anomalies.db"), to.join("anomalies.db"))
                .expect("copying the SQLite file");
        }
    }
}

/// The data directory a `vitalwatch` command run in `cwd` with `args` and `env` uses.
pub fn data_dir_of(cwd: &Path, args: &[String], env: &[(String, String)]) -> PathBuf {
    let from_args = args.iter().enumerate().find_map(|(i, arg)| {
        if arg == "--data-dir" {
            args.get(i + 1).cloned()
        } else {
            arg.strip_prefix("--data-dir=").map(str::to_owned)
        }
    });
    let from_env = || {
        env.iter()
            .find(|(name, _)| name == "VITALWATCH_DATA_DIR")
            .map(|(_, value)| value.clone())
    };
    cwd.join(from_args.or_else(from_env).unwrap_or_else(|| "data".into()))
}

/// Whether `args` or `env` already name the store (the test chose its backend itself).
pub fn names_a_store(args: &[String], env: &[(String, String)]) -> bool {
    args.iter()
        .any(|a| a == "--database" || a.starts_with("--database="))
        || env
            .iter()
            .any(|(name, _)| name == "VITALWATCH_DATABASE_URL")
}

/// Runs `sql` on the store of `data_dir` (the `sqlite3` client on
/// `<data_dir>/anomalies.db`, or `psql` on its database): its rows, one per line, columns
/// separated by `|`, trimmed. Panics when it fails. Keep to SQL both dialects read alike.
pub fn sql(data_dir: &Path, sql: &str) -> String {
    let postgres = {
        let registry = registry()
            .lock()
            .expect("the backend registry is never poisoned");
        registry
            .databases
            .get(data_dir)
            .map(|entry| entry.database.name.clone())
    };
    match postgres {
        Some(name) => Cluster::shared().sql(&name, sql),
        None => {
            let output = Command::new("sqlite3")
                .arg(data_dir.join("anomalies.db"))
                .arg(sql)
                .output()
                .expect("running sqlite3 (scripts/test installs it)");
            assert!(
                output.status.success(),
                "sqlite3 {sql:?} failed: {}",
                String::from_utf8_lossy(&output.stderr)
            );
            String::from_utf8_lossy(&output.stdout).trim().to_owned()
        }
    }
}

/// The URL of the store of `data_dir` when it is a PostgreSQL database of this run (made by
/// an earlier [`database_url`]; never makes one).
pub fn registered_url(data_dir: &Path) -> Option<String> {
    let registry = registry()
        .lock()
        .expect("the backend registry is never poisoned");
    registry
        .databases
        .get(data_dir)
        .map(|entry| entry.database.url())
}

/// Whether the store of `data_dir` is a PostgreSQL database of this run.
pub fn is_postgres(data_dir: &Path) -> bool {
    let registry = registry()
        .lock()
        .expect("the backend registry is never poisoned");
    registry.databases.contains_key(data_dir)
}

/// An SQL expression for the time in `column` of the store of `data_dir` as SQLite stores
/// it (RFC 3339 UTC with microseconds, `2026-01-01T00:00:05.000000Z`), on either backend.
pub fn rfc3339(data_dir: &Path, column: &str) -> String {
    if is_postgres(data_dir) {
        format!("to_char({column} AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')")
    } else {
        column.to_owned()
    }
}
