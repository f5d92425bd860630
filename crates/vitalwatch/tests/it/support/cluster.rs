//! The scale-out topologies as real processes (docs/SCALING.md draws them):
//! - [`Pair`]: a PostgreSQL primary and a streaming standby made with `pg_basebackup -R`,
//!   replicating synchronously (`synchronous_standby_names`, `synchronous_commit=on`), and
//!   the multi-host URL (`…@h1,h2/db?target_session_attrs=read-write`) the nodes use;
//! - [`Node`]: one `vitalwatch serve` on fixed loopback ports (so a restart comes back where
//!   the balancer expects it), started, killed, stopped and started again;
//! - [`Balancer`]: Debian's HAProxy in TCP mode in front of the nodes' embedded brokers
//!   (8883) and APIs, from a generated configuration (short timeouts, TCP health checks);
//! - [`Topology`]: topology A (HAProxy + embedded brokers) or B (Mosquitto + `$share`),
//!   N nodes on one database.
//!
//! Everything is removed when its guard drops. The cluster tests run one at a time
//! ([`exclusive`]): each starts several servers, and the machine is small.

use super::mosquitto::{Mosquitto, Pki};
use super::postgres::{Cluster, Database, PASSWORD, ROLE};
use super::process::Guarded;
use super::server::{Server, ServerOptions, bin};
use super::wait::{WAIT, poll_until, wait_until};
use super::{agent, free_port, get};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::Duration;

/// The cluster tests hold this while they run: one topology on the machine at a time.
pub fn exclusive() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A primary and its synchronous streaming standby.
pub struct Pair {
    pub primary: Cluster,
    pub standby: Cluster,
}

static SHARED_PAIR: OnceLock<(Pair, Child, Child)> = OnceLock::new();

impl Pair {
    /// A new pair of the caller's own (a test that fails the primary over), removed on drop.
    pub fn start() -> Pair {
        let primary = Cluster::start();
        let standby = primary.standby("");
        // Synchronous from here on: set on the primary only (after the base backup, so the
        // standby does not inherit it: once promoted it commits alone).
        primary.superuser_sql("ALTER SYSTEM SET synchronous_standby_names = '*'");
        primary.superuser_sql("ALTER SYSTEM SET synchronous_commit = 'on'");
        primary.superuser_sql("SELECT pg_reload_conf()");
        wait_until(WAIT, "the standby to replicate synchronously", || {
            primary.superuser_sql("SELECT sync_state FROM pg_stat_replication") == "sync"
        });
        Pair { primary, standby }
    }

    /// One pair for the whole test binary (tests that do not fail it over), removed when the
    /// binary exits.
    pub fn shared() -> &'static Pair {
        &SHARED_PAIR
            .get_or_init(|| {
                let mut pair = Pair::start();
                let primary = pair.primary.keep_until_exit();
                let standby = pair.standby.keep_until_exit();
                (pair, primary, standby)
            })
            .0
    }

    /// A new database (made on the primary, streamed to the standby).
    pub fn database(&self) -> Database<'_> {
        self.primary.database()
    }

    /// The URL the nodes use: both hosts, the one that takes writes chosen at each connect.
    pub fn url(&self, database: &str) -> String {
        format!(
            "postgres://{ROLE}:{PASSWORD}@127.0.0.1:{},127.0.0.1:{}/{database}?target_session_attrs=read-write",
            self.primary.port(),
            self.standby.port()
        )
    }
}

/// One `vitalwatch serve` of a topology, on ports that stay the same across restarts.
pub struct Node {
    pub name: String,
    pub api_port: u16,
    pub mqtts_port: u16,
    cwd: PathBuf,
    args: Vec<String>,
    env: Vec<(String, String)>,
    pub server: Option<Server>,
}

impl Node {
    /// Starts it (again) and waits until it serves.
    pub fn start(&mut self) {
        let mut args = vec![
            "--http-addr".to_owned(),
            format!("127.0.0.1:{}", self.api_port),
            "--mqtts-addr".to_owned(),
            format!("127.0.0.1:{}", self.mqtts_port),
        ];
        args.extend(self.args.iter().cloned());
        self.server = Some(Server::start_with(ServerOptions {
            cwd: &self.cwd,
            args,
            free_port: false,
            env: self.env.clone(),
        }));
    }

    /// The first start: when another process took one of the node's free ports meanwhile
    /// (tests run in parallel), new ones are chosen (nothing knows them yet).
    fn first_start(&mut self) {
        for _ in 0..3 {
            let started = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.start()));
            match started {
                Ok(()) => return,
                Err(_) => {
                    self.api_port = free_port();
                    self.mqtts_port = free_port();
                }
            }
        }
        self.start();
    }

    pub fn server(&self) -> &Server {
        self.server.as_ref().expect("the node is running")
    }

    pub fn url(&self, path: &str) -> String {
        self.server().url(path)
    }

    /// SIGKILL: the node dies with whatever it had in flight.
    pub fn kill9(&mut self) {
        if let Some(mut server) = self.server.take() {
            server.kill9();
        }
    }

    /// SIGTERM and a clean exit (at most 60 s); returns whether it was one. The log of an
    /// unclean one is printed.
    pub fn terminate(&mut self) -> bool {
        let Some(mut server) = self.server.take() else {
            return true;
        };
        let clean = server.terminate();
        if !clean {
            eprintln!("{} did not stop cleanly:\n{}", self.name, server.log());
        }
        clean
    }

    /// The database URL it uses from its next start.
    pub fn set_database_url(&mut self, url: &str) {
        for (key, value) in &mut self.env {
            if key == "VITALWATCH_DATABASE_URL" {
                *value = url.to_owned();
            }
        }
    }

    /// The node's log so far.
    pub fn log(&self) -> String {
        self.server.as_ref().map(Server::log).unwrap_or_default()
    }
}

/// HAProxy in TCP mode in front of the nodes' embedded brokers and APIs.
pub struct Balancer {
    /// Killed when the balancer drops.
    process: Guarded,
    conf: PathBuf,
    log: PathBuf,
    pub mqtts_port: u16,
    pub api_port: u16,
}

impl Balancer {
    /// Writes the configuration for `nodes` into `dir` and starts HAProxy in the foreground.
    pub fn start(dir: &Path, nodes: &[Node]) -> Balancer {
        let mqtts_port = free_port();
        let api_port = free_port();
        let conf = dir.join("haproxy.cfg");
        let log = dir.join("haproxy.log");
        std::fs::write(&conf, haproxy_config(mqtts_port, api_port, nodes)).unwrap();
        let process = Balancer::spawn(&conf, &log, [mqtts_port, api_port]);
        Balancer {
            process,
            conf,
            log,
            mqtts_port,
            api_port,
        }
    }

    fn spawn(conf: &Path, log: &Path, ports: [u16; 2]) -> Guarded {
        // scripts/test installs haproxy.
        let mut process = Guarded::spawn(
            Command::new("haproxy")
                .args(["-db", "-f"])
                .arg(conf)
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(log).expect("creating HAProxy's log")),
        );
        for port in ports {
            let addr = SocketAddr::from(([127, 0, 0, 1], port));
            let up = poll_until(WAIT, || {
                assert!(
                    process.is_running(),
                    "haproxy exited: {}",
                    std::fs::read_to_string(log).unwrap_or_default()
                );
                TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok()
            });
            assert!(up.is_some(), "haproxy does not listen on {addr}");
        }
        process
    }

    /// SIGKILL of HAProxy (every connection through it drops), then HAProxy started again on
    /// the same ports with the same configuration.
    pub fn restart(&mut self) {
        self.process.kill();
        self.process = Balancer::spawn(&self.conf, &self.log, [self.mqtts_port, self.api_port]);
    }

    /// An API URL through the balancer.
    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.api_port)
    }
}

/// HAProxy's configuration: one TCP frontend and backend for MQTT over TLS and one for the
/// API, every node in both, checked by TCP connects every 200 ms (down after two failures);
/// a connect refused by a dead node is retried on another (`option redispatch`).
///
/// Behind a balancer every device has the balancer's address, and a node admits at most
/// 16 TLS handshakes in progress per client address (`ingest::handshake`): the MQTT frontend
/// takes at most 20 new connections a second (more wait in its listen backlog, they are not
/// refused), so a burst of reconnecting devices is not closed at the handshake.
pub fn haproxy_config(mqtts_port: u16, api_port: u16, nodes: &[Node]) -> String {
    let mut text = String::from(
        "# Written by the VitalWatch cluster tests.\n\
         global\n    maxconn 4096\n\n\
         defaults\n    mode tcp\n    retries 3\n    option redispatch\n\
         \x20   timeout connect 1s\n    timeout client 120s\n    timeout server 120s\n\
         \x20   timeout check 1s\n    default-server inter 200ms fall 2 rise 1\n\n",
    );
    for (name, port, node_port) in [
        (
            "mqtts",
            mqtts_port,
            nodes.iter().map(|n| n.mqtts_port).collect::<Vec<_>>(),
        ),
        ("api", api_port, nodes.iter().map(|n| n.api_port).collect()),
    ] {
        let rate = if name == "mqtts" {
            "    rate-limit sessions 20\n"
        } else {
            ""
        };
        text.push_str(&format!(
            "frontend {name}\n    bind 127.0.0.1:{port}\n{rate}    default_backend {name}_nodes\n\n\
             backend {name}_nodes\n    balance leastconn\n"
        ));
        for (node, p) in nodes.iter().zip(node_port) {
            text.push_str(&format!("    server {} 127.0.0.1:{p} check\n", node.name));
        }
        text.push('\n');
    }
    text
}

/// Which way readings reach the nodes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Every node runs its embedded broker, behind HAProxy.
    A,
    /// An external Mosquitto; every node subscribes to `$share/vitalwatch//iot/health`.
    B,
}

/// A topology: N nodes on one database, and the way in (HAProxy or Mosquitto).
pub struct Topology {
    pub kind: Kind,
    pub nodes: Vec<Node>,
    pub balancer: Option<Balancer>,
    pub broker: Option<Mosquitto>,
    /// The certificates: the nodes' in A (their CA, server and device certificates), the
    /// broker's in B.
    pub pki: Pki,
    /// The database URL the nodes use.
    pub url: String,
    pub dir: tempfile::TempDir,
}

impl Topology {
    /// Starts `n` nodes on `url` (the first alone, so it applies the migrations), then the
    /// balancer (A) or with the broker they subscribe to (B).
    pub fn start(kind: Kind, n: usize, url: &str) -> Topology {
        Topology::start_with(kind, n, url, None)
    }

    /// [`Topology::start`] with every node on the configuration `config` (TOML text).
    pub fn start_with(kind: Kind, n: usize, url: &str, config: Option<&str>) -> Topology {
        let dir = tempfile::tempdir().unwrap();
        let config = config.map(|text| {
            let path = dir.path().join("vitalwatch.toml");
            std::fs::write(&path, text).unwrap();
            path.display().to_string()
        });
        let pki = Pki::init(&dir.path().join("pki"));
        let broker = (kind == Kind::B).then(|| Mosquitto::start(dir.path(), &pki));
        let mut nodes: Vec<Node> = (1..=n)
            .map(|i| {
                let name = format!("node{i}");
                let mut args = vec!["--data-dir".to_owned(), name.clone()];
                if let Some(config) = &config {
                    args.extend(["--config".to_owned(), config.clone()]);
                }
                match &broker {
                    None => args.extend(["--certs-dir".to_owned(), pki.dir.display().to_string()]),
                    Some(broker) => {
                        let (cert, key) = pki.client("vitalwatch-ingest");
                        args.extend(
                            [
                                "--broker",
                                &broker.url(),
                                "--broker-ca",
                                &pki.ca().display().to_string(),
                                "--broker-cert",
                                &cert.display().to_string(),
                                "--broker-key",
                                &key.display().to_string(),
                                "--share-group",
                                "vitalwatch",
                                "--client-id",
                                &format!("vitalwatch-{name}"),
                            ]
                            .map(str::to_owned),
                        );
                    }
                }
                Node {
                    api_port: free_port(),
                    mqtts_port: free_port(),
                    cwd: dir.path().to_path_buf(),
                    args,
                    env: vec![
                        ("VITALWATCH_DATABASE_URL".to_owned(), url.to_owned()),
                        ("VITALWATCH_NODE_ID".to_owned(), name.clone()),
                    ],
                    name,
                    server: None,
                }
            })
            .collect();
        for node in &mut nodes {
            node.first_start();
        }
        let balancer = (kind == Kind::A).then(|| Balancer::start(dir.path(), &nodes));
        let topology = Topology {
            kind,
            nodes,
            balancer,
            broker,
            pki,
            url: url.to_owned(),
            dir,
        };
        for node in &topology.nodes {
            topology.wait_ready(node);
        }
        topology
    }

    /// Waits until `node` is ready (its store reachable; in B, subscribed to the broker).
    pub fn wait_ready(&self, node: &Node) {
        wait_until(WAIT, format_args!("{} to be ready", node.name), || {
            get(&agent(), &node.url("/ready")).status == 200
        });
        if self.kind == Kind::B {
            wait_until(WAIT, format_args!("{} to subscribe", node.name), || {
                let broker = &get(&agent(), &node.url("/health")).json["broker"];
                broker["connected"] == true && broker["subscribed"] == true
            });
        }
    }

    /// Where devices connect: the balancer's MQTT port (A) or the broker's (B).
    pub fn mqtts_port(&self) -> u16 {
        match (&self.balancer, &self.broker) {
            (Some(balancer), _) => balancer.mqtts_port,
            (None, Some(broker)) => broker.port,
            (None, None) => unreachable!("a topology has a balancer or a broker"),
        }
    }

    /// The CA that signed the certificate devices see.
    pub fn ca(&self) -> PathBuf {
        self.pki.ca()
    }

    /// Issues (once) a device's certificate from the topology's CA: (cert, key).
    pub fn device(&self, id: &str) -> (PathBuf, PathBuf) {
        let cert = self.pki.dir.join(format!("devices/{id}.crt"));
        if !cert.exists() {
            let output = Command::new(bin())
                .args(["certs", "device", id, "--certs-dir"])
                .arg(&self.pki.dir)
                .args(["--database", &self.url])
                .output()
                .expect("running vitalwatch certs");
            assert!(
                output.status.success(),
                "certs device {id}: {}",
                String::from_utf8_lossy(&output.stderr)
            );
        }
        (cert, self.pki.dir.join(format!("devices/{id}.key")))
    }

    /// Restarts a stopped node and waits until it is ready.
    pub fn restart(&mut self, index: usize) {
        self.nodes[index].start();
        self.wait_ready(&self.nodes[index]);
    }
}

/// A TCP relay on loopback between one node and PostgreSQL, that can cut the path (close
/// every relayed connection and refuse new ones: the node sees the cut at once) and restore it
/// on the same port. A silent black hole (packets dropped, no reset) is not modelled.
pub struct Relay {
    pub port: u16,
    target: SocketAddr,
    open: Arc<AtomicBool>,
    accept: Option<std::thread::JoinHandle<()>>,
    streams: Arc<Mutex<Vec<TcpStream>>>,
}

impl Relay {
    /// A relay from a free port to `target_port`, open.
    pub fn start(target_port: u16) -> Relay {
        let mut relay = Relay {
            port: free_port(),
            target: SocketAddr::from(([127, 0, 0, 1], target_port)),
            open: Arc::new(AtomicBool::new(false)),
            accept: None,
            streams: Arc::new(Mutex::new(Vec::new())),
        };
        relay.restore();
        relay
    }

    /// Listens again and relays new connections.
    pub fn restore(&mut self) {
        assert!(self.accept.is_none(), "the relay is open");
        let listener = std::net::TcpListener::bind(("127.0.0.1", self.port))
            .expect("binding the relay's port again");
        self.open.store(true, Ordering::SeqCst);
        let (open, streams, target) = (
            Arc::clone(&self.open),
            Arc::clone(&self.streams),
            self.target,
        );
        self.accept = Some(std::thread::spawn(move || {
            for client in listener.incoming() {
                if !open.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(client) = client else { continue };
                let Ok(server) = TcpStream::connect(target) else {
                    continue;
                };
                let mut kept = streams.lock().unwrap_or_else(PoisonError::into_inner);
                for (from, to) in [(&client, &server), (&server, &client)] {
                    let (Ok(mut from), Ok(mut to)) = (from.try_clone(), to.try_clone()) else {
                        continue;
                    };
                    std::thread::spawn(move || {
                        let _ = std::io::copy(&mut from, &mut to);
                        let _ = to.shutdown(std::net::Shutdown::Both);
                    });
                }
                kept.extend([client, server]);
            }
        }));
    }

    /// Cuts the path: closes every relayed connection and stops listening.
    pub fn cut(&mut self) {
        self.open.store(false, Ordering::SeqCst);
        // Wake the accepting thread so it sees the flag and drops its listener.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        if let Some(accept) = self.accept.take() {
            accept.join().expect("the relay's accepting thread");
        }
        for stream in self
            .streams
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .drain(..)
        {
            let _ = stream.shutdown(std::net::Shutdown::Both);
        }
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        if self.accept.is_some() {
            self.cut();
        }
    }
}
