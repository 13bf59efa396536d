//! The queue in the database, for several nodes on one PostgreSQL: claims
//! with `FOR UPDATE SKIP LOCKED`, leases renewed by the owning node's
//! heartbeat, finishing only while the lease is still owned, the `nodes`
//! table, the reaping of expired leases under an advisory lock, and
//! `LISTEN/NOTIFY` (a trigger on `jobs` notifies queued and final jobs;
//! `live.rs` adds the channels of live output between nodes).
//!
//! None of this is in the [`crate::JobStore`] trait: SQLite keeps its
//! in-memory queue, and the server reaches these through
//! [`crate::JobStore::postgres`].

use std::{sync::Arc, time::Duration};

use strictpy_types::{JobStatus, Outcome};
use tokio::sync::mpsc;
use tokio_postgres::{AsyncMessage, NoTls};
use uuid::Uuid;

use super::live::{LIVE_CHANNEL, LiveNotice, WATCH_CHANNEL, Watch, decode_live, decode_watch};
use super::{DB_NOW_MS, PostgresStore, execute, query_jobs};
use crate::rows::{COLUMNS, parse_id, seal_json};
use crate::{JobRecord, Keyring, StoreError};

/// The key of the advisory lock lease reaping runs under ("strictpr"), so
/// one node at a time ends the jobs of dead nodes.
pub const REAP_LOCK: i64 = 0x7374_7269_6374_7072;

/// Channel on which a queued job is announced (empty payload).
pub const QUEUED_CHANNEL: &str = "strictpy_queued";

/// Channel on which a job that became final is announced (its id).
pub const FINAL_CHANNEL: &str = "strictpy_final";

/// Channel on which a cancel of a running job is asked for (its id); the
/// node running it interrupts it.
pub const CANCEL_CHANNEL: &str = "strictpy_cancel";

/// How long a node may go without a heartbeat before its row is deleted
/// from `nodes` (it stays listed as not alive until then).
const FORGET_NODE_MS: i64 = 60 * 60 * 1000;

/// Migration 2: leases, the claim counter, the `nodes` table and the
/// trigger that notifies queued and final jobs.
pub(super) const MIGRATION: &str = r#"
    ALTER TABLE jobs ADD COLUMN lease_owner TEXT;
    ALTER TABLE jobs ADD COLUMN lease_expires_at BIGINT;
    ALTER TABLE jobs ADD COLUMN attempts BIGINT NOT NULL DEFAULT 0;
    CREATE INDEX jobs_running_owner ON jobs (lease_owner) WHERE status = 'running';
    CREATE TABLE nodes (
        id TEXT COLLATE "C" PRIMARY KEY,
        address TEXT NOT NULL,
        workers BIGINT NOT NULL,
        busy BIGINT NOT NULL,
        version TEXT NOT NULL,
        started_at BIGINT NOT NULL,
        heartbeat_at BIGINT NOT NULL
    );
    CREATE FUNCTION strictpy_jobs_notify() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        IF NEW.status = 'queued' AND (TG_OP = 'INSERT' OR OLD.status <> 'queued') THEN
            PERFORM pg_notify('strictpy_queued', '');
        ELSIF NEW.status IN ('succeeded', 'failed', 'cancelled')
              AND (TG_OP = 'INSERT' OR OLD.status <> NEW.status) THEN
            PERFORM pg_notify('strictpy_final', NEW.id);
        END IF;
        RETURN NULL;
    END
    $$;
    CREATE TRIGGER jobs_notify AFTER INSERT OR UPDATE OF status ON jobs
        FOR EACH ROW EXECUTE FUNCTION strictpy_jobs_notify();
"#;

/// A node as registered in `nodes`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeRecord {
    /// The node id (stable across restarts of one data dir).
    pub id: String,
    /// Where it listens.
    pub address: String,
    /// Its worker threads.
    pub workers: i64,
    /// Workers running a job at its last heartbeat.
    pub busy: i64,
    /// The strictpy version it runs.
    pub version: String,
    /// When it started, Unix milliseconds.
    pub started_at: i64,
    /// Its last heartbeat, Unix milliseconds.
    pub heartbeat_at: i64,
    /// Jobs the database shows running under its lease now.
    pub running: i64,
    /// Whether its last heartbeat is within a lease of now.
    pub alive: bool,
}

/// A job a live node ended because its owner stopped renewing the lease.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reaped {
    /// The job.
    pub id: Uuid,
    /// The node that held the lease.
    pub owner: String,
}

/// What the `LISTEN` connection hears.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notice {
    /// A job was queued somewhere.
    Queued,
    /// Job `0` became final somewhere.
    Final(Uuid),
    /// Someone asked for running job `0` to be cancelled.
    Cancel(Uuid),
    /// A node streams these jobs and asks whoever runs them for their live
    /// output.
    Watch(Watch),
    /// Live output of a job some node runs and another watches.
    Live(LiveNotice),
    /// The connection was (re)established: notices may have been missed
    /// while it was down, so whoever waits should look again.
    Connected,
}

impl PostgresStore {
    /// Claims the oldest queued job for `node`: `running`, leased for
    /// `lease_ms` (by the database's clock), started at `at`, its
    /// `attempts` counted. One
    /// statement; `SKIP LOCKED` lets concurrent claims (on any node) take
    /// different jobs without waiting on each other.
    pub async fn claim(
        &self,
        node: &str,
        lease_ms: i64,
        at: i64,
    ) -> Result<Option<JobRecord>, StoreError> {
        let client = self.client().await?;
        let jobs = query_jobs(
            &client,
            &self.keys,
            &format!(
                "UPDATE jobs SET status = 'running', lease_owner = $1,
                        lease_expires_at = {DB_NOW_MS} + $2, started_at = $3,
                        attempts = attempts + 1
                 WHERE id = (SELECT id FROM jobs WHERE status = 'queued'
                             ORDER BY id LIMIT 1 FOR UPDATE SKIP LOCKED)
                   AND status = 'queued'
                 RETURNING {COLUMNS}"
            ),
            &[&node, &lease_ms, &at],
        )
        .await?;
        Ok(jobs.into_iter().next())
    }

    /// Inserts a job whose client waits for it (`wait: true`) and that an
    /// idle worker of `claim.node` is promised: under the token's cap as
    /// [`crate::JobStore::create_capped`] counts it, and, when no job is
    /// queued anywhere in the cluster (so it passes none), already claimed:
    /// `running` under the lease [`PostgresStore::claim`] would have given
    /// it, so no worker needs to hear of it and claim it. Otherwise it is
    /// queued like any job (the returned record says which). One
    /// transaction.
    pub async fn create_claimed(
        &self,
        job: crate::NewJob,
        cap: crate::JobCap,
        claim: super::Claim<'_>,
    ) -> Result<Option<crate::Created>, StoreError> {
        let client = self.client().await?;
        super::duties::create_capped(client, &self.keys, job, &cap, Some(&claim)).await
    }

    /// Moves job `id` to a final status, only while `node` still holds its
    /// lease: a job a reaper already ended stays as the reaper left it, so
    /// a job never gets two final states. False if the lease was lost.
    pub async fn finish_owned(
        &self,
        id: Uuid,
        node: &str,
        status: JobStatus,
        outcome: &Outcome,
        at: i64,
    ) -> Result<bool, StoreError> {
        let client = self.client().await?;
        let id = id.to_string();
        let changed = execute(
            &client,
            "UPDATE jobs SET status = $1, outcome = $2, finished_at = $3, lease_expires_at = NULL
             WHERE id = $4 AND status = 'running' AND lease_owner = $5",
            &[
                &status.as_str(),
                &seal_json(&self.keys, "outcome", &id, outcome)?,
                &at,
                &id,
                &node,
            ],
        )
        .await?;
        Ok(changed == 1)
    }

    /// The node's heartbeat: registers or refreshes its row (its
    /// `heartbeat_at` is the database's clock; the record's is ignored)
    /// and extends the lease of every job it runs to `lease_ms` from now.
    /// Returns how many leases it renewed.
    pub async fn heartbeat(&self, node: &NodeRecord, lease_ms: i64) -> Result<u64, StoreError> {
        let client = self.client().await?;
        execute(
            &client,
            &format!(
                "INSERT INTO nodes (id, address, workers, busy, version, started_at, heartbeat_at)
                 VALUES ($1, $2, $3, $4, $5, $6, {DB_NOW_MS})
                 ON CONFLICT (id) DO UPDATE SET address = $2, workers = $3, busy = $4,
                     version = $5, started_at = $6, heartbeat_at = {DB_NOW_MS}"
            ),
            &[
                &node.id,
                &node.address,
                &node.workers,
                &node.busy,
                &node.version,
                &node.started_at,
            ],
        )
        .await?;
        execute(
            &client,
            &format!(
                "UPDATE jobs SET lease_expires_at = {DB_NOW_MS} + $1
                 WHERE status = 'running' AND lease_owner = $2"
            ),
            &[&lease_ms, &node.id],
        )
        .await
    }

    /// Removes a node's row (it shut down cleanly, with no job left).
    pub async fn deregister(&self, node: &str) -> Result<(), StoreError> {
        let client = self.client().await?;
        execute(&client, "DELETE FROM nodes WHERE id = $1", &[&node]).await?;
        Ok(())
    }

    /// Every registered node with the jobs running under its lease, by id;
    /// a node is alive while its last heartbeat is under `lease_ms` old.
    pub async fn nodes(&self, lease_ms: i64) -> Result<Vec<NodeRecord>, StoreError> {
        let client = self.client().await?;
        let stmt = client
            .prepare_cached(&format!(
                "SELECT n.id, n.address, n.workers, n.busy, n.version, n.started_at,
                        n.heartbeat_at,
                        (SELECT COUNT(*) FROM jobs j
                          WHERE j.status = 'running' AND j.lease_owner = n.id)::BIGINT,
                        n.heartbeat_at + $1 >= {DB_NOW_MS}
                 FROM nodes n ORDER BY n.id"
            ))
            .await?;
        client
            .query(&stmt, &[&lease_ms])
            .await?
            .iter()
            .map(|r| {
                Ok(NodeRecord {
                    id: r.try_get(0)?,
                    address: r.try_get(1)?,
                    workers: r.try_get(2)?,
                    busy: r.try_get(3)?,
                    version: r.try_get(4)?,
                    started_at: r.try_get(5)?,
                    heartbeat_at: r.try_get(6)?,
                    running: r.try_get(7)?,
                    alive: r.try_get(8)?,
                })
            })
            .collect()
    }

    /// Jobs waiting for a worker, on every node: the cluster-wide queue cap
    /// counts these.
    pub async fn queued_count(&self) -> Result<u64, StoreError> {
        let client = self.client().await?;
        let stmt = client
            .prepare_cached("SELECT COUNT(*)::BIGINT FROM jobs WHERE status = 'queued'")
            .await?;
        let n: i64 = client.query_one(&stmt, &[]).await?.try_get(0)?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    /// Ends, as `failed` at `at` with the outcome `outcome_for(owner)`,
    /// every running job whose lease expired (by the database's clock):
    /// its node stopped heartbeating.
    /// Runs under [`REAP_LOCK`], taken without waiting: if another node is
    /// reaping, this one returns nothing. Also forgets nodes silent for an
    /// hour.
    pub async fn reap_expired(
        &self,
        at: i64,
        outcome_for: impl Fn(&str) -> Outcome + Send,
    ) -> Result<Vec<Reaped>, StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let locked: bool = tx
            .query_one("SELECT pg_try_advisory_xact_lock($1)", &[&REAP_LOCK])
            .await?
            .try_get(0)?;
        if !locked {
            return Ok(Vec::new());
        }
        let expired = tx
            .query(
                &format!(
                    "SELECT id, lease_owner FROM jobs
                     WHERE status = 'running' AND lease_expires_at < {DB_NOW_MS}
                     ORDER BY id FOR UPDATE SKIP LOCKED"
                ),
                &[],
            )
            .await?;
        let mut reaped = Vec::with_capacity(expired.len());
        for row in &expired {
            let id: String = row.try_get(0)?;
            let owner: Option<String> = row.try_get(1)?;
            let owner = owner.unwrap_or_default();
            // One statement per job: each sealed outcome is bound to its row.
            tx.execute(
                "UPDATE jobs SET status = 'failed', outcome = $1, finished_at = $2,
                        lease_expires_at = NULL
                 WHERE id = $3 AND status = 'running'",
                &[
                    &seal_json(&self.keys, "outcome", &id, &outcome_for(&owner))?,
                    &at,
                    &id,
                ],
            )
            .await?;
            reaped.push(Reaped {
                id: parse_id(&id)?,
                owner,
            });
        }
        tx.execute(
            &format!("DELETE FROM nodes WHERE heartbeat_at < {DB_NOW_MS} - $1"),
            &[&FORGET_NODE_MS],
        )
        .await?;
        tx.commit().await?;
        Ok(reaped)
    }

    /// Start-up recovery of one node: its own jobs from a previous run under
    /// the same id (and running jobs with no owner, left by a version
    /// without leases) end `failed` with `interrupted`. Other nodes' jobs
    /// are never touched here; their expired leases are the reaper's.
    pub async fn recover_node(
        &self,
        node: &str,
        interrupted: &Outcome,
        at: i64,
    ) -> Result<Vec<Uuid>, StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let rows = tx
            .query(
                "SELECT id FROM jobs
                 WHERE status = 'running' AND (lease_owner = $1 OR lease_owner IS NULL)
                 ORDER BY id FOR UPDATE",
                &[&node],
            )
            .await?;
        let mut ids = Vec::with_capacity(rows.len());
        for row in &rows {
            let id: String = row.try_get(0)?;
            tx.execute(
                "UPDATE jobs SET status = 'failed', outcome = $1, finished_at = $2,
                        lease_expires_at = NULL
                 WHERE id = $3",
                &[
                    &seal_json(&self.keys, "outcome", &id, interrupted)?,
                    &at,
                    &id,
                ],
            )
            .await?;
            ids.push(parse_id(&id)?);
        }
        tx.commit().await?;
        Ok(ids)
    }

    /// Asks whichever node runs job `id` to interrupt it.
    pub async fn notify_cancel(&self, id: Uuid) -> Result<(), StoreError> {
        let client = self.client().await?;
        execute(
            &client,
            "SELECT pg_notify($1, $2)",
            &[&CANCEL_CHANNEL, &id.to_string()],
        )
        .await?;
        Ok(())
    }

    /// Starts a task that holds one connection of its own (outside the
    /// pool) in `LISTEN` on the five channels, forwarding what it hears,
    /// and reconnects (every `retry`) when the connection is lost. It sends
    /// [`Notice::Connected`] after each (re)connection and stops once the
    /// receiver is dropped.
    pub fn listen(&self, retry: Duration) -> mpsc::UnboundedReceiver<Notice> {
        let (tx, rx) = mpsc::unbounded_channel();
        let config = self.config.clone();
        let keys = self.keys.clone();
        tokio::spawn(async move {
            let mut warned = false;
            while !tx.is_closed() {
                match listen_once(&config, &keys, &tx).await {
                    Ok(()) => warned = false,
                    Err(e) if !warned => {
                        tracing::warn!(error = %e, "LISTEN connection lost; reconnecting");
                        warned = true;
                    }
                    Err(_) => {}
                }
                tokio::time::sleep(retry).await;
            }
        });
        rx
    }
}

/// One `LISTEN` connection, until it closes or the receiver goes away.
async fn listen_once(
    config: &tokio_postgres::Config,
    keys: &Arc<Keyring>,
    tx: &mpsc::UnboundedSender<Notice>,
) -> Result<(), StoreError> {
    let (client, mut connection) = config.connect(NoTls).await?;
    let forward = tx.clone();
    let keys = keys.clone();
    // The connection must be polled for the LISTEN to complete, so the
    // driver runs before the statement is sent.
    let driver = tokio::spawn(async move {
        loop {
            match std::future::poll_fn(|cx| connection.poll_message(cx)).await {
                Some(Ok(AsyncMessage::Notification(n))) => {
                    let notice = match n.channel() {
                        QUEUED_CHANNEL => Some(Notice::Queued),
                        FINAL_CHANNEL => Uuid::parse_str(n.payload()).ok().map(Notice::Final),
                        CANCEL_CHANNEL => Uuid::parse_str(n.payload()).ok().map(Notice::Cancel),
                        WATCH_CHANNEL => decode_watch(n.payload()).map(Notice::Watch),
                        LIVE_CHANNEL => decode_live(&keys, n.payload()).map(Notice::Live),
                        _ => None,
                    };
                    if let Some(notice) = notice
                        && forward.send(notice).is_err()
                    {
                        return Ok(());
                    }
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => return Err(StoreError::from(e)),
                None => return Ok(()),
            }
        }
    });
    client
        .batch_execute(&format!(
            "LISTEN {QUEUED_CHANNEL}; LISTEN {FINAL_CHANNEL}; LISTEN {CANCEL_CHANNEL}; \
             LISTEN {WATCH_CHANNEL}; LISTEN {LIVE_CHANNEL}"
        ))
        .await?;
    if tx.send(Notice::Connected).is_err() {
        return Ok(());
    }
    let ended = driver.await.map_err(|e| StoreError::Join(e.to_string()))?;
    drop(client);
    ended?;
    Err(StoreError::Unavailable(
        "the LISTEN connection closed".into(),
    ))
}
