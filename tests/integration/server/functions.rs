//! Stored functions through the real router, the real store (both
//! backends) and the real guest: versions, scopes, tenants, invocation as an
//! ordinary job, results identical to running the source, the compiled form
//! rebuilt when it is stale or corrupt, audit, export and erasure.

use axum::http::StatusCode;
use serde_json::{Value, json};
use strictpy_store::CompiledForm;

use crate::security::create_token;
use crate::server::{Backend, Reply, TestServer, error_code};

/// Every function scope plus reading jobs, for tenant `tenant`.
async fn all_scopes(s: &TestServer, tenant: &str) -> String {
    create_token(
        s,
        tenant,
        &[
            "functions:write",
            "functions:invoke",
            "jobs:read",
            "jobs:write",
        ],
        json!({}),
    )
    .await
    .1
}

async fn register(s: &TestServer, token: &str, body: Value) -> Reply {
    s.call_as(token, "POST", "/v1/functions", Some(body)).await
}

async fn invoke(s: &TestServer, token: &str, name: &str, body: Value) -> Reply {
    s.call_as(
        token,
        "POST",
        &format!("/v1/functions/{name}/invoke"),
        Some(body),
    )
    .await
}

/// The audit events of `tenant` named `event`.
async fn audited(s: &TestServer, tenant: &str, event: &str) -> Vec<Value> {
    let log = s
        .call(
            "GET",
            &format!("/v1/audit?tenant={tenant}&event={event}"),
            None,
        )
        .await;
    assert_eq!(log.status, StatusCode::OK, "{}", log.text);
    log.json["events"].as_array().cloned().unwrap_or_default()
}

async fn functions_have_versions_and_invocations_are_ordinary_jobs(backend: Backend) {
    let s = TestServer::start_on(backend, |_| {}).await;
    let t = all_scopes(&s, "acme").await;
    let created = register(
        &s,
        &t,
        json!({
            "name": "price",
            "code": "result = {'total': qty * 2}",
            "description": "doubles",
            "limits": {"timeout_ms": 2000},
        }),
    )
    .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
    assert_eq!(created.json["version"], 1);
    assert_eq!(created.json["compiled"], true);
    assert_eq!(created.json["description"], "doubles");
    assert_eq!(created.json["limits"]["timeout_ms"], 2000);
    assert_eq!(
        created.headers["location"].to_str().expect("text"),
        "/v1/functions/price/versions/1"
    );

    // A taken name, a bad name, a policy violation, a limit over the max.
    let again = register(&s, &t, json!({"name": "price", "code": "x = 1"})).await;
    assert_eq!(again.status, StatusCode::CONFLICT);
    assert_eq!(error_code(&again), "function_exists");
    for bad in ["9lives", "has space", "", "a/b", &"x".repeat(65)] {
        let r = register(&s, &t, json!({"name": bad, "code": "x = 1"})).await;
        assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{bad:?}");
        assert_eq!(error_code(&r), "invalid_function_name");
    }
    let forbidden = register(&s, &t, json!({"name": "evil", "code": "import socket"})).await;
    assert_eq!(forbidden.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(error_code(&forbidden), "policy_violation");
    let job_refusal = s
        .call_as(
            &t,
            "POST",
            "/v1/jobs",
            Some(json!({"code": "import socket"})),
        )
        .await;
    assert_eq!(forbidden.json, job_refusal.json, "the same 422 as a job");
    let huge = register(
        &s,
        &t,
        json!({"name": "big", "code": "x = 1", "limits": {"timeout_ms": 10_000_000}}),
    )
    .await;
    assert_eq!(error_code(&huge), "limit_exceeded");
    let unknown = register(&s, &t, json!({"name": "u", "code": "x", "nope": 1})).await;
    assert_eq!(unknown.status, StatusCode::BAD_REQUEST);

    // A new version; the old one stays readable and invocable.
    let v2 = s
        .call_as(
            &t,
            "PUT",
            "/v1/functions/price",
            Some(json!({"code": "result = {'total': qty * 3}", "limits": {"timeout_ms": 2000}})),
        )
        .await;
    assert_eq!(v2.status, StatusCode::OK, "{}", v2.text);
    assert_eq!(v2.json["version"], 2);
    let missing = s
        .call_as(
            &t,
            "PUT",
            "/v1/functions/nothing",
            Some(json!({"code": "x = 1"})),
        )
        .await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    let got = s.call_as(&t, "GET", "/v1/functions/price", None).await;
    assert_eq!(got.json["version"], 2);
    assert_eq!(got.json["versions"], json!([1, 2]));
    assert_eq!(got.json["code"], "result = {'total': qty * 3}");
    let old = s
        .call_as(&t, "GET", "/v1/functions/price/versions/1", None)
        .await;
    assert_eq!(old.json["code"], "result = {'total': qty * 2}");
    for absent in ["3", "0", "x", "-1"] {
        let r = s
            .call_as(
                &t,
                "GET",
                &format!("/v1/functions/price/versions/{absent}"),
                None,
            )
            .await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{absent}");
    }
    register(&s, &t, json!({"name": "alpha", "code": "x = 1"})).await;
    let list = s.call_as(&t, "GET", "/v1/functions?limit=1", None).await;
    assert_eq!(list.json["functions"][0]["name"], "alpha");
    let cursor = list.json["next_cursor"]
        .as_str()
        .expect("cursor")
        .to_owned();
    let next = s
        .call_as(
            &t,
            "GET",
            &format!("/v1/functions?limit=1&cursor={cursor}"),
            None,
        )
        .await;
    assert_eq!(next.json["functions"][0]["name"], "price");
    assert_eq!(next.json["functions"][0]["version"], 2);

    // Invocation: an ordinary job that records the function and version.
    let run = invoke(
        &s,
        &t,
        "price",
        json!({"context": {"qty": 5}, "wait": true}),
    )
    .await;
    assert_eq!(run.status, StatusCode::OK, "{}", run.text);
    assert_eq!(run.json["result"], json!({"total": 15}));
    assert_eq!(run.json["function"], json!({"name": "price", "version": 2}));
    assert_eq!(run.json["limits"]["timeout_ms"], 2000);
    let id = run.json["id"].as_str().expect("a string").to_owned();
    let job = s.call_as(&t, "GET", &format!("/v1/jobs/{id}"), None).await;
    assert_eq!(job.json["function"]["version"], 2);
    let listed = s.call_as(&t, "GET", "/v1/jobs", None).await;
    assert!(listed.text.contains(&id));
    let first = invoke(
        &s,
        &t,
        "price",
        json!({"context": {"qty": 5}, "wait": true, "version": 1}),
    )
    .await;
    assert_eq!(first.json["result"], json!({"total": 10}));
    assert_eq!(first.json["function"]["version"], 1);
    let nine = invoke(&s, &t, "price", json!({"version": 9})).await;
    assert_eq!(nine.status, StatusCode::NOT_FOUND);

    // Limits only tighten.
    let looser = invoke(&s, &t, "price", json!({"limits": {"timeout_ms": 3000}})).await;
    assert_eq!(looser.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(error_code(&looser), "limit_exceeded");
    assert_eq!(looser.json["error"]["details"]["max"], 2000);
    let tighter = invoke(
        &s,
        &t,
        "price",
        json!({"limits": {"timeout_ms": 500}, "context": {"qty": 1}, "wait": true}),
    )
    .await;
    assert_eq!(tighter.json["limits"]["timeout_ms"], 500);
    assert_eq!(tighter.json["result"], json!({"total": 3}));

    // Idempotency, queueing without wait, cancel: every job feature applies.
    let body = json!({"context": {"qty": 2}, "idempotency_key": "k-1"});
    let a = invoke(&s, &t, "price", body.clone()).await;
    assert_eq!(a.status, StatusCode::ACCEPTED, "{}", a.text);
    let b = invoke(&s, &t, "price", body).await;
    assert_eq!(a.json["id"], b.json["id"]);
    assert_eq!(b.headers["idempotent-replayed"], "true");
    let queued = format!("/v1/jobs/{}", a.json["id"].as_str().expect("a string"));
    let mut done = Value::Null;
    for _ in 0..500 {
        done = s.call_as(&t, "GET", &queued, None).await.json;
        if done["status"] == "succeeded" {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(done["result"], json!({"total": 6}), "{done}");
    let reused = invoke(
        &s,
        &t,
        "price",
        json!({"context": {"qty": 3}, "idempotency_key": "k-1"}),
    )
    .await;
    assert_eq!(reused.status, StatusCode::CONFLICT);
    let bad_context = invoke(&s, &t, "price", json!({"context": {"not an id": 1}})).await;
    assert_eq!(error_code(&bad_context), "invalid_context");

    // Deleting the newest version uncovers the one before; deleting the
    // function ends it.
    let del = s
        .call_as(&t, "DELETE", "/v1/functions/price/versions/2", None)
        .await;
    assert_eq!(del.status, StatusCode::NO_CONTENT, "{}", del.text);
    let now = s.call_as(&t, "GET", "/v1/functions/price", None).await;
    assert_eq!(now.json["version"], 1);
    assert_eq!(now.json["versions"], json!([1]));
    let gone_version = invoke(&s, &t, "price", json!({"version": 2})).await;
    assert_eq!(gone_version.status, StatusCode::NOT_FOUND);
    let del = s.call_as(&t, "DELETE", "/v1/functions/price", None).await;
    assert_eq!(del.status, StatusCode::NO_CONTENT);
    let again = s.call_as(&t, "DELETE", "/v1/functions/price", None).await;
    assert_eq!(again.status, StatusCode::NOT_FOUND);
    assert_eq!(
        s.call_as(&t, "GET", "/v1/functions/price", None)
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        invoke(&s, &t, "price", json!({})).await.status,
        StatusCode::NOT_FOUND
    );
    // The jobs that ran it keep their record; the name can be reused, and
    // numbers go on.
    let kept = s.call_as(&t, "GET", &format!("/v1/jobs/{id}"), None).await;
    assert_eq!(kept.json["result"], json!({"total": 15}));
    let reborn = register(&s, &t, json!({"name": "price", "code": "result = 0"})).await;
    assert_eq!(reborn.json["version"], 3);

    // Everything was audited.
    let registered = audited(&s, "acme", "function_registered").await;
    assert!(registered.iter().any(|e| e["details"]["name"] == "price"));
    let updated = audited(&s, "acme", "function_updated").await;
    assert_eq!(updated[0]["details"]["version"], 2);
    let invoked = audited(&s, "acme", "function_invoked").await;
    assert!(
        invoked
            .iter()
            .any(|e| e["details"]["job_id"] == id.as_str())
    );
    let deleted = audited(&s, "acme", "function_deleted").await;
    assert_eq!(deleted.len(), 2);
    s.stop().await;
}

async fn function_scopes_and_tenants_are_enforced(backend: Backend) {
    let s = TestServer::start_on(backend, |_| {}).await;
    let (_, writer) = create_token(&s, "acme", &["functions:write"], json!({})).await;
    let (_, invoker) = create_token(&s, "acme", &["functions:invoke"], json!({})).await;
    let (_, jobs) = create_token(&s, "acme", &["jobs:write", "jobs:read"], json!({})).await;
    let other = all_scopes(&s, "umbrella").await;
    let created = register(&s, &writer, json!({"name": "f", "code": "result = 1"})).await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);

    let denied = |r: &Reply, scope: &str| {
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.text);
        assert_eq!(r.json["error"]["details"]["required"], scope);
    };
    denied(
        &invoke(&s, &writer, "f", json!({})).await,
        "functions:invoke",
    );
    denied(&invoke(&s, &jobs, "f", json!({})).await, "functions:invoke");
    denied(
        &register(&s, &invoker, json!({"name": "g", "code": "x = 1"})).await,
        "functions:write",
    );
    denied(
        &s.call_as(&invoker, "DELETE", "/v1/functions/f", None).await,
        "functions:write",
    );
    denied(
        &s.call_as(
            &invoker,
            "PUT",
            "/v1/functions/f",
            Some(json!({"code": "x"})),
        )
        .await,
        "functions:write",
    );
    denied(
        &s.call_as(&jobs, "GET", "/v1/functions", None).await,
        "functions:invoke",
    );
    // Either function scope reads.
    for token in [&writer, &invoker] {
        let r = s.call_as(token, "GET", "/v1/functions/f", None).await;
        assert_eq!(r.status, StatusCode::OK);
    }
    let ran = invoke(&s, &invoker, "f", json!({"wait": true})).await;
    assert_eq!(ran.json["result"], 1, "{}", ran.text);

    // Another tenant's function is a 404 like a missing one, everywhere;
    // its own function of the same name is another function.
    let missing = s.call_as(&other, "GET", "/v1/functions/nope", None).await;
    for (method, uri, body) in [
        ("GET", "/v1/functions/f", None),
        ("GET", "/v1/functions/f/versions/1", None),
        ("PUT", "/v1/functions/f", Some(json!({"code": "x = 1"}))),
        ("DELETE", "/v1/functions/f", None),
        ("DELETE", "/v1/functions/f/versions/1", None),
        ("POST", "/v1/functions/f/invoke", Some(json!({}))),
    ] {
        let r = s.call_as(&other, method, uri, body).await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{method} {uri}");
        assert_eq!(r.json["error"]["code"], missing.json["error"]["code"]);
    }
    // The admin token belongs to tenant `default`: it sees none of acme's.
    let admin = s
        .call("POST", "/v1/functions/f/invoke", Some(json!({})))
        .await;
    assert_eq!(admin.status, StatusCode::NOT_FOUND);
    let list = s.call_as(&other, "GET", "/v1/functions", None).await;
    assert_eq!(list.json["functions"], json!([]));
    let theirs = register(&s, &other, json!({"name": "f", "code": "result = 2"})).await;
    assert_eq!(theirs.json["version"], 1);
    let mine = invoke(&s, &invoker, "f", json!({"wait": true})).await;
    assert_eq!(mine.json["result"], 1);
    s.stop().await;
}

/// Programs whose every observable detail must be the same from a stored
/// function as from the source: tracebacks and line numbers, `__main__`,
/// the result, context, output, exits, constants of every kind, nested code.
const SAME_AS_SOURCE: &[&str] = &[
    "print('hi')\nresult = {'n': n, 'name': __name__}",
    "print(__name__, __doc__)\nresult = [__name__, n]",
    "def f(x):\n    return 1 / x\n\ndef g():\n    return f(0)\n\nprint('before')\ng()",
    "class E(Exception):\n    pass\n\ntry:\n    raise E('inner')\nexcept E as e:\n    raise ValueError('outer') from e",
    "print('bye')\nraise SystemExit(3)",
    "raise SystemExit(0)",
    "x = (1, 2.5, 3j, b'by', 'st', None, ..., True, frozenset({1, 2}))\nresult = [repr(v) for v in x] + [1 in {1, 2}, 10**30]",
    "def gen(n):\n    for i in range(n):\n        yield i * i\n\nsq = lambda v: list(v)\nresult = sq(gen(n)) + [f'{n:>5}|{n!r}']",
    "class P:\n    def __init__(self, x):\n        self.x = x\n\n    def __repr__(self):\n        return f'P({self.x})'\n\nresult = [repr(P(n)), P.__module__, P.__qualname__]",
    "def outer():\n    a = 1\n    def inner():\n        nonlocal a\n        a += 1\n        return a\n    return inner\n\nresult = [outer()() for _ in range(3)]\nassert result == [9], 'message ' + str(result)",
    "print(hash('x') == hash('x'), hash(n))",
    "s = 'é€😀'\nprint(s, len(s))\nwhile n > 0:\n    n -= 1\n    match n:\n        case 1:\n            print('one')\n        case _:\n            pass\nresult = s",
    "x = '\\d'\nprint('a warning at compile time')",
    "def deep(k):\n    return deep(k + 1)\n\ndeep(0)",
    "print(undefined_name)",
];

/// The parts of a job that the program decides (not its id, times or usage).
fn observable(job: &Value) -> Value {
    json!({
        "status": job["status"],
        "stdout": job["stdout"],
        "stderr": job["stderr"],
        "result": job["result"],
        "error": job["error"],
    })
}

async fn invocations_give_exactly_the_results_of_running_the_source(backend: Backend) {
    let s = TestServer::start_on(backend, |_| {}).await;
    let t = all_scopes(&s, "acme").await;
    for (i, code) in SAME_AS_SOURCE.iter().enumerate() {
        let name = format!("p{i}");
        let reg = register(&s, &t, json!({"name": name, "code": code, "allow": []})).await;
        assert_eq!(reg.status, StatusCode::CREATED, "{code}: {}", reg.text);
        // A program whose compile prints a warning runs from source (so the
        // warning is printed as from source); every other one is compiled.
        if !code.contains("'\\d'") {
            assert_eq!(reg.json["compiled"], true, "{code}");
        }
        let context = json!({"n": 4});
        let from_function = invoke(
            &s,
            &t,
            &name,
            json!({"context": context, "wait": true, "seed": 7}),
        )
        .await;
        let from_source = s
            .call_as(
                &t,
                "POST",
                "/v1/jobs",
                Some(json!({"code": code, "context": context, "wait": true, "seed": 7})),
            )
            .await;
        assert_eq!(
            from_function.status,
            StatusCode::OK,
            "{}",
            from_function.text
        );
        assert_eq!(
            observable(&from_function.json),
            observable(&from_source.json),
            "{code}"
        );
    }
    // The invocation really skipped the parse and compile: it burns less
    // fuel than the same source as a job.
    let body = (0..200)
        .map(|i| format!("def f{i}(a, b):\n    return [a * {i}, b, {{'k': a}}]\n"))
        .collect::<String>()
        + "result = f199(n, 2)";
    register(&s, &t, json!({"name": "big", "code": body})).await;
    let f = invoke(
        &s,
        &t,
        "big",
        json!({"context": {"n": 1}, "wait": true, "seed": 1}),
    )
    .await;
    let j = s
        .call_as(
            &t,
            "POST",
            "/v1/jobs",
            Some(json!({"code": body, "context": {"n": 1}, "wait": true, "seed": 1})),
        )
        .await;
    assert_eq!(observable(&f.json), observable(&j.json));
    let fuel = |r: &Reply| r.json["usage"]["fuel_consumed"].as_u64().expect("fuel");
    assert!(
        fuel(&f) < fuel(&j),
        "invocation {} fuel, source {} fuel",
        fuel(&f),
        fuel(&j)
    );
    s.stop().await;
}

/// The compiled form stored with `acme`'s function `seven`.
async fn stored_form(state: &strictpy_server::AppState) -> CompiledForm {
    state
        .store
        .function("acme".into(), "seven".into(), Some(1))
        .await
        .expect("read")
        .expect("function")
        .compiled
        .expect("a compiled form")
}

/// Invokes `seven` and checks it gave what its source gives.
async fn expect_seven(s: &TestServer, t: &str) {
    let r = invoke(s, t, "seven", json!({"context": {"n": 3}, "wait": true})).await;
    assert_eq!(r.json["result"], 21, "{}", r.text);
    assert_eq!(r.json["stdout"], "ok 3\n");
}

async fn a_stale_or_corrupt_compiled_form_is_rebuilt_not_trusted(backend: Backend) {
    let s = TestServer::start_on(backend, |_| {}).await;
    let t = all_scopes(&s, "acme").await;
    let code = "def f(x):\n    return x * 7\n\nresult = f(n)\nprint('ok', n)";
    register(&s, &t, json!({"name": "seven", "code": code})).await;
    let state = s.server.as_ref().expect("running").state();
    let key = state.sandbox.code_key().to_owned();
    let good = stored_form(&state).await;
    assert_eq!(good.key, key);
    assert_eq!(good.checksum, strictpy_sandbox::checksum(&good.bytes));

    // A form made by another guest build (simulated by another key):
    // recompiled for this guest at the next invocation.
    let garbage = b"not a code object".to_vec();
    let tampered = [
        CompiledForm {
            key: "guest-0000".into(),
            checksum: strictpy_sandbox::checksum(&garbage),
            bytes: garbage.clone(),
        },
        // This guest's key but bytes that do not match their checksum.
        CompiledForm {
            key: key.clone(),
            checksum: good.checksum.clone(),
            bytes: garbage.clone(),
        },
    ];
    for form in tampered {
        state
            .store
            .set_compiled("acme".into(), "seven".into(), 1, form)
            .await
            .expect("tamper");
        expect_seven(&s, &t).await;
        let rebuilt = stored_form(&state).await;
        assert_eq!(rebuilt, good, "the form was rebuilt");
    }
    // Even bytes that pass the checks but are not a code object never change
    // a result: the guest compiles the source instead.
    state
        .store
        .set_compiled(
            "acme".into(),
            "seven".into(),
            1,
            CompiledForm {
                key: key.clone(),
                checksum: strictpy_sandbox::checksum(&garbage),
                bytes: garbage,
            },
        )
        .await
        .expect("tamper");
    expect_seven(&s, &t).await;
    s.stop().await;
}

async fn functions_are_sealed_exported_and_erased_with_the_tenant(backend: Backend) {
    let s = TestServer::start_on(backend, |_| {}).await;
    let t = all_scopes(&s, "gone").await;
    let marker = "FUNCTION_SOURCE_MARKER_51c2";
    register(
        &s,
        &t,
        json!({"name": "a", "code": format!("print('{marker}')"), "description": "DESCRIPTION_MARKER_77"}),
    )
    .await;
    s.call_as(&t, "PUT", "/v1/functions/a", Some(json!({"code": "x = 2"})))
        .await;
    register(&s, &t, json!({"name": "b", "code": "x = 3"})).await;
    s.call_as(&t, "DELETE", "/v1/functions/b", None).await;
    let at_rest = s.bytes_at_rest();
    for needle in [marker, "DESCRIPTION_MARKER_77"] {
        assert!(
            !at_rest
                .windows(needle.len())
                .any(|w| w == needle.as_bytes()),
            "{needle} stored in the clear"
        );
    }
    let export = s.call("GET", "/v1/tenants/gone/export", None).await;
    assert_eq!(export.status, StatusCode::OK, "{}", export.text);
    let functions = export.json["functions"].as_array().expect("functions");
    let seen: Vec<_> = functions
        .iter()
        .map(|f| {
            (
                f["name"].clone(),
                f["version"].clone(),
                f["deleted_at"].is_string(),
            )
        })
        .collect();
    assert_eq!(
        seen,
        [
            (json!("a"), json!(1), false),
            (json!("a"), json!(2), false),
            (json!("b"), json!(1), true)
        ]
    );
    assert!(
        functions[0]["code"]
            .as_str()
            .expect("a string")
            .contains(marker)
    );
    let erased = s.call("DELETE", "/v1/tenants/gone", None).await;
    assert_eq!(erased.status, StatusCode::OK, "{}", erased.text);
    assert_eq!(erased.json["functions_deleted"], 3);
    let after = s.call("GET", "/v1/tenants/gone/export", None).await;
    assert_eq!(after.json["functions"], json!([]));
    s.stop().await;
}

/// The `text/event-stream` body of job `id`'s events, read to its end (the
/// stream ends after the job's `final` event).
async fn events_of(s: &TestServer, id: &str) -> String {
    use tower::ServiceExt as _;
    let request = axum::http::Request::get(format!("/v1/jobs/{id}/events"))
        .header("authorization", format!("Bearer {}", s.token))
        .header("accept", "text/event-stream")
        .body(axum::body::Body::empty())
        .expect("request");
    let response = s.app.clone().oneshot(request).await.expect("infallible");
    assert_eq!(response.status(), StatusCode::OK);
    let body = tokio::time::timeout(
        std::time::Duration::from_secs(30),
        axum::body::to_bytes(response.into_body(), usize::MAX),
    )
    .await
    .expect("the stream ends")
    .expect("body");
    String::from_utf8(body.to_vec()).expect("UTF-8")
}

/// An invocation goes through the same intake as a job: it has a queue
/// position while it waits, a full queue refuses it with `queue_full`, and
/// its output streams live on `/v1/jobs/{id}/events`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invocation_is_queued_refused_and_streamed_like_a_job() {
    let s = TestServer::start(|c| {
        c.workers = 1;
        c.queue_size = 1;
    })
    .await;
    let reg = s
        .call(
            "POST",
            "/v1/functions",
            Some(json!({"name": "talk", "code": "print('first')\nprint('second', n)\nresult = n"})),
        )
        .await;
    assert_eq!(reg.status, StatusCode::CREATED, "{}", reg.text);
    let busy = s
        .call(
            "POST",
            "/v1/jobs",
            Some(json!({"code": "import time\ntime.sleep(30)"})),
        )
        .await;
    let busy = busy.json["id"].as_str().expect("id").to_owned();
    s.until(&busy, |j| j["status"] == "running").await;

    let queued = s
        .call(
            "POST",
            "/v1/functions/talk/invoke",
            Some(json!({"context": {"n": 4}})),
        )
        .await;
    assert_eq!(queued.status, StatusCode::ACCEPTED, "{}", queued.text);
    assert_eq!(queued.json["queue_position"], 0);
    assert_eq!(queued.json["function"]["name"], "talk");
    let full = s
        .call("POST", "/v1/functions/talk/invoke", Some(json!({})))
        .await;
    assert_eq!(
        full.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{}",
        full.text
    );
    assert_eq!(error_code(&full), "queue_full");
    assert!(full.headers.contains_key("retry-after"));

    let id = queued.json["id"].as_str().expect("id").to_owned();
    let cancelled = s.call("DELETE", &format!("/v1/jobs/{busy}"), None).await;
    assert_eq!(cancelled.json["status"], "cancelled", "{}", cancelled.text);
    let events = events_of(&s, &id).await;
    assert!(events.contains("event: stdout"), "{events}");
    assert!(
        events.contains("first") && events.contains("second 4"),
        "{events}"
    );
    assert!(events.contains("event: final"), "{events}");
    let done = s.until_final(&id).await;
    assert_eq!(done["result"], 4);
    assert_eq!(done["stdout"], "first\nsecond 4\n");
    s.stop().await;
}

on_both_backends!(
    functions_have_versions_and_invocations_are_ordinary_jobs,
    function_scopes_and_tenants_are_enforced,
    invocations_give_exactly_the_results_of_running_the_source,
    a_stale_or_corrupt_compiled_form_is_rebuilt_not_trusted,
    functions_are_sealed_exported_and_erased_with_the_tenant,
);
