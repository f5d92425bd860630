//! The real `vitalwatch` binary as a server: started on free ports in a temporary directory,
//! its `listening NAME=ADDR` lines read for its addresses, stopped by its process id (and
//! killed when the guard drops, so a failing test leaves no server behind).

use super::backend;
use super::process::{Guarded, Lines};
use super::wait::WAIT;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_vitalwatch")
}

/// Environment variables that configure the binary: removed, so the host's settings never
/// reach a test (a test that wants one sets it in [`ServerOptions::env`]).
const CONFIG_ENV: [&str; 12] = [
    "VITALWATCH_DATA_DIR",
    "VITALWATCH_DATABASE_URL",
    "VITALWATCH_MODEL",
    "VITALWATCH_HTTP_ADDR",
    "VITALWATCH_DASHBOARD_ADDR",
    "VITALWATCH_CONFIG",
    "VITALWATCH_CERTS_DIR",
    "MQTT_PORT",
    "MQTT_TOPIC",
    "MQTT_BROKER",
    "MQTT_USE_TLS",
    "MQTT_TLS_CA_CERTS",
];

/// `vitalwatch` to run in `cwd`, with the host's configuration variables removed and the
/// store of `<cwd>/data` on this run's backend ([`super::backend`]).
pub fn command(cwd: &Path) -> Command {
    command_for(cwd, &[], &[])
}

/// `vitalwatch ARGS` in `cwd` with `env`: the host's configuration variables removed and,
/// unless `args` or `env` name a store, `VITALWATCH_DATABASE_URL` set to the database of the
/// data directory they select when this run is on PostgreSQL.
fn command_for(cwd: &Path, args: &[String], env: &[(String, String)]) -> Command {
    let mut command = Command::new(bin());
    command.current_dir(cwd);
    for name in CONFIG_ENV {
        command.env_remove(name);
    }
    if !backend::names_a_store(args, env) {
        let data_dir = backend::data_dir_of(cwd, args, env);
        if let Some(url) = backend::database_url(&data_dir, cwd) {
            command.env("VITALWATCH_DATABASE_URL", url);
        }
    }
    command
}

/// `vitalwatch` for a command on the store of `data_dir` (a running server's, given with
/// `--data-dir`): the host's configuration variables removed and, when that store is a
/// PostgreSQL database of this run, `VITALWATCH_DATABASE_URL` set to it.
pub fn on_store(data_dir: &Path) -> Command {
    let mut command = Command::new(bin());
    for name in CONFIG_ENV {
        command.env_remove(name);
    }
    if let Some(url) = backend::registered_url(data_dir) {
        command.env("VITALWATCH_DATABASE_URL", url);
    }
    command
}

fn owned(args: &[&str]) -> Vec<String> {
    args.iter().map(|a| a.to_string()).collect()
}

/// Runs `vitalwatch ARGS` in `cwd` to its end: (success, stdout, stderr).
pub fn run(cwd: &Path, args: &[&str]) -> (bool, String, String) {
    let output = command_for(cwd, &owned(args), &[])
        .args(args)
        .output()
        .expect("running vitalwatch");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// [`run`] with `stdin` written to its standard input (passwords are read from there).
pub fn run_with_stdin(cwd: &Path, args: &[&str], stdin: &str) -> std::process::Output {
    use std::io::Write;
    let mut child = command_for(cwd, &owned(args), &[])
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("running vitalwatch");
    child
        .stdin
        .take()
        .expect("standard input is piped")
        .write_all(stdin.as_bytes())
        .expect("writing to vitalwatch's standard input");
    child.wait_with_output().expect("waiting for vitalwatch")
}

/// A running `vitalwatch serve` (or `demo`).
pub struct Server {
    /// "http" or "https".
    pub scheme: &'static str,
    process: Guarded,
    stdout: Lines,
    pub api: SocketAddr,
    /// The embedded broker's TLS address, when it runs.
    pub mqtts: Option<SocketAddr>,
    /// Every `listening NAME=ADDR` line the server printed.
    pub listeners: HashMap<String, SocketAddr>,
    pub data_dir: PathBuf,
    stderr_log: PathBuf,
}

pub struct ServerOptions<'a> {
    /// Working directory; the data dir defaults to `<cwd>/data`.
    pub cwd: &'a Path,
    /// Extra arguments after the subcommand.
    pub args: Vec<String>,
    /// Pass `--http-addr 127.0.0.1:0 --mqtts-addr 127.0.0.1:0` (otherwise the defaults).
    pub free_port: bool,
    /// Environment variables set for the server (after the host's are removed).
    pub env: Vec<(String, String)>,
}

impl<'a> ServerOptions<'a> {
    /// No extra arguments, free ports, no environment.
    pub fn new(cwd: &'a Path) -> ServerOptions<'a> {
        ServerOptions {
            cwd,
            args: Vec::new(),
            free_port: true,
            env: Vec::new(),
        }
    }

    /// [`ServerOptions::new`] with these arguments.
    pub fn with_args(cwd: &'a Path, args: &[&str]) -> ServerOptions<'a> {
        ServerOptions {
            args: args.iter().map(|a| a.to_string()).collect(),
            ..ServerOptions::new(cwd)
        }
    }
}

impl Server {
    /// Starts `serve` on a free loopback port with `<dir>/data` as its data directory.
    pub fn start(dir: &Path) -> Server {
        Server::start_with(ServerOptions::new(dir))
    }

    /// Starts `serve` as most tests want it: plaintext HTTP with loopback trusted, so they can
    /// talk to the API without tokens. The security tests use [`Server::start_secure`].
    pub fn start_with(options: ServerOptions<'_>) -> Server {
        let mut options = options;
        options.args.splice(
            0..0,
            ["--http-plaintext", "--trust-loopback"].map(str::to_owned),
        );
        Server::launch("serve", options, "http")
    }

    /// Starts `serve` with its defaults: HTTPS, no trusted loopback, every route but
    /// `/health` behind a token or login.
    pub fn start_secure(options: ServerOptions<'_>) -> Server {
        Server::launch("serve", options, "https")
    }

    /// Starts `vitalwatch demo` (plaintext, loopback trusted by its own choice).
    pub fn start_demo(options: ServerOptions<'_>) -> Server {
        Server::launch("demo", options, "http")
    }

    fn launch(subcommand: &str, options: ServerOptions<'_>, scheme: &'static str) -> Server {
        let stderr_log = options.cwd.join(format!(
            "server-{}.log",
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .expect("the clock is after 1970")
                .as_nanos()
        ));
        let mut command = command_for(options.cwd, &options.args, &options.env);
        command.arg(subcommand);
        if options.free_port {
            command.args(["--http-addr", "127.0.0.1:0", "--mqtts-addr", "127.0.0.1:0"]);
        }
        if !options.args.iter().any(|a| a == "--dashboard-addr") {
            // Tests run in parallel: never let them fight over the default port 8501.
            command.args(["--dashboard-addr", "127.0.0.1:0"]);
        }
        command
            .args(&options.args)
            .env("RUST_LOG", "vitalwatch=debug");
        command
            .envs(options.env.iter().map(|(k, v)| (k, v)))
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&stderr_log).expect("creating the server's log"));
        let mut process = Guarded::spawn(&mut command);
        let mut stdout = process.lines();
        let mut listeners = HashMap::new();
        // The API line comes last, once everything else listens.
        while !listeners.contains_key("api") {
            let line = stdout.find(WAIT, |line| {
                let (name, addr) = line.strip_prefix("listening ")?.split_once('=')?;
                Some((name.to_owned(), addr.trim().to_owned()))
            });
            let Some((name, addr)) = line else {
                process.kill();
                panic!(
                    "vitalwatch {subcommand} did not start; its log:\n{}",
                    std::fs::read_to_string(&stderr_log).unwrap_or_default()
                );
            };
            let mut addr: SocketAddr = addr.parse().expect("a listening line holds an address");
            if addr.ip().is_unspecified() {
                addr.set_ip([127, 0, 0, 1].into());
            }
            listeners.insert(name, addr);
        }
        let data_dir = backend::data_dir_of(options.cwd, &options.args, &options.env);
        Server {
            scheme,
            process,
            stdout,
            api: listeners["api"],
            mqtts: listeners.get("mqtts").copied(),
            listeners,
            data_dir,
            stderr_log,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}://{}{}", self.scheme, self.api, path)
    }

    pub fn pid(&self) -> u32 {
        self.process.id()
    }

    pub fn is_running(&mut self) -> bool {
        self.process.is_running()
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.stderr_log).unwrap_or_default()
    }

    /// Its standard output: the lines read so far, and more on demand.
    pub fn stdout(&mut self) -> &mut Lines {
        &mut self.stdout
    }

    /// Sends SIGTERM and waits (at most 60 s) for a clean exit; returns whether it was one.
    pub fn terminate(&mut self) -> bool {
        self.process
            .stop("TERM", Duration::from_secs(60))
            .is_some_and(|status| status.success())
    }

    /// Runs `sql` on this server's store, SQLite or PostgreSQL ([`backend::sql`]).
    pub fn sql(&self, sql: &str) -> String {
        backend::sql(&self.data_dir, sql)
    }

    /// SIGKILL: no chance to flush anything.
    pub fn kill9(&mut self) {
        self.process.signal("KILL");
        self.process.kill();
    }
}
