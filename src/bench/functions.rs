//! The stored-function rows of `strictpy bench`: a program submitted as a
//! job (the static check, then a run that parses and compiles it in the
//! guest) against the same program invoked as a stored function (a run
//! that starts from the code object compiled once at registration). Both
//! run in-process on the same pooled sandbox, so what differs is only what
//! an invocation skips; the HTTP and store work around them is the same.

use std::time::Instant;

use anyhow::Context as _;
use indicatif::ProgressBar;
use serde::Serialize;
use strictpy_sandbox::{Job, Sandbox};
use strictpy_types::Policy;

use super::stats::{median, ms};
use super::{job, run_ok, snippets};

/// One program, as a job and as an invocation.
#[derive(Debug, Clone, Serialize)]
pub struct FunctionRow {
    /// Which program.
    pub name: String,
    /// Lines of source.
    pub lines: usize,
    /// Median wall time of the job: static check plus run from source, ms.
    pub job_ms: f64,
    /// Median wall time of the invocation: run from the compiled form, ms.
    pub invoke_ms: f64,
    /// `job_ms / invoke_ms`.
    pub speedup: f64,
    /// Guest fuel of the run from source.
    pub job_fuel: u64,
    /// Guest fuel of the run from the compiled form.
    pub invoke_fuel: u64,
    /// Bytes of the compiled form (marshalled code object).
    pub compiled_bytes: usize,
}

/// The programs measured: a small function body and the 1000-line input of
/// the static-check rows (definitions only, so the run is mostly compile).
pub fn programs() -> Vec<(String, String)> {
    vec![
        (
            "pricing rule (12 lines)".to_owned(),
            "\
def price(items, discount):
    total = 0
    for item in items:
        total += item['qty'] * item['unit']
    if total > 100:
        total -= total * discount
    return round(total, 2)

items = [{'qty': i % 5 + 1, 'unit': 2.5 * i} for i in range(20)]
result = price(items, 0.1)
print(result)
"
            .to_owned(),
        ),
        ("1000-line module".to_owned(), snippets::check_source(1000)),
    ]
}

/// Measures each program `repeat` times both ways.
pub fn rows(
    sandbox: &Sandbox,
    repeat: usize,
    progress: &ProgressBar,
) -> anyhow::Result<Vec<FunctionRow>> {
    let policy = Policy::default();
    let mut out = Vec::new();
    for (name, code) in programs() {
        let compiled = sandbox
            .compile(&code, job(&code).limits)
            .with_context(|| format!("compiling {name}"))?;
        let source_job = job(&code);
        let compiled_job = Job {
            compiled: Some(compiled.clone()),
            ..job(&code)
        };
        let (mut job_times, mut invoke_times) = (Vec::new(), Vec::new());
        let (mut job_fuel, mut invoke_fuel) = (0, 0);
        for _ in 0..repeat {
            let started = Instant::now();
            let violations =
                strictpy_analyzer::check(code.as_bytes(), &policy, &source_job.allowlist);
            anyhow::ensure!(violations.is_empty(), "{name} fails the static check");
            let (job_out, fuel) = run_ok(sandbox, &source_job)?;
            job_times.push(ms(started.elapsed()));
            job_fuel = fuel;
            let started = Instant::now();
            let (invoke_out, fuel) = run_ok(sandbox, &compiled_job)?;
            invoke_times.push(ms(started.elapsed()));
            invoke_fuel = fuel;
            anyhow::ensure!(job_out == invoke_out, "{name}: outputs differ");
            progress.inc(2);
        }
        let job_ms = median(&job_times).unwrap_or_default();
        let invoke_ms = median(&invoke_times).unwrap_or_default();
        out.push(FunctionRow {
            lines: code.lines().count(),
            name,
            job_ms,
            invoke_ms,
            speedup: if invoke_ms > 0.0 {
                job_ms / invoke_ms
            } else {
                0.0
            },
            job_fuel,
            invoke_fuel,
            compiled_bytes: compiled.len(),
        });
    }
    Ok(out)
}
