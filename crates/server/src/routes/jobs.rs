//! `/v1/jobs`: submit (one or a batch), get, cancel and list jobs.

use std::time::Duration;

use axum::{
    Json,
    body::Bytes,
    extract::{
        Path, Query, State,
        rejection::{BytesRejection, PathRejection, QueryRejection},
    },
    http::StatusCode,
    response::{IntoResponse, Response},
};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use strictpy_store::{JobRecord, JobSpec, ListQuery};
use strictpy_types::{JobStatus, LimitOverrides, Outcome, Verdict};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::{
    AppState,
    auth::{Auth, Principal, Scope},
    error::{ApiError, ErrorBody},
    estimate::job_view,
    http::{parse_body, rfc3339},
    intake::{
        Prepared, RunOptions, answer, check_callback, check_options, job_response, limit_error,
        submit,
    },
    now_ms,
    policy::{allowlist, static_check},
    views::{JobInput, JobView},
    workers::wait_final,
};

/// Most jobs in one batch.
pub const MAX_BATCH: usize = 20;

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

/// Validates a job request the way `strictpy check` and `strictpy run` do:
/// the configuration-only checks ([`check_request`]), the callback's host,
/// then the static check.
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
    check_callback(state, callback.as_ref()).await?;
    let code = static_check(state, who, req.code, allowlist.clone()).await?;
    let spec = JobSpec {
        code,
        stdin: req.stdin.unwrap_or_default(),
        context: req.context.map(Value::Object),
        allow: req.allow,
        allowlist,
        limits,
        seed: req.seed,
        function: None,
    };
    Ok(Prepared::new(spec, req.callback_url, req.idempotency_key))
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
/// the run options (`intake::check_options`: field caps, context keys, the
/// seed, the idempotency key and the callback URL's form), the allowlist
/// and the limits. `prepare` runs them first; the fuzz targets run them on
/// their own.
pub fn check_request(
    config: &crate::Config,
    default_limits: &strictpy_types::Limits,
    max_limits: &strictpy_types::Limits,
    req: &JobRequest,
) -> Result<Checked, ApiError> {
    let callback = check_options(
        config,
        &RunOptions {
            stdin: req.stdin.as_deref(),
            context: req.context.as_ref(),
            seed: req.seed,
            idempotency_key: req.idempotency_key.as_deref(),
            callback_url: req.callback_url.as_deref(),
        },
    )?;
    let allowlist = allowlist(&config.policy, &req.allow)?;
    let limits = default_limits
        .with_overrides(&req.limits.unwrap_or_default(), max_limits)
        .map_err(limit_error)?;
    Ok(Checked {
        allowlist,
        limits,
        callback,
    })
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
    let submitted = submit(&state, &who, prepared, wait).await?;
    answer(&state, waiter, submitted, wait).await
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
            submit(&state, &who, prepared, false).await
        }
        .await;
        items.push(match result {
            Ok(submitted) => BatchItem {
                id: Some(submitted.job.id),
                status: Some(submitted.job.status),
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
    match state.job(id).await? {
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
    } else if !state.interrupt(id, true) && state.queue.database().is_some() {
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
            // Handed-off jobs not written yet, looked at before the store
            // (see `Shared::unwritten_jobs`); one written meanwhile is in
            // both.
            let unwritten = match params.status {
                None | Some(JobStatus::Running) => state.unwritten_of(&who.tenant, before),
                Some(_) => Vec::new(),
            };
            let mut jobs = state
                .store
                .list(ListQuery {
                    tenant: who.tenant.clone(),
                    status: params.status,
                    before,
                    limit,
                })
                .await?;
            if !unwritten.is_empty() {
                jobs.retain(|j| unwritten.iter().all(|u| u.id != j.id));
                jobs.extend(unwritten);
                jobs.sort_unstable_by_key(|j| std::cmp::Reverse(j.id));
                jobs.truncate(limit as usize);
            }
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
