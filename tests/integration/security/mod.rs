//! API security: tenants and scoped tokens, the OAuth-style exchange, rate
//! limits and lockout, the IP allowlist, TLS, encryption at rest, log
//! redaction, the audit log, retention, and tenant export and erasure.

mod auth;
mod data;
mod limits;
mod network;
mod oauth;
mod redaction;
mod tenants;
mod tls;
mod webhooks;

use serde_json::{Value, json};

use crate::server::TestServer;

/// A job that spins until cancelled or timed out.
pub const SPIN: &str = "while True:\n    pass\n";

/// True for a job in a final status.
pub fn is_final(job: &Value) -> bool {
    matches!(
        job["status"].as_str(),
        Some("succeeded" | "failed" | "cancelled")
    )
}

/// Creates an API token through `POST /v1/tokens` with the admin token;
/// `extra` adds fields (`expires_in_secs`, `rate_limit`, `name`). Returns
/// its public id and its secret.
pub async fn create_token(
    s: &TestServer,
    tenant: &str,
    scopes: &[&str],
    extra: Value,
) -> (String, String) {
    let mut body = json!({"tenant": tenant, "scopes": scopes});
    if let (Some(b), Some(e)) = (body.as_object_mut(), extra.as_object()) {
        b.extend(e.clone());
    }
    let reply = s.call("POST", "/v1/tokens", Some(body)).await;
    assert_eq!(
        reply.status,
        axum::http::StatusCode::CREATED,
        "{}",
        reply.text
    );
    (
        reply.json["id"].as_str().expect("id").to_owned(),
        reply.json["token"].as_str().expect("token").to_owned(),
    )
}
