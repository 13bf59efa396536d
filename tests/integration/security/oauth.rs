//! The OAuth-style exchange: client credentials for short-lived access
//! tokens, refresh-token rotation with reuse detection, and RFC 7009
//! revocation.

use axum::http::StatusCode;
use serde_json::{Value, json};

use super::create_token;
use crate::server::{Backend, TestServer, call, error_code};

async fn exchange(s: &TestServer, api: &str, scope: Option<&str>) -> (StatusCode, Value) {
    let mut body = json!({"grant_type": "client_credentials"});
    if let Some(scope) = scope {
        body["scope"] = json!(scope);
    }
    let r = s.call_as(api, "POST", "/v1/oauth/token", Some(body)).await;
    (r.status, r.json)
}

async fn refresh(s: &TestServer, token: &str) -> (StatusCode, Value) {
    let r = call(
        &s.app,
        None,
        "POST",
        "/v1/oauth/token/refresh",
        Some(
            json!({"grant_type": "refresh_token", "refresh_token": token})
                .to_string()
                .into_bytes(),
        ),
    )
    .await;
    (r.status, r.json)
}

fn s(v: &Value) -> String {
    v.as_str().expect("string").to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_credentials_give_short_lived_tokens_within_the_api_tokens_scopes() {
    let srv = TestServer::start(|_| {}).await;
    let (_, api) = create_token(&srv, "t", &["jobs:read", "jobs:write"], json!({})).await;
    let (status, pair) = exchange(&srv, &api, None).await;
    assert_eq!(status, StatusCode::OK, "{pair}");
    assert_eq!(pair["token_type"], "Bearer");
    assert_eq!(pair["expires_in"], 900);
    assert_eq!(pair["scope"], "jobs:write jobs:read");
    let access = s(&pair["access_token"]);
    assert!(access.starts_with("spa_") && s(&pair["refresh_token"]).starts_with("spr_"));
    let job = srv
        .call_as(
            &access,
            "POST",
            "/v1/jobs",
            Some(json!({"code": "print(2)", "wait": true})),
        )
        .await;
    assert_eq!(job.status, StatusCode::OK, "{}", job.text);
    // The job belongs to the API token's tenant.
    let listed = srv.call_as(&api, "GET", "/v1/jobs", None).await;
    assert_eq!(listed.json["jobs"][0]["id"], job.json["id"]);

    // Fewer scopes on request; never more.
    let (status, narrow) = exchange(&srv, &api, Some("jobs:read")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(narrow["scope"], "jobs:read");
    let denied = srv
        .call_as(
            &s(&narrow["access_token"]),
            "POST",
            "/v1/jobs",
            Some(json!({"code": "1"})),
        )
        .await;
    assert_eq!(denied.status, StatusCode::FORBIDDEN);
    let (status, wider) = exchange(&srv, &api, Some("jobs:read admin")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(wider["error"]["code"], "invalid_scope");
    let (status, grant) = {
        let r = srv
            .call_as(
                &api,
                "POST",
                "/v1/oauth/token",
                Some(json!({"grant_type": "password"})),
            )
            .await;
        (r.status, r.json)
    };
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(grant["error"]["code"], "unsupported_grant_type");
    // An access token cannot start a new family, and a refresh token is not
    // a bearer token.
    let (status, again) = exchange(&srv, &access, None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{again}");
    let as_bearer = srv
        .call_as(&s(&pair["refresh_token"]), "GET", "/v1/jobs", None)
        .await;
    assert_eq!(as_bearer.status, StatusCode::UNAUTHORIZED);
    srv.stop().await;
}

async fn refresh_rotates_and_reuse_revokes_the_whole_family(backend: Backend) {
    let srv = TestServer::start_on(backend, |_| {}).await;
    let (_, api) = create_token(&srv, "t", &["jobs:read"], json!({})).await;
    let (_, first) = exchange(&srv, &api, None).await;
    let (status, second) = refresh(&srv, &s(&first["refresh_token"])).await;
    assert_eq!(status, StatusCode::OK, "{second}");
    assert_ne!(second["refresh_token"], first["refresh_token"]);
    assert_eq!(second["scope"], "jobs:read");
    let access2 = s(&second["access_token"]);
    assert_eq!(
        srv.call_as(&access2, "GET", "/v1/jobs", None).await.status,
        StatusCode::OK
    );

    // The first refresh token again: someone replays it.
    let (status, reused) = refresh(&srv, &s(&first["refresh_token"])).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(reused["error"]["code"], "invalid_grant");
    // Every token of the family is dead now, the newest ones included.
    let (status, _) = refresh(&srv, &s(&second["refresh_token"])).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    for access in [s(&first["access_token"]), access2] {
        let r = srv.call_as(&access, "GET", "/v1/jobs", None).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    }
    // Another family of the same API token is untouched.
    let (_, other) = exchange(&srv, &api, None).await;
    assert_eq!(
        srv.call_as(&s(&other["access_token"]), "GET", "/v1/jobs", None)
            .await
            .status,
        StatusCode::OK
    );
    let audit = srv
        .call("GET", "/v1/audit?event=refresh_token_reuse", None)
        .await;
    assert_eq!(audit.json["events"].as_array().map(Vec::len), Some(1));
    assert_eq!(audit.json["events"][0]["details"]["revoked"], 4);
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn access_tokens_expire_and_revocation_follows_rfc_7009() {
    let srv = TestServer::start(|c| c.auth.access_token_ttl_secs = 1).await;
    let (api_id, api) = create_token(&srv, "t", &["jobs:read"], json!({})).await;
    let (_, pair) = exchange(&srv, &api, None).await;
    assert_eq!(pair["expires_in"], 1);
    let access = s(&pair["access_token"]);
    assert_eq!(
        srv.call_as(&access, "GET", "/v1/jobs", None).await.status,
        StatusCode::OK
    );
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    assert_eq!(
        srv.call_as(&access, "GET", "/v1/jobs", None).await.status,
        StatusCode::UNAUTHORIZED
    );
    // The refresh token outlives it and yields a fresh one.
    let (status, fresh) = refresh(&srv, &s(&pair["refresh_token"])).await;
    assert_eq!(status, StatusCode::OK);
    let access = s(&fresh["access_token"]);

    let revoke = |token: String, hint: &'static str| {
        let body = format!("token={token}&token_type_hint={hint}").into_bytes();
        let app = srv.app.clone();
        async move {
            let request = axum::http::Request::builder()
                .method("POST")
                .uri("/v1/oauth/revoke")
                .header("content-type", "application/x-www-form-urlencoded")
                .body(axum::body::Body::from(body))
                .expect("request");
            tower::ServiceExt::oneshot(app, request)
                .await
                .expect("infallible")
                .status()
        }
    };
    // A hint of the wrong kind still finds the token.
    assert_eq!(
        revoke(access.clone(), "refresh_token").await,
        StatusCode::OK
    );
    assert_eq!(
        srv.call_as(&access, "GET", "/v1/jobs", None).await.status,
        StatusCode::UNAUTHORIZED
    );
    // Unknown tokens answer 200 too, so the endpoint reveals nothing.
    assert_eq!(
        revoke("spa_nothing".into(), "access_token").await,
        StatusCode::OK
    );
    // Revoking a refresh token ends its family.
    assert_eq!(
        revoke(s(&fresh["refresh_token"]), "refresh_token").await,
        StatusCode::OK
    );
    let (status, _) = refresh(&srv, &s(&fresh["refresh_token"])).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    // Revoking the API token ends everything exchanged from it.
    let (_, pair) = exchange(&srv, &api, None).await;
    srv.call("DELETE", &format!("/v1/tokens/{api_id}"), None)
        .await;
    let (status, _) = refresh(&srv, &s(&pair["refresh_token"])).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let no_body = call(
        &srv.app,
        None,
        "POST",
        "/v1/oauth/revoke",
        Some(b"{}".to_vec()),
    )
    .await;
    assert_eq!(no_body.status, StatusCode::BAD_REQUEST);
    assert_eq!(error_code(&no_body), "invalid_request");
    srv.stop().await;
}

on_both_backends!(refresh_rotates_and_reuse_revokes_the_whole_family,);
