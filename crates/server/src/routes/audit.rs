//! `/v1/audit`: the security audit log (`admin`), newest first, with filters.

use axum::{
    Json,
    extract::{Query, State, rejection::QueryRejection},
};
use serde::{Deserialize, Serialize};
use serde_json::json;
use strictpy_store::AuditQuery;
use utoipa::{IntoParams, ToSchema};

use crate::{
    AppState,
    auth::{Auth, Scope},
    error::{ApiError, ErrorBody},
    views::{AUDIT_PAGE, AuditView},
};

/// Query of `GET /v1/audit`.
#[derive(Debug, Clone, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct AuditParams {
    /// Only this tenant's events.
    pub tenant: Option<String>,
    /// Only this event (`auth_failure`, `token_created`, ...).
    pub event: Option<String>,
    /// Only events at or after this time (RFC 3339).
    #[param(
        pattern = "^(19[7-9][0-9]|[2-9][0-9]{3})-(0[1-9]|1[0-2])-(0[1-9]|1[0-9]|2[0-8])T([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9]Z$"
    )]
    pub since: Option<String>,
    /// Only events before this time (RFC 3339).
    #[param(
        pattern = "^(19[7-9][0-9]|[2-9][0-9]{3})-(0[1-9]|1[0-2])-(0[1-9]|1[0-9]|2[0-8])T([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9]Z$"
    )]
    pub until: Option<String>,
    /// Page size, 1 to 1000 (default 100).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<u32>,
    /// The `next_cursor` of the previous page.
    #[param(pattern = "^a1[0-9]{1,18}$")]
    pub cursor: Option<String>,
}

/// A page of the audit log, newest first.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct AuditPage {
    /// The events.
    pub events: Vec<AuditView>,
    /// Pass as `cursor` for the next page; `null` on the last.
    pub next_cursor: Option<String>,
}

fn parse_time(field: &str, raw: Option<&str>) -> Result<Option<i64>, ApiError> {
    raw.map(|t| {
        humantime::parse_rfc3339_weak(t)
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .and_then(|d| i64::try_from(d.as_millis()).ok())
            .ok_or_else(|| {
                ApiError::bad_request(format!("{field} must be an RFC 3339 time"))
                    .with_details(json!({ "field": field }))
            })
    })
    .transpose()
}

/// The store query a `GET /v1/audit` asks for, or `400` for a page size
/// out of range, a cursor that is not one, or a time that is not RFC 3339.
pub fn audit_query(p: AuditParams) -> Result<AuditQuery, ApiError> {
    let limit = p.limit.unwrap_or(AUDIT_PAGE.0);
    if limit == 0 || limit > AUDIT_PAGE.1 {
        return Err(
            ApiError::bad_request(format!("limit must be 1 to {}", AUDIT_PAGE.1))
                .with_details(json!({ "field": "limit" })),
        );
    }
    let before_id = match &p.cursor {
        None => None,
        Some(c) => Some(
            c.strip_prefix("a1")
                .and_then(|n| n.parse::<i64>().ok())
                .ok_or_else(|| {
                    ApiError::bad_request("invalid cursor")
                        .with_details(json!({ "field": "cursor" }))
                })?,
        ),
    };
    Ok(AuditQuery {
        since: parse_time("since", p.since.as_deref())?,
        until: parse_time("until", p.until.as_deref())?,
        tenant: p.tenant,
        event: p.event,
        before_id,
        limit,
    })
}

/// The security audit log (`admin`), newest first, with filters.
#[utoipa::path(
    get,
    path = "/v1/audit",
    tag = "audit",
    params(AuditParams),
    security(("bearer" = ["admin"])),
    responses(
        (status = 200, description = "A page of events", body = AuditPage),
        (status = 400, description = "Bad filter", body = ErrorBody),
        (status = 403, description = "Not an admin token", body = ErrorBody),
    )
)]
pub async fn audit_log(
    State(state): State<AppState>,
    Auth(who): Auth,
    query: Result<Query<AuditParams>, QueryRejection>,
) -> Result<Json<AuditPage>, ApiError> {
    who.require(&state, Scope::Admin)?;
    let Query(p) = query.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let query = audit_query(p)?;
    let limit = query.limit;
    // Events recorded just before this request are in the queue, not yet in
    // the store; wait for them so the log reads consistently.
    state.audit.flush().await;
    let events = state.store.list_audit(query).await?;
    let next_cursor = (events.len() == limit as usize)
        .then(|| events.last().map(|e| format!("a1{}", e.id)))
        .flatten();
    Ok(Json(AuditPage {
        events: events.iter().map(AuditView::from).collect(),
        next_cursor,
    }))
}
