//! Jobs start from a snapshot of the initialised VM; whatever must differ per
//! job is fresh again after restore, and what the snapshot pre-loaded is not
//! thereby allowed.

use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::json;
use strictpy_types::Verdict;

use crate::{allowlist, job, run, sandbox};

fn result_of(code: &str, extra: &[&str]) -> serde_json::Value {
    let mut j = job(code);
    j.allowlist = allowlist(extra);
    let out = sandbox().run(&j);
    assert!(out.error.is_none(), "{code}: {:?}", out.error);
    out.result.unwrap_or_default()
}

#[test]
fn random_module_state_is_fresh_per_job() {
    let code = "import random\nresult = [random.random(), random.getrandbits(64)]";
    assert_ne!(result_of(code, &["random"]), result_of(code, &["random"]));
}

#[test]
fn new_generators_are_seeded_freshly_per_job() {
    // `random.Random()` seeds from Rust's ThreadRng, whose state the snapshot
    // froze; the guest re-seeds it from WASI entropy for every job.
    let code = "import random\nresult = random.Random().random()";
    assert_ne!(result_of(code, &["random"]), result_of(code, &["random"]));
}

#[test]
fn clocks_are_live_not_frozen() {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs_f64();
    let value = result_of("import time\nresult = time.time()", &[]);
    let guest_now = value.as_f64().expect("a float");
    assert!(
        (guest_now - now).abs() < 120.0,
        "guest {guest_now} vs host {now}"
    );
    let a = result_of("import time\nresult = time.time_ns()", &[]);
    let b = result_of("import time\nresult = time.time_ns()", &[]);
    assert_ne!(a, b);
}

#[test]
fn a_seed_still_reproduces_everything_after_restore() {
    let code = "import random\nresult = [random.random(), random.Random().random()]";
    let run_seeded = || {
        let mut j = job(code);
        j.allowlist = allowlist(&["random"]);
        j.seed = Some(7);
        sandbox().run(&j)
    };
    let (a, b) = (run_seeded(), run_seeded());
    assert!(a.error.is_none(), "{:?}", a.error);
    assert_eq!(a.result, b.result);
    assert_eq!(a.usage.fuel_consumed, b.usage.fuel_consumed);
}

#[test]
fn preloaded_modules_still_obey_the_allowlist() {
    // The snapshot imported statistics, random and the default modules. A job
    // whose allowlist lacks them may not import them.
    for module in ["statistics", "random", "json", "re"] {
        let mut j = job(&format!("import {module}"));
        j.allowlist = ["math".to_owned()].into_iter().collect();
        let out = sandbox().run(&j);
        let err = out
            .error
            .unwrap_or_else(|| panic!("import {module} must fail"));
        assert_eq!(err.kind, Verdict::Exception, "{module}");
        assert_eq!(
            err.exception_type.as_deref(),
            Some("ImportError"),
            "{module}"
        );
    }
}

#[test]
fn jobs_do_not_see_each_others_globals_on_the_snapshot_path() {
    let a = run("secret = 'from job A'\nimport json\njson.mark = secret\nresult = 1");
    assert_eq!(a.result, Some(json!(1)));
    let b = run("import json\nresult = [getattr(json, 'mark', None), 'secret' in dir()]");
    assert_eq!(b.result, Some(json!([null, false])));
}
