//! What every way of creating a job shares, after its own validation: the
//! checks of the run options (stdin, context, seed, idempotency key,
//! callback URL), the request hash, storing and queueing the job, `wait`,
//! and the `200`/`202` answer. `routes/jobs.rs` (a job's code in the
//! request) and `routes/functions.rs` (a stored function's code) both
//! create jobs through here, so an invocation is an ordinary job in every
//! respect: queue position and estimate, `queue_full`, the job cap, `wait`,
//! webhooks and live output.

use std::{sync::Arc, time::Duration};

use axum::{
    Json,
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use strictpy_store::{Created, JobRecord, JobSpec, NewJob};
use strictpy_types::{JobStatus, LimitError};
use uuid::Uuid;

use crate::{
    AppState,
    auth::Principal,
    error::ApiError,
    estimate::{job_view, queue_full_retry_after},
    now_ms,
    webhook::{WebhookError, check_url, parse_url},
    workers::{Handoff, RunningJob, Unwritten, UnwrittenJob, Waiter, Write, wait_fresh},
};

/// Longest accepted idempotency key, in bytes.
pub const MAX_IDEMPOTENCY_KEY: usize = 255;

/// A job request that passed every check, ready to store.
pub struct Prepared {
    /// The id the job is stored under, unless it replays an earlier one
    /// (chosen here so a waiting request can register before the insert).
    pub id: Uuid,
    /// What to run.
    pub spec: JobSpec,
    /// The callback URL.
    pub callback_url: Option<String>,
    /// The idempotency key.
    pub idempotency_key: Option<String>,
    /// Hash of everything that defines the job.
    pub request_hash: String,
}

impl Prepared {
    /// A checked spec with its callback and key, hashed.
    pub fn new(
        spec: JobSpec,
        callback_url: Option<String>,
        idempotency_key: Option<String>,
    ) -> Self {
        let request_hash = {
            let doc = json!({ "spec": spec, "callback_url": callback_url });
            hex::encode(Sha256::digest(doc.to_string().as_bytes()))
        };
        Self {
            id: Uuid::now_v7(),
            spec,
            callback_url,
            idempotency_key,
            request_hash,
        }
    }
}

/// The options of a run that do not depend on where its code comes from.
pub struct RunOptions<'a> {
    /// Text for stdin.
    pub stdin: Option<&'a str>,
    /// The context object.
    pub context: Option<&'a serde_json::Map<String, Value>>,
    /// The seed.
    pub seed: Option<u64>,
    /// The idempotency key.
    pub idempotency_key: Option<&'a str>,
    /// The callback URL.
    pub callback_url: Option<&'a str>,
}

/// The checks of the run options that need nothing but the configuration:
/// size caps, context keys, the seed's range, the idempotency key's length
/// and the callback URL's form. Returns the parsed callback URL, whose host
/// [`check_callback`] checks (that resolves it).
pub fn check_options(
    config: &crate::Config,
    opts: &RunOptions<'_>,
) -> Result<Option<reqwest::Url>, ApiError> {
    let caps = config.input;
    if let Some(stdin) = opts.stdin {
        too_large("stdin", stdin.len(), caps.max_stdin_bytes)?;
    }
    if let Some(context) = opts.context {
        let size = serde_json::to_vec(context).map_or(usize::MAX, |v| v.len());
        too_large("context", size, caps.max_context_bytes)?;
        for key in context.keys() {
            strictpy_analyzer::check_context_key(key).map_err(|m| {
                ApiError::unprocessable("invalid_context", format!("context: {m}"))
                    .with_details(json!({ "field": "context", "key": key }))
            })?;
        }
    }
    if opts.seed.is_some_and(|s| i64::try_from(s).is_err()) {
        return Err(
            ApiError::unprocessable("invalid_seed", "seed must be 0 to 2^63 - 1")
                .with_details(json!({ "field": "seed" })),
        );
    }
    if let Some(key) = opts.idempotency_key
        && (key.is_empty() || key.len() > MAX_IDEMPOTENCY_KEY)
    {
        return Err(ApiError::unprocessable(
            "invalid_idempotency_key",
            format!("idempotency_key must be 1 to {MAX_IDEMPOTENCY_KEY} bytes"),
        )
        .with_details(json!({ "field": "idempotency_key" })));
    }
    opts.callback_url
        .map(parse_url)
        .transpose()
        .map_err(callback_refused)
}

/// The SSRF check of a parsed callback URL (it resolves the host).
pub async fn check_callback(state: &AppState, url: Option<&reqwest::Url>) -> Result<(), ApiError> {
    if let Some(url) = url {
        check_url(url, state.webhooks.reach())
            .await
            .map_err(callback_refused)?;
    }
    Ok(())
}

/// `422` for a callback URL that is malformed or points inside.
fn callback_refused(e: WebhookError) -> ApiError {
    let code = match e {
        WebhookError::Refused(_) => "callback_refused",
        _ => "invalid_callback_url",
    };
    ApiError::unprocessable(code, e.to_string()).with_details(json!({ "field": "callback_url" }))
}

/// `422 limit_exceeded` naming the limit over its maximum.
pub fn limit_error(e: LimitError) -> ApiError {
    ApiError::unprocessable("limit_exceeded", e.to_string()).with_details(
        json!({ "field": format!("limits.{}", e.field), "value": e.value, "max": e.max }),
    )
}

/// `422 field_too_large` when a field is over its cap.
pub fn too_large(field: &str, size: usize, max: usize) -> Result<(), ApiError> {
    if size <= max {
        return Ok(());
    }
    Err(ApiError::unprocessable(
        "field_too_large",
        format!("`{field}` is {size} bytes; the most this server accepts is {max}"),
    )
    .with_details(json!({ "field": field, "size": size, "max_bytes": max })))
}

/// What [`submit`] made of a request.
#[derive(Debug)]
pub struct Submitted {
    /// The job, as stored (or, when `unwritten` is set, as it would be).
    pub job: JobRecord,
    /// True when it is a replay of an earlier request with the same
    /// idempotency key.
    pub replayed: bool,
    /// Set when the job went to a worker before anything of it was stored
    /// ([`run_unwritten`]): [`answer`] stores it if its wait ends first.
    pub unwritten: Option<Arc<Unwritten>>,
}

impl Submitted {
    /// A job that is stored.
    fn stored(job: JobRecord, replayed: bool) -> Self {
        Self {
            job,
            replayed,
            unwritten: None,
        }
    }
}

/// Stores a prepared job and queues it. A job whose client waits (`wait`)
/// and finds a worker of this node idle goes to that worker in memory, no
/// queue to pass through: stored `running` first when it has an
/// idempotency key (one store write fewer than queueing it), and without
/// one written only once, when it ends ([`run_unwritten`]).
pub async fn submit(
    state: &AppState,
    who: &Principal,
    prepared: Prepared,
    wait: bool,
) -> Result<Submitted, ApiError> {
    if !state.accepting.load(std::sync::atomic::Ordering::SeqCst) {
        return Err(ApiError::shutting_down());
    }
    // Take a queue place (or an idle worker) first, so a stored job always
    // has one; a replay gives it back when the slot drops.
    let handoff = if wait {
        state.queue.reserve_handoff()
    } else {
        None
    };
    let slot = match handoff {
        Some(slot) => slot,
        None => state
            .queue
            .reserve()
            .await?
            .ok_or_else(|| ApiError::queue_full(queue_full_retry_after(state)))?,
    };
    // Count the job against its token before it exists, so two racing
    // submissions cannot both take the last place; anything but a new job
    // gives the place back.
    let id = prepared.id;
    // On a store several nodes share, the database counts the token's jobs
    // inside the insert (`create_capped`); on one node, the guard does.
    let cap = who.limits.concurrent_jobs;
    if state.queue.database().is_none() {
        state
            .guard
            .start_job(&who.budget_key, id, cap)
            .map_err(|r| crate::auth::refused(state, r, who.event("rate_limited")))?;
    }
    let job_cap = strictpy_store::JobCap {
        budget_key: who.budget_key.clone(),
        limit: cap,
    };
    // The insert is not fsynced here: a waiting client's job is answered
    // `200` once final, and every `202` is preceded by a `sync`, which
    // concurrent requests share (group commit; see docs/http-api.md,
    // "Durability").
    let store = &state.store;
    let request_hash = prepared.request_hash.clone();
    // A job stored `running` is registered first, so a `DELETE` that finds
    // it running always finds its cancel handle too.
    let running = slot.is_handoff().then(|| {
        let running = RunningJob::default();
        state.running_jobs().insert(id, running.clone());
        running
    });
    let job = new_job(who, id, prepared);
    let database = state.queue.database();
    if let Some(running) = running.as_ref()
        && job.idempotency_key.is_none()
        && database.is_none()
    {
        return Ok(run_unwritten(state, slot, job, running.clone()));
    }
    let created = match (&running, database) {
        (Some(_), None) => store.create_running_unsynced(job, now_ms()).await.map(Some),
        // The insert claims the job for this node, unless some job is
        // queued in the cluster: then it is queued behind that one.
        (Some(_), Some(db)) => {
            db.store
                .create_claimed(job, job_cap, db.claim_at(now_ms()))
                .await
        }
        (None, _) => store.create_capped_unsynced(job, job_cap).await,
    };
    let not_new = || {
        state.guard.end_job(id);
        if running.is_some() {
            state.running_jobs().remove(&id);
        }
    };
    let created = created.inspect_err(|_| not_new())?;
    let Some(created) = created else {
        not_new();
        return Err(crate::auth::refused(
            state,
            crate::limits::Refusal::TooManyJobs { limit: cap },
            who.event("rate_limited"),
        ));
    };
    if !matches!(created, Created::New(_)) {
        not_new();
    }
    match created {
        Created::New(job) => {
            match running {
                Some(running) if job.status == JobStatus::Running => {
                    slot.hand_off(Handoff {
                        record: Box::new(job.clone()),
                        running,
                        unwritten: None,
                    });
                    state.metrics.handed_off.inc();
                }
                // Inserted queued after all: a worker claims it.
                Some(_) => {
                    state.running_jobs().remove(&id);
                    slot.push(job.id);
                }
                None => slot.push(job.id),
            }
            state.metrics.submitted.inc();
            Ok(Submitted::stored(job, false))
        }
        Created::Existing(job) if job.request_hash == request_hash => {
            // The job may be a waiting client's, not yet fsynced.
            store.sync().await?;
            Ok(Submitted::stored(job, true))
        }
        Created::Existing(job) => Err(ApiError::new(
            StatusCode::CONFLICT,
            "idempotency_key_reused",
            "this idempotency_key was used for a different request",
        )
        .with_details(json!({ "job_id": job.id }))),
    }
}

/// Hands `job` (a waiting client's, with no idempotency key) to the idle
/// worker `slot` promised, before anything of it is stored: the job is
/// written once, at its end, by the worker (its insert and its end in one
/// write), unless the request's wait ends first ([`answer`]). Without a key
/// the insert could only store this job or fail, so nothing is lost by not
/// making it first. Until it is written, readers (`GET`, the listing,
/// `DELETE`, `/events`) see it in memory ([`crate::Shared::unwritten_jobs`]).
fn run_unwritten(
    state: &AppState,
    slot: crate::queue::Reservation<'_>,
    job: NewJob,
    running: RunningJob,
) -> Submitted {
    let record = job.running_record(now_ms());
    let unwritten = Unwritten::new(job);
    state.unwritten_jobs().insert(
        record.id,
        UnwrittenJob {
            record: Arc::new(record.clone()),
            write: unwritten.clone(),
        },
    );
    slot.hand_off(Handoff {
        record: Box::new(record.clone()),
        running,
        unwritten: Some(unwritten.clone()),
    });
    state.metrics.handed_off.inc();
    state.metrics.submitted.inc();
    Submitted {
        job: record,
        replayed: false,
        unwritten: Some(unwritten),
    }
}

/// Stores a handed-off job whose wait ended before its run did: `running`,
/// so its `202` names a stored job. When the worker came first, the job is
/// read back as the worker stored it, or the worker's error returned. In a
/// task of its own, so a write begun completes and is recorded even if the
/// request is dropped meanwhile.
async fn write_unwritten(
    state: &AppState,
    unwritten: Arc<Unwritten>,
    job: JobRecord,
) -> Result<JobRecord, ApiError> {
    let task_state = state.clone();
    let written = tokio::spawn(async move {
        let mut write = unwritten.lock().await;
        match std::mem::replace(&mut *write, Write::Running) {
            Write::Pending(new) => {
                let started_at = job.started_at.unwrap_or_else(now_ms);
                let id = new.id;
                let created = task_state
                    .store
                    .create_running_unsynced(*new, started_at)
                    .await;
                task_state.unwritten_jobs().remove(&id);
                match created {
                    Ok(Created::New(job)) => Ok(job),
                    Ok(Created::Existing(_)) => {
                        *write = Write::Failed(None);
                        Err(ApiError::internal(
                            "a job without an idempotency key met an existing one",
                        ))
                    }
                    Err(e) => {
                        // The worker stores nothing of it either; cancel
                        // the run nobody will hear of.
                        *write = Write::Failed(None);
                        task_state.interrupt(id, false);
                        Err(e.into())
                    }
                }
            }
            Write::Finished => {
                *write = Write::Finished;
                task_state
                    .store
                    .get(job.id)
                    .await?
                    .ok_or_else(|| ApiError::internal("a finished job was not found"))
            }
            Write::Failed(error) => {
                *write = Write::Failed(None);
                Err(error.map_or_else(
                    || ApiError::internal("the job could not be stored"),
                    ApiError::from,
                ))
            }
            Write::Running => Ok(job),
        }
    });
    written.await.map_err(ApiError::internal)?
}

/// With `wait`, holds on until `job` is final (up to the server's maximum
/// wait), through `waiter`, the request's registration from before the
/// insert, which the worker's finish hands the record to; then the
/// `200`/`202` answer, fsynced first if it is a `202`.
pub async fn answer(
    state: &AppState,
    waiter: Option<Waiter<'_>>,
    submitted: Submitted,
    wait: bool,
) -> Result<Response, ApiError> {
    let Submitted {
        mut job,
        replayed,
        unwritten,
    } = submitted;
    if wait && !job.status.is_final() {
        let max_wait = Duration::from_millis(state.config.max_wait_ms);
        if let Some(done) = wait_fresh(state, waiter, &job, max_wait).await? {
            job = done;
        }
    }
    if !job.status.is_final()
        && let Some(unwritten) = unwritten
    {
        job = write_unwritten(state, unwritten, job).await?;
    }
    if !job.status.is_final() {
        // A `202` promises a job that survives a power loss.
        state.store.sync().await?;
    }
    job_response(state, &job, replayed).await
}

/// The record to store for `prepared`, under `id`.
fn new_job(who: &Principal, id: Uuid, prepared: Prepared) -> NewJob {
    NewJob {
        id,
        tenant: who.tenant.clone(),
        token_id: Some(who.token_id.clone()),
        idempotency_key: prepared.idempotency_key,
        request_hash: prepared.request_hash,
        created_at: now_ms(),
        spec: prepared.spec,
        callback_url: prepared.callback_url,
    }
}

/// The `200`/`202` answer with a `Location` header; a queued job carries
/// its place in the queue.
pub async fn job_response(
    state: &AppState,
    job: &JobRecord,
    replayed: bool,
) -> Result<Response, ApiError> {
    let status = if job.status.is_final() {
        StatusCode::OK
    } else {
        StatusCode::ACCEPTED
    };
    let mut headers = HeaderMap::new();
    if let Ok(v) = HeaderValue::from_str(&format!("/v1/jobs/{}", job.id)) {
        headers.insert(header::LOCATION, v);
    }
    if replayed {
        headers.insert("idempotent-replayed", HeaderValue::from_static("true"));
    }
    Ok((status, headers, Json(job_view(state, job).await?)).into_response())
}
