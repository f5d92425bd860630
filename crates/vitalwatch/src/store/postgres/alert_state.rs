//! SQL for the alert state shared by every node ([`SharedAlertState`]): one row per device in
//! `alert_device_state`, locked in device-id order for the length of an evaluation; alert ids
//! from the `alert_ids` sequence, allocated in the transaction that raises them.

use super::writer::Shared;
use super::{alerts, pg, pool_error, thresholds, to_utc};
use crate::store::StoreError;
use crate::store::alert_state::{
    DeviceRow, Evaluate, LockedDevice, Outcome, SharedAlertState, pack, unpack,
};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use deadpool_postgres::{GenericClient, Pool};
use parking_lot::Mutex;
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use vitalwatch_core::alerting::{
    Alert, AlertError, AlertTransition, DeviceState, provisional_to, renumber_transitions,
};
use vitalwatch_core::news2::LatestVitals;
use vitalwatch_core::telemetry::Timestamp;

/// The shared alert state on one pool.
pub(super) struct PgAlertState {
    pub(super) pool: Pool,
    /// The store's state its writers see (`outbox`: whether transitions write rows).
    shared: Arc<Shared>,
    decoded: DecodedRows,
}

impl PgAlertState {
    pub(super) fn new(pool: Pool, shared: Arc<Shared>) -> PgAlertState {
        PgAlertState {
            pool,
            shared,
            decoded: DecodedRows::default(),
        }
    }
}

/// How many devices' decoded rows a node keeps at most (a well device's is a few KB).
const DECODED_MAX: usize = 20_000;

/// The rows this node committed last, decoded: the next evaluation that finds a row unchanged
/// since (the same `xmin`, the transaction that wrote it, and the same `evaluated_at`) takes
/// the state from here instead of fetching and unpacking it. Any other writer (another node,
/// an operator) gives the row a new `xmin`, and then it is read again.
#[derive(Default)]
struct DecodedRows {
    rows: Mutex<HashMap<String, Decoded>>,
}

struct Decoded {
    xmin: String,
    evaluated_at: Timestamp,
    state: DeviceState,
    vitals: LatestVitals,
}

impl DecodedRows {
    /// The `xmin` of each device's decoded row, `""` when there is none.
    fn seen(&self, devices: &[String]) -> Vec<String> {
        let rows = self.rows.lock();
        devices
            .iter()
            .map(|id| rows.get(id).map(|d| d.xmin.clone()).unwrap_or_default())
            .collect()
    }

    /// The decoded row of `device_id` if the locked row is still the one this node wrote; it
    /// leaves the cache (the evaluation changes it; [`DecodedRows::keep`] puts it back).
    fn take(
        &self,
        device_id: &str,
        xmin: &str,
        evaluated_at: Option<Timestamp>,
    ) -> Option<(DeviceState, LatestVitals)> {
        let mut rows = self.rows.lock();
        let current = rows
            .get(device_id)
            .is_some_and(|d| d.xmin == xmin && Some(d.evaluated_at) == evaluated_at);
        if !current {
            return None;
        }
        rows.remove(device_id).map(|d| (d.state, d.vitals))
    }

    /// Keeps the rows a committed evaluation wrote (its transaction id `xmin`).
    fn keep(&self, xmin: &str, written: Vec<DeviceRow>) {
        let mut rows = self.rows.lock();
        for row in written {
            if rows.len() >= DECODED_MAX && !rows.contains_key(&row.device_id) {
                let Some(any) = rows.keys().next().cloned() else {
                    break;
                };
                rows.remove(&any);
            }
            rows.insert(
                row.device_id,
                Decoded {
                    xmin: xmin.to_owned(),
                    evaluated_at: row.evaluated_at,
                    state: row.state,
                    vitals: row.vitals,
                },
            );
        }
    }
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

/// A device's stored state and NEWS2 window, read in full (its row is locked).
async fn stored(
    tx: &impl GenericClient,
    device_id: &str,
) -> Result<(Option<DeviceState>, LatestVitals), StoreError> {
    let row = tx
        .query_one(
            "SELECT packed, state::text, vitals::text FROM alert_device_state \
             WHERE device_id = $1",
            &[&device_id],
        )
        .await
        .map_err(pg)?;
    match row.get::<_, Option<Vec<u8>>>(0) {
        Some(bytes) => {
            let (state, vitals) = unpack(&bytes)?;
            Ok((Some(state), vitals))
        }
        None => legacy(row.get(1), row.get(2)),
    }
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
        let (create, lock) = tokio::try_join!(
            tx.prepare_cached(
                "INSERT INTO alert_device_state (device_id) SELECT unnest($1::text[]) \
                 ON CONFLICT DO NOTHING",
            ),
            tx.prepare_cached(
                "SELECT s.device_id, s.state::text, s.vitals::text, s.evaluated_at, \
                 d.expected_interval_s, d.active, s.evaluated_readings, \
                 CASE WHEN s.xmin::text = c.seen THEN NULL ELSE s.packed END, \
                 s.xmin::text, s.xmin::text = c.seen \
                 FROM alert_device_state s \
                 JOIN unnest($1::text[], $2::text[]) AS c(device_id, seen) USING (device_id) \
                 LEFT JOIN devices d USING (device_id) \
                 ORDER BY s.device_id FOR UPDATE OF s",
            ),
        )
        .map_err(pg)?;
        // A row unchanged since this node wrote it is not fetched again (`Decoded`).
        let seen = self.decoded.seen(&devices);
        // One round trip: the rows created in device-id order, then locked in device-id order
        // (two evaluations never wait for each other in a cycle), then the thresholds read
        // under the lock: the statements run in the order they are sent.
        let ((), rows, mut thresholds) = tokio::try_join!(
            async {
                tx.execute(&create, &[&devices]).await.map_err(pg)?;
                Ok(())
            },
            async { tx.query(&lock, &[&devices, &seen]).await.map_err(pg) },
            thresholds::of_devices(&tx, &devices),
        )?;
        let mut locked = Vec::with_capacity(rows.len());
        let mut fresh = Vec::new();
        for row in &rows {
            let device_id: String = row.get(0);
            let evaluated_at = row
                .get::<_, Option<DateTime<Utc>>>(3)
                .map(Timestamp::from_datetime);
            let unchanged = row.get::<_, Option<bool>>(9) == Some(true);
            let kept = unchanged
                .then(|| self.decoded.take(&device_id, row.get(8), evaluated_at))
                .flatten();
            // Packed (migration V5); a row from before keeps its JSONB until it is rewritten.
            let (state, vitals) = match (kept, row.get::<_, Option<Vec<u8>>>(7)) {
                (Some((state, vitals)), _) => (Some(state), vitals),
                (None, Some(bytes)) => {
                    let (state, vitals) = unpack(&bytes)?;
                    (Some(state), vitals)
                }
                // Its decoded row went meanwhile (or is not this one): read it now.
                (None, None) if unchanged => stored(&tx, &device_id).await?,
                (None, None) => legacy(row.get(1), row.get(2))?,
            };
            if state.is_none() {
                fresh.push(device_id.clone());
            }
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
        let outbox = self.shared.outbox.load(Ordering::Relaxed);
        alerts::write_transitions(&tx, &outcome.transitions, outbox).await?;
        // Every device's new row in one statement: one round trip, not one per device. Each
        // device's evaluated-reading times travel as an array literal (`unnest` would flatten
        // a two-dimensional array).
        let mut xmin = None;
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
                     WHERE s.device_id = u.device_id RETURNING s.xmin::text",
                )
                .await
                .map_err(pg)?;
            let written = tx
                .query(
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
            // Every row this transaction wrote has its id as `xmin`.
            xmin = written.first().map(|row| row.get::<_, String>(0));
        }
        drop(device_ids);
        tx.commit().await.map_err(pg)?;
        if let Some(xmin) = xmin {
            self.decoded.keep(&xmin, std::mem::take(&mut outcome.rows));
        }
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

    fn row(device_id: &str, at: i64) -> DeviceRow {
        DeviceRow {
            device_id: device_id.to_owned(),
            state: DeviceState::default(),
            vitals: LatestVitals::default(),
            evaluated_at: Timestamp::from_micros(at),
            next_deadline: None,
            evaluated: vec![at],
        }
    }

    #[test]
    fn a_decoded_row_is_used_only_while_the_stored_row_is_the_one_written() {
        let decoded = DecodedRows::default();
        decoded.keep("700", vec![row("a", 10), row("b", 10)]);
        let devices = ["a".to_owned(), "b".to_owned(), "c".to_owned()];
        assert_eq!(decoded.seen(&devices), ["700", "700", ""]);
        let at = Some(Timestamp::from_micros(10));
        // Rewritten by another transaction, or the same id with another evaluation time.
        assert!(decoded.take("a", "701", at).is_none());
        assert!(
            decoded
                .take("a", "700", Some(Timestamp::from_micros(11)))
                .is_none()
        );
        assert!(decoded.take("c", "", None).is_none());
        assert!(decoded.take("a", "700", at).is_some());
        assert!(
            decoded.take("a", "700", at).is_none(),
            "taken out while evaluated"
        );
        assert_eq!(decoded.seen(&devices), ["", "700", ""]);
    }

    #[test]
    fn the_decoded_rows_are_bounded() {
        let decoded = DecodedRows::default();
        let rows = (0..DECODED_MAX + 10)
            .map(|n| row(&format!("d{n}"), 1))
            .collect();
        decoded.keep("9", rows);
        assert_eq!(decoded.rows.lock().len(), DECODED_MAX);
    }

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
