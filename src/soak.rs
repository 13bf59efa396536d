//! `strictpy soak`: thousands of jobs, a tenth of them hostile, against a real
//! `strictpy serve` this command starts itself, optionally SIGKILLed and
//! restarted at random moments; every answer is checked and nothing may be
//! lost (`make soak`, docs/benchmarks.md).
//!
//! Each job is posted with `"wait": true` and an idempotency key of its own.
//! A connection that breaks (the server was killed) is retried with the same
//! key once the server is back, so a job the dead process had accepted is
//! found again instead of being submitted twice. A job is *lost* when it was
//! accepted (an id came back) but never reached a final state, or when the
//! final listing of the tenant does not hold exactly the accepted jobs.

use std::{
    collections::{BTreeMap, BTreeSet},
    io::{BufRead as _, BufReader},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{
        Arc, Mutex, MutexGuard,
        atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};
use clap::Args;
use serde::Serialize;
use serde_json::{Value, json};

/// `strictpy soak`.
#[derive(Debug, Args)]
pub struct SoakArgs {
    /// Jobs to submit in all.
    #[arg(long, default_value_t = 10_000)]
    pub jobs: usize,
    /// Jobs in flight at once.
    #[arg(long, default_value_t = 64)]
    pub concurrency: usize,
    /// Percentage of jobs that are hostile (busy loops, bombs, sleeps, ...).
    #[arg(long, default_value_t = 10)]
    pub hostile_percent: u32,
    /// SIGKILL the server this many times at random moments and restart it
    /// on the same data dir.
    #[arg(long, default_value_t = 0)]
    pub kill: u32,
    /// Worker threads of the server (default: its own default, the cores).
    #[arg(long)]
    pub workers: Option<usize>,
    /// Seed of the job mix and the kill moments, for a reproducible run.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// The guest module the server loads; defaults as for `serve`.
    #[arg(long, value_name = "FILE")]
    pub guest: Option<PathBuf>,
    /// Print the summary as one JSON object instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// How long one job may take from its first POST to its final state,
/// restarts included, before it counts as lost.
const JOB_DEADLINE: Duration = Duration::from_secs(300);
/// Pause between retries of a broken connection and between polls.
const RETRY_PAUSE: Duration = Duration::from_millis(100);
/// How long a restarted server may take to print its listening line.
const START_DEADLINE: Duration = Duration::from_secs(120);

/// SplitMix64: a small, seedable generator, so the job mix and the kill
/// moments of a run are reproducible from `--seed`.
#[derive(Debug, Clone)]
struct Mix(u64);

impl Mix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (`n > 0`).
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// What a finished job must look like.
#[derive(Debug, Clone)]
enum Expect {
    /// A benign job: succeeded with exactly this stdout and result.
    Exact {
        /// The whole stdout.
        stdout: String,
        /// The `result` value (`null` for none).
        result: Value,
    },
    /// A hostile job: failed with one of these verdict kinds (and, when set,
    /// this exception type).
    Fails {
        /// Acceptable `error.kind` values.
        kinds: &'static [&'static str],
        /// The `error.exception_type` it must have, if any.
        exception_type: Option<&'static str>,
    },
    /// An output bomb: succeeded, stdout cut at exactly `max_output_bytes`.
    Truncated {
        /// The cap the job asked for.
        cap: usize,
        /// The `result` it still sets after flooding.
        result: Value,
    },
    /// A large result: succeeded with a string result of this length.
    LongResult {
        /// Characters of the `'x' * n` result.
        len: usize,
    },
}

/// One job of the plan.
#[derive(Debug, Clone)]
struct Spec {
    /// Its request body (without `idempotency_key` and `wait`).
    body: Value,
    /// What it must end as.
    expect: Expect,
    /// A short name for reports (`benign` or the hostile class).
    class: &'static str,
}

/// The hostile classes, each a real misbehaving program with the limits
/// that stop it quickly, and the verdict it must end with.
fn hostile(kind: u64, i: usize) -> Spec {
    let fails = |kinds, exception_type| Expect::Fails {
        kinds,
        exception_type,
    };
    let (class, body, expect) = match kind {
        0 => (
            "busy_loop",
            json!({"code": "while True:\n    pass", "limits": {"timeout_ms": 250}}),
            fails(&["timeout", "fuel_exhausted"], None),
        ),
        1 => (
            "fuel",
            json!({"code": "x = 0\nwhile True:\n    x += 1", "limits": {"fuel": 20_000_000}}),
            fails(&["fuel_exhausted"], None),
        ),
        2 => (
            "memory_bomb",
            json!({"code": "x = bytearray(512 * 1024 * 1024)\nprint('unreachable')",
                   "limits": {"memory_mb": 64}}),
            fails(&["memory_limit"], None),
        ),
        3 => (
            "memory_growth",
            json!({"code": "chunks = []\nwhile True:\n    chunks.append('x' * 1_000_000)",
                   "limits": {"memory_mb": 64}}),
            fails(&["memory_limit"], None),
        ),
        4 => (
            "output_bomb",
            json!({"code": "for i in range(20000):\n    print('x' * 99)\nresult = 'flooded'",
                   "limits": {"max_output_bytes": 10_000}}),
            Expect::Truncated {
                cap: 10_000,
                result: json!("flooded"),
            },
        ),
        5 => (
            "sleep",
            json!({"code": "import time\ntime.sleep(3600)", "limits": {"timeout_ms": 200}}),
            fails(&["timeout"], None),
        ),
        6 => (
            "deep_recursion",
            json!({"code": "def f(n):\n    return f(n + 1)\nf(0)"}),
            fails(&["exception"], Some("RecursionError")),
        ),
        7 => (
            "native_recursion",
            json!({"code": "x = []\nfor _ in range(200_000):\n    x = [x]\nrepr(x)"}),
            fails(&["stack_overflow"], None),
        ),
        8 => (
            "huge_exception",
            json!({"code": format!("raise ValueError('{i}' + 'x' * 1_000_000)")}),
            fails(&["exception"], Some("ValueError")),
        ),
        _ => (
            "huge_result",
            // Just under the 1 MiB cap on a result's JSON (a larger one
            // fails the run with a ValueError, see docs/compatibility.md).
            json!({"code": "result = 'x' * 1_000_000"}),
            Expect::LongResult { len: 1_000_000 },
        ),
    };
    Spec {
        body,
        expect,
        class,
    }
}

/// A benign job whose stdout and result are known exactly.
fn benign(kind: u64, i: usize, mix: &mut Mix) -> Spec {
    let a = mix.below(10_000);
    let b = mix.below(100) + 1;
    let (body, stdout, result) = match kind {
        0 => (
            json!({"code": format!("result = sum(range({a})) * {b}\nprint({b})")}),
            format!("{b}\n"),
            json!(a * a.saturating_sub(1) / 2 * b),
        ),
        1 => (
            json!({"code": "result = {'s': a + b, 'w': w.upper()}",
                   "context": {"a": a, "b": b, "w": format!("word{i}")}}),
            String::new(),
            json!({"s": a + b, "w": format!("WORD{i}")}),
        ),
        2 => {
            let line = format!("soak-{i}-{a}");
            (
                json!({"code": "line = input()\nprint(line[::-1])\nresult = len(line)",
                       "stdin": format!("{line}\n")}),
                format!("{}\n", line.chars().rev().collect::<String>()),
                json!(line.len()),
            )
        }
        _ => (
            json!({"code": format!(
                "try:\n    {a} / 0\nexcept ZeroDivisionError as e:\n    result = [str(e), {i}]\nprint('caught')"
            )}),
            "caught\n".to_owned(),
            json!(["division by zero", i]),
        ),
    };
    Spec {
        body,
        expect: Expect::Exact { stdout, result },
        class: "benign",
    }
}

/// The whole plan, reproducible from the seed.
fn plan(args: &SoakArgs) -> Vec<Spec> {
    let mut mix = Mix(args.seed);
    (0..args.jobs)
        .map(|i| {
            if mix.below(100) < u64::from(args.hostile_percent) {
                let kind = mix.below(10);
                hostile(kind, i)
            } else {
                let kind = mix.below(4);
                benign(kind, i, &mut mix)
            }
        })
        .collect()
}

/// How one job ended, as the soak judged it.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Judged {
    /// It ended as expected.
    Ok,
    /// It was running when the server was killed and ended
    /// `failed`/`internal` ("worker stopped"): final, by the documented rule.
    Interrupted,
    /// It ended final but not as expected.
    Wrong(String),
    /// It was refused with a 4xx it should not get.
    Refused(String),
    /// It was accepted but never became final (or disappeared).
    Lost(String),
    /// No answer ever came for its submission.
    Unanswered(String),
}

/// Everything the jobs share.
#[derive(Debug)]
struct Ctx {
    /// `http://127.0.0.1:PORT`.
    base: String,
    /// A client with the soak token.
    client: reqwest::Client,
    /// Count of each HTTP status answered.
    statuses: Mutex<BTreeMap<u16, u64>>,
    /// Requests that got no HTTP answer (refused or reset connections).
    connection_errors: AtomicUsize,
    /// Jobs that reached a verdict (for the kill moments).
    done: AtomicUsize,
    /// Ids of every accepted job.
    accepted: Mutex<BTreeSet<String>>,
    /// A distinct prefix for this run's idempotency keys.
    run_id: String,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Ctx {
    fn count(&self, status: u16) {
        *lock(&self.statuses).entry(status).or_default() += 1;
    }

    /// Submits job `i` and follows it to a final state.
    async fn run(&self, i: usize, spec: &Spec) -> (Judged, Duration) {
        let started = Instant::now();
        let judged = self.follow(i, spec, started).await;
        self.done.fetch_add(1, Ordering::Relaxed);
        (judged, started.elapsed())
    }

    async fn follow(&self, i: usize, spec: &Spec, started: Instant) -> Judged {
        let mut body = spec.body.clone();
        body["wait"] = json!(true);
        body["idempotency_key"] = json!(format!("{}-{i}", self.run_id));
        let mut id: Option<String> = None;
        let job = loop {
            if started.elapsed() > JOB_DEADLINE {
                return match id {
                    Some(id) => Judged::Lost(format!("job {id} accepted, never final")),
                    None => Judged::Unanswered("no answer to the submission".into()),
                };
            }
            let reply = self
                .client
                .post(format!("{}/v1/jobs", self.base))
                .json(&body)
                .send()
                .await;
            let reply = match reply {
                Ok(r) => r,
                Err(_) => {
                    self.connection_errors.fetch_add(1, Ordering::Relaxed);
                    tokio::time::sleep(RETRY_PAUSE).await;
                    continue;
                }
            };
            let status = reply.status().as_u16();
            self.count(status);
            let retry_after = reply
                .headers()
                .get(reqwest::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
            let Ok(value) = reply.json::<Value>().await else {
                // The body broke off (a kill mid-answer): submit again.
                self.connection_errors.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(RETRY_PAUSE).await;
                continue;
            };
            match status {
                200 | 202 => {
                    let Some(got) = value["id"].as_str() else {
                        return Judged::Wrong(format!("{status} without an id: {value}"));
                    };
                    if let Some(seen) = &id
                        && seen != got
                    {
                        return Judged::Wrong(format!("replay gave {got}, first answer {seen}"));
                    }
                    lock(&self.accepted).insert(got.to_owned());
                    id = Some(got.to_owned());
                    if is_final(&value) {
                        break value;
                    }
                    match self.poll(got, started).await {
                        Some(job) => break job,
                        // The server died while polling: the idempotent
                        // resubmission finds the job again.
                        None => continue,
                    }
                }
                429 | 503 => {
                    let pause = Duration::from_secs(retry_after.unwrap_or(1).min(5));
                    tokio::time::sleep(pause).await;
                }
                500..=599 => tokio::time::sleep(RETRY_PAUSE).await,
                _ => return Judged::Refused(format!("{status}: {value}")),
            }
        };
        judge(&spec.expect, &job)
    }

    /// Polls `GET /v1/jobs/{id}` until the job is final; `None` when the
    /// server stopped answering (so the caller resubmits) or the deadline
    /// passed.
    async fn poll(&self, id: &str, started: Instant) -> Option<Value> {
        while started.elapsed() < JOB_DEADLINE {
            tokio::time::sleep(Duration::from_millis(50)).await;
            let reply = self
                .client
                .get(format!("{}/v1/jobs/{id}", self.base))
                .send()
                .await;
            let Ok(reply) = reply else {
                self.connection_errors.fetch_add(1, Ordering::Relaxed);
                return None;
            };
            self.count(reply.status().as_u16());
            if !reply.status().is_success() {
                continue;
            }
            match reply.json::<Value>().await {
                Ok(job) if is_final(&job) => return Some(job),
                Ok(_) => {}
                Err(_) => return None,
            }
        }
        None
    }

    /// Every job of the tenant, page by page: `(count, not final)`.
    async fn listing(&self) -> anyhow::Result<(BTreeSet<String>, usize)> {
        let mut ids = BTreeSet::new();
        let mut not_final = 0;
        let mut cursor: Option<String> = None;
        loop {
            let mut url = format!("{}/v1/jobs?limit=200", self.base);
            if let Some(c) = &cursor {
                url.push_str(&format!("&cursor={c}"));
            }
            let page: Value = self
                .client
                .get(url)
                .send()
                .await?
                .error_for_status()?
                .json()
                .await?;
            for job in page["jobs"].as_array().into_iter().flatten() {
                if !is_final(job) {
                    not_final += 1;
                }
                if let Some(id) = job["id"].as_str() {
                    ids.insert(id.to_owned());
                }
            }
            match page["next_cursor"].as_str() {
                Some(c) => cursor = Some(c.to_owned()),
                None => break,
            }
        }
        Ok((ids, not_final))
    }
}

fn is_final(job: &Value) -> bool {
    matches!(
        job["status"].as_str(),
        Some("succeeded" | "failed" | "cancelled")
    )
}

/// Compares a final job with what it must be.
fn judge(expect: &Expect, job: &Value) -> Judged {
    let status = job["status"].as_str().unwrap_or_default();
    let kind = job["error"]["kind"].as_str().unwrap_or_default();
    if status == "failed"
        && kind == "internal"
        && job["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("worker stopped"))
    {
        return Judged::Interrupted;
    }
    let wrong = |why: &str| Judged::Wrong(format!("{why}: {}", brief(job)));
    match expect {
        Expect::Exact { stdout, result } => {
            if status != "succeeded" {
                wrong("expected succeeded")
            } else if job["stdout"].as_str() != Some(stdout.as_str()) {
                wrong(&format!("expected stdout {stdout:?}"))
            } else if &job["result"] != result {
                wrong(&format!("expected result {result}"))
            } else if !job["error"].is_null() {
                wrong("expected no error")
            } else {
                Judged::Ok
            }
        }
        Expect::Fails {
            kinds,
            exception_type,
        } => {
            if status != "failed" || !kinds.contains(&kind) {
                wrong(&format!("expected failed with {kinds:?}"))
            } else if exception_type.is_some()
                && job["error"]["exception_type"].as_str() != *exception_type
            {
                wrong(&format!("expected exception {exception_type:?}"))
            } else {
                Judged::Ok
            }
        }
        Expect::Truncated { cap, result } => {
            let len = job["stdout"].as_str().map_or(0, str::len);
            if status != "succeeded" || job["stdout_truncated"] != json!(true) || len != *cap {
                wrong(&format!("expected succeeded, stdout truncated at {cap}"))
            } else if &job["result"] != result {
                wrong(&format!("expected result {result}"))
            } else {
                Judged::Ok
            }
        }
        Expect::LongResult { len } => {
            let got = job["result"].as_str().map(str::len);
            if status != "succeeded" || got != Some(*len) {
                wrong(&format!("expected a {len}-character result"))
            } else {
                Judged::Ok
            }
        }
    }
}

/// A job with its long fields cut, for a report line.
fn brief(job: &Value) -> String {
    let mut job = job.clone();
    for field in ["stdout", "stderr", "result", "code"] {
        if let Some(s) = job[field].as_str()
            && s.len() > 200
        {
            job[field] = json!(format!(
                "{}... ({} bytes)",
                &s[..s.floor_char_boundary(200)],
                s.len()
            ));
        }
    }
    for field in ["message", "traceback"] {
        if let Some(s) = job["error"][field].as_str()
            && s.len() > 200
        {
            job["error"][field] = json!(format!(
                "{}... ({} bytes)",
                &s[..s.floor_char_boundary(200)],
                s.len()
            ));
        }
    }
    job.to_string()
}

/// The `strictpy serve` under test.
#[derive(Debug)]
struct Served {
    /// The running process.
    child: Child,
}

/// How the server is started (again).
#[derive(Debug, Clone)]
struct Launch {
    /// This binary.
    exe: PathBuf,
    /// The data dir every start shares.
    data_dir: PathBuf,
    /// Where the server's log goes (appended across restarts).
    log: PathBuf,
    /// `--workers`.
    workers: Option<usize>,
    /// `--guest`.
    guest: Option<PathBuf>,
}

impl Launch {
    /// Starts the server on `listen` and returns it with its base URL.
    fn start(&self, listen: &str) -> anyhow::Result<(Served, String)> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .with_context(|| format!("opening {}", self.log.display()))?;
        let mut cmd = Command::new(&self.exe);
        cmd.args(["serve", "--listen", listen, "--queue-size", "100000"])
            .arg("--data-dir")
            .arg(&self.data_dir)
            .env("STRICTPY_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log);
        if let Some(w) = self.workers {
            cmd.args(["--workers", &w.to_string()]);
        }
        if let Some(g) = &self.guest {
            cmd.arg("--guest").arg(g);
        }
        let mut child = cmd.spawn().context("starting strictpy serve")?;
        let stdout = child.stdout.take().context("the server's stdout")?;
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .context("reading the server's listening line")?;
        let Some(base) = line.trim().strip_prefix("strictpy: listening on ") else {
            let _ = child.kill();
            let _ = child.wait();
            bail!(
                "the server did not start (its log: {}): {line:?}",
                self.log.display()
            );
        };
        Ok((Served { child }, base.to_owned()))
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The server's resident set in MiB, from `/proc/PID/status`.
fn rss_mib(pid: u32) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kb: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kb / 1024.0)
}

/// The summary `strictpy soak` prints.
#[derive(Debug, Serialize)]
pub struct Summary {
    /// Jobs submitted.
    pub jobs: usize,
    /// Of which hostile.
    pub hostile: usize,
    /// Jobs in flight at once.
    pub concurrency: usize,
    /// Times the server was SIGKILLed and restarted.
    pub kills: u32,
    /// Wall time of the whole run, in seconds.
    pub seconds: f64,
    /// Jobs per second.
    pub jobs_per_sec: f64,
    /// Median time from submission to final state, in milliseconds.
    pub p50_ms: f64,
    /// 99th percentile of the same.
    pub p99_ms: f64,
    /// The count of each HTTP status answered.
    pub statuses: BTreeMap<u16, u64>,
    /// Answers with a 5xx status.
    pub server_errors: u64,
    /// Requests that got no answer (refused or reset during kills).
    pub connection_errors: usize,
    /// Jobs that ended exactly as expected.
    pub ok: usize,
    /// Jobs ended `failed`/`internal` because they were running at a kill.
    pub interrupted: usize,
    /// Jobs that ended final but wrong.
    pub wrong: usize,
    /// Jobs refused with an unexpected 4xx.
    pub refused: usize,
    /// Accepted jobs that never became final or are missing from the listing.
    pub lost: usize,
    /// Submissions that never got an answer.
    pub unanswered: usize,
    /// Jobs in the tenant's listing at the end.
    pub listed: usize,
    /// Hostile jobs that ended as expected, per class.
    pub hostile_ok: BTreeMap<&'static str, usize>,
    /// Server RSS (MiB) before the first job.
    pub rss_start_mib: f64,
    /// The highest server RSS sampled (MiB).
    pub rss_peak_mib: f64,
    /// Server RSS after the last job (MiB).
    pub rss_end_mib: f64,
    /// Server RSS at each tenth of the run (MiB).
    pub rss_timeline_mib: Vec<f64>,
    /// The first few problems, for people.
    pub problems: Vec<String>,
}

impl Summary {
    /// True when nothing was lost, wrong, refused or answered 5xx.
    pub fn passed(&self) -> bool {
        self.server_errors == 0
            && self.lost == 0
            && self.wrong == 0
            && self.refused == 0
            && self.unanswered == 0
            && (self.kills > 0 || self.interrupted == 0)
    }

    fn print(&self) {
        let statuses: Vec<String> = self
            .statuses
            .iter()
            .map(|(s, n)| format!("{s}: {n}"))
            .collect();
        let hostile: Vec<String> = self
            .hostile_ok
            .iter()
            .map(|(c, n)| format!("{c} {n}"))
            .collect();
        let timeline: Vec<String> = self
            .rss_timeline_mib
            .iter()
            .map(|m| format!("{m:.0}"))
            .collect();
        println!(
            "soak: {} jobs ({} hostile) at concurrency {}, {} kill(s)",
            self.jobs, self.hostile, self.concurrency, self.kills
        );
        println!(
            "  throughput      {:.1} jobs/s ({:.1} s)",
            self.jobs_per_sec, self.seconds
        );
        println!(
            "  latency         p50 {:.1} ms, p99 {:.1} ms",
            self.p50_ms, self.p99_ms
        );
        println!("  HTTP statuses   {}", statuses.join(", "));
        println!("  5xx             {}", self.server_errors);
        println!(
            "  no answer       {} request(s), retried",
            self.connection_errors
        );
        println!(
            "  as expected     {} ({} interrupted by a kill)",
            self.ok, self.interrupted
        );
        println!("  hostile by kind {}", hostile.join(", "));
        println!("  wrong           {}", self.wrong);
        println!("  refused         {}", self.refused);
        println!("  unanswered      {}", self.unanswered);
        println!("  lost jobs       {}", self.lost);
        println!("  listed at end   {}", self.listed);
        println!(
            "  server RSS      start {:.0} MiB, peak {:.0} MiB, end {:.0} MiB",
            self.rss_start_mib, self.rss_peak_mib, self.rss_end_mib
        );
        println!("  RSS by tenth    {} MiB", timeline.join(" "));
        for p in &self.problems {
            println!("  problem: {p}");
        }
        println!("  {}", if self.passed() { "PASS" } else { "FAIL" });
    }
}

/// Runs the soak; exit code 0 when it passed, 1 when it did not.
pub fn soak(args: SoakArgs) -> anyhow::Result<u8> {
    if args.jobs == 0 || args.concurrency == 0 || args.hostile_percent > 100 {
        bail!("--jobs and --concurrency must be at least 1, --hostile-percent at most 100");
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let summary = runtime.block_on(run(&args))?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&summary)?);
    } else {
        summary.print();
    }
    Ok(if summary.passed() { 0 } else { 1 })
}

async fn run(args: &SoakArgs) -> anyhow::Result<Summary> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dir = tempfile::Builder::new()
        .prefix("strictpy-soak")
        .tempdir()
        .context("creating a temporary dir")?;
    let launch = Launch {
        exe: std::env::current_exe().context("finding this binary")?,
        data_dir: dir.path().join("data"),
        log: dir.path().join("server.log"),
        workers: args.workers,
        guest: args.guest.clone(),
    };
    // The first start picks a free port; restarts reuse it, so clients keep
    // one base URL.
    let first = launch.clone();
    let (served, base) = tokio::task::spawn_blocking(move || first.start("127.0.0.1:0")).await??;
    let pid = Arc::new(AtomicU32::new(served.child.id()));
    let served = Arc::new(Mutex::new(Some(served)));
    let client = token_client(&base, &launch.data_dir).await?;

    let specs = Arc::new(plan(args));
    let hostile = specs.iter().filter(|s| s.class != "benign").count();
    let ctx = Arc::new(Ctx {
        base: base.clone(),
        client,
        statuses: Mutex::default(),
        connection_errors: AtomicUsize::new(0),
        done: AtomicUsize::new(0),
        accepted: Mutex::default(),
        run_id: uuid::Uuid::new_v4().to_string(),
    });

    // RSS every 200 ms, of whichever process is current.
    let finished = Arc::new(AtomicBool::new(false));
    let rss_start = rss_mib(pid.load(Ordering::Relaxed)).unwrap_or(0.0);
    let sampler = {
        let (pid, finished, ctx) = (pid.clone(), finished.clone(), ctx.clone());
        tokio::spawn(async move {
            let mut samples: Vec<(usize, f64)> = Vec::new();
            while !finished.load(Ordering::Relaxed) {
                if let Some(mib) = rss_mib(pid.load(Ordering::Relaxed)) {
                    samples.push((ctx.done.load(Ordering::Relaxed), mib));
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            samples
        })
    };

    // The kill moments: after a random number of finished jobs each.
    let mut mix = Mix(args.seed ^ 0x5EED);
    let mut moments: Vec<usize> = (0..args.kill)
        .map(|_| {
            let span = (args.jobs * 9 / 10).max(1) as u64;
            args.jobs / 20 + mix.below(span) as usize
        })
        .collect();
    moments.sort_unstable();
    let killer = {
        let (ctx, served, pid, finished) =
            (ctx.clone(), served.clone(), pid.clone(), finished.clone());
        let (launch, listen) = (
            launch.clone(),
            base.trim_start_matches("http://").to_owned(),
        );
        tokio::spawn(async move {
            let mut kills = 0;
            for moment in moments {
                while ctx.done.load(Ordering::Relaxed) < moment {
                    if finished.load(Ordering::Relaxed) {
                        return anyhow::Ok(kills);
                    }
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                // SIGKILL (what `Child::kill` sends): no chance to clean up.
                drop(lock(&served).take());
                kills += 1;
                tokio::time::sleep(Duration::from_millis(mix.below(300))).await;
                let launch = launch.clone();
                let listen = listen.clone();
                let started = Instant::now();
                let (again, _) = loop {
                    let launch = launch.clone();
                    let listen = listen.clone();
                    match tokio::task::spawn_blocking(move || launch.start(&listen)).await? {
                        Ok(s) => break s,
                        // The port may linger for a moment after the kill.
                        Err(e) if started.elapsed() < START_DEADLINE => {
                            tracing::warn!("restart failed, retrying: {e:#}");
                            tokio::time::sleep(Duration::from_millis(500)).await;
                        }
                        Err(e) => return Err(e),
                    }
                };
                pid.store(again.child.id(), Ordering::Relaxed);
                *lock(&served) = Some(again);
            }
            anyhow::Ok(kills)
        })
    };

    let started = Instant::now();
    let limit = Arc::new(tokio::sync::Semaphore::new(args.concurrency));
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..specs.len() {
        let (ctx, specs, limit) = (ctx.clone(), specs.clone(), limit.clone());
        tasks.spawn(async move {
            let _permit = limit.acquire_owned().await;
            let spec = &specs[i];
            let (judged, took) = ctx.run(i, spec).await;
            (i, judged, took)
        });
    }
    let mut results = Vec::with_capacity(specs.len());
    while let Some(r) = tasks.join_next().await {
        results.push(r.context("a job task panicked")?);
    }
    let seconds = started.elapsed().as_secs_f64();
    finished.store(true, Ordering::Relaxed);
    let kills = killer.await??;
    let samples = sampler.await?;
    let rss_end = rss_mib(pid.load(Ordering::Relaxed)).unwrap_or(0.0);
    let (listed, not_final) = ctx.listing().await?;
    drop(lock(&served).take());

    let mut summary = Summary {
        jobs: specs.len(),
        hostile,
        concurrency: args.concurrency,
        kills,
        seconds,
        jobs_per_sec: specs.len() as f64 / seconds,
        p50_ms: 0.0,
        p99_ms: 0.0,
        statuses: lock(&ctx.statuses).clone(),
        server_errors: 0,
        connection_errors: ctx.connection_errors.load(Ordering::Relaxed),
        ok: 0,
        interrupted: 0,
        wrong: 0,
        refused: 0,
        lost: 0,
        unanswered: 0,
        listed: listed.len(),
        hostile_ok: BTreeMap::new(),
        rss_start_mib: rss_start,
        rss_peak_mib: samples
            .iter()
            .map(|s| s.1)
            .fold(rss_start.max(rss_end), f64::max),
        rss_end_mib: rss_end,
        rss_timeline_mib: timeline(&samples, specs.len()),
        problems: Vec::new(),
    };
    summary.server_errors = summary
        .statuses
        .iter()
        .filter(|(s, _)| **s >= 500)
        .map(|(_, n)| n)
        .sum();
    let mut latencies: Vec<f64> = Vec::with_capacity(results.len());
    results.sort_by_key(|r| r.0);
    for (i, judged, took) in results {
        latencies.push(took.as_secs_f64() * 1000.0);
        let problem = match judged {
            Judged::Ok => {
                summary.ok += 1;
                let class = specs[i].class;
                if class != "benign" {
                    *summary.hostile_ok.entry(class).or_default() += 1;
                }
                None
            }
            Judged::Interrupted => {
                summary.ok += 1;
                summary.interrupted += 1;
                (kills == 0).then(|| "interrupted without a kill".to_owned())
            }
            Judged::Wrong(why) => {
                summary.wrong += 1;
                Some(why)
            }
            Judged::Refused(why) => {
                summary.refused += 1;
                Some(why)
            }
            Judged::Lost(why) => {
                summary.lost += 1;
                Some(why)
            }
            Judged::Unanswered(why) => {
                summary.unanswered += 1;
                Some(why)
            }
        };
        if let Some(why) = problem
            && summary.problems.len() < 10
        {
            summary
                .problems
                .push(format!("job {i} ({}): {why}", specs[i].class));
        }
    }
    // The listing must hold exactly the accepted jobs, every one final.
    let accepted = lock(&ctx.accepted).clone();
    let missing = accepted.difference(&listed).count();
    let extra = listed.difference(&accepted).count();
    summary.lost += missing + not_final;
    if missing + extra + not_final > 0 {
        summary.problems.push(format!(
            "listing: {missing} accepted job(s) missing, {extra} unexpected, {not_final} not final"
        ));
        summary.wrong += extra;
    }
    latencies.sort_by(f64::total_cmp);
    summary.p50_ms = percentile(&latencies, 0.50);
    summary.p99_ms = percentile(&latencies, 0.99);
    if !summary.passed() {
        // Keep the server's log for a post-mortem.
        let kept = dir.keep();
        summary.problems.push(format!(
            "server log kept in {}",
            kept.join("server.log").display()
        ));
    }
    Ok(summary)
}

/// The last RSS sample at or before each tenth of the jobs.
fn timeline(samples: &[(usize, f64)], jobs: usize) -> Vec<f64> {
    (1..=10)
        .filter_map(|tenth| {
            let mark = jobs * tenth / 10;
            samples
                .iter()
                .rev()
                .find(|(done, _)| *done <= mark)
                .map(|s| s.1)
        })
        .collect()
}

fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((sorted.len() - 1) as f64 * q).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

/// Makes the soak's own token (its own tenant, limits it cannot reach) with
/// the first-start admin token, and a client that sends it.
async fn token_client(base: &str, data_dir: &Path) -> anyhow::Result<reqwest::Client> {
    let admin = std::fs::read_to_string(data_dir.join("admin-token"))
        .context("reading the first-start admin token")?;
    let created: Value = reqwest::Client::new()
        .post(format!("{base}/v1/tokens"))
        .bearer_auth(admin.trim())
        .json(&json!({
            "tenant": "soak",
            "scopes": ["jobs:write", "jobs:read"],
            "name": "strictpy soak",
            "rate_limit": {
                "requests_per_minute": 100_000_000,
                "burst": 1_000_000,
                "concurrent_jobs": 1_000_000,
            },
        }))
        .send()
        .await?
        .error_for_status()
        .context("creating the soak token")?
        .json()
        .await?;
    let token = created["token"]
        .as_str()
        .context("no token in the answer")?;
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(
        reqwest::header::AUTHORIZATION,
        format!("Bearer {token}").parse()?,
    );
    Ok(reqwest::Client::builder()
        .default_headers(headers)
        .timeout(Duration::from_secs(120))
        .build()?)
}
