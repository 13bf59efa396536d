//! Bearer tokens: their format, scopes, how a request is authenticated (the
//! [`Auth`] extractor), and the first-start admin token.
//!
//! A token is `sp<kind>_<id>_<secret>`: `spk_` for API tokens, `spa_` for
//! access tokens, `spr_` for refresh tokens; `<id>` (16 hex characters) is
//! public and finds the row; `<secret>` is 32 bytes from the OS CSPRNG in
//! URL-safe base64. The store keeps only the SHA-256 of the whole string,
//! compared in constant time. `sps_` tokens are browser sessions: they come
//! only in the [`SESSION_COOKIE`], never as a bearer token, and a request
//! that changes state with one must carry its CSRF token in [`CSRF_HEADER`].

use std::{
    net::{IpAddr, Ipv4Addr},
    path::Path,
};

use axum::{
    extract::FromRequestParts,
    http::{HeaderMap, StatusCode, header, request::Parts},
};
use base64::{Engine as _, engine::general_purpose::URL_SAFE_NO_PAD};
use serde::{Deserialize, Serialize};
use serde_json::json;
use sha2::{Digest, Sha256};
use strictpy_store::{TokenKind, TokenLimits, TokenRecord};
use subtle::ConstantTimeEq;
use utoipa::ToSchema;

use crate::{
    ApiError, AppState,
    audit::Event,
    limits::{Effective, Refusal},
    net::ClientIp,
    now_ms,
};

/// The file in the data dir that receives the first-start admin token.
pub const ADMIN_TOKEN_FILE: &str = "admin-token";

/// The cookie that carries a browser session's secret (`sps_...`).
pub const SESSION_COOKIE: &str = "strictpy_session";

/// The header that carries a session's CSRF token on requests that change
/// state.
pub const CSRF_HEADER: &str = "x-csrf-token";

/// What a token may do.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, ToSchema,
)]
pub enum Scope {
    /// Submit, cancel and batch jobs.
    #[serde(rename = "jobs:write")]
    JobsWrite,
    /// Get and list jobs.
    #[serde(rename = "jobs:read")]
    JobsRead,
    /// The static check.
    #[serde(rename = "check")]
    Check,
    /// Register, update and delete stored functions (and read them).
    #[serde(rename = "functions:write")]
    FunctionsWrite,
    /// Invoke stored functions (and read them).
    #[serde(rename = "functions:invoke")]
    FunctionsInvoke,
    /// Tokens, the audit log, tenants; implies every other scope.
    #[serde(rename = "admin")]
    Admin,
}

impl Scope {
    /// Every scope.
    pub const ALL: [Scope; 6] = [
        Scope::JobsWrite,
        Scope::JobsRead,
        Scope::Check,
        Scope::FunctionsWrite,
        Scope::FunctionsInvoke,
        Scope::Admin,
    ];

    /// The wire form.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::JobsWrite => "jobs:write",
            Self::JobsRead => "jobs:read",
            Self::Check => "check",
            Self::FunctionsWrite => "functions:write",
            Self::FunctionsInvoke => "functions:invoke",
            Self::Admin => "admin",
        }
    }

    /// Parses [`Scope::as_str`].
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|x| x.as_str() == s)
    }

    /// Parses a list of scope names, naming the first unknown one.
    pub fn parse_all<'a>(names: impl IntoIterator<Item = &'a str>) -> Result<Vec<Scope>, String> {
        let mut scopes = Vec::new();
        for name in names {
            let scope = Scope::parse(name).ok_or_else(|| name.to_owned())?;
            if !scopes.contains(&scope) {
                scopes.push(scope);
            }
        }
        scopes.sort();
        Ok(scopes)
    }
}

/// Who is calling: the tenant, the token and what it may do.
#[derive(Debug, Clone)]
pub struct Principal {
    /// The tenant the token acts for.
    pub tenant: String,
    /// The token's public id.
    pub token_id: String,
    /// The API token whose budget this request spends (the token itself, or
    /// the one an access token was exchanged for).
    pub budget_key: String,
    /// What kind of token it is.
    pub kind: TokenKind,
    /// Its scopes.
    pub scopes: Vec<Scope>,
    /// Its effective rate limits.
    pub limits: Effective,
    /// The client's IP.
    pub ip: IpAddr,
}

impl Principal {
    /// True when the token has `scope` (or `admin`).
    pub fn has(&self, scope: Scope) -> bool {
        self.scopes.contains(&scope) || self.scopes.contains(&Scope::Admin)
    }

    /// An audit event about this caller: its tenant, token and IP set.
    pub fn event(&self, name: &'static str) -> Event {
        Event::new(name)
            .tenant(&self.tenant)
            .token(&self.token_id)
            .ip(self.ip)
    }

    /// `403 insufficient_scope` unless the token has `scope`; the refusal is
    /// audited.
    pub fn require(&self, state: &AppState, scope: Scope) -> Result<(), ApiError> {
        if self.has(scope) {
            return Ok(());
        }
        state.audit.record(
            self.event("permission_denied")
                .details(json!({ "required": scope.as_str() })),
        );
        Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "insufficient_scope",
            format!("this token lacks the `{}` scope", scope.as_str()),
        )
        .with_details(json!({ "required": scope.as_str() })))
    }
}

/// A freshly made token: the secret string (shown once) and its record.
#[derive(Debug, Clone)]
pub struct NewToken {
    /// The whole token string; never stored.
    pub secret: String,
    /// What the store keeps.
    pub record: TokenRecord,
}

/// What a new token is made of.
#[derive(Debug, Clone)]
pub struct TokenSpec {
    /// Its kind.
    pub kind: TokenKind,
    /// Its tenant.
    pub tenant: String,
    /// A name for people.
    pub name: String,
    /// Its scopes.
    pub scopes: Vec<Scope>,
    /// Seconds until it expires; `None` never.
    pub expires_in_secs: Option<u64>,
    /// The API token it was exchanged for.
    pub parent_id: Option<String>,
    /// Its refresh family.
    pub family_id: Option<String>,
    /// Rate limits of its own.
    pub limits: TokenLimits,
}

fn prefix(kind: TokenKind) -> &'static str {
    match kind {
        TokenKind::Api => "spk",
        TokenKind::Access => "spa",
        TokenKind::Refresh => "spr",
        TokenKind::Session => "sps",
    }
}

/// Random bytes from the OS CSPRNG.
fn random<const N: usize>() -> Result<[u8; N], ApiError> {
    let mut bytes = [0u8; N];
    getrandom::fill(&mut bytes).map_err(|e| ApiError::internal(format!("OS RNG: {e}")))?;
    Ok(bytes)
}

/// A random public id: 16 hex characters.
pub fn random_id() -> Result<String, ApiError> {
    Ok(hex::encode(random::<8>()?))
}

/// Lower-case hex SHA-256.
pub fn hash_token(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

impl TokenSpec {
    /// Makes the token: a fresh id and secret, and the record to store.
    pub fn issue(self) -> Result<NewToken, ApiError> {
        let id = random_id()?;
        let secret = format!(
            "{}_{id}_{}",
            prefix(self.kind),
            URL_SAFE_NO_PAD.encode(random::<32>()?)
        );
        let now = now_ms();
        let expires_at = self
            .expires_in_secs
            .map(|s| now.saturating_add(i64::try_from(s.saturating_mul(1000)).unwrap_or(i64::MAX)));
        Ok(NewToken {
            record: TokenRecord {
                id,
                kind: self.kind,
                tenant: self.tenant,
                name: self.name,
                hash: hash_token(&secret),
                scopes: self.scopes.iter().map(|s| s.as_str().to_owned()).collect(),
                created_at: now,
                expires_at,
                last_used_at: None,
                revoked_at: None,
                parent_id: self.parent_id,
                family_id: self.family_id,
                used_at: None,
                limits: self.limits,
            },
            secret,
        })
    }
}

/// Splits a token string into its kind and public id; `None` if it is not
/// shaped like one of ours.
pub fn parse_token(token: &str) -> Option<(TokenKind, &str)> {
    let (kind, rest) = token.split_once('_')?;
    let kind = match kind {
        "spk" => TokenKind::Api,
        "spa" => TokenKind::Access,
        "spr" => TokenKind::Refresh,
        "sps" => TokenKind::Session,
        _ => return None,
    };
    let (id, secret) = rest.split_once('_')?;
    let shaped = id.len() == 16
        && id.bytes().all(|b| b.is_ascii_hexdigit())
        && secret.len() == 43
        && secret
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    shaped.then_some((kind, id))
}

/// The CSRF token bound to the session whose secret is `session`: a hash
/// of the secret, so only a holder of the `HttpOnly` cookie can know it and
/// the server needs to store nothing more.
pub fn csrf_token(session: &str) -> String {
    let mut hash = Sha256::new();
    hash.update(b"strictpy csrf v1\0");
    hash.update(session.as_bytes());
    URL_SAFE_NO_PAD.encode(hash.finalize())
}

/// The session cookie's value, if the request carries one.
pub fn session_cookie(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == SESSION_COOKIE)
        .map(|(_, value)| value.trim())
        .filter(|value| !value.is_empty())
}

/// Why a token was not accepted (for the audit log; the client only learns
/// that it is invalid).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejection {
    /// Not shaped like a token.
    Malformed,
    /// No token has that id, or the secret does not match.
    Unknown,
    /// It expired.
    Expired,
    /// It was revoked.
    Revoked,
    /// A token of the wrong kind for this use.
    WrongKind,
}

impl Rejection {
    /// The audit form.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Malformed => "malformed",
            Self::Unknown => "unknown",
            Self::Expired => "expired",
            Self::Revoked => "revoked",
            Self::WrongKind => "wrong_kind",
        }
    }
}

/// Looks a presented token up and checks it: shape, hash (in constant time),
/// expiry, revocation and kind.
pub async fn verify(
    state: &AppState,
    token: &str,
    kinds: &[TokenKind],
) -> Result<Result<TokenRecord, (Rejection, Option<String>)>, ApiError> {
    let Some((kind, id)) = parse_token(token) else {
        return Ok(Err((Rejection::Malformed, None)));
    };
    let Some(record) = state.store.token(id.to_owned()).await? else {
        return Ok(Err((Rejection::Unknown, None)));
    };
    let id = Some(record.id.clone());
    let presented = hash_token(token);
    if !bool::from(presented.as_bytes().ct_eq(record.hash.as_bytes())) || record.kind != kind {
        return Ok(Err((Rejection::Unknown, None)));
    }
    if record.revoked_at.is_some() {
        return Ok(Err((Rejection::Revoked, id)));
    }
    if record.expires_at.is_some_and(|e| e <= now_ms()) {
        return Ok(Err((Rejection::Expired, id)));
    }
    if !kinds.contains(&record.kind) {
        return Ok(Err((Rejection::WrongKind, id)));
    }
    Ok(Ok(record))
}

/// `401` with `WWW-Authenticate`, as RFC 6750 describes.
pub fn unauthorized(message: &str, invalid: bool) -> ApiError {
    let challenge = if invalid {
        "Bearer realm=\"strictpy\", error=\"invalid_token\""
    } else {
        "Bearer realm=\"strictpy\""
    };
    ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
        .with_header(header::WWW_AUTHENTICATE, challenge)
}

/// `429` for a refusal of the limits module, audited.
pub fn refused(state: &AppState, refusal: Refusal, event: Event) -> ApiError {
    let (code, message) = match &refusal {
        Refusal::RateLimited { .. } => {
            ("rate_limited", "too many requests; retry later".to_owned())
        }
        Refusal::TooManyJobs { limit } => (
            "too_many_jobs",
            format!("this token already has {limit} jobs queued or running"),
        ),
        Refusal::LockedOut { .. } => (
            "locked_out",
            "too many failed authentications from this address; retry later".to_owned(),
        ),
    };
    state.metrics.rate_limited.inc();
    state.audit.record(event.details(json!({ "reason": code })));
    let mut err = ApiError::new(StatusCode::TOO_MANY_REQUESTS, code, message);
    err.retry_after = Some(refusal.retry_after());
    if let Refusal::RateLimited { policy, state, .. } = refusal {
        err = err
            .with_header("ratelimit-policy", &policy)
            .with_header("ratelimit", &state);
    }
    err
}

/// The client IP the network guard put on the request.
pub fn client_ip(parts: &Parts) -> IpAddr {
    parts
        .extensions
        .get::<ClientIp>()
        .map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |c| c.0)
}

/// The client IP as an extractor, for handlers that authenticate by other
/// means than the bearer header (the refresh token in the body).
#[derive(Debug, Clone, Copy)]
pub struct Ip(pub IpAddr);

impl<S: Send + Sync> FromRequestParts<S> for Ip {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(Ip(client_ip(parts)))
    }
}

/// `429 locked_out` (audited) while `ip` is locked out after bad tokens.
fn not_locked_out(state: &AppState, ip: IpAddr) -> Result<(), ApiError> {
    match state.guard.locked_out(ip) {
        Some(retry_after) => Err(refused(
            state,
            Refusal::LockedOut { retry_after },
            Event::new("locked_out").ip(ip),
        )),
        None => Ok(()),
    }
}

/// [`not_locked_out`], and on a store several nodes share, the lockout the
/// failures recorded by every node started (one indexed read).
async fn not_locked_out_anywhere(state: &AppState, ip: IpAddr) -> Result<(), ApiError> {
    not_locked_out(state, ip)?;
    if state.queue.database().is_none() {
        return Ok(());
    }
    let now = crate::now_ms();
    match state.store.locked_until(ip.to_string(), now).await? {
        Some(until) => {
            let left = u64::try_from(until.saturating_sub(now)).unwrap_or(0);
            Err(refused(
                state,
                Refusal::LockedOut {
                    retry_after: left.div_ceil(1000).max(1),
                },
                Event::new("locked_out").ip(ip),
            ))
        }
        None => Ok(()),
    }
}

/// [`verify`], unless `ip` is locked out ([`not_locked_out_anywhere`]):
/// a locked-out address is refused whatever it presents. On a shared store
/// the lockout's read and the token's lookup go to the database at once,
/// on two pooled connections: one round trip of waiting instead of two.
async fn verify_unless_locked_out(
    state: &AppState,
    ip: IpAddr,
    token: &str,
    kinds: &[TokenKind],
) -> Result<Result<TokenRecord, (Rejection, Option<String>)>, ApiError> {
    let (locked, verified) = tokio::join!(
        not_locked_out_anywhere(state, ip),
        verify(state, token, kinds)
    );
    locked?;
    verified
}

/// Records a bad credential from `ip` in a shared store, where every node's
/// failures count towards one lockout; audits the lockout it starts. In the
/// background, so the `401` does not wait on it.
fn record_failure_in_store(state: &AppState, ip: IpAddr) {
    let lockout = state.config.lockout;
    let secs_ms = |s: u64| i64::try_from(s.saturating_mul(1000)).unwrap_or(i64::MAX);
    let rule = strictpy_store::LockoutRule {
        max_failures: lockout.max_failures,
        window_ms: secs_ms(lockout.window_secs),
        duration_ms: secs_ms(lockout.duration_secs),
    };
    let state = state.clone();
    state.runtime.clone().spawn(async move {
        match state
            .store
            .record_auth_failure(ip.to_string(), crate::now_ms(), rule)
            .await
        {
            Ok(Some(_)) => state
                .audit
                .record(Event::new("locked_out").ip(ip).details(json!({
                    "failures": lockout.max_failures,
                    "window_secs": lockout.window_secs,
                    "duration_secs": lockout.duration_secs,
                    "across_nodes": true,
                }))),
            Ok(None) => {}
            Err(e) => tracing::warn!(error = %e, "cannot record a failed authentication"),
        }
    });
}

/// Counts a request without valid credentials against its IP's bucket, and
/// refuses locked-out IPs.
pub fn unauthenticated(state: &AppState, ip: IpAddr) -> Result<(), ApiError> {
    not_locked_out(state, ip)?;
    state
        .guard
        .check_ip(ip)
        .map_err(|r| refused(state, r, Event::new("rate_limited").ip(ip)))
}

/// Records a bad credential from `ip` (and the lockout it may cause), and
/// answers `401`.
pub fn failed(state: &AppState, ip: IpAddr, why: Rejection, token_id: Option<String>) -> ApiError {
    let mut event = Event::new("auth_failure")
        .ip(ip)
        .details(json!({ "reason": why.as_str() }));
    event.token_id = token_id;
    state.audit.record(event);
    state.metrics.auth_failures.inc();
    if state.queue.database().is_some() {
        record_failure_in_store(state, ip);
    } else if state.guard.auth_failed(ip) {
        state
            .audit
            .record(Event::new("locked_out").ip(ip).details(json!({
                "failures": state.config.lockout.max_failures,
                "window_secs": state.config.lockout.window_secs,
                "duration_secs": state.config.lockout.duration_secs,
            })));
    }
    unauthorized("the bearer token is invalid, expired or revoked", true)
}

/// An authenticated request: extracting it checks the bearer token, the
/// lockout and the token's request bucket.
#[derive(Debug, Clone)]
pub struct Auth(pub Principal);

impl FromRequestParts<AppState> for Auth {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let ip = client_ip(parts);
        let header = parts.headers.get(header::AUTHORIZATION);
        let token = header.and_then(|h| h.to_str().ok()).and_then(|h| {
            let (scheme, token) = h.split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
        });
        let Some(token) = token else {
            // No Authorization header: a browser session, if there is one.
            if header.is_none()
                && let Some(session) = session_cookie(&parts.headers)
            {
                return from_session(parts, state, session, ip).await.map(Auth);
            }
            unauthenticated(state, ip)?;
            if header.is_some() {
                return Err(failed(state, ip, Rejection::Malformed, None));
            }
            return Err(unauthorized(
                "this endpoint needs `Authorization: Bearer <token>` (or a browser session)",
                false,
            ));
        };
        let record =
            match verify_unless_locked_out(state, ip, token, &[TokenKind::Api, TokenKind::Access])
                .await?
            {
                Ok(record) => record,
                Err((why, id)) => {
                    unauthenticated(state, ip)?;
                    return Err(failed(state, ip, why, id));
                }
            };
        admit(state, record, ip).map(Auth)
    }
}

/// Authenticates by the session cookie: the session must be valid and, on
/// a method that changes state, the request must carry its CSRF token.
async fn from_session(
    parts: &Parts,
    state: &AppState,
    session: &str,
    ip: IpAddr,
) -> Result<Principal, ApiError> {
    let record = match verify_unless_locked_out(state, ip, session, &[TokenKind::Session]).await? {
        Ok(record) => record,
        Err((why, id)) => {
            unauthenticated(state, ip)?;
            return Err(failed(state, ip, why, id));
        }
    };
    if !parts.method.is_safe() {
        let sent = parts
            .headers
            .get(CSRF_HEADER)
            .map_or(&b""[..], |v| v.as_bytes());
        if !bool::from(sent.ct_eq(csrf_token(session).as_bytes())) {
            state.audit.record(
                Event::new("csrf_refused")
                    .tenant(&record.tenant)
                    .token(&record.id)
                    .ip(ip)
                    .details(json!({ "method": parts.method.as_str(), "path": parts.uri.path() })),
            );
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "csrf_token_invalid",
                "a request that changes state with the session cookie needs the session's X-CSRF-Token header",
            ));
        }
    }
    admit(state, record, ip)
}

/// The principal of a verified token, once its request bucket allows the
/// request; records the use.
fn admit(state: &AppState, record: TokenRecord, ip: IpAddr) -> Result<Principal, ApiError> {
    let principal = Principal {
        budget_key: record
            .parent_id
            .clone()
            .unwrap_or_else(|| record.id.clone()),
        limits: Effective::of(&record.limits, state.guard.defaults()),
        scopes: Scope::parse_all(record.scopes.iter().map(String::as_str)).unwrap_or_default(),
        tenant: record.tenant,
        token_id: record.id,
        kind: record.kind,
        ip,
    };
    state
        .guard
        .check_token(&principal.budget_key, principal.limits)
        .map_err(|r| refused(state, r, principal.event("rate_limited")))?;
    state.touch(&principal.token_id, record.last_used_at);
    if state.first_success_this_minute(&principal.token_id, ip) {
        state.audit.record(principal.event("auth_success"));
    }
    Ok(principal)
}

/// Makes the admin token on the first start with an empty store: it is
/// printed once to stderr and written to `<data_dir>/admin-token` (0600).
/// Nodes that start at once on one empty database make exactly one: the
/// insert is conditional and atomic ([`JobStore::insert_first_token`]), and
/// only the node whose insert went in keeps its file and prints it.
///
/// [`JobStore::insert_first_token`]: strictpy_store::JobStore::insert_first_token
pub async fn bootstrap(state: &AppState, data_dir: &Path) -> Result<Option<String>, ApiError> {
    if state.store.has_tokens().await? {
        return Ok(None);
    }
    let token = TokenSpec {
        kind: TokenKind::Api,
        tenant: state.config.auth.bootstrap_tenant.clone(),
        name: "bootstrap admin".into(),
        scopes: Scope::ALL.to_vec(),
        expires_in_secs: None,
        parent_id: None,
        family_id: None,
        limits: TokenLimits::default(),
    }
    .issue()?;
    let path = data_dir.join(ADMIN_TOKEN_FILE);
    // A file left from an earlier, deleted store holds a token that no
    // longer exists; replace it.
    let _ = std::fs::remove_file(&path);
    crate::webhook::write_private(&path, format!("{}\n", token.secret).as_bytes())
        .map_err(|e| ApiError::internal(format!("cannot write {}: {e}", path.display())))?;
    let inserted = state
        .store
        .insert_first_token(token.record.clone())
        .await
        .inspect_err(|_| {
            let _ = std::fs::remove_file(&path);
        })?;
    if !inserted {
        // Another node made it first; this secret was never valid.
        let _ = std::fs::remove_file(&path);
        return Ok(None);
    }
    state.audit.record(
        Event::new("token_created")
            .tenant(&token.record.tenant)
            .token(&token.record.id)
            .details(json!({ "name": token.record.name, "scopes": token.record.scopes, "bootstrap": true })),
    );
    // Printed once, on purpose: the operator needs it to make other tokens.
    eprintln!(
        "strictpy: created the first admin token (tenant {:?}); it is shown only now and kept in {} (mode 0600):\n  {}",
        token.record.tenant,
        path.display(),
        token.secret
    );
    Ok(Some(token.secret))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issued_tokens_parse_back_and_hash_to_their_record() {
        for kind in [
            TokenKind::Api,
            TokenKind::Access,
            TokenKind::Refresh,
            TokenKind::Session,
        ] {
            let t = TokenSpec {
                kind,
                tenant: "t".into(),
                name: "n".into(),
                scopes: vec![Scope::Check],
                expires_in_secs: Some(60),
                parent_id: None,
                family_id: None,
                limits: TokenLimits::default(),
            }
            .issue()
            .expect("issue");
            assert_eq!(parse_token(&t.secret), Some((kind, t.record.id.as_str())));
            assert_eq!(t.record.hash, hash_token(&t.secret));
            assert!(!t.record.hash.contains(&t.secret));
            assert!(t.record.expires_at.is_some_and(|e| e > t.record.created_at));
        }
        assert_eq!(parse_token("spk_0123456789abcdef_short"), None);
        assert_eq!(parse_token("Bearer x"), None);
        assert_eq!(parse_token(""), None);
    }

    #[test]
    fn the_session_cookie_is_found_among_others_and_bound_to_its_csrf_token() {
        let mut headers = HeaderMap::new();
        headers.append(
            header::COOKIE,
            "a=1; strictpy_session=sps_x ; b=2".parse().expect("header"),
        );
        assert_eq!(session_cookie(&headers), Some("sps_x"));
        headers.clear();
        headers.append(
            header::COOKIE,
            "strictpy_sessionx=1".parse().expect("header"),
        );
        headers.append(header::COOKIE, "strictpy_session=".parse().expect("header"));
        assert_eq!(session_cookie(&headers), None);
        assert_eq!(csrf_token("sps_a"), csrf_token("sps_a"));
        assert_ne!(csrf_token("sps_a"), csrf_token("sps_b"));
        assert!(!csrf_token("sps_a").contains("sps_a"));
    }

    #[test]
    fn scopes_parse_and_admin_implies_the_rest() {
        assert_eq!(
            Scope::parse_all(["jobs:read", "check", "jobs:read"]),
            Ok(vec![Scope::JobsRead, Scope::Check])
        );
        assert_eq!(Scope::parse_all(["jobs:delete"]), Err("jobs:delete".into()));
    }
}
