//! Browser sessions: `POST /v1/sessions` exchanges a pasted API token for a
//! session cookie (`HttpOnly`, `SameSite=Strict`, `Path=/`, `Secure` unless
//! the server is plain HTTP on loopback) and a CSRF token;
//! `GET /v1/sessions/current` describes the session (so a reloaded page
//! picks it up again) and `DELETE /v1/sessions/current` signs out.
//!
//! A session is a token of kind `session` in the tokens table, a child of
//! the API token it was made from: only its SHA-256 is stored, revoking the
//! parent revokes it, and it never outlives the parent. The cookie is
//! accepted on `/v1` by the shared `Auth` extractor (see `auth.rs`), on
//! methods that change state only with the CSRF header.

use axum::{
    Json,
    body::Bytes,
    extract::{State, rejection::BytesRejection},
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use serde::{Deserialize, Serialize};
use serde_json::json;
use strictpy_store::{TokenKind, TokenLimits};
use utoipa::ToSchema;

use crate::{
    ApiError, AppState,
    audit::Event,
    auth::{self, Auth, Principal, Scope, TokenSpec},
    error::ErrorBody,
    http::{parse_body, rfc3339},
    now_ms,
};

/// `POST /v1/sessions`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SessionRequest {
    /// An API token (`spk_...`), as pasted by a person. It is used once and
    /// not kept.
    #[schema(min_length = 1, max_length = 256)]
    pub token: String,
}

/// A browser session.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct SessionView {
    /// The session's public id (as in the audit log).
    pub id: String,
    /// The tenant it acts for (the API token's).
    pub tenant: String,
    /// Its scopes (the API token's).
    pub scopes: Vec<String>,
    /// When it expires (RFC 3339).
    pub expires_at: String,
    /// Send this in the `X-CSRF-Token` header of every request that changes
    /// state (POST, PUT, PATCH, DELETE). Keep it in memory only.
    pub csrf_token: String,
}

fn view(record: &strictpy_store::TokenRecord, secret: &str) -> SessionView {
    SessionView {
        id: record.id.clone(),
        tenant: record.tenant.clone(),
        scopes: record.scopes.clone(),
        expires_at: rfc3339(record.expires_at.unwrap_or_else(now_ms)),
        csrf_token: auth::csrf_token(secret),
    }
}

/// The `Set-Cookie` value for the session secret `value` (or, with
/// `max_age` 0, the one that deletes it).
fn cookie(state: &AppState, value: &str, max_age: i64) -> Result<HeaderValue, ApiError> {
    // Secure whenever a browser reaches this server over TLS: it serves TLS
    // itself, or listens off loopback (where plain HTTP is only allowed
    // behind a TLS-terminating proxy). Plain http://127.0.0.1 keeps working
    // for `make run`.
    let secure = state.config.tls.enabled() || !state.config.listen.ip().is_loopback();
    let secure = if secure { "; Secure" } else { "" };
    HeaderValue::from_str(&format!(
        "{}={value}; Path=/; HttpOnly; SameSite=Strict; Max-Age={max_age}{secure}",
        auth::SESSION_COOKIE
    ))
    .map_err(|e| ApiError::internal(format!("session cookie: {e}")))
}

/// The body must be declared JSON: a cross-site HTML form can only send
/// `text/plain`, form or multipart bodies, so this also stops a page on
/// another site from signing a browser into the attacker's tenant.
fn json_content_type(headers: &HeaderMap) -> Result<(), ApiError> {
    let json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/json"));
    if json {
        Ok(())
    } else {
        Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "the body must be JSON (Content-Type: application/json)",
        ))
    }
}

/// Sign in: exchange an API token for a browser session.
///
/// The token travels in the JSON body, once; the answer sets the session
/// cookie and carries the CSRF token. Limited per client IP like other
/// requests without credentials, and a bad token counts towards the
/// failed-auth lockout.
#[utoipa::path(
    post,
    path = "/v1/sessions",
    tag = "sessions",
    request_body = SessionRequest,
    security(()),
    responses(
        (status = 201, description = "Signed in: `Set-Cookie: strictpy_session=...; HttpOnly; SameSite=Strict; Path=/`", body = SessionView,
         headers(("Set-Cookie" = String, description = "The session cookie"))),
        (status = 400, description = "invalid_request: malformed JSON or an unknown field", body = ErrorBody),
        (status = 401, description = "unauthorized: the token is invalid, expired, revoked or not an API token", body = ErrorBody),
        (status = 413, description = "payload_too_large", body = ErrorBody),
        (status = 415, description = "unsupported_media_type: the body is not declared JSON", body = ErrorBody),
    )
)]
pub async fn create_session(
    State(state): State<AppState>,
    auth::Ip(ip): auth::Ip,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    auth::unauthenticated(&state, ip)?;
    json_content_type(&headers)?;
    let req: SessionRequest = parse_body(body)?;
    let parent = match auth::verify(&state, req.token.trim(), &[TokenKind::Api]).await? {
        Ok(record) => record,
        Err((why, id)) => return Err(auth::failed(&state, ip, why, id)),
    };
    let now = now_ms();
    let ttl_ms =
        i64::try_from(state.config.auth.session_ttl_secs.saturating_mul(1000)).unwrap_or(i64::MAX);
    // Never longer than the API token it comes from.
    let expires_at = parent.expires_at.map_or(now.saturating_add(ttl_ms), |e| {
        e.min(now.saturating_add(ttl_ms))
    });
    let secs = u64::try_from((expires_at - now).max(1000) / 1000).unwrap_or(1);
    let scopes = Scope::parse_all(parent.scopes.iter().map(String::as_str)).unwrap_or_default();
    let session = TokenSpec {
        kind: TokenKind::Session,
        tenant: parent.tenant.clone(),
        name: "browser session".into(),
        scopes,
        expires_in_secs: Some(secs),
        parent_id: Some(parent.id.clone()),
        family_id: None,
        limits: TokenLimits::default(),
    }
    .issue()?;
    state.store.insert_token(session.record.clone()).await?;
    state.audit.record(
        Event::new("session_created")
            .tenant(&session.record.tenant)
            .token(&session.record.id)
            .ip(ip)
            .details(json!({
                "parent": parent.id,
                "scopes": session.record.scopes,
                "expires_at": rfc3339(session.record.expires_at.unwrap_or(expires_at)),
            })),
    );
    let max_age = i64::try_from(secs).unwrap_or(i64::MAX);
    let set_cookie = cookie(&state, &session.secret, max_age)?;
    Ok((
        StatusCode::CREATED,
        [
            (header::SET_COOKIE, set_cookie),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
        ],
        Json(view(&session.record, &session.secret)),
    )
        .into_response())
}

/// The session of the cookie: `401` for anything else (a bearer token has
/// no session).
async fn current(
    state: &AppState,
    who: &Principal,
    headers: &HeaderMap,
) -> Result<SessionView, ApiError> {
    let secret = auth::session_cookie(headers).filter(|_| who.kind == TokenKind::Session);
    let record = match secret {
        Some(_) => state.store.token(who.token_id.clone()).await?,
        None => None,
    };
    match (record, secret) {
        (Some(record), Some(secret)) => Ok(view(&record, secret)),
        _ => Err(auth::unauthorized(
            "no browser session: sign in with POST /v1/sessions",
            false,
        )),
    }
}

/// The current browser session, with its CSRF token.
///
/// Authenticated by the session cookie only.
#[utoipa::path(
    get,
    path = "/v1/sessions/current",
    tag = "sessions",
    security(("session" = [])),
    responses(
        (status = 200, description = "The session", body = SessionView),
    )
)]
pub async fn get_session(
    State(state): State<AppState>,
    Auth(who): Auth,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let session = current(&state, &who, &headers).await?;
    Ok((
        [(header::CACHE_CONTROL, HeaderValue::from_static("no-store"))],
        Json(session),
    )
        .into_response())
}

/// Sign out: revoke the session server-side and delete the cookie.
///
/// Authenticated by the session cookie, with the `X-CSRF-Token` header.
#[utoipa::path(
    delete,
    path = "/v1/sessions/current",
    tag = "sessions",
    security(("session" = [])),
    responses(
        (status = 204, description = "Signed out; the cookie is deleted",
         headers(("Set-Cookie" = String, description = "Deletes the session cookie"))),
    )
)]
pub async fn delete_session(
    State(state): State<AppState>,
    Auth(who): Auth,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let session = current(&state, &who, &headers).await?;
    state
        .store
        .revoke_token(session.id.clone(), now_ms())
        .await?;
    state.audit.record(
        who.event("session_revoked")
            .details(json!({ "reason": "sign_out" })),
    );
    Ok((
        StatusCode::NO_CONTENT,
        [(header::SET_COOKIE, cookie(&state, "", 0)?)],
    )
        .into_response())
}
