//! Command-line definitions (clap derive). Every option's doc comment is its `--help` text;
//! flag docs are written once, here.

use crate::config::RegistryPolicy;
use clap::{Args, Parser, Subcommand, ValueEnum};
use std::net::SocketAddr;
use std::path::PathBuf;

/// VitalWatch: secure, fast healthcare IoT monitoring.
///
/// Devices stream vital signs; VitalWatch checks every reading against medical ranges, stores
/// it durably, and answers on a REST API (port 5000 by default).
#[derive(Debug, Parser)]
#[command(name = "vitalwatch", version, propagate_version = true)]
pub struct Cli {
    /// Log format on standard error. The level comes from RUST_LOG (default: vitalwatch=info).
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text, env = "VITALWATCH_LOG_FORMAT")]
    pub log_format: LogFormat,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// Who runs a command-line change, as the audit trail records it: `cli:<login name>`.
pub fn actor() -> String {
    let user = std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .unwrap_or_else(|_| "unknown".to_owned());
    format!("cli:{user}")
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the service: pipeline, SQLite store and REST API.
    Serve(ServeArgs),
    /// Register, list, update and deactivate devices (works beside a running server).
    Devices(DevicesArgs),
    /// Show configuration.
    Config(ConfigArgs),
    /// Measure throughput end to end (bounded runs on loopback).
    Bench(BenchArgs),
    /// Manage the PKI: the CA, the server certificate and device certificates.
    Certs(CertsArgs),
    /// Check or export the tamper-evident audit trail.
    Audit(AuditArgs),
    /// API tokens for scripts, integrations and devices: create (shown once), list, revoke.
    Tokens(TokensArgs),
    /// Dashboard users (passwords are read from standard input): create, list, passwd,
    /// disable, enable.
    Users(UsersArgs),
    /// List every route of the API and dashboard with the role it needs.
    Routes,
    /// Train the anomaly model (isolation forest) and write the model file.
    Train(TrainArgs),
    /// Score a CSV with a model file, or show a model file's metadata.
    Model(ModelArgs),
    /// Per-patient alert thresholds: set, show, clear, and preview before applying.
    Thresholds(ThresholdsArgs),
    /// Replay labelled scenarios (TOML files or directories of them) through the real rules
    /// and alert engine, and score the alerts against the ground truth and the seed's
    /// one-alert-per-reading behaviour.
    Evaluate(EvaluateArgs),
    /// Simulated patients as real devices: MQTT over TLS with their own certificates (or
    /// HTTP, or a labelled CSV), paced in real or compressed time, or as fast as acks allow.
    Simulate(SimulateArgs),
    /// The whole system in one command: certificates, a model, the server and ten simulated
    /// patients, until Ctrl-C.
    Demo(DemoArgs),
}

#[derive(Debug, Args)]
pub struct AuditArgs {
    #[command(flatten)]
    pub store: StoreArgs,

    #[command(subcommand)]
    pub command: AuditCommand,
}

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Recompute the hash chain; exits non-zero and names the first bad entry when a row was
    /// edited, deleted or reordered.
    Verify,
    /// Write the audit trail as JSON lines on standard output.
    Export {
        /// Only entries at or after this time (RFC 3339 or epoch seconds).
        #[arg(long, value_name = "TIME")]
        since: Option<String>,
    },
}

#[derive(Debug, Args)]
pub struct TokensArgs {
    #[command(flatten)]
    pub store: StoreArgs,

    #[command(subcommand)]
    pub command: TokensCommand,
}

#[derive(Debug, Subcommand)]
pub enum TokensCommand {
    /// Create a token and print it once (only its hash is kept).
    Create {
        /// What it may do: viewer, clinician, admin, or device (posts readings for --device).
        #[arg(long, value_name = "ROLE")]
        role: String,
        /// A unique name, shown in the audit trail (e.g. "ward-3-display").
        #[arg(long, value_name = "NAME")]
        name: String,
        /// For a device token: the device id it may post readings for.
        #[arg(long, value_name = "ID")]
        device: Option<String>,
        /// Expires after this many days [default: never; revoke it instead].
        #[arg(long, value_name = "DAYS", conflicts_with = "expires")]
        expires_in_days: Option<u32>,
        /// Expires at this time (RFC 3339 or epoch seconds).
        #[arg(long, value_name = "TIME")]
        expires: Option<String>,
    },
    /// List tokens (never their secrets).
    List,
    /// Revoke a token by id or name; it stops working at once.
    Revoke {
        #[arg(value_name = "ID_OR_NAME")]
        token: String,
    },
}

#[derive(Debug, Args)]
pub struct UsersArgs {
    #[command(flatten)]
    pub store: StoreArgs,

    #[command(subcommand)]
    pub command: UsersCommand,
}

#[derive(Debug, Subcommand)]
pub enum UsersCommand {
    /// Create a dashboard user; the password (12+ characters) is read from standard input.
    Create {
        #[arg(long, value_name = "NAME")]
        name: String,
        /// viewer, clinician or admin.
        #[arg(long, value_name = "ROLE")]
        role: String,
    },
    List,
    /// Set a new password (read from standard input); ends the user's sessions.
    Passwd {
        #[arg(value_name = "NAME")]
        name: String,
    },
    /// Stop a user from logging in; ends their sessions.
    Disable {
        #[arg(value_name = "NAME")]
        name: String,
    },
    Enable {
        #[arg(value_name = "NAME")]
        name: String,
    },
}

#[derive(Debug, Args)]
pub struct CertsArgs {
    #[command(flatten)]
    pub store: StoreArgs,

    /// The PKI directory [default: <data-dir>/certs].
    #[arg(long, global = true, env = "VITALWATCH_CERTS_DIR", value_name = "DIR")]
    pub certs_dir: Option<PathBuf>,

    #[command(subcommand)]
    pub command: CertsCommand,
}

#[derive(Debug, Subcommand)]
pub enum CertsCommand {
    /// Create the CA (ca.crt, ca.key), the server certificate (server.crt, server.key) and an
    /// empty revocation list. ECDSA P-256; keys are written 0600.
    Init {
        /// An extra subject alternative name for the server (host name or IP); repeatable.
        /// localhost, 127.0.0.1, ::1 and this machine's host name are always included.
        #[arg(long, value_name = "NAME")]
        san: Vec<String>,
        /// Replace an existing CA (every device certificate issued so far stops working).
        #[arg(long)]
        force: bool,
    },
    /// Issue a client certificate for a device (subject CN = the device id) into
    /// <certs-dir>/devices/ID.crt and ID.key.
    Device {
        /// The device id.
        id: String,
        /// Replace the device's current certificate (the old one is revoked).
        #[arg(long)]
        force: bool,
    },
    /// Issue a consumer certificate (OU = consumer) for a system that subscribes to
    /// vitalwatch/alerts/# and vitalwatch/telemetry/# on the embedded broker.
    Consumer {
        /// The consumer's name (same characters as a device id).
        name: String,
        /// Replace its current certificate (the old one is revoked).
        #[arg(long)]
        force: bool,
    },
    /// Issue a per-device secret for the plaintext MQTT listener (printed once; only its
    /// Argon2id hash is kept). Issuing again replaces it.
    Secret {
        /// The device id (the MQTT username).
        id: String,
    },
    /// List issued device certificates as JSON lines.
    List,
    /// Revoke a device's certificates: it is refused at the handshake (after a restart) and at
    /// CONNECT (at once).
    Revoke {
        /// The device id.
        id: String,
    },
}

#[derive(Debug, Args)]
pub struct TrainArgs {
    #[command(flatten)]
    pub store: StoreArgs,

    /// Training data as CSV with a header; columns are named like the payload fields
    /// (heart_rate, body_temp, signal_strength, battery_level, …). Without it (and without
    /// --from-db) the built-in synthetic normal population is used.
    #[arg(long, value_name = "CSV", conflicts_with = "from_db")]
    pub input: Option<PathBuf>,

    /// Train on readings stored in the database that raised no anomaly.
    #[arg(long)]
    pub from_db: bool,

    /// Train on stored readings labelled by clinicians' verdicts on alert episodes
    /// (POST /api/alerts/{id}/verdict): readings of true alarms are anomalous, of false alarms
    /// normal, plus readings that raised no anomaly. Also trains the supervised random forest
    /// and reports its held-out precision and recall.
    #[arg(long, conflicts_with_all = ["input", "from_db"])]
    pub from_alerts: bool,

    /// With --from-db: only readings at or after this time (RFC 3339, e.g. 2026-01-01T00:00:00Z).
    #[arg(long, value_name = "TIME", requires = "from_db")]
    pub since: Option<String>,

    /// With --from-db: at most this many readings (oldest first).
    #[arg(
        long,
        value_name = "N",
        default_value_t = 1_000_000,
        requires = "from_db"
    )]
    pub max_rows: usize,

    /// Where to write the model file [default: the configured model path,
    /// <data-dir>/model.json].
    #[arg(long, value_name = "FILE")]
    pub output: Option<PathBuf>,

    /// Seeds every random choice: the same data, options and seed give a byte-identical file.
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub seed: u64,

    /// Number of isolation trees.
    #[arg(long, value_name = "N", default_value_t = 100)]
    pub trees: u32,

    /// Rows drawn for each tree (ψ).
    #[arg(long, value_name = "N", default_value_t = 256)]
    pub sample_size: u32,

    /// Share of training rows scored above the threshold [default: 0.005, see the README].
    #[arg(long, value_name = "SHARE")]
    pub contamination: Option<f64>,

    /// Comma-separated features the model reads.
    #[arg(
        long,
        value_name = "LIST",
        value_delimiter = ',',
        default_value = "heart_rate,body_temp,signal_strength,battery_level"
    )]
    pub features: Vec<String>,

    /// A CSV column of 0/1 labels (1 = anomalous): also train the supervised random forest
    /// and report its precision and recall on a held-out 20 %.
    #[arg(long, value_name = "NAME", requires = "input")]
    pub label_column: Option<String>,

    /// Trees of the supervised random forest (with --label-column).
    #[arg(long, value_name = "N", default_value_t = 100)]
    pub rf_trees: u16,

    /// Patients in the built-in synthetic population (each contributes
    /// --readings-per-patient readings).
    #[arg(long, value_name = "N", default_value_t = 100)]
    pub patients: usize,

    /// Readings per synthetic patient.
    #[arg(long, value_name = "N", default_value_t = 1000)]
    pub readings_per_patient: usize,

    /// The training time recorded in the file: an RFC 3339 time or "now" [default:
    /// 1970-01-01T00:00:00Z, so the same inputs give a byte-identical file].
    #[arg(long, value_name = "TIME")]
    pub trained_at: Option<String>,
}

#[derive(Debug, Args)]
pub struct ModelArgs {
    #[command(subcommand)]
    pub command: ModelCommand,
}

#[derive(Debug, Subcommand)]
pub enum ModelCommand {
    /// Print one anomaly score per CSV row, one per line, no header (higher = more
    /// anomalous; NaN for a row lacking a feature the model needs).
    Score {
        /// The model file.
        #[arg(long, value_name = "FILE")]
        model: PathBuf,
        /// CSV with a header naming the model's features.
        #[arg(long, value_name = "CSV")]
        input: PathBuf,
    },
    /// Print a model file's metadata (refuses a damaged or incompatible file).
    Info {
        /// The model file.
        file: PathBuf,
    },
}

#[derive(Debug, Args)]
pub struct EvaluateArgs {
    /// Configuration file whose [rules] and [alerting] tables are evaluated (default: built-in).
    #[arg(long, env = "VITALWATCH_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Print the report as JSON instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Also list every alert: condition, priority, open/close time and the event it detected
    /// (or "false"). The JSON report always lists them per scenario.
    #[arg(long)]
    pub alerts: bool,
    /// Scenario files (TOML, see docs/scenarios.md) or directories of them.
    #[arg(required = true, value_name = "PATH")]
    pub paths: Vec<PathBuf>,
}

#[derive(Debug, Args)]
pub struct ThresholdsArgs {
    #[command(flatten)]
    pub store: StoreArgs,

    #[command(subcommand)]
    pub command: ThresholdsCommand,
}

#[derive(Debug, Subcommand)]
pub enum ThresholdsCommand {
    /// Set a device's overrides (replacing any it had); audited. A running server uses them
    /// within 2 seconds.
    Set {
        /// The device id.
        id: String,
        #[command(flatten)]
        limits: ThresholdLimits,
        /// Why (kept in the store and the audit log).
        #[arg(long, value_name = "TEXT")]
        reason: String,
        /// Who decided (default: cli:$USER).
        #[arg(long, value_name = "NAME")]
        author: Option<String>,
    },
    /// Show a device's overrides as JSON.
    Show {
        /// The device id.
        id: String,
    },
    /// Remove a device's overrides; audited.
    Clear {
        /// The device id.
        id: String,
        /// Why.
        #[arg(long, value_name = "TEXT")]
        reason: Option<String>,
    },
    /// Replay stored history under proposed thresholds and report how many alerts they would
    /// raise against the current settings, and which recorded episodes they would miss.
    /// Changes nothing.
    Preview {
        /// The device id; leave out to propose the thresholds for every device.
        id: Option<String>,
        #[command(flatten)]
        limits: ThresholdLimits,
        /// Start of the window (RFC 3339) [default: a day before --until].
        #[arg(long, value_name = "TIME")]
        since: Option<String>,
        /// End of the window (RFC 3339) [default: now].
        #[arg(long, value_name = "TIME")]
        until: Option<String>,
    },
}

#[derive(Debug, Args, Default, Clone, Copy)]
pub struct ThresholdLimits {
    /// Heart rate below this is out of range (bpm; at least 41).
    #[arg(long, value_name = "BPM")]
    pub hr_min: Option<f64>,
    /// Heart rate above this is out of range (bpm; at most 130).
    #[arg(long, value_name = "BPM")]
    pub hr_max: Option<f64>,
    /// Temperature below this is out of range (°C; at least 35.1).
    #[arg(long, value_name = "CELSIUS")]
    pub temp_min: Option<f64>,
    /// Temperature above this is out of range (°C; at most 39.0).
    #[arg(long, value_name = "CELSIUS")]
    pub temp_max: Option<f64>,
}

#[derive(Debug, Args)]
pub struct BenchArgs {
    #[command(subcommand)]
    pub command: BenchCommand,
}

#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// POST /api/telemetry throughput, single and batched, group commit vs one transaction per
    /// reading, each against a fresh temporary database.
    Http {
        /// Readings posted in each of the four runs.
        #[arg(long, default_value_t = 5000)]
        readings: u64,
        /// Concurrent HTTP clients.
        #[arg(long, default_value_t = 16)]
        clients: u64,
        /// Readings per POST in the batched runs.
        #[arg(long, default_value_t = 100)]
        batch: u64,
    },
    /// MQTT over TLS, QoS 1, end to end: simulated devices (one client certificate each)
    /// against an in-process `serve` with the embedded broker, compared in the same run with
    /// Debian's Mosquitto forwarding the same load to one subscriber; then idle connections.
    Ingest {
        /// Simulated devices, each its own TLS connection and certificate.
        #[arg(long, default_value_t = 100)]
        devices: u64,
        /// Readings in total, spread over the devices.
        #[arg(long, default_value_t = 20_000)]
        readings: u64,
        /// Unacknowledged publishes each device keeps in flight.
        #[arg(long, default_value_t = 8)]
        inflight: u16,
        /// Idle TLS device connections to open for the memory measurement (0 skips it).
        #[arg(long, default_value_t = 2000)]
        idle: u64,
        /// Give up on a run after this many seconds.
        #[arg(long, default_value_t = 120)]
        max_seconds: u64,
        /// Skip the Mosquitto baseline (when mosquitto is not installed).
        #[arg(long)]
        no_mosquitto: bool,
        /// Offered load in readings/s over all devices, paced per device (open loop), to
        /// read latency at a given rate; 0 publishes as fast as acknowledgements allow.
        #[arg(long, default_value_t = 0)]
        rate: u64,
    },
}

/// Options shared by every command that opens the database.
#[derive(Debug, Args, Clone)]
pub struct StoreArgs {
    /// Configuration file (TOML). Its values sit between the built-in defaults and the
    /// environment/flags. `vitalwatch config default` prints every key.
    #[arg(long, global = true, env = "VITALWATCH_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Directory for the database (<DIR>/anomalies.db) [default: data].
    #[arg(long, global = true, env = "VITALWATCH_DATA_DIR", value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    #[command(flatten)]
    pub store: StoreArgs,

    /// Address of the REST API [default: 0.0.0.0:5000]. Port 0 picks a free port; the bound
    /// address is printed on standard output as `listening api=ADDR`.
    #[arg(long, env = "VITALWATCH_HTTP_ADDR", value_name = "ADDR")]
    pub http_addr: Option<SocketAddr>,

    /// Address of the live dashboard [default: 0.0.0.0:8501]. Port 0 picks a free port; the
    /// bound address is printed on standard output as `listening dashboard=ADDR`.
    #[arg(long, env = "VITALWATCH_DASHBOARD_ADDR", value_name = "ADDR")]
    pub dashboard_addr: Option<SocketAddr>,

    /// Serve the API and dashboard over plaintext HTTP instead of HTTPS (a warning is
    /// logged): for a loopback-only workstation or behind a TLS-terminating proxy.
    #[arg(long)]
    pub http_plaintext: bool,

    /// Treat HTTP clients on loopback (127.0.0.0/8, ::1) as authenticated with every role, so
    /// the seed's curl examples work on a workstation without a token. Off by default.
    #[arg(long)]
    pub trust_loopback: bool,

    /// What to do with readings from devices that are not registered
    /// [default: auto-register].
    #[arg(
        long,
        env = "VITALWATCH_REGISTRY_POLICY",
        value_enum,
        value_name = "POLICY"
    )]
    pub registry_policy: Option<RegistryPolicy>,

    /// Address of the embedded MQTT-over-TLS broker [default: 0.0.0.0:8883]. Port 0 picks a
    /// free port, printed as `listening mqtts=ADDR`.
    #[arg(long, value_name = "ADDR")]
    pub mqtts_addr: Option<SocketAddr>,

    /// Port of the MQTT-over-TLS listener (the seed's variable; --mqtts-addr wins).
    #[arg(long, env = "MQTT_PORT", value_name = "PORT")]
    pub mqtt_port: Option<u16>,

    /// The telemetry topic [default: /iot/health].
    #[arg(long, env = "MQTT_TOPIC", value_name = "TOPIC")]
    pub mqtt_topic: Option<String>,

    /// The PKI directory (ca.crt, server.crt, server.key, devices/) [default: <data-dir>/certs].
    /// `serve` creates it on first start when it does not exist (`vitalwatch certs init` does
    /// the same by hand).
    #[arg(long, env = "VITALWATCH_CERTS_DIR", value_name = "DIR")]
    pub certs_dir: Option<PathBuf>,

    /// Do not start the embedded MQTT broker.
    #[arg(long)]
    pub no_mqtt: bool,

    /// Also listen for plaintext MQTT on ADDR (e.g. 127.0.0.1:1883; a warning is logged).
    /// Devices authenticate with username = device id and password = their secret from
    /// `vitalwatch certs secret`.
    #[arg(long, value_name = "ADDR")]
    pub mqtt_addr: Option<SocketAddr>,

    /// On the plaintext listener, let clients without credentials in (lab use only; their
    /// payloads' device ids are trusted).
    #[arg(long, requires = "mqtt_addr")]
    pub mqtt_allow_anonymous: bool,

    /// Also serve MQTT over WebSocket over TLS on ADDR (the seed's 8884, for browser clients;
    /// subprotocol "mqtt"); the same client-certificate rules as --mqtts-addr.
    #[arg(long, value_name = "ADDR")]
    pub mqtt_wss_addr: Option<SocketAddr>,

    /// The anomaly model file to load at start and on reload [default: <data-dir>/model.json].
    #[arg(long, env = "VITALWATCH_MODEL", value_name = "FILE")]
    pub model: Option<PathBuf>,
    #[command(flatten)]
    pub external: ExternalBrokerArgs,
}

/// Subscribing to an existing broker instead of embedding one.
#[derive(Debug, Args, Clone, Default)]
pub struct ExternalBrokerArgs {
    /// Subscribe to an existing broker (Mosquitto, EMQX...) instead of embedding one:
    /// mqtts://HOST:PORT, mqtt://HOST:PORT (plaintext, warned about), or a bare host name as in
    /// the seed (port from MQTT_PORT, TLS from MQTT_USE_TLS). Messages are acknowledged to that
    /// broker only after they are committed.
    #[arg(long, env = "MQTT_BROKER", value_name = "URL")]
    pub broker: Option<String>,

    /// With a bare host name in --broker: connect with TLS [default: true].
    #[arg(long, env = "MQTT_USE_TLS", value_name = "BOOL", value_parser = clap::builder::BoolishValueParser::new())]
    pub mqtt_use_tls: Option<bool>,

    /// CA certificates (PEM) of the external broker [default: <certs-dir>/ca.crt].
    #[arg(long, env = "MQTT_TLS_CA_CERTS", value_name = "FILE")]
    pub broker_ca: Option<PathBuf>,

    /// Client certificate (PEM) for mutual TLS with the external broker.
    #[arg(long, value_name = "FILE", requires = "broker_key")]
    pub broker_cert: Option<PathBuf>,

    /// Private key (PEM, mode 0600) of --broker-cert.
    #[arg(long, value_name = "FILE", requires = "broker_cert")]
    pub broker_key: Option<PathBuf>,

    /// Our client id at the external broker; the persistent session is kept under it, so it
    /// must stay the same across restarts and differ between nodes [default: vitalwatch].
    #[arg(long, value_name = "ID")]
    pub client_id: Option<String>,

    /// Subscribe as $share/NAME/<topic>: nodes with the same group split the stream.
    #[arg(long, value_name = "NAME")]
    pub share_group: Option<String>,
}

#[derive(Debug, Args)]
pub struct DevicesArgs {
    #[command(flatten)]
    pub store: StoreArgs,

    #[command(subcommand)]
    pub command: DevicesCommand,
}

#[derive(Debug, Subcommand)]
pub enum DevicesCommand {
    /// List registered devices as JSON lines.
    List,
    /// Show one device as JSON.
    Show {
        /// The device id.
        id: String,
    },
    /// Register a device.
    Register {
        /// The device id: 1 to 64 characters of A-Z a-z 0-9 _ . : -
        id: String,
        #[command(flatten)]
        fields: DeviceFields,
    },
    /// Change a device's label, location or expected interval.
    Update {
        /// The device id.
        id: String,
        #[command(flatten)]
        fields: DeviceFields,
        /// Remove the patient label.
        #[arg(long, conflicts_with = "patient_label")]
        clear_patient_label: bool,
        /// Remove the location.
        #[arg(long, conflicts_with = "location")]
        clear_location: bool,
    },
    /// Deactivate a device: its history stays, its new readings are quarantined.
    Deactivate {
        /// The device id.
        id: String,
    },
    /// Reactivate a deactivated device.
    Reactivate {
        /// The device id.
        id: String,
    },
}

#[derive(Debug, Args, Default)]
pub struct DeviceFields {
    /// A label that identifies the patient to clinicians (e.g. bed and initials).
    #[arg(long, value_name = "TEXT")]
    pub patient_label: Option<String>,
    /// Where the device is (ward, room).
    #[arg(long, value_name = "TEXT")]
    pub location: Option<String>,
    /// Seconds expected between two readings (used to detect an offline device).
    #[arg(long, value_name = "SECONDS")]
    pub expected_interval: Option<f64>,
}

#[derive(Debug, Args)]
pub struct ConfigArgs {
    #[command(subcommand)]
    pub command: ConfigCommand,
}

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Print the default configuration as commented TOML.
    Default,
    /// Print the configuration in force after defaults, file, environment and flags.
    Show {
        #[command(flatten)]
        store: StoreArgs,
    },
}

#[derive(Debug, Args)]
pub struct SimulateArgs {
    #[command(flatten)]
    pub store: StoreArgs,

    /// Number of simulated devices (patients) in the built-in population; ignored with
    /// --scenario, whose patients are the devices.
    #[arg(long, value_name = "N", default_value_t = 10)]
    pub devices: usize,

    /// Time between two readings of a device (e.g. 3s, 500ms) [default: the scenario's, 5s
    /// for the built-in population].
    #[arg(long, value_name = "DURATION", value_parser = crate::sim::parse_duration)]
    pub interval: Option<std::time::Duration>,

    /// The MQTT broker: mqtts://HOST[:PORT] (TLS; port 8883 by default).
    #[arg(long, value_name = "URL", default_value = "mqtts://localhost:8883")]
    pub broker: String,

    /// The CA certificate that signed the broker's [default: <certs-dir>/ca.crt].
    #[arg(long, value_name = "FILE")]
    pub ca: Option<PathBuf>,

    /// Where device certificates are (devices/ID.crt, ID.key); a missing one is issued when
    /// the CA key is there [default: <data-dir>/certs].
    #[arg(long, env = "VITALWATCH_CERTS_DIR", value_name = "DIR")]
    pub certs_dir: Option<PathBuf>,

    /// The MQTT topic.
    #[arg(
        long,
        env = "MQTT_TOPIC",
        value_name = "TOPIC",
        default_value = "/iot/health"
    )]
    pub topic: String,

    /// MQTT QoS: 1 (acknowledged after the commit) or 0 (fire and forget).
    #[arg(long, value_name = "0|1", default_value_t = 1, value_parser = clap::value_parser!(u8).range(0..=1))]
    pub qos: u8,

    /// POST to this URL (e.g. http://127.0.0.1:5000/api/telemetry) instead of MQTT.
    #[arg(long, value_name = "URL", conflicts_with = "csv")]
    pub http: Option<String>,

    /// With --http: the API token to send (`vitalwatch tokens create --role device --device
    /// ID`; a device token posts for its own device only). Not needed against a server that
    /// trusts loopback (`demo`, `serve --trust-loopback`).
    #[arg(
        long,
        env = "VITALWATCH_TOKEN",
        value_name = "TOKEN",
        requires = "http",
        hide_env_values = true
    )]
    pub token: Option<String>,

    /// Write the labelled stream to this CSV file (no broker, no pacing) and exit.
    #[arg(long, value_name = "FILE")]
    pub csv: Option<PathBuf>,

    /// A scenario file (TOML, docs/scenarios.md) [default: the built-in population].
    #[arg(long, value_name = "FILE")]
    pub scenario: Option<PathBuf>,

    /// Seeds the physiology (overrides the scenario's seed) [default: 1 for the built-in
    /// population].
    #[arg(long, value_name = "S")]
    pub seed: Option<u64>,

    /// Scenario time to simulate (e.g. 10m, 24h) [default: the scenario's; 24h built in].
    #[arg(long, value_name = "DURATION", value_parser = crate::sim::parse_duration, conflicts_with = "count")]
    pub duration: Option<std::time::Duration>,

    /// Stop after this many messages per device.
    #[arg(long, value_name = "C")]
    pub count: Option<u64>,

    /// Scenario time per wall-clock time: 1x is real time, 60x a minute per second.
    #[arg(long, value_name = "FACTOR", default_value = "1x", value_parser = crate::sim::parse_speed)]
    pub speed: f64,

    /// Ignore the scenario's pacing: "max" sends as fast as acknowledgements allow (load
    /// mode: per-second counts on standard error); a number is messages per second in total.
    #[arg(long, value_name = "R")]
    pub rate: Option<String>,

    /// Print the final report as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Every `serve` flag, forwarded (the API and the broker bind to 127.0.0.1 unless given).
    #[command(flatten)]
    pub serve: ServeArgs,

    /// Scenario time per wall-clock time for the simulated patients.
    #[arg(long, value_name = "FACTOR", default_value = "20x", value_parser = crate::sim::parse_speed)]
    pub speed: f64,

    /// Seeds the simulated patients.
    #[arg(long, value_name = "S", default_value_t = 1)]
    pub seed: u64,
}
