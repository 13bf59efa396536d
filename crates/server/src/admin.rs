//! The security endpoints: token management (`/v1/tokens`), the OAuth-style
//! exchange (`/v1/oauth/*`), the audit log, tenant export and erasure, and
//! the retention task.

use std::time::Duration;

use axum::{
    Json,
    body::Bytes,
    extract::{
        Path, Query, State,
        rejection::{BytesRejection, PathRejection, QueryRejection},
    },
    http::{HeaderMap, StatusCode, header},
    response::{IntoResponse, Response},
};
use serde::{Deserialize, Serialize, de::DeserializeOwned};
use serde_json::{Value, json};
use strictpy_store::{AuditQuery, AuditRecord, TokenKind, TokenLimits, TokenRecord};
use utoipa::{IntoParams, ToSchema};

use crate::{
    AppState,
    api::{JobView, parse_body, rfc3339},
    audit::Event,
    auth::{self, Auth, Principal, Rejection, Scope, TokenSpec},
    error::{ApiError, ErrorBody},
    now_ms,
};

/// Longest tenant name, in bytes.
const MAX_TENANT: usize = 128;

/// Longest token name, in bytes.
const MAX_NAME: usize = 200;

/// Default and largest page of `GET /v1/audit`.
const AUDIT_PAGE: (u32, u32) = (100, 1000);

/// `POST /v1/tokens`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateTokenRequest {
    /// The tenant the token acts for: 1 to 128 of `A-Z a-z 0-9 . _ -`.
    pub tenant: String,
    /// Its scopes: `jobs:write`, `jobs:read`, `check`, `admin`.
    pub scopes: Vec<String>,
    /// A name for people.
    #[serde(default)]
    pub name: Option<String>,
    /// Seconds until it expires; omitted, it never does.
    #[serde(default)]
    pub expires_in_secs: Option<u64>,
    /// Rate limits of its own (`requests_per_minute`, `burst`,
    /// `concurrent_jobs`); omitted fields take the server's defaults.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub rate_limit: Option<TokenLimits>,
}

/// A token as listed: never its secret.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct TokenView {
    /// The public id (also the lookup part of the token).
    pub id: String,
    /// The tenant.
    pub tenant: String,
    /// The name.
    pub name: String,
    /// The scopes.
    pub scopes: Vec<String>,
    /// When it was made.
    pub created_at: String,
    /// When it expires.
    pub expires_at: Option<String>,
    /// When it last authenticated a request (to the minute).
    pub last_used_at: Option<String>,
    /// When it was revoked.
    pub revoked_at: Option<String>,
    /// Its own rate limits.
    #[schema(value_type = Object)]
    pub rate_limit: TokenLimits,
}

impl From<&TokenRecord> for TokenView {
    fn from(t: &TokenRecord) -> Self {
        Self {
            id: t.id.clone(),
            tenant: t.tenant.clone(),
            name: t.name.clone(),
            scopes: t.scopes.clone(),
            created_at: rfc3339(t.created_at),
            expires_at: t.expires_at.map(rfc3339),
            last_used_at: t.last_used_at.map(rfc3339),
            revoked_at: t.revoked_at.map(rfc3339),
            rate_limit: t.limits,
        }
    }
}

/// A new token: shown once, with its secret.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct CreatedToken {
    /// The secret token string. It is not stored and cannot be shown again.
    pub token: String,
    /// Everything else.
    #[serde(flatten)]
    pub view: TokenView,
}

/// The tokens.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct TokenList {
    /// API tokens, oldest first.
    pub tokens: Vec<TokenView>,
}

/// Query of `GET /v1/tokens`.
#[derive(Debug, Clone, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct TokenListParams {
    /// Only this tenant's tokens.
    pub tenant: Option<String>,
}

/// Checks a tenant name: short, and plain enough to put in paths and logs.
pub fn valid_tenant(tenant: &str) -> Result<(), String> {
    let ok = !tenant.is_empty()
        && tenant.len() <= MAX_TENANT
        && tenant
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "a tenant is 1 to {MAX_TENANT} characters of A-Z, a-z, 0-9, '.', '_' and '-'"
        ))
    }
}

/// Validates a token request into what [`TokenSpec::issue`] needs.
pub fn token_spec(req: CreateTokenRequest) -> Result<TokenSpec, ApiError> {
    let field = |field: &str, message: String| {
        ApiError::unprocessable("invalid_token_request", message)
            .with_details(json!({ "field": field }))
    };
    valid_tenant(&req.tenant).map_err(|m| field("tenant", m))?;
    let scopes = Scope::parse_all(req.scopes.iter().map(String::as_str))
        .map_err(|s| field("scopes", format!("unknown scope {s:?}")))?;
    if scopes.is_empty() {
        return Err(field("scopes", "a token needs at least one scope".into()));
    }
    let name = req.name.unwrap_or_default();
    if name.len() > MAX_NAME {
        return Err(field("name", format!("a name is at most {MAX_NAME} bytes")));
    }
    if req.expires_in_secs == Some(0) {
        return Err(field("expires_in_secs", "must be at least 1".into()));
    }
    let limits = req.rate_limit.unwrap_or_default();
    if [
        limits.requests_per_minute,
        limits.burst,
        limits.concurrent_jobs,
    ]
    .contains(&Some(0))
    {
        return Err(field("rate_limit", "every limit must be at least 1".into()));
    }
    Ok(TokenSpec {
        kind: TokenKind::Api,
        tenant: req.tenant,
        name,
        scopes,
        expires_in_secs: req.expires_in_secs,
        parent_id: None,
        family_id: None,
        limits,
    })
}

/// Create an API token (`admin`).
///
/// The answer carries the token once; only its hash is stored.
#[utoipa::path(
    post,
    path = "/v1/tokens",
    tag = "tokens",
    request_body = CreateTokenRequest,
    security(("bearer" = ["admin"])),
    responses(
        (status = 201, description = "The new token, with its secret", body = CreatedToken),
        (status = 401, description = "Missing or bad token", body = ErrorBody),
        (status = 403, description = "Not an admin token", body = ErrorBody),
        (status = 422, description = "Bad tenant, scope, name or expiry", body = ErrorBody),
    )
)]
pub async fn create_token(
    State(state): State<AppState>,
    Auth(who): Auth,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    who.require(&state, Scope::Admin)?;
    let req: CreateTokenRequest = parse_body(body)?;
    let token = token_spec(req)?.issue()?;
    state.store.insert_token(token.record.clone()).await?;
    state
        .audit
        .record(Event::new("token_created").principal(&who).details(json!({
            "created": token.record.id,
            "for_tenant": token.record.tenant,
            "scopes": token.record.scopes,
        })));
    let body = CreatedToken {
        view: TokenView::from(&token.record),
        token: token.secret,
    };
    Ok((StatusCode::CREATED, no_store(), Json(body)).into_response())
}

/// `Cache-Control: no-store` for answers that carry secrets (RFC 6749 5.1).
fn no_store() -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert(
        header::CACHE_CONTROL,
        header::HeaderValue::from_static("no-store"),
    );
    h
}

/// List API tokens (`admin`).
#[utoipa::path(
    get,
    path = "/v1/tokens",
    tag = "tokens",
    params(TokenListParams),
    security(("bearer" = ["admin"])),
    responses(
        (status = 200, description = "The tokens, without secrets", body = TokenList),
        (status = 403, description = "Not an admin token", body = ErrorBody),
    )
)]
pub async fn list_tokens(
    State(state): State<AppState>,
    Auth(who): Auth,
    query: Result<Query<TokenListParams>, QueryRejection>,
) -> Result<Json<TokenList>, ApiError> {
    who.require(&state, Scope::Admin)?;
    let Query(params) = query.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let tokens = state.store.list_tokens(params.tenant).await?;
    Ok(Json(TokenList {
        tokens: tokens.iter().map(TokenView::from).collect(),
    }))
}

/// Revoke an API token (`admin`), and every token exchanged for it.
#[utoipa::path(
    delete,
    path = "/v1/tokens/{id}",
    tag = "tokens",
    params(("id" = String, Path, description = "The token's public id")),
    security(("bearer" = ["admin"])),
    responses(
        (status = 200, description = "The revoked token", body = TokenView),
        (status = 404, description = "No such token", body = ErrorBody),
    )
)]
pub async fn revoke_token(
    State(state): State<AppState>,
    Auth(who): Auth,
    path: Result<Path<String>, PathRejection>,
) -> Result<Json<TokenView>, ApiError> {
    who.require(&state, Scope::Admin)?;
    let Path(id) = path.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let not_found = || ApiError::not_found(format!("no token {id}"));
    let token = state.store.token(id.clone()).await?.ok_or_else(not_found)?;
    if token.kind != TokenKind::Api {
        return Err(not_found());
    }
    if state.store.revoke_token(id.clone(), now_ms()).await? {
        state.audit.record(
            Event::new("token_revoked")
                .principal(&who)
                .details(json!({ "revoked": id, "for_tenant": token.tenant })),
        );
    }
    let token = state.store.token(id.clone()).await?.ok_or_else(not_found)?;
    Ok(Json(TokenView::from(&token)))
}

/// Reads a body that may be JSON or `application/x-www-form-urlencoded`
/// (what OAuth clients send).
fn parse_form_or_json<T: DeserializeOwned>(
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<T, ApiError> {
    let is_form = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
    if !is_form {
        return parse_body(body);
    }
    let bytes = body.map_err(|e| ApiError::bad_request(e.body_text()))?;
    serde_urlencoded::from_bytes(&bytes)
        .map_err(|e| ApiError::bad_request(format!("invalid form body: {e}")))
}

/// `POST /v1/oauth/token`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
pub struct TokenGrant {
    /// Must be `client_credentials`.
    pub grant_type: String,
    /// Space-separated scopes, at most those of the API token; omitted, all
    /// of them.
    #[serde(default)]
    pub scope: Option<String>,
}

/// `POST /v1/oauth/token/refresh`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
pub struct RefreshGrant {
    /// The refresh token; single use.
    pub refresh_token: String,
    /// `refresh_token`, if given.
    #[serde(default)]
    pub grant_type: Option<String>,
    /// Fewer scopes than before, if wanted.
    #[serde(default)]
    pub scope: Option<String>,
}

/// `POST /v1/oauth/revoke` (RFC 7009).
#[derive(Debug, Clone, Deserialize, ToSchema)]
pub struct RevokeRequest {
    /// The token to revoke.
    pub token: String,
    /// `access_token` or `refresh_token`: where to look first.
    #[serde(default)]
    pub token_type_hint: Option<String>,
}

/// The exchange's answer (RFC 6749 section 5.1).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct TokenResponse {
    /// The short-lived bearer token.
    pub access_token: String,
    /// Always `Bearer`.
    pub token_type: &'static str,
    /// Seconds the access token lives.
    pub expires_in: u64,
    /// The single-use refresh token.
    pub refresh_token: String,
    /// The scopes granted, space-separated.
    pub scope: String,
}

/// `400` in the shared shape with an OAuth error code.
fn oauth_error(code: &'static str, message: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, code, message)
}

/// The scopes asked for, which must be among `granted`.
fn narrow(granted: &[String], asked: Option<&str>) -> Result<Vec<Scope>, ApiError> {
    let granted = Scope::parse_all(granted.iter().map(String::as_str)).unwrap_or_default();
    let Some(asked) = asked.filter(|s| !s.trim().is_empty()) else {
        return Ok(granted);
    };
    let asked = Scope::parse_all(asked.split_ascii_whitespace())
        .map_err(|s| oauth_error("invalid_scope", format!("unknown scope {s:?}")))?;
    if let Some(extra) = asked
        .iter()
        .find(|s| !granted.contains(s) && !granted.contains(&Scope::Admin))
    {
        return Err(oauth_error(
            "invalid_scope",
            format!("the scope {} was not granted", extra.as_str()),
        ));
    }
    Ok(asked)
}

/// Issues an access and a refresh token of one family.
async fn issue_pair(
    state: &AppState,
    tenant: &str,
    parent_id: &str,
    family_id: &str,
    scopes: Vec<Scope>,
    limits: TokenLimits,
) -> Result<TokenResponse, ApiError> {
    let ttl = state.config.auth.access_token_ttl_secs;
    let spec = |kind, expires| TokenSpec {
        kind,
        tenant: tenant.to_owned(),
        name: String::new(),
        scopes: scopes.clone(),
        expires_in_secs: Some(expires),
        parent_id: Some(parent_id.to_owned()),
        family_id: Some(family_id.to_owned()),
        limits,
    };
    let access = spec(TokenKind::Access, ttl).issue()?;
    let refresh = spec(TokenKind::Refresh, state.config.auth.refresh_token_ttl_secs).issue()?;
    state.store.insert_token(access.record).await?;
    state.store.insert_token(refresh.record).await?;
    Ok(TokenResponse {
        access_token: access.secret,
        token_type: "Bearer",
        expires_in: ttl,
        refresh_token: refresh.secret,
        scope: scopes
            .iter()
            .map(|s| s.as_str())
            .collect::<Vec<_>>()
            .join(" "),
    })
}

/// Exchange an API token for short-lived credentials.
///
/// Authenticated by an API token (`Authorization: Bearer spk_...`); the body
/// (JSON or form) has `grant_type=client_credentials` and optionally a
/// narrower `scope`.
#[utoipa::path(
    post,
    path = "/v1/oauth/token",
    tag = "oauth",
    request_body = TokenGrant,
    security(("bearer" = [])),
    responses(
        (status = 200, description = "An access and a refresh token", body = TokenResponse),
        (status = 400, description = "unsupported_grant_type or invalid_scope", body = ErrorBody),
        (status = 401, description = "Missing or bad API token", body = ErrorBody),
    )
)]
pub async fn oauth_token(
    State(state): State<AppState>,
    Auth(who): Auth,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let grant: TokenGrant = parse_form_or_json(&headers, body)?;
    if grant.grant_type != "client_credentials" {
        return Err(oauth_error(
            "unsupported_grant_type",
            "grant_type must be client_credentials (use /v1/oauth/token/refresh to refresh)",
        ));
    }
    if who.kind != TokenKind::Api {
        return Err(oauth_error(
            "invalid_client",
            "only an API token can be exchanged",
        ));
    }
    let api = state
        .store
        .token(who.token_id.clone())
        .await?
        .ok_or_else(|| auth::unauthorized("the token is gone", true))?;
    let scopes = narrow(&api.scopes, grant.scope.as_deref())?;
    let family = auth::random_id()?;
    let pair = issue_pair(&state, &who.tenant, &api.id, &family, scopes, api.limits).await?;
    state.audit.record(
        Event::new("token_exchanged")
            .principal(&who)
            .details(json!({ "family": family, "scope": pair.scope })),
    );
    Ok((no_store(), Json(pair)).into_response())
}

/// Rotate a refresh token.
///
/// The old refresh token is spent; presenting a spent one again revokes its
/// whole family (every access and refresh token descended from the same
/// exchange), since one of the two presenters is not the client.
#[utoipa::path(
    post,
    path = "/v1/oauth/token/refresh",
    tag = "oauth",
    security(()),
    request_body = RefreshGrant,
    responses(
        (status = 200, description = "A new access and refresh token", body = TokenResponse),
        (status = 400, description = "invalid_grant: unknown, expired, revoked or reused", body = ErrorBody),
    )
)]
pub async fn oauth_refresh(
    State(state): State<AppState>,
    headers: HeaderMap,
    auth::Ip(ip): auth::Ip,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    auth::unauthenticated(&state, ip)?;
    let grant: RefreshGrant = parse_form_or_json(&headers, body)?;
    if grant
        .grant_type
        .as_deref()
        .is_some_and(|g| g != "refresh_token")
    {
        return Err(oauth_error(
            "unsupported_grant_type",
            "grant_type must be refresh_token",
        ));
    }
    let invalid = |state: &AppState, why: Rejection, id: Option<String>| {
        let _ = auth::failed(state, ip, why, id);
        oauth_error(
            "invalid_grant",
            "the refresh token is invalid, expired, revoked or already used",
        )
    };
    let record = match auth::verify(&state, &grant.refresh_token, &[TokenKind::Refresh]).await? {
        Ok(record) => record,
        Err((why, id)) => return Err(invalid(&state, why, id)),
    };
    let family = record.family_id.clone().unwrap_or_default();
    let fresh = record.used_at.is_none()
        && state
            .store
            .consume_refresh(record.id.clone(), now_ms())
            .await?;
    if !fresh {
        let revoked = state.store.revoke_family(family.clone(), now_ms()).await?;
        state.audit.record(
            Event::new("refresh_token_reuse")
                .tenant(&record.tenant)
                .token(&record.id)
                .ip(ip)
                .details(json!({ "family": family, "revoked": revoked })),
        );
        return Err(invalid(&state, Rejection::Revoked, Some(record.id)));
    }
    // The API token it descends from must still be good.
    let parent = match &record.parent_id {
        Some(p) => state.store.token(p.clone()).await?,
        None => None,
    };
    let Some(parent) =
        parent.filter(|p| p.revoked_at.is_none() && p.expires_at.is_none_or(|e| e > now_ms()))
    else {
        state.store.revoke_family(family, now_ms()).await?;
        return Err(invalid(&state, Rejection::Revoked, Some(record.id)));
    };
    let scopes = narrow(&record.scopes, grant.scope.as_deref())?;
    let pair = issue_pair(
        &state,
        &record.tenant,
        &parent.id,
        &family,
        scopes,
        parent.limits,
    )
    .await?;
    state.audit.record(
        Event::new("token_refreshed")
            .tenant(&record.tenant)
            .token(&record.id)
            .ip(ip)
            .details(json!({ "family": family })),
    );
    Ok((no_store(), Json(pair)).into_response())
}

/// Revoke a token (RFC 7009).
///
/// Answers `200` whether or not the token was valid, so the answer reveals
/// nothing. Revoking a refresh token revokes its whole family.
#[utoipa::path(
    post,
    path = "/v1/oauth/revoke",
    tag = "oauth",
    security(()),
    request_body = RevokeRequest,
    responses(
        (status = 200, description = "Revoked, or was not valid anyway"),
        (status = 400, description = "No token in the body", body = ErrorBody),
    )
)]
pub async fn oauth_revoke(
    State(state): State<AppState>,
    headers: HeaderMap,
    auth::Ip(ip): auth::Ip,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    auth::unauthenticated(&state, ip)?;
    let req: RevokeRequest = parse_form_or_json(&headers, body)?;
    // The hint says where to look first; our tokens name their kind, so
    // after the hinted kind the others are tried, as RFC 7009 asks.
    let mut kinds = vec![TokenKind::Access, TokenKind::Refresh, TokenKind::Api];
    if req.token_type_hint.as_deref() == Some("refresh_token") {
        kinds.swap(0, 1);
    }
    if let Ok(record) = auth::verify(&state, &req.token, &kinds).await? {
        let now = now_ms();
        match (record.kind, &record.family_id) {
            (TokenKind::Refresh, Some(family)) => {
                state.store.revoke_family(family.clone(), now).await?;
            }
            _ => {
                state.store.revoke_token(record.id.clone(), now).await?;
            }
        }
        state.audit.record(
            Event::new("token_revoked")
                .tenant(&record.tenant)
                .token(&record.id)
                .ip(ip)
                .details(json!({ "kind": record.kind, "via": "oauth_revoke" })),
        );
    }
    Ok((StatusCode::OK, Json(json!({}))).into_response())
}

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
    pub since: Option<String>,
    /// Only events before this time (RFC 3339).
    pub until: Option<String>,
    /// Page size, 1 to 1000 (default 100).
    pub limit: Option<u32>,
    /// The `next_cursor` of the previous page.
    pub cursor: Option<String>,
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
    /// Event details.
    #[schema(value_type = Object)]
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
    // Events recorded just before this request are in the queue, not yet in
    // the store; wait for them so the log reads consistently.
    state.audit.flush().await;
    let events = state
        .store
        .list_audit(AuditQuery {
            tenant: p.tenant,
            event: p.event,
            since: parse_time("since", p.since.as_deref())?,
            until: parse_time("until", p.until.as_deref())?,
            before_id,
            limit,
        })
        .await?;
    let next_cursor = (events.len() == limit as usize)
        .then(|| events.last().map(|e| format!("a1{}", e.id)))
        .flatten();
    Ok(Json(AuditPage {
        events: events.iter().map(AuditView::from).collect(),
        next_cursor,
    }))
}

/// A job in an export: the job as the API shows it, plus its inputs.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ExportedJob {
    /// The job.
    #[serde(flatten)]
    pub job: JobView,
    /// Its source.
    pub code: String,
    /// Its stdin.
    pub stdin: String,
    /// Its context.
    #[schema(value_type = Option<Object>)]
    pub context: Option<Value>,
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
    params(("tenant" = String, Path, description = "The tenant")),
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
        Event::new("export")
            .principal(&who)
            .details(json!({ "exported_tenant": tenant })),
    );
    state.audit.flush().await;
    let jobs = state.store.tenant_jobs(tenant.clone()).await?;
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
                code: j.spec.code.clone(),
                stdin: j.spec.stdin.clone(),
                context: j.spec.context.clone(),
            })
            .collect(),
        audit,
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
}

/// Erase a tenant (`admin`).
///
/// Stops its running jobs, deletes all of its jobs, revokes its tokens, and
/// replaces its name (and client IPs) in the audit log with a random
/// pseudonym, keeping the entries for the legal record.
#[utoipa::path(
    delete,
    path = "/v1/tenants/{tenant}",
    tag = "tenants",
    params(("tenant" = String, Path, description = "The tenant")),
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
        if let Some(running) = state.running_jobs().get(&job.id) {
            running.cancel.cancel();
        }
        state.guard.end_job(job.id);
    }
    state.audit.flush().await;
    let anonymised_as = format!("erased-{}", auth::random_id()?);
    let erased = state
        .store
        .erase_tenant(tenant.clone(), anonymised_as.clone(), now_ms())
        .await?;
    state
        .audit
        .record(Event::new("tenant_erased").principal(&who).details(json!({
            "anonymised_as": anonymised_as,
            "jobs_deleted": erased.jobs,
            "tokens_revoked": erased.tokens,
            "audit_anonymised": erased.audit,
        })));
    Ok(Json(ErasureReport {
        tenant,
        anonymised_as,
        jobs_deleted: erased.jobs,
        tokens_revoked: erased.tokens,
        audit_anonymised: erased.audit,
    }))
}

/// A new webhook secret, shown once.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct RotatedSecret {
    /// The new secret. Deliveries are signed with it and with the previous
    /// one until the previous one is retired.
    pub secret: String,
    /// How many secrets sign each delivery now.
    pub active: usize,
}

fn webhook_error(e: crate::webhook::WebhookError) -> ApiError {
    match e {
        crate::webhook::WebhookError::Configured => {
            ApiError::new(StatusCode::CONFLICT, "secret_configured", e.to_string())
        }
        other => ApiError::internal(other),
    }
}

/// Start a webhook secret rotation (`admin`).
///
/// A new secret is generated and every delivery is signed with both it and
/// the current one (two `v1=` entries), so receivers can switch to the new
/// secret at any time; then retire the old one with
/// `DELETE /v1/webhook-secrets/previous`.
#[utoipa::path(
    post,
    path = "/v1/webhook-secrets",
    tag = "webhooks",
    security(("bearer" = ["admin"])),
    responses(
        (status = 201, description = "The new secret, shown once", body = RotatedSecret),
        (status = 403, description = "Not an admin token", body = ErrorBody),
        (status = 409, description = "The secrets are set in the configuration", body = ErrorBody),
    )
)]
pub async fn rotate_webhook_secret(
    State(state): State<AppState>,
    Auth(who): Auth,
) -> Result<Response, ApiError> {
    who.require(&state, Scope::Admin)?;
    let secret = state.webhooks.rotate().map_err(webhook_error)?;
    state
        .audit
        .record(Event::new("webhook_secret_rotated").principal(&who));
    let active = state.webhooks.active_secrets().len();
    Ok((
        StatusCode::CREATED,
        no_store(),
        Json(RotatedSecret { secret, active }),
    )
        .into_response())
}

/// Retire the previous webhook secret (`admin`): only the newest signs.
#[utoipa::path(
    delete,
    path = "/v1/webhook-secrets/previous",
    tag = "webhooks",
    security(("bearer" = ["admin"])),
    responses(
        (status = 200, description = "How many secrets were retired"),
        (status = 403, description = "Not an admin token", body = ErrorBody),
        (status = 409, description = "The secrets are set in the configuration", body = ErrorBody),
    )
)]
pub async fn retire_webhook_secret(
    State(state): State<AppState>,
    Auth(who): Auth,
) -> Result<Json<Value>, ApiError> {
    who.require(&state, Scope::Admin)?;
    let retired = state.webhooks.retire_previous().map_err(webhook_error)?;
    state.audit.record(
        Event::new("webhook_secret_retired")
            .principal(&who)
            .details(json!({ "retired": retired })),
    );
    Ok(Json(json!({ "retired": retired, "active": 1 })))
}

/// Starts the retention task: every `purge_interval_secs`, final jobs and
/// audit events past their TTL are deleted, with expired exchanged tokens and
/// stale rate-limit state.
pub fn spawn_retention(state: &AppState) {
    let state = state.clone();
    let r = state.config.retention;
    let secs_ms = |s: u64| i64::try_from(s.saturating_mul(1000)).unwrap_or(i64::MAX);
    state.runtime.clone().spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(r.purge_interval_secs.max(1)));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if !state.accepting.load(std::sync::atomic::Ordering::SeqCst) {
                return;
            }
            let now = now_ms();
            let purged = state
                .store
                .purge(
                    now.saturating_sub(secs_ms(r.jobs_ttl_secs)),
                    now.saturating_sub(secs_ms(r.audit_ttl_secs)),
                    now.saturating_sub(24 * 60 * 60 * 1000),
                )
                .await;
            state.guard.prune();
            match purged {
                Ok(p) if p.jobs + p.audit + p.tokens > 0 => {
                    tracing::info!(
                        jobs = p.jobs,
                        audit = p.audit,
                        tokens = p.tokens,
                        "retention purge"
                    );
                }
                Ok(_) => {}
                Err(e) => tracing::error!(error = %e, "retention purge failed"),
            }
        }
    });
}
