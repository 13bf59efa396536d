//! End-to-end tests on a real listener on 127.0.0.1:0: the service over TCP,
//! signed webhooks with retries against a local receiver, and the SSRF guard.

use std::sync::{Arc, Mutex};

use axum::{
    Router,
    body::Bytes,
    extract::State,
    http::{HeaderMap, StatusCode},
    routing::post,
};
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;
use strictpy_server::Server;
use tokio::net::TcpListener;

use super::{SECRET, TestServer, error_code, shared_sandbox, test_config};

/// What the receiver saw: the signature header and the raw body of each
/// request, in order.
type Seen = Arc<Mutex<Vec<(String, Vec<u8>)>>>;

/// A webhook receiver on 127.0.0.1:0. `/flaky` answers 500 to the first
/// request and 200 after; `/reject` always answers 400.
async fn receiver() -> (String, Seen) {
    let seen: Seen = Arc::default();
    async fn flaky(State(seen): State<Seen>, headers: HeaderMap, body: Bytes) -> StatusCode {
        let mut seen = seen.lock().unwrap_or_else(|p| p.into_inner());
        let sig = headers
            .get("strictpy-signature")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        seen.push((sig, body.to_vec()));
        if seen.len() == 1 {
            StatusCode::INTERNAL_SERVER_ERROR
        } else {
            StatusCode::OK
        }
    }
    async fn reject(State(seen): State<Seen>, body: Bytes) -> StatusCode {
        seen.lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(("reject".into(), body.to_vec()));
        StatusCode::BAD_REQUEST
    }
    let app = Router::new()
        .route("/flaky", post(flaky))
        .route("/reject", post(reject))
        .with_state(seen.clone());
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (format!("http://{addr}"), seen)
}

/// Verifies `t=<t>,v1=<hex>` the way the docs tell receivers to: recompute
/// the HMAC over "<t>.<body>" and compare in constant time.
fn verify(header: &str, body: &[u8], secret: &[u8]) -> bool {
    let mut t = None;
    let mut v1 = None;
    for part in header.split(',') {
        match part.split_once('=') {
            Some(("t", value)) => t = Some(value),
            Some(("v1", value)) => v1 = Some(value),
            _ => {}
        }
    }
    let (Some(t), Some(v1)) = (t, v1) else {
        return false;
    };
    let Ok(expected) = hex::decode(v1) else {
        return false;
    };
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret) else {
        return false;
    };
    mac.update(t.as_bytes());
    mac.update(b".");
    mac.update(body);
    mac.verify_slice(&expected).is_ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_is_signed_retried_after_500_and_not_after_400() {
    let (base, seen) = receiver().await;
    let s = TestServer::start(|_| {}).await;
    let job = s
        .call(
            "POST",
            "/v1/jobs",
            Some(json!({"code": "print('hook')", "callback_url": format!("{base}/flaky")})),
        )
        .await;
    assert_eq!(job.status, StatusCode::ACCEPTED, "{}", job.text);
    assert_eq!(job.json["callback"]["status"], "pending");
    let id = job.json["id"].as_str().expect("id").to_owned();
    let done = s
        .until(&id, |j| j["callback"]["status"] == "delivered")
        .await;
    let attempts = done["callback"]["attempts"].as_array().expect("attempts");
    assert_eq!(attempts.len(), 2, "{done}");
    assert_eq!(attempts[0]["status_code"], 500);
    assert_eq!(attempts[1]["status_code"], 200);
    {
        let seen = seen.lock().unwrap_or_else(|p| p.into_inner());
        assert_eq!(seen.len(), 2);
        for (sig, body) in seen.iter() {
            assert!(verify(sig, body, SECRET.as_bytes()), "bad signature {sig}");
            assert!(!verify(sig, body, b"wrong-secret"));
            let mut tampered = body.clone();
            tampered.push(b' ');
            assert!(!verify(sig, &tampered, SECRET.as_bytes()));
            let posted: Value = serde_json::from_slice(body).expect("JSON body");
            assert_eq!(posted["id"], id.as_str());
            assert_eq!(posted["status"], "succeeded");
            assert_eq!(posted["stdout"], "hook\n");
        }
    }

    let rejected = s
        .call(
            "POST",
            "/v1/jobs",
            Some(json!({"code": "print(1)", "callback_url": format!("{base}/reject")})),
        )
        .await;
    let id = rejected.json["id"].as_str().expect("id").to_owned();
    let done = s.until(&id, |j| j["callback"]["status"] == "failed").await;
    let attempts = done["callback"]["attempts"].as_array().expect("attempts");
    assert_eq!(attempts.len(), 1, "a 4xx is not retried: {done}");
    assert_eq!(attempts[0]["status_code"], 400);
    let metrics = s.call("GET", "/metrics", None).await;
    for needle in [
        r#"strictpy_webhook_deliveries_total{result="delivered"} 1"#,
        r#"strictpy_webhook_deliveries_total{result="retryable_error"} 1"#,
        r#"strictpy_webhook_deliveries_total{result="client_error"} 1"#,
    ] {
        assert!(metrics.text.contains(needle), "{needle}: {}", metrics.text);
    }

    // A connection error is retried up to `max_attempts` (5), then given up.
    let closed = {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        probe.local_addr().expect("addr")
    };
    let unreachable = s
        .call(
            "POST",
            "/v1/jobs",
            Some(json!({"code": "print(1)", "callback_url": format!("http://{closed}/hook")})),
        )
        .await;
    let id = unreachable.json["id"].as_str().expect("id").to_owned();
    let done = s.until(&id, |j| j["callback"]["status"] == "failed").await;
    let attempts = done["callback"]["attempts"].as_array().expect("attempts");
    assert_eq!(attempts.len(), 5, "{done}");
    assert!(
        attempts
            .iter()
            .all(|a| a["status_code"].is_null() && a["error"].is_string())
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ssrf_guard_refuses_internal_callback_hosts() {
    let s = TestServer::start(|c| c.webhook.allow_loopback = false).await;
    for url in [
        "http://127.0.0.1:9/hook",
        "http://localhost:9/hook",
        "http://[::1]:9/hook",
        "http://169.254.169.254/latest/meta-data/",
        "http://10.0.0.1/hook",
        "http://192.168.0.10/hook",
        "http://[::ffff:127.0.0.1]:9/hook",
    ] {
        let reply = s
            .call(
                "POST",
                "/v1/jobs",
                Some(json!({"code": "print(1)", "callback_url": url})),
            )
            .await;
        assert_eq!(reply.status, StatusCode::UNPROCESSABLE_ENTITY, "{url}");
        assert_eq!(error_code(&reply), "callback_refused", "{url}");
        assert_eq!(reply.json["error"]["details"]["field"], "callback_url");
    }
    let list = s.call("GET", "/v1/jobs", None).await;
    assert_eq!(list.json["jobs"], json!([]), "refused jobs are not stored");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serves_over_tcp_and_shuts_down_gracefully() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(test_config(dir.path()), shared_sandbox())
        .await
        .expect("start");
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let serving = tokio::spawn(strictpy_server::serve(server, listener, async move {
        let _ = stopped.await;
    }));
    let client = super::admin_client(dir.path());
    let reply = client
        .post(format!("{base}/v1/jobs"))
        .json(&json!({"code": "print('over tcp')", "wait": true}))
        .send()
        .await
        .expect("request");
    assert_eq!(reply.status(), StatusCode::OK);
    let job: Value = reply.json().await.expect("json");
    assert_eq!(job["stdout"], "over tcp\n");
    let health = client
        .get(format!("{base}/healthz"))
        .send()
        .await
        .expect("healthz");
    assert_eq!(health.status(), StatusCode::OK);
    let _ = stop.send(());
    serving
        .await
        .expect("serve task")
        .expect("serve ends cleanly");
    assert!(
        client.get(format!("{base}/healthz")).send().await.is_err(),
        "the listener is closed after shutdown"
    );
}

/// Sends `head` and then all of `body` on a plain socket before reading
/// anything, as Python's `http.client` does, and returns what came back.
fn send_all_then_read(addr: std::net::SocketAddr, head: &str, body: &[u8]) -> String {
    use std::io::{Read as _, Write as _};
    let mut stream = std::net::TcpStream::connect(addr).expect("connect");
    stream
        .set_read_timeout(Some(std::time::Duration::from_secs(30)))
        .expect("timeout");
    stream.write_all(head.as_bytes()).expect("write head");
    stream
        .write_all(body)
        .expect("the whole body is written: the server reads what it refuses");
    let mut answer = Vec::new();
    stream
        .read_to_end(&mut answer)
        .expect("the answer is read, not reset");
    String::from_utf8_lossy(&answer).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_sends_the_whole_body_first_reads_the_413() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = test_config(dir.path());
    // Large enough that the refused body is more than loopback's socket
    // buffers hold, so an unread rest would reset the connection.
    config.max_body_bytes = 2 * 1024 * 1024;
    let cap = config.max_body_bytes;
    let server = Server::start(config, shared_sandbox())
        .await
        .expect("start");
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let serving = tokio::spawn(strictpy_server::serve(server, listener, async move {
        let _ = stopped.await;
    }));
    let token = super::admin_token(dir.path());
    // Past the cap, within what the server drains (four times the cap).
    let body = format!("{{\"code\": \"{}\"}}", "x".repeat(3 * cap));
    let sized = format!(
        "POST /v1/jobs HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {token}\r\n\
         content-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    );
    let chunked_body = format!("{:x}\r\n{body}\r\n0\r\n\r\n", body.len());
    let chunked = format!(
        "POST /v1/jobs HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {token}\r\n\
         content-type: application/json\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n"
    );
    // Without a token the 401 comes before the body is looked at; it too
    // must reach a client that is still sending.
    let anonymous = format!(
        "POST /v1/check HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n\
         content-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    );
    let answers = tokio::task::spawn_blocking(move || {
        [
            send_all_then_read(addr, &sized, body.as_bytes()),
            send_all_then_read(addr, &chunked, chunked_body.as_bytes()),
            send_all_then_read(addr, &anonymous, body.as_bytes()),
        ]
    })
    .await
    .expect("client thread");
    for (answer, status, code) in [
        (&answers[0], "413", "payload_too_large"),
        (&answers[1], "413", "payload_too_large"),
        (&answers[2], "401", "unauthorized"),
    ] {
        assert!(
            answer.starts_with(&format!("HTTP/1.1 {status} ")),
            "{answer}"
        );
        assert!(answer.contains(&format!("\"code\":\"{code}\"")), "{answer}");
    }
    let _ = stop.send(());
    serving
        .await
        .expect("serve task")
        .expect("serve ends cleanly");
}
