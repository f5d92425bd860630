//! SQL for alerting on PostgreSQL: alert rows and their history, webhook deliveries and
//! clinicians' verdicts (with the readings they label). Thresholds are in `thresholds.rs`,
//! the webhook outbox the transitions write to in `outbox.rs`.

use super::readings::{Filter, reading_from_row, select_columns};
use super::{Tx, audit, now_text, pg, to_utc};
use crate::store::{
    AlertEventRecord, AlertQuery, AlertRecord, AuditEntry, NewWebhookDelivery, ReadingRecord,
    StoreError, WebhookDeliveryRecord, alert_state_str, transition_kind_str,
};
use deadpool_postgres::GenericClient;
use tokio_postgres::Row;
use vitalwatch_core::alerting::{Alert, AlertClass, AlertTransition, Priority, TransitionKind};
use vitalwatch_core::telemetry::Timestamp;

fn class_str(class: AlertClass) -> &'static str {
    match class {
        AlertClass::Physiological => "physiological",
        AlertClass::Technical => "technical",
    }
}

fn priority_rank(priority: Priority) -> i32 {
    match priority {
        Priority::Low => 1,
        Priority::Medium => 2,
        Priority::High => 3,
    }
}

/// Writes the transitions (and, with `outbox`, their webhook notifications) in `tx`.
pub(super) async fn write_transitions(
    tx: &Tx<'_>,
    transitions: &[AlertTransition],
    outbox: bool,
) -> Result<(), StoreError> {
    let now = now_text();
    let upsert = tx
        .prepare_cached(
            "INSERT INTO alerts (id, device_id, condition, class, priority, priority_rank, state, \
             opened_at, last_seen, acknowledged_by, acknowledged_at, acknowledged_note, \
             silenced_until, silenced_by, resolved_at, resolved_by, last_value, threshold, count, \
             escalation_level, updated_at, alert) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, \
             $18, $19, $20, $21, $22) \
             ON CONFLICT (id) DO UPDATE SET priority = excluded.priority, \
             priority_rank = excluded.priority_rank, state = excluded.state, \
             last_seen = excluded.last_seen, acknowledged_by = excluded.acknowledged_by, \
             acknowledged_at = excluded.acknowledged_at, \
             acknowledged_note = excluded.acknowledged_note, \
             silenced_until = excluded.silenced_until, silenced_by = excluded.silenced_by, \
             resolved_at = excluded.resolved_at, resolved_by = excluded.resolved_by, \
             last_value = excluded.last_value, threshold = excluded.threshold, \
             count = excluded.count, escalation_level = excluded.escalation_level, \
             updated_at = excluded.updated_at, alert = excluded.alert",
        )
        .await
        .map_err(pg)?;
    let event = tx
        .prepare_cached(
            "INSERT INTO alert_events (alert_id, kind, at, actor, priority, state, \
             escalation_level, value) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .await
        .map_err(pg)?;
    for transition in transitions {
        let alert = &transition.alert;
        let json = serde_json::to_string(alert)
            .map_err(|err| StoreError::InvalidData(format!("alert not serialisable: {err}")))?;
        let text = |ts: Option<Timestamp>| ts.map(|t| t.to_rfc3339());
        let escalation = i32::try_from(alert.escalation_level).unwrap_or(i32::MAX);
        tx.execute(
            &upsert,
            &[
                &(alert.id.0 as i64),
                &alert.device_id.as_str(),
                &alert.condition.as_str(),
                &class_str(alert.class),
                &alert.priority.as_str(),
                &priority_rank(alert.priority),
                &alert_state_str(alert.state),
                &alert.opened_at.to_rfc3339(),
                &alert.last_seen.to_rfc3339(),
                &alert.acknowledged_by,
                &text(alert.acknowledged_at),
                &alert.acknowledged_note,
                &text(alert.silenced_until),
                &alert.silenced_by,
                &text(alert.resolved_at),
                &alert.resolved_by,
                &alert.last_value,
                &alert.threshold,
                &(alert.count as i64),
                &escalation,
                &now,
                &json,
            ],
        )
        .await
        .map_err(pg)?;
        let actor = match transition.kind {
            TransitionKind::Acknowledged => alert.acknowledged_by.clone(),
            TransitionKind::Silenced => alert.silenced_by.clone(),
            TransitionKind::Resolved => alert.resolved_by.clone(),
            _ => None,
        };
        tx.execute(
            &event,
            &[
                &(alert.id.0 as i64),
                &transition_kind_str(transition.kind),
                &transition.at.to_rfc3339(),
                &actor,
                &alert.priority.as_str(),
                &alert_state_str(alert.state),
                &escalation,
                &alert.last_value,
            ],
        )
        .await
        .map_err(pg)?;
    }
    // Their webhook notifications, in the same transaction (a node that dies loses none).
    if outbox {
        super::outbox::enqueue(tx, transitions, &now).await?;
    }
    Ok(())
}

fn alert_from_row(row: &Row) -> Result<AlertRecord, StoreError> {
    let json: String = row.try_get(0).map_err(pg)?;
    let alert: Alert = serde_json::from_str(&json)
        .map_err(|err| StoreError::InvalidData(format!("stored alert: {err}")))?;
    Ok(AlertRecord {
        alert,
        updated_at: row.try_get(1).map_err(pg)?,
    })
}

pub(super) async fn open_alerts(
    client: &impl GenericClient,
) -> Result<(u64, Vec<Alert>), StoreError> {
    let max_id: i64 = client
        .query_one("SELECT COALESCE(MAX(id), 0) FROM alerts", &[])
        .await
        .map_err(pg)?
        .get(0);
    let rows = client
        .query(
            "SELECT alert, updated_at FROM alerts WHERE state <> 'resolved'",
            &[],
        )
        .await
        .map_err(pg)?;
    let alerts = rows
        .iter()
        .map(|row| alert_from_row(row).map(|record| record.alert))
        .collect::<Result<Vec<_>, _>>()?;
    Ok((u64::try_from(max_id).unwrap_or(0), alerts))
}

pub(super) async fn alerts(
    client: &impl GenericClient,
    query: AlertQuery,
) -> Result<Vec<AlertRecord>, StoreError> {
    let mut filter = Filter::new();
    if query.open_only {
        filter.add("state <> ?", "resolved".to_owned());
    } else if let Some(state) = query.state {
        filter.add("state = ?", alert_state_str(state).to_owned());
    }
    if let Some(priority) = query.priority {
        filter.add("priority = ?", priority.as_str().to_owned());
    }
    if let Some(device_id) = query.device_id {
        filter.add("device_id = ?", device_id);
    }
    if let Some(since) = query.since {
        filter.add(
            "(state <> 'resolved' OR COALESCE(resolved_at, opened_at) >= ?)",
            since.to_rfc3339(),
        );
    }
    let sql = format!(
        "SELECT alert, updated_at FROM alerts {} ORDER BY \
         CASE state WHEN 'active' THEN 0 WHEN 'acknowledged' THEN 1 ELSE 2 END, \
         priority_rank DESC, opened_at DESC, id DESC LIMIT {}",
        filter.sql(),
        query.limit
    );
    let rows = client.query(&sql, &filter.params()).await.map_err(pg)?;
    rows.iter().map(alert_from_row).collect()
}

pub(super) async fn alert(
    client: &impl GenericClient,
    id: u64,
) -> Result<Option<(AlertRecord, Vec<AlertEventRecord>)>, StoreError> {
    let id = id as i64;
    let Some(row) = client
        .query_opt("SELECT alert, updated_at FROM alerts WHERE id = $1", &[&id])
        .await
        .map_err(pg)?
    else {
        return Ok(None);
    };
    let record = alert_from_row(&row)?;
    let rows = client
        .query(
            "SELECT id, alert_id, kind, at, actor, priority, state, escalation_level, value \
             FROM alert_events WHERE alert_id = $1 ORDER BY id",
            &[&id],
        )
        .await
        .map_err(pg)?;
    let events = rows
        .iter()
        .map(|row| AlertEventRecord {
            id: row.get(0),
            alert_id: row.get::<_, i64>(1) as u64,
            kind: row.get(2),
            at: row.get(3),
            actor: row.get(4),
            priority: row.get(5),
            state: row.get(6),
            escalation_level: u32::try_from(row.get::<_, i32>(7)).unwrap_or(0),
            value: row.get(8),
        })
        .collect();
    Ok(Some((record, events)))
}

pub(super) async fn record_delivery(
    tx: &Tx<'_>,
    delivery: &NewWebhookDelivery,
) -> Result<(), StoreError> {
    let attempts = i32::try_from(delivery.attempts).unwrap_or(i32::MAX);
    let status = delivery.last_status.map(i32::from);
    tx.execute(
        "INSERT INTO webhook_deliveries (url, alert_id, transition, state, attempts, last_status, \
         last_error, created_at, finished_at, body) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        &[
            &delivery.url,
            &delivery.alert_id.map(|id| id as i64),
            &delivery.transition,
            &delivery.state,
            &attempts,
            &status,
            &delivery.last_error,
            &delivery.created_at.to_rfc3339(),
            &now_text(),
            &delivery.body,
        ],
    )
    .await
    .map_err(pg)?;
    Ok(())
}

pub(super) async fn webhook_deliveries(
    client: &impl GenericClient,
    state: Option<String>,
    limit: usize,
) -> Result<Vec<WebhookDeliveryRecord>, StoreError> {
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let rows = client
        .query(
            "SELECT id, url, alert_id, transition, state, attempts, last_status, last_error, \
             created_at, finished_at FROM webhook_deliveries \
             WHERE $1::text IS NULL OR state = $1 ORDER BY id DESC LIMIT $2",
            &[&state, &limit],
        )
        .await
        .map_err(pg)?;
    Ok(rows
        .iter()
        .map(|row| WebhookDeliveryRecord {
            id: row.get(0),
            url: row.get(1),
            alert_id: row.get::<_, Option<i64>>(2).map(|id| id as u64),
            transition: row.get(3),
            state: row.get(4),
            attempts: u32::try_from(row.get::<_, i32>(5)).unwrap_or(0),
            last_status: row
                .get::<_, Option<i32>>(6)
                .and_then(|s| u16::try_from(s).ok()),
            last_error: row.get(7),
            created_at: row.get(8),
            finished_at: row.get(9),
        })
        .collect())
}

/// Records the verdict and its audit entry in the caller's transaction.
pub(super) async fn set_verdict(
    tx: &Tx<'_>,
    alert_id: i64,
    true_alarm: bool,
    by: &str,
) -> Result<(), StoreError> {
    audit::lock(tx).await?;
    let verdict = if true_alarm {
        "true_alarm"
    } else {
        "false_alarm"
    };
    let changed = tx
        .execute(
            "UPDATE alerts SET verdict = $2, verdict_by = $3, verdict_at = $4 WHERE id = $1",
            &[&alert_id, &verdict, &by, &now_text()],
        )
        .await
        .map_err(pg)?;
    if changed == 0 {
        return Err(StoreError::AlertNotFound(alert_id));
    }
    audit::append(
        tx,
        &AuditEntry {
            actor: by.to_owned(),
            action: "alert.verdict".to_owned(),
            target: alert_id.to_string(),
            details: serde_json::json!({ "verdict": verdict }),
        },
    )
    .await
}

/// Readings received during episodes with a verdict (true = a true alarm), oldest episode
/// first, at most `limit`.
pub(super) async fn labelled_readings(
    client: &impl GenericClient,
    limit: usize,
) -> Result<Vec<(ReadingRecord, bool)>, StoreError> {
    let episodes = client
        .query(
            "SELECT device_id, opened_at, resolved_at, verdict FROM alerts \
             WHERE verdict IS NOT NULL ORDER BY id",
            &[],
        )
        .await
        .map_err(pg)?;
    let stmt = client
        .prepare_cached(&format!(
            "SELECT {} FROM readings WHERE device_id = $1 AND received_at >= $2 \
             AND received_at <= $3 ORDER BY id LIMIT $4",
            select_columns()
        ))
        .await
        .map_err(pg)?;
    let mut out = Vec::new();
    for episode in episodes {
        let device_id: String = episode.get(0);
        let opened_at: String = episode.get(1);
        let resolved_at: Option<String> = episode.get(2);
        let verdict: String = episode.get(3);
        // The reading that opened the episode was committed just before the engine saw it,
        // so the window starts a little before `opened_at`.
        let Some(opened) = Timestamp::parse_text(&opened_at) else {
            continue;
        };
        let from = to_utc(opened.saturating_add_micros(-10_000_000));
        let until = to_utc(
            resolved_at
                .as_deref()
                .and_then(Timestamp::parse_text)
                .unwrap_or(Timestamp::from_secs(253_402_300_799)),
        );
        let remaining = i64::try_from(limit.saturating_sub(out.len())).unwrap_or(i64::MAX);
        if remaining == 0 {
            break;
        }
        let rows = client
            .query(&stmt, &[&device_id, &from, &until, &remaining])
            .await
            .map_err(pg)?;
        for row in rows {
            out.push((reading_from_row(&row)?, verdict == "true_alarm"));
        }
    }
    Ok(out)
}
