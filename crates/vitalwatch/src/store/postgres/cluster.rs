//! The cluster's shared state on PostgreSQL (`store::cluster`): `NOTIFY` on pooled
//! connections, `LISTEN` on a connection of its own that reconnects by itself, and the tables
//! of migration V4 (sessions, login failures, credential revocations).
//!
//! These are small single-row writes on pooled connections, not on the writer's queue: a
//! login or a revocation must be visible to the other nodes when it is answered, and must not
//! wait behind a batch of readings. Times are the database's (`now()`), the same clock for
//! every node. Must not: interpret a payload.

use super::connect::{Target, Tls};
use super::{Tx, audit, pg, pool_error};
use crate::store::cluster::{
    Cluster, FailureCount, Heard, MAX_PAYLOAD, REVOCATIONS_CHANNEL, RevocationRecord, SessionRecord,
};
use crate::store::{AuditEntry, StoreError};
use async_trait::async_trait;
use deadpool_postgres::Pool;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_postgres::AsyncMessage;

/// Notifications heard and not yet taken by the listener's owner.
const HEARD_BUFFER: usize = 1024;
/// The listening connection proves it is alive this often (a dead peer without a FIN would
/// otherwise go unnoticed until TCP gives up).
const LISTEN_PING: Duration = Duration::from_secs(5);
/// Reconnect backoff: from this, doubling, ...
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
/// ... up to this.
const MAX_BACKOFF: Duration = Duration::from_secs(2);

pub(super) struct PgCluster {
    pub(super) pool: Pool,
    pub(super) target: Arc<Target>,
}

impl PgCluster {
    /// Deletes the sessions `sql` selects by its one text parameter.
    async fn delete_sessions(&self, sql: &str, key: &String) -> Result<(), StoreError> {
        let client = self.pool.get().await.map_err(pool_error)?;
        let stmt = client.prepare_cached(sql).await.map_err(pg)?;
        client.execute(&stmt, &[key]).await.map_err(pg)?;
        Ok(())
    }
}

fn seconds(duration: Duration) -> f64 {
    duration.as_secs_f64()
}

#[async_trait]
impl Cluster for PgCluster {
    async fn notify(&self, channel: &str, payloads: Vec<String>) -> Result<(), StoreError> {
        if payloads.is_empty() {
            return Ok(());
        }
        if payloads.iter().any(|p| p.len() > MAX_PAYLOAD) {
            return Err(StoreError::InvalidData(format!(
                "a notification payload is over {MAX_PAYLOAD} bytes"
            )));
        }
        let client = self.pool.get().await.map_err(pool_error)?;
        let stmt = client
            .prepare_cached("SELECT count(pg_notify($1, p)) FROM unnest($2::text[]) AS p")
            .await
            .map_err(pg)?;
        client
            .query_one(&stmt, &[&channel, &payloads])
            .await
            .map_err(pg)?;
        Ok(())
    }

    fn listen(&self, channels: &[&str]) -> mpsc::Receiver<Heard> {
        let (tx, rx) = mpsc::channel(HEARD_BUFFER);
        let channels: Vec<String> = channels.iter().map(|c| (*c).to_owned()).collect();
        tokio::spawn(listen_loop(Arc::clone(&self.target), channels, tx));
        rx
    }

    async fn create_session(
        &self,
        id_hash: String,
        record: SessionRecord,
    ) -> Result<(), StoreError> {
        let client = self.pool.get().await.map_err(pool_error)?;
        let stmt = client
            .prepare_cached(
                "INSERT INTO sessions (id_hash, username, role, csrf) VALUES ($1, $2, $3, $4)",
            )
            .await
            .map_err(pg)?;
        client
            .execute(
                &stmt,
                &[&id_hash, &record.username, &record.role, &record.csrf],
            )
            .await
            .map_err(pg)?;
        Ok(())
    }

    async fn session(
        &self,
        id_hash: String,
        idle: Duration,
        max_age: Duration,
        touch: bool,
    ) -> Result<Option<SessionRecord>, StoreError> {
        let client = self.pool.get().await.map_err(pool_error)?;
        let stmt = client
            .prepare_cached(
                "SELECT username, role, csrf,
                        now() - last_seen > make_interval(secs => $2)
                            OR now() - created_at > make_interval(secs => $3),
                        now() - last_seen > make_interval(secs => $4)
                 FROM sessions WHERE id_hash = $1",
            )
            .await
            .map_err(pg)?;
        // Activity is written at most this often: a request is not a write.
        let touch_every = seconds(idle / 4).min(5.0);
        let Some(row) = client
            .query_opt(
                &stmt,
                &[&id_hash, &seconds(idle), &seconds(max_age), &touch_every],
            )
            .await
            .map_err(pg)?
        else {
            return Ok(None);
        };
        let ended: bool = row.get(3);
        if ended {
            let stmt = client
                .prepare_cached("DELETE FROM sessions WHERE id_hash = $1")
                .await
                .map_err(pg)?;
            client.execute(&stmt, &[&id_hash]).await.map_err(pg)?;
            return Ok(None);
        }
        let stale: bool = row.get(4);
        if touch && stale {
            let stmt = client
                .prepare_cached("UPDATE sessions SET last_seen = now() WHERE id_hash = $1")
                .await
                .map_err(pg)?;
            client.execute(&stmt, &[&id_hash]).await.map_err(pg)?;
        }
        Ok(Some(SessionRecord {
            username: row.get(0),
            role: row.get(1),
            csrf: row.get(2),
        }))
    }

    async fn remove_session(&self, id_hash: String) -> Result<(), StoreError> {
        self.delete_sessions("DELETE FROM sessions WHERE id_hash = $1", &id_hash)
            .await
    }

    async fn remove_user_sessions(&self, username: String) -> Result<(), StoreError> {
        self.delete_sessions("DELETE FROM sessions WHERE username = $1", &username)
            .await
    }

    async fn count_login_failure(
        &self,
        keys: Vec<String>,
        window: Duration,
        admit: Box<dyn for<'a> FnOnce(&'a [FailureCount]) -> bool + Send>,
    ) -> Result<(Vec<FailureCount>, bool), StoreError> {
        let mut client = self.pool.get().await.map_err(pool_error)?;
        // Rows are locked in key order, so two attempts never wait on each other in a cycle.
        let mut sorted = keys.clone();
        sorted.sort();
        sorted.dedup();
        let tx = client.transaction().await.map_err(pg)?;
        let insert = tx
            .prepare_cached(
                "INSERT INTO login_failures (key, failures, window_start)
                 SELECT k, 0, now() FROM unnest($1::text[]) AS k ORDER BY k
                 ON CONFLICT (key) DO NOTHING",
            )
            .await
            .map_err(pg)?;
        tx.execute(&insert, &[&sorted]).await.map_err(pg)?;
        let select = tx
            .prepare_cached(
                "SELECT key, failures, extract(epoch FROM now() - window_start)::float8
                 FROM login_failures WHERE key = ANY($1) ORDER BY key FOR UPDATE",
            )
            .await
            .map_err(pg)?;
        let rows = tx.query(&select, &[&sorted]).await.map_err(pg)?;
        let window_s = seconds(window);
        let counts: Vec<FailureCount> = keys
            .iter()
            .map(|key| {
                rows.iter().find(|row| row.get::<_, &str>(0) == key).map_or(
                    FailureCount::none(),
                    |row| {
                        let failures: i32 = row.get(1);
                        let elapsed: f64 = row.get(2);
                        if elapsed >= window_s || failures <= 0 {
                            FailureCount::none()
                        } else {
                            FailureCount {
                                failures: failures as u32,
                                remaining: Duration::from_secs_f64(
                                    (window_s - elapsed.max(0.0)).max(0.0),
                                ),
                            }
                        }
                    },
                )
            })
            .collect();
        let admitted = admit(&counts);
        if admitted {
            let update = tx
                .prepare_cached(
                    "UPDATE login_failures SET
                        failures = CASE WHEN now() - window_start >= make_interval(secs => $2)
                                        THEN 1 ELSE failures + 1 END,
                        window_start = CASE WHEN now() - window_start >= make_interval(secs => $2)
                                            THEN now() ELSE window_start END
                     WHERE key = ANY($1)",
                )
                .await
                .map_err(pg)?;
            tx.execute(&update, &[&sorted, &window_s])
                .await
                .map_err(pg)?;
        }
        // Now and then, forget windows long past, so the table cannot grow without bound.
        if rand::random::<u8>() < 4 {
            let purge = tx
                .prepare_cached(
                    "DELETE FROM login_failures
                     WHERE now() - window_start > make_interval(secs => $1)",
                )
                .await
                .map_err(pg)?;
            tx.execute(&purge, &[&window_s]).await.map_err(pg)?;
        }
        tx.commit().await.map_err(pg)?;
        Ok((counts, admitted))
    }

    async fn clear_login_failures(
        &self,
        forget: Vec<String>,
        give_back: Vec<String>,
    ) -> Result<(), StoreError> {
        let client = self.pool.get().await.map_err(pool_error)?;
        let stmt = client
            .prepare_cached(
                "WITH gone AS (DELETE FROM login_failures WHERE key = ANY($1))
                 UPDATE login_failures SET failures = greatest(failures - 1, 0)
                 WHERE key = ANY($2)",
            )
            .await
            .map_err(pg)?;
        client
            .execute(&stmt, &[&forget, &give_back])
            .await
            .map_err(pg)?;
        Ok(())
    }

    async fn revoke_credentials(
        &self,
        device_id: String,
        serials: Vec<String>,
        secret_hashes: Vec<String>,
        entry: AuditEntry,
    ) -> Result<(), StoreError> {
        let mut client = self.pool.get().await.map_err(pool_error)?;
        let tx = client.transaction().await.map_err(pg)?;
        // The chain's lock first, as every audited transaction takes it.
        audit::lock(&tx).await?;
        insert_revocations(&tx, &device_id, &serials, &secret_hashes, &entry.actor).await?;
        audit::append(&tx, &entry).await?;
        let stmt = tx
            .prepare_cached("SELECT pg_notify($1, '')")
            .await
            .map_err(pg)?;
        tx.execute(&stmt, &[&REVOCATIONS_CHANNEL])
            .await
            .map_err(pg)?;
        tx.commit().await.map_err(pg)?;
        Ok(())
    }

    async fn revocations_after(&self, after_id: i64) -> Result<Vec<RevocationRecord>, StoreError> {
        let client = self.pool.get().await.map_err(pool_error)?;
        let stmt = client
            .prepare_cached(
                "SELECT id, device_id, serial, secret_hash FROM credential_revocations
                 WHERE id > $1 ORDER BY id",
            )
            .await
            .map_err(pg)?;
        Ok(client
            .query(&stmt, &[&after_id])
            .await
            .map_err(pg)?
            .iter()
            .map(|row| RevocationRecord {
                id: row.get(0),
                device_id: row.get(1),
                serial: row.get(2),
                secret_hash: row.get(3),
            })
            .collect())
    }
}

impl FailureCount {
    fn none() -> FailureCount {
        FailureCount {
            failures: 0,
            remaining: Duration::ZERO,
        }
    }
}

async fn insert_revocations(
    tx: &Tx<'_>,
    device_id: &str,
    serials: &[String],
    secret_hashes: &[String],
    actor: &str,
) -> Result<(), StoreError> {
    let stmt = tx
        .prepare_cached(
            "INSERT INTO credential_revocations (device_id, serial, secret_hash, revoked_by)
             SELECT $1, s, NULL, $3 FROM unnest($2::text[]) AS s
             UNION ALL
             SELECT $1, NULL, h, $3 FROM unnest($4::text[]) AS h",
        )
        .await
        .map_err(pg)?;
    tx.execute(&stmt, &[&device_id, &serials, &actor, &secret_hashes])
        .await
        .map_err(pg)?;
    Ok(())
}

/// Listens until `heard`'s receiver is dropped, reconnecting with backoff whenever the
/// connection ends (a database restart, a failover to a standby, a network cut).
async fn listen_loop(target: Arc<Target>, channels: Vec<String>, heard: mpsc::Sender<Heard>) {
    let mut backoff = FIRST_BACKOFF;
    let mut reconnect = false;
    // Said once per outage, not at every retry.
    let mut failing = false;
    loop {
        if heard.is_closed() {
            return;
        }
        match listen_once(&target, &channels, &heard, reconnect).await {
            Ok(()) => {
                backoff = FIRST_BACKOFF;
                reconnect = true;
                failing = false;
                tracing::warn!(event = "cluster.listen_lost", message = "The connection listening for other nodes' events ended; reconnecting.", database = %target.display);
            }
            Err(err) => {
                if !failing {
                    failing = true;
                    tracing::warn!(event = "cluster.listen_failed", message = "Could not listen for other nodes' events; retrying.", database = %target.display, error = %err);
                }
            }
        }
        if heard.is_closed() {
            return;
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

/// One listening connection, until it ends; `Ok` when it had been established.
async fn listen_once(
    target: &Target,
    channels: &[String],
    heard: &mpsc::Sender<Heard>,
    reconnect: bool,
) -> Result<(), StoreError> {
    let (messages, mut ended) = mpsc::channel::<Heard>(HEARD_BUFFER);
    let client = match &target.tls {
        Tls::Disable => {
            let (client, connection) = target
                .config
                .connect(tokio_postgres::NoTls)
                .await
                .map_err(pg)?;
            tokio::spawn(drive(connection, messages));
            client
        }
        Tls::VerifyFull { ca_file } => {
            let tls =
                tokio_postgres_rustls::MakeRustlsConnect::new(super::connect::client_tls(ca_file)?);
            let (client, connection) = target.config.connect(tls).await.map_err(pg)?;
            tokio::spawn(drive(connection, messages));
            client
        }
    };
    let sql: String = channels
        .iter()
        .map(|channel| format!("LISTEN \"{}\";", channel.replace('"', "")))
        .collect();
    client.batch_execute(&sql).await.map_err(pg)?;
    if heard.send(Heard::Connected { reconnect }).await.is_err() {
        return Ok(());
    }
    tracing::info!(event = "cluster.listening", message = "Listening for other nodes' events.", database = %target.display, reconnect);
    let mut ping = tokio::time::interval(LISTEN_PING);
    ping.tick().await;
    loop {
        tokio::select! {
            message = ended.recv() => match message {
                Some(message) => {
                    if heard.send(message).await.is_err() {
                        return Ok(());
                    }
                }
                None => return Ok(()),
            },
            _ = ping.tick() => {
                match tokio::time::timeout(LISTEN_PING, client.simple_query("SELECT 1")).await {
                    Ok(Ok(_)) => {}
                    _ => return Ok(()),
                }
            }
            () = heard.closed() => return Ok(()),
        }
    }
}

/// Polls the connection, handing its notifications on; returns when it ends.
async fn drive<S, T>(
    mut connection: tokio_postgres::Connection<S, T>,
    messages: mpsc::Sender<Heard>,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    loop {
        let message = std::future::poll_fn(|cx| connection.poll_message(cx)).await;
        match message {
            Some(Ok(AsyncMessage::Notification(notification))) => {
                let heard = Heard::Message {
                    channel: notification.channel().to_owned(),
                    payload: notification.payload().to_owned(),
                };
                if messages.send(heard).await.is_err() {
                    return;
                }
            }
            Some(Ok(_)) => {}
            Some(Err(_)) | None => return,
        }
    }
}
