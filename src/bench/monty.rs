//! pydantic-monty, the fastest peer measured here (a Rust interpreter for a
//! Python subset), run when the `python3` on `PATH` can import
//! `pydantic_monty`. One driver process (that `python3`) starts a
//! `pydantic_monty.Monty` pool of one worker subprocess, then times, with
//! `time.perf_counter()` in the driver, each job as a *fresh session*:
//! `pool.checkout()` (a new session on the warm worker, no state from the
//! job before) and `session.feed_run(code)` with the output collected, until
//! the session is handed back. That is the peer's counterpart of a sandboxed
//! job on a warm pool slot. Snippets it cannot run (a module it lacks, say)
//! are reported as such, not counted.

use std::{
    collections::BTreeMap,
    io::Write as _,
    path::Path,
    process::{Command, Stdio},
    time::Duration,
};

use anyhow::{Context as _, bail};
use serde::{Deserialize, Serialize};

use super::{
    snippets::{HELLO, Snippet},
    stats::{Summary, median, ms, summarise},
};

/// The driver, run as `python3 -c`: reads its plan as JSON on stdin and
/// prints one JSON document of raw samples in seconds.
const DRIVER: &str = r#"
import json, sys, time
import pydantic_monty as pm

plan = json.load(sys.stdin)

def job(pool, code):
    out = pm.CollectString()
    t0 = time.perf_counter()
    with pool.checkout() as session:
        session.feed_run(code, print_callback=out)
    return time.perf_counter() - t0, out.output

result = {"version": pm.__version__, "hello_s": [], "hello_output": None, "snippets": {}}
with pm.Monty(min_processes=1, max_processes=1) as pool:
    for _ in range(plan["warmup"]):
        job(pool, plan["hello"])
    for _ in range(plan["iterations"]):
        seconds, output = job(pool, plan["hello"])
        result["hello_s"].append(seconds)
        result["hello_output"] = output
    for snippet in plan["snippets"]:
        row = {"seconds": [], "output": None, "error": None}
        for _ in range(plan["repeat"]):
            try:
                seconds, output = job(pool, snippet["code"])
            except pm.MontyError as e:
                row["error"] = (type(e).__name__ + ": " + str(e))[:300]
                break
            row["seconds"].append(seconds)
            row["output"] = output
        result["snippets"][snippet["name"]] = row
json.dump(result, sys.stdout)
"#;

/// What to run.
#[derive(Debug, Serialize)]
struct DriverPlan<'a> {
    /// Untimed hello jobs first.
    warmup: usize,
    /// Timed hello jobs.
    iterations: usize,
    /// The hello job's code (the in-process rows' `HELLO`).
    hello: &'static str,
    /// Runs of each snippet.
    repeat: usize,
    /// The suite snippets, by name.
    snippets: Vec<DriverSnippet<'a>>,
}

/// One snippet for the driver.
#[derive(Debug, Serialize)]
struct DriverSnippet<'a> {
    /// Its name in the suite.
    name: &'a str,
    /// Its code.
    code: &'a str,
}

/// What the driver printed.
#[derive(Debug, Deserialize)]
struct DriverResult {
    /// `pydantic_monty.__version__`.
    version: String,
    /// Each timed hello job, in seconds.
    hello_s: Vec<f64>,
    /// What the last hello job printed.
    hello_output: Option<String>,
    /// Each snippet's samples, by name.
    snippets: BTreeMap<String, DriverRow>,
}

/// One snippet's samples from the driver.
#[derive(Debug, Deserialize)]
struct DriverRow {
    /// Each run, in seconds.
    seconds: Vec<f64>,
    /// What the last run printed.
    output: Option<String>,
    /// Why pydantic-monty could not run it.
    error: Option<String>,
}

/// What pydantic-monty measured.
#[derive(Debug, Clone, Serialize)]
pub struct Monty {
    /// `pydantic_monty.__version__` and the Python that imported it.
    pub version: String,
    /// Fresh-session hello jobs (checkout, `feed_run`, hand back).
    pub hello: Summary,
    /// The suite snippets it ran or could not run.
    pub suite: Vec<MontySnippet>,
}

/// One suite snippet in pydantic-monty.
#[derive(Debug, Clone, Serialize)]
pub struct MontySnippet {
    /// The snippet's name.
    pub name: String,
    /// Median fresh-session job time in ms; `None` when it could not run it.
    pub ms: Option<f64>,
    /// What it printed.
    pub output: Option<String>,
    /// Why it could not run it.
    pub error: Option<String>,
}

/// Whether `python` can import `pydantic_monty` (with `site`, unlike the
/// CPython rows, since the package lives in site-packages).
pub fn available(python: &Path) -> bool {
    Command::new(python)
        .args(["-c", "import pydantic_monty"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Runs the driver once: `iterations` hello jobs after `warmup`, then each
/// snippet `repeat` times.
pub fn run(
    python: &Path,
    warmup: usize,
    iterations: usize,
    snippets: &[Snippet],
    repeat: usize,
) -> anyhow::Result<Monty> {
    let plan = DriverPlan {
        warmup,
        iterations,
        hello: HELLO,
        repeat,
        snippets: snippets
            .iter()
            .map(|s| DriverSnippet {
                name: s.name,
                code: s.code,
            })
            .collect(),
    };
    let mut child = Command::new(python)
        .args(["-c", DRIVER])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("starting {} for pydantic-monty", python.display()))?;
    // The plan is small, so writing it all before reading cannot deadlock.
    child
        .stdin
        .take()
        .context("the driver's stdin")?
        .write_all(&serde_json::to_vec(&plan)?)
        .context("sending the pydantic-monty plan")?;
    let out = child
        .wait_with_output()
        .context("waiting for pydantic-monty")?;
    if !out.status.success() {
        bail!(
            "the pydantic-monty driver failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let result: DriverResult =
        serde_json::from_slice(&out.stdout).context("reading the pydantic-monty driver's JSON")?;
    if result.hello_output.as_deref() != Some("hi\n") {
        bail!(
            "pydantic-monty's hello job printed {:?}",
            result.hello_output
        );
    }
    let durations = |seconds: &[f64]| -> Vec<Duration> {
        seconds
            .iter()
            .filter(|s| s.is_finite() && **s >= 0.0)
            .map(|s| Duration::from_secs_f64(*s))
            .collect()
    };
    let suite = snippets
        .iter()
        .map(|s| {
            let row = result.snippets.get(s.name);
            let times: Vec<f64> = row
                .map(|r| durations(&r.seconds).into_iter().map(ms).collect())
                .unwrap_or_default();
            MontySnippet {
                name: s.name.to_owned(),
                ms: median(&times),
                output: row.and_then(|r| r.output.clone()),
                error: row.and_then(|r| r.error.clone()),
            }
        })
        .collect();
    Ok(Monty {
        version: format!("pydantic-monty {} ({})", result.version, python.display()),
        hello: summarise(&durations(&result.hello_s)),
        suite,
    })
}
