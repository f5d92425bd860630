//! The leader's delivery of the webhook outbox (PostgreSQL; `store::outbox`): rows that are
//! due are claimed oldest first, at most `concurrency` at a time, each under a lease long
//! enough for a round of attempts; a round tries every configured target the row has not
//! finished with, one after the other, signed as on the in-memory path and with
//! `X-VitalWatch-Delivery: <row id>`; the round's outcome ([`settle_round`], pure) is stored in
//! one transaction with the deliveries it finished (`webhook_deliveries`, as before): the row
//! goes when every target finished, else its next round is due after the backoff.
//!
//! What survives a crash is in the database: the rows, their attempts and next attempt time.
//! A leader that dies mid-round leaves its rows leased; they are due again when the lease
//! ends, and the next leader goes on from the attempts stored. At least once: a receiver's 2xx
//! whose round was not stored yet is sent again, with the same delivery id.
//!
//! Bounded: at most `concurrency` rows in memory; the table is kept to `queue_capacity` rows
//! (checked every few seconds: the oldest beyond it are recorded as failed, "outbox full",
//! as a full queue does on one node), so a receiver that hangs for hours cannot grow it.
//!
//! Non-leader nodes never run this: their transitions only write rows.

use super::AlertService;
use super::webhooks::{Attempt, backoff, post_once, signature};
use crate::config::{WebhookDeliveryConfig, WebhookTarget};
use crate::metrics::connections::{WebhookOutcome, webhook_delivery};
use crate::store::outbox::{LastOutcome, OutboxRow, Settled};
use crate::store::{NewWebhookDelivery, Store};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// How often the leader looks for due rows when nothing woke it (rows written by other nodes,
/// retries whose backoff ended): a notification waits at most this long for its first round.
const POLL: Duration = Duration::from_millis(250);
/// Beyond a round's own worst case (every target timing out), before a claimed row is due
/// again for another claim.
const LEASE_MARGIN: Duration = Duration::from_secs(10);
/// Attempts at storing a round's outcome while the database is briefly away.
const SETTLE_ATTEMPTS: u32 = 3;
const SETTLE_RETRY_AFTER: Duration = Duration::from_millis(500);
/// How often the leader bounds the outbox to `queue_capacity` rows.
const TRIM_EVERY: Duration = Duration::from_secs(5);
/// The error a notification removed from a full outbox is recorded with.
const OUTBOX_FULL: &str = "outbox full";

/// How long a claim holds a row: every target timing out one after the other, plus a margin.
pub(super) fn lease(config: &WebhookDeliveryConfig, targets: usize) -> Duration {
    let per_attempt = Duration::from_millis(config.timeout_ms);
    per_attempt.saturating_mul(u32::try_from(targets).unwrap_or(u32::MAX)) + LEASE_MARGIN
}

/// The targets (by URL, in configuration order) a row still has to reach.
pub(super) fn pending<'a>(row: &OutboxRow, urls: &[&'a str]) -> Vec<&'a str> {
    urls.iter()
        .filter(|url| !row.finished.iter().any(|done| done == *url))
        .copied()
        .collect()
}

/// What a round of attempts at `row` (this round's attempt at each pending target, `results`)
/// makes of it: the deliveries that finished (delivered, or failed on the last attempt), and
/// whether the row goes or is due again after the backoff.
pub(super) fn settle_round(
    row: &OutboxRow,
    urls: &[&str],
    results: Vec<(String, Attempt)>,
    config: &WebhookDeliveryConfig,
) -> Settled {
    let round = row.attempts.saturating_add(1);
    let last_round = round >= config.max_attempts;
    let mut finished = row.finished.clone();
    let mut last = row.last.clone();
    let mut deliveries = Vec::new();
    let delivery = |url: &str, state, status, error| NewWebhookDelivery {
        url: url.to_owned(),
        alert_id: row.alert_id,
        transition: row.transition.clone(),
        state,
        attempts: round,
        last_status: status,
        last_error: error,
        created_at: row.created_at,
        body: row.body.clone(),
    };
    for (url, result) in results {
        let outcome = match result {
            Attempt::Delivered(status) => {
                deliveries.push(delivery(&url, "delivered", Some(status), None));
                last.remove(&url);
                finished.push(url);
                continue;
            }
            Attempt::Refused(status) => LastOutcome {
                status: Some(status),
                error: Some(format!("answered HTTP {status}")),
            },
            // A refused attempt's status stays the last one seen, as on the in-memory path.
            Attempt::Failed(error) => LastOutcome {
                status: last.get(&url).and_then(|o| o.status),
                error: Some(error),
            },
        };
        if last_round {
            deliveries.push(delivery(&url, "failed", outcome.status, outcome.error));
            last.remove(&url);
            finished.push(url);
        } else {
            last.insert(url, outcome);
        }
    }
    let done = urls.iter().all(|url| finished.iter().any(|f| f == url));
    Settled {
        id: row.id,
        claimed_attempts: row.attempts,
        deliveries,
        retry_after: (!done).then(|| backoff(config, round)),
        finished,
        last,
    }
}

/// The failed deliveries a row removed unfinished from a full outbox is recorded as: one per
/// configured target it had not finished with, its attempts and last outcome as they stood.
pub(super) fn dropped(row: &OutboxRow, urls: &[&str]) -> Vec<NewWebhookDelivery> {
    pending(row, urls)
        .into_iter()
        .map(|url| {
            let last = row.last.get(url);
            NewWebhookDelivery {
                url: url.to_owned(),
                alert_id: row.alert_id,
                transition: row.transition.clone(),
                state: "failed",
                attempts: row.attempts,
                last_status: last.and_then(|o| o.status),
                last_error: Some(match last.and_then(|o| o.error.as_deref()) {
                    Some(error) => format!("{OUTBOX_FULL} (last: {error})"),
                    None => OUTBOX_FULL.to_owned(),
                }),
                created_at: row.created_at,
                body: row.body.clone(),
            }
        })
        .collect()
}

/// Bounds the outbox to `queue_capacity` rows: the oldest beyond it are recorded as failed
/// (as a full queue does on one node), counted as dropped.
async fn trim(
    store: &dyn Store,
    targets: &[(WebhookTarget, ureq::Agent)],
    config: &WebhookDeliveryConfig,
) {
    let Some(outbox) = store.webhook_outbox() else {
        return;
    };
    let urls: Vec<String> = targets.iter().map(|(t, _)| t.url.clone()).collect();
    let failed = move |row: &OutboxRow| {
        let urls: Vec<&str> = urls.iter().map(String::as_str).collect();
        dropped(row, &urls)
    };
    match outbox.trim(config.queue_capacity, &failed).await {
        Ok(0) => {}
        Ok(n) => {
            for _ in 0..n {
                webhook_delivery(WebhookOutcome::Dropped);
            }
            tracing::warn!(
                message = "Webhook outbox full; the oldest notifications recorded as failed.",
                event = "webhook.dropped",
                deliveries = n
            );
        }
        Err(err) => {
            tracing::warn!(event = "webhook.outbox_failed", message = "Webhook outbox not trimmed; trying again.", error = %err)
        }
    }
}

/// Runs one round at a row and stores it; counts and logs what finished.
async fn deliver_row(
    store: Arc<dyn Store>,
    targets: Arc<Vec<(WebhookTarget, ureq::Agent)>>,
    config: WebhookDeliveryConfig,
    row: OutboxRow,
) {
    let urls: Vec<&str> = targets.iter().map(|(t, _)| t.url.as_str()).collect();
    let mut results = Vec::new();
    for url in pending(&row, &urls) {
        let Some((target, agent)) = targets.iter().find(|(t, _)| t.url == url) else {
            continue;
        };
        let signed = signature(target.secret.expose().as_bytes(), row.body.as_bytes());
        let result = post_once(
            agent.clone(),
            target.url.clone(),
            row.body.clone(),
            signed,
            Some(row.id.to_string()),
        )
        .await;
        if !matches!(result, Attempt::Delivered(_)) {
            tracing::debug!(event = "webhook.attempt_failed", message = "Webhook attempt failed.", attempt = row.attempts + 1, url = %target.url);
        }
        results.push((target.url.clone(), result));
    }
    let settled = settle_round(&row, &urls, results, &config);
    let finished: Vec<(String, &'static str)> = settled
        .deliveries
        .iter()
        .map(|d| (d.url.clone(), d.state))
        .collect();
    let Some(outbox) = store.webhook_outbox() else {
        return;
    };
    let mut tries = 0;
    let stored = loop {
        tries += 1;
        match outbox.settle(settled.clone()).await {
            Ok(stored) => break stored,
            Err(err) if tries < SETTLE_ATTEMPTS => {
                tracing::debug!(event = "webhook.outbox_failed", message = "Webhook outbox round not stored yet; trying again.", error = %err);
                tokio::time::sleep(SETTLE_RETRY_AFTER).await;
            }
            Err(err) => {
                // The row stays leased; it is due again when the lease ends (at least once).
                tracing::warn!(event = "webhook.outbox_failed", message = "Webhook outbox round not stored; the row is retried when its lease ends.", error = %err);
                return;
            }
        }
    };
    if !stored {
        return;
    }
    for (url, state) in finished {
        if state == "delivered" {
            webhook_delivery(WebhookOutcome::Delivered);
        } else {
            webhook_delivery(WebhookOutcome::Failed);
            tracing::warn!(message = "Webhook undeliverable; kept as failed.", event = "webhook.failed", url = %url);
        }
    }
}

impl AlertService {
    /// The leader's delivery of the webhook outbox until `term` (leadership ends or the node
    /// stops), when this node has webhook targets and a store with an outbox; `None` else.
    pub fn outbox_delivery(
        self: &Arc<AlertService>,
        term: CancellationToken,
    ) -> Option<impl std::future::Future<Output = ()> + Send + 'static> {
        let webhooks = self.webhooks.as_ref()?;
        let wake = webhooks.outbox_wake()?;
        self.store.webhook_outbox()?;
        Some(run(
            Arc::clone(&self.store),
            Arc::clone(&webhooks.targets),
            webhooks.config.clone(),
            wake,
            term,
        ))
    }
}

async fn run(
    store: Arc<dyn Store>,
    targets: Arc<Vec<(WebhookTarget, ureq::Agent)>>,
    config: WebhookDeliveryConfig,
    wake: Arc<Notify>,
    term: CancellationToken,
) {
    let concurrency = config.concurrency.max(1);
    let lease = lease(&config, targets.len());
    let mut in_flight = JoinSet::new();
    let mut failing = false;
    let mut trimmed = tokio::time::Instant::now();
    tracing::info!(
        event = "webhook.outbox_started",
        message = "This node delivers the webhook outbox."
    );
    trim(&*store, &targets, &config).await;
    loop {
        if trimmed.elapsed() >= TRIM_EVERY {
            trimmed = tokio::time::Instant::now();
            trim(&*store, &targets, &config).await;
        }
        let room = concurrency.saturating_sub(in_flight.len());
        if room > 0
            && let Some(outbox) = store.webhook_outbox()
        {
            match outbox.claim(room, lease).await {
                Ok(rows) => {
                    failing = false;
                    for row in rows {
                        in_flight.spawn(deliver_row(
                            Arc::clone(&store),
                            Arc::clone(&targets),
                            config.clone(),
                            row,
                        ));
                    }
                }
                Err(err) => {
                    if !failing {
                        tracing::warn!(event = "webhook.outbox_failed", message = "Due webhook notifications could not be read; trying again.", error = %err);
                    }
                    failing = true;
                }
            }
        }
        tokio::select! {
            () = term.cancelled() => break,
            () = wake.notified() => {}
            () = tokio::time::sleep(POLL) => {}
            Some(_) = in_flight.join_next(), if !in_flight.is_empty() => {}
        }
    }
    // Rounds in progress finish (each is bounded by its targets' timeouts) and are stored;
    // nothing new is claimed.
    while in_flight.join_next().await.is_some() {}
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;
    use vitalwatch_core::telemetry::Timestamp;

    const A: &str = "https://a.example/hook";
    const B: &str = "https://b.example/hook";

    fn config() -> WebhookDeliveryConfig {
        WebhookDeliveryConfig {
            max_attempts: 3,
            initial_backoff_ms: 100,
            max_backoff_ms: 250,
            ..WebhookDeliveryConfig::default()
        }
    }

    fn row(attempts: u32, finished: &[&str]) -> OutboxRow {
        OutboxRow {
            id: 7,
            alert_id: Some(3),
            transition: "raised".into(),
            body: "{}".into(),
            created_at: Timestamp::from_secs(1_700_000_000),
            attempts,
            finished: finished.iter().map(|s| (*s).to_owned()).collect(),
            last: BTreeMap::new(),
        }
    }

    #[test]
    fn only_targets_not_finished_are_pending() {
        assert_eq!(pending(&row(1, &[A]), &[A, B]), vec![B]);
        assert_eq!(pending(&row(0, &[]), &[A, B]), vec![A, B]);
        // A target no longer configured is not tried.
        assert!(pending(&row(2, &[B]), &[B]).is_empty());
    }

    #[test]
    fn a_failed_round_is_retried_after_the_backoff_until_the_last_attempt() {
        let config = config();
        let first = settle_round(
            &row(0, &[]),
            &[A, B],
            vec![
                (A.into(), Attempt::Delivered(200)),
                (B.into(), Attempt::Refused(503)),
            ],
            &config,
        );
        assert_eq!(first.claimed_attempts, 0);
        assert_eq!(first.retry_after, Some(Duration::from_millis(100)));
        assert_eq!(first.finished, vec![A.to_owned()]);
        assert_eq!(first.deliveries.len(), 1);
        assert_eq!(first.deliveries[0].state, "delivered");
        assert_eq!(first.deliveries[0].attempts, 1);
        assert_eq!(first.last[B].status, Some(503));

        // Second round: a connection error keeps the last HTTP status seen; backoff doubles.
        let mut second_row = row(1, &[A]);
        second_row.last = first.last.clone();
        let second = settle_round(
            &second_row,
            &[A, B],
            vec![(B.into(), Attempt::Failed("connection refused".into()))],
            &config,
        );
        assert_eq!(second.retry_after, Some(Duration::from_millis(200)));
        assert!(second.deliveries.is_empty());
        assert_eq!(second.last[B].status, Some(503));
        assert_eq!(second.last[B].error.as_deref(), Some("connection refused"));

        // Third (last) round: B fails for good and the row goes.
        let mut third_row = row(2, &[A]);
        third_row.last = second.last.clone();
        let third = settle_round(
            &third_row,
            &[A, B],
            vec![(B.into(), Attempt::Failed("timed out".into()))],
            &config,
        );
        assert_eq!(third.retry_after, None);
        assert_eq!(third.deliveries.len(), 1);
        let failed = &third.deliveries[0];
        assert_eq!(
            (failed.url.as_str(), failed.state, failed.attempts),
            (B, "failed", 3)
        );
        assert_eq!(failed.last_status, Some(503));
        assert_eq!(failed.last_error.as_deref(), Some("timed out"));
        assert!(third.last.is_empty());
    }

    #[test]
    fn a_row_dropped_from_a_full_outbox_fails_for_its_unfinished_targets() {
        let mut row = row(2, &[A]);
        row.last.insert(
            B.to_owned(),
            LastOutcome {
                status: Some(503),
                error: Some("answered HTTP 503".into()),
            },
        );
        let records = dropped(&row, &[A, B]);
        assert_eq!(records.len(), 1);
        let record = &records[0];
        assert_eq!(
            (record.url.as_str(), record.state, record.attempts),
            (B, "failed", 2)
        );
        assert_eq!(record.last_status, Some(503));
        assert_eq!(
            record.last_error.as_deref(),
            Some("outbox full (last: answered HTTP 503)")
        );
        assert_eq!(dropped(&row, &[A]), Vec::new());
    }

    #[test]
    fn a_row_every_target_accepted_goes_and_the_lease_covers_a_round() {
        let settled = settle_round(
            &row(0, &[]),
            &[A, B],
            vec![
                (A.into(), Attempt::Delivered(200)),
                (B.into(), Attempt::Delivered(204)),
            ],
            &config(),
        );
        assert_eq!(settled.retry_after, None);
        assert_eq!(settled.deliveries.len(), 2);
        let config = WebhookDeliveryConfig {
            timeout_ms: 2_000,
            ..config()
        };
        assert_eq!(lease(&config, 3), Duration::from_secs(16));
    }
}
