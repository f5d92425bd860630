//! The leader election on PostgreSQL: a session-level advisory lock held on a connection of
//! its own (a pool of one, apart from the store's pool), named `vitalwatch-leader:<node id>`
//! so every node can tell who holds it. The lock lives and dies with that session: a leader
//! that crashes, or loses its connection (a database failover), leads no more, at once.

use super::{pg, pool_error};
use crate::store::StoreError;
use crate::store::alert_state::LeaderLock;
use async_trait::async_trait;
use deadpool_postgres::{Object, Pool};
use std::time::Duration;

/// The advisory lock's key (the store's other locks are ...0001 and ...0002).
const LEADER_LOCK: i64 = 0x5657_0000_0000_0003;
/// What the leader's session calls itself; the node id follows.
const APPLICATION_PREFIX: &str = "vitalwatch-leader:";
/// A check that takes longer than this counts as a lost connection.
const CHECK_TIMEOUT: Duration = Duration::from_secs(3);

pub(super) struct PgLeaderLock {
    pub(super) pool: Pool,
    client: Option<Object>,
    held: bool,
}

impl PgLeaderLock {
    pub(super) fn new(pool: Pool) -> PgLeaderLock {
        PgLeaderLock {
            pool,
            client: None,
            held: false,
        }
    }

    /// Closes the session (which releases the lock, if held).
    fn drop_session(&mut self) {
        self.held = false;
        if let Some(client) = self.client.take() {
            // Taken out of the pool: dropping it closes the connection.
            drop(Object::take(client));
        }
    }

    async fn session(&mut self, node_id: &str) -> Result<&Object, StoreError> {
        if self.client.as_ref().is_some_and(|c| c.is_closed()) {
            self.drop_session();
        }
        if self.client.is_none() {
            let client = self.pool.get().await.map_err(pool_error)?;
            let name: String = format!("{APPLICATION_PREFIX}{node_id}")
                .chars()
                .take(63)
                .collect();
            client
                .execute("SELECT set_config('application_name', $1, false)", &[&name])
                .await
                .map_err(pg)?;
            self.client = Some(client);
        }
        self.client.as_ref().ok_or(StoreError::Closed)
    }
}

#[async_trait]
impl LeaderLock for PgLeaderLock {
    async fn try_lead(&mut self, node_id: &str) -> Result<bool, StoreError> {
        let held = self.held;
        let client = self.session(node_id).await?;
        let sql = if held {
            // Still the same session, so still the holder: check it answers.
            "SELECT true"
        } else {
            "SELECT pg_try_advisory_lock($1)"
        };
        let check = async {
            if held {
                client.query_one(sql, &[]).await
            } else {
                client.query_one(sql, &[&LEADER_LOCK]).await
            }
        };
        match tokio::time::timeout(CHECK_TIMEOUT, check).await {
            Ok(Ok(row)) => {
                self.held = row.get(0);
                Ok(self.held)
            }
            Ok(Err(err)) => {
                self.drop_session();
                Err(pg(err))
            }
            Err(_) => {
                self.drop_session();
                Err(StoreError::backend(
                    "the leader lock's connection stopped answering",
                ))
            }
        }
    }

    async fn leader(&mut self) -> Result<Option<String>, StoreError> {
        let Some(client) = self.client.as_ref().filter(|c| !c.is_closed()) else {
            return Ok(None);
        };
        let query = client.query_opt(
            "SELECT a.application_name FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid \
             WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1 \
             AND l.classid::bigint = ($1::bigint >> 32) \
             AND l.objid::bigint = ($1::bigint & 4294967295) \
             AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())",
            &[&LEADER_LOCK],
        );
        let row = match tokio::time::timeout(CHECK_TIMEOUT, query).await {
            Ok(row) => row.map_err(pg)?,
            Err(_) => return Ok(None),
        };
        Ok(row
            .and_then(|row| row.get::<_, Option<String>>(0))
            .map(|name| {
                name.strip_prefix(APPLICATION_PREFIX)
                    .unwrap_or(&name)
                    .to_owned()
            }))
    }

    async fn release(&mut self) {
        if self.held
            && let Some(client) = &self.client
        {
            let _ = client
                .execute("SELECT pg_advisory_unlock($1)", &[&LEADER_LOCK])
                .await;
        }
        self.drop_session();
    }
}
