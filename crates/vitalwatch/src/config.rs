//! Configuration: one [`Config`] tree, layered in exactly one function ([`Config::load`]).
//!
//! Precedence: built-in defaults < TOML file (`--config`) < environment < flags. clap merges
//! environment and flags (a flag beats its variable), so a command's flags carry both and are
//! applied last, by the function its caller passes to [`Config::load`] (for `serve`, the one in
//! `commands/serve.rs`). The defaults ship as a commented TOML ([`DEFAULT_TOML`]) that
//! `vitalwatch config default` prints; a test keeps it equal to [`Config::default`].

mod alerting;
mod broker_url;

pub use alerting::{AlertingConfig, WebhookDeliveryConfig, WebhookTarget};
pub use broker_url::BrokerUrl;

use crate::store::RegistryPolicy;
use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;
use vitalwatch_core::rules::RuleSet;
use vitalwatch_core::telemetry::Limits;

/// The commented default configuration.
pub const DEFAULT_TOML: &str = include_str!("default-config.toml");

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub data_dir: PathBuf,
    pub http_addr: SocketAddr,
    /// The live dashboard (the seed's Streamlit port 8501).
    pub dashboard_addr: SocketAddr,
    /// A plain-HTTP listener serving only `/metrics` without a token, for a scraper on this
    /// host; loopback addresses only.
    pub metrics_addr: Option<SocketAddr>,
    pub http: HttpConfig,
    pub registry: RegistryConfig,
    pub store: StoreConfig,
    pub limits: Limits,
    pub rules: RuleSet,
    pub mqtt: MqttConfig,
    pub model: ModelConfig,
    pub alerting: AlertingConfig,
    pub cluster: ClusterConfig,
}

/// This node among the nodes sharing one PostgreSQL database (see `cluster::leader`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClusterConfig {
    /// This node's name in `/health` and the leader election; flag `--node-id`, env
    /// `VITALWATCH_NODE_ID`; default: the host name.
    pub node_id: Option<String>,
    /// Seconds between two attempts at the leader lock (and checks that it is still held);
    /// default 2, at most 5 (a dead leader is replaced within twice this).
    pub leader_poll_s: Option<u64>,
}

impl ClusterConfig {
    /// The node id in force: the configured one, else the host name, else "vitalwatch".
    pub fn node_id(&self) -> String {
        self.node_id
            .clone()
            .filter(|id| !id.trim().is_empty())
            .or_else(|| {
                std::fs::read_to_string("/proc/sys/kernel/hostname")
                    .ok()
                    .or_else(|| std::env::var("HOSTNAME").ok())
                    .map(|name| name.trim().to_owned())
                    .filter(|name| !name.is_empty())
            })
            .unwrap_or_else(|| "vitalwatch".to_owned())
    }

    pub fn leader_poll(&self) -> Duration {
        Duration::from_secs(self.leader_poll_s.unwrap_or(2).clamp(1, 5))
    }
}

/// TLS handshakes in progress on one MQTT listener (the broker's `ingest::handshake` budget).
pub const MAX_TLS_HANDSHAKES: usize = 256;
/// Default of `[mqtt] handshakes_per_address`.
pub const DEFAULT_HANDSHAKES_PER_ADDRESS: usize = 16;

/// The embedded MQTT broker.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MqttConfig {
    pub enabled: bool,
    /// MQTT over TLS; the seed's port 8883.
    pub mqtts_addr: SocketAddr,
    /// The seed's topic; env MQTT_TOPIC.
    pub topic: String,
    /// Where the PKI lives; default `<data_dir>/certs`.
    pub certs_dir: Option<PathBuf>,
    /// Devices must present a certificate from our CA (mutual TLS).
    pub require_certificate: bool,
    pub max_packet_size: u32,
    pub max_inflight: u16,
    /// Broker worker threads, each with its connections, TLS and publish handling; the SQLite
    /// writer stays one thread whatever this is.
    pub workers: usize,
    /// A plaintext listener (e.g. "127.0.0.1:1883"), off by default; devices authenticate with
    /// username = device id and password = the secret from `vitalwatch certs secret`.
    pub plaintext_addr: Option<SocketAddr>,
    /// On the plaintext listener, let clients without credentials in (lab use only).
    pub allow_anonymous: bool,
    /// MQTT over WebSocket over TLS for browser clients (the seed's 8884), off unless set;
    /// the same certificate rules as `mqtts_addr`.
    pub wss_addr: Option<SocketAddr>,
    /// Browser origins (`https://host[:port]`) whose pages may open MQTT over WebSocket,
    /// besides the WSS listener's own; an upgrade with any other `Origin` is refused (403).
    pub wss_allowed_origins: Vec<String>,
    /// Messages per second one MQTT connection may publish (after a one-second burst) before
    /// its messages are delayed — acknowledged later, never dropped.
    pub max_rate_per_connection: u32,
    /// TLS handshakes in progress from one client address on a listener; a connection beyond
    /// it is closed at once. Behind an L4 balancer every device arrives from the balancer's
    /// address: raise it to the listener's total (256) there.
    pub handshakes_per_address: usize,
    /// An existing broker to subscribe to instead of embedding one (env MQTT_BROKER):
    /// `mqtts://host:port`, `mqtt://host:port` (plaintext, only when written so), or a bare
    /// host name as in the seed (then `use_tls` and MQTT_PORT decide). Unset: embedded broker.
    pub broker: Option<String>,
    /// For a bare host name in `broker`: connect with TLS (the seed's MQTT_USE_TLS).
    pub use_tls: bool,
    /// CA certificates (PEM) that sign the external broker's certificate (the seed's
    /// MQTT_TLS_CA_CERTS); default `<certs_dir>/ca.crt`.
    pub broker_ca: Option<PathBuf>,
    /// Client certificate and key (PEM) for mutual TLS with the external broker.
    pub broker_cert: Option<PathBuf>,
    pub broker_key: Option<PathBuf>,
    /// Our MQTT client id at the external broker. Fixed, because the persistent session (and
    /// the readings the broker keeps for us while we are down) belongs to it; every node of a
    /// shared group needs its own.
    pub client_id: String,
    /// Subscribe as `$share/<group>/<topic>`, so several nodes split the stream.
    pub share_group: Option<String>,
    /// Longest wait between two reconnect attempts (the backoff doubles up to this).
    pub reconnect_max_ms: u64,
}

impl Default for MqttConfig {
    fn default() -> MqttConfig {
        MqttConfig {
            enabled: true,
            mqtts_addr: SocketAddr::from(([0, 0, 0, 0], 8883)),
            topic: "/iot/health".to_owned(),
            certs_dir: None,
            require_certificate: true,
            max_packet_size: 8192,
            max_inflight: 32,
            workers: 2,
            plaintext_addr: None,
            allow_anonymous: false,
            wss_addr: None,
            wss_allowed_origins: Vec::new(),
            max_rate_per_connection: 2000,
            handshakes_per_address: DEFAULT_HANDSHAKES_PER_ADDRESS,
            broker: None,
            use_tls: true,
            broker_ca: None,
            broker_cert: None,
            broker_key: None,
            client_id: "vitalwatch".to_owned(),
            share_group: None,
            reconnect_max_ms: 30_000,
        }
    }
}

impl Default for Config {
    fn default() -> Config {
        Config {
            data_dir: PathBuf::from("data"),
            http_addr: SocketAddr::from(([0, 0, 0, 0], 5000)),
            dashboard_addr: SocketAddr::from(([0, 0, 0, 0], 8501)),
            metrics_addr: None,
            http: HttpConfig::default(),
            registry: RegistryConfig::default(),
            store: StoreConfig::default(),
            limits: Limits::default(),
            rules: RuleSet::default(),
            mqtt: MqttConfig::default(),
            model: ModelConfig::default(),
            alerting: AlertingConfig::default(),
            cluster: ClusterConfig::default(),
        }
    }
}

/// Who may use the REST API and the dashboard, and how they reach them.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpConfig {
    /// HTTPS (the PKI's server certificate) on the API and dashboard ports; `false` is the
    /// `--http-plaintext` opt-out, warned about at start.
    pub tls: bool,
    /// Treat HTTP clients on a loopback address as authenticated with every role (a
    /// workstation's curl); `--trust-loopback`. Off by default.
    pub trust_loopback: bool,
    /// A dashboard session ends after this long without a request.
    pub session_idle_timeout_s: u64,
    /// ... and after this long in any case.
    pub session_max_age_s: u64,
    /// Failed logins allowed per user name from one address range (a /24 or /64), and per
    /// address range for all names, within `login_window_s`; more are answered 429 without
    /// checking the password (each attempt is counted before it is checked). Failures for a
    /// name from all addresses only slow its logins down (growing delays), so nobody can
    /// lock a clinician out from elsewhere.
    pub login_failures_per_user: u32,
    pub login_failures_per_address: u32,
    pub login_window_s: u64,
    /// Password checks (Argon2id, ~19 MiB each) running at once; a login beyond them is
    /// answered 429 at once.
    pub login_concurrency: usize,
    /// Requests served at once per listener; more wait (HTTP connections beyond it queue in
    /// the kernel's backlog).
    pub max_concurrent_requests: usize,
    /// Open HTTP connections per listener; over plain HTTP more wait in the kernel's backlog,
    /// over HTTPS more are closed before their handshake.
    pub max_connections: usize,
    /// Over HTTPS, a connection that sends no complete request headers for this long is
    /// closed (a handshake itself must finish within `tls_handshake_timeout_s`).
    pub header_read_timeout_s: u64,
    /// Over HTTPS, a connection whose TLS handshake has not finished this soon is closed.
    pub tls_handshake_timeout_s: u64,
    /// Open connections per client address and per address range (/24, /64); more are
    /// closed at once.
    pub max_connections_per_address: usize,
    pub max_connections_per_range: usize,
    /// Requests in service at once per client address and per address range; more are
    /// answered 429 at once, so one client cannot use up `max_concurrent_requests`.
    pub max_requests_per_address: usize,
    pub max_requests_per_range: usize,
    /// A request's body must have arrived this many seconds after the request was taken
    /// into service (408 otherwise), so slow bodies cannot hold the request slots.
    pub request_timeout_s: u64,
    /// A connection (HTTP/1.1 or HTTP/2) with no request in flight for this long is closed.
    pub idle_timeout_s: u64,
    /// HTTP/2 streams open at once per connection.
    pub h2_max_concurrent_streams: u32,
    /// HTTP/2 PINGs this often; a peer that does not answer in `h2_keep_alive_timeout_s` is
    /// disconnected.
    pub h2_keep_alive_interval_s: u64,
    pub h2_keep_alive_timeout_s: u64,
    /// Live streams (`/api/events`) open at once, in all and per caller (token, session or
    /// loopback address); more are answered 429.
    pub max_live_streams: usize,
    pub max_live_streams_per_caller: usize,
    /// Patient-data reads and failed authentications waiting to be written to the audit
    /// trail; when this many wait, reads are refused (503) rather than served unaudited.
    pub audit_buffer: usize,
}

impl Default for HttpConfig {
    fn default() -> HttpConfig {
        HttpConfig {
            tls: true,
            trust_loopback: false,
            session_idle_timeout_s: 900,
            session_max_age_s: 12 * 3600,
            login_failures_per_user: 5,
            login_failures_per_address: 20,
            login_window_s: 900,
            login_concurrency: 4,
            max_concurrent_requests: 1024,
            max_connections: 4096,
            header_read_timeout_s: 30,
            tls_handshake_timeout_s: 10,
            max_connections_per_address: 256,
            max_connections_per_range: 1024,
            max_requests_per_address: 128,
            max_requests_per_range: 512,
            request_timeout_s: 15,
            idle_timeout_s: 60,
            h2_max_concurrent_streams: 32,
            h2_keep_alive_interval_s: 20,
            h2_keep_alive_timeout_s: 10,
            max_live_streams: 512,
            max_live_streams_per_caller: 8,
            audit_buffer: 100_000,
        }
    }
}

impl HttpConfig {
    /// The listeners' bounds.
    pub fn listen_limits(&self) -> crate::http_listen::ListenLimits {
        use std::time::Duration;
        crate::http_listen::ListenLimits {
            max_connections: self.max_connections,
            max_connections_per_address: self.max_connections_per_address,
            max_connections_per_range: self.max_connections_per_range,
            header_read_timeout: Duration::from_secs(self.header_read_timeout_s),
            tls_handshake_timeout: Duration::from_secs(self.tls_handshake_timeout_s.max(1)),
            idle_timeout: Duration::from_secs(self.idle_timeout_s),
            h2_max_concurrent_streams: self.h2_max_concurrent_streams,
            h2_keep_alive_interval: Duration::from_secs(self.h2_keep_alive_interval_s.max(1)),
            h2_keep_alive_timeout: Duration::from_secs(self.h2_keep_alive_timeout_s.max(1)),
        }
    }
}

/// Where the anomaly model lives.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ModelConfig {
    /// The model file `serve` loads at start (and on reload) and `train` writes by default;
    /// `None` means `<data_dir>/model.json`.
    pub path: Option<PathBuf>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RegistryConfig {
    pub policy: RegistryPolicy,
    pub default_expected_interval_s: f64,
}

impl Default for RegistryConfig {
    fn default() -> RegistryConfig {
        RegistryConfig {
            policy: RegistryPolicy::AutoRegister,
            default_expected_interval_s: 5.0,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StoreConfig {
    /// The database: unset for SQLite at `<data_dir>/anomalies.db`, or a PostgreSQL URL
    /// (`postgres://user:password@host:port/db`, `?sslmode=verify-full&sslrootcert=FILE` for
    /// TLS); env VITALWATCH_DATABASE_URL, flag `--database`. It may hold a password, so it is
    /// never printed.
    pub url: Option<crate::secret::Secret>,
    /// Open a PostgreSQL store even though its `synchronous_commit` is `off` or `local` (an
    /// acknowledged reading may then be lost in a crash).
    pub allow_async_commit: bool,
    /// Connections to PostgreSQL (the writer's and the readers').
    pub pool_size: usize,
    pub retention_days: u32,
    pub anomaly_retention_days: u32,
    pub audit_retention_days: u32,
    /// The key that signs the audit anchors; `None` = `<certs_dir>/audit.key` (beside the CA
    /// key), created 0600 at the first start. Keep a copy offline for `audit verify --key`.
    pub audit_key: Option<PathBuf>,
    /// The chain's head is anchored at start-up, at shutdown, every 5 minutes and after this
    /// many new audit entries.
    pub audit_anchor_every: u64,
    pub max_batch: usize,
    pub queue_capacity: usize,
    pub queue_timeout_ms: u64,
    pub redelivery_window_s: u64,
}

impl Default for StoreConfig {
    fn default() -> StoreConfig {
        StoreConfig {
            url: None,
            allow_async_commit: false,
            pool_size: 8,
            retention_days: 30,
            anomaly_retention_days: 365,
            audit_retention_days: 2190,
            audit_key: None,
            audit_anchor_every: 100,
            max_batch: 2048,
            queue_capacity: 256,
            queue_timeout_ms: 5000,
            redelivery_window_s: 3600,
        }
    }
}

impl StoreConfig {
    pub fn queue_timeout(&self) -> Duration {
        Duration::from_millis(self.queue_timeout_ms)
    }
}

impl Config {
    /// Defaults, then the TOML file (if any), then `overrides` (the environment and flags,
    /// which clap has merged), then validation: the one place the layers meet.
    pub fn load(
        file: Option<&Path>,
        overrides: impl FnOnce(&mut Config),
    ) -> anyhow::Result<Config> {
        let mut config = match file {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("reading config file {}", path.display()))?;
                Config::from_toml(&text)
                    .with_context(|| format!("in config file {}", path.display()))?
            }
            None => Config::default(),
        };
        overrides(&mut config);
        config.validate()?;
        Ok(config)
    }

    pub fn from_toml(text: &str) -> anyhow::Result<Config> {
        // toml's error names the key and the line, which is what an operator needs.
        let config: Config = toml::from_str(text)?;
        Ok(config)
    }

    fn validate(&self) -> anyhow::Result<()> {
        if let Some(addr) = self.metrics_addr
            && !addr.ip().is_loopback()
        {
            bail!(
                "metrics_addr {addr}: the token-free metrics listener binds loopback only; scrape the API's /metrics with a metrics token from elsewhere"
            );
        }
        if let Err(message) = self.rules.validate() {
            bail!(message);
        }
        self.alerting.validate()?;
        for (name, bounds) in [
            ("heart_rate", self.limits.heart_rate),
            ("body_temp", self.limits.body_temp),
            ("signal_strength", self.limits.signal_strength),
            ("battery_level", self.limits.battery_level),
            ("spo2", self.limits.spo2),
            ("respiratory_rate", self.limits.respiratory_rate),
            ("systolic_bp", self.limits.systolic_bp),
            ("diastolic_bp", self.limits.diastolic_bp),
        ] {
            if !(bounds.min.is_finite() && bounds.max.is_finite() && bounds.min <= bounds.max) {
                bail!("limits.{name}: min and max must be finite numbers with min <= max");
            }
        }
        if self.limits.max_payload_bytes == 0 || self.limits.max_depth == 0 {
            bail!("limits.max_payload_bytes and limits.max_depth must be positive");
        }
        if !(1..=64).contains(&self.limits.max_device_id_len) {
            bail!("limits.max_device_id_len must be between 1 and 64");
        }
        if self.store.max_batch == 0 || self.store.queue_capacity == 0 {
            bail!("store.max_batch and store.queue_capacity must be positive");
        }
        if let Some(url) = &self.store.url
            && !crate::store::postgres::connect::is_postgres_url(url.expose())
        {
            bail!(
                "store.url (--database) must be a postgres:// URL; leave it unset for SQLite in the data directory"
            );
        }
        if !(2..=256).contains(&self.store.pool_size) {
            bail!("store.pool_size must be between 2 and 256");
        }
        if self.mqtt.topic.is_empty() || self.mqtt.topic.contains(['+', '#']) {
            bail!("mqtt.topic must be a non-empty topic name without wildcards");
        }
        if !(1..=MAX_TLS_HANDSHAKES).contains(&self.mqtt.handshakes_per_address) {
            bail!(
                "mqtt.handshakes_per_address must be between 1 and {}",
                MAX_TLS_HANDSHAKES
            );
        }
        if self.mqtt.max_rate_per_connection == 0 {
            bail!("mqtt.max_rate_per_connection must be at least 1");
        }
        if self.mqtt.allow_anonymous && self.mqtt.plaintext_addr.is_none() {
            bail!(
                "mqtt.allow_anonymous applies to the plaintext listener only: set mqtt.plaintext_addr (--mqtt-addr) too"
            );
        }
        if self.mqtt.max_packet_size < 256 || self.mqtt.max_inflight == 0 {
            bail!("mqtt.max_packet_size must be at least 256 and mqtt.max_inflight positive");
        }
        if let Some(broker) = &self.mqtt.broker {
            BrokerUrl::parse(broker, self.mqtt.use_tls)
                .map_err(|err| anyhow::anyhow!("mqtt.broker: {err}"))?;
        }
        if self.mqtt.broker_cert.is_some() != self.mqtt.broker_key.is_some() {
            bail!("mqtt.broker_cert and mqtt.broker_key go together: give both or neither");
        }
        if self.mqtt.client_id.is_empty() || self.mqtt.client_id.len() > 64 {
            bail!("mqtt.client_id must be 1 to 64 characters");
        }
        if let Some(group) = &self.mqtt.share_group
            && (group.is_empty() || group.contains(['/', '+', '#']))
        {
            bail!("mqtt.share_group must be a non-empty name without '/', '+' or '#'");
        }
        if self.mqtt.reconnect_max_ms < 100 {
            bail!("mqtt.reconnect_max_ms must be at least 100");
        }
        if !(self.registry.default_expected_interval_s.is_finite()
            && self.registry.default_expected_interval_s > 0.0)
        {
            bail!("registry.default_expected_interval_s must be a positive number");
        }
        Ok(())
    }

    /// The PKI directory: `[mqtt] certs_dir`, or `<data-dir>/certs`.
    pub fn certs_dir(&self) -> PathBuf {
        self.mqtt
            .certs_dir
            .clone()
            .unwrap_or_else(|| self.data_dir.join("certs"))
    }

    /// The audit anchors' signing key: `[store] audit_key`, else `<certs_dir>/audit.key`.
    pub fn audit_key_path(&self) -> PathBuf {
        self.store
            .audit_key
            .clone()
            .unwrap_or_else(|| self.certs_dir().join("audit.key"))
    }

    /// `<data-dir>/anomalies.db`, the seed's path.
    pub fn database_path(&self) -> PathBuf {
        self.data_dir.join("anomalies.db")
    }

    /// The store, named for a person: the SQLite file, or the PostgreSQL database as
    /// `user@host:port/db` (never its password).
    pub fn database_name(&self) -> String {
        match &self.store.url {
            Some(url) => crate::store::postgres::connect::parse(url.expose())
                .map(|target| format!("postgres://{}", target.display))
                .unwrap_or_else(|_| "PostgreSQL (an invalid URL)".to_owned()),
            None => self.database_path().display().to_string(),
        }
    }

    /// How a PostgreSQL store connects (when `store.url` names one).
    pub fn postgres_settings(&self) -> crate::store::postgres::PostgresSettings {
        crate::store::postgres::PostgresSettings {
            pool_size: self.store.pool_size,
            allow_async_commit: self.store.allow_async_commit,
        }
    }

    /// What the store needs of these settings, fixed when it opens.
    pub fn store_options(&self) -> crate::store::StoreOptions {
        crate::store::StoreOptions {
            policy: self.registry.policy,
            default_expected_interval_s: self.registry.default_expected_interval_s,
            max_batch: self.store.max_batch,
            queue_capacity: self.store.queue_capacity,
            redelivery_window_s: self.store.redelivery_window_s,
            unknown_device_severity: self.rules.unknown_device.severity,
        }
    }

    /// The model file: `[model] path`, else `<data-dir>/model.json`.
    pub fn model_path(&self) -> PathBuf {
        self.model
            .path
            .clone()
            .unwrap_or_else(|| self.data_dir.join("model.json"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shipped_defaults_equal_built_in_defaults() {
        assert_eq!(Config::from_toml(DEFAULT_TOML).unwrap(), Config::default());
    }

    #[test]
    fn file_then_overrides() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("vw.toml");
        std::fs::write(
            &path,
            "data_dir = \"/srv/vw\"\nhttp_addr = \"127.0.0.1:6000\"\n[rules]\nheart_rate = { min = 45.0, max = 100.0, severity = \"CRITICAL\" }\n",
        )
        .unwrap();
        let from_file = Config::load(Some(&path), |_| {}).unwrap();
        assert_eq!(from_file.data_dir, PathBuf::from("/srv/vw"));
        assert_eq!(from_file.rules.heart_rate.min, 45.0);
        assert_eq!(from_file.rules.body_temp, RuleSet::default().body_temp);

        let layered = Config::load(Some(&path), |config| {
            config.http_addr = "127.0.0.1:7000".parse().unwrap();
            config.registry.policy = RegistryPolicy::Strict;
        })
        .unwrap();
        assert_eq!(layered.http_addr.port(), 7000);
        assert_eq!(layered.data_dir, PathBuf::from("/srv/vw"));
        assert_eq!(layered.registry.policy, RegistryPolicy::Strict);
        // The overrides are validated like the file.
        let err =
            Config::load(Some(&path), |config| config.mqtt.topic = "#".to_owned()).unwrap_err();
        assert!(err.to_string().contains("mqtt.topic"), "{err}");
    }

    #[test]
    fn bad_config_names_the_key() {
        let err = Config::from_toml("[rules]\nheart_rat = { min = 1.0 }\n").unwrap_err();
        assert!(format!("{err:#}").contains("heart_rat"), "{err:#}");
        let err = Config::from_toml("[store]\nretention_days = \"x\"\n").unwrap_err();
        assert!(format!("{err:#}").contains("retention_days"), "{err:#}");
        let mut config = Config::default();
        config.rules.heart_rate.min = 200.0;
        let err = config.validate().unwrap_err();
        assert!(err.to_string().contains("rules.heart_rate"), "{err}");
    }
}
