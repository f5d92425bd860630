//! Real PostgreSQL 15 clusters for the tests: `initdb` as the `postgres` user (PostgreSQL
//! refuses to run as root) in a temporary directory that user owns, listening on a free
//! loopback port only, started and stopped with `pg_ctl`.
//!
//! [`Cluster::shared`] is one cluster per test binary (an `initdb` costs seconds): a watchdog
//! holding a pipe from this process stops it and removes its directory when the binary exits,
//! however it exits. [`Cluster::start`] is a cluster of the caller's own (the Jepsen test stops
//! and restarts it), removed when it drops. Each test takes a [`Database`] of its own, owned
//! by an ordinary role that logs in with a password (SCRAM), and dropped with it.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

/// Where Debian's `postgresql-15` puts the server's programs (`scripts/test` installs it).
pub const BIN: &str = "/usr/lib/postgresql/15/bin";

/// The role VitalWatch logs in as, and its password (so a leak of it is detectable).
pub const ROLE: &str = "vitalwatch";
pub const PASSWORD: &str = "pg-test-Secret-7f3a9c";

/// The superuser's password (for creating and dropping databases).
const SUPERUSER_PASSWORD: &str = "pg-admin-Secret-2b81e4";

/// A running cluster.
pub struct Cluster {
    port: u16,
    data: PathBuf,
    /// Settings passed to the server on every start (`-c name=value …`), after ours.
    settings: String,
    /// The directory that holds `data` and the log; removed on drop (owned clusters only).
    root: Option<tempfile::TempDir>,
}

static SHARED: OnceLock<(Cluster, Child)> = OnceLock::new();
static NEXT_DB: AtomicU64 = AtomicU64::new(1);

fn program(name: &str) -> String {
    format!("{BIN}/{name}")
}

/// Runs a command as the `postgres` user; panics with its output when it fails.
fn as_postgres(args: &[&str]) {
    let output = Command::new("runuser")
        .args(["-u", "postgres", "--"])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("running runuser");
    assert!(
        output.status.success(),
        "{} failed: {}{}",
        args.join(" "),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

impl Cluster {
    /// One cluster for the whole test binary, started on first use.
    pub fn shared() -> &'static Cluster {
        &SHARED
            .get_or_init(|| {
                let mut cluster = Cluster::start();
                let watchdog = cluster.keep_until_exit();
                (cluster, watchdog)
            })
            .0
    }

    /// Hands the cluster's removal to a watchdog: it stops the cluster and removes its
    /// directory once this process has exited, however it exits (`cat` returns when the
    /// pipe's write end, held by the process, closes). For a cluster kept in a static.
    pub fn keep_until_exit(&mut self) -> Child {
        let root = self
            .root
            .take()
            .expect("a fresh cluster owns its directory")
            .keep();
        Command::new("sh")
            .arg("-c")
            .arg(
                "cat >/dev/null; runuser -u postgres -- \"$1\" stop -m immediate -D \"$2\" >/dev/null 2>&1; rm -rf \"$3\"",
            )
            .args(["sh", &program("pg_ctl")])
            .arg(&self.data)
            .arg(&root)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting the cluster's watchdog")
    }

    /// A new cluster of the caller's own, stopped and removed when it drops.
    pub fn start() -> Cluster {
        let root = owned_root();
        let data = root.path().join("data");
        let pwfile = root.path().join("pwfile");
        std::fs::write(&pwfile, SUPERUSER_PASSWORD).expect("writing the password file");
        let status = Command::new("chown")
            .arg("postgres:postgres")
            .arg(&pwfile)
            .status()
            .expect("running chown");
        assert!(status.success());
        let data_text = data.to_string_lossy().into_owned();
        as_postgres(&[
            &program("initdb"),
            "-D",
            &data_text,
            "-U",
            "postgres",
            "--pwfile",
            &pwfile.to_string_lossy(),
            "--auth-host=scram-sha-256",
            "--auth-local=peer",
            "--encoding=UTF8",
            "--locale=C",
            "--no-sync",
        ]);
        let cluster = Cluster {
            port: crate::support::free_port(),
            data,
            settings: String::new(),
            root: Some(root),
        };
        cluster.start_again();
        cluster.superuser_sql(&format!(
            "CREATE ROLE {ROLE} LOGIN PASSWORD '{PASSWORD}' CREATEDB"
        ));
        cluster
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Starts the (stopped) cluster and waits until it accepts connections.
    pub fn start_again(&self) {
        let log = self
            .data
            .parent()
            .expect("the data directory has a parent")
            .join("server.log");
        let options = format!(
            "-p {} -c listen_addresses=127.0.0.1 -c unix_socket_directories='' \
             -c max_connections=300 -c shared_buffers=32MB {}",
            self.port, self.settings
        );
        as_postgres(&[
            &program("pg_ctl"),
            "start",
            "-w",
            "-t",
            "60",
            "-D",
            &self.data.to_string_lossy(),
            "-l",
            &log.to_string_lossy(),
            "-o",
            &options,
        ]);
    }

    /// Stops the cluster as a crash would (`pg_ctl stop -m immediate`): no checkpoint, every
    /// connection cut; recovery replays the WAL on the next start.
    pub fn stop_immediate(&self) {
        as_postgres(&[
            &program("pg_ctl"),
            "stop",
            "-m",
            "immediate",
            "-w",
            "-D",
            &self.data.to_string_lossy(),
        ]);
    }

    /// A streaming standby of this (running) cluster: `pg_basebackup -R` into a directory of
    /// its own, started on a free port with `settings`; it follows the primary until
    /// [`Cluster::promote`]. Stopped and removed when it drops.
    pub fn standby(&self, settings: &str) -> Cluster {
        let root = owned_root();
        let data = root.path().join("data");
        let data_text = data.to_string_lossy().into_owned();
        let output = Command::new("runuser")
            .args(["-u", "postgres", "--"])
            .arg(program("pg_basebackup"))
            .args(["-D", &data_text, "-R", "-X", "stream", "--no-sync"])
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-U",
                "postgres",
            ])
            .env("PGPASSWORD", SUPERUSER_PASSWORD)
            .stdin(Stdio::null())
            .output()
            .expect("running pg_basebackup");
        assert!(
            output.status.success(),
            "pg_basebackup failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let standby = Cluster {
            port: crate::support::free_port(),
            data,
            settings: settings.to_owned(),
            root: Some(root),
        };
        standby.start_again();
        standby
    }

    /// Promotes a standby to a primary (`pg_ctl promote -w`: returns once it takes writes).
    pub fn promote(&self) {
        as_postgres(&[
            &program("pg_ctl"),
            "promote",
            "-w",
            "-t",
            "60",
            "-D",
            &self.data.to_string_lossy(),
        ]);
    }

    /// Runs SQL as the superuser on the `postgres` database; panics when it fails.
    pub fn superuser_sql(&self, sql: &str) -> String {
        self.sql_as("postgres", SUPERUSER_PASSWORD, "postgres", sql)
    }

    /// Runs SQL on `database` as VitalWatch's role; the output is unaligned, tuples only.
    pub fn sql(&self, database: &str, sql: &str) -> String {
        self.sql_as(ROLE, PASSWORD, database, sql)
    }

    fn sql_as(&self, user: &str, password: &str, database: &str, sql: &str) -> String {
        let output = Command::new(program("psql"))
            .args(["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1"])
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string()])
            .args(["-U", user, "-d", database, "-c", sql])
            .env("PGPASSWORD", password)
            .stdin(Stdio::null())
            .output()
            .expect("running psql");
        assert!(
            output.status.success(),
            "psql {sql:?} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).trim().to_owned()
    }

    /// A new, empty database owned by VitalWatch's role, dropped with the guard.
    pub fn database(&self) -> Database<'_> {
        self.create_database("")
    }

    /// A new database holding a copy of `source` (which nobody may be connected to: stop its
    /// servers first), dropped with the guard.
    pub fn copy_of(&self, source: &Database<'_>) -> Database<'_> {
        self.create_database(&format!(" TEMPLATE {}", source.name))
    }

    fn create_database(&self, template: &str) -> Database<'_> {
        let name = format!(
            "vw_{}_{}",
            std::process::id(),
            NEXT_DB.fetch_add(1, Ordering::Relaxed)
        );
        self.superuser_sql(&format!("CREATE DATABASE {name} OWNER {ROLE}{template}"));
        Database {
            cluster: self,
            name,
        }
    }

    /// The URL of `database` with VitalWatch's role and password.
    pub fn url(&self, database: &str) -> String {
        format!(
            "postgres://{ROLE}:{PASSWORD}@127.0.0.1:{}/{database}",
            self.port
        )
    }

    /// The server's log so far (for a test that checks what reached it).
    pub fn log(&self) -> String {
        let path: &Path = self.data.parent().expect("the data directory has a parent");
        std::fs::read_to_string(path.join("server.log")).unwrap_or_default()
    }
}

/// A temporary directory the `postgres` user owns, for a cluster's data and log.
fn owned_root() -> tempfile::TempDir {
    let root = tempfile::Builder::new()
        .prefix("vitalwatch-pg-")
        .tempdir()
        .expect("a temporary directory");
    let status = Command::new("chown")
        .args(["postgres:postgres"])
        .arg(root.path())
        .status()
        .expect("running chown");
    assert!(status.success(), "chown of the cluster directory failed");
    root
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if self.root.is_some() {
            let _ = Command::new("runuser")
                .args(["-u", "postgres", "--"])
                .arg(program("pg_ctl"))
                .args(["stop", "-m", "immediate", "-w", "-D"])
                .arg(&self.data)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
    }
}

/// A database of one test; dropped (its connections ended) with the guard.
pub struct Database<'a> {
    cluster: &'a Cluster,
    pub name: String,
}

impl Database<'_> {
    pub fn url(&self) -> String {
        self.cluster.url(&self.name)
    }

    /// Runs SQL on this database as VitalWatch's role.
    pub fn sql(&self, sql: &str) -> String {
        self.cluster.sql(&self.name, sql)
    }
}

impl Drop for Database<'_> {
    fn drop(&mut self) {
        let _ = Command::new(program("psql"))
            .args(["-X", "-q", "-h", "127.0.0.1", "-p"])
            .arg(self.cluster.port.to_string())
            .args(["-U", "postgres", "-d", "postgres", "-c"])
            .arg(format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                self.name
            ))
            .env("PGPASSWORD", SUPERUSER_PASSWORD)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}
