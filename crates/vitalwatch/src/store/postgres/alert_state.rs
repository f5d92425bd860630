//! SQL for the alert state shared by every node ([`SharedAlertState`]): one row per device in
//! `alert_device_state`, locked in device-id order for the length of an evaluation; alert ids
//! from the `alert_ids` sequence, allocated in the transaction that raises them.

use super::{alerts, pg, pool_error, thresholds, to_utc};
use crate::store::StoreError;
use crate::store::alert_state::{Evaluate, LockedDevice, Outcome, SharedAlertState, pack, unpack};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use deadpool_postgres::{GenericClient, Pool};
use vitalwatch_core::alerting::{
    Alert, AlertError, AlertTransition, DeviceState, provisional_to, renumber_transitions,
};
use vitalwatch_core::news2::LatestVitals;
use vitalwatch_core::telemetry::Timestamp;

/// The shared alert state on one pool.
pub(super) struct PgAlertState {
    pub(super) pool: Pool,
}

fn invalid(what: &str, err: serde_json::Error) -> StoreError {
    StoreError::InvalidData(format!("stored {what}: {err}"))
}

/// A row written before migration V5: its state and NEWS2 window as JSONB text (`None`
/// state: a row just created).
fn legacy(
    state: Option<String>,
    vitals: Option<String>,
) -> Result<(Option<DeviceState>, LatestVitals), StoreError> {
    let state = match state {
        Some(text) => Some(
            serde_json::from_str::<DeviceState>(&text)
                .map_err(|err| invalid("alert state", err))?,
        ),
        None => None,
    };
    let vitals = match vitals {
        Some(text) => serde_json::from_str::<LatestVitals>(&text)
            .map_err(|err| invalid("NEWS2 window", err))?,
        None => LatestVitals::default(),
    };
    Ok((state, vitals))
}

/// Moves the id sequence past every stored alert (after `store copy` brought older ones).
pub(super) async fn sync_ids(client: &impl GenericClient) -> Result<(), StoreError> {
    client
        .execute(
            "SELECT setval('alert_ids', m) FROM (SELECT MAX(id) AS m FROM alerts) AS x \
             WHERE m IS NOT NULL AND m >= (SELECT CASE WHEN is_called THEN last_value + 1 \
             ELSE last_value END FROM alert_ids)",
            &[],
        )
        .await
        .map_err(pg)?;
    Ok(())
}

#[async_trait]
impl SharedAlertState for PgAlertState {
    async fn evaluate(
        &self,
        mut devices: Vec<String>,
        run: Evaluate,
    ) -> Result<Result<Vec<AlertTransition>, AlertError>, StoreError> {
        devices.sort();
        devices.dedup();
        let mut client = self.pool.get().await.map_err(pool_error)?;
        let tx = client.transaction().await.map_err(pg)?;
        // Created in device-id order, then locked in device-id order: two evaluations never
        // wait for each other in a cycle.
        tx.execute(
            "INSERT INTO alert_device_state (device_id) SELECT unnest($1::text[]) \
             ON CONFLICT DO NOTHING",
            &[&devices],
        )
        .await
        .map_err(pg)?;
        let rows = tx
            .query(
                "SELECT s.device_id, s.state::text, s.vitals::text, s.evaluated_at, \
                 d.expected_interval_s, d.active, s.evaluated_readings, s.packed \
                 FROM alert_device_state s LEFT JOIN devices d USING (device_id) \
                 WHERE s.device_id = ANY($1) ORDER BY s.device_id FOR UPDATE OF s",
                &[&devices],
            )
            .await
            .map_err(pg)?;
        let mut thresholds = thresholds::of_devices(&tx, &devices).await?;
        let mut locked = Vec::with_capacity(rows.len());
        let mut fresh = Vec::new();
        for row in &rows {
            let device_id: String = row.get(0);
            // Packed (migration V5); a row from before keeps its JSONB until it is rewritten.
            let (state, vitals) = match row.get::<_, Option<Vec<u8>>>(7) {
                Some(bytes) => {
                    let (state, vitals) = unpack(&bytes)?;
                    (Some(state), vitals)
                }
                None => legacy(row.get(1), row.get(2))?,
            };
            if state.is_none() {
                fresh.push(device_id.clone());
            }
            let evaluated_at = row
                .get::<_, Option<DateTime<Utc>>>(3)
                .map(Timestamp::from_datetime);
            let active = row.get::<_, Option<bool>>(5).unwrap_or(false);
            let expected_interval_s = row.get::<_, Option<f64>>(4).filter(|_| active);
            let at = thresholds.iter().position(|t| t.device_id == device_id);
            locked.push(LockedDevice {
                thresholds: at.map(|at| thresholds.swap_remove(at)),
                device_id,
                state,
                vitals,
                evaluated_at,
                expected_interval_s,
                open_alerts: Vec::new(),
                evaluated: row.get::<_, Option<Vec<i64>>>(6).unwrap_or_default(),
            });
        }
        if !fresh.is_empty() {
            for row in tx
                .query(
                    "SELECT alert FROM alerts WHERE device_id = ANY($1) AND state <> 'resolved' \
                     ORDER BY id",
                    &[&fresh],
                )
                .await
                .map_err(pg)?
            {
                let alert: Alert = serde_json::from_str(&row.get::<_, String>(0))
                    .map_err(|err| invalid("alert", err))?;
                if let Some(device) = locked
                    .iter_mut()
                    .find(|d| d.device_id == alert.device_id.as_str())
                {
                    device.open_alerts.push(alert);
                }
            }
        }
        let mut outcome: Outcome = match run(locked) {
            Ok(outcome) => outcome,
            Err(err) => return Ok(Err(err)),
        };
        if outcome.raised > 0 {
            let count = i64::try_from(outcome.raised).unwrap_or(i64::MAX);
            let mut ids: Vec<u64> = tx
                .query(
                    "SELECT nextval('alert_ids') FROM generate_series(1, $1::bigint)",
                    &[&count],
                )
                .await
                .map_err(pg)?
                .iter()
                .map(|row| u64::try_from(row.get::<_, i64>(0)).unwrap_or(0))
                .collect();
            ids.sort_unstable();
            renumber_transitions(&mut outcome.transitions, provisional_to(&ids));
            for row in &mut outcome.rows {
                row.state.renumber(provisional_to(&ids));
            }
        }
        alerts::write_transitions(&tx, &outcome.transitions).await?;
        // Every device's new row in one statement: one round trip, not one per device. Each
        // device's evaluated-reading times travel as an array literal (`unnest` would flatten
        // a two-dimensional array).
        let mut device_ids = Vec::with_capacity(outcome.rows.len());
        let mut packed = Vec::with_capacity(outcome.rows.len());
        let mut evaluated_at = Vec::with_capacity(outcome.rows.len());
        let mut next_deadline = Vec::with_capacity(outcome.rows.len());
        let mut evaluated = Vec::with_capacity(outcome.rows.len());
        for row in &outcome.rows {
            device_ids.push(row.device_id.as_str());
            packed.push(pack(&row.state, &row.vitals)?);
            evaluated_at.push(to_utc(row.evaluated_at));
            next_deadline.push(row.next_deadline.and_then(storable_deadline));
            evaluated.push(array_literal(&row.evaluated));
        }
        if !device_ids.is_empty() {
            let update = tx
                .prepare_cached(
                    "UPDATE alert_device_state s SET packed = u.packed, state = NULL, \
                     vitals = NULL, evaluated_at = u.evaluated_at, \
                     next_deadline = u.next_deadline, evaluated_readings = u.evaluated::bigint[] \
                     FROM unnest($1::text[], $2::bytea[], $3::timestamptz[], \
                     $4::timestamptz[], $5::text[]) \
                     AS u(device_id, packed, evaluated_at, next_deadline, evaluated) \
                     WHERE s.device_id = u.device_id",
                )
                .await
                .map_err(pg)?;
            tx.execute(
                &update,
                &[
                    &device_ids,
                    &packed,
                    &evaluated_at,
                    &next_deadline,
                    &evaluated,
                ],
            )
            .await
            .map_err(pg)?;
        }
        tx.commit().await.map_err(pg)?;
        Ok(Ok(outcome.transitions))
    }

    async fn due_devices(&self, now: Timestamp, limit: usize) -> Result<Vec<String>, StoreError> {
        let client = self.pool.get().await.map_err(pool_error)?;
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = client
            .query(
                "SELECT device_id FROM alert_device_state WHERE next_deadline <= $1 \
                 ORDER BY device_id LIMIT $2",
                &[&to_utc(now), &limit],
            )
            .await
            .map_err(pg)?;
        Ok(rows.iter().map(|row| row.get(0)).collect())
    }

    async fn next_deadline(&self) -> Result<Option<Timestamp>, StoreError> {
        let client = self.pool.get().await.map_err(pool_error)?;
        let row = client
            .query_one("SELECT MIN(next_deadline) FROM alert_device_state", &[])
            .await
            .map_err(pg)?;
        Ok(row
            .get::<_, Option<DateTime<Utc>>>(0)
            .map(Timestamp::from_datetime))
    }

    async fn vitals(&self, device_id: String) -> Result<Option<LatestVitals>, StoreError> {
        let client = self.pool.get().await.map_err(pool_error)?;
        let row = client
            .query_opt(
                "SELECT packed, vitals::text FROM alert_device_state WHERE device_id = $1",
                &[&device_id],
            )
            .await
            .map_err(pg)?;
        let Some(row) = row else {
            return Ok(None);
        };
        match (
            row.get::<_, Option<Vec<u8>>>(0),
            row.get::<_, Option<String>>(1),
        ) {
            (Some(bytes), _) => Ok(Some(unpack(&bytes)?.1)),
            (None, Some(text)) => Ok(Some(
                serde_json::from_str(&text).map_err(|err| invalid("NEWS2 window", err))?,
            )),
            (None, None) => Ok(None),
        }
    }

    async fn devices_without_state(&self, limit: usize) -> Result<Vec<String>, StoreError> {
        let client = self.pool.get().await.map_err(pool_error)?;
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = client
            .query(
                "SELECT d.device_id FROM devices d \
                 WHERE d.active AND d.last_seen IS NOT NULL AND NOT EXISTS \
                 (SELECT 1 FROM alert_device_state s WHERE s.device_id = d.device_id) \
                 ORDER BY d.device_id LIMIT $1",
                &[&limit],
            )
            .await
            .map_err(pg)?;
        Ok(rows.iter().map(|row| row.get(0)).collect())
    }
}

/// `{1,2,3}`: a PostgreSQL array literal of the times.
fn array_literal(times: &[i64]) -> String {
    let mut text = String::with_capacity(2 + times.len() * 17);
    text.push('{');
    for (i, time) in times.iter().enumerate() {
        if i > 0 {
            text.push(',');
        }
        text.push_str(&time.to_string());
    }
    text.push('}');
    text
}

/// 10000-01-01T00:00:00Z: a deadline at or after it is "never" (the engine gives a device
/// without an expected interval one that saturates near `i64::MAX` µs, past the last date a
/// `timestamptz` holds), stored as NULL, which no timer pass finds due.
const NEVER_MICROS: i64 = 253_402_300_800_000_000;

fn storable_deadline(deadline: Timestamp) -> Option<DateTime<Utc>> {
    (deadline.micros() < NEVER_MICROS).then(|| to_utc(deadline))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_deadline_past_the_last_storable_date_is_never() {
        let soon = Timestamp::from_secs(1_800_000_000);
        assert_eq!(storable_deadline(soon), Some(to_utc(soon)));
        assert_eq!(storable_deadline(Timestamp::from_micros(i64::MAX)), None);
        assert_eq!(
            storable_deadline(Timestamp::from_micros(NEVER_MICROS)),
            None
        );
        assert!(storable_deadline(Timestamp::from_micros(NEVER_MICROS - 1)).is_some());
    }
}
