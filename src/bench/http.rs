//! The HTTP section of `strictpy bench`: the hello job as a caller of the
//! service sees it. It starts this same binary as `strictpy serve` (default
//! config and worker count, a fresh data dir, a free loopback port), gives
//! itself a token whose rate limit the bench cannot reach, and drives
//! `POST /v1/jobs` with `wait: true` from a single-threaded tokio runtime in
//! this process: first one connection for the latency percentiles, then four
//! for throughput.
//!
//! The server is a child process, so it is always ended: on success, on any
//! error (the guard's `Drop` kills and reaps it) and on Ctrl-C or SIGTERM
//! (the section is raced against the signal, and losing the race drops the
//! guard too). The data dir is a temporary directory removed after the child
//! is gone.

use std::{
    io::{BufRead as _, BufReader},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};
use serde::Serialize;

use super::{
    snippets::HELLO,
    stats::{Summary, summarise},
};

/// Connections of the throughput row (issue 12's target is at four).
pub const THROUGHPUT_CONNECTIONS: usize = 4;

/// What the HTTP section needs from the command line.
#[derive(Debug, Clone)]
pub struct HttpPlan {
    /// The guest the server loads (the same as the in-process rows').
    pub guest: PathBuf,
    /// `--store-url`: none for SQLite in the data dir, or `postgres://...`.
    pub store_url: Option<String>,
    /// Untimed requests first, so the server's pool slots, connections and
    /// caches are warm.
    pub warmup: usize,
    /// Timed requests on one connection.
    pub iterations: usize,
    /// Seconds of the throughput row.
    pub seconds: f64,
}

/// What the HTTP section measured.
#[derive(Debug, Clone, Serialize)]
pub struct Http {
    /// `sqlite` or `postgres`: the store behind the server.
    pub store: &'static str,
    /// The server's worker count (its default: one per core).
    pub workers: usize,
    /// `wait: true` hello jobs one after another on one connection: from
    /// sending the request to having read and parsed the whole answer.
    pub latency: Summary,
    /// The same request from [`THROUGHPUT_CONNECTIONS`] connections at once.
    pub throughput: HttpThroughput,
}

/// The throughput row of the HTTP section.
#[derive(Debug, Clone, Serialize)]
pub struct HttpThroughput {
    /// Connections with a request in flight at all times.
    pub connections: usize,
    /// Jobs answered `200` with status `succeeded`.
    pub jobs: u64,
    /// Requests answered otherwise, or failed (should be zero).
    pub failed: u64,
    /// Wall seconds from the first request until the last answer.
    pub seconds: f64,
    /// `jobs / seconds`.
    pub jobs_per_s: f64,
}

/// The section ended because the user asked it to (Ctrl-C or SIGTERM); the
/// server has been stopped by then.
#[derive(Debug)]
pub struct Interrupted;

impl std::fmt::Display for Interrupted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("interrupted; the benchmark server was stopped")
    }
}

impl std::error::Error for Interrupted {}

/// Runs the whole section. An error of type [`Interrupted`] means a signal
/// ended it.
pub fn run(plan: &HttpPlan) -> anyhow::Result<Http> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the HTTP client's runtime")?;
    runtime.block_on(async {
        // Whichever ends first wins; a signal drops `measure`, and with it
        // the server guard and the data dir. `biased` polls the signal first,
        // so its handlers are installed before the server is started.
        tokio::select! {
            biased;
            () = strictpy_server::shutdown_signal() => Err(Interrupted.into()),
            result = measure(plan) => result,
        }
    })
}

/// The `strictpy serve` child, killed and reaped when dropped.
struct Served {
    /// The running server.
    child: Child,
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn measure(plan: &HttpPlan) -> anyhow::Result<Http> {
    let exe = std::env::current_exe().context("finding this binary")?;
    let data = tempfile::Builder::new()
        .prefix("strictpy-bench-http-")
        .tempdir()
        .context("creating the server's data dir")?;
    let token = create_token(&exe, data.path(), plan.store_url.as_deref())?;
    let log = data.path().join("serve.log");
    // Declared after `data`, so it is dropped (the child killed) first.
    let (mut served, base) = start(&exe, data.path(), &log, plan).await?;
    let result = drive(plan, &base, &token).await;
    // Did the server survive the load? Its log says why not.
    if let Ok(Some(status)) = served.child.try_wait() {
        bail!(
            "the benchmark server exited ({status}); its log:\n{}",
            log_tail(&log)
        );
    }
    result.with_context(|| format!("the benchmark server's log:\n{}", log_tail(&log)))
}

/// `strictpy token create` on the server's store before it starts: a token
/// with limits far above anything the bench sends, as docs/benchmarks.md
/// does for wrk.
fn create_token(exe: &Path, data_dir: &Path, store_url: Option<&str>) -> anyhow::Result<String> {
    let mut cmd = Command::new(exe);
    cmd.args([
        "token",
        "create",
        "--tenant",
        "bench",
        "--scope",
        "jobs:write",
    ])
    .args(["--name", "strictpy bench"])
    .args(["--requests-per-minute", "100000000", "--burst", "1000000"])
    .args(["--concurrent-jobs", "1000"])
    .arg("--data-dir")
    .arg(data_dir)
    .stdin(Stdio::null());
    if let Some(url) = store_url {
        cmd.args(["--store-url", url]);
    }
    let out = cmd.output().context("running strictpy token create")?;
    if !out.status.success() {
        bail!(
            "strictpy token create failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let token = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    if token.is_empty() || token.contains(char::is_whitespace) {
        bail!("strictpy token create printed no token");
    }
    Ok(token)
}

/// Starts the server on a free loopback port and waits for its listening
/// line; returns the guard and the base URL.
async fn start(
    exe: &Path,
    data_dir: &Path,
    log: &Path,
    plan: &HttpPlan,
) -> anyhow::Result<(Served, String)> {
    let log_file = std::fs::File::create(log).context("creating the server's log")?;
    let mut cmd = Command::new(exe);
    cmd.args(["serve", "--listen", "127.0.0.1:0"])
        .arg("--data-dir")
        .arg(data_dir)
        .arg("--guest")
        .arg(&plan.guest)
        // Request logs would cost the server time the bench then measures.
        .env("STRICTPY_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(log_file);
    if let Some(url) = &plan.store_url {
        cmd.args(["--store-url", url]);
    }
    let mut child = cmd.spawn().context("starting strictpy serve")?;
    let stdout = child.stdout.take().context("the server's stdout")?;
    let served = Served { child };
    // A blocking read off the runtime's thread, so a signal can still end
    // the section while the server loads the guest; killing the child then
    // ends the read.
    let line = tokio::task::spawn_blocking(move || {
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).map(|_| line)
    })
    .await
    .context("waiting for the server")?
    .context("reading the server's listening line")?;
    let Some(base) = line.trim().strip_prefix("strictpy: listening on ") else {
        bail!(
            "the benchmark server did not start; its log:\n{}",
            log_tail(log)
        );
    };
    Ok((served, base.to_owned()))
}

/// The last lines of the server's log, for an error message.
fn log_tail(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(20)..].join("\n")
}

/// One `wait: true` hello request; `Ok(true)` for a `200` whose job
/// succeeded.
async fn hello(client: &reqwest::Client, url: &str, body: &str) -> anyhow::Result<bool> {
    let reply = client
        .post(url)
        .header("content-type", "application/json")
        .body(body.to_owned())
        .send()
        .await?;
    if reply.status() != reqwest::StatusCode::OK {
        return Ok(false);
    }
    let job: serde_json::Value = reply.json().await?;
    Ok(job["status"] == "succeeded" && job["stdout"] == "hi\n")
}

/// The latency row, then the throughput row.
async fn drive(plan: &HttpPlan, base: &str, token: &str) -> anyhow::Result<Http> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(
        reqwest::header::AUTHORIZATION,
        format!("Bearer {token}")
            .parse()
            .context("the token as a header")?,
    );
    let client = reqwest::Client::builder()
        .default_headers(headers)
        .pool_max_idle_per_host(THROUGHPUT_CONNECTIONS)
        .timeout(Duration::from_secs(60))
        .build()?;
    let url = format!("{base}/v1/jobs");
    let body = serde_json::json!({ "code": HELLO, "wait": true }).to_string();

    for _ in 0..plan.warmup {
        if !hello(&client, &url, &body).await? {
            bail!("a warm-up hello job through HTTP did not succeed");
        }
    }
    let mut samples = Vec::with_capacity(plan.iterations);
    for _ in 0..plan.iterations {
        let started = Instant::now();
        let ok = hello(&client, &url, &body).await?;
        samples.push(started.elapsed());
        if !ok {
            bail!("a timed hello job through HTTP did not succeed");
        }
    }

    let throughput = throughput(&client, &url, &body, plan.seconds).await?;
    Ok(Http {
        store: if plan.store_url.is_some() {
            "postgres"
        } else {
            "sqlite"
        },
        workers: std::thread::available_parallelism().map_or(1, usize::from),
        latency: summarise(&samples),
        throughput,
    })
}

/// [`THROUGHPUT_CONNECTIONS`] request loops for `seconds`, on one client
/// (whose pool then holds one connection per loop).
async fn throughput(
    client: &reqwest::Client,
    url: &str,
    body: &str,
    seconds: f64,
) -> anyhow::Result<HttpThroughput> {
    let started = Instant::now();
    let end = started + Duration::from_secs_f64(seconds);
    let body: Arc<str> = body.into();
    let mut loops = tokio::task::JoinSet::new();
    for _ in 0..THROUGHPUT_CONNECTIONS {
        let (client, url, body) = (client.clone(), url.to_owned(), body.clone());
        loops.spawn(async move {
            let (mut ok, mut failed) = (0u64, 0u64);
            while Instant::now() < end {
                match hello(&client, &url, &body).await {
                    Ok(true) => ok += 1,
                    _ => failed += 1,
                }
            }
            (ok, failed)
        });
    }
    let (mut jobs, mut failed) = (0, 0);
    while let Some(counts) = loops.join_next().await {
        let (ok, bad) = counts.context("a throughput loop")?;
        jobs += ok;
        failed += bad;
    }
    let elapsed = started.elapsed().as_secs_f64();
    Ok(HttpThroughput {
        connections: THROUGHPUT_CONNECTIONS,
        jobs,
        failed,
        seconds: elapsed,
        jobs_per_s: jobs as f64 / elapsed,
    })
}
