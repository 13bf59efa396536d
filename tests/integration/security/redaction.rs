//! Log redaction: lines with secrets go through `RedactingWriter` into a
//! buffer (through a real `tracing` subscriber, as the binary sets it up),
//! and the real `strictpy serve` logging at debug level is given requests
//! full of secrets, none of which may reach its stderr.

use std::{
    io::Write,
    process::Stdio,
    sync::{Arc, Mutex},
};

use strictpy_server::redact::{RedactingWriter, redact_str};

use super::tls::Serve;

/// A token in the format of strictpy's API tokens.
const API_TOKEN: &str = "spk_0123456789abcdef_S3cr3tS3cr3tS3cr3tS3cr3tS3cr3tS3cr3tS3c";

/// A `Write` into a shared buffer.
#[derive(Clone, Default)]
struct Buffer(Arc<Mutex<Vec<u8>>>);

impl Write for Buffer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("lock").extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Buffer {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().expect("lock")).into_owned()
    }
}

/// What `log` writes through a redacting subscriber, with or without ANSI
/// colours.
fn logged(ansi: bool, log: impl FnOnce()) -> String {
    let buffer = Buffer::default();
    let sink = buffer.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(RedactingWriter::new(move || sink.clone()))
        .with_ansi(ansi)
        .with_max_level(tracing::Level::TRACE)
        .finish();
    tracing::subscriber::with_default(subscriber, log);
    buffer.text()
}

#[test]
fn secrets_in_fields_messages_and_spans_are_redacted() {
    for ansi in [false, true] {
        let text = logged(ansi, || {
            let span =
                tracing::info_span!("request", uri = "/v1/jobs?access_token=qs-secret&limit=5");
            let _entered = span.enter();
            tracing::info!(password = "hunter2", user = "alice", "login attempt");
            tracing::warn!(token = %API_TOKEN, job = 42, "token field");
            tracing::debug!(authorization = ?"Bearer abc.def.ghi", "header dump");
            tracing::error!(
                body = r#"{"code":"print(1)","client_secret":"cs-secret","refresh_token":"rt-secret"}"#,
                "request body"
            );
            tracing::info!("caller sent Authorization: Bearer plain-bearer-secret today");
            tracing::info!("a token {API_TOKEN} in a message, api_key: key-secret end");
        });
        for secret in [
            "qs-secret",
            "hunter2",
            API_TOKEN,
            "S3cr3t",
            "abc.def.ghi",
            "cs-secret",
            "rt-secret",
            "plain-bearer-secret",
            "key-secret",
        ] {
            assert!(
                !text.contains(secret),
                "ansi={ansi}: {secret} leaked:\n{text}"
            );
        }
        // The rest of each line survives.
        for kept in [
            "login attempt",
            "alice",
            "job",
            "42",
            "token field",
            "header dump",
            "print(1)",
            "Authorization: [REDACTED] today",
            "in a message",
            " end",
            "limit=5",
        ] {
            assert!(text.contains(kept), "ansi={ansi}: {kept:?} lost:\n{text}");
        }
        assert_eq!(text.lines().count(), 6, "one line per event:\n{text}");
    }
}

#[test]
fn redaction_keeps_line_shapes() {
    assert_eq!(
        redact_str(r#"{"token":"t-1","access_token": "t-2","n":1}"#),
        r#"{"token":"[REDACTED]","access_token": "[REDACTED]","n":1}"#
    );
    assert_eq!(
        redact_str(&format!("GET /healthz Authorization: Bearer {API_TOKEN}")),
        "GET /healthz Authorization: [REDACTED]"
    );
    assert_eq!(
        redact_str(&format!("forwarded bearer {API_TOKEN} ok")),
        "forwarded bearer [REDACTED] ok"
    );
    assert_eq!(
        redact_str("nothing to see, tokens_used=3"),
        "nothing to see, tokens_used=3"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_logs_no_secrets_at_debug_level() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log_path = dir.path().join("stderr.log");
    let log = std::fs::File::create(&log_path).expect("log file");
    let server = Serve::start(
        &dir.path().join("data"),
        &["--listen", "127.0.0.1:0"],
        &[("STRICTPY_LOG", "debug")],
        Some(Stdio::from(log)),
    );
    let client = crate::server::http_client();
    let bearer = format!("Bearer {API_TOKEN}");
    let body_secret = "body-token-value-7f3a";
    let query_secret = "query-token-value-91c2";
    let code_secret = "code-password-value-55d0";

    let reply = client
        .get(format!(
            "{}/healthz?access_token={query_secret}",
            server.url
        ))
        .header("authorization", &bearer)
        .send()
        .await
        .expect("GET");
    assert!(reply.status().is_success());
    for path in ["/v1/jobs", "/v1/check"] {
        let _ = client
            .post(format!("{}{path}", server.url))
            .header("authorization", &bearer)
            .json(&serde_json::json!({
                "code": format!("password = '{code_secret}'\nprint(password)"),
                "token": body_secret,
            }))
            .send()
            .await
            .expect("POST");
    }
    let _ = client
        .get(format!("{}/v1/jobs?token={query_secret}", server.url))
        .header("authorization", &bearer)
        .send()
        .await
        .expect("GET");

    // Authenticated traffic with every kind of real token: the admin token,
    // a new API token, and an access and refresh token from the exchange.
    let admin = crate::server::admin_token(&dir.path().join("data"));
    let post = |path: &str, token: Option<&str>, body: serde_json::Value| {
        let mut req = client.post(format!("{}{path}", server.url)).json(&body);
        if let Some(t) = token {
            req = req.header("authorization", format!("Bearer {t}"));
        }
        req.send()
    };
    let created: serde_json::Value = post(
        "/v1/tokens",
        Some(&admin),
        serde_json::json!({"tenant": "logs", "scopes": ["jobs:write", "jobs:read"]}),
    )
    .await
    .expect("create token")
    .json()
    .await
    .expect("json");
    let api = created["token"].as_str().expect("token").to_owned();
    let pair: serde_json::Value = post(
        "/v1/oauth/token",
        Some(&api),
        serde_json::json!({"grant_type": "client_credentials"}),
    )
    .await
    .expect("exchange")
    .json()
    .await
    .expect("json");
    let access = pair["access_token"].as_str().expect("access").to_owned();
    let refresh = pair["refresh_token"].as_str().expect("refresh").to_owned();
    let job = post(
        "/v1/jobs",
        Some(&access),
        serde_json::json!({"code": format!("print('{code_secret}')"), "wait": true}),
    )
    .await
    .expect("job");
    assert_eq!(job.status(), reqwest::StatusCode::OK);
    let renewed: serde_json::Value = post(
        "/v1/oauth/token/refresh",
        None,
        serde_json::json!({"refresh_token": refresh}),
    )
    .await
    .expect("refresh")
    .json()
    .await
    .expect("json");
    let access2 = renewed["access_token"].as_str().expect("access").to_owned();
    let refresh2 = renewed["refresh_token"]
        .as_str()
        .expect("refresh")
        .to_owned();
    // A replayed refresh token and a revoked one end up in the audit log.
    let _ = post(
        "/v1/oauth/revoke",
        None,
        serde_json::json!({"token": access2}),
    )
    .await;
    let _ = post(
        "/v1/oauth/token/refresh",
        None,
        serde_json::json!({"refresh_token": refresh}),
    )
    .await;
    drop(client);
    server.stop();

    let text = std::fs::read_to_string(&log_path).expect("read the log");
    // The requests were logged (debug spans carry the URI)...
    assert!(text.contains("/healthz"), "no request logs:\n{text}");
    assert!(text.contains("[REDACTED]"), "nothing was redacted:\n{text}");
    // ...without any of their secrets.
    for secret in [API_TOKEN, "S3cr3t", query_secret, body_secret, code_secret] {
        assert!(!text.contains(secret), "{secret} leaked:\n{text}");
    }
    for secret in [&api, &access, &refresh, &access2, &refresh2] {
        assert!(
            !text.contains(secret.as_str()),
            "a real token leaked:\n{text}"
        );
    }
    // The admin token is printed exactly once, on purpose, by the first
    // start, and logged nowhere else.
    assert_eq!(text.matches(admin.as_str()).count(), 1, "{text}");
    // The security events of that traffic were logged, by token id only.
    for event in [
        "token_created",
        "token_exchanged",
        "refresh_token_reuse",
        "token_revoked",
    ] {
        assert!(
            text.contains(&format!("event={event}")),
            "no {event} event:\n{text}"
        );
    }
}
