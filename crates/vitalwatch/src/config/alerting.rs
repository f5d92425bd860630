//! The `[alerting]` table: core's [`AlertConfig`] (onset, grading, escalation, offline…) with
//! what only the service needs: SENSOR_FAULT limits, NEWS2 over time (each parameter's
//! validity, the smoothing window) and webhooks.
//!
//! Plain settings: `alerts` turns them into its engine, checks and webhook workers (a webhook's
//! CA file is read there, at start).

use crate::secret::Secret;
use anyhow::bail;
use serde::{Deserialize, Serialize};
use vitalwatch_core::alerting::AlertConfig;
use vitalwatch_core::news2::Validity;
use vitalwatch_core::rules::SensorFaultRule;

/// Deserialised by hand (see the `Deserialize` impl): serde's `flatten` would silently accept
/// misspelt keys, and a misspelt alerting key must be an error.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct AlertingConfig {
    /// How long each NEWS2 parameter's latest value counts before it is stale (at least the
    /// device's own reporting interval).
    pub news2_validity: Validity,
    /// NEWS2 scores each numeric parameter by the interquartile mean of its readings within
    /// this many seconds (0: the latest value), so a value at a band edge does not flip the
    /// score from one noisy reading to the next.
    pub news2_smooth_s: u64,
    /// Values impossible for a living patient (SENSOR_FAULT).
    pub sensor_fault: SensorFaultRule,
    /// How webhook notifications are retried and queued.
    pub webhook_delivery: WebhookDeliveryConfig,
    /// Where alert transitions are POSTed (admin-configured, here only).
    pub webhooks: Vec<WebhookTarget>,
    /// The alert engine's settings (core `alerting::AlertConfig`), as keys of this table.
    #[serde(flatten)]
    pub engine: AlertConfig,
}

impl<'de> Deserialize<'de> for AlertingConfig {
    fn deserialize<D: serde::Deserializer<'de>>(de: D) -> Result<AlertingConfig, D::Error> {
        use serde::de::Error;
        fn take<T: serde::de::DeserializeOwned, E: Error>(
            table: &mut serde_json::Map<String, serde_json::Value>,
            key: &str,
            default: T,
        ) -> Result<T, E> {
            match table.remove(key) {
                Some(value) => {
                    serde_json::from_value(value).map_err(|err| E::custom(format!("{key}: {err}")))
                }
                None => Ok(default),
            }
        }
        let mut table = serde_json::Map::<String, serde_json::Value>::deserialize(de)?;
        let defaults = AlertingConfig::default();
        Ok(AlertingConfig {
            news2_validity: take(&mut table, "news2_validity", defaults.news2_validity)?,
            news2_smooth_s: take(&mut table, "news2_smooth_s", defaults.news2_smooth_s)?,
            sensor_fault: take(&mut table, "sensor_fault", defaults.sensor_fault)?,
            webhook_delivery: take(&mut table, "webhook_delivery", defaults.webhook_delivery)?,
            webhooks: take(&mut table, "webhooks", defaults.webhooks)?,
            // Everything else is the engine's, which refuses unknown keys.
            engine: serde_json::from_value(serde_json::Value::Object(table))
                .map_err(D::Error::custom)?,
        })
    }
}

impl Default for AlertingConfig {
    fn default() -> AlertingConfig {
        AlertingConfig {
            news2_validity: Validity::default(),
            news2_smooth_s: 30,
            sensor_fault: SensorFaultRule::default(),
            webhook_delivery: WebhookDeliveryConfig::default(),
            webhooks: Vec::new(),
            engine: AlertConfig::default(),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WebhookDeliveryConfig {
    /// Attempts per notification, the first included.
    pub max_attempts: u32,
    /// Wait before the first retry; doubles after each failure.
    pub initial_backoff_ms: u64,
    /// The longest wait between two attempts.
    pub max_backoff_ms: u64,
    /// One attempt gives up after this long (connect, send and answer).
    pub timeout_ms: u64,
    /// Notifications waiting for delivery; beyond it a notification is recorded as failed
    /// ("queue full") instead of slowing the pipeline. On PostgreSQL: the outbox's bound (the
    /// oldest rows beyond it recorded as failed, "outbox full").
    pub queue_capacity: usize,
    /// Deliveries in flight at once (on PostgreSQL: outbox rows the leader works on at once).
    pub concurrency: usize,
}

impl Default for WebhookDeliveryConfig {
    fn default() -> WebhookDeliveryConfig {
        WebhookDeliveryConfig {
            max_attempts: 5,
            initial_backoff_ms: 500,
            max_backoff_ms: 30_000,
            timeout_ms: 5_000,
            queue_capacity: 1024,
            concurrency: 4,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookTarget {
    /// An `https://` URL (or `http://` on a trusted network).
    pub url: String,
    /// The HMAC-SHA256 key; the body's signature is sent as `X-VitalWatch-Signature`.
    pub secret: Secret,
    /// For `https://`: a PEM file of the CA that signed the receiver's certificate (e.g. the
    /// project's own `ca.crt`); default: Mozilla's root certificates.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca: Option<std::path::PathBuf>,
}

impl AlertingConfig {
    pub fn validate(&self) -> anyhow::Result<()> {
        self.engine.validate()?;
        if let Err(message) = self.sensor_fault.validate() {
            bail!("alerting.{message}");
        }
        if let Some(key) = self.news2_validity.zero_key() {
            bail!("alerting.news2_validity.{key}_s must be at least 1");
        }
        if self.news2_smooth_s > 600 {
            bail!("alerting.news2_smooth_s must be at most 600");
        }
        let delivery = &self.webhook_delivery;
        if delivery.max_attempts == 0 || delivery.queue_capacity == 0 || delivery.concurrency == 0 {
            bail!(
                "alerting.webhook_delivery: max_attempts, queue_capacity and concurrency must be \
                 at least 1"
            );
        }
        if delivery.timeout_ms == 0 {
            bail!("alerting.webhook_delivery.timeout_ms must be at least 1");
        }
        for (idx, hook) in self.webhooks.iter().enumerate() {
            let scheme_ok = ["https://", "http://"]
                .iter()
                .any(|scheme| hook.url.starts_with(scheme) && hook.url.len() > scheme.len());
            if !scheme_ok {
                bail!("alerting.webhooks[{idx}].url must be an https:// (or http://) URL");
            }
            if hook.secret.expose().len() < 16 {
                bail!("alerting.webhooks[{idx}].secret must be at least 16 characters");
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn engine_keys_sit_in_the_alerting_table_and_unknown_keys_are_refused() {
        let config: AlertingConfig = toml::from_str(
            "audio_pause_max_s = 60\n[offline]\nfactor = 4\n[[webhooks]]\nurl = \"http://127.0.0.1:9/hook\"\nsecret = \"0123456789abcdef\"\n",
        )
        .expect("valid table");
        assert_eq!(config.engine.audio_pause_max_s, 60);
        assert_eq!(config.engine.offline.factor, 4);
        assert_eq!(config.webhooks.len(), 1);
        config.validate().expect("valid");
        assert_eq!(
            format!("{:?}", config.webhooks[0])
                .matches("[redacted]")
                .count(),
            1
        );
        assert!(!format!("{config:?}").contains("0123456789abcdef"));
        let err = toml::from_str::<AlertingConfig>("audio_pause_max = 60\n").unwrap_err();
        assert!(err.to_string().contains("audio_pause_max"), "{err}");
        let bad: AlertingConfig =
            toml::from_str("[[webhooks]]\nurl = \"ftp://x\"\nsecret = \"0123456789abcdef\"\n")
                .expect("parses");
        assert!(
            bad.validate()
                .unwrap_err()
                .to_string()
                .contains("webhooks[0].url")
        );
    }
}
