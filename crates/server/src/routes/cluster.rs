//! `/v1/cluster` (`admin`): the nodes sharing this store, their free and
//! busy workers and running jobs, and the queue depth. On SQLite the queue
//! is in this process, so the answer is the one local node.

use axum::{Json, extract::State};
use serde::Serialize;
use utoipa::ToSchema;

use crate::{
    AppState,
    auth::{Auth, Scope},
    error::{ApiError, ErrorBody},
    http::rfc3339,
    now_ms,
};

/// The cluster as this node sees it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ClusterView {
    /// Where the queue is: `memory` (SQLite, one node) or `database`
    /// (Postgres, shared by every node).
    pub queue: String,
    /// The id of the node that answered.
    pub node: String,
    /// Jobs waiting for a worker, in the whole cluster.
    pub queue_depth: u64,
    /// The registered nodes, by id.
    pub nodes: Vec<NodeView>,
    /// The request-rate buckets of the node that answered (every node has
    /// the same configuration).
    pub rate_limit: RateLimitView,
}

/// Request-rate buckets are per node (docs/scale-out.md): a token's bucket
/// lives in the memory of each node it reaches, so across the live nodes
/// behind a load balancer it may make up to `nodes x` its per-node rate.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct RateLimitView {
    /// The default sustained requests per minute a token may make to one
    /// node (a token's own `rate_limit` overrides it per node the same way).
    pub per_node_requests_per_minute: u64,
    /// The default burst of a token's bucket on one node.
    pub per_node_burst: u64,
    /// The most a token may make per minute across the live nodes:
    /// `per_node_requests_per_minute` times the live nodes.
    pub cluster_max_requests_per_minute: u64,
}

impl RateLimitView {
    /// The figures of `state`'s configuration across `live` nodes.
    fn of(state: &AppState, live: usize) -> Self {
        let r = &state.config.rate_limit;
        let per_node = u64::from(r.requests_per_minute);
        Self {
            per_node_requests_per_minute: per_node,
            per_node_burst: u64::from(r.burst),
            cluster_max_requests_per_minute: per_node.saturating_mul(live.max(1) as u64),
        }
    }
}

/// One node.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct NodeView {
    /// The node id.
    pub id: String,
    /// Where it listens.
    pub address: String,
    /// The strictpy version it runs.
    pub version: String,
    /// Its worker threads.
    pub workers: u64,
    /// Workers running a job (at its last heartbeat).
    pub busy: u64,
    /// Workers free for a job (at its last heartbeat).
    pub free: u64,
    /// Jobs running under its lease now, as the store shows them.
    pub running_jobs: u64,
    /// When it started.
    pub started_at: String,
    /// Its last heartbeat.
    pub heartbeat_at: String,
    /// False once it missed its lease (`cluster.lease_secs`): it stopped,
    /// died or lost the database, and its running jobs are being ended.
    pub alive: bool,
}

fn count(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

/// The nodes of the cluster (`admin`).
#[utoipa::path(
    get,
    path = "/v1/cluster",
    tag = "cluster",
    security(("bearer" = ["admin"])),
    responses(
        (status = 200, description = "The nodes and the queue", body = ClusterView),
        (status = 403, description = "Not an admin token", body = ErrorBody),
    )
)]
pub async fn cluster(
    State(state): State<AppState>,
    Auth(who): Auth,
) -> Result<Json<ClusterView>, ApiError> {
    who.require(&state, Scope::Admin)?;
    let Some(q) = state.queue.database() else {
        let workers = state.config.workers as u64;
        let busy = state.running_jobs().len() as u64;
        let now = rfc3339(now_ms());
        return Ok(Json(ClusterView {
            queue: "memory".into(),
            node: "local".into(),
            queue_depth: state.queue.len() as u64,
            nodes: vec![NodeView {
                id: "local".into(),
                address: state.node_address(),
                version: env!("CARGO_PKG_VERSION").into(),
                workers,
                busy,
                free: workers.saturating_sub(busy),
                running_jobs: busy,
                started_at: rfc3339(state.started_at),
                heartbeat_at: now,
                alive: true,
            }],
            rate_limit: RateLimitView::of(&state, 1),
        }));
    };
    let depth = q.store.queued_count().await?;
    q.set_depth(depth);
    let nodes = q
        .store
        .nodes(q.lease_ms)
        .await?
        .into_iter()
        .map(|n| NodeView {
            free: count(n.workers).saturating_sub(count(n.busy)),
            alive: n.alive,
            workers: count(n.workers),
            busy: count(n.busy),
            running_jobs: count(n.running),
            started_at: rfc3339(n.started_at),
            heartbeat_at: rfc3339(n.heartbeat_at),
            id: n.id,
            address: n.address,
            version: n.version,
        })
        .collect::<Vec<_>>();
    let live = nodes.iter().filter(|n| n.alive).count();
    Ok(Json(ClusterView {
        queue: "database".into(),
        node: q.node.clone(),
        queue_depth: depth,
        rate_limit: RateLimitView::of(&state, live),
        nodes,
    }))
}
