//! Tenants and scoped tokens: 401 and 403, cross-tenant isolation, expiry,
//! revocation, token management over HTTP and from the CLI.

use std::process::Command;

use axum::http::{StatusCode, header};
use serde_json::{Value, json};

use super::{SPIN, create_token, is_final};
use crate::server::{Backend, TestServer, call, error_code};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_and_bad_tokens_get_401_with_a_challenge() {
    let s = TestServer::start(|_| {}).await;
    let none = call(&s.app, None, "GET", "/v1/jobs", None).await;
    assert_eq!(none.status, StatusCode::UNAUTHORIZED);
    assert_eq!(error_code(&none), "unauthorized");
    assert_eq!(
        none.headers[header::WWW_AUTHENTICATE],
        "Bearer realm=\"strictpy\""
    );
    let forged = format!("spk_{}_{}", "0123456789abcdef", "A".repeat(43));
    let truncated = &s.token[..s.token.len() - 1];
    let wrong_secret = format!("{}B", &s.token[..s.token.len() - 1]);
    for bad in [
        "nonsense",
        forged.as_str(),
        truncated,
        wrong_secret.as_str(),
    ] {
        let reply = s.call_as(bad, "GET", "/v1/jobs", None).await;
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{bad}");
        assert_eq!(
            reply.headers[header::WWW_AUTHENTICATE],
            "Bearer realm=\"strictpy\", error=\"invalid_token\""
        );
    }
    // Probes need no token.
    let health = call(&s.app, None, "GET", "/healthz", None).await;
    assert_eq!(health.status, StatusCode::OK);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_never_sees_another_tenants_jobs() {
    let s = TestServer::start(|_| {}).await;
    let scopes = ["jobs:read", "jobs:write"];
    let (_, alice) = create_token(&s, "alice", &scopes, json!({})).await;
    let (_, bob) = create_token(&s, "bob", &scopes, json!({})).await;
    let job = s
        .call_as(
            &alice,
            "POST",
            "/v1/jobs",
            Some(json!({"code": SPIN, "limits": {"timeout_ms": 20000}})),
        )
        .await;
    assert_eq!(job.status, StatusCode::ACCEPTED, "{}", job.text);
    let id = job.json["id"].as_str().expect("id").to_owned();
    let unknown = uuid::Uuid::now_v7();

    // Bob gets exactly the answer he gets for an id that does not exist.
    for method in ["GET", "DELETE"] {
        let theirs = s
            .call_as(&bob, method, &format!("/v1/jobs/{id}"), None)
            .await;
        let nobodys = s
            .call_as(&bob, method, &format!("/v1/jobs/{unknown}"), None)
            .await;
        assert_eq!(theirs.status, StatusCode::NOT_FOUND, "{method}");
        assert_eq!(nobodys.status, StatusCode::NOT_FOUND, "{method}");
        assert_eq!(error_code(&theirs), error_code(&nobodys));
        assert_eq!(
            theirs.json["error"]["message"]
                .as_str()
                .map(|m| m.replace(&id, "ID")),
            nobodys.json["error"]["message"]
                .as_str()
                .map(|m| m.replace(&unknown.to_string(), "ID")),
        );
    }
    let listed = s.call_as(&bob, "GET", "/v1/jobs", None).await;
    assert_eq!(listed.json["jobs"], json!([]));
    // Bob's cancel did nothing: Alice's job still runs, and she sees it.
    let mine = s
        .call_as(&alice, "GET", &format!("/v1/jobs/{id}"), None)
        .await;
    assert_eq!(mine.status, StatusCode::OK);
    assert!(!is_final(&mine.json), "{}", mine.json);
    let listed = s.call_as(&alice, "GET", "/v1/jobs", None).await;
    assert_eq!(listed.json["jobs"][0]["id"], id.as_str());
    // The admin token belongs to another tenant and does not see it either.
    let admin = s.call("GET", &format!("/v1/jobs/{id}"), None).await;
    assert_eq!(admin.status, StatusCode::NOT_FOUND);
    let cancelled = s
        .call_as(&alice, "DELETE", &format!("/v1/jobs/{id}"), None)
        .await;
    assert_eq!(cancelled.json["status"], "cancelled");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_scope_guards_its_endpoints() {
    let s = TestServer::start(|_| {}).await;
    let (_, check_only) = create_token(&s, "t", &["check"], json!({})).await;
    let (_, reader) = create_token(&s, "t", &["jobs:read"], json!({})).await;
    let (_, writer) = create_token(&s, "t", &["jobs:write"], json!({})).await;
    let job = json!({"code": "print(1)"});
    let denied = [
        (
            &check_only,
            "POST",
            "/v1/jobs",
            Some(job.clone()),
            "jobs:write",
        ),
        (
            &check_only,
            "POST",
            "/v1/jobs/batch",
            Some(json!({"jobs": [job.clone()]})),
            "jobs:write",
        ),
        (&check_only, "GET", "/v1/jobs", None, "jobs:read"),
        (
            &reader,
            "POST",
            "/v1/check",
            Some(json!({"code": "x = 1"})),
            "check",
        ),
        (&reader, "POST", "/v1/jobs", Some(job.clone()), "jobs:write"),
        (&writer, "GET", "/v1/jobs", None, "jobs:read"),
        (&writer, "GET", "/v1/tokens", None, "admin"),
        (
            &writer,
            "POST",
            "/v1/tokens",
            Some(json!({"tenant": "x", "scopes": ["admin"]})),
            "admin",
        ),
        (&reader, "GET", "/v1/audit", None, "admin"),
        (&reader, "GET", "/v1/cluster", None, "admin"),
        (&reader, "DELETE", "/v1/tenants/t", None, "admin"),
        (&reader, "GET", "/v1/tenants/other/export", None, "admin"),
    ];
    for (token, method, uri, body, scope) in denied {
        let reply = s.call_as(token, method, uri, body).await;
        assert_eq!(
            reply.status,
            StatusCode::FORBIDDEN,
            "{method} {uri}: {}",
            reply.text
        );
        assert_eq!(error_code(&reply), "insufficient_scope");
        assert_eq!(reply.json["error"]["details"]["required"], scope);
    }
    let allowed = s
        .call_as(
            &check_only,
            "POST",
            "/v1/check",
            Some(json!({"code": "x = 1"})),
        )
        .await;
    assert_eq!(allowed.status, StatusCode::OK);
    let written = s.call_as(&writer, "POST", "/v1/jobs", Some(job)).await;
    assert_eq!(written.status, StatusCode::ACCEPTED);
    let read = s.call_as(&reader, "GET", "/v1/jobs", None).await;
    assert_eq!(read.status, StatusCode::OK);
    assert_eq!(read.json["jobs"].as_array().map(Vec::len), Some(1));
    let audit = s
        .call("GET", "/v1/audit?event=permission_denied", None)
        .await;
    assert_eq!(audit.json["events"].as_array().map(Vec::len), Some(12));
    s.stop().await;
}

async fn expired_and_revoked_tokens_are_refused(backend: Backend) {
    let s = TestServer::start_on(backend, |_| {}).await;
    let (_, short) = create_token(&s, "t", &["jobs:read"], json!({"expires_in_secs": 1})).await;
    let (revoked_id, revoked) = create_token(&s, "t", &["jobs:read"], json!({})).await;
    assert_eq!(
        s.call_as(&short, "GET", "/v1/jobs", None).await.status,
        StatusCode::OK
    );
    assert_eq!(
        s.call_as(&revoked, "GET", "/v1/jobs", None).await.status,
        StatusCode::OK
    );

    let gone = s
        .call("DELETE", &format!("/v1/tokens/{revoked_id}"), None)
        .await;
    assert_eq!(gone.status, StatusCode::OK, "{}", gone.text);
    assert!(gone.json["revoked_at"].is_string());
    assert_eq!(
        s.call_as(&revoked, "GET", "/v1/jobs", None).await.status,
        StatusCode::UNAUTHORIZED
    );
    let again = s.call("DELETE", "/v1/tokens/ffffffffffffffff", None).await;
    assert_eq!(again.status, StatusCode::NOT_FOUND);

    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    assert_eq!(
        s.call_as(&short, "GET", "/v1/jobs", None).await.status,
        StatusCode::UNAUTHORIZED
    );

    let audit = s.call("GET", "/v1/audit?event=auth_failure", None).await;
    let reasons: Vec<&str> = audit.json["events"]
        .as_array()
        .expect("events")
        .iter()
        .filter_map(|e| e["details"]["reason"].as_str())
        .collect();
    assert!(
        reasons.contains(&"revoked") && reasons.contains(&"expired"),
        "{reasons:?}"
    );
    s.stop().await;
}

async fn token_listings_never_show_secrets_and_validate_requests(backend: Backend) {
    let s = TestServer::start_on(backend, |_| {}).await;
    let (id, secret) = create_token(&s, "acme", &["check"], json!({"name": "ci"})).await;
    let list = s.call("GET", "/v1/tokens?tenant=acme", None).await;
    assert_eq!(list.status, StatusCode::OK);
    assert_eq!(list.json["tokens"].as_array().map(Vec::len), Some(1));
    assert_eq!(list.json["tokens"][0]["id"], id.as_str());
    assert_eq!(list.json["tokens"][0]["name"], "ci");
    assert!(!list.text.contains(&secret));
    assert!(list.json["tokens"][0].get("token").is_none());
    // At rest only the SHA-256 of the token exists: not in the database
    // files, not in the write-ahead log.
    let raw = s.bytes_at_rest();
    let raw = String::from_utf8_lossy(&raw);
    let digest = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(secret.as_bytes()));
    assert!(raw.contains(&digest), "the hash is stored");
    assert!(!raw.contains(&secret), "the secret is not");
    assert!(!raw.contains(&s.token), "nor the admin token");
    // One use records a last-used time.
    s.call_as(&secret, "POST", "/v1/check", Some(json!({"code": "x = 1"})))
        .await;
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let list = s.call("GET", "/v1/tokens?tenant=acme", None).await;
    assert!(
        list.json["tokens"][0]["last_used_at"].is_string(),
        "{}",
        list.text
    );

    for (body, field) in [
        (
            json!({"tenant": "bad tenant!", "scopes": ["check"]}),
            "tenant",
        ),
        (json!({"tenant": "t", "scopes": ["jobs:delete"]}), "scopes"),
        (json!({"tenant": "t", "scopes": []}), "scopes"),
        (
            json!({"tenant": "t", "scopes": ["check"], "expires_in_secs": 0}),
            "expires_in_secs",
        ),
    ] {
        let reply = s.call("POST", "/v1/tokens", Some(body)).await;
        assert_eq!(
            reply.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{}",
            reply.text
        );
        assert_eq!(reply.json["error"]["details"]["field"], field);
    }
    s.stop().await;
}

/// Runs `strictpy token ARGS` on the store of `s`. On Postgres the URL goes
/// in without its password, which comes from `PGPASSWORD`.
fn strictpy_token(s: &TestServer, args: &[&str]) -> (bool, String, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_strictpy"));
    cmd.arg("token")
        .args(args)
        .arg("--data-dir")
        .arg(s._dir.path())
        .env_remove("STRICTPY_ENCRYPTION_KEY")
        .env_remove("STRICTPY_STORE_URL")
        .env_remove("PGPASSWORD");
    if let Some(url) = &s.store_url {
        let db = strictpy_testpg::PgServer::database_of(url);
        let pg = strictpy_testpg::server().expect("server");
        cmd.arg("--store-url")
            .arg(pg.url_without_password(db))
            .env("PGPASSWORD", strictpy_testpg::PASSWORD);
    }
    let out = cmd.output().expect("run strictpy token");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

async fn the_cli_creates_lists_and_revokes_tokens_a_running_server_honours(backend: Backend) {
    let s = TestServer::start_on(backend, |_| {}).await;
    let (ok, out, err) = strictpy_token(
        &s,
        &[
            "create",
            "--tenant",
            "cli",
            "--scope",
            "jobs:read",
            "--name",
            "from-cli",
            "--expires-in",
            "30d",
            "--json",
        ],
    );
    assert!(ok, "{err}");
    let created: Value = serde_json::from_str(&out).expect("json");
    let secret = created["token"].as_str().expect("token").to_owned();
    let id = created["id"].as_str().expect("id").to_owned();
    assert!(secret.starts_with("spk_"));
    assert!(created["expires_at"].is_string());
    let reply = s.call_as(&secret, "GET", "/v1/jobs", None).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);

    let (ok, out, _) = strictpy_token(&s, &["list", "--tenant", "cli"]);
    assert!(ok);
    assert!(
        out.contains(&id) && out.contains("from-cli") && out.contains("jobs:read"),
        "{out}"
    );
    assert!(!out.contains(&secret));

    let (ok, out, _) = strictpy_token(&s, &["revoke", &id]);
    assert!(ok);
    assert!(out.contains("revoked"), "{out}");
    let reply = s.call_as(&secret, "GET", "/v1/jobs", None).await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    let (ok, _, err) = strictpy_token(&s, &["create", "--tenant", "x", "--scope", "nope"]);
    assert!(!ok);
    assert!(err.contains("unknown scope"), "{err}");
    let audit = s.call("GET", "/v1/audit?tenant=cli", None).await;
    let events: Vec<&str> = audit.json["events"]
        .as_array()
        .expect("events")
        .iter()
        .filter_map(|e| e["event"].as_str())
        .collect();
    assert!(
        events.contains(&"token_created") && events.contains(&"token_revoked"),
        "{events:?}"
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_first_start_makes_one_private_admin_token_and_later_starts_none() {
    let root = tempfile::tempdir().expect("tempdir");
    let data = root.path().join("fresh").join("data");
    let config = crate::server::test_config(&data);
    let server = strictpy_server::Server::start(config.clone(), crate::server::shared_sandbox())
        .await
        .expect("start");
    let file = data.join("admin-token");
    let token = std::fs::read_to_string(&file).expect("admin-token");
    // The data dir it made, the database and the token file are private.
    #[cfg(unix)]
    for (path, want) in [
        (&data, 0o700),
        (&data.join("strictpy.db"), 0o600),
        (&file, 0o600),
    ] {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(path).expect("meta").permissions().mode();
        assert_eq!(mode & 0o777, want, "{}", path.display());
    }
    let app = server.router();
    let me = call(&app, Some(token.trim()), "GET", "/v1/tokens", None).await;
    assert_eq!(me.status, StatusCode::OK);
    assert_eq!(me.json["tokens"].as_array().map(Vec::len), Some(1));
    assert_eq!(me.json["tokens"][0]["tenant"], "default");
    assert_eq!(
        me.json["tokens"][0]["scopes"],
        json!([
            "jobs:write",
            "jobs:read",
            "check",
            "functions:write",
            "functions:invoke",
            "admin"
        ])
    );
    server.shutdown().await;

    let again = strictpy_server::Server::start(config, crate::server::shared_sandbox())
        .await
        .expect("restart");
    assert_eq!(std::fs::read_to_string(&file).expect("file"), token);
    let app = again.router();
    let me = call(&app, Some(token.trim()), "GET", "/v1/tokens", None).await;
    assert_eq!(me.json["tokens"].as_array().map(Vec::len), Some(1));
    again.shutdown().await;
}

on_both_backends!(
    expired_and_revoked_tokens_are_refused,
    the_cli_creates_lists_and_revokes_tokens_a_running_server_honours,
    token_listings_never_show_secrets_and_validate_requests,
);
