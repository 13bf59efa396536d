//! What the store keeps for API security: tokens (only their hashes), the
//! security audit log, and the queries behind retention and tenant export
//! and erasure.

use serde::{Deserialize, Serialize};

/// What a token is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TokenKind {
    /// A long-lived API token, made by `strictpy token create` or
    /// `POST /v1/tokens`.
    Api,
    /// A short-lived access token from the OAuth-style exchange.
    Access,
    /// A single-use refresh token from the OAuth-style exchange.
    Refresh,
    /// A browser session: the secret lives in an `HttpOnly` cookie, made
    /// from an API token (its parent) by `POST /v1/sessions`.
    Session,
}

impl TokenKind {
    /// The stored (and prefix) form.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Api => "api",
            Self::Access => "access",
            Self::Refresh => "refresh",
            Self::Session => "session",
        }
    }

    /// Parses [`TokenKind::as_str`].
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "api" => Some(Self::Api),
            "access" => Some(Self::Access),
            "refresh" => Some(Self::Refresh),
            "session" => Some(Self::Session),
            _ => None,
        }
    }
}

/// Per-token rate limits; a `None` field takes the server's default.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenLimits {
    /// Sustained requests per minute.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requests_per_minute: Option<u32>,
    /// Requests allowed in a burst above the sustained rate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub burst: Option<u32>,
    /// Jobs queued or running at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub concurrent_jobs: Option<u32>,
}

/// A token as stored. The secret itself is never stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRecord {
    /// The public id, which is also the lookup prefix inside the token.
    pub id: String,
    /// What the token is for.
    pub kind: TokenKind,
    /// The tenant it acts for.
    pub tenant: String,
    /// A name for people.
    pub name: String,
    /// Lower-case hex SHA-256 of the whole token string.
    pub hash: String,
    /// The scopes it carries.
    pub scopes: Vec<String>,
    /// Creation time, Unix milliseconds.
    pub created_at: i64,
    /// Expiry, Unix milliseconds; `None` never expires.
    pub expires_at: Option<i64>,
    /// When it last authenticated a request (updated at most once a minute).
    pub last_used_at: Option<i64>,
    /// When it was revoked.
    pub revoked_at: Option<i64>,
    /// For access and refresh tokens: the API token they were exchanged for.
    pub parent_id: Option<String>,
    /// For access and refresh tokens: the family every rotation shares, so
    /// reuse of a refresh token can revoke all of it.
    pub family_id: Option<String>,
    /// For refresh tokens: when it was exchanged (they are single-use).
    pub used_at: Option<i64>,
    /// Rate limits of its own.
    pub limits: TokenLimits,
}

/// One security event to record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NewAuditEvent {
    /// When it happened, Unix milliseconds.
    pub at: i64,
    /// What happened (`auth_failure`, `token_created`, ...).
    pub event: String,
    /// The tenant concerned, when known.
    pub tenant: Option<String>,
    /// The public id of the token concerned, never its secret.
    pub token_id: Option<String>,
    /// The client's IP address.
    pub ip: Option<String>,
    /// Event-specific details.
    pub details: serde_json::Value,
}

/// A recorded security event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditRecord {
    /// Sequence number, increasing.
    pub id: i64,
    /// The event.
    #[serde(flatten)]
    pub event: NewAuditEvent,
}

/// Filters of [`crate::JobStore::list_audit`], newest first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditQuery {
    /// Only this tenant's events.
    pub tenant: Option<String>,
    /// Only this event.
    pub event: Option<String>,
    /// Only events at or after this time (Unix ms).
    pub since: Option<i64>,
    /// Only events before this time (Unix ms).
    pub until: Option<i64>,
    /// Only events older than this id (the cursor).
    pub before_id: Option<i64>,
    /// At most this many.
    pub limit: u32,
}

/// What a retention purge removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Purged {
    /// Final jobs that finished before the cut-off.
    pub jobs: u64,
    /// Audit events older than theirs.
    pub audit: u64,
    /// Access and refresh tokens expired for more than a day.
    pub tokens: u64,
}

/// What erasing a tenant did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Erased {
    /// Jobs deleted.
    pub jobs: u64,
    /// Tokens revoked (every kind).
    pub tokens: u64,
    /// Audit events anonymised (kept for the legal record).
    pub audit: u64,
    /// Stored function versions deleted (every version, deleted or not).
    #[serde(default)]
    pub functions: u64,
}
