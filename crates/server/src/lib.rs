//! The strictpy HTTP job service (`strictpy serve`): durable jobs in a
//! [`JobStore`], a pool of sandbox workers, signed webhooks, Prometheus
//! metrics and an OpenAPI document generated from the handlers.
//!
//! This is the only crate that knows HTTP. [`Server::start`] opens the store,
//! recovers what a previous process left behind and starts the workers;
//! [`app`] builds the router; [`serve`] runs it until a shutdown signal and
//! then drains gracefully.

pub mod audit;
pub mod auth;
pub mod cluster;
pub mod compiled;
pub mod config;
pub mod conn;
pub mod drain;
pub mod duties;
pub mod error;
pub mod estimate;
pub mod fuzzing;
pub mod http;
pub mod intake;
pub mod limits;
pub mod live;
pub mod metrics;
pub mod net;
pub mod policy;
pub mod queue;
pub mod redact;
pub mod relay;
pub mod retention;
pub mod routes;
pub mod tls;
pub mod views;
pub mod webhook;
pub mod workers;

use std::{
    collections::HashMap,
    future::Future,
    ops::Deref,
    sync::{
        Arc, Mutex, MutexGuard,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    thread::JoinHandle,
    time::Duration,
};

use strictpy_sandbox::Sandbox;
use strictpy_store::{JobStore, StoreError};
use strictpy_types::{JobStatus, Limits, Outcome};
use tokio::{net::TcpListener, runtime::Handle, sync::Notify};
use uuid::Uuid;

pub use config::Config;
pub use error::ApiError;
pub use routes::app;

use crate::{
    metrics::Metrics,
    queue::{DbQueue, Queue},
    webhook::{WebhookError, Webhooks},
    workers::{JobQueue, RunningJob},
};

/// Why the server could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// The configuration is inconsistent.
    #[error(transparent)]
    Config(#[from] config::ConfigError),
    /// The store could not be opened or recovered.
    #[error("job store: {0}")]
    Store(#[from] StoreError),
    /// The encryption keys could not be loaded or generated.
    #[error("encryption keys: {0}")]
    Keys(#[from] strictpy_store::KeyError),
    /// The webhook client or secret could not be set up.
    #[error(transparent)]
    Webhook(#[from] WebhookError),
    /// The first-start admin token could not be made.
    #[error("cannot create the first admin token: {0}")]
    Bootstrap(String),
    /// A socket or thread could not be created.
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
    /// The TLS certificate or key could not be loaded.
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
}

/// The current time in Unix milliseconds.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// Everything the handlers and workers share.
#[derive(Debug)]
pub struct Shared {
    /// The configuration as loaded.
    pub config: Config,
    /// Limits for requests that ask for none.
    pub default_limits: Limits,
    /// The most a request may ask for.
    pub max_limits: Limits,
    /// Durable job storage.
    pub store: Arc<dyn JobStore>,
    /// Jobs waiting for a worker: in memory (SQLite) or in the database
    /// (Postgres, shared by every node).
    pub queue: Queue,
    /// Set when this node's cluster tasks (heartbeat, `LISTEN`) must stop.
    pub cluster_stopped: AtomicBool,
    /// Where this node listens (`cluster.address`, else the listener's
    /// address once bound), for `GET /v1/cluster`.
    node_address: Mutex<String>,
    /// When this node started, Unix milliseconds.
    pub started_at: i64,
    /// The sandbox the workers run jobs in; stored functions are compiled
    /// in it too (on the blocking pool), so the compiled form fits it.
    pub sandbox: Arc<Sandbox>,
    /// Jobs being run, with their cancel handles.
    running: Mutex<HashMap<Uuid, RunningJob>>,
    /// Requests waiting for a job to become final (`wait: true`, `DELETE`).
    waiters: Mutex<HashMap<Uuid, Arc<workers::Waiting>>>,
    /// Jobs handed to a worker before anything of them was stored
    /// (`intake::run_unwritten`), as they would be stored, until one is
    /// written: readers see them here meanwhile ([`Shared::job`]).
    unwritten: Mutex<HashMap<Uuid, workers::UnwrittenJob>>,
    /// Prometheus metrics.
    pub metrics: Metrics,
    /// Webhook delivery.
    pub webhooks: Webhooks,
    /// False once shutdown began: new jobs are refused.
    pub accepting: AtomicBool,
    /// Set when the shutdown grace period ran out and running jobs were
    /// interrupted.
    pub stopping: AtomicBool,
    /// Worker threads still running.
    pub workers_alive: AtomicUsize,
    /// Signalled whenever a worker thread ends.
    pub workers_done: Notify,
    /// The async runtime, for worker threads that need the store.
    pub runtime: Handle,
    /// Rate limits, concurrent-job caps and the failed-auth lockout.
    pub guard: limits::Guard,
    /// The security audit log.
    pub audit: audit::AuditLog,
    /// The live output of the jobs running on this node.
    pub live: live::Hub,
    /// Recent run times, for queue estimates.
    pub run_times: estimate::RunTimes,
    /// When each token's `last_used_at` was last written, so it is written
    /// at most once a minute rather than on every request.
    touched: Mutex<HashMap<String, i64>>,
    /// When `auth_success` was last stored per token and client IP, so a
    /// busy client adds one audit row a minute, not one per request.
    seen: Mutex<HashMap<(String, std::net::IpAddr), i64>>,
}

/// The state every handler gets: a cheap handle on [`Shared`].
#[derive(Debug, Clone)]
pub struct AppState(Arc<Shared>);

impl Deref for AppState {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0
    }
}

impl Shared {
    /// The running jobs, locked. Poisoning is ignored: the map holds plain
    /// handles that stay valid whatever panicked.
    pub fn running_jobs(&self) -> MutexGuard<'_, HashMap<Uuid, RunningJob>> {
        self.running.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Interrupts job `id` if a worker of this node runs it; `by_user` says
    /// a client cancelled it (it then ends `cancelled` even at shutdown).
    /// False when no worker of this node runs it.
    pub fn interrupt(&self, id: Uuid, by_user: bool) -> bool {
        let running_jobs = self.running_jobs();
        let Some(running) = running_jobs.get(&id) else {
            return false;
        };
        if by_user {
            running.by_user.store(true, Ordering::SeqCst);
        }
        running.cancel.cancel();
        true
    }

    /// The jobs handed to a worker and not written yet, by id. An entry is
    /// removed only after its job's write committed (or failed), so a
    /// reader that looks here first and then in the store never misses a
    /// job in between.
    pub fn unwritten_jobs(&self) -> MutexGuard<'_, HashMap<Uuid, workers::UnwrittenJob>> {
        self.unwritten.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Job `id` as every reader sees it: from memory while it is handed to
    /// a worker and not written yet (`running`), else from the store.
    pub async fn job(
        &self,
        id: Uuid,
    ) -> Result<Option<strictpy_store::JobRecord>, strictpy_store::StoreError> {
        let unwritten = self.unwritten_jobs().get(&id).map(|j| j.record.clone());
        match unwritten {
            Some(job) => Ok(Some((*job).clone())),
            None => self.store.get(id).await,
        }
    }

    /// `tenant`'s unwritten jobs (all `running`) older than `before`.
    pub fn unwritten_of(
        &self,
        tenant: &str,
        before: Option<Uuid>,
    ) -> Vec<strictpy_store::JobRecord> {
        self.unwritten_jobs()
            .values()
            .map(|j| &j.record)
            .filter(|j| j.tenant == tenant && before.is_none_or(|b| j.id < b))
            .map(|j| (**j).clone())
            .collect()
    }

    fn waiters(&self) -> MutexGuard<'_, HashMap<Uuid, Arc<workers::Waiting>>> {
        self.waiters.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The notifier for job `id`, woken when it becomes final. The guard
    /// removes the map's entry when the last waiter of `id` leaves.
    pub fn waiter(&self, id: Uuid) -> workers::Waiter<'_> {
        let notify = self.waiters().entry(id).or_default().clone();
        workers::Waiter::new(self, id, notify)
    }

    /// Jobs that requests are waiting on (the `strictpy_http_waiters` gauge).
    pub fn waiter_count(&self) -> usize {
        self.waiters().len()
    }

    /// Stops accepting jobs, stops the workers taking more, and wakes every
    /// waiting request so it answers with the job as it stands.
    pub fn begin_shutdown(&self) {
        if self.accepting.swap(false, Ordering::SeqCst) {
            tracing::info!("shutting down: no new jobs; queued jobs stay in the store");
        }
        self.queue.close();
        for notify in self.waiters().values() {
            notify.notify_waiters();
        }
    }

    /// Job `id` became final on some node (a `NOTIFY`): its token's
    /// concurrent-job count here drops, requests waiting here answer, and
    /// its mirror here closes.
    pub fn remote_final(&self, id: Uuid) {
        // A job this node runs is this node's worker's to report: its
        // finish hands the waiters the final record (and the notice of that
        // very finish may arrive first). Should another node have ended it
        // (a reaper, after this node's lease ran out), the worker's own
        // finish fails and wakes the waiters then.
        if self.running_jobs().contains_key(&id) {
            return;
        }
        self.guard.end_job(id);
        self.live.close_mirror(id);
        if let Some(notify) = self.waiters().remove(&id) {
            notify.notify_waiters();
        }
    }

    /// Where this node listens, as `GET /v1/cluster` lists it.
    pub fn node_address(&self) -> String {
        self.node_address
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Wakes every waiting request so it looks at its job again.
    pub fn wake_all_waiters(&self) {
        for notify in self.waiters().values() {
            notify.notify_waiters();
        }
    }

    /// Workers of this node not running a job.
    pub fn free_workers(&self) -> u64 {
        self.config
            .workers
            .saturating_sub(self.running_jobs().len()) as u64
    }

    /// Milliseconds until a job with `ahead` queued jobs before it starts
    /// (see [`estimate::start_ms`]).
    pub fn estimate_start_ms(&self, ahead: u64) -> Option<u64> {
        estimate::start_ms(
            ahead,
            self.free_workers(),
            self.config.workers as u64,
            self.run_times.mean_ms(),
        )
    }

    /// True while the store answers and every worker is up.
    pub async fn ready(&self) -> Result<(), String> {
        self.store.ping().await.map_err(|e| e.to_string())?;
        let alive = self.workers_alive.load(Ordering::SeqCst);
        if alive < self.config.workers {
            return Err(format!("{alive} of {} workers are up", self.config.workers));
        }
        if !self.accepting.load(Ordering::SeqCst) {
            return Err("shutting down".into());
        }
        Ok(())
    }
}

impl AppState {
    /// Records that token `id` authenticated a request; the store is written
    /// in the background, at most once a minute per token.
    pub fn touch(&self, id: &str, stored: Option<i64>) {
        const EVERY_MS: i64 = 60_000;
        let now = now_ms();
        {
            let mut touched = self.touched.lock().unwrap_or_else(|p| p.into_inner());
            let last = touched.get(id).copied().or(stored).unwrap_or(i64::MIN);
            if now.saturating_sub(last) < EVERY_MS {
                return;
            }
            touched.insert(id.to_owned(), now);
        }
        let state = self.clone();
        let id = id.to_owned();
        self.runtime.spawn(async move {
            if let Err(e) = state.store.touch_token(id, now).await {
                tracing::warn!(error = %e, "cannot record a token's last use");
            }
        });
    }

    /// True when this successful authentication should be audited: the
    /// first from its token and client IP in a minute. Bounds the audit
    /// log's growth under steady traffic while keeping who-used-what-from-
    /// where.
    pub fn first_success_this_minute(&self, token_id: &str, ip: std::net::IpAddr) -> bool {
        const EVERY_MS: i64 = 60_000;
        const PRUNE_AT: usize = 10_000;
        let now = now_ms();
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        if seen.len() >= PRUNE_AT {
            seen.retain(|_, at| now.saturating_sub(*at) < EVERY_MS);
        }
        let key = (token_id.to_owned(), ip);
        match seen.get(&key) {
            Some(at) if now.saturating_sub(*at) < EVERY_MS => false,
            _ => {
                seen.insert(key, now);
                true
            }
        }
    }

    /// [`Shared::job_final`] for a job this node's worker just finished
    /// (its final state committed at `finished_at`): requests waiting on it
    /// are handed the final record, so they answer without reading it back.
    pub fn job_finished(
        &self,
        job: &strictpy_store::JobRecord,
        status: JobStatus,
        outcome: &Outcome,
        finished_at: i64,
    ) {
        if let Some(waiting) = self.waiters().get(&job.id) {
            waiting.set_final(strictpy_store::JobRecord {
                status,
                outcome: Some(outcome.clone()),
                finished_at: Some(finished_at),
                ..job.clone()
            });
        }
        self.job_final(job, status, outcome);
    }

    /// Bookkeeping for a handed-off job that ran but could not be stored
    /// (its request answers with the error): its place in the token's job
    /// count is given back, and its waiting request woken.
    pub fn job_unstored(&self, id: uuid::Uuid) {
        self.guard.end_job(id);
        self.wake_waiters(id);
    }

    /// Wakes every request waiting on job `id` and drops its entry.
    pub(crate) fn wake_waiters(&self, id: Uuid) {
        if let Some(notify) = self.waiters().remove(&id) {
            notify.notify_waiters();
        }
    }

    /// Bookkeeping for a job that just became final: metrics, waiters, the
    /// submitting token's job count, audit events, and the webhook if it
    /// has one.
    pub fn job_final(&self, job: &strictpy_store::JobRecord, status: JobStatus, outcome: &Outcome) {
        let id = job.id;
        self.guard.end_job(id);
        if let Some((name, details)) = audit::job_event(outcome) {
            let mut event = audit::Event::new(name)
                .tenant(&job.tenant)
                .details(serde_json::json!({ "job_id": id, "event": details }));
            event.token_id = job.token_id.clone();
            self.audit.record(event);
        }
        let latency = (now_ms() - job.created_at) as f64 / 1000.0;
        self.metrics.job_finished(status, outcome, latency);
        self.wake_waiters(id);
        // Most jobs have no webhook; only those need the final record read
        // back from the store.
        if job.callback.is_some() {
            self.spawn_webhook(id);
        }
    }

    /// Delivers job `id`'s webhook in the background, if it has a pending one.
    pub fn spawn_webhook(&self, id: Uuid) {
        let state = self.clone();
        self.runtime.spawn(async move {
            let job = match state.store.get(id).await {
                Ok(Some(job)) => job,
                Ok(None) => return,
                Err(e) => {
                    tracing::error!(%id, error = %e, "webhook: cannot load the job");
                    return;
                }
            };
            if job.callback.is_none() {
                return;
            }
            let body = match serde_json::to_vec(&views::JobView::from(&job)) {
                Ok(body) => body,
                Err(e) => {
                    tracing::error!(%id, error = %e, "webhook: cannot encode the job");
                    return;
                }
            };
            state
                .webhooks
                .deliver(state.store.as_ref(), &state.metrics, id, body)
                .await;
        });
    }
}

/// The delivery-claim owner of a server on SQLite, where one process owns
/// the store and claims are never written.
const LOCAL_OWNER: &str = "local";

/// A started service: store open, recovery done, workers running.
#[derive(Debug)]
pub struct Server {
    /// The shared state.
    state: AppState,
    /// The worker threads.
    threads: Vec<JoinHandle<()>>,
}

impl Server {
    /// Opens the store in `config.data_dir`, recovers, and starts the workers.
    ///
    /// Recovery: a job that was `running` when the previous process died ends
    /// `failed` with kind `internal` and [`workers::WORKER_STOPPED`] (it is
    /// not re-run, since it may have had effects through its webhook or may
    /// be what killed the process); queued jobs are queued again, oldest
    /// first; pending webhooks of final jobs are delivered.
    pub async fn start(config: Config, sandbox: Arc<Sandbox>) -> Result<Self, ServerError> {
        let store = open_store(&config).await?;
        Self::start_with_store(config, sandbox, store).await
    }

    /// [`Server::start`] on a given store.
    pub async fn start_with_store(
        config: Config,
        sandbox: Arc<Sandbox>,
        store: Arc<dyn JobStore>,
    ) -> Result<Self, ServerError> {
        config.validate()?;
        let (default_limits, max_limits) = config.limits.resolve()?;
        // On a shared store the node id names this node on its job leases
        // and its webhook delivery claims alike. On SQLite there is one
        // process and claims are not stored, so no id is made.
        let node = match store.postgres() {
            Some(pg) => Some((pg, cluster::node_id(&config)?)),
            None => None,
        };
        let owner = node
            .as_ref()
            .map_or_else(|| LOCAL_OWNER.to_owned(), |(_, id)| id.clone());
        let webhooks = Webhooks::new(&config.webhook, &config.data_dir, owner)?;
        let audit = audit::AuditLog::start(store.clone());
        let queue = match node {
            Some((pg, id)) => Queue::Database(Box::new(DbQueue::new(pg, id, &config))),
            None => Queue::Memory(JobQueue::new(config.queue_size)),
        };
        let state = AppState(Arc::new(Shared {
            guard: limits::Guard::new(config.rate_limit, config.lockout),
            audit,
            live: live::Hub::new(config.live_buffer_bytes),
            run_times: estimate::RunTimes::default(),
            touched: Mutex::new(HashMap::new()),
            seen: Mutex::new(HashMap::new()),
            default_limits,
            max_limits,
            store,
            queue,
            cluster_stopped: AtomicBool::new(false),
            node_address: Mutex::new(
                config
                    .cluster
                    .address
                    .clone()
                    .unwrap_or_else(|| config.listen.to_string()),
            ),
            started_at: now_ms(),
            sandbox: sandbox.clone(),
            running: Mutex::new(HashMap::new()),
            waiters: Mutex::new(HashMap::new()),
            unwritten: Mutex::new(HashMap::new()),
            metrics: Metrics::per_node(&config.rate_limit),
            webhooks,
            accepting: AtomicBool::new(true),
            stopping: AtomicBool::new(false),
            workers_alive: AtomicUsize::new(0),
            workers_done: Notify::new(),
            runtime: Handle::current(),
            config,
        }));
        auth::bootstrap(&state, &state.config.data_dir)
            .await
            .map_err(|e| ServerError::Bootstrap(e.to_string()))?;
        retention::spawn(&state);
        // On Postgres, a node ends only its own previous jobs; other nodes'
        // expired leases are reaped by the heartbeat (`cluster.rs`).
        let recovery = if state.queue.database().is_some() {
            cluster::start(&state).await?;
            strictpy_store::Recovery::default()
        } else {
            state
                .store
                .recover(workers::internal_outcome(workers::WORKER_STOPPED), now_ms())
                .await?
        };
        for id in &recovery.interrupted {
            tracing::warn!(%id, "job was running when the server stopped; marked failed");
        }
        for id in &recovery.queued {
            state.queue.push_recovered(*id);
        }
        // On a shared store the sweep claims what dead nodes left pending
        // (`duties.rs`); one process delivers all of it now.
        if state.queue.database().is_some() {
            duties::spawn(&state);
        } else {
            for job in state.store.pending_callbacks().await? {
                state.spawn_webhook(job.id);
            }
        }
        if !recovery.queued.is_empty() || !recovery.interrupted.is_empty() {
            tracing::info!(
                queued = recovery.queued.len(),
                interrupted = recovery.interrupted.len(),
                "recovered jobs from the store"
            );
        }
        let threads = workers::spawn(&state, &sandbox, state.config.workers).inspect_err(|_| {
            // Workers that did start must not wait on the queue forever.
            state.begin_shutdown();
        })?;
        Ok(Self { state, threads })
    }

    /// The shared state.
    pub fn state(&self) -> AppState {
        self.state.clone()
    }

    /// The router over this server's state.
    pub fn router(&self) -> axum::Router {
        app(self.state.clone())
    }

    /// Graceful shutdown: refuse new jobs, let running jobs finish within the
    /// grace period, then interrupt the rest (they end `failed`, see
    /// [`workers::SHUTDOWN_STOPPED`]). Queued jobs stay in the store.
    pub async fn shutdown(mut self) {
        let state = self.state.clone();
        state.begin_shutdown();
        let grace = Duration::from_millis(state.config.shutdown_grace_ms);
        if !wait_workers(&state, grace).await {
            tracing::warn!("grace period over; interrupting running jobs");
            state.stopping.store(true, Ordering::SeqCst);
            for job in state.running_jobs().values() {
                job.cancel.cancel();
            }
            wait_workers(&state, Duration::from_secs(10)).await;
        }
        let threads = std::mem::take(&mut self.threads);
        let _ = tokio::task::spawn_blocking(move || {
            for t in threads {
                let _ = t.join();
            }
        })
        .await;
        cluster::stop(&state).await;
    }
}

/// Opens the job store that [`Config::store_location`] names (SQLite in
/// `config.data_dir` by default) with the encryption keys
/// [`Config::keyring`] loads (generating a key file on first start). The
/// server and the CLI's store commands both open it this way.
pub async fn open_store(config: &Config) -> Result<Arc<dyn JobStore>, ServerError> {
    let location = config.store_location()?;
    let for_keys = config.clone();
    let keys = tokio::task::spawn_blocking(move || for_keys.keyring())
        .await
        .map_err(|e| StoreError::Join(e.to_string()))??;
    let store = location.open(Arc::new(keys)).await?;
    tracing::info!(store = %location.describe(), "store open");
    Ok(store)
}

/// Waits until every worker thread ended; false if `limit` passed first.
async fn wait_workers(state: &AppState, limit: Duration) -> bool {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        let done = state.workers_done.notified();
        tokio::pin!(done);
        done.as_mut().enable();
        if state.workers_alive.load(Ordering::SeqCst) == 0 {
            return true;
        }
        if tokio::time::timeout_at(deadline, done).await.is_err() {
            return state.workers_alive.load(Ordering::SeqCst) == 0;
        }
    }
}

impl Drop for Server {
    /// A server dropped without [`Server::shutdown`] (a test that ended, a
    /// start-up error) still stops its workers: no new jobs, and running ones
    /// are interrupted.
    fn drop(&mut self) {
        if self.threads.is_empty() {
            return;
        }
        self.state.begin_shutdown();
        self.state.stopping.store(true, Ordering::SeqCst);
        self.state.cluster_stopped.store(true, Ordering::SeqCst);
        for job in self.state.running_jobs().values() {
            job.cancel.cancel();
        }
    }
}

/// Serves `server` in plain HTTP on `listener` until `signal` resolves, then
/// shuts down gracefully: the listener stops accepting, in-flight requests
/// finish, and [`Server::shutdown`] drains the workers.
pub async fn serve(
    server: Server,
    listener: TcpListener,
    signal: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServerError> {
    let router = server.router();
    serve_on(server, listener, router, signal).await
}

/// [`serve`] over TLS: connections are accepted once their handshake
/// succeeded (a failed one only closes that connection), and every response
/// carries `Strict-Transport-Security`.
pub async fn serve_tls(
    server: Server,
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    signal: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServerError> {
    let listener = tls::TlsListener::new(listener, tls)?;
    let router = server
        .router()
        .layer(axum::middleware::map_response(tls::hsts));
    serve_on(server, listener, router, signal).await
}

/// Runs `router` on `listener` with the peer address as
/// `ConnectInfo<SocketAddr>` (read by [`net::guard`]) and the configured
/// read timeouts ([`conn`]) until `signal`, then drains.
async fn serve_on<L>(
    server: Server,
    listener: L,
    router: axum::Router,
    signal: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServerError>
where
    L: axum::serve::Listener<Addr = std::net::SocketAddr>,
{
    let state = server.state();
    let timeouts = conn::Timeouts::of(&state.config);
    if let (None, Ok(addr)) = (&state.config.cluster.address, listener.local_addr()) {
        *state.node_address.lock().unwrap_or_else(|p| p.into_inner()) = addr.to_string();
    }
    let on_signal = async move {
        signal.await;
        state.begin_shutdown();
    };
    conn::serve(listener, router, timeouts, on_signal).await;
    server.shutdown().await;
    Ok(())
}

/// Resolves on SIGTERM or Ctrl-C (SIGINT).
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
    tracing::info!("shutdown signal received");
}
