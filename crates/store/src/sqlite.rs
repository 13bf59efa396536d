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

use crate::{
    Callback, Created, DeliveryState, JobRecord, JobStore, ListQuery, NewJob, Recovery, StoreError,
    StoreFuture,
};

/// The file name of the database inside the data dir.
pub const DB_FILE: &str = "strictpy.db";

/// Schema migrations, applied in order; each runs once, inside a transaction,
/// and is recorded in `schema_migrations`. Never edit one that has shipped:
/// append a new one.
const MIGRATIONS: &[(i64, &str)] = &[(
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
)];

/// The columns every query reads, in the order [`read_row`] expects.
const COLUMNS: &str = "id, client, idempotency_key, request_hash, status, created_at, \
                       started_at, finished_at, spec, outcome, callback";

/// A [`JobStore`] on an embedded SQLite database.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    /// The one connection; see the module docs for why there is only one.
    conn: Arc<Mutex<Connection>>,
}

impl SqliteStore {
    /// Opens (creating if needed) `strictpy.db` in `data_dir`, switches it to
    /// WAL and runs pending migrations.
    pub fn open(data_dir: &Path) -> Result<Self, StoreError> {
        std::fs::create_dir_all(data_dir).map_err(|source| StoreError::DataDir {
            path: data_dir.to_owned(),
            source,
        })?;
        let conn = Connection::open(data_dir.join(DB_FILE))?;
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
        Ok(Self {
            conn: Arc::new(Mutex::new(conn)),
        })
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

/// The raw columns of one row, decoded after the statement finishes so JSON
/// errors surface as [`StoreError::Corrupt`] rather than as SQLite errors.
struct RawRow {
    id: String,
    client: String,
    idempotency_key: Option<String>,
    request_hash: String,
    status: String,
    created_at: i64,
    started_at: Option<i64>,
    finished_at: Option<i64>,
    spec: String,
    outcome: Option<String>,
    callback: Option<String>,
}

fn read_row(row: &Row<'_>) -> rusqlite::Result<RawRow> {
    Ok(RawRow {
        id: row.get(0)?,
        client: row.get(1)?,
        idempotency_key: row.get(2)?,
        request_hash: row.get(3)?,
        status: row.get(4)?,
        created_at: row.get(5)?,
        started_at: row.get(6)?,
        finished_at: row.get(7)?,
        spec: row.get(8)?,
        outcome: row.get(9)?,
        callback: row.get(10)?,
    })
}

impl RawRow {
    fn decode(self) -> Result<JobRecord, StoreError> {
        Ok(JobRecord {
            id: Uuid::parse_str(&self.id).map_err(|e| StoreError::Corrupt(e.to_string()))?,
            client: self.client,
            idempotency_key: self.idempotency_key,
            request_hash: self.request_hash,
            status: JobStatus::parse(&self.status)
                .ok_or_else(|| StoreError::Corrupt(format!("unknown status {}", self.status)))?,
            created_at: self.created_at,
            started_at: self.started_at,
            finished_at: self.finished_at,
            spec: from_json(&self.spec)?,
            outcome: self.outcome.as_deref().map(from_json).transpose()?,
            callback: self.callback.as_deref().map(from_json).transpose()?,
        })
    }
}

fn get_job(conn: &Connection, id: &str) -> Result<Option<JobRecord>, StoreError> {
    let raw = conn
        .query_row(
            &format!("SELECT {COLUMNS} FROM jobs WHERE id = ?1"),
            [id],
            read_row,
        )
        .optional()?;
    raw.map(RawRow::decode).transpose()
}

fn query_jobs(
    conn: &Connection,
    sql: &str,
    params: impl rusqlite::Params,
) -> Result<Vec<JobRecord>, StoreError> {
    let mut stmt = conn.prepare(sql)?;
    let rows = stmt
        .query_map(params, read_row)?
        .collect::<Result<Vec<_>, _>>()?;
    rows.into_iter().map(RawRow::decode).collect()
}

/// Inserts a job, or finds the client's job under the same idempotency key,
/// in one transaction.
fn insert(conn: &mut Connection, job: NewJob) -> Result<Created, StoreError> {
    let tx = conn.transaction()?;
    if let Some(key) = &job.idempotency_key {
        let existing: Option<String> = tx
            .query_row(
                "SELECT id FROM jobs WHERE client = ?1 AND idempotency_key = ?2",
                params![job.client, key],
                |r| r.get(0),
            )
            .optional()?;
        if let Some(id) = existing {
            let record = get_job(&tx, &id)?
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
        "INSERT INTO jobs (id, client, idempotency_key, request_hash, status, created_at, spec, callback)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        params![
            job.id.to_string(),
            job.client,
            job.idempotency_key,
            job.request_hash,
            JobStatus::Queued.as_str(),
            job.created_at,
            to_json(&job.spec)?,
            callback.as_ref().map(to_json).transpose()?,
        ],
    )?;
    tx.commit()?;
    Ok(Created::New(JobRecord {
        id: job.id,
        client: job.client,
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
        self.with(move |conn| {
            conn.pragma_update(None, "synchronous", "FULL")?;
            let created = insert(conn, job);
            conn.pragma_update(None, "synchronous", "NORMAL")?;
            created
        })
    }

    fn get(&self, id: Uuid) -> StoreFuture<'_, Option<JobRecord>> {
        self.with(move |conn| get_job(conn, &id.to_string()))
    }

    fn list(&self, query: ListQuery) -> StoreFuture<'_, Vec<JobRecord>> {
        self.with(move |conn| {
            // UUID v7 ids in their hyphenated lower-case form sort by creation
            // time, so the id doubles as the cursor.
            let before = query.before.map(|id| id.to_string());
            let status = query.status.map(JobStatus::as_str);
            query_jobs(
                conn,
                &format!(
                    "SELECT {COLUMNS} FROM jobs
                     WHERE client = ?1
                       AND (?2 IS NULL OR status = ?2)
                       AND (?3 IS NULL OR id < ?3)
                     ORDER BY id DESC
                     LIMIT ?4"
                ),
                params![query.client, status, before, i64::from(query.limit)],
            )
        })
    }

    fn start(&self, id: Uuid, at: i64) -> StoreFuture<'_, Option<JobRecord>> {
        self.with(move |conn| {
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
            get_job(conn, &id)
        })
    }

    fn finish(
        &self,
        id: Uuid,
        status: JobStatus,
        outcome: Outcome,
        at: i64,
    ) -> StoreFuture<'_, bool> {
        self.with(move |conn| {
            let changed = conn.execute(
                "UPDATE jobs SET status = ?1, outcome = ?2, finished_at = ?3 WHERE id = ?4 AND status = ?5",
                params![
                    status.as_str(),
                    to_json(&outcome)?,
                    at,
                    id.to_string(),
                    JobStatus::Running.as_str()
                ],
            )?;
            Ok(changed == 1)
        })
    }

    fn cancel_queued(&self, id: Uuid, outcome: Outcome, at: i64) -> StoreFuture<'_, bool> {
        self.with(move |conn| {
            let changed = conn.execute(
                "UPDATE jobs SET status = ?1, outcome = ?2, finished_at = ?3 WHERE id = ?4 AND status = ?5",
                params![
                    JobStatus::Cancelled.as_str(),
                    to_json(&outcome)?,
                    at,
                    id.to_string(),
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
        self.with(move |conn| {
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
            tx.execute(
                "UPDATE jobs SET status = ?1, outcome = ?2, finished_at = ?3 WHERE status = ?4",
                params![
                    JobStatus::Failed.as_str(),
                    to_json(&interrupted)?,
                    at,
                    JobStatus::Running.as_str()
                ],
            )?;
            let queued = ids(&tx, JobStatus::Queued)?;
            tx.commit()?;
            Ok(Recovery {
                interrupted: running,
                queued,
            })
        })
    }

    fn pending_callbacks(&self) -> StoreFuture<'_, Vec<JobRecord>> {
        self.with(move |conn| {
            let jobs = query_jobs(
                conn,
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
}

#[cfg(test)]
mod tests {
    use strictpy_types::{Limits, Verdict};

    use super::*;
    use crate::{DEFAULT_CLIENT, JobSpec};

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
            client: DEFAULT_CLIENT.into(),
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

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn lifecycle_idempotency_and_recovery_survive_reopening() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = SqliteStore::open(dir.path()).expect("open");
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
        let store = SqliteStore::open(dir.path()).expect("reopen");
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
                client: DEFAULT_CLIENT.into(),
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
                client: DEFAULT_CLIENT.into(),
                status: None,
                before: Some(b.id),
                limit: 2,
            })
            .await
            .expect("list");
        assert_eq!(next.iter().map(|j| j.id).collect::<Vec<_>>(), vec![a.id]);
    }
}
