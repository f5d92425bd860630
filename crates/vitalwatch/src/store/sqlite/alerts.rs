//! SQL for alerting (schema V2): alert rows and their history, per-patient thresholds and
//! webhook deliveries. Writes run on the store's one writer thread (see `Writer`), reads on the
//! read-only connections, exactly like the readings.

use super::audit;
use super::filter::Filter;
use super::now_text;
use super::writer::Reply;
use crate::store::{
    AlertEventRecord, AlertQuery, AlertRecord, AuditEntry, NewWebhookDelivery, StoreError,
    ThresholdsRecord, WebhookDeliveryRecord, alert_state_str, transition_kind_str,
};
use rusqlite::{Connection, OptionalExtension, Row, Transaction, params};
use vitalwatch_core::alerting::{Alert, AlertClass, AlertTransition, Priority, TransitionKind};
use vitalwatch_core::rules::PatientThresholds;
use vitalwatch_core::telemetry::Spo2Scale;

/// A write for the writer thread.
pub(super) enum AlertCommand {
    Transitions {
        transitions: Vec<AlertTransition>,
        reply: Reply<()>,
    },
    SetThresholds {
        record: ThresholdsRecord,
        reply: Reply<ThresholdsRecord>,
    },
    ClearThresholds {
        device_id: String,
        actor: String,
        reason: Option<String>,
        reply: Reply<bool>,
    },
    Delivery {
        delivery: NewWebhookDelivery,
        reply: Reply<()>,
    },
}

/// Runs one command in its own transaction and answers its caller.
pub(super) fn handle(conn: &mut Connection, command: AlertCommand) {
    fn run<T>(
        conn: &mut Connection,
        reply: Reply<T>,
        work: impl FnOnce(&Transaction<'_>) -> Result<T, StoreError>,
    ) {
        let res = (|| {
            let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            let value = work(&tx)?;
            tx.commit()?;
            Ok(value)
        })();
        if let Err(err) = &res {
            tracing::error!(event = "store.alert_write_failed", message = "Alerting write failed.", error = %err);
        }
        let _ = reply.send(res);
    }
    match command {
        AlertCommand::Transitions { transitions, reply } => {
            run(conn, reply, |tx| write_transitions(tx, &transitions))
        }
        AlertCommand::SetThresholds { record, reply } => {
            run(conn, reply, |tx| set_thresholds(tx, record))
        }
        AlertCommand::ClearThresholds {
            device_id,
            actor,
            reason,
            reply,
        } => run(conn, reply, |tx| {
            clear_thresholds(tx, &device_id, &actor, reason)
        }),
        AlertCommand::Delivery { delivery, reply } => {
            run(conn, reply, |tx| record_delivery(tx, &delivery))
        }
    }
}

fn class_str(class: AlertClass) -> &'static str {
    match class {
        AlertClass::Physiological => "physiological",
        AlertClass::Technical => "technical",
    }
}

fn priority_rank(priority: Priority) -> i64 {
    match priority {
        Priority::Low => 1,
        Priority::Medium => 2,
        Priority::High => 3,
    }
}

fn write_transitions(
    tx: &Transaction<'_>,
    transitions: &[AlertTransition],
) -> Result<(), StoreError> {
    let now = now_text();
    for transition in transitions {
        let alert = &transition.alert;
        let json = serde_json::to_string(alert)
            .map_err(|err| StoreError::InvalidData(format!("alert not serialisable: {err}")))?;
        let text = |ts: Option<vitalwatch_core::telemetry::Timestamp>| ts.map(|t| t.to_rfc3339());
        tx.prepare_cached(
            "INSERT INTO alerts (id, device_id, condition, class, priority, priority_rank, state, \
             opened_at, last_seen, acknowledged_by, acknowledged_at, acknowledged_note, \
             silenced_until, silenced_by, resolved_at, resolved_by, last_value, threshold, count, \
             escalation_level, updated_at, alert) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, \
             ?18, ?19, ?20, ?21, ?22) \
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
        )?
        .execute(params![
            alert.id.0 as i64,
            alert.device_id.as_str(),
            alert.condition.as_str(),
            class_str(alert.class),
            alert.priority.as_str(),
            priority_rank(alert.priority),
            alert_state_str(alert.state),
            alert.opened_at.to_rfc3339(),
            alert.last_seen.to_rfc3339(),
            alert.acknowledged_by,
            text(alert.acknowledged_at),
            alert.acknowledged_note,
            text(alert.silenced_until),
            alert.silenced_by,
            text(alert.resolved_at),
            alert.resolved_by,
            alert.last_value,
            alert.threshold,
            alert.count as i64,
            alert.escalation_level,
            now,
            json,
        ])?;
        let actor = match transition.kind {
            TransitionKind::Acknowledged => alert.acknowledged_by.clone(),
            TransitionKind::Silenced => alert.silenced_by.clone(),
            TransitionKind::Resolved => alert.resolved_by.clone(),
            _ => None,
        };
        tx.prepare_cached(
            "INSERT INTO alert_events (alert_id, kind, at, actor, priority, state, \
             escalation_level, value) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        )?
        .execute(params![
            alert.id.0 as i64,
            transition_kind_str(transition.kind),
            transition.at.to_rfc3339(),
            actor,
            alert.priority.as_str(),
            alert_state_str(alert.state),
            alert.escalation_level,
            alert.last_value,
        ])?;
    }
    Ok(())
}

fn alert_from_row(row: &Row<'_>) -> rusqlite::Result<AlertRecord> {
    let json: String = row.get(0)?;
    let alert: Alert = serde_json::from_str(&json).map_err(|err| {
        rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Text, Box::new(err))
    })?;
    Ok(AlertRecord {
        alert,
        updated_at: row.get(1)?,
    })
}

pub(super) fn open_alerts(conn: &Connection) -> Result<(u64, Vec<Alert>), StoreError> {
    let max_id: i64 = conn.query_row("SELECT COALESCE(MAX(id), 0) FROM alerts", [], |row| {
        row.get(0)
    })?;
    let mut stmt =
        conn.prepare_cached("SELECT alert, updated_at FROM alerts WHERE state <> 'resolved'")?;
    let alerts = stmt
        .query_map([], alert_from_row)?
        .map(|res| res.map(|record| record.alert))
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok((u64::try_from(max_id).unwrap_or(0), alerts))
}

pub(super) fn alerts(conn: &Connection, query: AlertQuery) -> Result<Vec<AlertRecord>, StoreError> {
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
    let mut stmt = conn.prepare(&sql)?;
    let rows = stmt.query_map(rusqlite::params_from_iter(filter.values), alert_from_row)?;
    Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
}

pub(super) fn alert(
    conn: &Connection,
    id: u64,
) -> Result<Option<(AlertRecord, Vec<AlertEventRecord>)>, StoreError> {
    let Some(record) = conn
        .prepare_cached("SELECT alert, updated_at FROM alerts WHERE id = ?1")?
        .query_row([id as i64], alert_from_row)
        .optional()?
    else {
        return Ok(None);
    };
    let mut stmt = conn.prepare_cached(
        "SELECT id, alert_id, kind, at, actor, priority, state, escalation_level, value \
         FROM alert_events WHERE alert_id = ?1 ORDER BY id",
    )?;
    let events = stmt
        .query_map([id as i64], |row| {
            Ok(AlertEventRecord {
                id: row.get(0)?,
                alert_id: row.get::<_, i64>(1)? as u64,
                kind: row.get(2)?,
                at: row.get(3)?,
                actor: row.get(4)?,
                priority: row.get(5)?,
                state: row.get(6)?,
                escalation_level: row.get(7)?,
                value: row.get(8)?,
            })
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(Some((record, events)))
}

fn set_thresholds(
    tx: &Transaction<'_>,
    mut record: ThresholdsRecord,
) -> Result<ThresholdsRecord, StoreError> {
    record.updated_at = now_text();
    let t = record.thresholds;
    tx.prepare_cached(
        "INSERT OR REPLACE INTO patient_thresholds (device_id, heart_rate_min, heart_rate_max, \
         body_temp_min, body_temp_max, spo2_scale, spo2_min, respiratory_rate_min, \
         respiratory_rate_max, systolic_bp_min, systolic_bp_max, author, reason, \
         effective_from, updated_at) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)",
    )?
    .execute(params![
        record.device_id,
        t.heart_rate_min,
        t.heart_rate_max,
        t.body_temp_min,
        t.body_temp_max,
        t.spo2_scale.map(Spo2Scale::as_str),
        t.spo2_min,
        t.respiratory_rate_min,
        t.respiratory_rate_max,
        t.systolic_bp_min,
        t.systolic_bp_max,
        record.author,
        record.reason,
        record.effective_from,
        record.updated_at,
    ])?;
    audit::append(
        tx,
        &AuditEntry {
            actor: record.author.clone(),
            action: "thresholds.set".to_owned(),
            target: record.device_id.clone(),
            details: serde_json::json!({
                "thresholds": t,
                "reason": record.reason,
                "effective_from": record.effective_from,
            }),
        },
    )?;
    Ok(record)
}

fn clear_thresholds(
    tx: &Transaction<'_>,
    device_id: &str,
    actor: &str,
    reason: Option<String>,
) -> Result<bool, StoreError> {
    let removed = tx.execute(
        "DELETE FROM patient_thresholds WHERE device_id = ?1",
        [device_id],
    )?;
    if removed > 0 {
        audit::append(
            tx,
            &AuditEntry {
                actor: actor.to_owned(),
                action: "thresholds.clear".to_owned(),
                target: device_id.to_owned(),
                details: serde_json::json!({ "reason": reason }),
            },
        )?;
    }
    Ok(removed > 0)
}

pub(super) fn thresholds(
    conn: &Connection,
    device_id: Option<String>,
) -> Result<Vec<ThresholdsRecord>, StoreError> {
    let mut stmt = conn.prepare_cached(
        "SELECT device_id, heart_rate_min, heart_rate_max, body_temp_min, body_temp_max, author, \
         reason, effective_from, updated_at, spo2_scale, spo2_min, respiratory_rate_min, \
         respiratory_rate_max, systolic_bp_min, systolic_bp_max FROM patient_thresholds \
         WHERE ?1 IS NULL OR device_id = ?1 ORDER BY device_id",
    )?;
    let rows = stmt.query_map([device_id], |row| {
        let scale: Option<String> = row.get(9)?;
        Ok(ThresholdsRecord {
            device_id: row.get(0)?,
            thresholds: PatientThresholds {
                heart_rate_min: row.get(1)?,
                heart_rate_max: row.get(2)?,
                body_temp_min: row.get(3)?,
                body_temp_max: row.get(4)?,
                // The column's CHECK admits only the two names.
                spo2_scale: scale.as_deref().and_then(Spo2Scale::parse),
                spo2_min: row.get(10)?,
                respiratory_rate_min: row.get(11)?,
                respiratory_rate_max: row.get(12)?,
                systolic_bp_min: row.get(13)?,
                systolic_bp_max: row.get(14)?,
            },
            author: row.get(5)?,
            reason: row.get(6)?,
            effective_from: row.get(7)?,
            updated_at: row.get(8)?,
        })
    })?;
    Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
}

fn record_delivery(tx: &Transaction<'_>, delivery: &NewWebhookDelivery) -> Result<(), StoreError> {
    tx.prepare_cached(
        "INSERT INTO webhook_deliveries (url, alert_id, transition, state, attempts, last_status, \
         last_error, created_at, finished_at, body) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
    )?
    .execute(params![
        delivery.url,
        delivery.alert_id.map(|id| id as i64),
        delivery.transition,
        delivery.state,
        delivery.attempts,
        delivery.last_status,
        delivery.last_error,
        delivery.created_at.to_rfc3339(),
        now_text(),
        delivery.body,
    ])?;
    Ok(())
}

pub(super) fn webhook_deliveries(
    conn: &Connection,
    state: Option<String>,
    limit: usize,
) -> Result<Vec<WebhookDeliveryRecord>, StoreError> {
    let sql = format!(
        "SELECT id, url, alert_id, transition, state, attempts, last_status, last_error, \
         created_at, finished_at FROM webhook_deliveries WHERE ?1 IS NULL OR state = ?1 \
         ORDER BY id DESC LIMIT {limit}"
    );
    let mut stmt = conn.prepare(&sql)?;
    let rows = stmt.query_map([state], |row| {
        Ok(WebhookDeliveryRecord {
            id: row.get(0)?,
            url: row.get(1)?,
            alert_id: row.get::<_, Option<i64>>(2)?.map(|id| id as u64),
            transition: row.get(3)?,
            state: row.get(4)?,
            attempts: row.get(5)?,
            last_status: row.get(6)?,
            last_error: row.get(7)?,
            created_at: row.get(8)?,
            finished_at: row.get(9)?,
        })
    })?;
    Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
}
