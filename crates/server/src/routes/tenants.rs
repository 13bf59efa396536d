//! `/v1/tenants/{tenant}`: export everything stored about a tenant, and
//! erase a tenant.

use axum::{
    Json,
    extract::{Path, State, rejection::PathRejection},
    response::{IntoResponse, Response},
};
use serde::Serialize;
use serde_json::json;
use strictpy_store::AuditQuery;
use utoipa::ToSchema;

use crate::{
    AppState,
    auth::{self, Auth, Principal, Scope},
    error::{ApiError, ErrorBody},
    http::{no_store, rfc3339, valid_tenant},
    now_ms,
    views::{AUDIT_PAGE, AuditView, FunctionView, JobInput, JobView},
};

/// A job in an export: the job as the API shows it, plus its inputs.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ExportedJob {
    /// The job.
    #[serde(flatten)]
    pub job: JobView,
    /// Its code, stdin and context.
    #[serde(flatten)]
    pub input: JobInput,
}

/// Everything stored about a tenant.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct TenantExport {
    /// The tenant.
    pub tenant: String,
    /// When the export was made.
    pub exported_at: String,
    /// Every job, oldest first.
    pub jobs: Vec<ExportedJob>,
    /// Every audit event about the tenant, oldest first.
    pub audit: Vec<AuditView>,
    /// Every version of every stored function, deleted ones included, by
    /// name and version.
    pub functions: Vec<FunctionView>,
}

fn tenant_path(path: Result<Path<String>, PathRejection>) -> Result<String, ApiError> {
    let Path(tenant) = path.map_err(|e| ApiError::bad_request(e.body_text()))?;
    valid_tenant(&tenant)
        .map_err(|m| ApiError::bad_request(m).with_details(json!({ "field": "tenant" })))?;
    Ok(tenant)
}

/// `admin`, or the tenant's own token with `scope`; otherwise `403`.
fn admin_or_own(
    state: &AppState,
    who: &Principal,
    tenant: &str,
    scope: Scope,
) -> Result<(), ApiError> {
    if who.tenant == tenant {
        who.require(state, scope)
    } else {
        who.require(state, Scope::Admin)
    }
}

/// Export a tenant's data (`admin`, or the tenant's own `jobs:read` token).
#[utoipa::path(
    get,
    path = "/v1/tenants/{tenant}/export",
    tag = "tenants",
    params(("tenant" = String, Path, description = "The tenant", pattern = "^[A-Za-z0-9._-]{1,128}$")),
    security(("bearer" = ["admin"]), ("bearer" = ["jobs:read"])),
    responses(
        (status = 200, description = "All of the tenant's jobs and audit events", body = TenantExport),
        (status = 403, description = "Neither admin nor the tenant's own token", body = ErrorBody),
    )
)]
pub async fn export_tenant(
    State(state): State<AppState>,
    Auth(who): Auth,
    path: Result<Path<String>, PathRejection>,
) -> Result<Response, ApiError> {
    let tenant = tenant_path(path)?;
    admin_or_own(&state, &who, &tenant, Scope::JobsRead)?;
    state.audit.record(
        who.event("export")
            .details(json!({ "exported_tenant": tenant })),
    );
    state.audit.flush().await;
    let jobs = state.store.tenant_jobs(tenant.clone()).await?;
    let functions = state.store.tenant_functions(tenant.clone()).await?;
    let mut audit = Vec::new();
    let mut before_id = None;
    loop {
        let page = state
            .store
            .list_audit(AuditQuery {
                tenant: Some(tenant.clone()),
                before_id,
                limit: AUDIT_PAGE.1,
                ..AuditQuery::default()
            })
            .await?;
        before_id = page.last().map(|e| e.id);
        let done = page.len() < AUDIT_PAGE.1 as usize;
        audit.extend(page.iter().map(AuditView::from));
        if done {
            break;
        }
    }
    audit.reverse();
    let export = TenantExport {
        exported_at: rfc3339(now_ms()),
        jobs: jobs
            .iter()
            .map(|j| ExportedJob {
                job: JobView::from(j),
                input: JobInput::from(j),
            })
            .collect(),
        audit,
        functions: functions.iter().map(FunctionView::from).collect(),
        tenant,
    };
    Ok((no_store(), Json(export)).into_response())
}

/// What erasing a tenant did.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ErasureReport {
    /// The tenant erased.
    pub tenant: String,
    /// The name its audit entries now carry.
    pub anonymised_as: String,
    /// Jobs deleted.
    pub jobs_deleted: u64,
    /// Tokens revoked.
    pub tokens_revoked: u64,
    /// Audit entries anonymised (kept for the legal record).
    pub audit_anonymised: u64,
    /// Stored function versions deleted.
    pub functions_deleted: u64,
}

/// Erase a tenant (`admin`).
///
/// Stops its running jobs, deletes all of its jobs and stored functions,
/// revokes its tokens, and
/// replaces its name (and client IPs) in the audit log with a random
/// pseudonym, keeping the entries for the legal record.
#[utoipa::path(
    delete,
    path = "/v1/tenants/{tenant}",
    tag = "tenants",
    params(("tenant" = String, Path, description = "The tenant", pattern = "^[A-Za-z0-9._-]{1,128}$")),
    security(("bearer" = ["admin"])),
    responses(
        (status = 200, description = "What was erased", body = ErasureReport),
        (status = 403, description = "Not an admin token", body = ErrorBody),
    )
)]
pub async fn erase_tenant(
    State(state): State<AppState>,
    Auth(who): Auth,
    path: Result<Path<String>, PathRejection>,
) -> Result<Json<ErasureReport>, ApiError> {
    who.require(&state, Scope::Admin)?;
    let tenant = tenant_path(path)?;
    // Stop its jobs first: queued ones leave the queue, running ones are
    // interrupted (their results then have no row to land in).
    for job in state.store.tenant_jobs(tenant.clone()).await? {
        if job.status.is_final() {
            continue;
        }
        state.queue.remove(job.id);
        state.interrupt(job.id, false);
        state.guard.end_job(job.id);
    }
    // Running jobs not written yet must never be: their worker, and their
    // request, find them failed (and store nothing).
    let unwritten: Vec<_> = state
        .unwritten_jobs()
        .values()
        .filter(|j| j.record.tenant == tenant)
        .cloned()
        .collect();
    for job in unwritten {
        let mut write = job.write.lock().await;
        if matches!(*write, crate::workers::Write::Pending(_)) {
            *write = crate::workers::Write::Failed(None);
        }
        drop(write);
        state.unwritten_jobs().remove(&job.record.id);
        state.interrupt(job.record.id, false);
    }
    state.audit.flush().await;
    let anonymised_as = format!("erased-{}", auth::random_id()?);
    let erased = state
        .store
        .erase_tenant(tenant.clone(), anonymised_as.clone(), now_ms())
        .await?;
    state
        .audit
        .record(who.event("tenant_erased").details(json!({
            "anonymised_as": anonymised_as,
            "jobs_deleted": erased.jobs,
            "tokens_revoked": erased.tokens,
            "audit_anonymised": erased.audit,
            "functions_deleted": erased.functions,
        })));
    Ok(Json(ErasureReport {
        tenant,
        anonymised_as,
        jobs_deleted: erased.jobs,
        tokens_revoked: erased.tokens,
        audit_anonymised: erased.audit,
        functions_deleted: erased.functions,
    }))
}
