//! `/v1/oauth/*`: the OAuth-style exchange of an API token for short-lived
//! access and refresh tokens, refresh rotation and revocation (RFC 7009).

use std::net::IpAddr;

use axum::{
    Json,
    body::Bytes,
    extract::{State, rejection::BytesRejection},
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response},
};
use serde::{Deserialize, Serialize};
use serde_json::json;
use strictpy_store::{TokenKind, TokenLimits, TokenRecord};
use utoipa::ToSchema;

use crate::{
    AppState,
    audit::Event,
    auth::{self, Auth, Rejection, Scope, TokenSpec},
    error::{ApiError, ErrorBody},
    http::{no_store, parse_form_or_json},
    now_ms,
};

/// `POST /v1/oauth/token`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
pub struct TokenGrant {
    /// Must be `client_credentials`.
    #[schema(pattern = "^client_credentials$")]
    pub grant_type: String,
    /// Space-separated scopes, at most those of the API token; omitted, all
    /// of them.
    #[serde(default)]
    #[schema(
        pattern = "^ *((jobs:write|jobs:read|check|functions:write|functions:invoke|admin)( +|$))*$"
    )]
    pub scope: Option<String>,
}

/// `POST /v1/oauth/token/refresh`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
pub struct RefreshGrant {
    /// The refresh token; single use.
    pub refresh_token: String,
    /// `refresh_token`, if given.
    #[serde(default)]
    #[schema(pattern = "^refresh_token$")]
    pub grant_type: Option<String>,
    /// Fewer scopes than before, if wanted.
    #[serde(default)]
    #[schema(
        pattern = "^ *((jobs:write|jobs:read|check|functions:write|functions:invoke|admin)( +|$))*$"
    )]
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

/// `400 unsupported_grant_type` unless the exchange asks for
/// `client_credentials`.
pub fn check_token_grant(grant: &TokenGrant) -> Result<(), ApiError> {
    if grant.grant_type != "client_credentials" {
        return Err(oauth_error(
            "unsupported_grant_type",
            "grant_type must be client_credentials (use /v1/oauth/token/refresh to refresh)",
        ));
    }
    Ok(())
}

/// `400 unsupported_grant_type` when a refresh names another grant type.
pub fn check_refresh_grant(grant: &RefreshGrant) -> Result<(), ApiError> {
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
    Ok(())
}

/// The scopes asked for, which must be among `granted`.
pub fn narrow(granted: &[String], asked: Option<&str>) -> Result<Vec<Scope>, ApiError> {
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

/// An audit event about the token `record`, which a caller presented from
/// `ip` in a request body (these routes take no bearer token).
fn token_event(name: &'static str, record: &TokenRecord, ip: IpAddr) -> Event {
    Event::new(name)
        .tenant(&record.tenant)
        .token(&record.id)
        .ip(ip)
}

/// What both grants end with: a new pair of `family` under the API token
/// `parent` (its limits), with `scopes`, the audit event `audit` makes of
/// it, and the uncacheable answer.
async fn answer_grant(
    state: &AppState,
    tenant: &str,
    parent: &TokenRecord,
    family: &str,
    scopes: Vec<Scope>,
    audit: impl FnOnce(&TokenResponse) -> Event,
) -> Result<Response, ApiError> {
    let pair = issue_pair(state, tenant, &parent.id, family, scopes, parent.limits).await?;
    state.audit.record(audit(&pair));
    Ok((no_store(), Json(pair)).into_response())
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
    check_token_grant(&grant)?;
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
    answer_grant(&state, &who.tenant, &api, &family, scopes, |pair| {
        who.event("token_exchanged")
            .details(json!({ "family": family, "scope": pair.scope }))
    })
    .await
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
    check_refresh_grant(&grant)?;
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
            token_event("refresh_token_reuse", &record, ip)
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
    answer_grant(&state, &record.tenant, &parent, &family, scopes, |_| {
        token_event("token_refreshed", &record, ip).details(json!({ "family": family }))
    })
    .await
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
            token_event("token_revoked", &record, ip)
                .details(json!({ "kind": record.kind, "via": "oauth_revoke" })),
        );
    }
    Ok((StatusCode::OK, Json(json!({}))).into_response())
}
