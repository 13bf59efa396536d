//! Response views more than one resource answers with: a job as the API
//! shows it (jobs, tenant export, webhook bodies) and an audit event (the
//! audit log, tenant export).

use serde::Serialize;
use serde_json::Value;
use strictpy_store::{AuditRecord, Callback, DeliveryState, JobRecord};
use strictpy_types::{JobStatus, Limits, RunError, Usage};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::http::rfc3339;

/// Default and largest page of `GET /v1/audit`.
pub const AUDIT_PAGE: (u32, u32) = (100, 1000);

/// A job: its state, the limits applied and, once final, its outcome.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct JobView {
    /// The job id.
    pub id: Uuid,
    /// Where the job is in its life.
    pub status: JobStatus,
    /// When it was accepted (RFC 3339).
    pub created_at: String,
    /// When a worker started it.
    pub started_at: Option<String>,
    /// When it became final.
    pub finished_at: Option<String>,
    /// The limits as applied.
    pub limits: Limits,
    /// The extra modules the request allowed.
    pub allow: Vec<String>,
    /// The seed, if one was given.
    pub seed: Option<u64>,
    /// The idempotency key, if one was given.
    pub idempotency_key: Option<String>,
    /// The program's stdout; `null` until final.
    pub stdout: Option<String>,
    /// The program's stderr; `null` until final.
    pub stderr: Option<String>,
    /// True when stdout was cut at the output cap.
    pub stdout_truncated: Option<bool>,
    /// True when stderr was cut at the output cap.
    pub stderr_truncated: Option<bool>,
    /// The JSON value of the program's global `result`.
    #[schema(value_type = Option<Object>)]
    pub result: Option<Value>,
    /// Why the job failed or was cancelled.
    pub error: Option<RunError>,
    /// What the run used; `null` until final.
    pub usage: Option<Usage>,
    /// The webhook, if the job has one.
    pub callback: Option<CallbackView>,
    /// While queued: how many queued jobs are ahead of it (of every
    /// tenant, on every node sharing the store); `null` otherwise.
    pub queue_position: Option<u64>,
    /// While queued: milliseconds until it is expected to start, from the
    /// recent run times and the free workers; `null` otherwise, or before
    /// any job ran when no worker is free.
    pub estimated_start_ms: Option<u64>,
    /// The stored function this job invoked, if it is an invocation.
    pub function: Option<FunctionCall>,
}

/// The stored function version a job ran.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct FunctionCall {
    /// The function's name.
    pub name: String,
    /// The version that ran.
    pub version: i64,
}

impl From<&JobRecord> for JobView {
    fn from(job: &JobRecord) -> Self {
        let outcome = job.outcome.as_ref();
        Self {
            id: job.id,
            status: job.status,
            created_at: rfc3339(job.created_at),
            started_at: job.started_at.map(rfc3339),
            finished_at: job.finished_at.map(rfc3339),
            limits: job.spec.limits,
            allow: job.spec.allow.clone(),
            seed: job.spec.seed,
            idempotency_key: job.idempotency_key.clone(),
            stdout: outcome.map(|o| o.stdout.clone()),
            stderr: outcome.map(|o| o.stderr.clone()),
            stdout_truncated: outcome.map(|o| o.stdout_truncated),
            stderr_truncated: outcome.map(|o| o.stderr_truncated),
            result: outcome.and_then(|o| o.result.clone()),
            error: outcome.and_then(|o| o.error.clone()),
            usage: outcome.map(|o| o.usage),
            callback: job.callback.as_ref().map(callback_view),
            queue_position: None,
            estimated_start_ms: None,
            function: job.spec.function.as_ref().map(|f| FunctionCall {
                name: f.name.clone(),
                version: f.version,
            }),
        }
    }
}

/// Delivery state of a job's webhook.
#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum CallbackStatus {
    /// Not delivered yet.
    Pending,
    /// The receiver answered 2xx.
    Delivered,
    /// Delivery gave up.
    Failed,
}

/// One delivery attempt.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct CallbackAttempt {
    /// When it started (RFC 3339).
    pub at: String,
    /// The receiver's status code, if it answered.
    pub status_code: Option<u16>,
    /// What went wrong.
    pub error: Option<String>,
    /// How long it took.
    pub duration_ms: u64,
}

/// A job's webhook and how its delivery went.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct CallbackView {
    /// The callback URL.
    pub url: String,
    /// Delivery state.
    pub status: CallbackStatus,
    /// Every attempt, oldest first.
    pub attempts: Vec<CallbackAttempt>,
}

fn callback_view(c: &Callback) -> CallbackView {
    CallbackView {
        url: c.url.clone(),
        status: match c.state {
            DeliveryState::Pending => CallbackStatus::Pending,
            DeliveryState::Delivered => CallbackStatus::Delivered,
            DeliveryState::Failed => CallbackStatus::Failed,
        },
        attempts: c
            .attempts
            .iter()
            .map(|a| CallbackAttempt {
                at: rfc3339(a.at),
                status_code: a.status_code,
                error: a.error.clone(),
                duration_ms: a.duration_ms,
            })
            .collect(),
    }
}

/// One audit event.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct AuditView {
    /// Sequence number.
    pub id: i64,
    /// When (RFC 3339).
    pub at: String,
    /// What happened.
    pub event: String,
    /// The tenant, when known (anonymised after erasure).
    pub tenant: Option<String>,
    /// The token's public id, never its secret.
    pub token_id: Option<String>,
    /// The client's IP.
    pub ip: Option<String>,
    /// Event details; `null` for events that have none.
    #[schema(value_type = Option<Object>)]
    pub details: Value,
}

impl From<&AuditRecord> for AuditView {
    fn from(r: &AuditRecord) -> Self {
        Self {
            id: r.id,
            at: rfc3339(r.event.at),
            event: r.event.event.clone(),
            tenant: r.event.tenant.clone(),
            token_id: r.event.token_id.clone(),
            ip: r.event.ip.clone(),
            details: r.event.details.clone(),
        }
    }
}

/// What a job was given: its code, stdin and context.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct JobInput {
    /// Its source.
    pub code: String,
    /// Its stdin.
    pub stdin: String,
    /// Its context.
    #[schema(value_type = Option<Object>)]
    pub context: Option<Value>,
}

impl From<&JobRecord> for JobInput {
    fn from(job: &JobRecord) -> Self {
        Self {
            code: job.spec.code.clone(),
            stdin: job.spec.stdin.clone(),
            context: job.spec.context.clone(),
        }
    }
}

/// A version of a stored function (its own answers, and a tenant export).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct FunctionView {
    /// The function's name.
    pub name: String,
    /// This version's number (1 for the first registration).
    pub version: i64,
    /// What it is for.
    pub description: Option<String>,
    /// The Python source.
    pub code: String,
    /// The extra modules it may import.
    pub allow: Vec<String>,
    /// Its limits; an invocation may only tighten them.
    pub limits: Limits,
    /// When this version was stored (RFC 3339).
    pub created_at: String,
    /// When it was deleted (only ever shown in a tenant export).
    pub deleted_at: Option<String>,
    /// True when a compiled form is stored with it, so invocations skip
    /// the parse and compile (false for code that only runs from source,
    /// such as a program whose compile prints warnings).
    pub compiled: bool,
}

impl From<&strictpy_store::FunctionRecord> for FunctionView {
    fn from(f: &strictpy_store::FunctionRecord) -> Self {
        Self {
            name: f.name.clone(),
            version: f.version,
            description: f.description.clone(),
            code: f.code.clone(),
            allow: f.allow.clone(),
            limits: f.limits,
            created_at: rfc3339(f.created_at),
            deleted_at: f.deleted_at.map(rfc3339),
            compiled: f.compiled.is_some(),
        }
    }
}
