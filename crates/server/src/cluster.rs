//! A node of a cluster on one Postgres store: its id, its start-up
//! recovery, its heartbeat (register in `nodes`, renew its leases, reap the
//! leases of dead nodes), and what it does with the `NOTIFY`s it hears
//! (wake a worker, answer a waiting request, interrupt a job it runs,
//! publish or mirror live output: `relay.rs`).
//!
//! The rule for a node that dies (SIGKILL, power loss, network cut): its
//! leases stop being renewed; once one has expired, a live node (one at a
//! time, under an advisory lock) ends that job `failed`, kind `internal`,
//! naming the node. A job is never re-run, so nothing runs twice, and a job
//! that kills its node cannot loop. A node restarting under its old id ends
//! its own previous jobs the same way at once, without waiting for the
//! lease; it never touches another live node's jobs.

use std::{path::Path, sync::atomic::Ordering, time::Duration};

use strictpy_store::{NodeRecord, Notice};

use crate::{AppState, ServerError, now_ms, queue::DbQueue, relay, workers};

/// The file in the data dir holding the node id made on first start.
pub const NODE_ID_FILE: &str = "node-id";

/// The message of a job whose node stopped renewing its lease.
pub fn lost_node_message(node: &str) -> String {
    format!(
        "worker stopped: node {node} stopped renewing its lease while this job was running \
         (it died or lost the database); it was not re-run"
    )
}

/// This node's id: `cluster.node_id`, else the one in `<data_dir>/node-id`,
/// made (the host name and a random suffix) on first start.
pub fn node_id(config: &crate::Config) -> Result<String, ServerError> {
    if let Some(id) = config.cluster.node_id.as_deref().map(str::trim)
        && !id.is_empty()
    {
        return Ok(id.to_owned());
    }
    let path = config.data_dir.join(NODE_ID_FILE);
    if let Ok(text) = std::fs::read_to_string(&path)
        && let Some(id) = text.lines().next().map(str::trim).filter(|s| !s.is_empty())
    {
        return Ok(id.to_owned());
    }
    strictpy_store::create_data_dir(&config.data_dir)?;
    let id = format!(
        "{}-{}",
        host_name(),
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    );
    write_new(&path, &id)?;
    Ok(id)
}

/// The host name, or `node` where the system does not say.
fn host_name() -> String {
    ["/proc/sys/kernel/hostname", "/etc/hostname"]
        .iter()
        .find_map(|p| std::fs::read_to_string(p).ok())
        .map(|s| s.trim().to_owned())
        .filter(|s| {
            !s.is_empty()
                && s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-._".contains(c))
        })
        .unwrap_or_else(|| "node".into())
}

/// Writes `id` to a new file at `path`.
fn write_new(path: &Path, id: &str) -> std::io::Result<()> {
    std::fs::write(path, format!("{id}\n"))
}

/// Start-up on a Postgres store: ends this node's own jobs from a previous
/// run, heartbeats once (so the node is listed before it serves), and
/// starts the heartbeat and the `LISTEN` tasks.
pub async fn start(state: &AppState) -> Result<(), ServerError> {
    let Some(q) = state.queue.database() else {
        return Ok(());
    };
    let interrupted = workers::internal_outcome(workers::WORKER_STOPPED);
    let ids = q
        .store
        .recover_node(&q.node, &interrupted, now_ms())
        .await?;
    for id in &ids {
        tracing::warn!(%id, node = %q.node, "job was running when this node stopped; marked failed");
    }
    beat(state, q).await?;
    let hb = state.clone();
    state.runtime.spawn(async move {
        let Some(q) = hb.queue.database() else {
            return;
        };
        let mut ticker = tokio::time::interval(hb.config.cluster.heartbeat());
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticker.tick().await;
        while !hb.cluster_stopped.load(Ordering::SeqCst) {
            ticker.tick().await;
            if let Err(e) = beat(&hb, q).await {
                tracing::warn!(error = %e, "cluster heartbeat failed");
            }
        }
    });
    state.runtime.spawn(relay::renew(state.clone()));
    let mut notices = q
        .store
        .listen(Duration::from_millis(state.config.cluster.poll_ms));
    let listener = state.clone();
    state.runtime.spawn(async move {
        while let Some(notice) = notices.recv().await {
            if listener.cluster_stopped.load(Ordering::SeqCst) {
                break;
            }
            on_notice(&listener, notice);
        }
    });
    Ok(())
}

/// One heartbeat: this node's row and leases, the cluster's queue depth,
/// then the reaping of expired leases (if no other node is at it).
async fn beat(state: &AppState, q: &DbQueue) -> Result<(), ServerError> {
    let now = now_ms();
    let node = NodeRecord {
        id: q.node.clone(),
        address: state.node_address(),
        workers: i64::try_from(state.config.workers).unwrap_or(i64::MAX),
        busy: i64::try_from(state.running_jobs().len()).unwrap_or(i64::MAX),
        version: env!("CARGO_PKG_VERSION").to_owned(),
        started_at: state.started_at,
        heartbeat_at: now,
        running: 0,
        alive: true,
    };
    q.store.heartbeat(&node, q.lease_ms).await?;
    q.set_depth(q.store.queued_count().await?);
    let reaped = q
        .store
        .reap_expired(now, |owner| {
            workers::internal_outcome(&lost_node_message(owner))
        })
        .await?;
    for job in reaped {
        tracing::warn!(id = %job.id, node = %job.owner, "the job's node stopped renewing its lease; marked failed");
        // The dead node cannot deliver its webhook any more.
        state.spawn_webhook(job.id);
    }
    Ok(())
}

/// What a `NOTIFY` means to this node.
fn on_notice(state: &AppState, notice: Notice) {
    let Some(q) = state.queue.database() else {
        return;
    };
    match notice {
        Notice::Queued => q.wake_one(),
        Notice::Final(id) => state.remote_final(id),
        Notice::Cancel(id) => {
            state.interrupt(id, true);
        }
        Notice::Watch(watch) => relay::on_watch(state, watch),
        Notice::Live(live) => relay::on_live(state, live),
        Notice::Connected => {
            // Notices may have been missed while the connection was down:
            // a worker looks for queued jobs, waiting requests look again
            // at their job, and mirrors start over.
            q.wake_one();
            state.wake_all_waiters();
            relay::resync(state);
        }
    }
}

/// Bookkeeping when this node shuts down cleanly: its row leaves `nodes`
/// and its tasks stop.
pub async fn stop(state: &AppState) {
    state.cluster_stopped.store(true, Ordering::SeqCst);
    if let Some(q) = state.queue.database()
        && let Err(e) = q.store.deregister(&q.node).await
    {
        tracing::warn!(error = %e, "cannot remove this node from the nodes table");
    }
}
