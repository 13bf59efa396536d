//! The security settings of `strictpy serve`: token lifetimes, rate limits,
//! failed-auth lockout, retention, and the size caps of request fields.

use serde::{Deserialize, Serialize};

/// Tokens and the OAuth-style exchange.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    /// Lifetime of an access token from `POST /v1/oauth/token`, in seconds.
    pub access_token_ttl_secs: u64,
    /// Lifetime of a refresh token, in seconds.
    pub refresh_token_ttl_secs: u64,
    /// The tenant of the admin token made on first start.
    pub bootstrap_tenant: String,
    /// Lifetime of a browser session from `POST /v1/sessions`, in seconds
    /// (never longer than the API token it was made from).
    pub session_ttl_secs: u64,
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            access_token_ttl_secs: 15 * 60,
            refresh_token_ttl_secs: 7 * 24 * 60 * 60,
            bootstrap_tenant: "default".into(),
            session_ttl_secs: 60 * 60,
        }
    }
}

/// Server-wide rate limits. A token may carry its own values, which replace
/// these for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RateLimitConfig {
    /// Sustained requests per minute per token (a token bucket).
    pub requests_per_minute: u32,
    /// How many requests a token may make at once above the sustained rate.
    pub burst: u32,
    /// Jobs a token may have queued or running at once.
    pub concurrent_jobs: u32,
    /// Requests per minute per client IP without valid credentials.
    pub unauthenticated_per_minute: u32,
    /// Burst of unauthenticated requests per client IP.
    pub unauthenticated_burst: u32,
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        Self {
            requests_per_minute: 600,
            burst: 100,
            concurrent_jobs: 32,
            unauthenticated_per_minute: 60,
            unauthenticated_burst: 20,
        }
    }
}

/// Failed-auth lockout: `max_failures` bad tokens from one IP within
/// `window_secs` block that IP for `duration_secs`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LockoutConfig {
    /// Bad tokens that trigger a lockout.
    pub max_failures: u32,
    /// The window they are counted in, in seconds.
    pub window_secs: u64,
    /// How long the IP stays blocked, in seconds.
    pub duration_secs: u64,
}

impl Default for LockoutConfig {
    fn default() -> Self {
        Self {
            max_failures: 10,
            window_secs: 5 * 60,
            duration_secs: 15 * 60,
        }
    }
}

/// How long data is kept; a background task purges what is older.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RetentionConfig {
    /// Final jobs are deleted this many seconds after they finished.
    pub jobs_ttl_secs: u64,
    /// Audit events are deleted this many seconds after they happened.
    pub audit_ttl_secs: u64,
    /// How often the purge runs, in seconds.
    pub purge_interval_secs: u64,
}

impl Default for RetentionConfig {
    fn default() -> Self {
        Self {
            jobs_ttl_secs: 7 * 24 * 60 * 60,
            audit_ttl_secs: 365 * 24 * 60 * 60,
            purge_interval_secs: 60 * 60,
        }
    }
}

/// Caps on the fields of a job request (the body as a whole is capped by
/// `max_body_bytes`, the code by `policy.max_source_bytes`, a batch at 20).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct InputLimits {
    /// Largest `context`, as compact JSON, in bytes.
    pub max_context_bytes: usize,
    /// Largest `stdin`, in bytes.
    pub max_stdin_bytes: usize,
}

impl Default for InputLimits {
    fn default() -> Self {
        Self {
            max_context_bytes: 256 * 1024,
            max_stdin_bytes: 1024 * 1024,
        }
    }
}
