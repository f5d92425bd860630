//! `vitalwatch serve`: every `serve` flag, defined once here, and the one function that writes
//! them over the configuration ([`ServeArgs::config`]); the server itself is
//! [`crate::server`]. `demo` takes the same flags (`#[command(flatten)]` of [`ServeArgs`]).
//!
//! Precedence: built-in defaults < TOML file (`--config`) < environment < flags. clap merges
//! the environment and the flags (a flag beats its variable, the seed's `MQTT_*` included), so
//! [`ServeArgs`] carries both and is applied last.

use super::StoreArgs;
use crate::config::{Config, MqttConfig};
use crate::store::RegistryPolicy;
use clap::Args;
use std::net::SocketAddr;
use std::path::PathBuf;

#[derive(Debug, Args, Clone, Default)]
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

    /// Also serve GET /metrics, without a token, on this plain-HTTP loopback address (e.g.
    /// 127.0.0.1:9464) for a local Prometheus. Port 0 picks a free port, printed as
    /// `listening metrics=ADDR`.
    #[arg(long, env = "VITALWATCH_METRICS_ADDR", value_name = "ADDR")]
    pub metrics_addr: Option<SocketAddr>,

    /// Serve the API and dashboard over plaintext HTTP instead of HTTPS (a warning is
    /// logged): for a loopback-only workstation or behind a TLS-terminating proxy.
    #[arg(long)]
    pub http_plaintext: bool,

    /// This node's name among the nodes sharing one PostgreSQL database (in /health and the
    /// leader election) [default: the host name].
    #[arg(long, env = "VITALWATCH_NODE_ID", value_name = "NAME")]
    pub node_id: Option<String>,

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

impl ServeArgs {
    /// The configuration these flags describe: defaults < file < environment < flags.
    pub fn config(&self) -> anyhow::Result<Config> {
        self.store.config_with(|config| self.apply(config))
    }

    /// Writes every flag that was given (or whose environment variable is set) over `config`.
    fn apply(&self, config: &mut Config) {
        if let Some(http_addr) = self.http_addr {
            config.http_addr = http_addr;
        }
        if let Some(dashboard_addr) = self.dashboard_addr {
            config.dashboard_addr = dashboard_addr;
        }
        if self.metrics_addr.is_some() {
            config.metrics_addr = self.metrics_addr;
        }
        if self.http_plaintext {
            config.http.tls = false;
        }
        if self.trust_loopback {
            config.http.trust_loopback = true;
        }
        if let Some(node_id) = &self.node_id {
            config.cluster.node_id = Some(node_id.clone());
        }
        if let Some(policy) = self.registry_policy {
            config.registry.policy = policy;
        }
        if let Some(port) = self.mqtt_port {
            config.mqtt.mqtts_addr.set_port(port);
        }
        if let Some(addr) = self.mqtts_addr {
            config.mqtt.mqtts_addr = addr;
        }
        if let Some(topic) = &self.mqtt_topic {
            config.mqtt.topic = topic.clone();
        }
        if let Some(dir) = &self.certs_dir {
            config.mqtt.certs_dir = Some(dir.clone());
        }
        if self.no_mqtt {
            config.mqtt.enabled = false;
        }
        if let Some(addr) = self.mqtt_addr {
            config.mqtt.plaintext_addr = Some(addr);
        }
        if self.mqtt_allow_anonymous {
            config.mqtt.allow_anonymous = true;
        }
        if let Some(addr) = self.mqtt_wss_addr {
            config.mqtt.wss_addr = Some(addr);
        }
        if let Some(model_path) = &self.model {
            config.model.path = Some(model_path.clone());
        }
        self.external.apply(&mut config.mqtt, self.mqtt_port);
    }
}

impl ExternalBrokerArgs {
    /// The external-broker part of [`ServeArgs::apply`]. The seed's MQTT_PORT is the broker's
    /// port when MQTT_BROKER is a bare host name, so it is folded in as `host:port` here.
    fn apply(&self, mqtt: &mut MqttConfig, mqtt_port: Option<u16>) {
        if let Some(broker) = &self.broker {
            mqtt.broker = (!broker.trim().is_empty()).then(|| broker.trim().to_owned());
        }
        if let Some(use_tls) = self.mqtt_use_tls {
            mqtt.use_tls = use_tls;
        }
        if let (Some(port), Some(broker)) = (mqtt_port, &mut mqtt.broker)
            && !broker.contains("://")
            && !broker.contains(':')
        {
            *broker = format!("{broker}:{port}");
        }
        for (target, value) in [
            (&mut mqtt.broker_ca, &self.broker_ca),
            (&mut mqtt.broker_cert, &self.broker_cert),
            (&mut mqtt.broker_key, &self.broker_key),
        ] {
            if let Some(value) = value {
                *target = Some(value.clone());
            }
        }
        if let Some(client_id) = &self.client_id {
            mqtt.client_id = client_id.clone();
        }
        if let Some(group) = &self.share_group {
            mqtt.share_group = Some(group.clone());
        }
    }
}

/// Runs the server until SIGINT or SIGTERM, announcing its addresses on standard output.
pub async fn run(args: ServeArgs) -> anyhow::Result<()> {
    let config = args.config()?;
    let running = crate::server::start(config, super::shutdown_on_signals()).await?;
    running.announce();
    // Under systemd (`Type=notify`) the unit is "started" only once every listener is bound;
    // outside it NOTIFY_SOCKET is unset and this does nothing.
    if let Err(err) = sd_notify::notify(&[sd_notify::NotifyState::Ready]) {
        tracing::warn!(
            event = "server.systemd_notify_failed",
            "telling systemd we are ready: {err}"
        );
    }
    running.await
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    /// `serve`'s flags parsed as the command line would be.
    #[derive(Parser)]
    struct Flags {
        #[command(flatten)]
        serve: ServeArgs,
    }

    fn config_file(text: &str) -> (tempfile::TempDir, StoreArgs) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("vw.toml");
        std::fs::write(&path, text).unwrap();
        let store = StoreArgs {
            config: Some(path),
            ..StoreArgs::default()
        };
        (dir, store)
    }

    #[test]
    fn flags_win_over_the_file() {
        let (_dir, store) = config_file(
            "data_dir = \"/srv/vw\"\nhttp_addr = \"127.0.0.1:6000\"\n[mqtt]\ntopic = \"/file/topic\"\n",
        );
        let from_file = ServeArgs {
            store: store.clone(),
            ..ServeArgs::default()
        }
        .config()
        .unwrap();
        assert_eq!(from_file.http_addr.port(), 6000);
        assert_eq!(from_file.mqtt.topic, "/file/topic");

        let args = ServeArgs {
            store: StoreArgs {
                data_dir: Some(PathBuf::from("/srv/other")),
                ..store
            },
            http_addr: Some("127.0.0.1:7000".parse().unwrap()),
            registry_policy: Some(RegistryPolicy::Strict),
            http_plaintext: true,
            no_mqtt: true,
            ..ServeArgs::default()
        };
        let layered = args.config().unwrap();
        assert_eq!(layered.http_addr.port(), 7000);
        assert_eq!(layered.data_dir, PathBuf::from("/srv/other"));
        assert_eq!(layered.registry.policy, RegistryPolicy::Strict);
        assert!(!layered.http.tls && !layered.mqtt.enabled);
        // What no flag names stays as the file says.
        assert_eq!(layered.mqtt.topic, "/file/topic");
    }

    #[test]
    fn mqtts_addr_wins_over_mqtt_port() {
        let port_only = ServeArgs {
            mqtt_port: Some(9883),
            ..ServeArgs::default()
        };
        let config = port_only.config().unwrap();
        assert_eq!(config.mqtt.mqtts_addr, "0.0.0.0:9883".parse().unwrap());
        let both = ServeArgs {
            mqtt_port: Some(9883),
            mqtts_addr: Some("127.0.0.1:7883".parse().unwrap()),
            ..ServeArgs::default()
        };
        let config = both.config().unwrap();
        assert_eq!(config.mqtt.mqtts_addr, "127.0.0.1:7883".parse().unwrap());
    }

    #[test]
    fn the_seeds_broker_variables_layer_like_the_rest() {
        let args = ServeArgs {
            mqtt_port: Some(8884),
            external: ExternalBrokerArgs {
                broker: Some("broker.example".to_owned()),
                broker_ca: Some(PathBuf::from("/etc/ca.crt")),
                ..ExternalBrokerArgs::default()
            },
            ..ServeArgs::default()
        };
        let config = args.config().unwrap();
        assert_eq!(config.mqtt.broker.as_deref(), Some("broker.example:8884"));
        assert_eq!(config.mqtt.broker_ca, Some(PathBuf::from("/etc/ca.crt")));
        let args = ServeArgs {
            external: ExternalBrokerArgs {
                broker: Some("ftp://broker".to_owned()),
                ..ExternalBrokerArgs::default()
            },
            ..ServeArgs::default()
        };
        let err = args.config().unwrap_err();
        assert!(err.to_string().contains("mqtt.broker"), "{err}");
        let args = ServeArgs {
            external: ExternalBrokerArgs {
                broker: Some("mqtts://broker".to_owned()),
                broker_cert: Some(PathBuf::from("c.crt")),
                ..ExternalBrokerArgs::default()
            },
            ..ServeArgs::default()
        };
        let err = args.config().unwrap_err();
        assert!(err.to_string().contains("broker_key"), "{err}");
    }

    #[test]
    fn flags_parse_into_the_config() {
        let flags = Flags::try_parse_from([
            "serve",
            "--http-addr",
            "127.0.0.1:0",
            "--mqtt-addr",
            "127.0.0.1:1883",
            "--mqtt-allow-anonymous",
            "--trust-loopback",
            "--share-group",
            "ward",
        ])
        .unwrap();
        let config = flags.serve.config().unwrap();
        assert_eq!(config.http_addr, "127.0.0.1:0".parse().unwrap());
        assert_eq!(
            config.mqtt.plaintext_addr,
            Some("127.0.0.1:1883".parse().unwrap())
        );
        assert!(config.mqtt.allow_anonymous && config.http.trust_loopback);
        assert_eq!(config.mqtt.share_group.as_deref(), Some("ward"));
        // clap refuses what the config would refuse later anyway.
        assert!(Flags::try_parse_from(["serve", "--mqtt-allow-anonymous"]).is_err());
    }
}
