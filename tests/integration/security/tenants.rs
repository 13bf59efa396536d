//! The audit log (what it records, its filters), retention, and tenant
//! export and erasure.

use axum::http::StatusCode;
use serde_json::{Value, json};

use super::create_token;
use crate::server::{Backend, TestServer};

fn events(reply: &Value) -> Vec<Value> {
    reply["events"].as_array().cloned().unwrap_or_default()
}

fn names(reply: &Value) -> Vec<String> {
    events(reply)
        .iter()
        .filter_map(|e| e["event"].as_str().map(str::to_owned))
        .collect()
}

async fn the_audit_log_records_static_and_run_time_attempts_and_limit_hits(backend: Backend) {
    let s = TestServer::start_on(backend, |c| {
        // An operator allowed `exec`, so the import inside it meets the
        // guest's run-time guard instead of the static check.
        c.policy.forbidden_builtins.remove("exec");
    })
    .await;
    let (_, token) = create_token(&s, "acme", &["jobs:write", "check"], json!({})).await;
    let rejected = s
        .call_as(
            &token,
            "POST",
            "/v1/jobs",
            Some(json!({"code": "import socket\nx.__subclasses__"})),
        )
        .await;
    assert_eq!(rejected.status, StatusCode::UNPROCESSABLE_ENTITY);
    let checked = s
        .call_as(
            &token,
            "POST",
            "/v1/check",
            Some(json!({"code": "import subprocess"})),
        )
        .await;
    assert_eq!(checked.json["ok"], false);
    let refused = s
        .call_as(
            &token,
            "POST",
            "/v1/jobs",
            Some(json!({"code": "exec('import socket')", "wait": true})),
        )
        .await;
    assert_eq!(
        refused.json["error"]["exception_type"], "ImportError",
        "{}",
        refused.text
    );
    let fuel = s
        .call_as(
            &token,
            "POST",
            "/v1/jobs",
            Some(
                json!({"code": "while True:\n    pass", "limits": {"fuel": 1000000}, "wait": true}),
            ),
        )
        .await;
    assert_eq!(fuel.json["error"]["kind"], "fuel_exhausted");

    let log = s.call("GET", "/v1/audit?tenant=acme", None).await;
    assert_eq!(log.status, StatusCode::OK);
    let all = events(&log.json);
    let static_ = all
        .iter()
        .filter(|e| e["event"] == "policy_violation")
        .collect::<Vec<_>>();
    assert_eq!(static_.len(), 2, "{all:?}");
    let rules: Vec<&str> = static_[1]["details"]["violations"]
        .as_array()
        .expect("violations")
        .iter()
        .filter_map(|v| v["rule"].as_str())
        .collect();
    assert_eq!(rules, ["forbidden_import", "forbidden_attribute"]);
    let runtime = all
        .iter()
        .find(|e| e["event"] == "runtime_import_refused")
        .expect("run-time refusal");
    assert_eq!(runtime["details"]["job_id"], refused.json["id"]);
    let limit = all
        .iter()
        .find(|e| e["event"] == "limit_hit")
        .expect("limit hit");
    assert_eq!(limit["details"]["event"]["verdict"], "fuel_exhausted");
    for e in &all {
        assert_eq!(e["tenant"], "acme");
        assert!(e["at"].as_str().is_some_and(|t| t.ends_with('Z')));
    }
    // Request events carry the token's public id and the client IP.
    let success = all
        .iter()
        .find(|e| e["event"] == "auth_success")
        .expect("auth success");
    assert!(
        success["token_id"]
            .as_str()
            .is_some_and(|id| id.len() == 16)
    );
    assert!(success["ip"].is_string());
    // Four requests from one token and address: one row for the minute.
    let successes = all.iter().filter(|e| e["event"] == "auth_success").count();
    assert_eq!(successes, 1, "{all:?}");
    assert!(!log.text.contains(&token));

    // Filters: event, time window, paging.
    let only = s
        .call("GET", "/v1/audit?tenant=acme&event=limit_hit", None)
        .await;
    assert_eq!(names(&only.json), ["limit_hit"]);
    let future = s
        .call("GET", "/v1/audit?since=2999-01-01T00:00:00Z", None)
        .await;
    assert_eq!(events(&future.json).len(), 0);
    let page = s.call("GET", "/v1/audit?tenant=acme&limit=2", None).await;
    assert_eq!(events(&page.json).len(), 2);
    let cursor = page.json["next_cursor"].as_str().expect("cursor");
    let next = s
        .call(
            "GET",
            &format!("/v1/audit?tenant=acme&limit=2&cursor={cursor}"),
            None,
        )
        .await;
    assert!(events(&next.json)[0]["id"].as_i64() < events(&page.json)[1]["id"].as_i64());
    let bad = s.call("GET", "/v1/audit?since=yesterday", None).await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    s.stop().await;
}

async fn retention_purges_old_jobs_and_audit_events(backend: Backend) {
    let s = TestServer::start_on(backend, |c| {
        c.retention.jobs_ttl_secs = 1;
        c.retention.audit_ttl_secs = 2;
        c.retention.purge_interval_secs = 1;
    })
    .await;
    let (_, token) = create_token(&s, "t", &["jobs:write", "jobs:read"], json!({})).await;
    let job = s
        .call_as(
            &token,
            "POST",
            "/v1/jobs",
            Some(json!({"code": "print(1)", "wait": true})),
        )
        .await;
    assert_eq!(job.json["status"], "succeeded");
    let id = job.json["id"].as_str().expect("id").to_owned();
    let mut purged = false;
    for _ in 0..40 {
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
        let r = s
            .call_as(&token, "GET", &format!("/v1/jobs/{id}"), None)
            .await;
        if r.status == StatusCode::NOT_FOUND {
            purged = true;
            break;
        }
    }
    assert!(purged, "the finished job outlived its TTL");
    // The token_created event of the start is older than the audit TTL by
    // now, or will be after the next purge.
    let mut gone = false;
    for _ in 0..40 {
        let log = s.call("GET", "/v1/audit?event=token_created", None).await;
        if events(&log.json).is_empty() {
            gone = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    }
    assert!(gone, "old audit events were not purged");
    s.stop().await;
}

async fn a_tenant_exports_its_data_and_erasure_removes_it_but_keeps_an_anonymous_record(
    backend: Backend,
) {
    let s = TestServer::start_on(backend, |_| {}).await;
    let scopes = ["jobs:write", "jobs:read"];
    let (_, alice) = create_token(&s, "alice", &scopes, json!({})).await;
    let (_, bob) = create_token(&s, "bob", &scopes, json!({})).await;
    let job = s
        .call_as(
            &alice,
            "POST",
            "/v1/jobs",
            Some(json!({"code": "print('alice-secret-42')", "context": {"k": "v"}, "wait": true})),
        )
        .await;
    assert_eq!(job.json["status"], "succeeded");
    s.call_as(
        &bob,
        "POST",
        "/v1/jobs",
        Some(json!({"code": "print('bob')", "wait": true})),
    )
    .await;

    let export = s
        .call_as(&alice, "GET", "/v1/tenants/alice/export", None)
        .await;
    assert_eq!(export.status, StatusCode::OK, "{}", export.text);
    assert_eq!(export.json["tenant"], "alice");
    let jobs = export.json["jobs"].as_array().expect("jobs");
    assert_eq!(jobs.len(), 1);
    assert_eq!(jobs[0]["code"], "print('alice-secret-42')");
    assert_eq!(jobs[0]["stdout"], "alice-secret-42\n");
    assert_eq!(jobs[0]["context"], json!({"k": "v"}));
    let audit = export.json["audit"].as_array().expect("audit");
    assert!(audit.iter().all(|e| e["tenant"] == "alice"));
    assert!(audit.iter().any(|e| e["event"] == "auth_success"));
    // Not Bob's to take, and not the other way round.
    let theirs = s
        .call_as(&bob, "GET", "/v1/tenants/alice/export", None)
        .await;
    assert_eq!(theirs.status, StatusCode::FORBIDDEN);
    let by_admin = s.call("GET", "/v1/tenants/alice/export", None).await;
    assert_eq!(by_admin.json["jobs"].as_array().map(Vec::len), Some(1));

    // A job of hers still running at the erasure. On SQLite it was handed
    // to the worker before anything of it was stored: it must never be
    // written now. On Postgres its row is deleted with the rest.
    let spinning = tokio::spawn({
        let (s_app, alice) = (s.app.clone(), alice.clone());
        async move {
            let spin = json!({"code": "while True:\n    pass", "limits": {"timeout_ms": 20000}, "wait": true});
            let body = Some(spin.to_string().into_bytes());
            crate::server::call(&s_app, Some(&alice), "POST", "/v1/jobs", body).await
        }
    });
    for _ in 0..500 {
        let running = s
            .call_as(&alice, "GET", "/v1/jobs?status=running", None)
            .await;
        if running.json["jobs"]
            .as_array()
            .is_some_and(|j| !j.is_empty())
        {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    let erased = s.call("DELETE", "/v1/tenants/alice", None).await;
    assert_eq!(erased.status, StatusCode::OK, "{}", erased.text);
    let stored_running = u64::from(backend == Backend::Postgres);
    assert_eq!(erased.json["jobs_deleted"], 1 + stored_running);
    if backend == Backend::Sqlite {
        let answer = spinning.await.expect("the spinning request");
        assert_eq!(
            answer.status,
            StatusCode::INTERNAL_SERVER_ERROR,
            "{}",
            answer.text
        );
    } else {
        spinning.abort();
    }
    assert_eq!(erased.json["tokens_revoked"], 1);
    assert!(erased.json["audit_anonymised"].as_u64() > Some(0));
    let pseudonym = erased.json["anonymised_as"]
        .as_str()
        .expect("pseudonym")
        .to_owned();
    assert!(pseudonym.starts_with("erased-"));

    assert_eq!(
        s.call_as(&alice, "GET", "/v1/jobs", None).await.status,
        StatusCode::UNAUTHORIZED
    );
    let after = s.call("GET", "/v1/tenants/alice/export", None).await;
    assert_eq!(after.json["jobs"], json!([]));
    assert_eq!(after.json["audit"], json!([]));
    let kept = s
        .call("GET", &format!("/v1/audit?tenant={pseudonym}"), None)
        .await;
    let kept = events(&kept.json);
    assert!(!kept.is_empty());
    assert!(kept.iter().all(|e| e["ip"].is_null()));
    assert!(
        !serde_json::to_string(&kept)
            .expect("json")
            .contains("alice")
    );
    // Bob is untouched.
    let bobs = s.call_as(&bob, "GET", "/v1/jobs", None).await;
    assert_eq!(bobs.json["jobs"].as_array().map(Vec::len), Some(1));
    let log = s.call("GET", "/v1/audit?event=tenant_erased", None).await;
    assert_eq!(events(&log.json).len(), 1);
    let exports = s.call("GET", "/v1/audit?event=export", None).await;
    assert_eq!(events(&exports.json).len(), 3);
    s.stop().await;
}

on_both_backends!(
    the_audit_log_records_static_and_run_time_attempts_and_limit_hits,
    retention_purges_old_jobs_and_audit_events,
    a_tenant_exports_its_data_and_erasure_removes_it_but_keeps_an_anonymous_record,
);
