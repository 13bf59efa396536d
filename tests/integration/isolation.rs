//! Nothing carries over between jobs: context and result round trips,
//! randomness, seeds, and state.

use serde_json::json;
use strictpy_types::{Status, Verdict};

use crate::{allowlist, job, run, sandbox};

#[test]
fn context_in_result_out() {
    let mut j = job("result = {'total': a + sum(b), 'name': c['d'].upper(), 'none': e}");
    j.context = Some(json!({"a": 1, "b": [2, 3], "c": {"d": "x"}, "e": null}));
    let out = sandbox().run(&j);
    assert_eq!(out.status, Status::Succeeded, "{:?}", out.error);
    assert_eq!(
        out.result,
        Some(json!({"total": 6, "name": "X", "none": null}))
    );
}

#[test]
fn non_identifier_context_keys_are_errors() {
    let mut j = job("print(1)");
    j.context = Some(json!({"not valid": 1}));
    let out = sandbox().run(&j);
    let err = out.error.expect("must fail");
    assert_eq!(err.kind, Verdict::Exception);
    assert!(err.message.contains("not a Python identifier"), "{err:?}");
    assert_eq!(out.stdout, "");
}

#[test]
fn unserialisable_result_is_a_type_error() {
    for code in [
        "result = {1, 2}",
        "result = object()",
        "result = float('nan')",
    ] {
        let out = run(code);
        let err = out.error.unwrap_or_else(|| panic!("{code} must fail"));
        assert_eq!(err.kind, Verdict::Exception, "{code}");
        assert_eq!(err.exception_type.as_deref(), Some("TypeError"), "{code}");
        assert!(
            err.message.contains("not JSON-serialisable"),
            "{code}: {}",
            err.message
        );
    }
}

#[test]
fn no_result_means_null() {
    let out = run("x = 1");
    assert_eq!(out.status, Status::Succeeded);
    assert_eq!(out.result, None);
}

fn random_job(seed: Option<u64>) -> strictpy_sandbox::Job {
    let mut j = job(
        "import random\nprint(random.random())\nd = {str(i): i for i in range(50)}\nprint(list({'a', 'b', 'c', 'd', 'e'}))\nresult = random.randint(0, 10**9)",
    );
    j.allowlist = allowlist(&["random"]);
    j.seed = seed;
    j
}

#[test]
fn randomness_differs_between_runs() {
    let a = sandbox().run(&random_job(None));
    let b = sandbox().run(&random_job(None));
    assert_eq!(a.status, Status::Succeeded, "{:?}", a.error);
    assert_ne!(a.stdout, b.stdout);
    assert_ne!(a.result, b.result);
}

#[test]
fn a_seed_makes_the_run_reproducible_fuel_included() {
    let runs: Vec<_> = (0..3)
        .map(|_| sandbox().run(&random_job(Some(42))))
        .collect();
    assert_eq!(runs[0].status, Status::Succeeded, "{:?}", runs[0].error);
    for r in &runs[1..] {
        assert_eq!(r.stdout, runs[0].stdout);
        assert_eq!(r.result, runs[0].result);
        assert_eq!(r.usage.fuel_consumed, runs[0].usage.fuel_consumed);
    }
    let other = sandbox().run(&random_job(Some(43)));
    assert_ne!(other.stdout, runs[0].stdout);
}

#[test]
fn module_and_builtin_state_does_not_carry_over() {
    let a = run(
        "import json, math\njson.leaked = 'A'\nmath.pi = 3\n__builtins__.leaked = 1\nresult = 'set'",
    );
    assert_eq!(a.result, Some(json!("set")), "{:?}", a.error);
    let b = run(
        "import json, math\nresult = [hasattr(json, 'leaked'), math.pi == 3, hasattr(__builtins__, 'leaked')]",
    );
    assert_eq!(
        b.result,
        Some(json!([false, false, false])),
        "{:?}",
        b.error
    );
}

/// The `__main__` module is built once, in the snapshot (guest
/// `prepare_job`), yet every job starts with its own: nothing a job binds in
/// it, its context keys, its classes, a rebound dunder, reaches the next.
#[test]
fn the_main_namespace_is_fresh_for_every_job() {
    let mut first =
        job("leaked = 1\n__doc__ = 'A'\nclass K: pass\nresult = [K.__module__, from_context]");
    first.context = Some(json!({"from_context": 2}));
    let a = sandbox().run(&first);
    assert_eq!(a.result, Some(json!(["__main__", 2])), "{:?}", a.error);
    let b = run(
        "names = dir()\nresult = [sorted(n for n in names if not n.startswith('__')), __doc__, __name__]",
    );
    assert_eq!(
        b.result,
        Some(json!([[], null, "__main__"])),
        "{:?}",
        b.error
    );
}
