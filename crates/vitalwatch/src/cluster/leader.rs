//! The leader election: every node tries the store's leader lock (on PostgreSQL an advisory
//! lock held on a connection of its own) every `leader_poll_s`; the holder runs the work that
//! must happen once (the alert timers, retention, audit anchoring), started by `on_lead` with
//! a token that is cancelled the moment leadership ends. A leader whose process dies, or whose
//! lock connection breaks (a database failover), holds the lock no more; another node takes it
//! at its next attempt, so within one poll interval plus the time to notice (well inside
//! 10 s at the default 2 s).
//!
//! The once-only work stays correct even if two nodes briefly both run it (a leader that has
//! not yet noticed its lost connection): every alert timer runs under its device's row lock,
//! retention deletes what is due, and an anchor is a signed copy of the chain's head.

use super::ClusterStatus;
use crate::store::alert_state::LeaderLock;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// 1 while this node holds the leader lock, else 0 (no labels).
pub const IS_LEADER: &str = "vitalwatch_cluster_is_leader";

/// Runs the election until `shutdown`; gives the lock up on the way out.
pub async fn run(
    status: Arc<ClusterStatus>,
    mut lock: Box<dyn LeaderLock>,
    poll: Duration,
    on_lead: impl Fn(CancellationToken) + Send + 'static,
    shutdown: CancellationToken,
) {
    let node_id = status.node_id();
    let mut term: Option<CancellationToken> = None;
    let mut failing = false;
    ::metrics::gauge!(IS_LEADER).set(0.0);
    loop {
        let leads = match lock.try_lead(&node_id).await {
            Ok(leads) => {
                failing = false;
                leads
            }
            Err(err) => {
                if !failing {
                    tracing::warn!(event = "cluster.leader_lock_failed", message = "The leader lock could not be taken or checked.", error = %err);
                }
                failing = true;
                false
            }
        };
        if leads && term.is_none() {
            tracing::info!(
                event = "cluster.leading",
                message = "This node leads: it runs the once-only work.",
                node_id = %node_id
            );
            let token = shutdown.child_token();
            on_lead(token.clone());
            term = Some(token);
        }
        if !leads && let Some(token) = term.take() {
            token.cancel();
            tracing::warn!(
                event = "cluster.leadership_lost",
                message = "This node no longer leads.",
                node_id = %node_id
            );
        }
        ::metrics::gauge!(IS_LEADER).set(if leads { 1.0 } else { 0.0 });
        let leader = if leads {
            Some(node_id.clone())
        } else {
            lock.leader().await.ok().flatten()
        };
        status.set(leader, leads);
        tokio::select! {
            () = shutdown.cancelled() => break,
            () = tokio::time::sleep(poll) => {}
        }
    }
    if let Some(token) = term.take() {
        token.cancel();
    }
    lock.release().await;
    status.set(None, false);
    ::metrics::gauge!(IS_LEADER).set(0.0);
}
