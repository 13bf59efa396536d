//! Router tests through `tower::ServiceExt::oneshot`: every endpoint and
//! error path, isolation, cancel, batch, idempotency and backpressure.

use axum::http::{StatusCode, header};
use serde_json::{Value, json};

use super::{Backend, TestServer, call, error_code};

/// A job that spins until cancelled or timed out.
const SPIN: &str = "while True:\n    pass\n";

async fn wait_true_answers_200_with_the_finished_job(backend: Backend) {
    let s = TestServer::start_on(backend, |_| {}).await;
    let reply = s
        .call(
            "POST",
            "/v1/jobs",
            Some(json!({
                "code": "import json\nprint('hi')\nresult = {'n': n * 2, 'line': input()}",
                "context": {"n": 21},
                "stdin": "from stdin\n",
                "limits": {"timeout_ms": 4000},
                "wait": true
            })),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    let job = &reply.json;
    let id = job["id"].as_str().expect("id");
    assert_eq!(
        reply.headers[header::LOCATION].to_str().ok(),
        Some(format!("/v1/jobs/{id}").as_str())
    );
    assert_eq!(job["status"], "succeeded");
    assert_eq!(job["stdout"], "hi\n");
    assert_eq!(job["stderr"], "");
    assert_eq!(job["stdout_truncated"], false);
    assert_eq!(job["result"], json!({"n": 42, "line": "from stdin"}));
    assert_eq!(job["error"], Value::Null);
    assert_eq!(job["limits"]["timeout_ms"], 4000);
    assert_eq!(job["limits"]["memory_mb"], 1024);
    assert!(job["usage"]["fuel_consumed"].as_u64().unwrap_or(0) > 0);
    for field in ["created_at", "started_at", "finished_at"] {
        assert!(
            job[field].as_str().is_some_and(|t| t.ends_with('Z')),
            "{field}"
        );
    }
    assert_eq!(job["callback"], Value::Null);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wait_true_past_the_max_wait_answers_202_with_the_unfinished_job() {
    let s = TestServer::start(|c| c.max_wait_ms = 100).await;
    let reply = s
        .call(
            "POST",
            "/v1/jobs",
            Some(json!({"code": SPIN, "limits": {"timeout_ms": 20000}, "wait": true})),
        )
        .await;
    assert_eq!(reply.status, StatusCode::ACCEPTED, "{}", reply.text);
    assert!(matches!(
        reply.json["status"].as_str(),
        Some("queued" | "running")
    ));
    let id = reply.json["id"].as_str().expect("id");
    // A `202` names a stored job, even one handed to the worker unwritten.
    let state = s.server.as_ref().expect("running").state();
    let row = state
        .store
        .get(id.parse().expect("uuid"))
        .await
        .expect("get");
    assert_eq!(
        row.map(|r| r.status),
        Some(strictpy_types::JobStatus::Running)
    );
    let cancelled = s.call("DELETE", &format!("/v1/jobs/{id}"), None).await;
    assert_eq!(cancelled.json["status"], "cancelled");
    s.stop().await;
}

async fn without_wait_the_job_is_queued_with_202_and_then_finishes(backend: Backend) {
    let s = TestServer::start_on(backend, |_| {}).await;
    let reply = s
        .call(
            "POST",
            "/v1/jobs",
            Some(json!({"code": "raise ValueError('boom')"})),
        )
        .await;
    assert_eq!(reply.status, StatusCode::ACCEPTED, "{}", reply.text);
    assert!(reply.headers.contains_key(header::LOCATION));
    assert_eq!(reply.json["status"], "queued");
    assert_eq!(reply.json["stdout"], Value::Null);
    let id = reply.json["id"].as_str().expect("id").to_owned();
    let job = s.until_final(&id).await;
    assert_eq!(job["status"], "failed");
    assert_eq!(job["error"]["kind"], "exception");
    assert_eq!(job["error"]["exception_type"], "ValueError");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn violations_are_422_like_strictpy_check_and_nothing_is_stored() {
    let s = TestServer::start(|_| {}).await;
    let reply = s
        .call(
            "POST",
            "/v1/jobs",
            Some(json!({"code": "import os\nos.system('x')"})),
        )
        .await;
    assert_eq!(reply.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(error_code(&reply), "policy_violation");
    let violations = &reply.json["error"]["details"]["violations"];
    assert_eq!(violations[0]["rule"], "forbidden_import");
    assert_eq!(violations[0]["line"], 1);
    let syntax = s
        .call("POST", "/v1/jobs", Some(json!({"code": "def ("})))
        .await;
    assert_eq!(syntax.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        syntax.json["error"]["details"]["violations"][0]["rule"],
        "syntax_error"
    );
    let list = s.call("GET", "/v1/jobs", None).await;
    assert_eq!(list.json["jobs"], json!([]));

    // `/v1/check` gives the same verdict without an error status.
    let check = s
        .call("POST", "/v1/check", Some(json!({"code": "eval('1')"})))
        .await;
    assert_eq!(check.status, StatusCode::OK);
    assert_eq!(check.json["ok"], false);
    assert_eq!(check.json["violations"][0]["rule"], "forbidden_builtin");
    let ok = s
        .call(
            "POST",
            "/v1/check",
            Some(json!({"code": "import random", "allow": ["random"]})),
        )
        .await;
    assert_eq!(ok.json, json!({"ok": true, "violations": []}));
    let refused = s
        .call(
            "POST",
            "/v1/check",
            Some(json!({"code": "import os", "allow": ["os"]})),
        )
        .await;
    assert_eq!(refused.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(error_code(&refused), "module_not_allowable");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_error_path_has_its_status_and_the_shared_shape() {
    let s = TestServer::start(|_| {}).await;
    let raw = |body: &str| Some(body.as_bytes().to_vec());
    let cases: Vec<(Option<Vec<u8>>, StatusCode, &str)> = vec![
        (raw("{not json"), StatusCode::BAD_REQUEST, "invalid_request"),
        (
            raw(r#"{"code": 5}"#),
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (
            raw(r#"{"code": "1", "bogus": true}"#),
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (
            raw(r#"{"stdin": "x"}"#),
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (
            raw(r#"{"code": "1", "context": [1]}"#),
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (
            raw(r#"{"code": "1", "limits": {"timeout_ms": 99999999}}"#),
            StatusCode::UNPROCESSABLE_ENTITY,
            "limit_exceeded",
        ),
        (
            raw(r#"{"code": "1", "limits": {"fuel": 0}}"#),
            StatusCode::UNPROCESSABLE_ENTITY,
            "limit_exceeded",
        ),
        (
            raw(r#"{"code": "1", "allow": ["socket"]}"#),
            StatusCode::UNPROCESSABLE_ENTITY,
            "module_not_allowable",
        ),
        (
            raw(r#"{"code": "1", "context": {"class": 1}}"#),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_context",
        ),
        (
            raw(r#"{"code": "1", "callback_url": "ftp://example.com/"}"#),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_callback_url",
        ),
        (
            Some(format!(r#"{{"code": "{}"}}"#, "x".repeat(70 * 1024)).into_bytes()),
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
        ),
    ];
    for (body, status, code) in cases {
        let shown = body
            .as_ref()
            .map(|b| String::from_utf8_lossy(&b[..b.len().min(60)]).into_owned());
        let reply = call(&s.app, Some(&s.token), "POST", "/v1/jobs", body).await;
        assert_eq!(reply.status, status, "{shown:?}: {}", reply.text);
        assert_eq!(error_code(&reply), code, "{shown:?}");
    }
    let limit = s
        .call(
            "POST",
            "/v1/jobs",
            Some(json!({"code": "1", "limits": {"memory_mb": 1_000_000}})),
        )
        .await;
    assert_eq!(limit.json["error"]["details"]["field"], "limits.memory_mb");

    let unknown = s
        .call("GET", "/v1/jobs/0190f5e4-0000-7000-8000-000000000000", None)
        .await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
    assert_eq!(error_code(&unknown), "not_found");
    let garbage = s.call("DELETE", "/v1/jobs/not-a-uuid", None).await;
    assert_eq!(garbage.status, StatusCode::NOT_FOUND);
    assert_eq!(error_code(&garbage), "not_found");
    let route = s.call("GET", "/v2/nothing", None).await;
    assert_eq!(route.status, StatusCode::NOT_FOUND);
    assert_eq!(error_code(&route), "not_found");
    let method = s.call("PUT", "/v1/jobs", None).await;
    assert_eq!(method.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(error_code(&method), "method_not_allowed");
    let query = s.call("GET", "/v1/jobs?status=bogus", None).await;
    assert_eq!(query.status, StatusCode::BAD_REQUEST);
    assert_eq!(error_code(&query), "invalid_request");
    let cursor = s.call("GET", "/v1/jobs?cursor=zzz", None).await;
    assert_eq!(cursor.status, StatusCode::BAD_REQUEST);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_jobs_back_to_back_share_no_state() {
    let s = TestServer::start(|_| {}).await;
    let first = s
        .call(
            "POST",
            "/v1/jobs",
            Some(json!({
                "code": "import math\nmath.leak = 42\nleaked = 1\nresult = math.leak",
                "wait": true
            })),
        )
        .await;
    assert_eq!(first.json["result"], 42, "{}", first.text);
    let second = s
        .call(
            "POST",
            "/v1/jobs",
            Some(json!({
                "code": "import math\ntry:\n    leaked\n    seen = True\nexcept NameError:\n    seen = False\nresult = [seen, hasattr(math, 'leak')]",
                "wait": true
            })),
        )
        .await;
    assert_eq!(second.json["status"], "succeeded", "{}", second.text);
    assert_eq!(second.json["result"], json!([false, false]));
    s.stop().await;
}

/// The value of counter `name` in `/metrics`.
async fn counter(s: &TestServer, name: &str) -> u64 {
    let metrics = s.call("GET", "/metrics", None).await;
    metrics
        .text
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("no {name}: {}", metrics.text))
}

/// Polls job listings until one job of `status` shows; returns its id.
async fn one_with_status(s: &TestServer, status: &str) -> String {
    for _ in 0..500 {
        let list = s
            .call("GET", &format!("/v1/jobs?status={status}"), None)
            .await;
        if let Some(id) = list.json["jobs"][0]["id"].as_str() {
            return id.to_owned();
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    panic!("no {status} job showed");
}

/// A `wait: true` job that finds the worker idle is handed to it (on
/// Postgres inserted already claimed by this node), can be cancelled while
/// it runs like any running job, and one that finds the worker busy waits
/// in the queue, `queued`, until the worker is free.
async fn wait_true_goes_straight_to_an_idle_worker_and_queues_behind_a_busy_one(backend: Backend) {
    const HANDED: &str = "strictpy_jobs_handed_off_total";
    let s = TestServer::start_on(backend, |c| c.workers = 1).await;
    let direct = s
        .call(
            "POST",
            "/v1/jobs",
            Some(json!({"code": "print('a')", "wait": true})),
        )
        .await;
    assert_eq!(direct.status, StatusCode::OK, "{}", direct.text);
    assert_eq!(direct.json["stdout"], "a\n");
    assert!(direct.json["started_at"].is_string(), "{}", direct.text);
    assert_eq!(counter(&s, HANDED).await, 1);

    // Cancelled while it runs, as a queued-then-started job would be. On
    // SQLite nothing of it is stored until it ends (it is written once,
    // then), yet it reads and lists as `running` meanwhile.
    let state = s.server.as_ref().expect("running").state();
    let spin = json!({"code": SPIN, "limits": {"timeout_ms": 30000}, "wait": true});
    let (spun, ()) = tokio::join!(s.call("POST", "/v1/jobs", Some(spin)), async {
        let id = one_with_status(&s, "running").await;
        let row = state
            .store
            .get(id.parse().expect("uuid"))
            .await
            .expect("get");
        assert_eq!(row.is_none(), backend == Backend::Sqlite, "{row:?}");
        let read = s.call("GET", &format!("/v1/jobs/{id}"), None).await;
        assert_eq!(read.json["status"], "running", "{}", read.text);
        let stopped = s.call("DELETE", &format!("/v1/jobs/{id}"), None).await;
        assert_eq!(stopped.status, StatusCode::OK, "{}", stopped.text);
        assert_eq!(stopped.json["status"], "cancelled", "{}", stopped.text);
    });
    assert_eq!(spun.status, StatusCode::OK, "{}", spun.text);
    assert_eq!(spun.json["status"], "cancelled", "{}", spun.text);
    assert_eq!(counter(&s, HANDED).await, 2);
    let spun_id = spun.json["id"].as_str().expect("id").parse().expect("uuid");
    let row = state.store.get(spun_id).await.expect("get");
    let row = row.expect("stored once it ended");
    assert_eq!(row.status, strictpy_types::JobStatus::Cancelled);
    assert!(
        row.outcome.is_some() && row.finished_at.is_some(),
        "{row:?}"
    );

    // Behind a busy worker a waiting job is queued like any other.
    let busy = s
        .call(
            "POST",
            "/v1/jobs",
            Some(json!({"code": SPIN, "limits": {"timeout_ms": 30000}})),
        )
        .await;
    assert_eq!(busy.status, StatusCode::ACCEPTED);
    let busy_id = busy.json["id"].as_str().expect("id").to_owned();
    s.until(&busy_id, |j| j["status"] == "running").await;
    let behind = json!({"code": "print('b')", "wait": true});
    let (waited, ()) = tokio::join!(s.call("POST", "/v1/jobs", Some(behind)), async {
        one_with_status(&s, "queued").await;
        let stopped = s.call("DELETE", &format!("/v1/jobs/{busy_id}"), None).await;
        assert_eq!(stopped.status, StatusCode::OK, "{}", stopped.text);
    });
    assert_eq!(waited.status, StatusCode::OK, "{}", waited.text);
    assert_eq!(waited.json["stdout"], "b\n", "{}", waited.text);
    assert_eq!(
        counter(&s, HANDED).await,
        2,
        "nothing handed to a busy worker"
    );
    s.stop().await;
}

async fn cancel_queued_and_running_backpressure_and_liveness_with_busy_workers(backend: Backend) {
    let s = TestServer::start_on(backend, |c| {
        c.workers = 1;
        c.queue_size = 1;
    })
    .await;
    let spin = json!({"code": SPIN, "limits": {"timeout_ms": 30000}});
    let running = s.call("POST", "/v1/jobs", Some(spin.clone())).await;
    assert_eq!(running.status, StatusCode::ACCEPTED);
    let running_id = running.json["id"].as_str().expect("id").to_owned();
    s.until(&running_id, |j| j["status"] == "running").await;

    // The only worker spins; the HTTP side still answers.
    let health = s.call("GET", "/healthz", None).await;
    assert_eq!(health.status, StatusCode::OK);
    assert_eq!(health.json["status"], "ok");

    let queued = s
        .call("POST", "/v1/jobs", Some(json!({"code": "print('never')"})))
        .await;
    assert_eq!(queued.status, StatusCode::ACCEPTED);
    let queued_id = queued.json["id"].as_str().expect("id").to_owned();

    // The queue (size 1) is full now.
    let full = s
        .call("POST", "/v1/jobs", Some(json!({"code": "print(1)"})))
        .await;
    assert_eq!(full.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(error_code(&full), "queue_full");
    assert!(full.headers.contains_key(header::RETRY_AFTER));
    let metrics = s.call("GET", "/metrics", None).await;
    assert!(
        metrics.text.contains("strictpy_queue_depth 1"),
        "{}",
        metrics.text
    );
    assert!(metrics.text.contains("strictpy_jobs_running 1"));

    let cancelled = s
        .call("DELETE", &format!("/v1/jobs/{queued_id}"), None)
        .await;
    assert_eq!(cancelled.status, StatusCode::OK, "{}", cancelled.text);
    assert_eq!(cancelled.json["status"], "cancelled");
    assert_eq!(cancelled.json["error"]["kind"], "cancelled");
    assert_eq!(cancelled.json["started_at"], Value::Null);

    let stopped = s
        .call("DELETE", &format!("/v1/jobs/{running_id}"), None)
        .await;
    assert_eq!(stopped.status, StatusCode::OK, "{}", stopped.text);
    assert_eq!(stopped.json["status"], "cancelled");
    assert_eq!(stopped.json["error"]["kind"], "cancelled");
    assert!(stopped.json["started_at"].is_string());

    // Cancelling again answers the same; the queued job never ran.
    let again = s
        .call("DELETE", &format!("/v1/jobs/{queued_id}"), None)
        .await;
    assert_eq!(again.status, StatusCode::OK);
    let after = s
        .call(
            "POST",
            "/v1/jobs",
            Some(json!({"code": "print(2)", "wait": true})),
        )
        .await;
    assert_eq!(after.json["status"], "succeeded");
    let never = s.until_final(&queued_id).await;
    assert_eq!(never["status"], "cancelled");
    assert_eq!(never["stdout"], "");
    let finished = s
        .call(
            "DELETE",
            &format!("/v1/jobs/{}", after.json["id"].as_str().expect("id")),
            None,
        )
        .await;
    assert_eq!(finished.status, StatusCode::CONFLICT);
    assert_eq!(error_code(&finished), "job_finished");

    let metrics = s.call("GET", "/metrics", None).await;
    assert!(
        metrics
            .text
            .contains(r#"strictpy_jobs_finished_total{status="cancelled",verdict="cancelled"} 2"#),
        "{}",
        metrics.text
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_past_the_grace_period_fails_running_jobs_and_keeps_queued_ones() {
    let mut s = TestServer::start(|c| {
        c.workers = 1;
        c.shutdown_grace_ms = 50;
    })
    .await;
    let spin = s
        .call(
            "POST",
            "/v1/jobs",
            Some(json!({"code": SPIN, "limits": {"timeout_ms": 30000}})),
        )
        .await;
    let spin_id = spin.json["id"].as_str().expect("id").to_owned();
    s.until(&spin_id, |j| j["status"] == "running").await;
    let queued = s
        .call("POST", "/v1/jobs", Some(json!({"code": "print(1)"})))
        .await;
    let queued_id = queued.json["id"].as_str().expect("id").to_owned();

    s.server.take().expect("server").shutdown().await;

    let spun = s.until_final(&spin_id).await;
    assert_eq!(spun["status"], "failed", "{spun}");
    assert_eq!(spun["error"]["kind"], "internal");
    assert!(
        spun["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("worker stopped")),
        "{spun}"
    );
    let kept = s.call("GET", &format!("/v1/jobs/{queued_id}"), None).await;
    assert_eq!(kept.json["status"], "queued");
    let refused = s
        .call("POST", "/v1/jobs", Some(json!({"code": "print(2)"})))
        .await;
    assert_eq!(refused.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(error_code(&refused), "shutting_down");
    assert!(refused.headers.contains_key(header::RETRY_AFTER));
    let ready = s.call("GET", "/readyz", None).await;
    assert_eq!(ready.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(ready.json["status"], "not_ready");
}

async fn batch_validates_each_item_and_idempotency_returns_the_original(backend: Backend) {
    let s = TestServer::start_on(backend, |_| {}).await;
    let batch = s
        .call(
            "POST",
            "/v1/jobs/batch",
            Some(json!({"jobs": [
                {"code": "result = 1"},
                {"code": "import os"},
                {"code": "result = 3", "nope": 1},
                {"code": "result = 4", "wait": true},
                {"code": "result = 5"}
            ]})),
        )
        .await;
    assert_eq!(batch.status, StatusCode::ACCEPTED, "{}", batch.text);
    let items = batch.json["jobs"].as_array().expect("items");
    assert_eq!(items.len(), 5);
    assert!(items[0]["id"].is_string());
    assert_eq!(items[1]["error"]["error"]["code"], "policy_violation");
    assert_eq!(items[2]["error"]["error"]["code"], "invalid_request");
    assert_eq!(items[3]["error"]["error"]["code"], "wait_in_batch");
    let first = s.until_final(items[0]["id"].as_str().expect("id")).await;
    let last = s.until_final(items[4]["id"].as_str().expect("id")).await;
    assert_eq!(
        (first["result"].clone(), last["result"].clone()),
        (json!(1), json!(5))
    );
    let too_many = s
        .call(
            "POST",
            "/v1/jobs/batch",
            Some(json!({"jobs": vec![json!({"code": "1"}); 21]})),
        )
        .await;
    assert_eq!(too_many.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(error_code(&too_many), "invalid_batch");

    let request = json!({"code": "result = 7", "idempotency_key": "order-1", "wait": true});
    let original = s.call("POST", "/v1/jobs", Some(request.clone())).await;
    assert_eq!(original.status, StatusCode::OK);
    let replay = s.call("POST", "/v1/jobs", Some(request)).await;
    assert_eq!(replay.json["id"], original.json["id"]);
    assert_eq!(
        replay
            .headers
            .get("idempotent-replayed")
            .map(|v| v.as_bytes()),
        Some(&b"true"[..])
    );
    let other = s
        .call(
            "POST",
            "/v1/jobs",
            Some(json!({"code": "result = 8", "idempotency_key": "order-1"})),
        )
        .await;
    assert_eq!(other.status, StatusCode::CONFLICT);
    assert_eq!(error_code(&other), "idempotency_key_reused");

    // Three jobs from the batch plus one keyed job: listing pages through
    // them newest first.
    let page = s.call("GET", "/v1/jobs?limit=2", None).await;
    let jobs = page.json["jobs"].as_array().expect("jobs");
    assert_eq!(jobs.len(), 2);
    assert_eq!(jobs[0]["id"], original.json["id"]);
    let cursor = page.json["next_cursor"].as_str().expect("cursor");
    let rest = s
        .call("GET", &format!("/v1/jobs?limit=2&cursor={cursor}"), None)
        .await;
    assert_eq!(rest.json["jobs"].as_array().map(Vec::len), Some(1));
    assert_eq!(rest.json["next_cursor"], Value::Null);
    let succeeded = s.call("GET", "/v1/jobs?status=succeeded", None).await;
    assert_eq!(succeeded.json["jobs"].as_array().map(Vec::len), Some(3));
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probes_metrics_and_openapi() {
    let s = TestServer::start(|_| {}).await;
    let ready = s.call("GET", "/readyz", None).await;
    assert_eq!(ready.status, StatusCode::OK);
    assert_eq!(ready.json["status"], "ready");
    let job = s
        .call(
            "POST",
            "/v1/jobs",
            Some(json!({"code": "1/0", "wait": true})),
        )
        .await;
    assert_eq!(job.json["error"]["kind"], "exception");
    // The worker records a finished job's metrics just after it stores the
    // final state, so a `wait` answer can overtake them; poll briefly.
    let mut metrics = s.call("GET", "/metrics", None).await;
    for _ in 0..100 {
        if metrics
            .text
            .contains("strictpy_job_latency_seconds_count 1")
        {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        metrics = s.call("GET", "/metrics", None).await;
    }
    assert_eq!(metrics.status, StatusCode::OK);
    for needle in [
        r#"strictpy_jobs_finished_total{status="failed",verdict="exception"} 1"#,
        "strictpy_jobs_submitted_total 1",
        "strictpy_queue_depth 0",
        "strictpy_job_latency_seconds_count 1",
        "strictpy_job_fuel_count 1",
        r#"strictpy_webhook_deliveries_total{result="refused"} 0"#,
    ] {
        assert!(metrics.text.contains(needle), "{needle}: {}", metrics.text);
    }

    let doc = s.call("GET", "/openapi.json", None).await;
    assert_eq!(doc.status, StatusCode::OK);
    let doc = doc.json;
    assert!(doc["openapi"].as_str().is_some_and(|v| v.starts_with("3.")));
    assert!(doc["info"]["title"].is_string() && doc["info"]["version"].is_string());
    let expected = [
        ("/v1/jobs", "post"),
        ("/v1/jobs", "get"),
        ("/v1/jobs/{id}", "get"),
        ("/v1/jobs/{id}", "delete"),
        ("/v1/jobs/{id}/input", "get"),
        ("/v1/jobs/{id}/events", "get"),
        ("/v1/jobs/batch", "post"),
        ("/v1/sessions", "post"),
        ("/v1/sessions/current", "get"),
        ("/v1/sessions/current", "delete"),
        ("/v1/check", "post"),
        ("/v1/functions", "post"),
        ("/v1/functions", "get"),
        ("/v1/functions/{name}", "get"),
        ("/v1/functions/{name}", "put"),
        ("/v1/functions/{name}", "delete"),
        ("/v1/functions/{name}/versions/{version}", "get"),
        ("/v1/functions/{name}/versions/{version}", "delete"),
        ("/v1/functions/{name}/invoke", "post"),
        ("/v1/tokens", "post"),
        ("/v1/tokens", "get"),
        ("/v1/tokens/{id}", "delete"),
        ("/v1/oauth/token", "post"),
        ("/v1/oauth/token/refresh", "post"),
        ("/v1/oauth/revoke", "post"),
        ("/v1/audit", "get"),
        ("/v1/cluster", "get"),
        ("/v1/tenants/{tenant}/export", "get"),
        ("/v1/tenants/{tenant}", "delete"),
        ("/v1/webhook-secrets", "post"),
        ("/v1/webhook-secrets/previous", "delete"),
        ("/healthz", "get"),
        ("/readyz", "get"),
        ("/metrics", "get"),
        ("/openapi.json", "get"),
    ];
    let paths = doc["paths"].as_object().expect("paths");
    let mut listed = 0;
    for (path, item) in paths {
        for (method, op) in item.as_object().expect("path item") {
            listed += 1;
            assert!(
                expected.contains(&(path.as_str(), method.as_str())),
                "undocumented extra {method} {path}"
            );
            assert!(op["responses"].as_object().is_some_and(|r| !r.is_empty()));
        }
    }
    assert_eq!(listed, expected.len(), "every route is documented");
    assert_eq!(
        doc["components"]["securitySchemes"]["bearer"]["scheme"],
        "bearer"
    );
    // Token-checked routes document 401, 403 and 429; probes do not need a
    // token but can still be refused by the IP allowlist.
    for (path, method) in [
        ("/v1/jobs", "post"),
        ("/v1/audit", "get"),
        ("/v1/oauth/token", "post"),
    ] {
        let responses = &doc["paths"][path][method]["responses"];
        for code in ["401", "403", "429"] {
            assert!(responses[code].is_object(), "{method} {path} lacks {code}");
        }
    }
    assert!(doc["paths"]["/healthz"]["get"]["responses"]["401"].is_null());
    assert!(doc["paths"]["/healthz"]["get"]["responses"]["403"].is_object());
    assert!(doc["paths"]["/v1/oauth/revoke"]["post"]["responses"]["429"].is_object());
    // Every `$ref` points at a schema the document defines.
    let schemas = doc["components"]["schemas"].as_object().expect("schemas");
    let mut refs = Vec::new();
    collect_refs(&doc, &mut refs);
    assert!(!refs.is_empty());
    for r in refs {
        let name = r
            .strip_prefix("#/components/schemas/")
            .unwrap_or_else(|| panic!("unexpected $ref {r}"));
        assert!(schemas.contains_key(name), "dangling $ref {r}");
    }
    s.stop().await;
}

fn collect_refs(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                if k == "$ref" {
                    out.extend(v.as_str().map(str::to_owned));
                } else {
                    collect_refs(v, out);
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|v| collect_refs(v, out)),
        _ => {}
    }
}

on_both_backends!(
    wait_true_answers_200_with_the_finished_job,
    without_wait_the_job_is_queued_with_202_and_then_finishes,
    cancel_queued_and_running_backpressure_and_liveness_with_busy_workers,
    wait_true_goes_straight_to_an_idle_worker_and_queues_behind_a_busy_one,
    batch_validates_each_item_and_idempotency_returns_the_original,
);
