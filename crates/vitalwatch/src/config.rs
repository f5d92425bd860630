//! Configuration: one [`Config`] tree, layered in exactly one function ([`Config::load`]).
//!
//! Precedence: built-in defaults < TOML file (`--config`) < environment < flags. clap merges
//! environment and flags (a flag beats its variable), so [`Overrides`] carries both and is
//! applied last. The defaults ship as a commented TOML ([`DEFAULT_TOML`]) that
//! `vitalwatch config default` prints; a test keeps it equal to [`Config::default`].

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
    pub registry: RegistryConfig,
    pub store: StoreConfig,
    pub limits: Limits,
    pub rules: RuleSet,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            data_dir: PathBuf::from("data"),
            http_addr: SocketAddr::from(([0, 0, 0, 0], 5000)),
            dashboard_addr: SocketAddr::from(([0, 0, 0, 0], 8501)),
            registry: RegistryConfig::default(),
            store: StoreConfig::default(),
            limits: Limits::default(),
            rules: RuleSet::default(),
        }
    }
}

/// What happens to a reading from a device that is not in the registry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum RegistryPolicy {
    /// Register the device on its first reading (the seed's behaviour); audited.
    AutoRegister,
    /// Quarantine the reading and raise UNKNOWN_DEVICE.
    Strict,
}

impl RegistryPolicy {
    pub fn as_str(self) -> &'static str {
        match self {
            RegistryPolicy::AutoRegister => "auto-register",
            RegistryPolicy::Strict => "strict",
        }
    }
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
    pub retention_days: u32,
    pub anomaly_retention_days: u32,
    pub audit_retention_days: u32,
    pub max_batch: usize,
    pub queue_capacity: usize,
    pub queue_timeout_ms: u64,
    pub redelivery_window_s: u64,
}

impl Default for StoreConfig {
    fn default() -> StoreConfig {
        StoreConfig {
            retention_days: 30,
            anomaly_retention_days: 365,
            audit_retention_days: 2190,
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

/// Values given on the command line or in the environment; `None` leaves the layer below.
#[derive(Clone, Debug, Default)]
pub struct Overrides {
    pub data_dir: Option<PathBuf>,
    pub http_addr: Option<SocketAddr>,
    pub dashboard_addr: Option<SocketAddr>,
    pub registry_policy: Option<RegistryPolicy>,
}

impl Config {
    /// Defaults, then the TOML file (if any), then environment and flags.
    pub fn load(file: Option<&Path>, overrides: &Overrides) -> anyhow::Result<Config> {
        let mut config = match file {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("reading config file {}", path.display()))?;
                Config::from_toml(&text)
                    .with_context(|| format!("in config file {}", path.display()))?
            }
            None => Config::default(),
        };
        if let Some(data_dir) = &overrides.data_dir {
            config.data_dir = data_dir.clone();
        }
        if let Some(http_addr) = overrides.http_addr {
            config.http_addr = http_addr;
        }
        if let Some(dashboard_addr) = overrides.dashboard_addr {
            config.dashboard_addr = dashboard_addr;
        }
        if let Some(policy) = overrides.registry_policy {
            config.registry.policy = policy;
        }
        config.validate()?;
        Ok(config)
    }

    pub fn from_toml(text: &str) -> anyhow::Result<Config> {
        // toml's error names the key and the line, which is what an operator needs.
        let config: Config = toml::from_str(text)?;
        Ok(config)
    }

    fn validate(&self) -> anyhow::Result<()> {
        if let Err(message) = self.rules.validate() {
            bail!(message);
        }
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
        if !(self.registry.default_expected_interval_s.is_finite()
            && self.registry.default_expected_interval_s > 0.0)
        {
            bail!("registry.default_expected_interval_s must be a positive number");
        }
        Ok(())
    }

    /// `<data-dir>/anomalies.db`, the seed's path.
    pub fn database_path(&self) -> PathBuf {
        self.data_dir.join("anomalies.db")
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
        let from_file = Config::load(Some(&path), &Overrides::default()).unwrap();
        assert_eq!(from_file.data_dir, PathBuf::from("/srv/vw"));
        assert_eq!(from_file.rules.heart_rate.min, 45.0);
        assert_eq!(from_file.rules.body_temp, RuleSet::default().body_temp);

        let overrides = Overrides {
            http_addr: Some("127.0.0.1:7000".parse().unwrap()),
            registry_policy: Some(RegistryPolicy::Strict),
            ..Overrides::default()
        };
        let layered = Config::load(Some(&path), &overrides).unwrap();
        assert_eq!(layered.http_addr.port(), 7000);
        assert_eq!(layered.data_dir, PathBuf::from("/srv/vw"));
        assert_eq!(layered.registry.policy, RegistryPolicy::Strict);
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
