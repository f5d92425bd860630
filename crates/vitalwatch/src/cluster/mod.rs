//! Nodes sharing one PostgreSQL database: this node's identity, who leads, and the leader
//! election ([`leader`]). On SQLite a node is alone and always its own leader.

pub mod leader;

use parking_lot::RwLock;
use serde::Serialize;

/// What `/health` says about the cluster.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct ClusterView {
    pub node_id: String,
    /// The node holding the leader lock, if any node does.
    pub leader: Option<String>,
    pub is_leader: bool,
}

/// This node's view of the cluster, kept current by the election loop.
#[derive(Debug)]
pub struct ClusterStatus {
    view: RwLock<ClusterView>,
}

impl ClusterStatus {
    /// A node that is alone (SQLite): it leads.
    pub fn alone(node_id: String) -> ClusterStatus {
        ClusterStatus {
            view: RwLock::new(ClusterView {
                leader: Some(node_id.clone()),
                node_id,
                is_leader: true,
            }),
        }
    }

    /// A cluster member that has not yet looked for a leader.
    pub fn member(node_id: String) -> ClusterStatus {
        ClusterStatus {
            view: RwLock::new(ClusterView {
                node_id,
                leader: None,
                is_leader: false,
            }),
        }
    }

    pub fn view(&self) -> ClusterView {
        self.view.read().clone()
    }

    pub fn node_id(&self) -> String {
        self.view.read().node_id.clone()
    }

    fn set(&self, leader: Option<String>, is_leader: bool) {
        let mut view = self.view.write();
        view.leader = leader;
        view.is_leader = is_leader;
    }
}
