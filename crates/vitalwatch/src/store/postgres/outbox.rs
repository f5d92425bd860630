//! SQL for the webhook outbox ([`WebhookOutbox`], migration V6): rows written in the
//! transaction of the alert transitions they announce ([`enqueue`], called by
//! `alerts::write_transitions`), claimed by the leader with a lease (`FOR UPDATE SKIP LOCKED`
//! for the claim itself; nothing is held across HTTP), settled in one transaction with the
//! deliveries they finished, and trimmed to a bound (the oldest beyond it recorded as failed).
//!
//! Whether rows are written is the process's choice (webhook targets configured or not), made
//! once at start by [`WebhookOutbox::enable`]: a process-wide switch, because the transition
//! writers (the shared evaluation and the writer task) only hold a transaction. One process
//! serves one configuration.

use super::writer::Shared;
use super::{Tx, alerts, pg, pool_error};
use crate::store::outbox::{FailedRecords, LastOutcome, OutboxRow, Settled, WebhookOutbox};
use crate::store::{StoreError, transition_kind_str};
use async_trait::async_trait;
use deadpool_postgres::Pool;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;
use tokio_postgres::Row;
use vitalwatch_core::alerting::AlertTransition;
use vitalwatch_core::telemetry::Timestamp;

/// The outbox on one pool.
pub(super) struct PgOutbox {
    pub(super) pool: Pool,
    /// The store's state its writers see (`outbox`: whether transitions write rows).
    pub(super) shared: Arc<Shared>,
}

/// Writes one row per transition in the caller's transaction (one statement), when the
/// outbox is enabled.
pub(super) async fn enqueue(
    tx: &Tx<'_>,
    transitions: &[AlertTransition],
    created_at: &str,
) -> Result<(), StoreError> {
    if transitions.is_empty() {
        return Ok(());
    }
    let alert_ids: Vec<i64> = transitions.iter().map(|t| t.alert.id.0 as i64).collect();
    let kinds: Vec<&str> = transitions
        .iter()
        .map(|t| transition_kind_str(t.kind))
        .collect();
    let bodies: Vec<String> = transitions
        .iter()
        .map(crate::store::outbox::webhook_body)
        .collect();
    let insert = tx
        .prepare_cached(
            "INSERT INTO webhook_outbox (alert_id, transition, body, created_at) \
             SELECT a, k, b, $4 FROM unnest($1::bigint[], $2::text[], $3::text[]) \
             WITH ORDINALITY AS u(a, k, b, n) ORDER BY n",
        )
        .await
        .map_err(pg)?;
    tx.execute(&insert, &[&alert_ids, &kinds, &bodies, &created_at])
        .await
        .map_err(pg)?;
    Ok(())
}

/// A duration for `$n::float8 * interval '1 millisecond'`.
fn millis(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}

fn invalid(what: &str) -> StoreError {
    StoreError::InvalidData(format!("stored webhook outbox row: {what}"))
}

/// The columns every query returns, in [`outbox_row`]'s order.
const COLUMNS: &str = "o.id, o.alert_id, o.transition, o.body, o.created_at, o.attempts, \
                       o.finished, o.last_outcomes::text";

fn outbox_row(row: &Row) -> Result<OutboxRow, StoreError> {
    let created_at: String = row.get(4);
    let last: String = row.get(7);
    Ok(OutboxRow {
        id: row.get(0),
        alert_id: row.get::<_, Option<i64>>(1).map(|id| id as u64),
        transition: row.get(2),
        body: row.get(3),
        created_at: Timestamp::parse_text(&created_at).ok_or_else(|| invalid("created_at"))?,
        attempts: u32::try_from(row.get::<_, i32>(5)).unwrap_or(0),
        finished: row.get(6),
        last: serde_json::from_str::<BTreeMap<String, LastOutcome>>(&last)
            .map_err(|_| invalid("last_outcomes"))?,
    })
}

#[async_trait]
impl WebhookOutbox for PgOutbox {
    fn enable(&self) {
        self.shared.outbox.store(true, Ordering::Relaxed);
    }

    async fn claim(&self, limit: usize, lease: Duration) -> Result<Vec<OutboxRow>, StoreError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let client = self.pool.get().await.map_err(pool_error)?;
        let rows = client
            .query(
                &format!(
                    "UPDATE webhook_outbox o \
                     SET next_attempt_at = now() + $2::float8 * interval '1 millisecond' \
                     FROM (SELECT id FROM webhook_outbox WHERE next_attempt_at <= now() \
                     ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED) AS due WHERE o.id = due.id \
                     RETURNING {COLUMNS}"
                ),
                &[&limit, &millis(lease)],
            )
            .await
            .map_err(pg)?;
        let mut out = rows.iter().map(outbox_row).collect::<Result<Vec<_>, _>>()?;
        out.sort_by_key(|row| row.id);
        Ok(out)
    }

    async fn settle(&self, settled: Settled) -> Result<bool, StoreError> {
        let mut client = self.pool.get().await.map_err(pool_error)?;
        let tx = client.transaction().await.map_err(pg)?;
        let claimed = i32::try_from(settled.claimed_attempts).unwrap_or(i32::MAX);
        let changed = match settled.retry_after {
            None => tx
                .execute(
                    "DELETE FROM webhook_outbox WHERE id = $1 AND attempts = $2",
                    &[&settled.id, &claimed],
                )
                .await
                .map_err(pg)?,
            Some(wait) => {
                let last = serde_json::to_string(&settled.last)
                    .map_err(|err| StoreError::InvalidData(err.to_string()))?;
                tx.execute(
                    "UPDATE webhook_outbox SET attempts = attempts + 1, \
                     next_attempt_at = now() + $3::float8 * interval '1 millisecond', finished = $4, \
                     last_outcomes = $5::text::jsonb WHERE id = $1 AND attempts = $2",
                    &[
                        &settled.id,
                        &claimed,
                        &millis(wait),
                        &settled.finished,
                        &last,
                    ],
                )
                .await
                .map_err(pg)?
            }
        };
        if changed == 0 {
            return Ok(false);
        }
        for delivery in &settled.deliveries {
            alerts::record_delivery(&tx, delivery).await?;
        }
        tx.commit().await.map_err(pg)?;
        Ok(true)
    }

    async fn trim(&self, keep: usize, failed: &FailedRecords) -> Result<usize, StoreError> {
        let keep = i64::try_from(keep).unwrap_or(i64::MAX);
        let mut client = self.pool.get().await.map_err(pool_error)?;
        let tx = client.transaction().await.map_err(pg)?;
        let rows = tx
            .query(
                &format!(
                    "DELETE FROM webhook_outbox o WHERE o.id IN (SELECT id FROM webhook_outbox \
                     ORDER BY id DESC OFFSET $1 FOR UPDATE SKIP LOCKED) RETURNING {COLUMNS}"
                ),
                &[&keep],
            )
            .await
            .map_err(pg)?;
        let mut recorded = 0;
        for row in &rows {
            for delivery in failed(&outbox_row(row)?) {
                alerts::record_delivery(&tx, &delivery).await?;
                recorded += 1;
            }
        }
        tx.commit().await.map_err(pg)?;
        Ok(recorded)
    }
}
