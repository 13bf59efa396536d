//! The store's test suite, written once and run against every backend: each
//! test is an async fn over a [`Fixture`], and [`backends!`] instantiates it
//! as `sqlite::NAME` and `postgres::NAME`. The Postgres half runs on the
//! private server of `strictpy-testpg`, a fresh database per test; it is
//! skipped (saying so) only where PostgreSQL is not installed and `CI` is
//! not set.

use std::{path::PathBuf, sync::Arc};

use strictpy_store::{
    AuditQuery, Callback, CompiledForm, Created, DeliveryAttempt, DeliveryState, FunctionPut,
    FunctionQuery, FunctionWrite, JobCap, JobStore, Keyring, ListQuery, NewAuditEvent, NewFunction,
    NewJob, StoreError, StoreLocation, TokenKind, TokenLimits,
};
use strictpy_types::{JobStatus, Limits, Outcome, Verdict};
use uuid::Uuid;

mod common;

use common::{KEY_1, new_job, ring, token};

/// A second key, `k2`.
const KEY_2: &str = "k2:f0f1f2f3f4f5f6f7f8f9fafbfcfdfeff000102030405060708090a0b0c0d0e0f";

/// One backend's empty store, reachable raw (for what a test must see or
/// tamper with below the store).
enum Fixture {
    /// SQLite in a temporary data dir.
    Sqlite {
        /// The data dir.
        dir: tempfile::TempDir,
    },
    /// A fresh database on the private Postgres server.
    Postgres {
        /// Its URL.
        url: String,
    },
}

impl Fixture {
    fn sqlite() -> Self {
        Self::Sqlite {
            dir: tempfile::tempdir().expect("tempdir"),
        }
    }

    /// `None` when the Postgres half is skipped.
    fn postgres() -> Option<Self> {
        strictpy_testpg::server().map(|pg| Self::Postgres {
            url: pg.fresh_url(),
        })
    }

    fn location(&self) -> StoreLocation {
        match self {
            Self::Sqlite { dir } => StoreLocation::from_url(None, dir.path()),
            Self::Postgres { url } => StoreLocation::from_url(Some(url), &PathBuf::new()),
        }
        .expect("location")
    }

    /// Opens (or reopens, as a new process would) the store with `keys`.
    async fn open_with(&self, keys: Arc<Keyring>) -> Result<Arc<dyn JobStore>, StoreError> {
        self.location().open(keys).await
    }

    async fn open(&self) -> Arc<dyn JobStore> {
        self.open_with(ring(KEY_1)).await.expect("open")
    }

    /// Runs one raw statement with text parameters, `?1`-style placeholders
    /// (rewritten to `$1` for Postgres); returns the first column of each
    /// row.
    async fn raw(&self, sql: &str, params: &[&str]) -> Vec<String> {
        match self {
            Self::Sqlite { dir } => {
                let conn = rusqlite::Connection::open(dir.path().join(strictpy_store::DB_FILE))
                    .expect("raw connection");
                let mut stmt = conn.prepare(sql).expect("prepare");
                let params = rusqlite::params_from_iter(params.iter());
                if stmt.column_count() == 0 {
                    stmt.execute(params).expect("execute");
                    return Vec::new();
                }
                stmt.query_map(params, |r| r.get::<_, String>(0))
                    .expect("query")
                    .collect::<Result<_, _>>()
                    .expect("rows")
            }
            Self::Postgres { url } => {
                let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
                    .await
                    .expect("raw connection");
                tokio::spawn(conn);
                let sql = sql.replace('?', "$");
                let params: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> = params
                    .iter()
                    .map(|p| p as &(dyn tokio_postgres::types::ToSql + Sync))
                    .collect();
                client
                    .query(&sql, &params)
                    .await
                    .expect("query")
                    .iter()
                    .map(|r| r.try_get::<_, String>(0).unwrap_or_default())
                    .collect()
            }
        }
    }

    /// Every byte the backend keeps at rest for this store: SQLite's file
    /// and WAL; for Postgres, after a checkpoint, this database's files
    /// and the server's WAL.
    async fn bytes_at_rest(&self) -> Vec<u8> {
        match self {
            Self::Sqlite { dir } => ["strictpy.db", "strictpy.db-wal"]
                .iter()
                .flat_map(|name| std::fs::read(dir.path().join(name)).unwrap_or_default())
                .collect(),
            Self::Postgres { url } => strictpy_testpg::server()
                .expect("server")
                .bytes_at_rest(strictpy_testpg::PgServer::database_of(url)),
        }
    }
}

/// Instantiates each named suite test for both backends.
macro_rules! backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(super::Fixture::sqlite()).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    if let Some(fixture) = super::Fixture::postgres() {
                        super::$name(fixture).await;
                    }
                }
            )*
        }
    };
}

backends!(
    job_data_is_sealed_at_rest_and_reads_back,
    legacy_rows_moved_values_and_rotation,
    lifecycle_idempotency_and_recovery_survive_reopening,
    one_idempotency_key_makes_one_job_under_concurrency,
    opening_at_once_migrates_once,
    webhook_records_and_pending_deliveries,
    tokens_revocation_and_refresh_reuse,
    audit_filters_and_cursor,
    retention_purge_removes_only_what_is_old,
    tenant_export_and_erasure,
    stored_rows_that_do_not_decode_are_corrupt,
    queued_ahead_counts_every_tenants_older_queued_jobs,
    unsynced_inserts_commit_and_sync,
    jobs_stored_running_skip_the_start_where_one_process_owns_the_store,
    a_job_that_ran_before_it_was_stored_is_written_once_final,
    functions_versions_conflicts_and_deletes,
    function_code_is_sealed_and_compiled_forms_are_checked,
    functions_are_exported_and_erased_with_the_tenant,
);

/// A waiting client's insert (`create_capped_unsynced`) is a commit like
/// any other: it reads back at once, a replay of its key returns it,
/// `sync` succeeds with and without anything pending, and the job is there
/// after reopening. The same calls work from a thread that runs its
/// statements inline (a job worker's).
async fn unsynced_inserts_commit_and_sync(fx: Fixture) {
    let store = fx.open().await;
    let cap = JobCap {
        budget_key: "t".into(),
        limit: 100,
    };
    store.sync().await.expect("sync with nothing pending");
    let created = store
        .create_capped_unsynced(new_job(Some("w")), cap.clone())
        .await
        .expect("create");
    let Some(Created::New(a)) = created else {
        panic!("a new job, not {created:?}");
    };
    let read = store.get(a.id).await.expect("get").expect("stored");
    assert_eq!(read.status, JobStatus::Queued);
    let replay = store
        .create_capped_unsynced(new_job(Some("w")), cap.clone())
        .await
        .expect("replay");
    let Some(Created::Existing(again)) = replay else {
        panic!("the original job, not {replay:?}");
    };
    assert_eq!(again.id, a.id);
    store.sync().await.expect("sync");
    let handle = tokio::runtime::Handle::current();
    let on_thread = store.clone();
    let b = std::thread::spawn(move || {
        strictpy_store::run_statements_inline();
        handle.block_on(async {
            let created = on_thread
                .create_capped_unsynced(new_job(None), cap)
                .await
                .expect("create inline");
            let Some(Created::New(b)) = created else {
                panic!("a new job, not {created:?}");
            };
            let started = on_thread.start(b.id, 2).await.expect("start");
            assert_eq!(started.map(|j| j.status), Some(JobStatus::Running));
            let done = on_thread.finish(b.id, JobStatus::Succeeded, failed("x"), 3);
            assert!(done.await.expect("finish"));
            on_thread.sync().await.expect("sync inline");
            b.id
        })
    })
    .join()
    .expect("the inline thread");
    drop(store);

    let store = fx.open().await;
    assert!(store.get(a.id).await.expect("get").is_some());
    let b = store.get(b).await.expect("get").expect("stored");
    assert_eq!(b.status, JobStatus::Succeeded);
    assert_eq!(b.finished_at, Some(3));
}

/// A `wait: true` job handed straight to an idle worker is inserted
/// `running` (`create_running_unsynced`): it reads back running with its
/// start time, is not in the queue, cannot be started again, finishes like
/// any running job, a replay of its key returns it, and a restart's
/// recovery fails it if it never finished. A store several nodes share
/// refuses: there a running job is always a node's claim.
async fn jobs_stored_running_skip_the_start_where_one_process_owns_the_store(fx: Fixture) {
    let store = fx.open().await;
    let created = store.create_running_unsynced(new_job(Some("r")), 5).await;
    if store.postgres().is_some() {
        let refused = created.expect_err("a shared store refuses");
        assert!(matches!(refused, StoreError::Config(_)), "{refused:?}");
        return;
    }
    let Ok(Created::New(a)) = created else {
        panic!("a new job, not {created:?}");
    };
    assert_eq!((a.status, a.started_at), (JobStatus::Running, Some(5)));
    let read = store.get(a.id).await.expect("get").expect("stored");
    assert_eq!(read, a, "what the insert returned is what was stored");
    assert!(store.start(a.id, 6).await.expect("start").is_none());
    let replay = store.create_running_unsynced(new_job(Some("r")), 7).await;
    assert!(
        matches!(&replay, Ok(Created::Existing(j)) if j.id == a.id),
        "{replay:?}"
    );
    let b = match store.create_running_unsynced(new_job(None), 8).await {
        Ok(Created::New(b)) => b,
        other => panic!("a new job, not {other:?}"),
    };
    let done = store.finish(a.id, JobStatus::Succeeded, failed("x"), 9);
    assert!(done.await.expect("finish"));
    store.sync().await.expect("sync");
    drop(store);

    let store = fx.open().await;
    let recovered = store.recover(failed("stopped"), 10).await.expect("recover");
    assert_eq!(recovered.interrupted, vec![b.id]);
    assert!(recovered.queued.is_empty(), "{:?}", recovered.queued);
    let a = store.get(a.id).await.expect("get").expect("stored");
    assert_eq!((a.status, a.finished_at), (JobStatus::Succeeded, Some(9)));
    let b = store.get(b.id).await.expect("get").expect("stored");
    assert_eq!((b.status, b.finished_at), (JobStatus::Failed, Some(10)));
}

/// A waiting job handed to a worker before anything of it was stored is
/// written once, at its end (`create_finished_unsynced`): it reads back
/// final, with its spec, start, end and outcome sealed like any job's, it
/// is neither queued nor running for recovery, and a second write of the
/// same id fails. A store several nodes share refuses, as for
/// `create_running_unsynced`.
async fn a_job_that_ran_before_it_was_stored_is_written_once_final(fx: Fixture) {
    let store = fx.open().await;
    let job = new_job(None);
    let id = job.id;
    let outcome = failed("boom");
    let written =
        store.create_finished_unsynced(job.clone(), 5, JobStatus::Failed, outcome.clone(), 9);
    if store.postgres().is_some() {
        let refused = written.await.expect_err("a shared store refuses");
        assert!(matches!(refused, StoreError::Config(_)), "{refused:?}");
        return;
    }
    written.await.expect("written");
    let read = store.get(id).await.expect("get").expect("stored");
    assert_eq!(
        (read.status, read.started_at, read.finished_at),
        (JobStatus::Failed, Some(5), Some(9))
    );
    assert_eq!(read.outcome.as_ref(), Some(&outcome));
    assert_eq!(read.spec, job.spec);
    assert_eq!(read.created_at, job.created_at);
    let again = store.create_finished_unsynced(job, 5, JobStatus::Failed, outcome, 9);
    assert!(again.await.is_err(), "one job id is written once");
    store.sync().await.expect("sync");
    drop(store);

    let store = fx.open().await;
    let recovered = store.recover(failed("stopped"), 10).await.expect("recover");
    assert!(recovered.interrupted.is_empty() && recovered.queued.is_empty());
    let read = store.get(id).await.expect("get").expect("stored");
    assert_eq!(
        (read.status, read.finished_at),
        (JobStatus::Failed, Some(9))
    );
}

async fn queued_ahead_counts_every_tenants_older_queued_jobs(fx: Fixture) {
    let store = fx.open().await;
    let mut ids = Vec::new();
    for i in 0..4 {
        let mut job = new_job(None);
        job.tenant = format!("t{}", i % 2);
        ids.push(create_new(store.as_ref(), job).await.id);
    }
    let ahead = |id| {
        let store = store.clone();
        async move { store.queued_ahead(id).await.expect("count") }
    };
    assert_eq!(ahead(ids[0]).await, 0);
    assert_eq!(ahead(ids[3]).await, 3, "other tenants' jobs count too");
    // A job that started or was cancelled is no longer ahead of anyone.
    store
        .start(ids[0], 2)
        .await
        .expect("start")
        .expect("queued");
    assert!(
        store
            .cancel_queued(ids[1], failed("cancelled"), 3)
            .await
            .expect("cancel")
    );
    assert_eq!(ahead(ids[3]).await, 1);
    assert_eq!(ahead(ids[2]).await, 0);
}

fn failed(message: &str) -> Outcome {
    Outcome::failed(Verdict::Internal, message)
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

async fn create_new(store: &dyn JobStore, job: NewJob) -> strictpy_store::JobRecord {
    match store.create(job).await.expect("create") {
        Created::New(job) => job,
        Created::Existing(job) => panic!("expected a new job, got existing {}", job.id),
    }
}

async fn job_data_is_sealed_at_rest_and_reads_back(fx: Fixture) {
    let store = fx.open().await;
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
    // While open, then after closing (SQLite checkpoints its WAL).
    let scan = |moment: &'static str| {
        let fx = &fx;
        async move {
            let raw = fx.bytes_at_rest().await;
            // The scan does see what is stored in plain.
            assert!(contains(&raw, "IDEM-KEY-STAYS-PLAIN"), "{moment}");
            for marker in markers {
                assert!(!contains(&raw, marker), "{marker} in plaintext ({moment})");
            }
        }
    };
    scan("open").await;
    drop(store);
    scan("closed").await;
}

async fn legacy_rows_moved_values_and_rotation(fx: Fixture) {
    let store = fx.open_with(ring(KEY_1)).await.expect("open");
    let spec_of = |id: Uuid| {
        let fx = &fx;
        async move {
            fx.raw("SELECT spec FROM jobs WHERE id = ?1", &[&id.to_string()])
                .await
                .remove(0)
        }
    };

    // A row written before encryption existed still reads.
    let legacy = create_new(store.as_ref(), new_job(None)).await;
    let plain = serde_json::to_string(&legacy.spec).expect("json");
    fx.raw(
        "UPDATE jobs SET spec = ?1 WHERE id = ?2",
        &[&plain, &legacy.id.to_string()],
    )
    .await;
    let read = store.get(legacy.id).await.expect("legacy reads");
    assert_eq!(read.expect("exists").spec, legacy.spec);

    // A sealed value copied into another row does not open there.
    let a = create_new(store.as_ref(), new_job(None)).await;
    let b = create_new(store.as_ref(), new_job(None)).await;
    let sealed = spec_of(a.id).await;
    assert!(sealed.starts_with("enc1:k1:"), "{sealed}");
    fx.raw(
        "UPDATE jobs SET spec = ?1 WHERE id = ?2",
        &[&sealed, &b.id.to_string()],
    )
    .await;
    let err = store.get(b.id).await.expect_err("moved value");
    assert!(matches!(err, StoreError::Crypto(_)), "{err}");
    assert!(store.get(a.id).await.expect("a still reads").is_some());
    drop(store);

    // Replacing the key instead of rotating is refused at open.
    let err = fx.open_with(ring(KEY_2)).await.expect_err("lost key");
    assert!(err.to_string().contains("k1"), "{err}");

    // Rotation: the new key first, the old one kept.
    let store = fx
        .open_with(ring(&format!("{KEY_2}\n{KEY_1}")))
        .await
        .expect("rotated");
    let old = store.get(a.id).await.expect("old key opens");
    assert_eq!(old.expect("exists").spec, a.spec);
    let c = create_new(store.as_ref(), new_job(None)).await;
    assert!(spec_of(c.id).await.starts_with("enc1:k2:"));
}

async fn lifecycle_idempotency_and_recovery_survive_reopening(fx: Fixture) {
    let store = fx.open().await;
    let a = create_new(store.as_ref(), new_job(Some("k"))).await;
    let Created::Existing(again) = store.create(new_job(Some("k"))).await.expect("create") else {
        panic!("same key must return the original");
    };
    assert_eq!(again.id, a.id);
    let b = create_new(store.as_ref(), new_job(None)).await;
    let c = create_new(store.as_ref(), new_job(None)).await;
    let started = store.start(a.id, 2).await.expect("start").expect("queued");
    assert_eq!(started.status, JobStatus::Running);
    assert_eq!(started.started_at, Some(2));
    assert!(store.start(a.id, 2).await.expect("start").is_none());
    assert!(
        store
            .cancel_queued(b.id, failed("x"), 3)
            .await
            .expect("cancel")
    );
    assert!(
        !store
            .cancel_queued(b.id, failed("x"), 3)
            .await
            .expect("cancel")
    );
    assert!(
        !store
            .finish(b.id, JobStatus::Succeeded, failed("x"), 3)
            .await
            .expect("finish"),
        "only a running job finishes"
    );
    drop(store);

    // A new process: the running job is failed, the queued one remains.
    let store = fx.open().await;
    let rec = store
        .recover(failed("worker stopped"), 4)
        .await
        .expect("recover");
    assert_eq!(rec.interrupted, vec![a.id]);
    assert_eq!(rec.queued, vec![c.id]);
    let a = store.get(a.id).await.expect("get").expect("exists");
    assert_eq!(a.status, JobStatus::Failed);
    assert_eq!(a.finished_at, Some(4));
    assert_eq!(a.outcome, Some(failed("worker stopped")));
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
    let cancelled = store
        .list(ListQuery {
            tenant: "t1".into(),
            status: Some(JobStatus::Cancelled),
            before: None,
            limit: 10,
        })
        .await
        .expect("list");
    assert_eq!(
        cancelled.iter().map(|j| j.id).collect::<Vec<_>>(),
        vec![b.id]
    );
    let other = store
        .list(ListQuery {
            tenant: "t2".into(),
            status: None,
            before: None,
            limit: 10,
        })
        .await
        .expect("list");
    assert!(other.is_empty());
    assert!(store.get(Uuid::now_v7()).await.expect("get").is_none());
    store.ping().await.expect("ping");
}

async fn one_idempotency_key_makes_one_job_under_concurrency(fx: Fixture) {
    // Two stores on one database, as two nodes (or a node and the CLI).
    let (one, two) = (fx.open().await, fx.open().await);
    let mut tasks = Vec::new();
    for i in 0..8 {
        let store = if i % 2 == 0 { one.clone() } else { two.clone() };
        tasks.push(tokio::spawn(async move {
            store
                .create(new_job(Some("same-key")))
                .await
                .expect("create")
        }));
    }
    let mut ids = Vec::new();
    let mut new = 0;
    for task in tasks {
        match task.await.expect("task") {
            Created::New(job) => {
                new += 1;
                ids.push(job.id);
            }
            Created::Existing(job) => ids.push(job.id),
        }
    }
    assert_eq!(new, 1, "exactly one create inserts");
    ids.dedup();
    assert_eq!(ids.len(), 1, "every caller sees the same job: {ids:?}");
}

async fn opening_at_once_migrates_once(fx: Fixture) {
    let opens: Vec<_> = (0..3)
        .map(|_| {
            let location = fx.location();
            tokio::spawn(async move { location.open(ring(KEY_1)).await.map(drop) })
        })
        .collect();
    for open in opens {
        open.await.expect("task").expect("every node opens");
    }
    let versions = fx
        .raw(
            "SELECT CAST(version AS TEXT) FROM schema_migrations ORDER BY version",
            &[],
        )
        .await;
    let mut unique = versions.clone();
    unique.dedup();
    assert!(!versions.is_empty());
    assert_eq!(versions, unique, "each version applied once");
    // And the schema works.
    let store = fx.open().await;
    create_new(store.as_ref(), new_job(None)).await;
}

async fn webhook_records_and_pending_deliveries(fx: Fixture) {
    let store = fx.open().await;
    let mut job = new_job(None);
    job.callback_url = Some("https://example.test/hook".into());
    let with_hook = create_new(store.as_ref(), job).await;
    let callback = with_hook.callback.clone().expect("callback");
    assert_eq!(callback.state, DeliveryState::Pending);
    let plain = create_new(store.as_ref(), new_job(None)).await;
    // Not final yet: nothing to deliver.
    assert!(store.pending_callbacks().await.expect("pending").is_empty());
    for id in [with_hook.id, plain.id] {
        store.start(id, 2).await.expect("start");
        store
            .finish(id, JobStatus::Succeeded, failed("done"), 3)
            .await
            .expect("finish");
    }
    let pending = store.pending_callbacks().await.expect("pending");
    assert_eq!(
        pending.iter().map(|j| j.id).collect::<Vec<_>>(),
        vec![with_hook.id]
    );
    let delivered = Callback {
        state: DeliveryState::Delivered,
        attempts: vec![DeliveryAttempt {
            at: 4,
            status_code: Some(204),
            error: None,
            duration_ms: 7,
        }],
        ..callback
    };
    store
        .set_callback(with_hook.id, delivered.clone())
        .await
        .expect("set");
    assert!(store.pending_callbacks().await.expect("pending").is_empty());
    let back = store.get(with_hook.id).await.expect("get").expect("exists");
    assert_eq!(back.callback, Some(delivered));
}

async fn tokens_revocation_and_refresh_reuse(fx: Fixture) {
    let store = fx.open().await;
    assert!(!store.has_tokens().await.expect("has"));
    let mut api = token("api1", TokenKind::Api, "t1", 1);
    api.limits = TokenLimits {
        requests_per_minute: Some(60),
        burst: None,
        concurrent_jobs: Some(2),
    };
    store.insert_token(api.clone()).await.expect("insert");
    store
        .insert_token(token("api2", TokenKind::Api, "t2", 2))
        .await
        .expect("insert");
    let mut access = token("acc1", TokenKind::Access, "t1", 3);
    access.parent_id = Some("api1".into());
    access.family_id = Some("fam".into());
    let mut refresh = token("ref1", TokenKind::Refresh, "t1", 3);
    refresh.parent_id = Some("api1".into());
    refresh.family_id = Some("fam".into());
    for t in [access, refresh] {
        store.insert_token(t).await.expect("insert");
    }
    assert!(store.has_tokens().await.expect("has"));
    assert_eq!(store.token("api1".into()).await.expect("get"), Some(api));
    assert!(store.token("nope".into()).await.expect("get").is_none());
    let all: Vec<String> = store
        .list_tokens(None)
        .await
        .expect("list")
        .into_iter()
        .map(|t| t.id)
        .collect();
    assert_eq!(all, ["api1", "api2"], "API tokens only, oldest first");
    let t2 = store.list_tokens(Some("t2".into())).await.expect("list");
    assert_eq!(t2.len(), 1);

    // A refresh token is single-use.
    assert!(
        store
            .consume_refresh("ref1".into(), 5)
            .await
            .expect("consume")
    );
    assert!(
        !store
            .consume_refresh("ref1".into(), 6)
            .await
            .expect("consume")
    );
    assert!(
        !store
            .consume_refresh("acc1".into(), 6)
            .await
            .expect("not refresh")
    );
    store.touch_token("api1".into(), 7).await.expect("touch");
    let touched = store
        .token("api1".into())
        .await
        .expect("get")
        .expect("exists");
    assert_eq!(touched.last_used_at, Some(7));

    // Revoking the API token revokes what was exchanged for it.
    assert!(store.revoke_token("api1".into(), 8).await.expect("revoke"));
    assert!(!store.revoke_token("api1".into(), 9).await.expect("revoke"));
    for id in ["api1", "acc1", "ref1"] {
        let t = store.token(id.into()).await.expect("get").expect("exists");
        assert_eq!(t.revoked_at, Some(8), "{id}");
    }
    let mut other = token("acc2", TokenKind::Access, "t2", 9);
    other.family_id = Some("fam2".into());
    store.insert_token(other).await.expect("insert");
    assert_eq!(
        store
            .revoke_family("fam2".into(), 10)
            .await
            .expect("family"),
        1
    );
    assert_eq!(
        store
            .revoke_family("fam2".into(), 11)
            .await
            .expect("family"),
        0
    );
}

fn event(at: i64, name: &str, tenant: &str) -> NewAuditEvent {
    NewAuditEvent {
        at,
        event: name.into(),
        tenant: Some(tenant.into()),
        token_id: Some("api1".into()),
        ip: Some("127.0.0.1".into()),
        details: serde_json::json!({ "tenant": tenant, "n": at }),
    }
}

async fn audit_filters_and_cursor(fx: Fixture) {
    let store = fx.open().await;
    store
        .append_audit(vec![
            event(10, "auth_failure", "t1"),
            event(20, "token_created", "t1"),
            event(30, "auth_failure", "t2"),
            event(40, "auth_failure", "t1"),
        ])
        .await
        .expect("append");
    let q = |f: fn(&mut AuditQuery)| {
        let mut query = AuditQuery {
            limit: 10,
            ..AuditQuery::default()
        };
        f(&mut query);
        let store = store.clone();
        async move {
            store
                .list_audit(query)
                .await
                .expect("list")
                .into_iter()
                .map(|r| (r.id, r.event.at))
                .collect::<Vec<_>>()
        }
    };
    let all = q(|_| {}).await;
    assert_eq!(
        all.iter().map(|(_, at)| *at).collect::<Vec<_>>(),
        [40, 30, 20, 10]
    );
    assert!(all.windows(2).all(|w| w[0].0 > w[1].0), "ids decrease");
    let t1_failures = q(|q| {
        q.tenant = Some("t1".into());
        q.event = Some("auth_failure".into());
    })
    .await;
    assert_eq!(
        t1_failures.iter().map(|(_, at)| *at).collect::<Vec<_>>(),
        [40, 10]
    );
    let window = q(|q| {
        q.since = Some(20);
        q.until = Some(40);
    })
    .await;
    assert_eq!(
        window.iter().map(|(_, at)| *at).collect::<Vec<_>>(),
        [30, 20]
    );
    let page = q(|q| q.limit = 2).await;
    assert_eq!(page.len(), 2);
    let cursor = page[1].0;
    let rest = store
        .list_audit(AuditQuery {
            before_id: Some(cursor),
            limit: 10,
            ..AuditQuery::default()
        })
        .await
        .expect("list");
    assert_eq!(
        rest.iter().map(|r| r.event.at).collect::<Vec<_>>(),
        [20, 10]
    );
    assert_eq!(rest[0].event, event(20, "token_created", "t1"));
}

async fn retention_purge_removes_only_what_is_old(fx: Fixture) {
    let store = fx.open().await;
    let old = create_new(store.as_ref(), new_job(None)).await;
    let recent = create_new(store.as_ref(), new_job(None)).await;
    let queued = create_new(store.as_ref(), new_job(None)).await;
    for (job, at) in [(&old, 100), (&recent, 300)] {
        store.start(job.id, at).await.expect("start");
        store
            .finish(job.id, JobStatus::Succeeded, failed("done"), at)
            .await
            .expect("finish");
    }
    store
        .append_audit(vec![event(100, "a", "t1"), event(300, "b", "t1")])
        .await
        .expect("append");
    let mut expired = token("acc", TokenKind::Access, "t1", 1);
    expired.expires_at = Some(100);
    let mut api = token("api", TokenKind::Api, "t1", 1);
    api.expires_at = Some(100);
    for t in [expired, api] {
        store.insert_token(t).await.expect("insert");
    }
    let purged = store.purge(200, 200, 200).await.expect("purge");
    assert_eq!((purged.jobs, purged.audit, purged.tokens), (1, 1, 1));
    assert!(store.get(old.id).await.expect("get").is_none());
    assert!(store.get(recent.id).await.expect("get").is_some());
    assert!(
        store.get(queued.id).await.expect("get").is_some(),
        "not final"
    );
    assert!(
        store.token("api".into()).await.expect("get").is_some(),
        "API tokens stay"
    );
    assert!(store.token("acc".into()).await.expect("get").is_none());
    let left = store
        .list_audit(AuditQuery {
            limit: 10,
            ..AuditQuery::default()
        })
        .await
        .expect("list");
    assert_eq!(left.len(), 1);
}

async fn tenant_export_and_erasure(fx: Fixture) {
    let store = fx.open().await;
    let a = create_new(store.as_ref(), new_job(None)).await;
    let b = create_new(store.as_ref(), new_job(None)).await;
    let mut other = new_job(None);
    other.tenant = "t2".into();
    let other = create_new(store.as_ref(), other).await;
    let exported: Vec<Uuid> = store
        .tenant_jobs("t1".into())
        .await
        .expect("export")
        .into_iter()
        .map(|j| j.id)
        .collect();
    assert_eq!(exported, [a.id, b.id], "oldest first, one tenant");
    store
        .insert_token(token("api1", TokenKind::Api, "t1", 1))
        .await
        .expect("insert");
    store
        .append_audit(vec![event(1, "x", "t1"), event(2, "y", "t2")])
        .await
        .expect("append");
    let erased = store
        .erase_tenant("t1".into(), "erased-1".into(), 5)
        .await
        .expect("erase");
    assert_eq!((erased.jobs, erased.tokens, erased.audit), (2, 1, 1));
    assert!(
        store
            .tenant_jobs("t1".into())
            .await
            .expect("export")
            .is_empty()
    );
    assert!(store.get(other.id).await.expect("get").is_some());
    let t = store
        .token("api1".into())
        .await
        .expect("get")
        .expect("kept");
    assert_eq!(
        (t.tenant.as_str(), t.name.as_str(), t.revoked_at),
        ("erased-1", "", Some(5))
    );
    let events = store
        .list_audit(AuditQuery {
            limit: 10,
            ..AuditQuery::default()
        })
        .await
        .expect("list");
    let mine = events.iter().find(|e| e.event.event == "x").expect("kept");
    assert_eq!(mine.event.tenant.as_deref(), Some("erased-1"));
    assert_eq!(mine.event.ip, None);
    assert_eq!(mine.event.details["tenant"], "erased-1");
    let theirs = events.iter().find(|e| e.event.event == "y").expect("kept");
    assert_eq!(theirs.event.details["tenant"], "t2");
}

/// One decoder per record serves both backends (`rows.rs`); a row it cannot
/// decode is `Corrupt` on each, never a driver error or a panic, and only
/// the statements that read that row fail.
async fn stored_rows_that_do_not_decode_are_corrupt(fx: Fixture) {
    let store = fx.open().await;
    fn corrupt<T: std::fmt::Debug>(r: Result<T, StoreError>, what: &str) -> String {
        match r {
            Err(StoreError::Corrupt(message)) => message,
            other => panic!("{what}: expected Corrupt, got {other:?}"),
        }
    }
    store
        .insert_token(token("api1", TokenKind::Api, "t1", 1))
        .await
        .expect("insert");
    fx.raw(
        "UPDATE tokens SET scopes = ?1 WHERE id = ?2",
        &["not json", "api1"],
    )
    .await;
    corrupt(store.token("api1".into()).await, "token with bad scopes");
    corrupt(store.list_tokens(None).await, "listing it");
    fx.raw(
        "UPDATE tokens SET scopes = ?1, kind = ?2 WHERE id = ?3",
        &["[]", "bogus", "api1"],
    )
    .await;
    let message = corrupt(store.token("api1".into()).await, "token of unknown kind");
    assert!(message.contains("bogus"), "{message}");
    assert!(
        store
            .token("nope".into())
            .await
            .expect("other rows")
            .is_none()
    );

    store
        .append_audit(vec![event(10, "auth_failure", "t1")])
        .await
        .expect("append");
    fx.raw("UPDATE audit SET details = ?1", &["{"]).await;
    let all = AuditQuery {
        limit: 10,
        ..AuditQuery::default()
    };
    corrupt(store.list_audit(all).await, "audit event with bad details");

    let job = create_new(&*store, new_job(None)).await;
    fx.raw(
        "UPDATE jobs SET status = ?1 WHERE id = ?2",
        &["zombie", &job.id.to_string()],
    )
    .await;
    let message = corrupt(store.get(job.id).await, "job of unknown status");
    assert!(message.contains("zombie"), "{message}");
}

fn new_function(tenant: &str, name: &str, code: &str) -> NewFunction {
    NewFunction {
        tenant: tenant.into(),
        name: name.into(),
        description: Some(format!("{name} of {tenant}")),
        code: code.into(),
        allow: vec!["decimal".into()],
        limits: Limits {
            timeout_ms: 1_000,
            ..Limits::default()
        },
        token_id: Some("tok".into()),
        created_at: 7,
        compiled: None,
    }
}

/// Stores a version that must be stored, and returns its number.
async fn put(store: &dyn JobStore, f: NewFunction, write: FunctionWrite) -> i64 {
    match store.put_function(f, write).await.expect("put") {
        FunctionPut::Stored(r) => r.version,
        other => panic!("not stored: {other:?}"),
    }
}

async fn functions_versions_conflicts_and_deletes(fx: Fixture) {
    let store = fx.open().await;
    let s = store.as_ref();
    let first = new_function("t1", "price", "result = 1");
    assert_eq!(put(s, first.clone(), FunctionWrite::Register).await, 1);
    // A taken name is refused; updating an unknown one too.
    assert_eq!(
        s.put_function(first.clone(), FunctionWrite::Register)
            .await
            .expect("store"),
        FunctionPut::Exists
    );
    assert_eq!(
        s.put_function(new_function("t1", "nope", "x"), FunctionWrite::Update)
            .await
            .expect("store"),
        FunctionPut::Missing
    );
    // The same name in another tenant is another function.
    assert_eq!(
        put(
            s,
            new_function("t2", "price", "result = 9"),
            FunctionWrite::Register
        )
        .await,
        1
    );
    assert_eq!(
        put(
            s,
            new_function("t1", "price", "result = 2"),
            FunctionWrite::Update
        )
        .await,
        2
    );
    put(
        s,
        new_function("t1", "alpha", "result = 0"),
        FunctionWrite::Register,
    )
    .await;

    let newest = s
        .function("t1".into(), "price".into(), None)
        .await
        .expect("read")
        .expect("found");
    assert_eq!((newest.version, newest.code.as_str()), (2, "result = 2"));
    assert_eq!(newest.description.as_deref(), Some("price of t1"));
    assert_eq!(newest.allow, vec!["decimal".to_owned()]);
    assert_eq!(newest.limits.timeout_ms, 1_000);
    assert_eq!(newest.token_id.as_deref(), Some("tok"));
    assert_eq!(newest.deleted_at, None);
    let v1 = s
        .function("t1".into(), "price".into(), Some(1))
        .await
        .expect("read")
        .expect("found");
    assert_eq!(v1.code, "result = 1");
    assert!(
        s.function("t1".into(), "price".into(), Some(3))
            .await
            .expect("store")
            .is_none()
    );
    assert!(
        s.function("t3".into(), "price".into(), None)
            .await
            .expect("store")
            .is_none()
    );
    assert_eq!(
        s.function_versions("t1".into(), "price".into())
            .await
            .expect("store"),
        [1, 2]
    );

    // The list is the newest version of each name, by name, paged.
    let page = |after: Option<&str>, limit| FunctionQuery {
        tenant: "t1".into(),
        after: after.map(str::to_owned),
        limit,
    };
    let all = s.list_functions(page(None, 10)).await.expect("store");
    let seen: Vec<_> = all.iter().map(|f| (f.name.as_str(), f.version)).collect();
    assert_eq!(seen, [("alpha", 1), ("price", 2)]);
    let first_page = s.list_functions(page(None, 1)).await.expect("store");
    assert_eq!(first_page[0].name, "alpha");
    let second = s
        .list_functions(page(Some("alpha"), 1))
        .await
        .expect("store");
    assert_eq!(second.len(), 1);
    assert_eq!(second[0].name, "price");

    // Deleting the newest version uncovers the one before; deleting them all
    // frees the name, and numbers are not reused.
    assert_eq!(
        s.delete_function("t1".into(), "price".into(), Some(2), 9)
            .await
            .expect("store"),
        1
    );
    let now = s
        .function("t1".into(), "price".into(), None)
        .await
        .expect("read")
        .expect("found");
    assert_eq!(now.version, 1);
    assert_eq!(
        s.delete_function("t1".into(), "price".into(), None, 9)
            .await
            .expect("store"),
        1
    );
    assert_eq!(
        s.delete_function("t1".into(), "price".into(), None, 9)
            .await
            .expect("store"),
        0
    );
    assert!(
        s.function("t1".into(), "price".into(), None)
            .await
            .expect("store")
            .is_none()
    );
    assert!(
        s.function("t1".into(), "price".into(), Some(1))
            .await
            .expect("store")
            .is_none()
    );
    assert!(
        s.function_versions("t1".into(), "price".into())
            .await
            .expect("store")
            .is_empty()
    );
    assert_eq!(
        s.put_function(new_function("t1", "price", "x"), FunctionWrite::Update)
            .await
            .expect("store"),
        FunctionPut::Missing
    );
    assert_eq!(
        put(
            s,
            new_function("t1", "price", "result = 3"),
            FunctionWrite::Register
        )
        .await,
        3
    );
    // The other tenant's function was never touched.
    let other = s
        .function("t2".into(), "price".into(), None)
        .await
        .expect("read")
        .expect("found");
    assert_eq!((other.version, other.code.as_str()), (1, "result = 9"));
}

async fn function_code_is_sealed_and_compiled_forms_are_checked(fx: Fixture) {
    let store = fx.open().await;
    let marker = "SEALED_FUNCTION_SOURCE_7f3a";
    let mut f = new_function("t1", "fmt", &format!("print('{marker}')"));
    f.compiled = Some(CompiledForm {
        key: "guest-aa".into(),
        checksum: "c1".into(),
        bytes: b"COMPILED_BYTES_MARKER_91".to_vec(),
    });
    put(store.as_ref(), f.clone(), FunctionWrite::Register).await;
    let back = store
        .function("t1".into(), "fmt".into(), None)
        .await
        .expect("read")
        .expect("found");
    assert_eq!(back.compiled, f.compiled);
    let replaced = CompiledForm {
        key: "guest-bb".into(),
        checksum: "c2".into(),
        bytes: vec![0, 1, 2, 255],
    };
    store
        .set_compiled("t1".into(), "fmt".into(), 1, replaced.clone())
        .await
        .expect("store");
    let back = store
        .function("t1".into(), "fmt".into(), None)
        .await
        .expect("read")
        .expect("found");
    assert_eq!(back.compiled, Some(replaced));
    drop(store);
    let at_rest = fx.bytes_at_rest().await;
    assert!(
        !contains(&at_rest, marker),
        "function source stored in the clear"
    );
    assert!(
        !contains(&at_rest, "fmt of t1"),
        "description stored in the clear"
    );
    assert!(!contains(&at_rest, "COMPILED_BYTES_MARKER_91"));

    // A compiled form that does not open is dropped, not an error: the
    // source is compiled again.
    fx.raw(
        "UPDATE functions SET compiled = 'enc1:k1:garbage' WHERE name = ?1",
        &["fmt"],
    )
    .await;
    let store = fx.open().await;
    let back = store
        .function("t1".into(), "fmt".into(), None)
        .await
        .expect("read")
        .expect("found");
    assert_eq!(back.compiled, None);
    assert!(back.code.contains(marker));
    // A source moved into another row does not open.
    put(
        store.as_ref(),
        new_function("t1", "other", "x = 1"),
        FunctionWrite::Register,
    )
    .await;
    fx.raw(
        "UPDATE functions SET source = (SELECT source FROM functions WHERE name = ?1) WHERE name = ?2",
        &["fmt", "other"],
    )
    .await;
    let moved = store.function("t1".into(), "other".into(), None).await;
    assert!(matches!(moved, Err(StoreError::Crypto(_))), "{moved:?}");
    // A plain column that does not decode is `Corrupt`, as for every record
    // (one decoder for both backends, `rows.rs`'s `Columns`).
    fx.raw(
        "UPDATE functions SET limits = ?1 WHERE name = ?2",
        &["not json", "fmt"],
    )
    .await;
    let bad = store.function("t1".into(), "fmt".into(), None).await;
    assert!(matches!(bad, Err(StoreError::Corrupt(_))), "{bad:?}");
    let listed = store
        .list_functions(FunctionQuery {
            tenant: "t1".into(),
            after: None,
            limit: 10,
        })
        .await;
    assert!(matches!(listed, Err(StoreError::Corrupt(_))), "{listed:?}");
}

async fn functions_are_exported_and_erased_with_the_tenant(fx: Fixture) {
    let store = fx.open().await;
    let s = store.as_ref();
    put(
        s,
        new_function("gone", "a", "result = 1"),
        FunctionWrite::Register,
    )
    .await;
    put(
        s,
        new_function("gone", "a", "result = 2"),
        FunctionWrite::Update,
    )
    .await;
    put(
        s,
        new_function("gone", "b", "result = 3"),
        FunctionWrite::Register,
    )
    .await;
    s.delete_function("gone".into(), "b".into(), None, 5)
        .await
        .expect("store");
    put(
        s,
        new_function("stays", "a", "result = 4"),
        FunctionWrite::Register,
    )
    .await;
    let exported = s.tenant_functions("gone".into()).await.expect("store");
    let seen: Vec<_> = exported
        .iter()
        .map(|f| (f.name.as_str(), f.version, f.deleted_at.is_some()))
        .collect();
    assert_eq!(seen, [("a", 1, false), ("a", 2, false), ("b", 1, true)]);
    let erased = s
        .erase_tenant("gone".into(), "erased-1".into(), 9)
        .await
        .expect("store");
    assert_eq!(erased.functions, 3);
    assert!(
        s.tenant_functions("gone".into())
            .await
            .expect("store")
            .is_empty()
    );
    assert!(
        s.tenant_functions("erased-1".into())
            .await
            .expect("store")
            .is_empty()
    );
    assert_eq!(
        s.tenant_functions("stays".into())
            .await
            .expect("store")
            .len(),
        1
    );
}

/// SQLite only: the WAL is checkpointed by the store's own thread, not by
/// the commit that fills it. The database file takes the committed pages
/// while nothing but inserts ran, and everything reads back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_checkpointer_moves_the_wal_into_the_database_file() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = strictpy_store::SqliteStore::open(dir.path(), ring(KEY_1)).expect("open");
    let db = dir.path().join(strictpy_store::DB_FILE);
    let before = std::fs::metadata(&db).expect("db file").len();
    let mut ids = Vec::new();
    for _ in 0..200 {
        let cap = JobCap {
            budget_key: "b".into(),
            limit: u32::MAX,
        };
        match store.create_capped_unsynced(new_job(None), cap).await {
            Ok(Some(Created::New(job))) => ids.push(job.id),
            other => panic!("insert: {other:?}"),
        }
    }
    // The commits above never checkpoint (autocheckpoint is off); the
    // store's thread does within a few of its 200 ms rounds.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let grown = loop {
        let now = std::fs::metadata(&db).expect("db file").len();
        if now > before || std::time::Instant::now() > deadline {
            break now;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    assert!(
        grown > before,
        "the database file stayed at {before} bytes: nothing was checkpointed"
    );
    for id in ids {
        let job = store.get(id).await.expect("get").expect("stored");
        assert_eq!(job.id, id);
    }
}
