//! The HTTP job service: router tests with `oneshot`, end-to-end tests on a
//! real listener, tests of the real `strictpy serve` process (kill -9
//! and SIGTERM), and faults (full disk, read-only or stopped database,
//! clients that leave or trickle).

mod e2e;
mod events;
mod faults;
mod functions;
pub(crate) mod process;
mod router;

use std::{
    path::Path,
    sync::{Arc, OnceLock},
};

use axum::{
    Router,
    body::Body,
    http::{HeaderMap, Request, StatusCode, header},
};
use serde_json::Value;
use strictpy_sandbox::{Sandbox, SandboxConfig};
use strictpy_server::{Server, config::Config};
use tower::ServiceExt as _;

/// Makes sure the precompiled guest is in the cache, compiling it at most
/// once for the whole test binary (through the shared `crate::sandbox()`), so
/// the servers and processes started here load it instead of each compiling
/// the 28 MB guest at the same time.
pub fn warm_guest_cache() {
    let _ = crate::sandbox();
}

/// One sandbox shared by every server test (loading it is the slow part).
pub fn shared_sandbox() -> Arc<Sandbox> {
    static SANDBOX: OnceLock<Arc<Sandbox>> = OnceLock::new();
    SANDBOX
        .get_or_init(|| {
            warm_guest_cache();
            Arc::new(
                Sandbox::new(&SandboxConfig::new(crate::guest_path()))
                    .unwrap_or_else(|e| panic!("cannot load the guest (run `make guest`): {e}")),
            )
        })
        .clone()
}

/// The webhook secret the tests configure.
pub const SECRET: &str = "test-secret";

/// A small, fast configuration in `dir`: two workers, a short queue, quick
/// webhook retries, loopback callbacks allowed.
pub fn test_config(dir: &Path) -> Config {
    let mut config = Config {
        data_dir: dir.to_owned(),
        workers: 2,
        queue_size: 10,
        max_wait_ms: 20_000,
        max_body_bytes: 64 * 1024,
        shutdown_grace_ms: 5_000,
        ..Config::default()
    };
    config.webhook.secret = Some(SECRET.into());
    config.webhook.allow_loopback = true;
    config.webhook.backoff_base_ms = 20;
    config.webhook.backoff_max_ms = 100;
    config.webhook.timeout_ms = 5_000;
    config.limits.max.timeout_ms = Some(30_000);
    config
}

/// A server on a temporary data dir.
pub struct TestServer {
    /// The server; `None` once stopped.
    pub server: Option<Server>,
    /// Its router.
    pub app: Router,
    /// The first-start admin token (tenant `default`, every scope).
    pub token: String,
    /// The data dir, kept alive while the server uses it and removed on drop.
    pub _dir: tempfile::TempDir,
    /// The Postgres store's URL; `None` on SQLite in the data dir.
    pub store_url: Option<String>,
}

/// The store a test server runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// SQLite in the server's temporary data dir (the default).
    Sqlite,
    /// A fresh database on the test binary's private PostgreSQL server.
    Postgres,
}

impl Backend {
    /// The store URL of a fresh store of this backend (`None`: the data
    /// dir's SQLite).
    pub fn fresh_url(self) -> Option<String> {
        match self {
            Self::Sqlite => None,
            Self::Postgres => Some(
                strictpy_testpg::server()
                    .expect("the postgres tests run only with a server")
                    .fresh_url(),
            ),
        }
    }
}

impl TestServer {
    /// Starts a server on SQLite with `test_config` changed by `tweak`.
    pub async fn start(tweak: impl FnOnce(&mut Config)) -> Self {
        Self::start_on(Backend::Sqlite, tweak).await
    }

    /// Starts a server on a fresh store of `backend`, with `test_config`
    /// changed by `tweak`.
    pub async fn start_on(backend: Backend, tweak: impl FnOnce(&mut Config)) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut config = test_config(dir.path());
        tweak(&mut config);
        let store_url = backend.fresh_url();
        config.store.url.clone_from(&store_url);
        let server = Server::start(config, shared_sandbox())
            .await
            .expect("server starts");
        let app = server.router();
        let token = admin_token(dir.path());
        Self {
            server: Some(server),
            app,
            token,
            _dir: dir,
            store_url,
        }
    }

    /// Every byte the store keeps at rest: the SQLite file and its WAL, or
    /// the Postgres database's files and the server's WAL.
    pub fn bytes_at_rest(&self) -> Vec<u8> {
        match &self.store_url {
            None => ["strictpy.db", "strictpy.db-wal"]
                .iter()
                .flat_map(|name| std::fs::read(self._dir.path().join(name)).unwrap_or_default())
                .collect(),
            Some(url) => strictpy_testpg::server()
                .expect("a Postgres store has a server")
                .bytes_at_rest(strictpy_testpg::PgServer::database_of(url)),
        }
    }

    /// Shuts the server down gracefully.
    pub async fn stop(mut self) {
        if let Some(server) = self.server.take() {
            server.shutdown().await;
        }
    }

    /// Sends one request through the router with the admin token.
    pub async fn call(&self, method: &str, uri: &str, body: Option<Value>) -> Reply {
        self.call_as(&self.token, method, uri, body).await
    }

    /// Sends one request through the router with `token`.
    pub async fn call_as(
        &self,
        token: &str,
        method: &str,
        uri: &str,
        body: Option<Value>,
    ) -> Reply {
        call(
            &self.app,
            Some(token),
            method,
            uri,
            body.map(|b| b.to_string().into_bytes()),
        )
        .await
    }

    /// Polls a job until `done` holds for it (at most 500 polls, so a broken
    /// server fails the test instead of hanging it).
    pub async fn until(&self, id: &str, done: impl Fn(&Value) -> bool) -> Value {
        for _ in 0..500 {
            let reply = self.call("GET", &format!("/v1/jobs/{id}"), None).await;
            assert_eq!(reply.status, StatusCode::OK, "{}", reply.json);
            if done(&reply.json) {
                return reply.json;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        panic!("job {id} never reached the expected state");
    }

    /// Polls until the job is final.
    pub async fn until_final(&self, id: &str) -> Value {
        self.until(id, |j| {
            matches!(
                j["status"].as_str(),
                Some("succeeded" | "failed" | "cancelled")
            )
        })
        .await
    }
}

/// A response, with its body parsed as JSON when it is JSON.
#[derive(Debug)]
pub struct Reply {
    /// The status.
    pub status: StatusCode,
    /// The headers.
    pub headers: HeaderMap,
    /// The body as JSON, or `Null`.
    pub json: Value,
    /// The body as text.
    pub text: String,
}

/// The admin token a server wrote into `data_dir` on its first start.
pub fn admin_token(data_dir: &Path) -> String {
    std::fs::read_to_string(data_dir.join("admin-token"))
        .expect("the first start writes admin-token")
        .trim()
        .to_owned()
}

/// A plain reqwest client. reqwest is built without a default TLS crypto
/// provider (no aws-lc), so install ring's first, as the binary does.
pub fn http_client() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::new()
}

/// A reqwest client that sends the admin token of the server on `data_dir`.
pub fn admin_client(data_dir: &Path) -> reqwest::Client {
    let mut headers = reqwest::header::HeaderMap::new();
    let value = format!("Bearer {}", admin_token(data_dir));
    headers.insert(
        reqwest::header::AUTHORIZATION,
        value.parse().expect("header value"),
    );
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .default_headers(headers)
        .build()
        .expect("client")
}

/// Sends a raw body through `app`, with `token` as the bearer token.
pub async fn call(
    app: &Router,
    token: Option<&str>,
    method: &str,
    uri: &str,
    body: Option<Vec<u8>>,
) -> Reply {
    let mut request = Request::builder()
        .method(method)
        .uri(uri)
        .header(header::CONTENT_TYPE, "application/json");
    if let Some(token) = token {
        request = request.header(header::AUTHORIZATION, format!("Bearer {token}"));
    }
    let request = request
        .body(body.map_or_else(Body::empty, Body::from))
        .expect("request");
    let response = app.clone().oneshot(request).await.expect("infallible");
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .expect("body");
    Reply {
        status,
        headers,
        json: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        text: String::from_utf8_lossy(&bytes).into_owned(),
    }
}

/// Asserts the shared error shape and returns the error code.
pub fn error_code(reply: &Reply) -> String {
    let err = &reply.json["error"];
    assert!(
        err["code"].is_string() && err["message"].is_string() && err.get("details").is_some(),
        "not the error shape: {}",
        reply.text
    );
    err["code"].as_str().unwrap_or_default().to_owned()
}
