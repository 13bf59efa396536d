//! `[cluster]`: how a node on a Postgres store takes part in the cluster
//! (see `docs/scale-out.md`). Ignored on SQLite, whose queue is in memory.

use serde::{Deserialize, Serialize};

/// Leases, the node's identity and the wake-up fallback.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClusterConfig {
    /// How long a claimed job's lease lasts without renewal, in seconds.
    /// The node renews its leases every third of this; a node silent for
    /// longer is dead and its running jobs end `failed`.
    pub lease_secs: u64,
    /// This node's id in the `nodes` table and on its leases. Unset: the id
    /// kept in `<data_dir>/node-id`, made on first start, so a restart on
    /// the same data dir is the same node and reaps its own jobs at once.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node_id: Option<String>,
    /// The address other nodes and operators reach this node at, as listed
    /// by `GET /v1/cluster`. Unset: the listening address.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    /// How often an idle worker looks for a queued job when no `NOTIFY`
    /// woke it (the fallback while the `LISTEN` connection is down), in
    /// milliseconds.
    pub poll_ms: u64,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        Self {
            lease_secs: 30,
            node_id: None,
            address: None,
            poll_ms: 1_000,
        }
    }
}

impl ClusterConfig {
    /// The lease length in milliseconds.
    pub fn lease_ms(&self) -> i64 {
        i64::try_from(self.lease_secs.saturating_mul(1000)).unwrap_or(i64::MAX)
    }

    /// The heartbeat period: a third of the lease, so two heartbeats can
    /// be lost before a live node's leases expire.
    pub fn heartbeat(&self) -> std::time::Duration {
        std::time::Duration::from_millis(self.lease_secs.saturating_mul(1000) / 3)
    }
}
