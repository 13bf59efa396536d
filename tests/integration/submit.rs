//! `strictpy submit` against a real `strictpy serve` process: the same output
//! and exit codes as `strictpy run`, and the retry policy through a
//! fault-injecting proxy (5xx after the job was stored, 429 with
//! `Retry-After`, a dropped `wait`) without ever creating a second job, and
//! HTTPS to `strictpy serve --tls-cert` with certificates verified.

use std::{
    collections::{BTreeSet, VecDeque},
    io::{BufRead as _, BufReader, Write},
    path::Path,
    process::{Command, Output, Stdio},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use axum::{
    Router,
    body::Bytes,
    extract::State,
    http::{HeaderMap, HeaderValue, Method, StatusCode, Uri},
    response::{IntoResponse, Response},
};
use serde_json::Value;

use crate::server::process::Process;

/// The token for a server started on `dir`: the admin token it wrote on
/// first start, or a placeholder for a server without authentication.
fn token(dir: &Path) -> String {
    std::fs::read_to_string(dir.join("admin-token"))
        .map(|t| t.trim().to_owned())
        .unwrap_or_else(|_| "placeholder-token".to_owned())
}

/// Runs `strictpy submit ARGS -` with `code` on stdin and `token` in
/// `STRICTPY_TOKEN`.
fn submit(args: &[&str], code: &str, token: Option<&str>) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_strictpy"));
    command
        .arg("submit")
        .args(args)
        .arg("-")
        .env_remove("STRICTPY_URL")
        .env_remove("STRICTPY_TOKEN")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(t) = token {
        command.env("STRICTPY_TOKEN", t);
    }
    let mut child = command.spawn().expect("spawn strictpy submit");
    let written = child
        .stdin
        .take()
        .expect("stdin")
        .write_all(code.as_bytes());
    // A bad request is refused before stdin is read, and the process may be
    // gone before the write: its exit status and stderr are what count.
    if let Err(e) = written {
        assert_eq!(e.kind(), std::io::ErrorKind::BrokenPipe, "write stdin: {e}");
    }
    child.wait_with_output().expect("wait")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn json_outcome(out: &Output) -> Value {
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(text.lines().count(), 1, "exactly one JSON object: {text}");
    serde_json::from_str(&text).expect("valid JSON")
}

/// An HTTP client for the tests. reqwest is built without a default crypto
/// provider (no aws-lc), so install ring, the one the workspace uses.
fn http() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::new()
}

/// Every job id the server lists for `token`.
async fn job_ids(base: &str, token: &str) -> BTreeSet<String> {
    let page: Value = http()
        .get(format!("{base}/v1/jobs?limit=200"))
        .bearer_auth(token)
        .send()
        .await
        .expect("GET /v1/jobs")
        .json()
        .await
        .expect("json");
    page["jobs"]
        .as_array()
        .expect("jobs")
        .iter()
        .map(|j| j["id"].as_str().expect("id").to_owned())
        .collect()
}

#[test]
fn submit_prints_and_exits_like_run() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Process::start(dir.path());
    let token = token(dir.path());
    let url = server.base.as_str();

    let ok = submit(&["--url", url], "print('hi')\nresult = 6 * 7", Some(&token));
    assert_eq!(ok.status.code(), Some(0), "{}", stderr(&ok));
    assert_eq!(String::from_utf8_lossy(&ok.stdout), "hi\n");
    let err = stderr(&ok);
    assert!(err.contains("strictpy: result = 42"), "{err}");
    assert!(err.contains("strictpy: succeeded · fuel"), "{err}");

    let json = submit(
        &[
            "--url",
            url,
            "--json",
            "--context",
            r#"{"x": 20}"#,
            "--seed",
            "3",
        ],
        "result = x + 1",
        Some(&token),
    );
    assert_eq!(json.status.code(), Some(0), "{}", stderr(&json));
    let remote = json_outcome(&json);
    assert_eq!(remote["status"], "succeeded");
    assert_eq!(remote["result"], 21);
    assert!(remote["usage"]["fuel_consumed"].as_u64().unwrap_or(0) > 0);
    // The same document `strictpy run --json` prints.
    let local = Command::new(env!("CARGO_BIN_EXE_strictpy"))
        .args(["run", "--json", "--context", r#"{"x": 20}"#, "-"])
        .env("STRICTPY_GUEST", crate::guest_path())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            c.stdin
                .take()
                .expect("stdin")
                .write_all(b"result = x + 1")?;
            c.wait_with_output()
        })
        .expect("strictpy run");
    let local = json_outcome(&local);
    let keys = |v: &Value| v.as_object().map(|o| o.keys().cloned().collect::<Vec<_>>());
    assert_eq!(keys(&remote), keys(&local));
    assert_eq!(remote["result"], local["result"]);

    let failed = submit(
        &["--url", url, "--json", "--timeout-ms", "200"],
        "while True: pass",
        Some(&token),
    );
    assert_eq!(failed.status.code(), Some(1), "{}", stderr(&failed));
    let v = json_outcome(&failed);
    assert_eq!(v["status"], "failed");
    assert_eq!(v["error"]["kind"], "timeout");
    assert_eq!(v["error"]["limit"], 200);

    let raised = submit(&["--url", url], "raise KeyError('k')", Some(&token));
    assert_eq!(raised.status.code(), Some(1));
    assert!(
        stderr(&raised).contains("strictpy: failed (exception:"),
        "{}",
        stderr(&raised)
    );
}

#[test]
fn rejections_exit_2_with_the_violations_like_check() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Process::start(dir.path());
    let token = token(dir.path());
    let url = server.base.as_str();
    let code = "import os\nimport subprocess\neval('1')";

    let human = submit(&["--url", url], code, Some(&token));
    assert_eq!(human.status.code(), Some(2), "{}", stderr(&human));
    let err = stderr(&human);
    assert!(err.contains("1:8: forbidden_import: "), "{err}");
    assert!(err.contains("2:8: forbidden_import: "), "{err}");
    assert!(err.contains("3:1: forbidden_builtin: "), "{err}");
    assert!(
        err.contains("strictpy: rejected (forbidden_import:"),
        "{err}"
    );

    let json = submit(&["--url", url, "--json"], code, Some(&token));
    assert_eq!(json.status.code(), Some(2));
    let v = json_outcome(&json);
    assert_eq!(v["status"], "rejected");
    assert_eq!(v["error"]["violations"].as_array().map(Vec::len), Some(3));

    // `--allow` lifts it, within the server's policy.
    let allowed = submit(
        &["--url", url, "--allow", "random"],
        "import random\nprint(type(random.random()).__name__)",
        Some(&token),
    );
    assert_eq!(allowed.status.code(), Some(0), "{}", stderr(&allowed));
    assert_eq!(String::from_utf8_lossy(&allowed.stdout), "float\n");
}

#[test]
fn bad_requests_exit_64_and_unreachable_servers_69() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Process::start(dir.path());
    let token = token(dir.path());
    let url = server.base.as_str();

    for args in [
        vec!["--url", url, "--timeout-ms", "999999999"],
        vec!["--url", url, "--allow", "os"],
        vec!["--url", url, "--context", "[1]"],
        vec!["--url", "http://strictpy.example:8080"],
        vec!["--url", "http://10.1.2.3:8080"],
        vec!["--url", "ftp://127.0.0.1/"],
        vec![],
    ] {
        let out = submit(&args, "print(1)", Some(&token));
        assert_eq!(out.status.code(), Some(64), "{args:?}: {}", stderr(&out));
    }
    let refused = submit(&["--url", "http://strictpy.example"], "", Some(&token));
    assert!(
        stderr(&refused).contains("refusing plain HTTP"),
        "{}",
        stderr(&refused)
    );
    let no_token = submit(&["--url", url], "print(1)", None);
    assert_eq!(no_token.status.code(), Some(64));
    assert!(stderr(&no_token).contains("STRICTPY_TOKEN"));

    // Nothing listens on a port just released: retried, then 69.
    let closed = {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        probe.local_addr().expect("addr").port()
    };
    let started = Instant::now();
    let down = submit(
        &[
            "--url",
            &format!("http://127.0.0.1:{closed}"),
            "--max-attempts",
            "3",
            "--backoff-ms",
            "20",
        ],
        "print(1)",
        Some(&token),
    );
    assert_eq!(down.status.code(), Some(69), "{}", stderr(&down));
    let err = stderr(&down);
    assert_eq!(err.matches("retrying").count(), 2, "{err}");
    assert!(err.contains("strictpy: submit failed"), "{err}");
    assert!(started.elapsed() < Duration::from_secs(10));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_token_is_refused_without_retries() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Process::start(dir.path());
    let probe = http()
        .get(format!("{}/v1/jobs", server.base))
        .send()
        .await
        .expect("GET");
    if probe.status() != StatusCode::UNAUTHORIZED {
        eprintln!("skipped: the server does not authenticate yet");
        return;
    }
    let proxy = FaultProxy::start(&server.base).await;
    let url = proxy.base.clone();
    let out = tokio::task::spawn_blocking(move || {
        submit(&["--url", &url], "print(1)", Some("sp_not_a_token"))
    })
    .await
    .expect("join");
    assert_eq!(out.status.code(), Some(64), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("401 unauthorized"),
        "{}",
        stderr(&out)
    );
    assert!(
        !stderr(&out).contains("sp_not_a_token"),
        "the token is never printed"
    );
    assert_eq!(proxy.seen().len(), 1, "a 401 is not retried");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_never_duplicate_the_job() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Process::start(dir.path());
    let token = token(dir.path());
    let proxy = FaultProxy::start(&server.base).await;
    proxy.inject([
        Fault::Respond(StatusCode::TOO_MANY_REQUESTS, Some("1")),
        Fault::ForwardThenRespond(StatusCode::BAD_GATEWAY),
        Fault::Respond(StatusCode::SERVICE_UNAVAILABLE, None),
    ]);
    let before = job_ids(&server.base, &token).await;
    let (url, t) = (proxy.base.clone(), token.clone());
    let started = Instant::now();
    let out = tokio::task::spawn_blocking(move || {
        submit(
            &["--url", &url, "--json", "--backoff-ms", "20"],
            "result = 'once'",
            Some(&t),
        )
    })
    .await
    .expect("join");
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(json_outcome(&out)["result"], "once");
    assert!(
        started.elapsed() >= Duration::from_millis(950),
        "Retry-After: 1 was honoured"
    );
    let posts = proxy.seen();
    assert_eq!(posts.len(), 4, "429, 502 after storing, 503, then success");
    let keys: BTreeSet<String> = posts
        .iter()
        .map(|s| {
            s.body["idempotency_key"]
                .as_str()
                .expect("a key")
                .to_owned()
        })
        .collect();
    assert_eq!(keys.len(), 1, "every attempt carries the same key");
    let created = &job_ids(&server.base, &token).await - &before;
    assert_eq!(created.len(), 1, "exactly one job: {created:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unfinished_answer_is_polled_to_the_end() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Process::start(dir.path());
    let token = token(dir.path());
    let proxy = FaultProxy::start(&server.base).await;
    // The server then answers 202 at once, as it does when a job outlasts
    // its `max_wait_ms`.
    proxy.inject([Fault::DropWait]);
    let url = proxy.base.clone();
    let out = tokio::task::spawn_blocking(move || {
        submit(
            &["--url", &url],
            "import time\ntime.sleep(0.3)\nprint('slept')",
            Some(&token),
        )
    })
    .await
    .expect("join");
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "slept\n");
    let all = proxy.all();
    assert_eq!(all[0].0, "POST /v1/jobs");
    assert_eq!(all[0].1, StatusCode::ACCEPTED);
    assert!(all.len() >= 2 && all[1..].iter().all(|(r, _)| r.starts_with("GET /v1/jobs/")));
}

#[test]
fn https_is_verified_and_a_private_ca_can_be_trusted() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pki = tempfile::tempdir().expect("tempdir");
    let certified =
        rcgen::generate_simple_self_signed(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
            .expect("generate a certificate");
    let cert = pki.path().join("cert.pem");
    let key = pki.path().join("key.pem");
    std::fs::write(&cert, certified.cert.pem()).expect("write cert");
    std::fs::write(&key, certified.signing_key.serialize_pem()).expect("write key");
    let server = TlsServe::start(dir.path(), &cert, &key);
    assert!(server.url.starts_with("https://"), "{}", server.url);
    let token = token(dir.path());

    // Not trusted: refused at the handshake, and not retried (no retry
    // makes an unknown issuer known).
    let untrusted = submit(
        &["--url", &server.url, "--backoff-ms", "10"],
        "print('tls')",
        Some(&token),
    );
    assert_eq!(untrusted.status.code(), Some(69), "{}", stderr(&untrusted));
    let err = stderr(&untrusted);
    assert!(err.contains("certificate"), "{err}");
    assert!(!err.contains("retrying"), "{err}");

    let cert = cert.to_str().expect("UTF-8 path");
    let trusted = submit(
        &["--url", &server.url, "--ca-cert", cert],
        "print('tls')",
        Some(&token),
    );
    assert_eq!(trusted.status.code(), Some(0), "{}", stderr(&trusted));
    assert_eq!(String::from_utf8_lossy(&trusted.stdout), "tls\n");
}

/// `strictpy serve` with built-in TLS on an ephemeral port.
struct TlsServe {
    /// The child process.
    child: std::process::Child,
    /// `https://127.0.0.1:<port>`.
    url: String,
}

impl TlsServe {
    fn start(dir: &Path, cert: &Path, key: &Path) -> Self {
        crate::server::warm_guest_cache();
        let mut child = Command::new(env!("CARGO_BIN_EXE_strictpy"))
            .args(["serve", "--listen", "127.0.0.1:0", "--workers", "1"])
            .arg("--data-dir")
            .arg(dir)
            .arg("--tls-cert")
            .arg(cert)
            .arg("--tls-key")
            .arg(key)
            .env("STRICTPY_GUEST", crate::guest_path())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn strictpy serve");
        let mut stdout = BufReader::new(child.stdout.take().expect("stdout"));
        let url = loop {
            let mut line = String::new();
            let read = stdout.read_line(&mut line).expect("read stdout");
            assert!(read > 0, "strictpy serve exited before listening");
            if let Some(url) = line.trim().strip_prefix("strictpy: listening on ") {
                break url.to_owned();
            }
        };
        // Keep draining stdout so the server never blocks on a full pipe.
        std::thread::spawn(move || std::io::copy(&mut stdout, &mut std::io::sink()));
        Self { child, url }
    }
}

impl Drop for TlsServe {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What the proxy does to the next `POST /v1/jobs`.
#[derive(Debug, Clone, Copy)]
enum Fault {
    /// Answer this status (with this `Retry-After`) without forwarding.
    Respond(StatusCode, Option<&'static str>),
    /// Forward, so the server stores the job, then answer this status.
    ForwardThenRespond(StatusCode),
    /// Forward with `"wait": false`, so the answer is an unfinished job.
    DropWait,
}

/// A submission the proxy received.
#[derive(Debug, Clone)]
struct Seen {
    /// The JSON body.
    body: Value,
}

/// The proxy's shared state.
#[derive(Clone)]
struct ProxyState {
    /// The server's base URL.
    upstream: String,
    /// Faults for the next submissions, in order.
    faults: Arc<Mutex<VecDeque<Fault>>>,
    /// Every submission received.
    seen: Arc<Mutex<Vec<Seen>>>,
    /// Every request and the status the client got, in order.
    all: Arc<Mutex<Vec<(String, StatusCode)>>>,
    /// The client that forwards.
    http: reqwest::Client,
}

/// A fault-injecting proxy on loopback in front of the real server.
struct FaultProxy {
    /// `http://127.0.0.1:<port>`.
    base: String,
    /// Shared with the handler.
    state: ProxyState,
    /// The serving task, stopped on drop.
    task: tokio::task::JoinHandle<()>,
}

impl FaultProxy {
    async fn start(upstream: &str) -> Self {
        let state = ProxyState {
            upstream: upstream.to_owned(),
            faults: Arc::default(),
            seen: Arc::default(),
            all: Arc::default(),
            http: http(),
        };
        let app = Router::new().fallback(proxy).with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let base = format!("http://{}", listener.local_addr().expect("addr"));
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self { base, state, task }
    }

    fn inject(&self, faults: impl IntoIterator<Item = Fault>) {
        self.state.faults.lock().expect("lock").extend(faults);
    }

    fn seen(&self) -> Vec<Seen> {
        self.state.seen.lock().expect("lock").clone()
    }

    fn all(&self) -> Vec<(String, StatusCode)> {
        self.state.all.lock().expect("lock").clone()
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn proxy(
    State(state): State<ProxyState>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = uri.path_and_query().map_or("/", |p| p.as_str()).to_owned();
    let submission = method == Method::POST && uri.path() == "/v1/jobs";
    let mut body = body.to_vec();
    let fault = if submission {
        let json: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        state.seen.lock().expect("lock").push(Seen { body: json });
        state.faults.lock().expect("lock").pop_front()
    } else {
        None
    };
    let answer = |status: StatusCode, retry_after: Option<&str>| {
        let mut response = (
            status,
            r#"{"error": {"code": "injected", "message": "injected fault"}}"#,
        )
            .into_response();
        if let Some(secs) = retry_after {
            response
                .headers_mut()
                .insert("retry-after", HeaderValue::from_str(secs).expect("header"));
        }
        response
    };
    if let Some(Fault::Respond(status, retry_after)) = fault {
        state
            .all
            .lock()
            .expect("lock")
            .push((format!("{method} {}", uri.path()), status));
        return answer(status, retry_after);
    }
    if let Some(Fault::DropWait) = fault {
        let mut json: Value = serde_json::from_slice(&body).expect("json body");
        json["wait"] = Value::Bool(false);
        body = serde_json::to_vec(&json).expect("json");
    }
    let mut request = state
        .http
        .request(method.clone(), format!("{}{path}", state.upstream))
        .body(body);
    for name in ["authorization", "content-type"] {
        if let Some(v) = headers.get(name) {
            request = request.header(name, v);
        }
    }
    let upstream = request.send().await.expect("forward");
    let status = upstream.status();
    let bytes = upstream.bytes().await.expect("body");
    let status = match fault {
        Some(Fault::ForwardThenRespond(injected)) => injected,
        _ => status,
    };
    state
        .all
        .lock()
        .expect("lock")
        .push((format!("{method} {}", uri.path()), status));
    if matches!(fault, Some(Fault::ForwardThenRespond(_))) {
        return answer(status, None);
    }
    (
        status,
        [("content-type", "application/json")],
        bytes.to_vec(),
    )
        .into_response()
}

/// `--follow` prints the first line while the program still sleeps, then
/// the rest and the verdict, and nothing twice.
#[test]
fn follow_prints_output_as_it_arrives() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Process::start(dir.path());
    let token = token(dir.path());
    let mut child = Command::new(env!("CARGO_BIN_EXE_strictpy"))
        .args(["submit", "--follow", "--url", server.base.as_str(), "-"])
        .env_remove("STRICTPY_URL")
        .env("STRICTPY_TOKEN", &token)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn strictpy submit --follow");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(b"import time\nprint('first')\ntime.sleep(2)\nprint('second')\nresult = 7")
        .expect("write stdin");
    let started = Instant::now();
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let first = lines.next().expect("a first line").expect("read");
    let first_at = started.elapsed();
    assert_eq!(first, "first");
    let second = lines.next().expect("a second line").expect("read");
    let second_at = started.elapsed();
    assert_eq!(second, "second");
    assert!(lines.next().is_none(), "nothing printed twice");
    // The program sleeps 2 s between its lines: the first was printed while
    // it slept, not with the verdict.
    assert!(
        second_at >= first_at + Duration::from_millis(1500),
        "first at {first_at:?}, second at {second_at:?}"
    );
    let out = child.wait_with_output().expect("wait");
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("strictpy: result = 7"), "{err}");
    assert!(err.contains("strictpy: succeeded"), "{err}");
}
