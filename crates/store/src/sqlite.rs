//! The embedded default store: one SQLite file in the data dir, in WAL mode,
//! with migrations run when it opens.
//!
//! rusqlite is synchronous, so every statement runs on tokio's blocking pool
//! behind one connection mutex; SQLite serialises writers anyway, and one
//! connection keeps "select, then insert" steps atomic without retries.

use std::{
    path::Path,
    sync::{Arc, Mutex},
};

use rusqlite::{Connection, OptionalExtension, Row, params};
use strictpy_types::{JobStatus, Outcome};
use uuid::Uuid;

use crate::crypto::Keyring;
use crate::{
    AuditQuery, AuditRecord, Callback, Created, DeliveryState, Erased, JobRecord, JobStore,
    ListQuery, NewAuditEvent, NewJob, Purged, Recovery, StoreError, StoreFuture, TokenRecord,
};

mod security;

/// The file name of the database inside the data dir.
pub const DB_FILE: &str = "strictpy.db";

/// Schema migrations, applied in order; each runs once, inside a transaction,
/// and is recorded in `schema_migrations`. Never edit one that has shipped:
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
];

/// The columns every query reads, in the order [`read_row`] expects.
const COLUMNS: &str = "id, tenant, idempotency_key, request_hash, status, created_at, \
                       started_at, finished_at, spec, outcome, callback, token_id";

/// A [`JobStore`] on an embedded SQLite database.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    /// The one connection; see the module docs for why there is only one.
    conn: Arc<Mutex<Connection>>,
    /// Seals the `spec` and `outcome` columns of `jobs`, which hold the
    /// callers' code, input and output (see [`crate::crypto`]).
    keys: Arc<Keyring>,
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
        let path = data_dir.join(DB_FILE);
        let created = !path.exists();
        let conn = Connection::open(&path)?;
        // A new database is private to the service's user; SQLite gives its
        // -wal and -shm files the database file's permissions.
        #[cfg(unix)]
        if created {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).map_err(
                |source| StoreError::DataDir {
                    path: path.clone(),
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
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        migrate(&conn)?;
        check_newest_key(&conn, &keys)?;
        Ok(Self {
            conn: Arc::new(Mutex::new(conn)),
            keys,
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

    /// Runs `f` with the connection on the blocking pool.
    fn with<T, F>(&self, f: F) -> StoreFuture<'_, T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let conn = self.conn.clone();
        Box::pin(async move {
            tokio::task::spawn_blocking(move || {
                // A panic while holding the lock poisons it; the connection
                // itself is still consistent (SQLite rolled back), so go on.
                let mut guard = conn.lock().unwrap_or_else(|p| p.into_inner());
                f(&mut guard)
            })
            .await
            .map_err(|e| StoreError::Join(e.to_string()))?
        })
    }
}

/// Applies every migration newer than the recorded version.
fn migrate(conn: &Connection) -> Result<(), StoreError> {
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
    for (version, sql) in MIGRATIONS.iter().filter(|(v, _)| *v > current) {
        let tx = conn.unchecked_transaction()?;
        tx.execute_batch(sql)?;
        tx.execute(
            "INSERT INTO schema_migrations (version, applied_at) VALUES (?1, ?2)",
            params![version, now_ms()],
        )?;
        tx.commit()?;
        tracing::info!(version, "applied store migration");
    }
    Ok(())
}

/// The current time in Unix milliseconds.
fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

fn to_json<T: serde::Serialize>(value: &T) -> Result<String, StoreError> {
    serde_json::to_string(value).map_err(|e| StoreError::Corrupt(e.to_string()))
}

fn from_json<T: serde::de::DeserializeOwned>(text: &str) -> Result<T, StoreError> {
    serde_json::from_str(text).map_err(|e| StoreError::Corrupt(e.to_string()))
}

/// The associated data of a sealed column: table, column and row id, so a
/// value copied into another row or column does not open.
fn aad(column: &str, id: &str) -> Vec<u8> {
    format!("jobs.{column}:{id}").into_bytes()
}

/// `value` as JSON, sealed for column `column` of job `id`.
fn seal_json<T: serde::Serialize>(
    keys: &Keyring,
    column: &str,
    id: &str,
    value: &T,
) -> Result<String, StoreError> {
    let json = zeroize::Zeroizing::new(to_json(value)?);
    keys.seal(json.as_bytes(), &aad(column, id))
}

/// Opens column `column` of job `id` (or reads it as is if it predates
/// encryption) and parses the JSON.
fn open_json<T: serde::de::DeserializeOwned>(
    keys: &Keyring,
    column: &str,
    id: &str,
    stored: &str,
) -> Result<T, StoreError> {
    let json = zeroize::Zeroizing::new(keys.open(stored, &aad(column, id))?);
    serde_json::from_slice(&json).map_err(|e| StoreError::Corrupt(e.to_string()))
}

/// Refuses keys that cannot open the newest job. One row is enough to catch
/// a lost or overwritten key file (every new job is sealed with the current
/// key), and cheap at start; older rows under a dropped key fail when read.
fn check_newest_key(conn: &Connection, keys: &Keyring) -> Result<(), StoreError> {
    let newest: Option<String> = conn
        .query_row("SELECT spec FROM jobs ORDER BY id DESC LIMIT 1", [], |r| {
            r.get(0)
        })
        .optional()?;
    match newest.as_deref().and_then(Keyring::key_id_of) {
        Some(id) if !keys.has_id(id) => Err(StoreError::Crypto(format!(
            "the newest job is sealed with key id {id}, but the configured keys are [{}]; \
             restore the key that holds it (a rotation keeps old keys after the new one)",
            keys.ids().collect::<Vec<_>>().join(", ")
        ))),
        _ => Ok(()),
    }
}

/// The raw columns of one row, decoded after the statement finishes so JSON
/// errors surface as [`StoreError::Corrupt`] rather than as SQLite errors.
struct RawRow {
    id: String,
    tenant: String,
    idempotency_key: Option<String>,
    request_hash: String,
    status: String,
    created_at: i64,
    started_at: Option<i64>,
    finished_at: Option<i64>,
    spec: String,
    outcome: Option<String>,
    callback: Option<String>,
    token_id: Option<String>,
}

fn read_row(row: &Row<'_>) -> rusqlite::Result<RawRow> {
    Ok(RawRow {
        id: row.get(0)?,
        tenant: row.get(1)?,
        idempotency_key: row.get(2)?,
        request_hash: row.get(3)?,
        status: row.get(4)?,
        created_at: row.get(5)?,
        started_at: row.get(6)?,
        finished_at: row.get(7)?,
        spec: row.get(8)?,
        outcome: row.get(9)?,
        callback: row.get(10)?,
        token_id: row.get(11)?,
    })
}

impl RawRow {
    fn decode(self, keys: &Keyring) -> Result<JobRecord, StoreError> {
        let spec = open_json(keys, "spec", &self.id, &self.spec)?;
        let outcome = self
            .outcome
            .as_deref()
            .map(|o| open_json(keys, "outcome", &self.id, o))
            .transpose()?;
        Ok(JobRecord {
            id: Uuid::parse_str(&self.id).map_err(|e| StoreError::Corrupt(e.to_string()))?,
            tenant: self.tenant,
            token_id: self.token_id,
            idempotency_key: self.idempotency_key,
            request_hash: self.request_hash,
            status: JobStatus::parse(&self.status)
                .ok_or_else(|| StoreError::Corrupt(format!("unknown status {}", self.status)))?,
            created_at: self.created_at,
            started_at: self.started_at,
            finished_at: self.finished_at,
            spec,
            outcome,
            callback: self.callback.as_deref().map(from_json).transpose()?,
        })
    }
}

fn get_job(conn: &Connection, keys: &Keyring, id: &str) -> Result<Option<JobRecord>, StoreError> {
    let raw = conn
        .query_row(
            &format!("SELECT {COLUMNS} FROM jobs WHERE id = ?1"),
            [id],
            read_row,
        )
        .optional()?;
    raw.map(|r| r.decode(keys)).transpose()
}

fn query_jobs(
    conn: &Connection,
    keys: &Keyring,
    sql: &str,
    params: impl rusqlite::Params,
) -> Result<Vec<JobRecord>, StoreError> {
    let mut stmt = conn.prepare(sql)?;
    let rows = stmt
        .query_map(params, read_row)?
        .collect::<Result<Vec<_>, _>>()?;
    rows.into_iter().map(|r| r.decode(keys)).collect()
}

/// Inserts a job, or finds the tenant's job under the same idempotency key,
/// in one transaction.
fn insert(conn: &mut Connection, keys: &Keyring, job: NewJob) -> Result<Created, StoreError> {
    let tx = conn.transaction()?;
    if let Some(key) = &job.idempotency_key {
        let existing: Option<String> = tx
            .query_row(
                "SELECT id FROM jobs WHERE tenant = ?1 AND idempotency_key = ?2",
                params![job.tenant, key],
                |r| r.get(0),
            )
            .optional()?;
        if let Some(id) = existing {
            let record = get_job(&tx, keys, &id)?
                .ok_or_else(|| StoreError::Corrupt(format!("job {id} vanished")))?;
            return Ok(Created::Existing(record));
        }
    }
    let callback = job.callback_url.as_ref().map(|url| Callback {
        url: url.clone(),
        state: DeliveryState::Pending,
        attempts: Vec::new(),
    });
    tx.execute(
        "INSERT INTO jobs (id, tenant, idempotency_key, request_hash, status, created_at, spec, callback, token_id)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
        params![
            job.id.to_string(),
            job.tenant,
            job.idempotency_key,
            job.request_hash,
            JobStatus::Queued.as_str(),
            job.created_at,
            seal_json(keys, "spec", &job.id.to_string(), &job.spec)?,
            callback.as_ref().map(to_json).transpose()?,
            job.token_id,
        ],
    )?;
    tx.commit()?;
    Ok(Created::New(JobRecord {
        id: job.id,
        tenant: job.tenant,
        token_id: job.token_id,
        idempotency_key: job.idempotency_key,
        request_hash: job.request_hash,
        status: JobStatus::Queued,
        created_at: job.created_at,
        started_at: None,
        finished_at: None,
        spec: job.spec,
        outcome: None,
        callback,
    }))
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

    fn get(&self, id: Uuid) -> StoreFuture<'_, Option<JobRecord>> {
        self.with_keys(move |conn, keys| get_job(conn, keys, &id.to_string()))
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
        self.with_keys(move |conn, keys| {
            let id = id.to_string();
            let changed = conn.execute(
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
        self.with_keys(move |conn, keys| {
            let id = id.to_string();
            let changed = conn.execute(
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
                    .map(|s| Uuid::parse_str(s).map_err(|e| StoreError::Corrupt(e.to_string())))
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
            let jobs = query_jobs(
                conn,
                keys,
                &format!(
                    "SELECT {COLUMNS} FROM jobs
                     WHERE callback IS NOT NULL AND status IN (?1, ?2, ?3)
                     ORDER BY id"
                ),
                params![
                    JobStatus::Succeeded.as_str(),
                    JobStatus::Failed.as_str(),
                    JobStatus::Cancelled.as_str()
                ],
            )?;
            Ok(jobs
                .into_iter()
                .filter(|j| {
                    j.callback
                        .as_ref()
                        .is_some_and(|c| c.state == DeliveryState::Pending)
                })
                .collect())
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
        self.with(move |conn| security::token(conn, &id))
    }

    fn list_tokens(&self, tenant: Option<String>) -> StoreFuture<'_, Vec<TokenRecord>> {
        self.with(move |conn| security::list_tokens(conn, tenant.as_deref()))
    }

    fn has_tokens(&self) -> StoreFuture<'_, bool> {
        self.with(|conn| security::has_tokens(conn))
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
}

#[cfg(test)]
mod tests {
    use strictpy_types::{Limits, Verdict};

    use super::*;
    use crate::{JobSpec, crypto::test_keys};

    fn spec() -> JobSpec {
        JobSpec {
            code: "print(1)".into(),
            stdin: String::new(),
            context: None,
            allow: Vec::new(),
            allowlist: Default::default(),
            limits: Limits::default(),
            seed: None,
        }
    }

    fn new_job(key: Option<&str>) -> NewJob {
        NewJob {
            id: Uuid::now_v7(),
            tenant: "t1".into(),
            token_id: None,
            idempotency_key: key.map(str::to_owned),
            request_hash: "h".into(),
            created_at: 1,
            spec: spec(),
            callback_url: None,
        }
    }

    fn failed(message: &str) -> Outcome {
        Outcome::failed(Verdict::Internal, message)
    }

    /// The database file and its WAL, as raw bytes.
    fn raw_files(dir: &Path) -> Vec<u8> {
        let mut bytes = Vec::new();
        for name in [DB_FILE.to_owned(), format!("{DB_FILE}-wal")] {
            if let Ok(b) = std::fs::read(dir.join(name)) {
                bytes.extend_from_slice(&b);
            }
        }
        bytes
    }

    fn contains(haystack: &[u8], needle: &str) -> bool {
        haystack
            .windows(needle.len())
            .any(|w| w == needle.as_bytes())
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn job_data_is_sealed_on_disk_and_reads_back() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = SqliteStore::open(dir.path(), test_keys()).expect("open");
        let mut job = new_job(Some("IDEM-KEY-STAYS-PLAIN"));
        job.spec.code = "print('CODE-MARKER-7f3a')".into();
        job.spec.stdin = "STDIN-MARKER-19bd".into();
        job.spec.context = Some(serde_json::json!({"k": "CONTEXT-MARKER-55c2"}));
        let id = job.id;
        let spec = job.spec.clone();
        store.create(job).await.expect("create");
        store.start(id, 2).await.expect("start").expect("queued");
        let outcome = Outcome {
            stdout: "STDOUT-MARKER-a1b2".into(),
            stderr: "STDERR-MARKER-c3d4".into(),
            result: Some(serde_json::json!({"r": "RESULT-MARKER-e5f6"})),
            ..failed("ERROR-MARKER-0719")
        };
        assert!(
            store
                .finish(id, JobStatus::Failed, outcome.clone(), 3)
                .await
                .expect("finish")
        );
        let back = store.get(id).await.expect("get").expect("exists");
        assert_eq!(back.spec, spec);
        assert_eq!(back.outcome, Some(outcome));

        let markers = [
            "CODE-MARKER-7f3a",
            "STDIN-MARKER-19bd",
            "CONTEXT-MARKER-55c2",
            "STDOUT-MARKER-a1b2",
            "STDERR-MARKER-c3d4",
            "RESULT-MARKER-e5f6",
            "ERROR-MARKER-0719",
        ];
        // While open (the rows are in the WAL), then after closing (the WAL
        // is checkpointed into the main file).
        let scan = |moment: &str| {
            let raw = raw_files(dir.path());
            // The scan does see what is stored in plain.
            assert!(contains(&raw, "IDEM-KEY-STAYS-PLAIN"), "{moment}");
            for marker in markers {
                assert!(!contains(&raw, marker), "{marker} in plaintext ({moment})");
            }
        };
        scan("open");
        drop(store);
        scan("closed");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn legacy_rows_moved_values_and_rotation() {
        const KEY_1: &str = "k1:000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";
        const KEY_2: &str = "k2:f0f1f2f3f4f5f6f7f8f9fafbfcfdfeff000102030405060708090a0b0c0d0e0f";
        let ring = |text: &str| Arc::new(Keyring::parse(text).expect("keys"));
        let dir = tempfile::tempdir().expect("tempdir");
        let raw = Connection::open(dir.path().join(DB_FILE)).expect("raw connection");
        let spec_of = |id: Uuid| -> String {
            raw.query_row(
                "SELECT spec FROM jobs WHERE id = ?1",
                [id.to_string()],
                |r| r.get(0),
            )
            .expect("row")
        };
        let store = SqliteStore::open(dir.path(), ring(KEY_1)).expect("open");

        // A row written before encryption existed still reads.
        let Created::New(legacy) = store.create(new_job(None)).await.expect("create") else {
            panic!("inserts");
        };
        raw.execute(
            "UPDATE jobs SET spec = ?1 WHERE id = ?2",
            params![to_json(&legacy.spec).expect("json"), legacy.id.to_string()],
        )
        .expect("make it plaintext");
        let read = store
            .get(legacy.id)
            .await
            .expect("legacy reads")
            .expect("exists");
        assert_eq!(read.spec, legacy.spec);

        // A sealed value copied into another row does not open there.
        let Created::New(a) = store.create(new_job(None)).await.expect("create") else {
            panic!("inserts");
        };
        let Created::New(b) = store.create(new_job(None)).await.expect("create") else {
            panic!("inserts");
        };
        assert!(spec_of(a.id).starts_with("enc1:k1:"));
        raw.execute(
            "UPDATE jobs SET spec = ?1 WHERE id = ?2",
            params![spec_of(a.id), b.id.to_string()],
        )
        .expect("move");
        let err = store.get(b.id).await.expect_err("moved value");
        assert!(matches!(err, StoreError::Crypto(_)), "{err}");
        assert!(store.get(a.id).await.expect("a still reads").is_some());
        drop(store);

        // Replacing the key instead of rotating is refused at open.
        let err = SqliteStore::open(dir.path(), ring(KEY_2)).expect_err("lost key");
        assert!(err.to_string().contains("k1"), "{err}");

        // Rotation: the new key first, the old one kept.
        let store =
            SqliteStore::open(dir.path(), ring(&format!("{KEY_2}\n{KEY_1}"))).expect("rotated");
        assert_eq!(
            store
                .get(a.id)
                .await
                .expect("old key opens")
                .expect("exists")
                .spec,
            a.spec
        );
        let Created::New(c) = store.create(new_job(None)).await.expect("create") else {
            panic!("inserts");
        };
        assert!(spec_of(c.id).starts_with("enc1:k2:"));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn lifecycle_idempotency_and_recovery_survive_reopening() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = SqliteStore::open(dir.path(), test_keys()).expect("open");
        let Created::New(a) = store.create(new_job(Some("k"))).await.expect("create") else {
            panic!("first create must insert");
        };
        let Created::Existing(again) = store.create(new_job(Some("k"))).await.expect("create")
        else {
            panic!("same key must return the original");
        };
        assert_eq!(again.id, a.id);
        let Created::New(b) = store.create(new_job(None)).await.expect("create") else {
            panic!("no key inserts");
        };
        let Created::New(c) = store.create(new_job(None)).await.expect("create") else {
            panic!("no key inserts");
        };
        assert!(store.start(a.id, 2).await.expect("start").is_some());
        assert!(store.start(a.id, 2).await.expect("start").is_none());
        assert!(
            store
                .cancel_queued(b.id, failed("x"), 3)
                .await
                .expect("cancel")
        );
        drop(store);

        // A new process: the running job is failed, the queued one remains.
        let store = SqliteStore::open(dir.path(), test_keys()).expect("reopen");
        let rec = store
            .recover(failed("worker stopped"), 4)
            .await
            .expect("recover");
        assert_eq!(rec.interrupted, vec![a.id]);
        assert_eq!(rec.queued, vec![c.id]);
        let a = store.get(a.id).await.expect("get").expect("exists");
        assert_eq!(a.status, JobStatus::Failed);
        assert_eq!(a.finished_at, Some(4));
        let listed = store
            .list(ListQuery {
                tenant: "t1".into(),
                status: None,
                before: None,
                limit: 2,
            })
            .await
            .expect("list");
        assert_eq!(
            listed.iter().map(|j| j.id).collect::<Vec<_>>(),
            vec![c.id, b.id]
        );
        let next = store
            .list(ListQuery {
                tenant: "t1".into(),
                status: None,
                before: Some(b.id),
                limit: 2,
            })
            .await
            .expect("list");
        assert_eq!(next.iter().map(|j| j.id).collect::<Vec<_>>(), vec![a.id]);
    }
}
