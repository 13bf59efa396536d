//! `strictpy submit`: sends one file to a running strictpy server and prints
//! the verdict exactly as `strictpy run` does, with the same exit codes.
//!
//! The client follows the same policy as the Python client in
//! `clients/python`: HTTPS only (plain HTTP just for loopback), the token from
//! `STRICTPY_TOKEN` (never a flag, so it stays out of `ps` and shell
//! history), exponential backoff with full jitter on 5xx, timeouts and
//! connection errors, `Retry-After` on 429, no retry on other 4xx, and a fresh
//! idempotency key on every submission so a retry never creates a second job.

use std::{
    net::IpAddr,
    path::PathBuf,
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};
use clap::Args;
use reqwest::{StatusCode, Url, header::HeaderMap};
use serde::Deserialize;
use serde_json::{Value, json};
use strictpy_types::{JobStatus, LimitOverrides, Outcome, RunError, Status, Usage, Violation};
use uuid::Uuid;

mod follow;

use crate::cli::{EXIT_FAILED, EXIT_OK, EXIT_REJECTED, EXIT_USAGE, read_source, report};

/// Exit code when the server could not be reached or kept failing after the
/// retries (sysexits' `EX_UNAVAILABLE`): distinct from 1, which says the
/// program itself failed.
pub(crate) const EXIT_UNAVAILABLE: u8 = 69;

/// The environment variable the token comes from.
const TOKEN_ENV: &str = "STRICTPY_TOKEN";

/// The environment variable the server URL comes from when `--url` is absent.
const URL_ENV: &str = "STRICTPY_URL";

/// How long the server may hold a `"wait": true` submission (its
/// `max_wait_ms` is 30 s by default), plus a margin.
pub(crate) const WAIT_REQUEST_TIMEOUT: Duration = Duration::from_secs(75);

/// Timeout of an ordinary request (polling the job).
pub(crate) const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Timeout of establishing a connection (and the TLS handshake).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// First and longest pause between two polls of an unfinished job.
const POLL_MIN: Duration = Duration::from_millis(100);

/// See [`POLL_MIN`].
const POLL_MAX: Duration = Duration::from_secs(2);

/// `strictpy submit`.
#[derive(Debug, Args)]
pub struct SubmitArgs {
    /// The Python file, or `-` for stdin.
    file: String,
    /// The server's base URL: https://, or http:// for a loopback address
    /// only. Defaults to `$STRICTPY_URL`. The token comes from
    /// `$STRICTPY_TOKEN`.
    #[arg(long, value_name = "URL")]
    url: Option<String>,
    /// Allow one more module for this job (repeatable), within the server's
    /// policy.
    #[arg(long = "allow", value_name = "MODULE")]
    allow: Vec<String>,
    /// Print exactly one JSON object (the outcome) on stdout.
    #[arg(long)]
    json: bool,
    /// Print the program's stdout and stderr as it writes them (from the
    /// job's event stream), then the verdict.
    #[arg(long, conflicts_with = "json")]
    follow: bool,
    /// Inputs and limits, as for `strictpy run`.
    #[command(flatten)]
    job: crate::cli::JobArgs,
    /// The idempotency key; by default a fresh UUID, so that retries of this
    /// submission return the same job. Pass your own to make re-running the
    /// command itself idempotent.
    #[arg(long, value_name = "KEY")]
    idempotency_key: Option<String>,
    /// A PEM file of CA certificates to trust besides the built-in roots
    /// (for a server with a private CA).
    #[arg(long, value_name = "FILE")]
    ca_cert: Option<PathBuf>,
    /// Attempts per request, the first included (1 turns retries off).
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=20))]
    max_attempts: u32,
    /// Cap of the first backoff in milliseconds; it doubles per attempt, up
    /// to 8 s, and each wait is a random fraction of it (full jitter).
    #[arg(long, default_value_t = 250, value_name = "MS")]
    backoff_ms: u64,
}

/// When and how long to wait before repeating a request.
#[derive(Debug, Clone, Copy)]
struct RetryPolicy {
    /// Attempts per request, the first included.
    max_attempts: u32,
    /// Cap of the first backoff; it doubles per attempt.
    base: Duration,
    /// Largest cap of one backoff.
    max: Duration,
    /// The longest `Retry-After` worth waiting for; a server asking for
    /// more gets its error reported at once.
    max_retry_after: Duration,
}

impl RetryPolicy {
    /// Full jitter: a uniformly random wait in `[0, min(max, base * 2^(n-1))]`
    /// after the `attempt`-th failure, so that many clients do not retry in
    /// lockstep.
    fn backoff(&self, attempt: u32) -> Duration {
        let cap = self
            .base
            .saturating_mul(1 << attempt.saturating_sub(1).min(20))
            .min(self.max);
        cap.mul_f64(random_fraction())
    }

    /// The wait before retrying an answer with `status`, or `None` when it
    /// must not be retried: any 4xx but 429, or no attempts left.
    fn delay_for_status(
        &self,
        status: StatusCode,
        retry_after: Option<Duration>,
        attempt: u32,
    ) -> Option<Duration> {
        if attempt >= self.max_attempts {
            return None;
        }
        let honour_retry_after = status == StatusCode::TOO_MANY_REQUESTS
            || (status.is_server_error() && retry_after.is_some());
        if honour_retry_after {
            return match retry_after {
                Some(wait) if wait > self.max_retry_after => None,
                Some(wait) => Some(wait),
                None => Some(self.backoff(attempt)),
            };
        }
        status.is_server_error().then(|| self.backoff(attempt))
    }

    /// The wait before retrying after a timeout or connection error.
    fn delay_for_error(&self, attempt: u32) -> Option<Duration> {
        (attempt < self.max_attempts).then(|| self.backoff(attempt))
    }
}

/// A uniformly random number in `[0, 1)`. A v4 UUID is 122 bits from the
/// operating system's generator; 53 of them make an `f64` fraction, without
/// another dependency for a jitter that needs no more than that.
fn random_fraction() -> f64 {
    let bits = (Uuid::new_v4().as_u128() >> 75) as u64; // the top 53 bits
    bits as f64 / (1u64 << 53) as f64
}

/// `Retry-After` in delay-seconds. An HTTP date is treated as absent (the
/// backoff applies); strictpy sends seconds.
fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get(reqwest::header::RETRY_AFTER)?.to_str().ok()?;
    value.trim().parse::<u64>().ok().map(Duration::from_secs)
}

/// Validates the base URL: https://, or http:// to a loopback host, where
/// nothing crosses a network. A user name or password in the URL is refused
/// (it would end up in logs).
fn check_url(raw: &str) -> anyhow::Result<Url> {
    let url = Url::parse(raw).with_context(|| format!("--url {raw:?} is not a URL"))?;
    if !url.username().is_empty() || url.password().is_some() {
        bail!("--url must not contain a user name or password; the token comes from ${TOKEN_ENV}");
    }
    if url.query().is_some() || url.fragment().is_some() {
        bail!("--url must not have a query or fragment");
    }
    match url.scheme() {
        "https" => {}
        "http" if is_loopback(&url) => {}
        "http" => bail!(
            "refusing plain HTTP to {}: use https:// (http:// is accepted for loopback addresses only)",
            url.host_str().unwrap_or_default()
        ),
        other => bail!("--url must be https:// (got {other}://)"),
    }
    if url.host_str().is_none_or(str::is_empty) {
        bail!("--url has no host");
    }
    Ok(url)
}

/// True for `localhost` and loopback addresses.
fn is_loopback(url: &Url) -> bool {
    let host = url.host_str().unwrap_or_default();
    // IPv6 hosts come in brackets.
    let host = host.trim_start_matches('[').trim_end_matches(']');
    match host.parse::<IpAddr>() {
        Ok(ip) => ip.is_loopback(),
        Err(_) => {
            let host = host.to_ascii_lowercase();
            host == "localhost" || host.ends_with(".localhost")
        }
    }
}

/// What went wrong talking to the server.
#[derive(Debug)]
pub(crate) enum Failure {
    /// The server answered an error (after any retries).
    Api {
        /// The HTTP status.
        status: StatusCode,
        /// The API's error code, e.g. `limit_exceeded`.
        code: String,
        /// The server's sentence for people.
        message: String,
        /// Structured details (the violations of a `policy_violation`).
        details: Value,
    },
    /// No answer (connection error, timeout) after the retries.
    Unreachable(String),
}

/// The job document of the API, as far as the verdict needs it.
#[derive(Debug, Deserialize)]
pub(crate) struct RemoteJob {
    /// The job id.
    id: String,
    /// Where the job is in its life.
    status: JobStatus,
    /// The program's stdout, once final.
    #[serde(default)]
    stdout: Option<String>,
    /// The program's stderr, once final.
    #[serde(default)]
    stderr: Option<String>,
    /// True when stdout was cut at the cap.
    #[serde(default)]
    stdout_truncated: Option<bool>,
    /// True when stderr was cut at the cap.
    #[serde(default)]
    stderr_truncated: Option<bool>,
    /// The program's `result`.
    #[serde(default)]
    result: Option<Value>,
    /// Why it failed or was cancelled.
    #[serde(default)]
    error: Option<RunError>,
    /// What the run used.
    #[serde(default)]
    usage: Option<Usage>,
}

impl RemoteJob {
    /// The outcome `strictpy run` would print; a cancelled job is `failed`
    /// with the verdict `cancelled`.
    fn outcome(self) -> Outcome {
        Outcome {
            status: if self.status == JobStatus::Succeeded {
                Status::Succeeded
            } else {
                Status::Failed
            },
            stdout: self.stdout.unwrap_or_default(),
            stderr: self.stderr.unwrap_or_default(),
            stdout_truncated: self.stdout_truncated.unwrap_or(false),
            stderr_truncated: self.stderr_truncated.unwrap_or(false),
            result: self.result,
            error: self.error,
            usage: self.usage.unwrap_or_default(),
        }
    }
}

/// The HTTP side: the client, the server, the token and the retry policy.
pub(crate) struct Remote {
    /// The HTTP client (no redirects, optional extra CA).
    http: reqwest::Client,
    /// The server's base URL.
    base: Url,
    /// The bearer token; never printed.
    token: String,
    /// The retry policy.
    retry: RetryPolicy,
}

impl Remote {
    /// `path` under the base URL (which may itself have a path prefix).
    fn url(&self, path: &str) -> Url {
        let mut url = self.base.clone();
        let prefix = url.path().trim_end_matches('/').to_owned();
        url.set_path(&format!("{prefix}{path}"));
        url
    }

    /// Sends one request with the retry policy and returns a 2xx answer's
    /// status and JSON body.
    pub(crate) async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
        timeout: Duration,
    ) -> anyhow::Result<Result<(StatusCode, Value), Failure>> {
        let url = self.url(path);
        let mut attempt = 0;
        loop {
            attempt += 1;
            let mut request = self
                .http
                .request(method.clone(), url.clone())
                .bearer_auth(&self.token)
                .timeout(timeout);
            if let Some(body) = body {
                request = request.json(body);
            }
            let (wait, failure) = match request.send().await {
                Err(e) => {
                    // A certificate the client does not trust stays
                    // untrusted however often it is asked.
                    let wait = if is_certificate_error(&e) {
                        None
                    } else {
                        self.retry.delay_for_error(attempt)
                    };
                    (wait, Failure::Unreachable(error_chain(&e)))
                }
                Ok(answer) => {
                    let status = answer.status();
                    let after = retry_after(answer.headers());
                    let bytes = answer.bytes().await;
                    match bytes {
                        Err(e) => (
                            self.retry.delay_for_error(attempt),
                            Failure::Unreachable(error_chain(&e)),
                        ),
                        Ok(bytes) if status.is_success() => {
                            let value = serde_json::from_slice(&bytes).with_context(|| {
                                format!("the server answered {status} with a body that is not JSON")
                            })?;
                            return Ok(Ok((status, value)));
                        }
                        Ok(bytes) => (
                            self.retry.delay_for_status(status, after, attempt),
                            api_failure(status, &bytes),
                        ),
                    }
                }
            };
            let Some(wait) = wait else {
                return Ok(Err(failure));
            };
            // Shown by default: someone waiting at a terminal should know
            // why nothing happens yet.
            tracing::warn!(
                %method, path, attempt, wait_ms = wait.as_millis() as u64,
                "retrying: {}", describe(&failure)
            );
            tokio::time::sleep(wait).await;
        }
    }
}

/// The error document of an error answer, or a stand-in for a body that is
/// not one (a proxy's HTML page).
fn api_failure(status: StatusCode, bytes: &[u8]) -> Failure {
    let doc: Value = serde_json::from_slice(bytes).unwrap_or(Value::Null);
    let error = &doc["error"];
    match error["code"].as_str() {
        Some(code) => Failure::Api {
            status,
            code: code.to_owned(),
            message: error["message"].as_str().unwrap_or_default().to_owned(),
            details: error["details"].clone(),
        },
        None => Failure::Api {
            status,
            code: format!("http_{}", status.as_u16()),
            message: String::from_utf8_lossy(&bytes[..bytes.len().min(200)])
                .trim()
                .to_owned(),
            details: Value::Null,
        },
    }
}

pub(crate) fn describe(failure: &Failure) -> String {
    match failure {
        Failure::Api {
            status,
            code,
            message,
            ..
        } => format!("{} {code}: {message}", status.as_u16()),
        Failure::Unreachable(why) => why.clone(),
    }
}

/// The error and its sources on one line (reqwest's own message is terse).
fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut out = err.to_string();
    let mut source = err.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

/// True when `err` comes from a certificate the client does not trust.
fn is_certificate_error(err: &(dyn std::error::Error + 'static)) -> bool {
    let mut next: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = next {
        if let Some(tls) = e.downcast_ref::<rustls::Error>() {
            return matches!(tls, rustls::Error::InvalidCertificate(_));
        }
        // An `io::Error` that wraps another error reports that error's
        // source, not the error itself (hyper wraps rustls's error in two of
        // them): look inside instead.
        next = match e.downcast_ref::<std::io::Error>() {
            Some(io) => io
                .get_ref()
                .map(|inner| inner as &(dyn std::error::Error + 'static)),
            None => e.source(),
        };
    }
    false
}

/// Builds the job request from the flags.
fn job_body(args: &SubmitArgs, code: String) -> anyhow::Result<Value> {
    let mut body = run_options(&args.job, args.idempotency_key.as_deref())?;
    body["code"] = Value::String(code);
    if !args.allow.is_empty() {
        body["allow"] = json!(args.allow);
    }
    Ok(body)
}

/// What every remote run request carries, a job's or a function
/// invocation's: `wait`, the idempotency key (`key`, or a fresh one so a
/// retried request is not run twice), and the context, stdin, limits and
/// seed flags.
pub(crate) fn run_options(job: &crate::cli::JobArgs, key: Option<&str>) -> anyhow::Result<Value> {
    let key = key.map_or_else(|| Uuid::new_v4().to_string(), str::to_owned);
    let mut body = json!({ "wait": true, "idempotency_key": key });
    if let Some(context) = job.context_value()? {
        body["context"] = context;
    }
    if job.stdin.is_some() {
        let text = String::from_utf8(job.stdin_bytes()?)
            .map_err(|_| anyhow::anyhow!("--stdin is not UTF-8 text"))?;
        body["stdin"] = Value::String(text);
    }
    let limits = job.overrides();
    if limits != LimitOverrides::default() {
        // Only the limits given: the server fills in its own defaults.
        let limits: serde_json::Map<String, Value> = serde_json::to_value(limits)?
            .as_object()
            .into_iter()
            .flatten()
            .filter(|(_, v)| !v.is_null())
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        body["limits"] = Value::Object(limits);
    }
    if let Some(seed) = job.seed {
        body["seed"] = json!(seed);
    }
    Ok(body)
}

fn http_client(ca_cert: Option<&std::path::Path>) -> anyhow::Result<reqwest::Client> {
    // reqwest is built without a default crypto provider (no aws-lc); ring
    // is the one the workspace uses. Installing twice is harmless.
    let _ = rustls::crypto::ring::default_provider().install_default();
    // Redirects are not followed: one to another host or to http:// would
    // carry the token there.
    let mut builder = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(CONNECT_TIMEOUT)
        .user_agent(concat!("strictpy/", env!("CARGO_PKG_VERSION")));
    if let Some(path) = ca_cert {
        let pem = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        let certs = reqwest::Certificate::from_pem_bundle(&pem)
            .with_context(|| format!("{} is not a PEM certificate bundle", path.display()))?;
        if certs.is_empty() {
            bail!("{} holds no certificate", path.display());
        }
        for cert in certs {
            builder = builder.add_root_certificate(cert);
        }
    }
    builder.build().context("building the HTTP client")
}

/// Runs `strictpy submit`; returns the exit code.
pub fn submit(args: SubmitArgs) -> anyhow::Result<u8> {
    let remote = connect(
        args.url.clone(),
        args.ca_cert.as_deref(),
        args.max_attempts,
        args.backoff_ms,
    )?;
    let source = read_source(&args.file)?;
    let code = String::from_utf8(source)
        .map_err(|_| anyhow::anyhow!("{} is not UTF-8 text", args.file))?;
    let body = job_body(&args, code)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let result = runtime.block_on(run_remote(&remote, "/v1/jobs", &body, args.follow))?;
    conclude(result, args.json, "submit")
}

/// The server to talk to: the URL (or `$STRICTPY_URL`), the token from
/// `$STRICTPY_TOKEN`, and the retry policy.
pub(crate) fn connect(
    url: Option<String>,
    ca_cert: Option<&std::path::Path>,
    max_attempts: u32,
    backoff_ms: u64,
) -> anyhow::Result<Remote> {
    let raw_url = match url.or_else(|| std::env::var(URL_ENV).ok()) {
        Some(u) if !u.trim().is_empty() => u,
        _ => bail!("no server: pass --url URL or set ${URL_ENV}"),
    };
    let base = check_url(raw_url.trim())?;
    let token = std::env::var(TOKEN_ENV).unwrap_or_default();
    let token = token.trim().to_owned();
    if token.is_empty() {
        bail!(
            "no token: set ${TOKEN_ENV} (it is never taken as a flag, so it stays out of `ps` and shell history)"
        );
    }
    Ok(Remote {
        http: http_client(ca_cert)?,
        base,
        token,
        retry: RetryPolicy {
            max_attempts,
            base: Duration::from_millis(backoff_ms),
            max: Duration::from_secs(8),
            max_retry_after: Duration::from_secs(60),
        },
    })
}

/// Prints a finished job as `strictpy run` does (or the server's refusal)
/// and returns the exit code. What a followed stream printed already
/// (`Printed`) is not printed again.
pub(crate) fn conclude(
    result: Result<(RemoteJob, follow::Printed), Failure>,
    json: bool,
    what: &str,
) -> anyhow::Result<u8> {
    match result {
        Ok((job, printed)) => {
            let mut outcome = job.outcome();
            outcome.stdout = tail(&outcome.stdout, printed.stdout);
            outcome.stderr = tail(&outcome.stderr, printed.stderr);
            report(&outcome, json, None)?;
            Ok(match outcome.status {
                Status::Succeeded => EXIT_OK,
                Status::Failed => EXIT_FAILED,
                Status::Rejected => EXIT_REJECTED,
            })
        }
        Err(failure) => refused(failure, json, what),
    }
}

/// Reports an error answer to `what` ("submit"): a policy violation as `run` reports a rejected
/// program (exit 2), other client errors as bad usage (64), the rest as an
/// unavailable server (69).
pub(crate) fn refused(failure: Failure, json: bool, what: &str) -> anyhow::Result<u8> {
    match failure {
        Failure::Api {
            status,
            code,
            details,
            ..
        } if status == StatusCode::UNPROCESSABLE_ENTITY && code == "policy_violation" => {
            let violations: Vec<Violation> = serde_json::from_value(details["violations"].clone())
                .context("the server's policy_violation has no readable violations")?;
            report(&Outcome::rejected(violations), json, None)?;
            Ok(EXIT_REJECTED)
        }
        failure => {
            eprintln!("strictpy: {what} failed: {}", describe(&failure));
            Ok(match failure {
                // The request itself was wrong (limits, allow, context) or
                // not allowed (token, scope): like bad usage of `run`.
                Failure::Api { status, .. } if status.is_client_error() => EXIT_USAGE,
                _ => EXIT_UNAVAILABLE,
            })
        }
    }
}

/// `text` from byte `from` on (from the next character boundary).
fn tail(text: &str, from: usize) -> String {
    let mut at = from.min(text.len());
    while !text.is_char_boundary(at) {
        at += 1;
    }
    text[at..].to_owned()
}

/// Creates a job by POSTing `body` (with `wait`) to `path`, then polls
/// until the job is final; with `follow`, creates it without waiting and
/// reads the job's event stream instead.
pub(crate) async fn run_remote(
    remote: &Remote,
    path: &str,
    body: &Value,
    follow: bool,
) -> anyhow::Result<Result<(RemoteJob, follow::Printed), Failure>> {
    let mut body = body.clone();
    if follow {
        body["wait"] = Value::Bool(false);
    }
    let body = &body;
    let answer = remote
        .send(
            reqwest::Method::POST,
            path,
            Some(body),
            WAIT_REQUEST_TIMEOUT,
        )
        .await?;
    let (_, doc) = match answer {
        Ok(ok) => ok,
        Err(failure) => return Ok(Err(failure)),
    };
    let mut job: RemoteJob =
        serde_json::from_value(doc).context("the server's answer is not a job")?;
    if follow && !job.status.is_final() {
        return follow::follow(remote, &job.id).await;
    }
    let mut pause = POLL_MIN;
    let started = Instant::now();
    while !job.status.is_final() {
        tokio::time::sleep(pause).await;
        pause = (pause * 3 / 2).min(POLL_MAX);
        let path = format!("/v1/jobs/{}", job.id);
        let doc = match remote
            .send(reqwest::Method::GET, &path, None, REQUEST_TIMEOUT)
            .await?
        {
            Ok((_, doc)) => doc,
            Err(failure) => return Ok(Err(failure)),
        };
        job = serde_json::from_value(doc).context("the server's answer is not a job")?;
        tracing::debug!(id = %job.id, status = %job.status, waited_ms = started.elapsed().as_millis() as u64, "polled");
    }
    Ok(Ok((job, follow::Printed::default())))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> RetryPolicy {
        RetryPolicy {
            max_attempts: 4,
            base: Duration::from_millis(100),
            max: Duration::from_millis(350),
            max_retry_after: Duration::from_secs(60),
        }
    }

    #[test]
    fn backoff_is_full_jitter_under_a_doubling_cap() {
        let p = policy();
        for (attempt, cap) in [(1, 100), (2, 200), (3, 350), (9, 350)] {
            let waits: Vec<Duration> = (0..200).map(|_| p.backoff(attempt)).collect();
            assert!(waits.iter().all(|w| *w <= Duration::from_millis(cap)));
            // Spread over the whole window, not bunched at the top.
            assert!(waits.iter().any(|w| *w < Duration::from_millis(cap / 3)));
            assert!(
                waits
                    .iter()
                    .any(|w| *w > Duration::from_millis(cap * 2 / 3))
            );
        }
    }

    #[test]
    fn what_is_retried() {
        let p = policy();
        assert!(
            p.delay_for_status(StatusCode::BAD_GATEWAY, None, 1)
                .is_some()
        );
        assert!(
            p.delay_for_status(StatusCode::SERVICE_UNAVAILABLE, None, 3)
                .is_some()
        );
        assert!(
            p.delay_for_status(StatusCode::SERVICE_UNAVAILABLE, None, 4)
                .is_none()
        );
        for status in [400, 401, 403, 404, 409, 413, 422] {
            let status = StatusCode::from_u16(status).unwrap();
            assert!(p.delay_for_status(status, None, 1).is_none(), "{status}");
        }
        let two = Some(Duration::from_secs(2));
        assert_eq!(
            p.delay_for_status(StatusCode::TOO_MANY_REQUESTS, two, 1),
            two
        );
        assert_eq!(
            p.delay_for_status(StatusCode::SERVICE_UNAVAILABLE, two, 1),
            two
        );
        let long = Some(Duration::from_secs(600));
        assert!(
            p.delay_for_status(StatusCode::TOO_MANY_REQUESTS, long, 1)
                .is_none()
        );
        assert!(p.delay_for_error(3).is_some() && p.delay_for_error(4).is_none());
    }

    #[test]
    fn urls_https_or_loopback_only() {
        for ok in [
            "https://strictpy.example",
            "https://strictpy.example:8443/prefix/",
            "http://127.0.0.1:8080",
            "http://127.1.2.3",
            "http://localhost:1",
            "http://[::1]:8080/",
        ] {
            assert!(check_url(ok).is_ok(), "{ok}");
        }
        for bad in [
            "http://example.com",
            "http://10.0.0.1:8080",
            "http://127.0.0.1.example.com",
            "http://[::2]/",
            "ftp://localhost/",
            "https://user:pw@strictpy.example",
            "https://strictpy.example/?token=x",
            "not a url",
        ] {
            assert!(check_url(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn paths_go_under_the_base_prefix() {
        let remote = |base: &str| Remote {
            http: http_client(None).unwrap(),
            base: Url::parse(base).unwrap(),
            token: String::new(),
            retry: policy(),
        };
        assert_eq!(
            remote("https://h/").url("/v1/jobs").as_str(),
            "https://h/v1/jobs"
        );
        assert_eq!(
            remote("https://h/strictpy/").url("/v1/jobs").as_str(),
            "https://h/strictpy/v1/jobs"
        );
    }

    #[test]
    fn retry_after_reads_seconds() {
        let mut headers = HeaderMap::new();
        assert_eq!(retry_after(&headers), None);
        headers.insert(reqwest::header::RETRY_AFTER, "3".parse().unwrap());
        assert_eq!(retry_after(&headers), Some(Duration::from_secs(3)));
        headers.insert(
            reqwest::header::RETRY_AFTER,
            "Wed, 21 Oct 2015 07:28:00 GMT".parse().unwrap(),
        );
        assert_eq!(retry_after(&headers), None);
    }
}
