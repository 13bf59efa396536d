//! Durable job storage for the HTTP service: the [`JobStore`] trait, its
//! embedded SQLite implementation, [`SqliteStore`] (the default), and
//! [`PostgresStore`]; [`StoreLocation`] picks one from a store URL.
//!
//! The trait is asynchronous (boxed futures, so it stays object-safe)
//! because the Postgres store talks to the database over the network. Both
//! schemas keep the same shape: `TEXT` and `BIGINT` columns, JSON kept as
//! text, timestamps as Unix milliseconds; `rows.rs` holds what the two
//! share above their drivers.

mod cluster;
pub mod crypto;
mod functions;
mod location;
mod postgres;
mod rows;
mod security;
mod sqlite;
mod unavailable;

use std::{collections::BTreeSet, future::Future, pin::Pin};

use serde::{Deserialize, Serialize};
use strictpy_types::{JobStatus, Limits, Outcome};
use uuid::Uuid;

pub use cluster::{JobCap, LockoutRule};
pub use crypto::{KeyError, Keyring};
pub use functions::{
    CompiledForm, FunctionPut, FunctionQuery, FunctionRecord, FunctionWrite, NewFunction,
};
pub use location::{StoreLocation, without_password};
pub use postgres::{
    CANCEL_CHANNEL, Claim, FINAL_CHANNEL, LIVE_CHANNEL, LiveChunk, LiveNotice, MAX_LIVE_DATA,
    MIGRATION_LOCK, NodeRecord, Notice, PgOptions, PostgresStore, QUEUED_CHANNEL, REAP_LOCK,
    Reaped, WATCH_CHANNEL, Watch,
};
pub use security::{
    AuditQuery, AuditRecord, Erased, NewAuditEvent, Purged, TokenKind, TokenLimits, TokenRecord,
};
pub use sqlite::{DB_FILE, SqliteStore, run_statements_inline};

/// Creates the data dir (and its parents) if it does not exist. A directory
/// created here is private to the service's user (0700 on Unix): it holds the
/// database, keys and tokens. An existing directory keeps the permissions
/// its operator gave it.
pub fn create_data_dir(path: &std::path::Path) -> std::io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(path)
}

/// What every store method returns: a boxed future, so `dyn JobStore` works.
pub type StoreFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, StoreError>> + Send + 'a>>;

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// SQLite refused or failed the statement.
    #[error("database error: {0}")]
    Database(#[from] rusqlite::Error),
    /// PostgreSQL refused the statement (its SQLSTATE is in the error).
    #[error("database error: {0}")]
    Postgres(tokio_postgres::Error),
    /// The database cannot be reached: the connection failed, closed or
    /// timed out, or the pool had no connection in time. Worth retrying;
    /// [`StoreError::is_unavailable`] also counts a full disk, a read-only
    /// database and the like among the other variants.
    #[error("the database is unavailable: {0}")]
    Unavailable(String),
    /// The store URL or its credentials are unusable.
    #[error("store configuration: {0}")]
    Config(String),
    /// A stored JSON column could not be read back or written.
    #[error("stored data is not valid: {0}")]
    Corrupt(String),
    /// The data directory could not be created.
    #[error("cannot prepare the data directory {path}: {source}")]
    DataDir {
        /// The directory.
        path: std::path::PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The blocking task running the statement died.
    #[error("the store's worker thread failed: {0}")]
    Join(String),
    /// An encrypted column could not be sealed or opened: its key is not
    /// configured, or it was altered or moved to another row.
    #[error("encrypted data: {0}")]
    Crypto(String),
}

/// Everything needed to run a job, as validated by the server.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobSpec {
    /// The Python source, already accepted by the static check.
    pub code: String,
    /// The program's stdin.
    pub stdin: String,
    /// A JSON object whose keys become globals.
    pub context: Option<serde_json::Value>,
    /// The extra modules the request asked for.
    pub allow: Vec<String>,
    /// The effective import allowlist.
    pub allowlist: BTreeSet<String>,
    /// The limits as applied.
    pub limits: Limits,
    /// The seed for every source of randomness.
    pub seed: Option<u64>,
    /// The stored function this job invokes, if it is an invocation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub function: Option<FunctionRef>,
}

/// The stored function version a job runs (its `code` is that version's).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FunctionRef {
    /// The function's name.
    pub name: String,
    /// The version invoked.
    pub version: i64,
}

/// Where webhook delivery of a job's final state stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryState {
    /// Not delivered yet: the job is not final, or attempts are still going on.
    Pending,
    /// The receiver answered 2xx.
    Delivered,
    /// Every attempt failed, the receiver answered 4xx, or the URL was refused.
    Failed,
}

/// One POST of a job's final state to its callback URL.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeliveryAttempt {
    /// When the attempt started, Unix milliseconds.
    pub at: i64,
    /// The receiver's HTTP status, if it answered.
    pub status_code: Option<u16>,
    /// Why the attempt failed without an answer, or what the answer meant.
    pub error: Option<String>,
    /// How long the attempt took, in milliseconds.
    pub duration_ms: u64,
}

/// A job's webhook: where it goes and how delivery went.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Callback {
    /// The URL the final state is POSTed to.
    pub url: String,
    /// The delivery state.
    pub state: DeliveryState,
    /// Every attempt so far, oldest first.
    pub attempts: Vec<DeliveryAttempt>,
}

/// A job as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobRecord {
    /// The job id (UUID v7, so ids sort by creation time).
    pub id: Uuid,
    /// The tenant that owns it.
    pub tenant: String,
    /// The token that submitted it (its public id).
    pub token_id: Option<String>,
    /// The client's idempotency key, if it sent one.
    pub idempotency_key: Option<String>,
    /// A hash of the request, to tell a retry from a different request that
    /// reuses a key.
    pub request_hash: String,
    /// Where the job is in its life.
    pub status: JobStatus,
    /// When it was accepted, Unix milliseconds.
    pub created_at: i64,
    /// When a worker picked it up.
    pub started_at: Option<i64>,
    /// When it reached a final status.
    pub finished_at: Option<i64>,
    /// What to run.
    pub spec: JobSpec,
    /// What the run produced, once final.
    pub outcome: Option<Outcome>,
    /// The webhook, if the job has one.
    pub callback: Option<Callback>,
}

/// A job to insert.
#[derive(Debug, Clone, PartialEq)]
pub struct NewJob {
    /// The new id.
    pub id: Uuid,
    /// The owning tenant.
    pub tenant: String,
    /// The submitting token's public id.
    pub token_id: Option<String>,
    /// The client's idempotency key.
    pub idempotency_key: Option<String>,
    /// See [`JobRecord::request_hash`].
    pub request_hash: String,
    /// Acceptance time, Unix milliseconds.
    pub created_at: i64,
    /// What to run.
    pub spec: JobSpec,
    /// Where to POST the final state.
    pub callback_url: Option<String>,
}

impl NewJob {
    /// The record [`JobStore::create_running_unsynced`] stores for this job
    /// with `started_at`, made without the store: a caller can hand the job
    /// to a worker while the insert runs.
    pub fn running_record(&self, started_at: i64) -> JobRecord {
        rows::new_record(self.clone(), rows::new_callback(self), Some(started_at))
    }
}

/// The result of [`JobStore::create`].
#[derive(Debug, Clone, PartialEq)]
pub enum Created {
    /// A new job was inserted, in status `queued`.
    New(JobRecord),
    /// The client already has a job under this idempotency key; nothing was
    /// inserted.
    Existing(JobRecord),
}

/// A page of [`JobStore::list`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListQuery {
    /// Only this tenant's jobs.
    pub tenant: String,
    /// Only jobs in this status.
    pub status: Option<JobStatus>,
    /// Only jobs older than this one (the cursor).
    pub before: Option<Uuid>,
    /// At most this many.
    pub limit: u32,
}

/// What [`JobStore::recover`] found at start-up.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Recovery {
    /// Jobs that were running when the previous process stopped; they are now
    /// `failed`.
    pub interrupted: Vec<Uuid>,
    /// Jobs still queued, oldest first, to be run again.
    pub queued: Vec<Uuid>,
}

/// What a store several nodes share answers to the one-process hand-offs
/// ([`JobStore::create_running_unsynced`],
/// [`JobStore::create_finished_unsynced`]): there a running job is always a
/// node's claim.
fn claim_only<'a, T: 'a>() -> StoreFuture<'a, T> {
    Box::pin(async {
        Err(StoreError::Config(
            "this store hands running jobs out only through a claim".into(),
        ))
    })
}

/// Durable job storage. Every method commits before its future resolves.
pub trait JobStore: Send + Sync + std::fmt::Debug + 'static {
    /// Inserts a queued job, or returns the tenant's existing job with the
    /// same idempotency key.
    fn create(&self, job: NewJob) -> StoreFuture<'_, Created>;
    /// One job by id.
    fn get(&self, id: Uuid) -> StoreFuture<'_, Option<JobRecord>>;
    /// Jobs newest first.
    fn list(&self, query: ListQuery) -> StoreFuture<'_, Vec<JobRecord>>;
    /// Moves a queued job to `running`; `None` if it is not queued (it was
    /// cancelled meanwhile, or does not exist).
    fn start(&self, id: Uuid, at: i64) -> StoreFuture<'_, Option<JobRecord>>;
    /// Moves a running job to a final status with its outcome; false if it
    /// was not running.
    fn finish(
        &self,
        id: Uuid,
        status: JobStatus,
        outcome: Outcome,
        at: i64,
    ) -> StoreFuture<'_, bool>;
    /// Cancels a job that is still queued; false if it is not queued.
    fn cancel_queued(&self, id: Uuid, outcome: Outcome, at: i64) -> StoreFuture<'_, bool>;
    /// Replaces a job's webhook delivery record.
    fn set_callback(&self, id: Uuid, callback: Callback) -> StoreFuture<'_, ()>;
    /// Start-up recovery: every `running` job becomes `failed` with
    /// `interrupted` as its outcome, and the queued jobs are listed.
    fn recover(&self, interrupted: Outcome, at: i64) -> StoreFuture<'_, Recovery>;
    /// Final jobs whose webhook is still pending (the process stopped during
    /// delivery), oldest first.
    fn pending_callbacks(&self) -> StoreFuture<'_, Vec<JobRecord>>;
    /// Checks that the database answers.
    fn ping(&self) -> StoreFuture<'_, ()>;
    /// The Postgres store behind this one, whose queue is in the database
    /// (`postgres/cluster.rs`); `None` for SQLite, whose queue stays in the
    /// server's memory. This is the one answer to "may several server
    /// processes use this store at once": where it is `Some`, claims, caps
    /// and lockouts live in the database (`insert_first_token` and the
    /// methods after it).
    fn postgres(&self) -> Option<PostgresStore> {
        None
    }
    /// How many queued jobs, of every tenant, were created before job `id`
    /// (ids sort by creation): its place in the queue, counted in the
    /// database so that it holds for every node sharing it.
    fn queued_ahead(&self, id: Uuid) -> StoreFuture<'_, u64>;

    /// Stores a new token (its hash, never the secret).
    fn insert_token(&self, token: TokenRecord) -> StoreFuture<'_, ()>;
    /// One token by public id.
    fn token(&self, id: String) -> StoreFuture<'_, Option<TokenRecord>>;
    /// API tokens (not the exchanged ones), oldest first, optionally of one
    /// tenant.
    fn list_tokens(&self, tenant: Option<String>) -> StoreFuture<'_, Vec<TokenRecord>>;
    /// True when any token was ever made (even one since revoked): first
    /// start makes an admin token only into an empty store.
    fn has_tokens(&self) -> StoreFuture<'_, bool>;
    /// Revokes a token and every token exchanged for it; false if it was
    /// unknown or already revoked.
    fn revoke_token(&self, id: String, at: i64) -> StoreFuture<'_, bool>;
    /// Revokes every token of a refresh family; returns how many.
    fn revoke_family(&self, family_id: String, at: i64) -> StoreFuture<'_, u64>;
    /// Marks a refresh token used. False when it was already used or is
    /// revoked, which is how reuse is detected: exactly one caller wins.
    fn consume_refresh(&self, id: String, at: i64) -> StoreFuture<'_, bool>;
    /// Records that a token authenticated a request.
    fn touch_token(&self, id: String, at: i64) -> StoreFuture<'_, ()>;
    /// Appends security events.
    fn append_audit(&self, events: Vec<NewAuditEvent>) -> StoreFuture<'_, ()>;
    /// Security events, newest first.
    fn list_audit(&self, query: AuditQuery) -> StoreFuture<'_, Vec<AuditRecord>>;
    /// Deletes final jobs that finished before `jobs_before`, audit events
    /// before `audit_before`, and exchanged tokens expired before
    /// `tokens_before`.
    fn purge(
        &self,
        jobs_before: i64,
        audit_before: i64,
        tokens_before: i64,
    ) -> StoreFuture<'_, Purged>;
    /// Every job of a tenant, oldest first (for export).
    fn tenant_jobs(&self, tenant: String) -> StoreFuture<'_, Vec<JobRecord>>;
    /// Deletes a tenant's jobs, revokes its tokens and replaces its name by
    /// `replacement` (and drops client IPs) in the audit log and tokens.
    fn erase_tenant(&self, tenant: String, replacement: String, at: i64)
    -> StoreFuture<'_, Erased>;

    // What several nodes on one store need (`cluster.rs`). The defaults are
    // one process's behaviour, which is all SQLite needs.

    /// Inserts `token` only if the store has no token yet (the first-start
    /// admin token), atomically across processes; false if one exists.
    fn insert_first_token(&self, token: TokenRecord) -> StoreFuture<'_, bool>;
    /// [`JobStore::create`], unless `cap.budget_key` already has
    /// `cap.limit` jobs queued or running in the store: then `None` (or the
    /// existing job when the idempotency key replays one). The count and
    /// the insert are atomic across processes.
    fn create_capped(&self, job: NewJob, cap: JobCap) -> StoreFuture<'_, Option<Created>> {
        let _ = cap;
        let created = self.create(job);
        Box::pin(async move { created.await.map(Some) })
    }
    /// [`JobStore::create_capped`] for a job whose client holds its
    /// connection until the job is final (`wait: true`): the commit survives
    /// the process dying (`kill -9`) at once, but it may survive a power loss
    /// only after the next [`JobStore::sync`]. The default is
    /// `create_capped` itself (a commit that is durable in every sense).
    fn create_capped_unsynced(&self, job: NewJob, cap: JobCap) -> StoreFuture<'_, Option<Created>> {
        self.create_capped(job, cap)
    }
    /// [`JobStore::create_capped_unsynced`] for a `wait: true` job that a
    /// worker of this very process takes straight from the request, with no
    /// capped count (one process counts its own caps): the job is stored
    /// `running` since `started_at`, so it needs no [`JobStore::start`], one
    /// write fewer. Only a store that one process uses (`postgres()` is
    /// `None`) can do this: on a shared store a running job belongs to a
    /// node under a lease, which only a claim takes. The default refuses.
    fn create_running_unsynced(&self, job: NewJob, started_at: i64) -> StoreFuture<'_, Created> {
        let _ = (job, started_at);
        claim_only()
    }
    /// Stores, in one write, a job that a worker of this very process took
    /// straight from its waiting request (`wait: true`, no idempotency key)
    /// and that is final now: its insert and its end at once, as
    /// [`JobStore::create_running_unsynced`] and [`JobStore::finish`] would
    /// leave it. Unsynced in the same sense. Only a store one process uses
    /// can do this; the default refuses.
    fn create_finished_unsynced(
        &self,
        job: NewJob,
        started_at: i64,
        status: JobStatus,
        outcome: Outcome,
        finished_at: i64,
    ) -> StoreFuture<'_, ()> {
        let _ = (job, started_at, status, outcome, finished_at);
        claim_only()
    }
    /// Makes every commit so far survive a power loss: what
    /// [`JobStore::create_capped_unsynced`] left to the page cache is
    /// flushed. Nothing to do by default (every commit already is).
    fn sync(&self) -> StoreFuture<'_, ()> {
        Box::pin(async { Ok(()) })
    }
    /// Claims (or renews) the webhook delivery of job `id` for `owner` for
    /// `lease_ms` from now (the database's clock); false when another live
    /// owner holds it.
    fn claim_callback(&self, id: Uuid, owner: String, lease_ms: i64) -> StoreFuture<'_, bool> {
        let _ = (id, owner, lease_ms);
        Box::pin(async { Ok(true) })
    }
    /// Claims for `owner`, for `lease_ms`, up to `limit` final jobs whose
    /// webhook is pending and whose claim expired, or that nobody claimed
    /// and that finished more than `unclaimed_ms` ago; oldest first.
    fn claim_pending_callbacks(
        &self,
        owner: String,
        lease_ms: i64,
        unclaimed_ms: i64,
        limit: u32,
    ) -> StoreFuture<'_, Vec<Uuid>> {
        let _ = (owner, lease_ms, unclaimed_ms, limit);
        let pending = self.pending_callbacks();
        Box::pin(async move { Ok(pending.await?.into_iter().map(|j| j.id).collect()) })
    }
    /// Records a failed authentication from `ip` at `at`; returns the end
    /// of the lockout (Unix ms) when this failure started one. Only shared
    /// stores record failures (one process counts them in memory).
    fn record_auth_failure(
        &self,
        ip: String,
        at: i64,
        rule: LockoutRule,
    ) -> StoreFuture<'_, Option<i64>> {
        let _ = (ip, at, rule);
        Box::pin(async { Ok(None) })
    }
    /// The end of `ip`'s lockout (Unix ms) if it is locked out at `at`.
    fn locked_until(&self, ip: String, at: i64) -> StoreFuture<'_, Option<i64>> {
        let _ = (ip, at);
        Box::pin(async { Ok(None) })
    }
    /// Stores a function's next version (1 for a new name; numbers are never
    /// reused, even after a delete), unless `write` refuses it.
    fn put_function(
        &self,
        function: NewFunction,
        write: FunctionWrite,
    ) -> StoreFuture<'_, FunctionPut>;
    /// A live version of a tenant's function: `version`, or the newest.
    fn function(
        &self,
        tenant: String,
        name: String,
        version: Option<i64>,
    ) -> StoreFuture<'_, Option<FunctionRecord>>;
    /// The newest live version of each of a tenant's functions, by name.
    fn list_functions(&self, query: FunctionQuery) -> StoreFuture<'_, Vec<FunctionRecord>>;
    /// The numbers of a function's live versions, oldest first.
    fn function_versions(&self, tenant: String, name: String) -> StoreFuture<'_, Vec<i64>>;
    /// Deletes one live version, or every live version; returns how many.
    fn delete_function(
        &self,
        tenant: String,
        name: String,
        version: Option<i64>,
        at: i64,
    ) -> StoreFuture<'_, u64>;
    /// Replaces a version's compiled form (after the guest changed, or the
    /// stored one was found corrupt).
    fn set_compiled(
        &self,
        tenant: String,
        name: String,
        version: i64,
        compiled: CompiledForm,
    ) -> StoreFuture<'_, ()>;
    /// Every version of every function of a tenant, deleted ones included,
    /// by name and version (for export).
    fn tenant_functions(&self, tenant: String) -> StoreFuture<'_, Vec<FunctionRecord>>;
}
