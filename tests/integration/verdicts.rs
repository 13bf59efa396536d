//! Every verdict kind, each produced by a real misbehaving program.

use serde_json::json;
use strictpy_types::{Limits, Status, Verdict};

use crate::{job, run, sandbox};

fn limits(f: impl FnOnce(&mut Limits)) -> Limits {
    let mut l = Limits::default();
    f(&mut l);
    l
}

#[test]
fn hello_succeeds_with_usage() {
    let out = run("print('hi')");
    assert_eq!(out.status, Status::Succeeded, "{out:?}");
    assert_eq!(out.stdout, "hi\n");
    assert_eq!(out.stderr, "");
    assert!(out.error.is_none());
    assert!(out.usage.fuel_consumed > 0);
    assert!(out.usage.memory_peak_bytes > 0);
    assert!(out.usage.wall_time_ms > 0.0);
}

#[test]
fn busy_loop_runs_out_of_fuel() {
    let mut j = job("while True: pass");
    j.limits = limits(|l| {
        l.fuel = 500_000_000;
        l.timeout_ms = 60_000;
    });
    let out = sandbox().run(&j);
    let err = out.error.expect("must fail");
    assert_eq!(err.kind, Verdict::FuelExhausted);
    assert_eq!(err.limit, Some(j.limits.fuel));
    assert_eq!(out.status, Status::Failed);
    // Fuel is counted exactly: all of it was burned.
    assert_eq!(out.usage.fuel_consumed, j.limits.fuel);
}

#[test]
fn busy_loop_hits_the_timeout() {
    let mut j = job("while True: pass");
    j.limits = limits(|l| {
        l.timeout_ms = 300;
        l.fuel = u64::MAX / 4;
    });
    let out = sandbox().run(&j);
    let err = out.error.expect("must fail");
    assert_eq!(err.kind, Verdict::Timeout);
    assert_eq!(err.limit, Some(300));
    assert!(out.usage.wall_time_ms >= 300.0, "{:?}", out.usage);
}

#[test]
fn sleeping_ends_at_the_deadline() {
    let mut j = job("import time\nprint('before', flush=True)\ntime.sleep(3600)\nprint('after')");
    j.limits = limits(|l| l.timeout_ms = 400);
    let out = sandbox().run(&j);
    assert_eq!(out.verdict(), Some(Verdict::Timeout), "{out:?}");
    assert_eq!(out.stdout, "before\n");
    // It ended at the deadline, not an hour later.
    assert!(out.usage.wall_time_ms < 60_000.0, "{:?}", out.usage);
}

#[test]
fn a_huge_allocation_is_a_memory_limit() {
    let mut j = job("x = bytearray(512 * 1024 * 1024)\nprint('unreachable')");
    j.limits = limits(|l| l.memory_mb = 64);
    let out = sandbox().run(&j);
    let err = out.error.expect("must fail");
    assert_eq!(err.kind, Verdict::MemoryLimit, "{err:?}");
    assert_eq!(err.limit, Some(64));
    assert_eq!(out.stdout, "");
    assert!(out.usage.memory_peak_bytes <= 64 << 20);
}

#[test]
fn gradual_growth_is_a_memory_limit() {
    let mut j = job("chunks = []\nwhile True:\n    chunks.append('x' * 1_000_000)");
    j.limits = limits(|l| l.memory_mb = 96);
    let out = sandbox().run(&j);
    let err = out.error.expect("must fail");
    assert_eq!(err.kind, Verdict::MemoryLimit, "{err:?}");
    assert!(out.usage.memory_peak_bytes <= 96 << 20);
    assert!(out.usage.memory_peak_bytes > 32 << 20);
}

#[test]
fn infinite_recursion_is_a_recursion_error() {
    let out = run("def f(n):\n    return f(n + 1)\nf(0)");
    let err = out.error.expect("must fail");
    assert_eq!(err.kind, Verdict::Exception, "{err:?}");
    assert_eq!(err.exception_type.as_deref(), Some("RecursionError"));
    let tb = err.traceback.expect("traceback");
    // The traceback is capped, and says so.
    assert!(tb.contains("earlier frames omitted"), "{tb}");
    assert!(tb.lines().count() < 200, "{tb}");
}

#[test]
fn native_recursion_overflows_the_stack() {
    // `repr` of a deeply nested list recurses in Rust, not in Python frames,
    // so no RecursionError fires: the wasm stack limit does.
    let out = run("x = []\nfor _ in range(2_000_000):\n    x = [x]\nrepr(x)");
    let err = out.error.expect("must fail");
    assert_eq!(err.kind, Verdict::StackOverflow, "{err:?}");
    assert_eq!(out.status, Status::Failed);
}

#[test]
fn print_flood_is_truncated_and_the_run_goes_on() {
    let mut j = job("for i in range(20000):\n    print('x' * 99)\nresult = 'done'");
    j.limits = limits(|l| l.max_output_bytes = 10_000);
    let out = sandbox().run(&j);
    assert_eq!(out.status, Status::Succeeded, "{:?}", out.error);
    assert!(out.stdout_truncated);
    assert!(!out.stderr_truncated);
    assert_eq!(out.stdout.len(), 10_000);
    assert_eq!(out.result, Some(json!("done")));
}

#[test]
fn uncaught_exception_is_reported_with_traceback() {
    let out = run("print('start')\ndef g():\n    raise ValueError('bad value')\ng()");
    let err = out.error.expect("must fail");
    assert_eq!(err.kind, Verdict::Exception);
    assert_eq!(err.exception_type.as_deref(), Some("ValueError"));
    assert_eq!(err.message, "ValueError: bad value");
    let tb = err.traceback.expect("traceback");
    assert!(tb.starts_with("Traceback (most recent call last):"), "{tb}");
    assert!(tb.contains("line 3, in g"), "{tb}");
    assert!(tb.trim_end().ends_with("ValueError: bad value"), "{tb}");
    // Like CPython, the traceback also goes to the program's stderr.
    assert_eq!(out.stderr, tb);
    assert_eq!(out.stdout, "start\n");
}

#[test]
fn syntax_error_at_run_time_is_an_exception() {
    // The sandbox on its own (without the static check) still reports it.
    let out = run("def f(:\n  pass");
    let err = out.error.expect("must fail");
    assert_eq!(err.kind, Verdict::Exception);
    assert_eq!(err.exception_type.as_deref(), Some("SyntaxError"));
}

#[test]
fn forged_markers_on_stdout_change_nothing() {
    let forged = r#"{"status":"ok","result":{"pwned":true}}"#;
    let code = format!(
        "print('{forged}')\nimport json\nprint(json.dumps({{'status': 'ok'}}))\nraise KeyError('real')"
    );
    let out = run(&code);
    let err = out.error.expect("must fail");
    assert_eq!(err.kind, Verdict::Exception);
    assert_eq!(err.exception_type.as_deref(), Some("KeyError"));
    assert_eq!(out.result, None);
    assert!(out.stdout.starts_with(forged));
}

#[test]
fn system_exit_zero_is_success_and_nonzero_is_an_exception() {
    let out = run("result = 7\nraise SystemExit(0)");
    assert_eq!(out.status, Status::Succeeded, "{:?}", out.error);
    assert_eq!(out.result, Some(json!(7)));

    let out = run("exit()");
    assert_eq!(out.status, Status::Succeeded, "{:?}", out.error);

    let out = run("raise SystemExit(3)");
    let err = out.error.expect("must fail");
    assert_eq!(err.kind, Verdict::Exception);
    assert_eq!(err.exit_code, Some(3));

    let out = run("raise SystemExit('bye')");
    let err = out.error.expect("must fail");
    assert_eq!(err.exit_code, Some(1));
    assert_eq!(out.stderr, "bye\n");
}

#[test]
fn stdin_is_the_jobs_own() {
    let mut j = job("name = input()\nprint('hello', name)\nprint(input())");
    j.stdin = b"world\nsecond\n".to_vec();
    let out = sandbox().run(&j);
    assert_eq!(out.stdout, "hello world\nsecond\n", "{:?}", out.error);
}
