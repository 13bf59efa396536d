//! The PostgreSQL store: the same schema, statements and encryption at rest
//! as the SQLite store, over `tokio-postgres` with a `deadpool` connection
//! pool, for operators who run the database themselves.
//!
//! Migrations run when the store connects, all in one transaction that first
//! takes a transaction-level advisory lock ([`MIGRATION_LOCK`]): nodes that
//! start at once queue on the lock, and each later one finds the schema
//! already at the newest version. Idempotency keys are enforced by the
//! unique index on `(tenant, idempotency_key)` with `ON CONFLICT DO NOTHING`,
//! so two connections inserting the same key at once make one job.

mod cluster;
mod duties;
mod functions;
mod live;
mod security;

pub use cluster::{
    CANCEL_CHANNEL, FINAL_CHANNEL, NodeRecord, Notice, QUEUED_CHANNEL, REAP_LOCK, Reaped,
};
pub use live::{LIVE_CHANNEL, LiveChunk, LiveNotice, MAX_LIVE_DATA, WATCH_CHANNEL, Watch};

use std::{path::PathBuf, sync::Arc, time::Duration};

use deadpool_postgres::{Manager, ManagerConfig, Object, Pool, RecyclingMethod, Runtime};
use strictpy_types::{JobStatus, Outcome};
use tokio_postgres::{
    NoTls, Row,
    types::{ToSql, Type},
};
use uuid::Uuid;

use crate::crypto::Keyring;
use crate::rows::{
    self, COLUMNS, Columns, Value, bad_column, final_statuses, new_callback, now_ms, parse_id,
    pending_only, queued_record, seal_json, to_json,
};
use crate::{
    AuditQuery, AuditRecord, Callback, CompiledForm, Created, Erased, FunctionPut, FunctionQuery,
    FunctionRecord, FunctionWrite, JobCap, JobRecord, JobStore, ListQuery, LockoutRule,
    NewAuditEvent, NewFunction, NewJob, Purged, Recovery, StoreError, StoreFuture, TokenRecord,
};

/// The key of the advisory lock migrations run under (an arbitrary constant:
/// "strictpy" in ASCII, so other applications sharing the database are
/// unlikely to pick it).
pub const MIGRATION_LOCK: i64 = 0x7374_7269_6374_7079;

/// Schema migrations, applied in order, all in one transaction under
/// [`MIGRATION_LOCK`], each recorded in `schema_migrations`. Never edit one
/// that has shipped: append a new one. Version 1 is the SQLite schema as of
/// its version 2, in Postgres's types: ids sort bytewise (`COLLATE "C"`, as
/// SQLite compares text), so UUID v7 ids still sort by creation time.
const MIGRATIONS: &[(i64, &str)] = &[
    (
        1,
        r#"CREATE TABLE jobs (
        id TEXT COLLATE "C" PRIMARY KEY,
        tenant TEXT NOT NULL,
        idempotency_key TEXT,
        request_hash TEXT NOT NULL,
        status TEXT NOT NULL,
        created_at BIGINT NOT NULL,
        started_at BIGINT,
        finished_at BIGINT,
        spec TEXT NOT NULL,
        outcome TEXT,
        callback TEXT,
        token_id TEXT
    );
    CREATE UNIQUE INDEX jobs_tenant_idempotency ON jobs (tenant, idempotency_key);
    CREATE INDEX jobs_tenant_status_id ON jobs (tenant, status, id);
    CREATE INDEX jobs_status_id ON jobs (status, id);
    CREATE INDEX jobs_finished_at ON jobs (finished_at);
    CREATE TABLE tokens (
        id TEXT COLLATE "C" PRIMARY KEY,
        kind TEXT NOT NULL,
        tenant TEXT NOT NULL,
        name TEXT NOT NULL,
        hash TEXT NOT NULL,
        scopes TEXT NOT NULL,
        created_at BIGINT NOT NULL,
        expires_at BIGINT,
        last_used_at BIGINT,
        revoked_at BIGINT,
        parent_id TEXT,
        family_id TEXT,
        used_at BIGINT,
        rate_limit TEXT
    );
    CREATE INDEX tokens_tenant ON tokens (tenant);
    CREATE INDEX tokens_parent ON tokens (parent_id);
    CREATE INDEX tokens_family ON tokens (family_id);
    CREATE TABLE audit (
        id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        at BIGINT NOT NULL,
        event TEXT NOT NULL,
        tenant TEXT,
        token_id TEXT,
        ip TEXT,
        details TEXT NOT NULL
    );
    CREATE INDEX audit_at ON audit (at);
    CREATE INDEX audit_tenant_id ON audit (tenant, id);"#,
    ),
    (2, cluster::MIGRATION),
    // What several nodes need: delivery claims, the token and lockout
    // indexes and tables (`duties.rs`).
    (3, duties::MIGRATION),
    (
        4,
        // Stored functions, as SQLite's version 3; names sort bytewise.
        r#"CREATE TABLE functions (
        tenant TEXT NOT NULL,
        name TEXT COLLATE "C" NOT NULL,
        version BIGINT NOT NULL,
        source TEXT NOT NULL,
        allow TEXT NOT NULL,
        limits TEXT NOT NULL,
        token_id TEXT,
        created_at BIGINT NOT NULL,
        deleted_at BIGINT,
        compiled TEXT,
        compiled_key TEXT,
        compiled_checksum TEXT,
        PRIMARY KEY (tenant, name, version)
    );"#,
    ),
];

/// How to reach the database.
#[derive(Clone, Default)]
pub struct PgOptions {
    /// A libpq-style URL (`postgres://user[:password]@host[:port]/db`) or
    /// key/value string. A password here wins over the two below.
    pub url: String,
    /// A file whose first line is the password, used when the URL has none
    /// and `PGPASSWORD` is not set.
    pub password_file: Option<PathBuf>,
    /// Connections in the pool; `None` takes twice the cores plus two.
    pub pool_size: Option<usize>,
    /// How long a statement waits for a free connection, or a new connection
    /// for the server, before the store answers [`StoreError::Unavailable`].
    pub timeout: Option<Duration>,
}

impl std::fmt::Debug for PgOptions {
    /// Never prints the URL, which may hold the password.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgOptions")
            .field("password_file", &self.password_file)
            .field("pool_size", &self.pool_size)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

/// A [`JobStore`] on PostgreSQL.
#[derive(Clone)]
pub struct PostgresStore {
    /// The connection pool.
    pool: Pool,
    /// Seals the `spec` and `outcome` columns, as in the SQLite store.
    keys: Arc<Keyring>,
    /// The connection settings, for the `LISTEN` connection outside the pool.
    config: tokio_postgres::Config,
}

impl std::fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresStore")
            .field("pool", &self.pool.status())
            .finish_non_exhaustive()
    }
}

impl From<tokio_postgres::Error> for StoreError {
    /// A statement the server refused is [`StoreError::Postgres`]; a
    /// connection that failed, closed or timed out is
    /// [`StoreError::Unavailable`], which callers may retry.
    fn from(err: tokio_postgres::Error) -> Self {
        if err.as_db_error().is_some() {
            StoreError::Postgres(err)
        } else {
            StoreError::Unavailable(err.to_string())
        }
    }
}

impl From<deadpool_postgres::PoolError> for StoreError {
    fn from(err: deadpool_postgres::PoolError) -> Self {
        match err {
            deadpool_postgres::PoolError::Backend(e) => e.into(),
            other => StoreError::Unavailable(other.to_string()),
        }
    }
}

impl PostgresStore {
    /// Connects, runs pending migrations and checks that `keys` open the
    /// newest job (see [`crate::SqliteStore::open`]).
    pub async fn connect(options: &PgOptions, keys: Arc<Keyring>) -> Result<Self, StoreError> {
        let timeout = options.timeout.unwrap_or(Duration::from_secs(5));
        let mut config: tokio_postgres::Config = options
            .url
            .parse()
            .map_err(|e: tokio_postgres::Error| StoreError::Config(e.to_string()))?;
        if config.get_password().is_none()
            && let Some(password) = password(options)?
        {
            config.password(password);
        }
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(timeout);
        }
        if config.get_application_name().is_none() {
            config.application_name("strictpy");
        }
        let manager = Manager::from_config(
            config.clone(),
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let cores = std::thread::available_parallelism().map_or(1, usize::from);
        let pool = Pool::builder(manager)
            .max_size(options.pool_size.unwrap_or(cores * 2 + 2).max(1))
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(timeout))
            .create_timeout(Some(timeout))
            .build()
            .map_err(|e| StoreError::Config(e.to_string()))?;
        let store = Self { pool, keys, config };
        store.migrate().await?;
        let client = store.client().await?;
        let newest = client
            .query_opt("SELECT spec FROM jobs ORDER BY id DESC LIMIT 1", &[])
            .await?
            .map(|r| r.try_get::<_, String>(0))
            .transpose()?;
        rows::check_newest_key(newest.as_deref(), &store.keys)?;
        Ok(store)
    }

    /// A connection from the pool.
    async fn client(&self) -> Result<Object, StoreError> {
        Ok(self.pool.get().await?)
    }

    /// Applies every migration newer than the recorded version, in one
    /// transaction under [`MIGRATION_LOCK`].
    async fn migrate(&self) -> Result<(), StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
            .await?;
        tx.batch_execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations (
                version BIGINT PRIMARY KEY,
                applied_at BIGINT NOT NULL
            )",
        )
        .await?;
        let current: i64 = tx
            .query_one(
                "SELECT COALESCE(MAX(version), 0)::BIGINT FROM schema_migrations",
                &[],
            )
            .await?
            .try_get(0)?;
        let mut applied = Vec::new();
        for (version, sql) in MIGRATIONS.iter().filter(|(v, _)| *v > current) {
            tx.batch_execute(sql).await?;
            tx.execute(
                "INSERT INTO schema_migrations (version, applied_at) VALUES ($1, $2)",
                &[version, &now_ms()],
            )
            .await?;
            applied.push(*version);
        }
        tx.commit().await?;
        for version in applied {
            tracing::info!(version, "applied store migration");
        }
        Ok(())
    }

    /// Runs `f` on a pooled connection with the keys.
    fn with<'a, T, F, Fut>(&'a self, f: F) -> StoreFuture<'a, T>
    where
        T: Send + 'a,
        F: FnOnce(Object, &'a Keyring) -> Fut + Send + 'a,
        Fut: Future<Output = Result<T, StoreError>> + Send + 'a,
    {
        Box::pin(async move {
            let client = self.client().await?;
            f(client, &self.keys).await
        })
    }
}

/// The database's clock in Unix milliseconds: leases written by one node
/// and read by another compare times of one clock, not two, so nodes whose
/// clocks disagree still agree on which lease expired.
const DB_NOW_MS: &str = "(EXTRACT(EPOCH FROM clock_timestamp()) * 1000)::BIGINT";

/// The lease a job inserted already claimed is written with, as
/// [`PostgresStore::claim`] would have leased it.
#[derive(Debug, Clone, Copy)]
pub struct Claim<'a> {
    /// The node whose worker runs the job.
    pub node: &'a str,
    /// Lease length in milliseconds, from now by the database's clock.
    pub lease_ms: i64,
    /// The job's start, Unix milliseconds (this node's clock, as a claim's).
    pub started_at: i64,
}

/// The password when the URL has none: `PGPASSWORD`, else the first line of
/// the password file.
fn password(options: &PgOptions) -> Result<Option<String>, StoreError> {
    if let Some(p) = std::env::var_os("PGPASSWORD") {
        return Ok(Some(p.to_string_lossy().into_owned()));
    }
    let Some(path) = &options.password_file else {
        return Ok(None);
    };
    let text = std::fs::read_to_string(path).map_err(|e| {
        StoreError::Config(format!(
            "cannot read the password file {}: {e}",
            path.display()
        ))
    })?;
    Ok(text.lines().next().map(str::to_owned))
}

impl Columns for Row {
    fn value(&self, index: usize) -> Result<Value, StoreError> {
        let column = self
            .columns()
            .get(index)
            .ok_or_else(|| bad_column(index, "no such column"))?;
        // BIGINT and BIGSERIAL columns are INT8; every other column is TEXT.
        let value = if *column.type_() == Type::INT8 {
            self.try_get::<_, Option<i64>>(index)
                .map(|n| n.map_or(Value::Null, Value::Int))
        } else {
            self.try_get::<_, Option<String>>(index)
                .map(|t| t.map_or(Value::Null, Value::Text))
        };
        value.map_err(|e| bad_column(index, e))
    }
}

/// Decodes job rows selected with [`COLUMNS`].
fn decode_jobs(rows: &[Row], keys: &Keyring) -> Result<Vec<JobRecord>, StoreError> {
    rows.iter().map(|r| rows::job(r, keys)).collect()
}

/// One statement's parameters.
type Params<'a> = [&'a (dyn ToSql + Sync)];

/// Runs a cached statement that selects [`COLUMNS`] and decodes the jobs.
async fn query_jobs(
    client: &Object,
    keys: &Keyring,
    sql: &str,
    params: &Params<'_>,
) -> Result<Vec<JobRecord>, StoreError> {
    let stmt = client.prepare_cached(sql).await?;
    decode_jobs(&client.query(&stmt, params).await?, keys)
}

/// Runs a cached statement; returns the rows it changed.
async fn execute(client: &Object, sql: &str, params: &Params<'_>) -> Result<u64, StoreError> {
    let stmt = client.prepare_cached(sql).await?;
    Ok(client.execute(&stmt, params).await?)
}

/// One job by id.
async fn get_job(
    client: &Object,
    keys: &Keyring,
    id: &str,
) -> Result<Option<JobRecord>, StoreError> {
    let jobs = query_jobs(
        client,
        keys,
        &format!("SELECT {COLUMNS} FROM jobs WHERE id = $1"),
        &[&id],
    )
    .await?;
    Ok(jobs.into_iter().next())
}

/// Inserts a job; if the tenant already has one under its idempotency key,
/// the unique index turns the insert into nothing and that job is returned.
async fn insert(client: &Object, keys: &Keyring, job: NewJob) -> Result<Created, StoreError> {
    let id = job.id.to_string();
    let callback = new_callback(&job);
    let inserted = execute(
        client,
        "INSERT INTO jobs (id, tenant, idempotency_key, request_hash, status, created_at, spec, callback, token_id)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
         ON CONFLICT (tenant, idempotency_key) DO NOTHING",
        &[
            &id,
            &job.tenant,
            &job.idempotency_key,
            &job.request_hash,
            &JobStatus::Queued.as_str(),
            &job.created_at,
            &seal_json(keys, "spec", &id, &job.spec)?,
            &callback.as_ref().map(to_json).transpose()?,
            &job.token_id,
        ],
    )
    .await?;
    if inserted == 1 {
        return Ok(Created::New(queued_record(job, callback)));
    }
    // The conflicting row is committed: ON CONFLICT waited for its
    // transaction, and this next statement sees it.
    job_by_key(client, keys, &job.tenant, job.idempotency_key.as_deref())
        .await?
        .map(Created::Existing)
        .ok_or_else(|| rows::no_holder_of_key(&id))
}

/// The tenant's job under idempotency key `key`, if it has one.
async fn job_by_key(
    client: &Object,
    keys: &Keyring,
    tenant: &str,
    key: Option<&str>,
) -> Result<Option<JobRecord>, StoreError> {
    let jobs = query_jobs(
        client,
        keys,
        &format!("SELECT {COLUMNS} FROM jobs WHERE tenant = $1 AND idempotency_key = $2"),
        &[&tenant, &key],
    )
    .await?;
    Ok(jobs.into_iter().next())
}

impl JobStore for PostgresStore {
    fn create(&self, job: NewJob) -> StoreFuture<'_, Created> {
        self.with(move |client, keys| async move { insert(&client, keys, job).await })
    }

    fn get(&self, id: Uuid) -> StoreFuture<'_, Option<JobRecord>> {
        self.with(move |client, keys| async move { get_job(&client, keys, &id.to_string()).await })
    }

    fn list(&self, query: ListQuery) -> StoreFuture<'_, Vec<JobRecord>> {
        self.with(move |client, keys| async move {
            let before = query.before.map(|id| id.to_string());
            let status = query.status.map(JobStatus::as_str);
            query_jobs(
                &client,
                keys,
                &format!(
                    "SELECT {COLUMNS} FROM jobs
                     WHERE tenant = $1
                       AND ($2::TEXT IS NULL OR status = $2)
                       AND ($3::TEXT IS NULL OR id < $3)
                     ORDER BY id DESC
                     LIMIT $4"
                ),
                &[&query.tenant, &status, &before, &i64::from(query.limit)],
            )
            .await
        })
    }

    fn start(&self, id: Uuid, at: i64) -> StoreFuture<'_, Option<JobRecord>> {
        self.with(move |client, keys| async move {
            let jobs = query_jobs(
                &client,
                keys,
                &format!(
                    "UPDATE jobs SET status = $1, started_at = $2 WHERE id = $3 AND status = $4
                     RETURNING {COLUMNS}"
                ),
                &[
                    &JobStatus::Running.as_str(),
                    &at,
                    &id.to_string(),
                    &JobStatus::Queued.as_str(),
                ],
            )
            .await?;
            Ok(jobs.into_iter().next())
        })
    }

    fn finish(
        &self,
        id: Uuid,
        status: JobStatus,
        outcome: Outcome,
        at: i64,
    ) -> StoreFuture<'_, bool> {
        self.with(move |client, keys| async move {
            let id = id.to_string();
            let changed = execute(
                &client,
                "UPDATE jobs SET status = $1, outcome = $2, finished_at = $3 WHERE id = $4 AND status = $5",
                &[
                    &status.as_str(),
                    &seal_json(keys, "outcome", &id, &outcome)?,
                    &at,
                    &id,
                    &JobStatus::Running.as_str(),
                ],
            )
            .await?;
            Ok(changed == 1)
        })
    }

    fn cancel_queued(&self, id: Uuid, outcome: Outcome, at: i64) -> StoreFuture<'_, bool> {
        self.with(move |client, keys| async move {
            let id = id.to_string();
            let changed = execute(
                &client,
                "UPDATE jobs SET status = $1, outcome = $2, finished_at = $3 WHERE id = $4 AND status = $5",
                &[
                    &JobStatus::Cancelled.as_str(),
                    &seal_json(keys, "outcome", &id, &outcome)?,
                    &at,
                    &id,
                    &JobStatus::Queued.as_str(),
                ],
            )
            .await?;
            Ok(changed == 1)
        })
    }

    fn set_callback(&self, id: Uuid, callback: Callback) -> StoreFuture<'_, ()> {
        self.with(move |client, _| async move {
            execute(
                &client,
                "UPDATE jobs SET callback = $1 WHERE id = $2",
                &[&to_json(&callback)?, &id.to_string()],
            )
            .await?;
            Ok(())
        })
    }

    fn recover(&self, interrupted: Outcome, at: i64) -> StoreFuture<'_, Recovery> {
        self.with(move |mut client, keys| async move {
            let tx = client.transaction().await?;
            let ids = |rows: Vec<Row>| {
                rows.iter()
                    .map(|r| parse_id(&r.try_get::<_, String>(0)?))
                    .collect::<Result<Vec<_>, StoreError>>()
            };
            let running = ids(tx
                .query(
                    "SELECT id FROM jobs WHERE status = $1 ORDER BY id FOR UPDATE",
                    &[&JobStatus::Running.as_str()],
                )
                .await?)?;
            // One statement per job: each sealed outcome is bound to its row.
            for id in &running {
                let id = id.to_string();
                tx.execute(
                    "UPDATE jobs SET status = $1, outcome = $2, finished_at = $3 WHERE id = $4",
                    &[
                        &JobStatus::Failed.as_str(),
                        &seal_json(keys, "outcome", &id, &interrupted)?,
                        &at,
                        &id,
                    ],
                )
                .await?;
            }
            let queued = ids(tx
                .query(
                    "SELECT id FROM jobs WHERE status = $1 ORDER BY id",
                    &[&JobStatus::Queued.as_str()],
                )
                .await?)?;
            tx.commit().await?;
            Ok(Recovery {
                interrupted: running,
                queued,
            })
        })
    }

    fn pending_callbacks(&self) -> StoreFuture<'_, Vec<JobRecord>> {
        self.with(move |client, keys| async move {
            let [succeeded, failed, cancelled] = final_statuses();
            let jobs = query_jobs(
                &client,
                keys,
                &format!(
                    "SELECT {COLUMNS} FROM jobs
                     WHERE callback IS NOT NULL AND status IN ($1, $2, $3)
                     ORDER BY id"
                ),
                &[&succeeded, &failed, &cancelled],
            )
            .await?;
            Ok(pending_only(jobs))
        })
    }

    fn queued_ahead(&self, id: Uuid) -> StoreFuture<'_, u64> {
        self.with(move |client, _| async move {
            // Uses the `(status, id)` index; `id` collates as "C", so text
            // order is creation order.
            let row = client
                .query_one(
                    "SELECT COUNT(*) FROM jobs WHERE status = $1 AND id < $2",
                    &[&JobStatus::Queued.as_str(), &id.to_string()],
                )
                .await?;
            let n: i64 = row.try_get(0)?;
            Ok(u64::try_from(n).unwrap_or(0))
        })
    }

    fn ping(&self) -> StoreFuture<'_, ()> {
        self.with(|client, _| async move {
            client.simple_query("SELECT 1").await?;
            Ok(())
        })
    }

    fn postgres(&self) -> Option<PostgresStore> {
        Some(self.clone())
    }

    fn insert_token(&self, token: TokenRecord) -> StoreFuture<'_, ()> {
        self.with(move |client, _| async move { security::insert_token(&client, &token).await })
    }

    fn token(&self, id: String) -> StoreFuture<'_, Option<TokenRecord>> {
        self.with(move |client, _| async move { security::token(&client, &id).await })
    }

    fn list_tokens(&self, tenant: Option<String>) -> StoreFuture<'_, Vec<TokenRecord>> {
        self.with(move |client, _| async move {
            security::list_tokens(&client, tenant.as_deref()).await
        })
    }

    fn has_tokens(&self) -> StoreFuture<'_, bool> {
        self.with(|client, _| async move { security::has_tokens(&client).await })
    }

    fn revoke_token(&self, id: String, at: i64) -> StoreFuture<'_, bool> {
        self.with(
            move |mut client, _| async move { security::revoke_token(&mut client, &id, at).await },
        )
    }

    fn revoke_family(&self, family_id: String, at: i64) -> StoreFuture<'_, u64> {
        self.with(
            move |client, _| async move { security::revoke_family(&client, &family_id, at).await },
        )
    }

    fn consume_refresh(&self, id: String, at: i64) -> StoreFuture<'_, bool> {
        self.with(move |client, _| async move { security::consume_refresh(&client, &id, at).await })
    }

    fn touch_token(&self, id: String, at: i64) -> StoreFuture<'_, ()> {
        self.with(move |client, _| async move { security::touch_token(&client, &id, at).await })
    }

    fn append_audit(&self, events: Vec<NewAuditEvent>) -> StoreFuture<'_, ()> {
        self.with(
            move |mut client, _| async move { security::append_audit(&mut client, &events).await },
        )
    }

    fn list_audit(&self, query: AuditQuery) -> StoreFuture<'_, Vec<AuditRecord>> {
        self.with(move |client, _| async move { security::list_audit(&client, &query).await })
    }

    fn purge(
        &self,
        jobs_before: i64,
        audit_before: i64,
        tokens_before: i64,
    ) -> StoreFuture<'_, Purged> {
        self.with(move |mut client, _| async move {
            security::purge(&mut client, jobs_before, audit_before, tokens_before).await
        })
    }

    fn tenant_jobs(&self, tenant: String) -> StoreFuture<'_, Vec<JobRecord>> {
        self.with(move |client, keys| async move {
            query_jobs(
                &client,
                keys,
                &format!("SELECT {COLUMNS} FROM jobs WHERE tenant = $1 ORDER BY id"),
                &[&tenant],
            )
            .await
        })
    }

    fn erase_tenant(
        &self,
        tenant: String,
        replacement: String,
        at: i64,
    ) -> StoreFuture<'_, Erased> {
        self.with(move |mut client, _| async move {
            security::erase_tenant(&mut client, &tenant, &replacement, at).await
        })
    }

    fn insert_first_token(&self, token: TokenRecord) -> StoreFuture<'_, bool> {
        self.with(move |client, _| async move { duties::insert_first_token(client, &token).await })
    }

    fn create_capped(&self, job: NewJob, cap: JobCap) -> StoreFuture<'_, Option<Created>> {
        self.with(move |client, keys| async move {
            duties::create_capped(client, keys, job, &cap, None).await
        })
    }

    fn claim_callback(&self, id: Uuid, owner: String, lease_ms: i64) -> StoreFuture<'_, bool> {
        self.with(move |client, _| async move {
            duties::claim_callback(&client, id, &owner, lease_ms).await
        })
    }

    fn claim_pending_callbacks(
        &self,
        owner: String,
        lease_ms: i64,
        unclaimed_ms: i64,
        limit: u32,
    ) -> StoreFuture<'_, Vec<Uuid>> {
        self.with(move |client, _| async move {
            duties::claim_pending_callbacks(&client, &owner, lease_ms, unclaimed_ms, limit).await
        })
    }

    fn record_auth_failure(
        &self,
        ip: String,
        at: i64,
        rule: LockoutRule,
    ) -> StoreFuture<'_, Option<i64>> {
        self.with(move |mut client, _| async move {
            duties::record_auth_failure(&mut client, &ip, at, rule).await
        })
    }

    fn locked_until(&self, ip: String, at: i64) -> StoreFuture<'_, Option<i64>> {
        self.with(move |client, _| async move { duties::locked_until(&client, &ip, at).await })
    }

    fn put_function(
        &self,
        function: NewFunction,
        write: FunctionWrite,
    ) -> StoreFuture<'_, FunctionPut> {
        self.with(move |mut client, keys| async move {
            functions::put_function(&mut client, keys, function, write).await
        })
    }

    fn function(
        &self,
        tenant: String,
        name: String,
        version: Option<i64>,
    ) -> StoreFuture<'_, Option<FunctionRecord>> {
        self.with(move |client, keys| async move {
            functions::function(&client, keys, &tenant, &name, version).await
        })
    }

    fn list_functions(&self, query: FunctionQuery) -> StoreFuture<'_, Vec<FunctionRecord>> {
        self.with(move |client, keys| async move {
            functions::list_functions(&client, keys, &query).await
        })
    }

    fn function_versions(&self, tenant: String, name: String) -> StoreFuture<'_, Vec<i64>> {
        self.with(move |client, _| async move {
            functions::function_versions(&client, &tenant, &name).await
        })
    }

    fn delete_function(
        &self,
        tenant: String,
        name: String,
        version: Option<i64>,
        at: i64,
    ) -> StoreFuture<'_, u64> {
        self.with(move |client, _| async move {
            functions::delete_function(&client, &tenant, &name, version, at).await
        })
    }

    fn set_compiled(
        &self,
        tenant: String,
        name: String,
        version: i64,
        compiled: CompiledForm,
    ) -> StoreFuture<'_, ()> {
        self.with(move |client, keys| async move {
            functions::set_compiled(&client, keys, &tenant, &name, version, &compiled).await
        })
    }

    fn tenant_functions(&self, tenant: String) -> StoreFuture<'_, Vec<FunctionRecord>> {
        self.with(move |client, keys| async move {
            functions::tenant_functions(&client, keys, &tenant).await
        })
    }
}
