//! A pooled slot is reused job after job, its working set kept resident
//! (`resident.rs`), yet nothing passes between the jobs it runs: each starts
//! from the snapshot's exact contents. A one-slot pool makes every job land in
//! the same slot; the fuel a seeded job burns is the witness that its memory
//! started the same, since any leftover byte that the interpreter reads
//! (a dict entry, an allocator free list, a refcount) changes the count.
//!
//! These run the real guest: `make guest` (or `$STRICTPY_GUEST`) first.

use std::path::PathBuf;

use strictpy_sandbox::{Job, PoolConfig, Sandbox, SandboxConfig};
use strictpy_types::{Limits, Outcome, Policy, Status, Verdict};

/// The guest the Makefile built, or `$STRICTPY_GUEST`.
fn guest() -> PathBuf {
    std::env::var_os("STRICTPY_GUEST").map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/guest/strictpy-guest.wasm"),
        PathBuf::from,
    )
}

/// A sandbox whose pool has one slot, so every job reuses the same memory.
fn one_slot() -> Sandbox {
    let mut config = SandboxConfig::new(guest());
    config.pool = Some(PoolConfig {
        max_instances: 1,
        max_memory_mb: Limits::default().memory_mb,
    });
    Sandbox::new(&config).unwrap_or_else(|e| panic!("cannot load the guest (make guest): {e}"))
}

/// A seeded job with the default limits and allowlist, plus `random`.
fn job(code: &str) -> Job {
    let mut allowlist = Policy::default().allowed_modules;
    allowlist.insert("random".to_owned());
    Job {
        code: code.to_owned(),
        allowlist,
        limits: Limits::default(),
        seed: Some(7),
        ..Job::default()
    }
}

/// Writes everywhere a job can: a global, a module attribute, a builtin, a
/// class attribute, the `random` state, and a few MiB of list and bytes
/// (fresh heap pages), then frees part of it (allocator state).
const WRITER: &str = "\
import json, random
json.leaked = 'A'
__builtins__.leaked = 1
dict.__doc__
random.seed(99)
big = [i * 3 for i in range(200_000)]
blob = bytearray(b'\\xab') * (3 << 20)
keep = big[::7]
del big
leaked_global = 1
result = len(keep) + len(blob)
";

/// Looks for every trace the writer could leave, and allocates so that a
/// stale free list or heap page would show in its fuel.
const READER: &str = "\
import json, random
fresh = [i for i in range(50_000)]
buf = bytearray(1 << 20)
result = [
    hasattr(json, 'leaked'),
    hasattr(__builtins__, 'leaked'),
    'leaked_global' in globals() or 'keep' in globals() or 'blob' in globals(),
    random.random(),
    sum(buf),
    len(fresh),
]
";

fn succeeded(out: &Outcome) -> &Outcome {
    assert_eq!(out.status, Status::Succeeded, "{:?}", out.error);
    out
}

#[test]
fn a_reused_slot_starts_every_job_from_the_snapshot() {
    // The reference: the reader as the first job of a fresh pool.
    let reference = succeeded(&one_slot().run(&job(READER))).clone();
    let expected = reference.result.clone().expect("a result");
    let flags = expected.as_array().expect("a list");
    assert_eq!(flags[..3], vec![serde_json::json!(false); 3][..]);
    assert_eq!(flags[4], serde_json::json!(0));

    let sandbox = one_slot();
    // Enough rounds to cover the slot's warm-up and a regrooming.
    for round in 0..70 {
        let w = sandbox.run(&job(WRITER));
        assert_eq!(w.status, Status::Succeeded, "round {round}: {:?}", w.error);
        let r = succeeded(&sandbox.run(&job(READER))).clone();
        assert_eq!(r.result, reference.result, "round {round}");
        assert_eq!(r.stdout, reference.stdout, "round {round}");
        assert_eq!(
            r.usage.fuel_consumed, reference.usage.fuel_consumed,
            "round {round}: the reader's fuel changed after a writer in the same slot"
        );
        assert_eq!(
            r.usage.memory_peak_bytes, reference.usage.memory_peak_bytes,
            "round {round}"
        );
    }
}

#[test]
fn the_memory_cap_holds_in_a_reused_slot_and_the_slot_recovers() {
    let sandbox = one_slot();
    let mut hog = job("x = bytearray(64 << 20)\nresult = len(x)");
    hog.limits.memory_mb = 48;
    let baseline = succeeded(&sandbox.run(&job(READER))).clone();
    for round in 0..10 {
        let out = sandbox.run(&hog);
        let err = out.error.as_ref().expect("over the cap");
        assert_eq!(err.kind, Verdict::MemoryLimit, "round {round}: {err:?}");
        let r = succeeded(&sandbox.run(&job(READER))).clone();
        assert_eq!(r.result, baseline.result, "round {round}");
        assert_eq!(
            r.usage.fuel_consumed, baseline.usage.fuel_consumed,
            "round {round}"
        );
    }
}

#[test]
fn a_spent_job_holds_its_slot_until_dropped_and_the_slot_is_then_clean() {
    let sandbox = one_slot();
    let reference = succeeded(&sandbox.run(&job(READER))).clone();
    let cancel = strictpy_sandbox::CancelHandle::new();
    for round in 0..3 {
        let (w, _, spent) = sandbox.run_deferred(&job(WRITER), &cancel);
        assert_eq!(w.status, Status::Succeeded, "round {round}: {:?}", w.error);
        // The writer's slot is not reset yet, so the one-slot pool is full:
        // a job now is refused rather than handed the writer's memory.
        let refused = sandbox.run(&job(READER));
        let err = refused.error.as_ref().expect("the pool is full");
        assert_eq!(err.kind, Verdict::Internal, "round {round}: {err:?}");
        drop(spent);
        let r = succeeded(&sandbox.run(&job(READER))).clone();
        assert_eq!(r.result, reference.result, "round {round}");
        assert_eq!(
            r.usage.fuel_consumed, reference.usage.fuel_consumed,
            "round {round}: the reader's fuel changed after a deferred reset"
        );
    }
}
