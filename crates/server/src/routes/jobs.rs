//! `/v1/jobs`: submit (one or a batch), get, cancel and list jobs.

use std::time::Duration;

use axum::{
    Json,
    body::Bytes,
    extract::{
        Path, Query, State,
        rejection::{BytesRejection, PathRejection, QueryRejection},
    },
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use strictpy_store::{Created, JobRecord, JobSpec, ListQuery, NewJob};
use strictpy_types::{JobStatus, LimitOverrides, Outcome, Verdict};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::{
    AppState,
    auth::{Auth, Principal, Scope},
    error::{ApiError, ErrorBody},
    estimate::{job_view, queue_full_retry_after},
    http::{parse_body, rfc3339},
    now_ms,
    policy::{allowlist, static_check},
    views::{JobInput, JobView},
    webhook::{WebhookError, check_url, parse_url},
    workers::{wait_final, wait_fresh},
};

/// Most jobs in one batch.
pub const MAX_BATCH: usize = 20;

/// Longest accepted idempotency key, in bytes.
pub const MAX_IDEMPOTENCY_KEY: usize = 255;

/// Default page size of `GET /v1/jobs`.
const DEFAULT_PAGE: u32 = 50;

/// Largest page size of `GET /v1/jobs`.
const MAX_PAGE: u32 = 200;

/// How long `DELETE` waits for a running job to stop before answering.
const CANCEL_WAIT: Duration = Duration::from_secs(5);

/// `POST /v1/jobs`: a job to run.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct JobRequest {
    /// The Python source.
    pub code: String,
    /// Text for the program's stdin.
    #[serde(default)]
    pub stdin: Option<String>,
    /// A JSON object whose keys become globals of the program.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub context: Option<serde_json::Map<String, Value>>,
    /// Limit overrides, each at most the configured maximum.
    #[serde(default)]
    pub limits: Option<LimitOverrides>,
    /// Extra modules to allow, from the policy's `allowable_modules`.
    #[serde(default)]
    pub allow: Vec<String>,
    /// Seeds every source of randomness, for a reproducible run; 0 to
    /// 2^63 - 1, so it survives any JSON decoder as an exact integer.
    #[serde(default)]
    pub seed: Option<u64>,
    /// Where to POST the job's final state (signed; see the docs).
    #[serde(default)]
    pub callback_url: Option<String>,
    /// Hold the request open until the job is final (up to the server's
    /// maximum wait) and answer `200` with it.
    #[serde(default)]
    pub wait: bool,
    /// Submitting the same key again returns the original job.
    #[serde(default)]
    #[schema(min_length = 1, max_length = 255)]
    pub idempotency_key: Option<String>,
}

/// `POST /v1/jobs/batch`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BatchRequest {
    /// 1 to 20 jobs, each validated on its own. `wait` is not supported.
    #[schema(min_items = 1, max_items = 20)]
    pub jobs: Vec<Value>,
}

/// One item of a batch answer: the job's id and status, or its error.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct BatchItem {
    /// The job's id, when it was accepted.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<Uuid>,
    /// The job's status, when it was accepted.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<JobStatus>,
    /// Why this item was refused.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<Value>,
}

/// The answer to a batch: one item per submitted job, in order.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct BatchResponse {
    /// The items.
    pub jobs: Vec<BatchItem>,
}

/// A job in a listing.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct JobSummary {
    /// The job id.
    pub id: Uuid,
    /// Its status.
    pub status: JobStatus,
    /// The verdict of a failed or cancelled job.
    pub verdict: Option<Verdict>,
    /// When it was accepted.
    pub created_at: String,
    /// When it started.
    pub started_at: Option<String>,
    /// When it became final.
    pub finished_at: Option<String>,
}

/// A page of jobs, newest first.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct JobList {
    /// The jobs.
    pub jobs: Vec<JobSummary>,
    /// Pass as `cursor` for the next page; `null` on the last page.
    pub next_cursor: Option<String>,
}

/// Query of `GET /v1/jobs`.
#[derive(Debug, Clone, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListParams {
    /// Only jobs in this status.
    pub status: Option<JobStatus>,
    /// Only jobs that ended with this verdict (`timeout`, `exception`, ...).
    /// A page may then hold fewer than `limit` jobs and still have a
    /// `next_cursor`.
    pub verdict: Option<Verdict>,
    /// Page size, 1 to 200 (default 50).
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<u32>,
    /// The `next_cursor` of the previous page.
    #[param(pattern = "^c1[0-9a-f]{32}$")]
    pub cursor: Option<String>,
}

/// A job request that passed every check, ready to store.
struct Prepared {
    /// The id the job is stored under, unless it replays an earlier one.
    id: Uuid,
    /// What to run.
    spec: JobSpec,
    /// The callback URL.
    callback_url: Option<String>,
    /// The idempotency key.
    idempotency_key: Option<String>,
    /// Hash of everything that defines the job.
    request_hash: String,
}

/// Validates a job request the way `strictpy check` and `strictpy run` do:
/// allowlist, limits, context keys, callback URL, then the static check.
async fn prepare(state: &AppState, who: &Principal, req: JobRequest) -> Result<Prepared, ApiError> {
    let Checked {
        allowlist,
        limits,
        callback,
    } = check_request(
        &state.config,
        &state.default_limits,
        &state.max_limits,
        &req,
    )?;
    if let Some(url) = &callback {
        check_url(url, state.webhooks.reach())
            .await
            .map_err(callback_refused)?;
    }
    let code = static_check(state, who, req.code, allowlist.clone()).await?;
    let spec = JobSpec {
        code,
        stdin: req.stdin.unwrap_or_default(),
        context: req.context.map(Value::Object),
        allow: req.allow,
        allowlist,
        limits,
        seed: req.seed,
    };
    let request_hash = {
        let doc = json!({ "spec": spec, "callback_url": req.callback_url });
        hex::encode(Sha256::digest(doc.to_string().as_bytes()))
    };
    Ok(Prepared {
        id: Uuid::now_v7(),
        spec,
        callback_url: req.callback_url,
        idempotency_key: req.idempotency_key,
        request_hash,
    })
}

/// What [`check_request`] found a request to ask for.
#[derive(Debug)]
pub struct Checked {
    /// The effective import allowlist.
    pub allowlist: std::collections::BTreeSet<String>,
    /// The limits as applied.
    pub limits: strictpy_types::Limits,
    /// The parsed callback URL (its host is checked separately, since that
    /// resolves it).
    pub callback: Option<reqwest::Url>,
}

/// The checks of a job request that need nothing but the configuration:
/// field caps, the allowlist, limits, context keys, the seed, the
/// idempotency key and the callback URL's form. `prepare` runs them first;
/// the fuzz targets run them on their own.
pub fn check_request(
    config: &crate::Config,
    default_limits: &strictpy_types::Limits,
    max_limits: &strictpy_types::Limits,
    req: &JobRequest,
) -> Result<Checked, ApiError> {
    let caps = config.input;
    if let Some(stdin) = &req.stdin {
        too_large("stdin", stdin.len(), caps.max_stdin_bytes)?;
    }
    if let Some(context) = &req.context {
        let size = serde_json::to_vec(context).map_or(usize::MAX, |v| v.len());
        too_large("context", size, caps.max_context_bytes)?;
    }
    let allowlist = allowlist(&config.policy, &req.allow)?;
    let limits = default_limits
        .with_overrides(&req.limits.unwrap_or_default(), max_limits)
        .map_err(|e| {
            ApiError::unprocessable("limit_exceeded", e.to_string()).with_details(
                json!({ "field": format!("limits.{}", e.field), "value": e.value, "max": e.max }),
            )
        })?;
    if let Some(context) = &req.context {
        for key in context.keys() {
            strictpy_analyzer::check_context_key(key).map_err(|m| {
                ApiError::unprocessable("invalid_context", format!("context: {m}"))
                    .with_details(json!({ "field": "context", "key": key }))
            })?;
        }
    }
    if req.seed.is_some_and(|s| i64::try_from(s).is_err()) {
        return Err(
            ApiError::unprocessable("invalid_seed", "seed must be 0 to 2^63 - 1")
                .with_details(json!({ "field": "seed" })),
        );
    }
    if let Some(key) = &req.idempotency_key
        && (key.is_empty() || key.len() > MAX_IDEMPOTENCY_KEY)
    {
        return Err(ApiError::unprocessable(
            "invalid_idempotency_key",
            format!("idempotency_key must be 1 to {MAX_IDEMPOTENCY_KEY} bytes"),
        )
        .with_details(json!({ "field": "idempotency_key" })));
    }
    let callback = req
        .callback_url
        .as_deref()
        .map(parse_url)
        .transpose()
        .map_err(callback_refused)?;
    Ok(Checked {
        allowlist,
        limits,
        callback,
    })
}

/// `422` for a callback URL that is malformed or points inside.
fn callback_refused(e: WebhookError) -> ApiError {
    let code = match e {
        WebhookError::Refused(_) => "callback_refused",
        _ => "invalid_callback_url",
    };
    ApiError::unprocessable(code, e.to_string()).with_details(json!({ "field": "callback_url" }))
}

/// `422 field_too_large` when a field is over its cap.
fn too_large(field: &str, size: usize, max: usize) -> Result<(), ApiError> {
    if size <= max {
        return Ok(());
    }
    Err(ApiError::unprocessable(
        "field_too_large",
        format!("`{field}` is {size} bytes; the most this server accepts is {max}"),
    )
    .with_details(json!({ "field": field, "size": size, "max_bytes": max })))
}

/// Stores a prepared job and queues it. Returns the job and whether it is a
/// replay of an earlier request with the same idempotency key.
async fn submit(
    state: &AppState,
    who: &Principal,
    prepared: Prepared,
) -> Result<(JobRecord, bool), ApiError> {
    if !state.accepting.load(std::sync::atomic::Ordering::SeqCst) {
        return Err(ApiError::shutting_down());
    }
    // Take a queue place first, so a stored job always has one; a replay
    // gives it back when the slot drops.
    let slot = state
        .queue
        .reserve()
        .await?
        .ok_or_else(|| ApiError::queue_full(queue_full_retry_after(state)))?;
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
    let created = store
        .create_capped_unsynced(new_job(who, id, prepared), job_cap)
        .await
        .inspect_err(|_| state.guard.end_job(id))?;
    let Some(created) = created else {
        return Err(crate::auth::refused(
            state,
            crate::limits::Refusal::TooManyJobs { limit: cap },
            who.event("rate_limited"),
        ));
    };
    if !matches!(created, Created::New(_)) {
        state.guard.end_job(id);
    }
    match created {
        Created::New(job) => {
            slot.push(job.id);
            state.metrics.submitted.inc();
            Ok((job, false))
        }
        Created::Existing(job) if job.request_hash == request_hash => {
            // The job may be a waiting client's, not yet fsynced.
            store.sync().await?;
            Ok((job, true))
        }
        Created::Existing(job) => Err(ApiError::new(
            StatusCode::CONFLICT,
            "idempotency_key_reused",
            "this idempotency_key was used for a different request",
        )
        .with_details(json!({ "job_id": job.id }))),
    }
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
async fn job_response(
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

/// Create a job.
///
/// Answers `202` with the queued job, or `200` with the final job when `wait`
/// is set and it finished within the server's maximum wait. A policy or
/// syntax violation is `422` and nothing is stored.
#[utoipa::path(
    post,
    path = "/v1/jobs",
    tag = "jobs",
    request_body = JobRequest,
    responses(
        (status = 202, description = "Queued", body = JobView, headers(("Location" = String, description = "The job's URL"))),
        (status = 200, description = "Final (wait, or an idempotent replay of a final job)", body = JobView),
        (status = 400, description = "Malformed JSON, a wrong type or an unknown field", body = ErrorBody),
        (status = 409, description = "The idempotency key was used for a different request", body = ErrorBody),
        (status = 413, description = "Body over the cap", body = ErrorBody),
        (status = 422, description = "Policy violation, limit above the maximum, or a refused callback", body = ErrorBody),
        (status = 503, description = "queue_full, shutting_down, or storage_unavailable (the store's disk is full, it is read-only or down)", body = ErrorBody, headers(("Retry-After" = u64, description = "Seconds to wait before retrying: for queue_full, when the job at the head of the queue is expected to start"))),
    )
)]
pub async fn create_job(
    State(state): State<AppState>,
    Auth(who): Auth,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    who.require(&state, Scope::JobsWrite)?;
    let req: JobRequest = parse_body(body)?;
    let wait = req.wait;
    let prepared = prepare(&state, &who, req).await?;
    // Waiting from before the insert on, so the finish hands its record over.
    let waiter = wait.then(|| state.waiter(prepared.id));
    let (mut job, replayed) = submit(&state, &who, prepared).await?;
    if wait && !job.status.is_final() {
        let max_wait = Duration::from_millis(state.config.max_wait_ms);
        if let Some(done) = wait_fresh(&state, waiter, &job, max_wait).await? {
            job = done;
        }
    }
    if !job.status.is_final() {
        // A `202` promises a job that survives a power loss.
        state.store.sync().await?;
    }
    job_response(&state, &job, replayed).await
}

/// Create up to 20 jobs.
///
/// Each item is validated and stored on its own; the answer lists, in order,
/// each job's id and status or its error.
#[utoipa::path(
    post,
    path = "/v1/jobs/batch",
    tag = "jobs",
    request_body = BatchRequest,
    responses(
        (status = 202, description = "One item per job, in order", body = BatchResponse),
        (status = 400, description = "Malformed body", body = ErrorBody),
        (status = 413, description = "Body over the cap", body = ErrorBody),
        (status = 422, description = "Empty or more than 20 jobs", body = ErrorBody),
    )
)]
pub async fn create_batch(
    State(state): State<AppState>,
    Auth(who): Auth,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    who.require(&state, Scope::JobsWrite)?;
    let batch: BatchRequest = parse_body(body)?;
    if batch.jobs.is_empty() || batch.jobs.len() > MAX_BATCH {
        return Err(ApiError::unprocessable(
            "invalid_batch",
            format!("a batch holds 1 to {MAX_BATCH} jobs"),
        )
        .with_details(json!({ "field": "jobs", "count": batch.jobs.len() })));
    }
    let mut items = Vec::with_capacity(batch.jobs.len());
    for raw in batch.jobs {
        let result = async {
            let req: JobRequest = serde_json::from_value(raw)
                .map_err(|e| ApiError::bad_request(format!("invalid job: {e}")))?;
            if req.wait {
                return Err(ApiError::unprocessable(
                    "wait_in_batch",
                    "`wait` is not supported in a batch",
                )
                .with_details(json!({ "field": "wait" })));
            }
            let prepared = prepare(&state, &who, req).await?;
            submit(&state, &who, prepared).await
        }
        .await;
        items.push(match result {
            Ok((job, _)) => BatchItem {
                id: Some(job.id),
                status: Some(job.status),
                error: None,
            },
            Err(e) => BatchItem {
                id: None,
                status: None,
                error: serde_json::to_value(e.body()).ok(),
            },
        });
    }
    // One fsync for the whole batch makes each of its jobs survive a power
    // loss before the `202`.
    state.store.sync().await?;
    Ok((StatusCode::ACCEPTED, Json(BatchResponse { jobs: items })).into_response())
}

fn job_id(path: Result<Path<String>, PathRejection>) -> Result<Uuid, ApiError> {
    let Path(raw) = path.map_err(|e| ApiError::bad_request(e.body_text()))?;
    Uuid::parse_str(&raw).map_err(|_| ApiError::not_found(format!("no job {raw}")))
}

/// The caller's job `id`; another tenant's job is `404` exactly like an
/// unknown id, so ids reveal nothing across tenants.
async fn own_job(state: &AppState, who: &Principal, id: Uuid) -> Result<JobRecord, ApiError> {
    match state.store.get(id).await? {
        Some(job) if job.tenant == who.tenant => Ok(job),
        _ => Err(ApiError::not_found(format!("no job {id}"))),
    }
}

/// Get a job.
#[utoipa::path(
    get,
    path = "/v1/jobs/{id}",
    tag = "jobs",
    params(("id" = String, Path, description = "The job id")),
    responses(
        (status = 200, description = "The job", body = JobView),
        (status = 404, description = "No such job", body = ErrorBody),
    )
)]
pub async fn get_job(
    State(state): State<AppState>,
    Auth(who): Auth,
    path: Result<Path<String>, PathRejection>,
) -> Result<Json<JobView>, ApiError> {
    who.require(&state, Scope::JobsRead)?;
    let id = job_id(path)?;
    let job = own_job(&state, &who, id).await?;
    Ok(Json(job_view(&state, &job).await?))
}

/// What a job was given: its code, stdin and context (so a person can load
/// it back into the playground's editor).
#[utoipa::path(
    get,
    path = "/v1/jobs/{id}/input",
    tag = "jobs",
    params(("id" = String, Path, description = "The job id")),
    responses(
        (status = 200, description = "The job's inputs", body = JobInput),
        (status = 404, description = "No such job", body = ErrorBody),
    )
)]
pub async fn get_job_input(
    State(state): State<AppState>,
    Auth(who): Auth,
    path: Result<Path<String>, PathRejection>,
) -> Result<Json<JobInput>, ApiError> {
    who.require(&state, Scope::JobsRead)?;
    let id = job_id(path)?;
    let job = own_job(&state, &who, id).await?;
    Ok(Json(JobInput::from(&job)))
}

/// Cancel a job.
///
/// A queued job never runs. A running job is interrupted and ends
/// `cancelled`. Cancelling a cancelled job answers it again; a job that
/// already succeeded or failed is `409`.
#[utoipa::path(
    delete,
    path = "/v1/jobs/{id}",
    tag = "jobs",
    params(("id" = String, Path, description = "The job id")),
    responses(
        (status = 200, description = "The cancelled job", body = JobView),
        (status = 202, description = "Cancellation asked for; the job has not stopped yet", body = JobView),
        (status = 404, description = "No such job", body = ErrorBody),
        (status = 409, description = "The job already finished", body = ErrorBody),
    )
)]
pub async fn cancel_job(
    State(state): State<AppState>,
    Auth(who): Auth,
    path: Result<Path<String>, PathRejection>,
) -> Result<Response, ApiError> {
    who.require(&state, Scope::JobsWrite)?;
    let id = job_id(path)?;
    let job = own_job(&state, &who, id).await?;
    if job.status.is_final() {
        if job.status == JobStatus::Cancelled {
            return job_response(&state, &job, false).await;
        }
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "job_finished",
            format!("job {id} already {}", job.status),
        )
        .with_details(json!({ "status": job.status })));
    }
    let outcome = Outcome::failed(Verdict::Cancelled, "cancelled before it ran");
    if state
        .store
        .cancel_queued(id, outcome.clone(), now_ms())
        .await?
    {
        state.queue.remove(id);
        state.job_final(&job, JobStatus::Cancelled, &outcome);
    } else if let Some(running) = state.running_jobs().get(&id) {
        running
            .by_user
            .store(true, std::sync::atomic::Ordering::SeqCst);
        running.cancel.cancel();
    } else if state.queue.database().is_some() {
        return cancel_elsewhere(&state, id).await;
    }
    let job = wait_final(&state, id, CANCEL_WAIT)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no job {id}")))?;
    job_response(&state, &job, false).await
}

/// How often a cancel of a job running on another node is sent again while
/// the job has not stopped (it may have been claimed a moment before the
/// first notice reached its node).
const CANCEL_RESEND: Duration = Duration::from_millis(250);

/// Cancels a job that another node runs: a `NOTIFY` its node acts on,
/// repeated until the job is final or [`CANCEL_WAIT`] passes.
async fn cancel_elsewhere(state: &AppState, id: Uuid) -> Result<Response, ApiError> {
    let deadline = tokio::time::Instant::now() + CANCEL_WAIT;
    loop {
        state.queue.cancel_elsewhere(id).await?;
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let job = wait_final(state, id, CANCEL_RESEND.min(left))
            .await?
            .ok_or_else(|| ApiError::not_found(format!("no job {id}")))?;
        let stopping = !state.accepting.load(std::sync::atomic::Ordering::SeqCst);
        if job.status.is_final() || left <= CANCEL_RESEND || stopping {
            return job_response(state, &job, false).await;
        }
    }
}

/// List jobs, newest first.
#[utoipa::path(
    get,
    path = "/v1/jobs",
    tag = "jobs",
    params(ListParams),
    responses(
        (status = 200, description = "A page of jobs", body = JobList),
        (status = 400, description = "Bad query", body = ErrorBody),
    )
)]
pub async fn list_jobs(
    State(state): State<AppState>,
    Auth(who): Auth,
    query: Result<Query<ListParams>, QueryRejection>,
) -> Result<Json<JobList>, ApiError> {
    who.require(&state, Scope::JobsRead)?;
    let Query(params) = query.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let (limit, before) = page(&params)?;
    let (jobs, next) = match params.verdict {
        None => {
            let jobs = state
                .store
                .list(ListQuery {
                    tenant: who.tenant.clone(),
                    status: params.status,
                    before,
                    limit,
                })
                .await?;
            let next = (jobs.len() == limit as usize)
                .then(|| jobs.last().map(|j| j.id))
                .flatten();
            (jobs, next)
        }
        Some(verdict) => with_verdict(&state, &who, params.status, verdict, before, limit).await?,
    };
    Ok(Json(JobList {
        jobs: jobs
            .iter()
            .map(|j| JobSummary {
                id: j.id,
                status: j.status,
                verdict: j.outcome.as_ref().and_then(|o| o.verdict()),
                created_at: rfc3339(j.created_at),
                started_at: j.started_at.map(rfc3339),
                finished_at: j.finished_at.map(rfc3339),
            })
            .collect(),
        next_cursor: next.map(encode_cursor),
    }))
}

/// The page `GET /v1/jobs` asks for: its size and the job it continues
/// after, or `400` for a size out of range or a cursor that is not one.
pub fn page(params: &ListParams) -> Result<(u32, Option<Uuid>), ApiError> {
    let limit = params.limit.unwrap_or(DEFAULT_PAGE);
    if limit == 0 || limit > MAX_PAGE {
        return Err(
            ApiError::bad_request(format!("limit must be 1 to {MAX_PAGE}"))
                .with_details(json!({ "field": "limit" })),
        );
    }
    let before = match &params.cursor {
        None => None,
        Some(c) => Some(decode_cursor(c).ok_or_else(|| {
            ApiError::bad_request("invalid cursor").with_details(json!({ "field": "cursor" }))
        })?),
    };
    Ok((limit, before))
}

/// Most jobs one `GET /v1/jobs?verdict=` request reads from the store.
const VERDICT_SCAN: usize = 1000;

/// A page of the tenant's jobs that ended with `verdict`. The verdict lives
/// in the (encrypted) outcome, so the store cannot filter on it: this reads
/// pages of final jobs newest first and keeps the matches, stopping at
/// `limit` matches or after [`VERDICT_SCAN`] jobs; the cursor continues
/// from the last job read.
async fn with_verdict(
    state: &AppState,
    who: &Principal,
    status: Option<JobStatus>,
    verdict: Verdict,
    mut before: Option<Uuid>,
    limit: u32,
) -> Result<(Vec<JobRecord>, Option<Uuid>), ApiError> {
    // Only cancelled jobs carry `cancelled`; every other verdict is a failure.
    let implied = if verdict == Verdict::Cancelled {
        JobStatus::Cancelled
    } else {
        JobStatus::Failed
    };
    if status.is_some_and(|s| s != implied) {
        return Ok((Vec::new(), None));
    }
    let mut found = Vec::new();
    let mut scanned = 0;
    loop {
        let page = state
            .store
            .list(ListQuery {
                tenant: who.tenant.clone(),
                status: Some(implied),
                before,
                limit: MAX_PAGE,
            })
            .await?;
        let end = page.len() < MAX_PAGE as usize;
        for job in page {
            scanned += 1;
            before = Some(job.id);
            if job.outcome.as_ref().and_then(|o| o.verdict()) == Some(verdict) {
                found.push(job);
                if found.len() == limit as usize {
                    return Ok((found, before));
                }
            }
        }
        if end {
            return Ok((found, None));
        }
        if scanned >= VERDICT_SCAN {
            return Ok((found, before));
        }
    }
}

/// Cursors are opaque to clients: a version tag and the last id seen, so the
/// format can change without breaking anyone who treats them as tokens.
pub(crate) fn encode_cursor(id: Uuid) -> String {
    format!("c1{}", id.simple())
}

fn decode_cursor(cursor: &str) -> Option<Uuid> {
    Uuid::try_parse(cursor.strip_prefix("c1")?).ok()
}
