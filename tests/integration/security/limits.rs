//! Abuse resistance: per-token request buckets (429 with `Retry-After` and
//! the `RateLimit` headers), the concurrent-job cap, the per-IP bucket for
//! traffic without credentials, and the failed-auth lockout.

use axum::http::{StatusCode, header};
use serde_json::json;

use super::{SPIN, create_token};
use crate::server::{TestServer, call, error_code};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_over_its_rate_gets_429_with_the_headers() {
    let s = TestServer::start(|_| {}).await;
    let (_, token) = create_token(
        &s,
        "t",
        &["jobs:read"],
        json!({"rate_limit": {"requests_per_minute": 6, "burst": 3}}),
    )
    .await;
    for _ in 0..3 {
        let ok = s.call_as(&token, "GET", "/v1/jobs", None).await;
        assert_eq!(ok.status, StatusCode::OK);
    }
    let limited = s.call_as(&token, "GET", "/v1/jobs", None).await;
    assert_eq!(limited.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(error_code(&limited), "rate_limited");
    // One request every 10 s at 6 per minute.
    let retry: u64 = limited.headers[header::RETRY_AFTER]
        .to_str()
        .ok()
        .and_then(|v| v.parse().ok())
        .expect("Retry-After in seconds");
    assert!((1..=10).contains(&retry), "{retry}");
    assert_eq!(limited.headers["ratelimit-policy"], "\"token\";q=6;w=60");
    assert_eq!(
        limited.headers["ratelimit"].to_str().ok(),
        Some(format!("\"token\";r=0;t={retry}").as_str())
    );
    // Other tokens have their own budget.
    let admin = s.call("GET", "/v1/jobs", None).await;
    assert_eq!(admin.status, StatusCode::OK);
    let audit = s.call("GET", "/v1/audit?event=rate_limited", None).await;
    assert_eq!(audit.json["events"][0]["tenant"], "t");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_may_have_only_its_share_of_jobs_at_once() {
    let s = TestServer::start(|_| {}).await;
    let (_, token) = create_token(
        &s,
        "t",
        &["jobs:read", "jobs:write"],
        json!({"rate_limit": {"concurrent_jobs": 1}}),
    )
    .await;
    let spin = json!({"code": SPIN, "limits": {"timeout_ms": 20000}});
    let first = s
        .call_as(&token, "POST", "/v1/jobs", Some(spin.clone()))
        .await;
    assert_eq!(first.status, StatusCode::ACCEPTED);
    let second = s
        .call_as(&token, "POST", "/v1/jobs", Some(spin.clone()))
        .await;
    assert_eq!(
        second.status,
        StatusCode::TOO_MANY_REQUESTS,
        "{}",
        second.text
    );
    assert_eq!(error_code(&second), "too_many_jobs");
    assert!(second.headers.contains_key(header::RETRY_AFTER));
    // Nothing was stored for the refused job.
    let list = s.call_as(&token, "GET", "/v1/jobs", None).await;
    assert_eq!(list.json["jobs"].as_array().map(Vec::len), Some(1));
    let id = first.json["id"].as_str().expect("id");
    let cancelled = s
        .call_as(&token, "DELETE", &format!("/v1/jobs/{id}"), None)
        .await;
    assert_eq!(cancelled.json["status"], "cancelled");
    let third = s
        .call_as(
            &token,
            "POST",
            "/v1/jobs",
            Some(json!({"code": "print(3)", "wait": true})),
        )
        .await;
    assert_eq!(third.status, StatusCode::OK, "{}", third.text);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn traffic_without_credentials_is_limited_per_ip() {
    let s = TestServer::start(|c| {
        c.rate_limit.unauthenticated_per_minute = 6;
        c.rate_limit.unauthenticated_burst = 2;
    })
    .await;
    for _ in 0..2 {
        let r = call(&s.app, None, "GET", "/v1/jobs", None).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    }
    let limited = call(&s.app, None, "GET", "/v1/jobs", None).await;
    assert_eq!(limited.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(limited.headers["ratelimit-policy"], "\"ip\";q=6;w=60");
    // A valid token is not held back by the IP's anonymous budget.
    assert_eq!(s.call("GET", "/v1/jobs", None).await.status, StatusCode::OK);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeated_bad_tokens_lock_the_ip_out_and_raise_an_event() {
    let s = TestServer::start(|c| {
        c.lockout.max_failures = 3;
        c.lockout.window_secs = 60;
        c.lockout.duration_secs = 60;
        // Keep the anonymous bucket out of the way.
        c.rate_limit.unauthenticated_burst = 100;
    })
    .await;
    let bad = format!("spk_{}_{}", "0123456789abcdef", "x".repeat(43));
    for _ in 0..3 {
        let r = s.call_as(&bad, "GET", "/v1/jobs", None).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    }
    // Locked out now, even with a valid token.
    let locked = s.call("GET", "/v1/jobs", None).await;
    assert_eq!(
        locked.status,
        StatusCode::TOO_MANY_REQUESTS,
        "{}",
        locked.text
    );
    assert_eq!(error_code(&locked), "locked_out");
    let retry: u64 = locked.headers[header::RETRY_AFTER]
        .to_str()
        .ok()
        .and_then(|v| v.parse().ok())
        .expect("Retry-After");
    assert!((1..=60).contains(&retry));
    // The event is in the audit log, read from the store directly since the
    // admin's IP is the locked one.
    let state = s.server.as_ref().expect("server").state();
    state.audit.flush().await;
    let events = state
        .store
        .list_audit(strictpy_store::AuditQuery {
            event: Some("locked_out".into()),
            limit: 10,
            ..Default::default()
        })
        .await
        .expect("audit");
    assert!(!events.is_empty());
    assert_eq!(
        events.last().map(|e| e.event.details["failures"].clone()),
        Some(json!(3))
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_fields_get_a_clear_422_and_nothing_is_stored() {
    let s = TestServer::start(|c| {
        c.input.max_stdin_bytes = 10;
        c.input.max_context_bytes = 20;
    })
    .await;
    for (body, field) in [
        (
            json!({"code": "print(1)", "stdin": "x".repeat(11)}),
            "stdin",
        ),
        (
            json!({"code": "print(1)", "context": {"k": "y".repeat(20)}}),
            "context",
        ),
    ] {
        let r = s.call("POST", "/v1/jobs", Some(body)).await;
        assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.text);
        assert_eq!(error_code(&r), "field_too_large");
        assert_eq!(r.json["error"]["details"]["field"], field);
    }
    let ok = s
        .call(
            "POST",
            "/v1/jobs",
            Some(json!({"code": "print(input())", "stdin": "0123456789", "wait": true})),
        )
        .await;
    assert_eq!(ok.json["stdout"], "0123456789\n");
    let list = s.call("GET", "/v1/jobs", None).await;
    assert_eq!(list.json["jobs"].as_array().map(Vec::len), Some(1));
    s.stop().await;
}
