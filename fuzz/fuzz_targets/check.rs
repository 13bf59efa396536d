//! Fuzz target: `strictpy_analyzer::check` with the default policy must return
//! (sorted, 1-based violations) on any input, never panic, hang or overflow.

#![no_main]

use libfuzzer_sys::fuzz_target;
use strictpy_types::Policy;

fuzz_target!(|data: &[u8]| {
    let policy = Policy::default();
    let violations = strictpy_analyzer::check(data, &policy, &policy.allowed_modules);
    for v in &violations {
        assert!(v.line >= 1 && v.column >= 1, "{v:?}");
        assert!(v.rule.is_static(), "{v:?}");
    }
    assert!(
        violations
            .windows(2)
            .all(|w| (w[0].line, w[0].column) <= (w[1].line, w[1].column)),
        "violations are not sorted"
    );
    // `check` turns a panic on its worker thread into a violation. libfuzzer-sys's
    // panic hook aborts before that happens, so this only matters if the hook is
    // ever not installed: the failure must still count as a crash.
    assert!(
        !violations
            .iter()
            .any(|v| v.message.contains("analyzer failed")),
        "the analyzer failed: {violations:?}"
    );
});
