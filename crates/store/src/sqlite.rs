//! The embedded default store: one SQLite file in the data dir, in WAL mode,
//! with migrations run when it opens.
//!
//! rusqlite is synchronous, so every statement runs on tokio's blocking pool
//! behind one connection mutex; SQLite serialises writers anyway, and one
//! connection keeps "select, then insert" steps atomic without retries.
//! Threads that may block anyway (the job workers) call
//! [`run_statements_inline`] once: their statements then run on the calling
//! thread, which saves two thread hand-offs per statement.

use std::{
    cell::Cell,
    path::{Path, PathBuf},
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
};

use rusqlite::{Connection, OptionalExtension, Row, params, types::ValueRef};
use strictpy_types::{JobStatus, Outcome};
use uuid::Uuid;

use crate::crypto::Keyring;
use crate::rows::{
    self, COLUMNS, Columns, Value, bad_column, final_statuses, inserted_status, new_callback,
    new_record, now_ms, parse_id, pending_only, seal_json, to_json,
};
use crate::{
    AuditQuery, AuditRecord, Callback, CompiledForm, Created, Erased, FunctionPut, FunctionQuery,
    FunctionRecord, FunctionWrite, JobRecord, JobStore, ListQuery, NewAuditEvent, NewFunction,
    NewJob, Purged, Recovery, StoreError, StoreFuture, TokenRecord,
};

mod functions;
mod security;

/// The file name of the database inside the data dir.
pub const DB_FILE: &str = "strictpy.db";

/// Schema migrations, applied in order, in one transaction (see [`migrate`]),
/// each recorded in `schema_migrations`. Never edit one that has shipped:
/// append a new one.
const MIGRATIONS: &[(i64, &str)] = &[
    (
        1,
        "CREATE TABLE jobs (
        id TEXT PRIMARY KEY,
        client TEXT NOT NULL,
        idempotency_key TEXT,
        request_hash TEXT NOT NULL,
        status TEXT NOT NULL,
        created_at BIGINT NOT NULL,
        started_at BIGINT,
        finished_at BIGINT,
        spec TEXT NOT NULL,
        outcome TEXT,
        callback TEXT
    );
    CREATE UNIQUE INDEX jobs_client_idempotency ON jobs (client, idempotency_key);
    CREATE INDEX jobs_client_status_id ON jobs (client, status, id);",
    ),
    (
        2,
        // Tenants, tokens and the audit log. Token secrets are never stored:
        // `hash` is the SHA-256 of the whole token. `audit.id` is an
        // INTEGER PRIMARY KEY (a BIGSERIAL on Postgres).
        "ALTER TABLE jobs RENAME COLUMN client TO tenant;
    ALTER TABLE jobs ADD COLUMN token_id TEXT;
    CREATE INDEX jobs_finished_at ON jobs (finished_at);
    CREATE TABLE tokens (
        id TEXT PRIMARY KEY,
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
        id INTEGER PRIMARY KEY,
        at BIGINT NOT NULL,
        event TEXT NOT NULL,
        tenant TEXT,
        token_id TEXT,
        ip TEXT,
        details TEXT NOT NULL
    );
    CREATE INDEX audit_at ON audit (at);
    CREATE INDEX audit_tenant_id ON audit (tenant, id);",
    ),
    (
        3,
        // Stored functions, one row per version (see `crate::functions`).
        // `source` and `compiled` are sealed like a job's spec.
        "CREATE TABLE functions (
        tenant TEXT NOT NULL,
        name TEXT NOT NULL,
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
    );",
    ),
];

thread_local! {
    /// Set on threads whose store calls run right there (see the module docs).
    static INLINE: Cell<bool> = const { Cell::new(false) };
}

/// From now on, the SQLite statements this thread's store futures run
/// execute on this thread instead of tokio's blocking pool. Only for
/// threads that are allowed to block (never an async runtime's worker): a
/// statement may wait for the connection and for an fsync.
pub fn run_statements_inline() {
    INLINE.with(|inline| inline.set(true));
}

/// True when this thread runs its statements itself.
fn inline() -> bool {
    INLINE.with(Cell::get)
}

/// Runs `run` on the blocking pool, or right here on a thread that called
/// [`run_statements_inline`].
async fn blocking<T, F>(run: F) -> Result<T, StoreError>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T, StoreError> + Send + 'static,
{
    if inline() {
        return run();
    }
    tokio::task::spawn_blocking(run)
        .await
        .map_err(|e| StoreError::Join(e.to_string()))?
}

/// How far the WAL is known to be on disk, for
/// [`JobStore::create_capped_unsynced`] and [`JobStore::sync`].
#[derive(Debug, Default)]
struct Flushed {
    /// Unsynced commits made so far (a counter, never reset).
    written: AtomicU64,
    /// The value of `written` the last completed fsync covered.
    synced: AtomicU64,
    /// Held while an fsync runs, so concurrent callers share one.
    flushing: Mutex<()>,
}

impl Flushed {
    /// Makes the unsynced commits up to `target` durable: one fdatasync of
    /// the WAL file covers every commit written before it started. With
    /// `synchronous=NORMAL` a checkpoint syncs the WAL before it copies
    /// pages and the database file after, so frames a checkpoint moved are
    /// on disk already, and syncing the WAL covers the rest.
    fn flush(&self, wal: &Path, target: u64) -> Result<(), StoreError> {
        let _one = self.flushing.lock().unwrap_or_else(|p| p.into_inner());
        if self.synced.load(Ordering::SeqCst) >= target {
            return Ok(()); // Another caller's fsync covered it meanwhile.
        }
        let upto = self.written.load(Ordering::SeqCst);
        std::fs::File::open(wal)
            .and_then(|f| f.sync_data())
            .map_err(|e| StoreError::Unavailable(format!("cannot sync {}: {e}", wal.display())))?;
        self.synced.fetch_max(upto, Ordering::SeqCst);
        Ok(())
    }
}

/// A [`JobStore`] on an embedded SQLite database.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    /// The one connection; see the module docs for why there is only one.
    conn: Arc<Mutex<Connection>>,
    /// The database's write-ahead log (`<file>-wal`), which [`JobStore::sync`]
    /// fsyncs.
    wal: PathBuf,
    /// What of the WAL is known to be on disk.
    flushed: Arc<Flushed>,
    /// Seals the `spec` and `outcome` columns of `jobs`, which hold the
    /// callers' code, input and output (see [`crate::crypto`]).
    keys: Arc<Keyring>,
    /// Checkpoints the WAL off the request path; stops with the last clone.
    _checkpointer: Arc<Checkpointer>,
}

/// A thread with its own connection that copies the WAL back into the
/// database file every [`Checkpointer::EVERY`] while it changes, as SQLite's
/// automatic checkpoint would (it does one per 1000 pages, which at full
/// load is about as often), but without making whichever statement crossed
/// the threshold wait for it. A PASSIVE checkpoint never blocks the writer
/// or readers, and with `synchronous=NORMAL` it syncs the WAL before copying
/// and the database file after, so what it moves stays on disk (see
/// [`Flushed::flush`]).
#[derive(Debug)]
struct Checkpointer {
    /// Dropping it (with the last store clone) ends the thread.
    stop: Option<std::sync::mpsc::Sender<()>>,
    /// The thread, joined on drop.
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Checkpointer {
    /// How often the WAL is looked at.
    const EVERY: std::time::Duration = std::time::Duration::from_millis(200);

    /// Starts the thread on the database `path`, whose WAL is `wal`.
    fn start(path: &Path, wal: PathBuf) -> Result<Self, StoreError> {
        let conn = Connection::open(path)?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        conn.pragma_update(None, "wal_autocheckpoint", 0)?;
        let (stop, stopped) = std::sync::mpsc::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("strictpy-checkpoint".into())
            .spawn(move || {
                // The WAL's length and mtime at the last checkpoint.
                let seen = |wal: &Path| {
                    std::fs::metadata(wal)
                        .ok()
                        .map(|m| (m.len(), m.modified().ok()))
                };
                let mut last = seen(&wal);
                // Ends when the store (the sender) is dropped.
                while let Err(std::sync::mpsc::RecvTimeoutError::Timeout) =
                    stopped.recv_timeout(Self::EVERY)
                {
                    let now = seen(&wal);
                    if now == last {
                        continue;
                    }
                    match conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(())) {
                        Ok(()) => last = seen(&wal),
                        Err(e) => {
                            tracing::warn!(error = %e, "WAL checkpoint failed; retrying later")
                        }
                    }
                }
            })
            .map_err(|e| StoreError::Unavailable(format!("cannot start the checkpointer: {e}")))?;
        Ok(Self {
            stop: Some(stop),
            thread: Some(thread),
        })
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl SqliteStore {
    /// Opens (creating if needed) `strictpy.db` in `data_dir`, switches it to
    /// WAL and runs pending migrations. Job data is sealed with `keys`; the
    /// open fails if the newest job is sealed with a key `keys` lacks (the
    /// key file was lost or replaced instead of rotated).
    pub fn open(data_dir: &Path, keys: Arc<Keyring>) -> Result<Self, StoreError> {
        crate::create_data_dir(data_dir).map_err(|source| StoreError::DataDir {
            path: data_dir.to_owned(),
            source,
        })?;
        Self::open_file(&data_dir.join(DB_FILE), keys)
    }

    /// [`SqliteStore::open`] on the database file `path` itself (a
    /// `sqlite://PATH` store URL); its directory must exist.
    pub fn open_file(path: &Path, keys: Arc<Keyring>) -> Result<Self, StoreError> {
        let created = !path.exists();
        let conn = Connection::open(path)?;
        // A new database is private to the service's user; SQLite gives its
        // -wal and -shm files the database file's permissions.
        #[cfg(unix)]
        if created {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(
                |source| StoreError::DataDir {
                    path: path.to_owned(),
                    source,
                },
            )?;
        }
        // WAL lets readers run beside the writer. synchronous=NORMAL makes a
        // commit durable against the process dying (kill -9); only `create`
        // switches to FULL, so that an accepted job also survives a power
        // loss, without paying an fsync for every later state change. After a
        // power loss a state change may roll back, which recovery handles like
        // a crash: a job back to `running` ends failed, one back to `queued`
        // runs again.
        // The busy timeout first: another process opening the file at the
        // same moment (the token CLI beside the server) holds its lock briefly.
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        // Room for every statement of the request path (`prepare_cached`),
        // with the listing and admin queries beside them.
        conn.set_prepared_statement_cache_capacity(64);
        migrate(&conn)?;
        check_newest_key(&conn, &keys)?;
        // The commit that fills the WAL past SQLite's threshold would run
        // the checkpoint itself (two fsyncs, milliseconds) while holding the
        // connection, in the middle of some request; the checkpointer's own
        // connection does it instead.
        conn.pragma_update(None, "wal_autocheckpoint", 0)?;
        let mut wal = path.as_os_str().to_owned();
        wal.push("-wal");
        let wal = PathBuf::from(wal);
        let checkpointer = Checkpointer::start(path, wal.clone())?;
        Ok(Self {
            conn: Arc::new(Mutex::new(conn)),
            wal,
            flushed: Arc::default(),
            keys,
            _checkpointer: Arc::new(checkpointer),
        })
    }

    /// [`SqliteStore::with`] for statements that read or write sealed
    /// columns: `f` also gets the keys.
    fn with_keys<T, F>(&self, f: F) -> StoreFuture<'_, T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection, &Keyring) -> Result<T, StoreError> + Send + 'static,
    {
        let keys = self.keys.clone();
        self.with(move |conn| f(conn, &keys))
    }

    /// Runs `f` with the connection on the blocking pool, or right here on
    /// a thread that called [`run_statements_inline`].
    fn with<T, F>(&self, f: F) -> StoreFuture<'_, T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let conn = self.conn.clone();
        let run = move || {
            // A panic while holding the lock poisons it; the connection
            // itself is still consistent (SQLite rolled back), so go on.
            let mut guard = conn.lock().unwrap_or_else(|p| p.into_inner());
            f(&mut guard)
        };
        Box::pin(blocking(run))
    }

    /// The insert of every unsynced create: queued, (with `started_at`)
    /// `running`, or (with `end` too) final. `synchronous` stays NORMAL:
    /// committed to the WAL in the page cache, which outlives the process;
    /// [`JobStore::sync`] flushes it.
    fn insert_unsynced(
        &self,
        job: NewJob,
        started_at: Option<i64>,
        end: Option<(JobStatus, Outcome, i64)>,
    ) -> StoreFuture<'_, Created> {
        let flushed = self.flushed.clone();
        self.with_keys_quick(move |conn, keys| {
            let end = end
                .as_ref()
                .map(|(status, outcome, at)| (*status, outcome, *at));
            let created = insert_row(conn, keys, job, started_at, end)?;
            if matches!(created, Created::New(_)) {
                flushed.written.fetch_add(1, Ordering::SeqCst);
            }
            Ok(created)
        })
    }

    /// [`SqliteStore::with_keys`] for a point statement (one row by its
    /// key, no fsync): when the connection is free it runs right here, even
    /// on an async runtime's thread, because the hop to the blocking pool
    /// and back costs more than the statement. When another statement holds
    /// the connection it queues on the blocking pool as usual, so a runtime
    /// thread never waits for the lock, only for its own few microseconds
    /// of SQLite (checkpoints, which fsync, run on their own thread; see
    /// [`Checkpointer`]).
    fn with_keys_quick<T, F>(&self, f: F) -> StoreFuture<'_, T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection, &Keyring) -> Result<T, StoreError> + Send + 'static,
    {
        let guard = match self.conn.try_lock() {
            Ok(guard) => Some(guard),
            // As in `with`: the connection survives a panic under the lock.
            Err(std::sync::TryLockError::Poisoned(p)) => Some(p.into_inner()),
            Err(std::sync::TryLockError::WouldBlock) => None,
        };
        match guard {
            Some(mut guard) => {
                let result = f(&mut guard, &self.keys);
                drop(guard);
                Box::pin(std::future::ready(result))
            }
            None => self.with_keys(f),
        }
    }
}

/// Applies every migration newer than the recorded version. The whole run
/// is one `BEGIN IMMEDIATE` transaction, which takes SQLite's write lock
/// before reading the version (as the Postgres store takes its advisory
/// lock): processes opening the file at once migrate it once.
fn migrate(conn: &Connection) -> Result<(), StoreError> {
    conn.execute_batch("BEGIN IMMEDIATE")?;
    match apply_migrations(conn) {
        Ok(applied) => {
            conn.execute_batch("COMMIT")?;
            for version in applied {
                tracing::info!(version, "applied store migration");
            }
            Ok(())
        }
        Err(e) => {
            let _ = conn.execute_batch("ROLLBACK");
            Err(e)
        }
    }
}

/// The body of [`migrate`], inside its transaction; returns the versions
/// it applied.
fn apply_migrations(conn: &Connection) -> Result<Vec<i64>, StoreError> {
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS schema_migrations (
            version BIGINT PRIMARY KEY,
            applied_at BIGINT NOT NULL
        )",
    )?;
    let current: i64 = conn.query_row(
        "SELECT COALESCE(MAX(version), 0) FROM schema_migrations",
        [],
        |r| r.get(0),
    )?;
    let mut applied = Vec::new();
    for (version, sql) in MIGRATIONS.iter().filter(|(v, _)| *v > current) {
        conn.execute_batch(sql)?;
        conn.execute(
            "INSERT INTO schema_migrations (version, applied_at) VALUES (?1, ?2)",
            params![version, now_ms()],
        )?;
        applied.push(*version);
    }
    Ok(applied)
}

/// Refuses keys that cannot open the newest job (see
/// [`rows::check_newest_key`]).
fn check_newest_key(conn: &Connection, keys: &Keyring) -> Result<(), StoreError> {
    let newest: Option<String> = conn
        .query_row("SELECT spec FROM jobs ORDER BY id DESC LIMIT 1", [], |r| {
            r.get(0)
        })
        .optional()?;
    rows::check_newest_key(newest.as_deref(), keys)
}

impl Columns for Row<'_> {
    fn value(&self, index: usize) -> Result<Value, StoreError> {
        match self.get_ref(index).map_err(|e| bad_column(index, e))? {
            ValueRef::Null => Ok(Value::Null),
            ValueRef::Integer(n) => Ok(Value::Int(n)),
            ValueRef::Text(bytes) => std::str::from_utf8(bytes)
                .map(|text| Value::Text(text.to_owned()))
                .map_err(|e| bad_column(index, e)),
            other => Err(bad_column(
                index,
                format_args!("{} where TEXT or INTEGER belongs", other.data_type()),
            )),
        }
    }
}

/// Runs `sql` and decodes every row it selects with `decode`. Decoding
/// returns [`StoreError`], so a bad JSON column is `Corrupt`, not a driver
/// error.
fn query_all<T>(
    conn: &Connection,
    sql: &str,
    params: impl rusqlite::Params,
    decode: impl Fn(&dyn Columns) -> Result<T, StoreError>,
) -> Result<Vec<T>, StoreError> {
    let mut stmt = conn.prepare_cached(sql)?;
    let mut rows = stmt.query(params)?;
    let mut out = Vec::new();
    while let Some(row) = rows.next()? {
        out.push(decode(row)?);
    }
    Ok(out)
}

/// Runs one statement of the request path through the connection's cache
/// of prepared statements: preparing (parsing and planning) the same SQL on
/// every call was about 5 % of the server's CPU per `wait: true` job.
fn execute_cached(
    conn: &Connection,
    sql: &str,
    params: impl rusqlite::Params,
) -> Result<usize, rusqlite::Error> {
    conn.prepare_cached(sql)?.execute(params)
}

/// The first row of [`query_all`], for statements that select one row by
/// its key.
fn query_opt<T>(
    conn: &Connection,
    sql: &str,
    params: impl rusqlite::Params,
    decode: impl Fn(&dyn Columns) -> Result<T, StoreError>,
) -> Result<Option<T>, StoreError> {
    Ok(query_all(conn, sql, params, decode)?.into_iter().next())
}

fn get_job(conn: &Connection, keys: &Keyring, id: &str) -> Result<Option<JobRecord>, StoreError> {
    query_opt(
        conn,
        &format!("SELECT {COLUMNS} FROM jobs WHERE id = ?1"),
        [id],
        |row| rows::job(row, keys),
    )
}

fn query_jobs(
    conn: &Connection,
    keys: &Keyring,
    sql: &str,
    params: impl rusqlite::Params,
) -> Result<Vec<JobRecord>, StoreError> {
    query_all(conn, sql, params, |row| rows::job(row, keys))
}

/// Inserts a job; if the tenant already has one under its idempotency key,
/// the unique index turns the insert into nothing and that job is returned.
/// One write statement, no read before it: a second connection on the same
/// file (another process) cannot slip a job in between.
fn insert(conn: &mut Connection, keys: &Keyring, job: NewJob) -> Result<Created, StoreError> {
    insert_row(conn, keys, job, None, None)
}

/// [`insert`], the one insert of a job: queued, running since `started_at`, or with
/// `end` (status, outcome, finished at) final already. The record returned
/// for a new row leaves `end` out (its caller has it).
fn insert_row(
    conn: &mut Connection,
    keys: &Keyring,
    job: NewJob,
    started_at: Option<i64>,
    end: Option<(JobStatus, &Outcome, i64)>,
) -> Result<Created, StoreError> {
    let id = job.id.to_string();
    let callback = new_callback(&job);
    let status = end.map_or_else(|| inserted_status(started_at), |(status, _, _)| status);
    let outcome = end
        .map(|(_, outcome, _)| seal_json(keys, "outcome", &id, outcome))
        .transpose()?;
    let inserted = execute_cached(
        conn,
        "INSERT INTO jobs (id, tenant, idempotency_key, request_hash, status, created_at, started_at, finished_at, spec, outcome, callback, token_id)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)
         ON CONFLICT (tenant, idempotency_key) DO NOTHING",
        params![
            id,
            job.tenant,
            job.idempotency_key,
            job.request_hash,
            status.as_str(),
            job.created_at,
            started_at,
            end.map(|(_, _, at)| at),
            seal_json(keys, "spec", &id, &job.spec)?,
            outcome,
            callback.as_ref().map(to_json).transpose()?,
            job.token_id,
        ],
    )?;
    if inserted == 1 {
        return Ok(Created::New(new_record(job, callback, started_at)));
    }
    let existing = query_jobs(
        conn,
        keys,
        &format!("SELECT {COLUMNS} FROM jobs WHERE tenant = ?1 AND idempotency_key = ?2"),
        params![job.tenant, job.idempotency_key],
    )?;
    existing
        .into_iter()
        .next()
        .map(Created::Existing)
        .ok_or_else(|| rows::no_holder_of_key(&id))
}

impl JobStore for SqliteStore {
    fn create(&self, job: NewJob) -> StoreFuture<'_, Created> {
        self.with_keys(move |conn, keys| {
            conn.pragma_update(None, "synchronous", "FULL")?;
            let created = insert(conn, keys, job);
            conn.pragma_update(None, "synchronous", "NORMAL")?;
            created
        })
    }

    fn create_capped_unsynced(
        &self,
        job: NewJob,
        cap: crate::JobCap,
    ) -> StoreFuture<'_, Option<Created>> {
        // One node per SQLite store: the server's guard counts the cap.
        let _ = cap;
        let created = self.insert_unsynced(job, None, None);
        Box::pin(async move { created.await.map(Some) })
    }

    fn create_running_unsynced(&self, job: NewJob, started_at: i64) -> StoreFuture<'_, Created> {
        self.insert_unsynced(job, Some(started_at), None)
    }

    fn create_finished_unsynced(
        &self,
        job: NewJob,
        started_at: i64,
        status: JobStatus,
        outcome: Outcome,
        finished_at: i64,
    ) -> StoreFuture<'_, ()> {
        // Such a job has no idempotency key, so the insert can only store it.
        let id = job.id;
        let end = Some((status, outcome, finished_at));
        let created = self.insert_unsynced(job, Some(started_at), end);
        Box::pin(async move {
            match created.await? {
                Created::New(_) => Ok(()),
                Created::Existing(_) => Err(StoreError::Corrupt(format!(
                    "job {id}: a finished job without a new row"
                ))),
            }
        })
    }

    fn sync(&self) -> StoreFuture<'_, ()> {
        let flushed = self.flushed.clone();
        let wal = self.wal.clone();
        Box::pin(async move {
            let target = flushed.written.load(Ordering::SeqCst);
            if flushed.synced.load(Ordering::SeqCst) >= target {
                return Ok(());
            }
            blocking(move || flushed.flush(&wal, target)).await
        })
    }

    fn get(&self, id: Uuid) -> StoreFuture<'_, Option<JobRecord>> {
        self.with_keys_quick(move |conn, keys| get_job(conn, keys, &id.to_string()))
    }

    fn list(&self, query: ListQuery) -> StoreFuture<'_, Vec<JobRecord>> {
        self.with_keys(move |conn, keys| {
            // UUID v7 ids in their hyphenated lower-case form sort by creation
            // time, so the id doubles as the cursor.
            let before = query.before.map(|id| id.to_string());
            let status = query.status.map(JobStatus::as_str);
            query_jobs(
                conn,
                keys,
                &format!(
                    "SELECT {COLUMNS} FROM jobs
                     WHERE tenant = ?1
                       AND (?2 IS NULL OR status = ?2)
                       AND (?3 IS NULL OR id < ?3)
                     ORDER BY id DESC
                     LIMIT ?4"
                ),
                params![query.tenant, status, before, i64::from(query.limit)],
            )
        })
    }

    fn start(&self, id: Uuid, at: i64) -> StoreFuture<'_, Option<JobRecord>> {
        self.with_keys_quick(move |conn, keys| {
            let id = id.to_string();
            let changed = execute_cached(
                conn,
                "UPDATE jobs SET status = ?1, started_at = ?2 WHERE id = ?3 AND status = ?4",
                params![
                    JobStatus::Running.as_str(),
                    at,
                    id,
                    JobStatus::Queued.as_str()
                ],
            )?;
            if changed == 0 {
                return Ok(None);
            }
            get_job(conn, keys, &id)
        })
    }

    fn finish(
        &self,
        id: Uuid,
        status: JobStatus,
        outcome: Outcome,
        at: i64,
    ) -> StoreFuture<'_, bool> {
        self.with_keys_quick(move |conn, keys| {
            let id = id.to_string();
            let changed = execute_cached(
                conn,
                "UPDATE jobs SET status = ?1, outcome = ?2, finished_at = ?3 WHERE id = ?4 AND status = ?5",
                params![
                    status.as_str(),
                    seal_json(keys, "outcome", &id, &outcome)?,
                    at,
                    id,
                    JobStatus::Running.as_str()
                ],
            )?;
            Ok(changed == 1)
        })
    }

    fn cancel_queued(&self, id: Uuid, outcome: Outcome, at: i64) -> StoreFuture<'_, bool> {
        self.with_keys(move |conn, keys| {
            let id = id.to_string();
            let changed = conn.execute(
                "UPDATE jobs SET status = ?1, outcome = ?2, finished_at = ?3 WHERE id = ?4 AND status = ?5",
                params![
                    JobStatus::Cancelled.as_str(),
                    seal_json(keys, "outcome", &id, &outcome)?,
                    at,
                    id,
                    JobStatus::Queued.as_str()
                ],
            )?;
            Ok(changed == 1)
        })
    }

    fn set_callback(&self, id: Uuid, callback: Callback) -> StoreFuture<'_, ()> {
        self.with(move |conn| {
            conn.execute(
                "UPDATE jobs SET callback = ?1 WHERE id = ?2",
                params![to_json(&callback)?, id.to_string()],
            )?;
            Ok(())
        })
    }

    fn recover(&self, interrupted: Outcome, at: i64) -> StoreFuture<'_, Recovery> {
        self.with_keys(move |conn, keys| {
            let tx = conn.transaction()?;
            let ids = |tx: &rusqlite::Transaction<'_>, status: JobStatus| {
                let mut stmt = tx.prepare("SELECT id FROM jobs WHERE status = ?1 ORDER BY id")?;
                let rows = stmt
                    .query_map([status.as_str()], |r| r.get::<_, String>(0))?
                    .collect::<Result<Vec<_>, _>>()?;
                rows.iter()
                    .map(|s| parse_id(s))
                    .collect::<Result<Vec<_>, StoreError>>()
            };
            let running = ids(&tx, JobStatus::Running)?;
            // One statement per job: each sealed outcome is bound to its row.
            for id in &running {
                let id = id.to_string();
                tx.execute(
                    "UPDATE jobs SET status = ?1, outcome = ?2, finished_at = ?3 WHERE id = ?4",
                    params![
                        JobStatus::Failed.as_str(),
                        seal_json(keys, "outcome", &id, &interrupted)?,
                        at,
                        id
                    ],
                )?;
            }
            let queued = ids(&tx, JobStatus::Queued)?;
            tx.commit()?;
            Ok(Recovery {
                interrupted: running,
                queued,
            })
        })
    }

    fn pending_callbacks(&self) -> StoreFuture<'_, Vec<JobRecord>> {
        self.with_keys(move |conn, keys| {
            let [succeeded, failed, cancelled] = final_statuses();
            let jobs = query_jobs(
                conn,
                keys,
                &format!(
                    "SELECT {COLUMNS} FROM jobs
                     WHERE callback IS NOT NULL AND status IN (?1, ?2, ?3)
                     ORDER BY id"
                ),
                params![succeeded, failed, cancelled],
            )?;
            Ok(pending_only(jobs))
        })
    }

    fn queued_ahead(&self, id: Uuid) -> StoreFuture<'_, u64> {
        self.with(move |conn| {
            let n = conn.query_row(
                "SELECT COUNT(*) FROM jobs WHERE status = ?1 AND id < ?2",
                params![JobStatus::Queued.as_str(), id.to_string()],
                |r| r.get::<_, i64>(0),
            )?;
            Ok(u64::try_from(n).unwrap_or(0))
        })
    }

    fn ping(&self) -> StoreFuture<'_, ()> {
        self.with(|conn| {
            conn.query_row("SELECT 1", [], |r| r.get::<_, i64>(0))?;
            Ok(())
        })
    }

    fn insert_token(&self, token: TokenRecord) -> StoreFuture<'_, ()> {
        self.with(move |conn| security::insert_token(conn, &token))
    }

    fn token(&self, id: String) -> StoreFuture<'_, Option<TokenRecord>> {
        self.with_keys_quick(move |conn, _| security::token(conn, &id))
    }

    fn list_tokens(&self, tenant: Option<String>) -> StoreFuture<'_, Vec<TokenRecord>> {
        self.with(move |conn| security::list_tokens(conn, tenant.as_deref()))
    }

    fn has_tokens(&self) -> StoreFuture<'_, bool> {
        self.with(|conn| security::has_tokens(conn))
    }

    fn insert_first_token(&self, token: TokenRecord) -> StoreFuture<'_, bool> {
        // BEGIN IMMEDIATE takes the write lock before the check, so even two
        // processes on one `sqlite://` file cannot both insert.
        self.with(move |conn| {
            let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            if security::has_tokens(&tx)? {
                return Ok(false);
            }
            security::insert_token(&tx, &token)?;
            tx.commit()?;
            Ok(true)
        })
    }

    fn revoke_token(&self, id: String, at: i64) -> StoreFuture<'_, bool> {
        self.with(move |conn| security::revoke_token(conn, &id, at))
    }

    fn revoke_family(&self, family_id: String, at: i64) -> StoreFuture<'_, u64> {
        self.with(move |conn| security::revoke_family(conn, &family_id, at))
    }

    fn consume_refresh(&self, id: String, at: i64) -> StoreFuture<'_, bool> {
        self.with(move |conn| security::consume_refresh(conn, &id, at))
    }

    fn touch_token(&self, id: String, at: i64) -> StoreFuture<'_, ()> {
        self.with(move |conn| security::touch_token(conn, &id, at))
    }

    fn append_audit(&self, events: Vec<NewAuditEvent>) -> StoreFuture<'_, ()> {
        self.with(move |conn| security::append_audit(conn, &events))
    }

    fn list_audit(&self, query: AuditQuery) -> StoreFuture<'_, Vec<AuditRecord>> {
        self.with(move |conn| security::list_audit(conn, &query))
    }

    fn purge(
        &self,
        jobs_before: i64,
        audit_before: i64,
        tokens_before: i64,
    ) -> StoreFuture<'_, Purged> {
        self.with(move |conn| security::purge(conn, jobs_before, audit_before, tokens_before))
    }

    fn tenant_jobs(&self, tenant: String) -> StoreFuture<'_, Vec<JobRecord>> {
        self.with_keys(move |conn, keys| {
            query_jobs(
                conn,
                keys,
                &format!("SELECT {COLUMNS} FROM jobs WHERE tenant = ?1 ORDER BY id"),
                [tenant],
            )
        })
    }

    fn erase_tenant(
        &self,
        tenant: String,
        replacement: String,
        at: i64,
    ) -> StoreFuture<'_, Erased> {
        self.with(move |conn| security::erase_tenant(conn, &tenant, &replacement, at))
    }

    fn put_function(
        &self,
        function: NewFunction,
        write: FunctionWrite,
    ) -> StoreFuture<'_, FunctionPut> {
        self.with_keys(move |conn, keys| functions::put_function(conn, keys, function, write))
    }

    fn function(
        &self,
        tenant: String,
        name: String,
        version: Option<i64>,
    ) -> StoreFuture<'_, Option<FunctionRecord>> {
        self.with_keys(move |conn, keys| functions::function(conn, keys, &tenant, &name, version))
    }

    fn list_functions(&self, query: FunctionQuery) -> StoreFuture<'_, Vec<FunctionRecord>> {
        self.with_keys(move |conn, keys| functions::list_functions(conn, keys, &query))
    }

    fn function_versions(&self, tenant: String, name: String) -> StoreFuture<'_, Vec<i64>> {
        self.with(move |conn| functions::function_versions(conn, &tenant, &name))
    }

    fn delete_function(
        &self,
        tenant: String,
        name: String,
        version: Option<i64>,
        at: i64,
    ) -> StoreFuture<'_, u64> {
        self.with(move |conn| functions::delete_function(conn, &tenant, &name, version, at))
    }

    fn set_compiled(
        &self,
        tenant: String,
        name: String,
        version: i64,
        compiled: CompiledForm,
    ) -> StoreFuture<'_, ()> {
        self.with_keys(move |conn, keys| {
            functions::set_compiled(conn, keys, &tenant, &name, version, &compiled)
        })
    }

    fn tenant_functions(&self, tenant: String) -> StoreFuture<'_, Vec<FunctionRecord>> {
        self.with_keys(move |conn, keys| functions::tenant_functions(conn, keys, &tenant))
    }
}
