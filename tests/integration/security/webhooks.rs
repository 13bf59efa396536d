//! Webhook secrets rotate without downtime: during a rotation every
//! delivery carries a signature under each active secret.

use std::sync::{Arc, Mutex};

use axum::{Router, body::Bytes, extract::State, http::HeaderMap, http::StatusCode, routing::post};
use serde_json::json;
use strictpy_server::webhook::sign_all;
use tokio::net::TcpListener;

use crate::server::{TestServer, error_code};

/// Signature headers and raw bodies a receiver saw.
type Seen = Arc<Mutex<Vec<(String, Vec<u8>)>>>;

async fn receiver() -> (String, Seen) {
    let seen: Seen = Arc::default();
    async fn hook(State(seen): State<Seen>, headers: HeaderMap, body: Bytes) -> StatusCode {
        let sig = headers
            .get("strictpy-signature")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        seen.lock()
            .unwrap_or_else(|p| p.into_inner())
            .push((sig, body.to_vec()));
        StatusCode::OK
    }
    let app = Router::new()
        .route("/hook", post(hook))
        .with_state(seen.clone());
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (format!("http://{addr}/hook"), seen)
}

/// Runs a job with a callback and returns the delivery's header and body.
async fn deliver(s: &TestServer, url: &str, seen: &Seen) -> (String, Vec<u8>) {
    let before = seen.lock().unwrap_or_else(|p| p.into_inner()).len();
    let job = s
        .call(
            "POST",
            "/v1/jobs",
            Some(json!({"code": "print(1)", "callback_url": url, "wait": true})),
        )
        .await;
    assert_eq!(job.status, StatusCode::OK, "{}", job.text);
    for _ in 0..200 {
        if let Some(d) = seen.lock().unwrap_or_else(|p| p.into_inner()).get(before) {
            return d.clone();
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    panic!("no delivery");
}

fn timestamp(header: &str) -> u64 {
    header
        .split(',')
        .find_map(|p| p.strip_prefix("t="))
        .and_then(|t| t.parse().ok())
        .expect("t=")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotation_signs_with_both_secrets_until_the_old_one_is_retired() {
    let s = TestServer::start(|c| c.webhook.secret = None).await;
    let file = s._dir.path().join("webhook-secret");
    let old = std::fs::read_to_string(&file)
        .expect("generated secret")
        .trim()
        .to_owned();
    let (url, seen) = receiver().await;

    let (header, body) = deliver(&s, &url, &seen).await;
    assert_eq!(
        header,
        sign_all(&[old.as_bytes().to_vec()], timestamp(&header), &body)
    );

    let rotated = s.call("POST", "/v1/webhook-secrets", None).await;
    assert_eq!(rotated.status, StatusCode::CREATED, "{}", rotated.text);
    assert_eq!(rotated.json["active"], 2);
    let new = rotated.json["secret"].as_str().expect("secret").to_owned();
    assert_ne!(new, old);
    let (header, body) = deliver(&s, &url, &seen).await;
    assert_eq!(header.matches("v1=").count(), 2);
    let both = [new.as_bytes().to_vec(), old.as_bytes().to_vec()];
    assert_eq!(header, sign_all(&both, timestamp(&header), &body));
    // The file keeps both for a restart, newest first, private.
    assert_eq!(
        std::fs::read_to_string(&file).expect("file"),
        format!("{new}\n{old}\n")
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&file).expect("meta").permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    let retired = s.call("DELETE", "/v1/webhook-secrets/previous", None).await;
    assert_eq!(retired.json["retired"], 1);
    let (header, body) = deliver(&s, &url, &seen).await;
    assert_eq!(
        header,
        sign_all(&[new.as_bytes().to_vec()], timestamp(&header), &body)
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn configured_secrets_rotate_in_the_configuration() {
    let s = TestServer::start(|c| {
        c.webhook.secret = Some("new-secret".into());
        c.webhook.previous_secret = Some("old-secret".into());
    })
    .await;
    let (url, seen) = receiver().await;
    let (header, body) = deliver(&s, &url, &seen).await;
    let both = [b"new-secret".to_vec(), b"old-secret".to_vec()];
    assert_eq!(header, sign_all(&both, timestamp(&header), &body));
    let refused = s.call("POST", "/v1/webhook-secrets", None).await;
    assert_eq!(refused.status, StatusCode::CONFLICT);
    assert_eq!(error_code(&refused), "secret_configured");
    s.stop().await;
}
