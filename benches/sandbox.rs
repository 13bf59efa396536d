//! Criterion benches for issue 3: the static check, per-job start, the hello
//! job end to end, and the CPU micro-suite with fuel metering on and off (the
//! epoch deadline is always on). Run with `cargo bench --ignore-rust-version`;
//! `strictpy bench` gives the same figures as one table, next to CPython.
//!
//! Both sandboxes use the pooling allocator, as `strictpy bench` and the
//! service do, so the two share precompiled artefacts in the guest cache.

use std::{path::PathBuf, time::Duration};

use criterion::{BenchmarkId, Criterion};
use strictpy_sandbox::{CancelHandle, Job, PoolConfig, Sandbox, SandboxConfig};
use strictpy_types::{Limits, Policy, Status};

// The same snippets `strictpy bench` runs. This bench uses only some of that
// file's items (not the subprocess wrapper), hence the allow.
#[allow(dead_code)]
#[path = "../src/bench/snippets.rs"]
mod snippets;

/// The guest the Makefile built, or `$STRICTPY_GUEST`.
fn guest() -> PathBuf {
    std::env::var_os("STRICTPY_GUEST").map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/guest/strictpy-guest.wasm"),
        PathBuf::from,
    )
}

/// A pooled sandbox, with or without fuel metering.
fn sandbox(fuel: bool) -> Sandbox {
    let mut config = SandboxConfig::new(guest());
    config.fuel_metering = fuel;
    config.pool = Some(PoolConfig {
        max_instances: 4,
        max_memory_mb: Limits::default().memory_mb,
    });
    Sandbox::new(&config).unwrap_or_else(|e| panic!("cannot load the guest (make guest): {e}"))
}

/// A job with the default limits and allowlist.
fn job(code: &str) -> Job {
    Job {
        code: code.to_owned(),
        allowlist: Policy::default().allowed_modules,
        limits: Limits::default(),
        ..Job::default()
    }
}

/// Runs a job and insists it succeeded, so a broken guest cannot look fast.
fn run(sandbox: &Sandbox, job: &Job) {
    let outcome = sandbox.run(job);
    assert_eq!(
        outcome.status,
        Status::Succeeded,
        "bench job failed: {:?}",
        outcome.error
    );
}

fn static_check(c: &mut Criterion) {
    let policy = Policy::default();
    let allowlist = policy.allowed_modules.clone();
    let large = snippets::check_source(1000);
    let mut group = c.benchmark_group("static_check");
    for (name, source) in [("small", snippets::CHECK_SMALL), ("1000_lines", &large)] {
        assert!(strictpy_analyzer::check(source.as_bytes(), &policy, &allowlist).is_empty());
        group.bench_with_input(BenchmarkId::from_parameter(name), source, |b, s| {
            b.iter(|| strictpy_analyzer::check(s.as_bytes(), &policy, &allowlist));
        });
    }
    group.finish();
}

fn jobs(c: &mut Criterion) {
    let sandbox = sandbox(true);
    let empty = job(snippets::EMPTY);
    let hello = job(snippets::HELLO);
    let mut group = c.benchmark_group("job");
    // Instantiate to ready: only the `instantiate` phase of each run is
    // counted, so compiling and running `pass` is left out.
    group.bench_function("instantiate", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let (_, phases) = sandbox.run_with(&empty, &CancelHandle::new());
                total += phases.instantiate;
            }
            total
        });
    });
    group.bench_function("empty_end_to_end", |b| b.iter(|| run(&sandbox, &empty)));
    group.bench_function("hello_end_to_end", |b| b.iter(|| run(&sandbox, &hello)));
    group.finish();
}

fn suite(c: &mut Criterion) {
    let mut group = c.benchmark_group("suite");
    // Each snippet takes tens to hundreds of milliseconds, so a few samples
    // give a stable median and keep the whole suite to about a minute.
    group
        .sample_size(10)
        .warm_up_time(Duration::from_millis(200))
        .measurement_time(Duration::from_secs(2));
    for (label, fuel) in [("fuel_on", true), ("fuel_off", false)] {
        let sandbox = sandbox(fuel);
        for snippet in snippets::SUITE {
            let job = job(snippet.code);
            group.bench_function(BenchmarkId::new(label, snippet.name), |b| {
                b.iter(|| run(&sandbox, &job));
            });
        }
    }
    group.finish();
}

/// Short runs: these are for comparing builds on one machine, not for
/// publishing; `strictpy bench` is the reference table.
fn config() -> Criterion {
    Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
}

/// What `criterion_group!` and `criterion_main!` would generate, written out
/// so that it carries documentation.
fn main() {
    let mut c = config().configure_from_args();
    static_check(&mut c);
    jobs(&mut c);
    suite(&mut c);
    c.final_summary();
}
