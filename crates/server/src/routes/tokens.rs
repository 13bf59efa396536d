//! `/v1/tokens`: create, list and revoke API tokens (`admin`).

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
use serde_json::json;
use strictpy_store::{TokenKind, TokenLimits, TokenRecord};
use utoipa::{IntoParams, ToSchema};

use crate::{
    AppState,
    auth::{Auth, Scope, TokenSpec},
    error::{ApiError, ErrorBody},
    http::{no_store, parse_body, rfc3339, valid_tenant},
    now_ms,
};

/// Longest token name, in bytes.
const MAX_NAME: usize = 200;

/// Longest token lifetime: 100 years, in seconds.
const MAX_EXPIRY_SECS: u64 = 3_153_600_000;

/// `POST /v1/tokens`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateTokenRequest {
    /// The tenant the token acts for: 1 to 128 of `A-Z a-z 0-9 . _ -`.
    #[schema(pattern = "^[A-Za-z0-9._-]{1,128}$")]
    pub tenant: String,
    /// Its scopes: `jobs:write`, `jobs:read`, `check`, `functions:write`,
    /// `functions:invoke`, `admin`.
    #[schema(value_type = Vec<Scope>, min_items = 1)]
    pub scopes: Vec<String>,
    /// A name for people.
    #[serde(default)]
    #[schema(max_length = 200)]
    pub name: Option<String>,
    /// Seconds until it expires; omitted, it never does.
    #[serde(default)]
    #[schema(minimum = 1, maximum = 3_153_600_000_u64)]
    pub expires_in_secs: Option<u64>,
    /// Rate limits of its own (`requests_per_minute`, `burst`,
    /// `concurrent_jobs`); omitted fields take the server's defaults.
    #[serde(default, deserialize_with = "limits_object")]
    #[schema(value_type = Option<RateLimitSchema>)]
    pub rate_limit: Option<TokenLimits>,
}

/// The schema of a token's own rate limits (the store's `TokenLimits`).
#[derive(ToSchema)]
#[schema(as = RateLimit)]
pub struct RateLimitSchema {
    /// Sustained requests per minute.
    #[schema(minimum = 1, maximum = 4294967295_u32)]
    pub requests_per_minute: Option<u32>,
    /// Requests allowed in a burst above the sustained rate.
    #[schema(minimum = 1, maximum = 4294967295_u32)]
    pub burst: Option<u32>,
    /// Jobs queued or running at once.
    #[schema(minimum = 1, maximum = 4294967295_u32)]
    pub concurrent_jobs: Option<u32>,
}

/// Reads `rate_limit` only from a JSON object: serde would also take a
/// struct from an array (`[60, 10, 2]`), which the schema does not allow.
fn limits_object<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<TokenLimits>, D::Error> {
    let Some(map) = Option::<serde_json::Map<String, serde_json::Value>>::deserialize(d)? else {
        return Ok(None);
    };
    serde_json::from_value(serde_json::Value::Object(map))
        .map(Some)
        .map_err(serde::de::Error::custom)
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
    if req
        .expires_in_secs
        .is_some_and(|s| !(1..=MAX_EXPIRY_SECS).contains(&s))
    {
        return Err(field(
            "expires_in_secs",
            format!("must be 1 to {MAX_EXPIRY_SECS} (100 years)"),
        ));
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
        .record(who.event("token_created").details(json!({
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
            who.event("token_revoked")
                .details(json!({ "revoked": id, "for_tenant": token.tenant })),
        );
    }
    let token = state.store.token(id.clone()).await?.ok_or_else(not_found)?;
    Ok(Json(TokenView::from(&token)))
}
