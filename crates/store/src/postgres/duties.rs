//! What several nodes on one PostgreSQL database need (see `cluster.rs`):
//! the first-start admin token and the concurrent-job cap under
//! transaction-level advisory locks, webhook deliveries claimed with
//! `FOR UPDATE SKIP LOCKED` and leases on the database's clock, and the
//! failed-authentication lockout counted in the database.

use deadpool_postgres::Object;
use strictpy_types::JobStatus;
use tokio_postgres::types::ToSql;
use uuid::Uuid;

use super::{Claim, DB_NOW_MS, execute, job_by_key, security};
use crate::cluster::lock_class;
use crate::crypto::Keyring;
use crate::rows::{self, final_statuses, new_callback, parse_id, seal_json, to_json};
use crate::{Created, JobCap, LockoutRule, NewJob, StoreError, TokenRecord};

/// The migration these need, appended to the store's list: who holds each
/// job's webhook delivery and until when, the index of pending deliveries
/// and of each token's active jobs, and the failure and lockout tables.
pub(super) const MIGRATION: &str = r#"
    ALTER TABLE jobs ADD COLUMN callback_owner TEXT;
    ALTER TABLE jobs ADD COLUMN callback_lease_expires_at BIGINT;
    CREATE INDEX jobs_callback_pending ON jobs (finished_at)
        WHERE callback IS NOT NULL AND (callback::jsonb ->> 'state') = 'pending';
    CREATE INDEX jobs_token_active ON jobs (token_id)
        WHERE status IN ('queued', 'running');
    CREATE TABLE auth_failures (
        ip TEXT NOT NULL,
        at BIGINT NOT NULL
    );
    CREATE INDEX auth_failures_ip_at ON auth_failures (ip, at);
    CREATE INDEX auth_failures_at ON auth_failures (at);
    CREATE TABLE auth_lockouts (
        ip TEXT PRIMARY KEY,
        until BIGINT NOT NULL
    );"#;

/// A transaction opened with `BEGIN` on a pooled connection, for statements
/// that take the connection itself (the first token's check and insert). If it is dropped
/// before [`ManualTx::finish`] (an error, or a request whose future was
/// dropped), the connection is detached from the pool and closed, so the
/// server rolls back and no pooled connection stays inside a transaction.
struct ManualTx {
    /// The connection; `None` once given back.
    client: Option<Object>,
}

impl ManualTx {
    async fn begin(client: Object) -> Result<Self, StoreError> {
        let tx = Self {
            client: Some(client),
        };
        tx.client()?.batch_execute("BEGIN").await?;
        Ok(tx)
    }

    fn client(&self) -> Result<&Object, StoreError> {
        self.client
            .as_ref()
            .ok_or_else(|| StoreError::Unavailable("the transaction is over".into()))
    }

    /// Commits (or rolls back) and gives the connection back to the pool.
    async fn finish(mut self, commit: bool) -> Result<(), StoreError> {
        let sql = if commit { "COMMIT" } else { "ROLLBACK" };
        self.client()?.batch_execute(sql).await?;
        // Only a connection whose transaction ended goes back to the pool.
        drop(self.client.take());
        Ok(())
    }
}

impl Drop for ManualTx {
    fn drop(&mut self) {
        if let Some(client) = self.client.take() {
            drop(Object::take(client));
        }
    }
}

/// A transaction-level advisory lock of class `$1` on instance `$2`.
const LOCK: &str = "SELECT pg_advisory_xact_lock($1, hashtext($2))";

/// Takes a transaction-level advisory lock of `class` on `instance`.
async fn lock(client: &Object, class: i32, instance: &str) -> Result<(), StoreError> {
    execute(client, LOCK, &[&class, &instance]).await?;
    Ok(())
}

/// See [`crate::JobStore::insert_first_token`]: under one lock, so nodes
/// that start at once on an empty database make one admin token.
pub(super) async fn insert_first_token(
    client: Object,
    token: &TokenRecord,
) -> Result<bool, StoreError> {
    let tx = ManualTx::begin(client).await?;
    lock(tx.client()?, lock_class::BOOTSTRAP, "bootstrap").await?;
    if security::has_tokens(tx.client()?).await? {
        tx.finish(false).await?;
        return Ok(false);
    }
    security::insert_token(tx.client()?, token).await?;
    tx.finish(true).await?;
    Ok(true)
}

/// See [`crate::JobStore::create_capped`]. The lock on the budget key
/// serialises the count and the insert of that token's jobs on every node;
/// under READ COMMITTED the insert's count then sees every insert committed
/// before it took the lock, so two nodes at once cannot both take the last
/// place.
///
/// With a `claim`, the job is inserted already claimed under it when no job
/// is queued anywhere (so it passes none), and queued otherwise.
///
/// One round trip: `BEGIN`, the lock, the counting insert and `COMMIT` are
/// pipelined (sent together; the server still runs them one after the
/// other, so the insert's snapshot is taken after the lock is held). A
/// replay of an accepted request is answered even at the cap, by the read
/// after an insert that inserted nothing.
pub(super) async fn create_capped(
    client: Object,
    keys: &Keyring,
    job: NewJob,
    cap: &JobCap,
    claim: Option<&Claim<'_>>,
) -> Result<Option<Created>, StoreError> {
    let id = job.id.to_string();
    let callback = new_callback(&job);
    let spec = seal_json(keys, "spec", &id, &job.spec)?;
    let callback_json = callback.as_ref().map(to_json).transpose()?;
    let lock = client.prepare_cached(LOCK).await?;
    let insert = client
        .prepare_cached(&format!(
            "WITH active AS (
                 SELECT count(*) AS n FROM jobs
                 WHERE status IN ('queued', 'running')
                   AND token_id = ANY(ARRAY(SELECT id FROM tokens WHERE parent_id = $9) || $9::TEXT)
             ), placed AS (
                 SELECT CASE WHEN $11::BOOLEAN
                                  AND NOT EXISTS (SELECT 1 FROM jobs WHERE status = 'queued')
                             THEN 'running' ELSE 'queued' END AS status
             )
             INSERT INTO jobs (id, tenant, idempotency_key, request_hash, status, created_at,
                               spec, callback, token_id, started_at, lease_owner,
                               lease_expires_at, attempts)
             SELECT $1, $2, $3, $4, p.status, $5, $6, $7, $8,
                    CASE WHEN p.status = 'running' THEN $12::BIGINT END,
                    CASE WHEN p.status = 'running' THEN $13::TEXT END,
                    CASE WHEN p.status = 'running' THEN {DB_NOW_MS} + $14::BIGINT END,
                    CASE WHEN p.status = 'running' THEN 1 ELSE 0 END
             FROM active a, placed p
             WHERE a.n < $10
             ON CONFLICT (tenant, idempotency_key) DO NOTHING
             RETURNING status"
        ))
        .await?;
    let limit = i64::from(cap.limit);
    let claimed = claim.is_some();
    let (started_at, node, lease_ms) = match claim {
        Some(c) => (Some(c.started_at), Some(c.node), Some(c.lease_ms)),
        None => (None, None, None),
    };
    let class = lock_class::JOB_CAP;
    let lock_params: [&(dyn ToSql + Sync); 2] = [&class, &cap.budget_key];
    let insert_params: [&(dyn ToSql + Sync); 14] = [
        &id,
        &job.tenant,
        &job.idempotency_key,
        &job.request_hash,
        &job.created_at,
        &spec,
        &callback_json,
        &job.token_id,
        &cap.budget_key,
        &limit,
        &claimed,
        &started_at,
        &node,
        &lease_ms,
    ];
    let (began, locked, inserted, committed) = tokio::join!(
        client.batch_execute("BEGIN"),
        client.execute(&lock, &lock_params),
        client.query(&insert, &insert_params),
        client.batch_execute("COMMIT"),
    );
    let inserted = match began
        .and(locked.map(drop))
        .and(inserted)
        .and_then(|rows| committed.map(|()| rows))
    {
        Ok(rows) => rows,
        Err(e) => {
            // Whatever state the pipeline left it in, this connection is
            // not given back to the pool: closed, the server rolls back.
            drop(Object::take(client));
            return Err(e.into());
        }
    };
    if let Some(row) = inserted.first() {
        let status: String = row.try_get(0)?;
        let started_at = started_at.filter(|_| status == JobStatus::Running.as_str());
        return Ok(Some(Created::New(rows::new_record(
            job, callback, started_at,
        ))));
    }
    // Nothing inserted: the tenant has a job under this key (committed:
    // ON CONFLICT waited for its transaction), or the token is at its cap.
    let Some(key) = &job.idempotency_key else {
        return Ok(None);
    };
    Ok(job_by_key(&client, keys, &job.tenant, Some(key))
        .await?
        .map(Created::Existing))
}

/// See [`crate::JobStore::claim_callback`].
pub(super) async fn claim_callback(
    client: &Object,
    id: Uuid,
    owner: &str,
    lease_ms: i64,
) -> Result<bool, StoreError> {
    let changed = execute(
        client,
        &format!(
            "UPDATE jobs SET callback_owner = $1, callback_lease_expires_at = {DB_NOW_MS} + $2
             WHERE id = $3 AND callback IS NOT NULL
               AND (callback_owner IS NULL OR callback_owner = $1
                    OR callback_lease_expires_at < {DB_NOW_MS})"
        ),
        &[&owner, &lease_ms, &id.to_string()],
    )
    .await?;
    Ok(changed == 1)
}

/// See [`crate::JobStore::claim_pending_callbacks`]. `SKIP LOCKED`: nodes
/// sweeping at once take disjoint rows; a row another node claimed since
/// this statement's snapshot is re-checked on its newest version and
/// skipped.
pub(super) async fn claim_pending_callbacks(
    client: &Object,
    owner: &str,
    lease_ms: i64,
    unclaimed_ms: i64,
    limit: u32,
) -> Result<Vec<Uuid>, StoreError> {
    let [succeeded, failed, cancelled] = final_statuses();
    let stmt = client
        .prepare_cached(&format!(
            "UPDATE jobs SET callback_owner = $1, callback_lease_expires_at = {DB_NOW_MS} + $2
             WHERE id IN (
                 SELECT id FROM jobs
                 WHERE callback IS NOT NULL AND (callback::jsonb ->> 'state') = 'pending'
                   AND status IN ($3, $4, $5)
                   AND ((callback_owner IS NULL AND finished_at < {DB_NOW_MS} - $6)
                        OR callback_lease_expires_at < {DB_NOW_MS})
                 ORDER BY finished_at
                 LIMIT $7
                 FOR UPDATE SKIP LOCKED)
             RETURNING id"
        ))
        .await?;
    let rows = client
        .query(
            &stmt,
            &[
                &owner,
                &lease_ms,
                &succeeded,
                &failed,
                &cancelled,
                &unclaimed_ms,
                &i64::from(limit),
            ],
        )
        .await?;
    rows.iter()
        .map(|r| parse_id(&r.try_get::<_, String>(0)?))
        .collect()
}

/// See [`crate::JobStore::record_auth_failure`]: under a lock on the
/// address, so failures arriving at several nodes at once are all counted
/// and exactly one of them starts the lockout.
pub(super) async fn record_auth_failure(
    client: &mut Object,
    ip: &str,
    at: i64,
    rule: LockoutRule,
) -> Result<Option<i64>, StoreError> {
    let tx = client.transaction().await?;
    tx.execute(LOCK, &[&lock_class::LOCKOUT, &ip]).await?;
    let since = at.saturating_sub(rule.window_ms);
    tx.execute(
        "DELETE FROM auth_failures WHERE ip = $1 AND at < $2",
        &[&ip, &since],
    )
    .await?;
    tx.execute(
        "INSERT INTO auth_failures (ip, at) VALUES ($1, $2)",
        &[&ip, &at],
    )
    .await?;
    let failures: i64 = tx
        .query_one(
            "SELECT count(*) FROM auth_failures WHERE ip = $1 AND at >= $2",
            &[&ip, &since],
        )
        .await?
        .try_get(0)?;
    let locked: Option<i64> = tx
        .query_opt(
            "SELECT until FROM auth_lockouts WHERE ip = $1 AND until > $2",
            &[&ip, &at],
        )
        .await?
        .map(|r| r.try_get(0))
        .transpose()?;
    let started = if failures >= i64::from(rule.max_failures) && locked.is_none() {
        let until = at.saturating_add(rule.duration_ms);
        tx.execute(
            "INSERT INTO auth_lockouts (ip, until) VALUES ($1, $2)
             ON CONFLICT (ip) DO UPDATE SET until = EXCLUDED.until",
            &[&ip, &until],
        )
        .await?;
        tx.execute("DELETE FROM auth_failures WHERE ip = $1", &[&ip])
            .await?;
        Some(until)
    } else {
        None
    };
    tx.commit().await?;
    Ok(started)
}

/// See [`crate::JobStore::locked_until`].
pub(super) async fn locked_until(
    client: &Object,
    ip: &str,
    at: i64,
) -> Result<Option<i64>, StoreError> {
    let stmt = client
        .prepare_cached("SELECT until FROM auth_lockouts WHERE ip = $1 AND until > $2")
        .await?;
    Ok(client
        .query_opt(&stmt, &[&ip, &at])
        .await?
        .map(|r| r.try_get(0))
        .transpose()?)
}
