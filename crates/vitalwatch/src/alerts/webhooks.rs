//! Webhook notifications: each alert transition is POSTed as JSON to every configured target,
//! signed with HMAC-SHA256 over the body (`X-VitalWatch-Signature: sha256=<hex>`), retried
//! with exponential backoff, and recorded when it finishes (`webhook_deliveries`: delivered, or
//! failed after its last attempt, which is the dead-letter list `GET /api/webhooks/deliveries`
//! shows).
//!
//! On SQLite (one node) it never blocks ingest: the pipeline only `try_send`s into a bounded
//! queue; when the queue is full the notification is recorded as failed ("queue full")
//! instead. A worker task takes from the queue and runs at most `concurrency` deliveries at
//! once; each HTTP attempt runs on the blocking pool with a timeout.
//!
//! On PostgreSQL (nodes sharing one database) there is no queue: each transition's
//! notification is an outbox row written in the transition's own transaction, and the leader
//! delivers them ([`super::webhook_outbox`]), with the same signature, timeout, TLS and
//! backoff, adding the row's id as `X-VitalWatch-Delivery` for receivers to deduplicate.
//! Nothing here logs a body or a secret.

use crate::config::{WebhookDeliveryConfig, WebhookTarget};
use crate::metrics::connections::{WebhookOutcome, webhook_attempt, webhook_delivery};
use crate::secret::Secret;
use crate::store::{NewWebhookDelivery, Store};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{Notify, Semaphore, mpsc};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use vitalwatch_core::alerting::AlertTransition;
use vitalwatch_core::telemetry::Timestamp;

/// The signature header.
pub const SIGNATURE_HEADER: &str = "X-VitalWatch-Signature";
/// The delivery id header (PostgreSQL: the outbox row's id, the same on every redelivery).
pub const DELIVERY_HEADER: &str = "X-VitalWatch-Delivery";

/// `sha256=<hex of HMAC-SHA256(secret, body)>`.
pub fn signature(secret: &[u8], body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC accepts keys of any length");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// The wait before retry number `retry` (1-based): initial × 2^(retry-1), capped.
pub fn backoff(config: &WebhookDeliveryConfig, retry: u32) -> Duration {
    let factor = 1u64
        .checked_shl(retry.saturating_sub(1))
        .unwrap_or(u64::MAX);
    Duration::from_millis(
        config
            .initial_backoff_ms
            .saturating_mul(factor)
            .min(config.max_backoff_ms),
    )
}

/// The CA certificates in a PEM file, for verifying an HTTPS receiver.
pub fn load_ca(path: &std::path::Path) -> anyhow::Result<Vec<ureq::tls::Certificate<'static>>> {
    use anyhow::Context;
    let pem = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let certs: Vec<ureq::tls::Certificate<'static>> = ureq::tls::parse_pem(&pem)
        .filter_map(|item| match item {
            Ok(ureq::tls::PemItem::Certificate(cert)) => Some(Ok(cert)),
            Ok(_) => None,
            Err(err) => Some(Err(err)),
        })
        .collect::<Result<_, _>>()
        .with_context(|| format!("parsing {}", path.display()))?;
    anyhow::ensure!(!certs.is_empty(), "no certificate in {}", path.display());
    Ok(certs)
}

/// The HTTP client for one target: TLS 1.2+ through rustls (ring, installed at start), with
/// the target's CA or Mozilla's roots.
fn agent_for(target: &WebhookTarget, config: &WebhookDeliveryConfig) -> ureq::Agent {
    let roots = match target.ca.as_deref().map(load_ca) {
        Some(Ok(certs)) => ureq::tls::RootCerts::new_with_certs(&certs),
        // Validated at start; a file that vanished since fails the deliveries, visibly.
        Some(Err(_)) => ureq::tls::RootCerts::Specific(Arc::new(Vec::new())),
        None => ureq::tls::RootCerts::WebPki,
    };
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_millis(config.timeout_ms)))
        .tls_config(
            ureq::tls::TlsConfig::builder()
                .provider(ureq::tls::TlsProvider::Rustls)
                .root_certs(roots)
                .build(),
        )
        .build()
        .into()
}

/// One notification for one target.
struct Delivery {
    agent: ureq::Agent,
    url: String,
    secret: Secret,
    alert_id: Option<u64>,
    transition: String,
    body: String,
    created_at: Timestamp,
}

/// The sending side, held by the alert service.
pub struct Webhooks {
    pub(super) targets: Arc<Vec<(WebhookTarget, ureq::Agent)>>,
    pub(super) config: WebhookDeliveryConfig,
    path: Path,
}

/// Where a notification goes.
enum Path {
    /// SQLite: the in-memory queue of this process.
    Queue {
        queue: mpsc::Sender<Delivery>,
        store: Arc<dyn Store>,
    },
    /// PostgreSQL: the transition's transaction wrote the outbox row already; this wakes the
    /// leader's delivery when this node leads.
    Outbox { wake: Arc<Notify> },
}

impl Webhooks {
    /// Starts the worker; `None` when no target is configured. Fails when a target's CA file
    /// cannot be read or holds no certificate.
    pub fn start(
        targets: Vec<WebhookTarget>,
        config: WebhookDeliveryConfig,
        store: Arc<dyn Store>,
        tasks: &TaskTracker,
        shutdown: CancellationToken,
    ) -> anyhow::Result<Option<Webhooks>> {
        if targets.is_empty() {
            return Ok(None);
        }
        for (idx, target) in targets.iter().enumerate() {
            if let Some(ca) = &target.ca {
                load_ca(ca)
                    .map_err(|err| anyhow::anyhow!("alerting.webhooks[{idx}].ca: {err:#}"))?;
            }
        }
        let targets = Arc::new(
            targets
                .into_iter()
                .map(|target| {
                    let agent = agent_for(&target, &config);
                    (target, agent)
                })
                .collect(),
        );
        if let Some(outbox) = store.webhook_outbox() {
            outbox.enable();
            return Ok(Some(Webhooks {
                targets,
                config,
                path: Path::Outbox {
                    wake: Arc::new(Notify::new()),
                },
            }));
        }
        let (queue, rx) = mpsc::channel(config.queue_capacity);
        tasks.spawn(worker(
            rx,
            config.clone(),
            Arc::clone(&store),
            tasks.clone(),
            shutdown,
        ));
        Ok(Some(Webhooks {
            targets,
            config,
            path: Path::Queue { queue, store },
        }))
    }

    /// What wakes the leader's outbox delivery; `None` on the in-memory path.
    pub(super) fn outbox_wake(&self) -> Option<Arc<Notify>> {
        match &self.path {
            Path::Outbox { wake } => Some(Arc::clone(wake)),
            Path::Queue { .. } => None,
        }
    }

    /// Queues the transition's notification for every target without waiting (on the outbox
    /// path the row is written already: this only wakes the delivery).
    pub fn notify(&self, transition: &AlertTransition, now: Timestamp) {
        let (queue, store) = match &self.path {
            Path::Queue { queue, store } => (queue, store),
            Path::Outbox { wake } => {
                wake.notify_one();
                return;
            }
        };
        let body = crate::store::outbox::webhook_body(transition);
        let alert_id = Some(transition.alert.id.0);
        let transition = crate::store::transition_kind_str(transition.kind);
        for (target, agent) in self.targets.iter() {
            let delivery = Delivery {
                agent: agent.clone(),
                url: target.url.clone(),
                secret: target.secret.clone(),
                alert_id,
                transition: transition.to_owned(),
                body: body.clone(),
                created_at: now,
            };
            if let Err(err) = queue.try_send(delivery) {
                let delivery = match err {
                    mpsc::error::TrySendError::Full(d) | mpsc::error::TrySendError::Closed(d) => d,
                };
                tracing::warn!(
                    message = "Webhook queue full; notification recorded as failed.",
                    event = "webhook.dropped"
                );
                webhook_delivery(WebhookOutcome::Dropped);
                let store = Arc::clone(store);
                tokio::spawn(async move {
                    record(
                        &*store,
                        &delivery,
                        "failed",
                        0,
                        None,
                        Some("queue full".into()),
                    )
                    .await;
                });
            }
        }
    }
}

async fn record(
    store: &dyn Store,
    delivery: &Delivery,
    state: &'static str,
    attempts: u32,
    last_status: Option<u16>,
    last_error: Option<String>,
) {
    let res = store
        .record_webhook_delivery(NewWebhookDelivery {
            url: delivery.url.clone(),
            alert_id: delivery.alert_id,
            transition: delivery.transition.clone(),
            state,
            attempts,
            last_status,
            last_error,
            created_at: delivery.created_at,
            body: delivery.body.clone(),
        })
        .await;
    if let Err(err) = res {
        tracing::error!(event = "webhook.not_recorded", message = "Webhook delivery not recorded.", error = %err);
    }
}

async fn worker(
    mut rx: mpsc::Receiver<Delivery>,
    config: WebhookDeliveryConfig,
    store: Arc<dyn Store>,
    tasks: TaskTracker,
    shutdown: CancellationToken,
) {
    let permits = Arc::new(Semaphore::new(config.concurrency));
    loop {
        let delivery = tokio::select! {
            () = shutdown.cancelled() => break,
            next = rx.recv() => match next {
                Some(delivery) => delivery,
                None => break,
            },
        };
        let Ok(permit) = Arc::clone(&permits).acquire_owned().await else {
            break;
        };
        let (agent, store, config, shutdown) = (
            delivery.agent.clone(),
            Arc::clone(&store),
            config.clone(),
            shutdown.clone(),
        );
        tasks.spawn(async move {
            deliver(agent, &*store, &config, delivery, shutdown).await;
            drop(permit);
        });
    }
    // Whatever is still queued at shutdown is kept as failed, not lost silently.
    rx.close();
    while let Ok(delivery) = rx.try_recv() {
        webhook_delivery(WebhookOutcome::Failed);
        record(
            &*store,
            &delivery,
            "failed",
            0,
            None,
            Some("shutting down".into()),
        )
        .await;
    }
}

/// What one attempt gave.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Attempt {
    Delivered(u16),
    Refused(u16),
    Failed(String),
}

/// One signed POST of `body` (on the blocking pool; the agent's timeout bounds it), with the
/// delivery id header when there is one.
pub(super) async fn post_once(
    agent: ureq::Agent,
    url: String,
    body: String,
    signature: String,
    delivery_id: Option<String>,
) -> Attempt {
    webhook_attempt();
    tokio::task::spawn_blocking(move || {
        let mut request = agent
            .post(&url)
            .header("Content-Type", "application/json")
            .header(SIGNATURE_HEADER, &signature);
        if let Some(id) = &delivery_id {
            request = request.header(DELIVERY_HEADER, id);
        }
        match request.send(body.as_bytes()) {
            Ok(response) if response.status().is_success() => {
                Attempt::Delivered(response.status().as_u16())
            }
            Ok(response) => Attempt::Refused(response.status().as_u16()),
            Err(err) => Attempt::Failed(err.to_string()),
        }
    })
    .await
    .unwrap_or_else(|err| Attempt::Failed(format!("delivery task failed: {err}")))
}

async fn deliver(
    agent: ureq::Agent,
    store: &dyn Store,
    config: &WebhookDeliveryConfig,
    delivery: Delivery,
    shutdown: CancellationToken,
) {
    let signature = signature(
        delivery.secret.expose().as_bytes(),
        delivery.body.as_bytes(),
    );
    let mut last_status = None;
    let mut last_error = None;
    for attempt in 1..=config.max_attempts {
        if attempt > 1 {
            tokio::select! {
                () = shutdown.cancelled() => {
                    webhook_delivery(WebhookOutcome::Failed);
                    last_error = Some("shutting down".to_owned());
                    record(store, &delivery, "failed", attempt - 1, last_status, last_error).await;
                    return;
                }
                () = tokio::time::sleep(backoff(config, attempt - 1)) => {}
            }
        }
        let (agent, url, body, signature) = (
            agent.clone(),
            delivery.url.clone(),
            delivery.body.clone(),
            signature.clone(),
        );
        let outcome = post_once(agent, url, body, signature, None).await;
        match outcome {
            Attempt::Delivered(status) => {
                webhook_delivery(WebhookOutcome::Delivered);
                record(store, &delivery, "delivered", attempt, Some(status), None).await;
                return;
            }
            Attempt::Refused(status) => {
                last_status = Some(status);
                last_error = Some(format!("answered HTTP {status}"));
            }
            Attempt::Failed(error) => {
                last_error = Some(error);
            }
        }
        tracing::debug!(event = "webhook.attempt_failed", message = "Webhook attempt failed.", attempt, url = %delivery.url);
    }
    webhook_delivery(WebhookOutcome::Failed);
    tracing::warn!(message = "Webhook undeliverable; kept as failed.", event = "webhook.failed", url = %delivery.url);
    record(
        store,
        &delivery,
        "failed",
        config.max_attempts,
        last_status,
        last_error,
    )
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_is_rfc_4231_hmac_sha256() {
        // RFC 4231 test case 2.
        assert_eq!(
            signature(b"Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let config = WebhookDeliveryConfig {
            initial_backoff_ms: 500,
            max_backoff_ms: 3_000,
            ..WebhookDeliveryConfig::default()
        };
        let waits: Vec<u64> = (1..=5)
            .map(|retry| backoff(&config, retry).as_millis() as u64)
            .collect();
        assert_eq!(waits, [500, 1_000, 2_000, 3_000, 3_000]);
    }
}
