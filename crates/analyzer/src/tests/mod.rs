//! Unit tests of the analyzer, one file per feature, each driven by a table.

use strictpy_types::{Policy, Verdict, Violation};

mod bombs;
mod context_keys;
mod encoding;
mod inline;
mod never_panics;
mod rules;
mod syntax;

/// Checks `source` with the default policy and its default allowlist.
fn run(source: &str) -> Vec<Violation> {
    run_bytes(source.as_bytes())
}

/// Checks raw bytes with the default policy and its default allowlist.
fn run_bytes(source: &[u8]) -> Vec<Violation> {
    let policy = Policy::default();
    crate::check(source, &policy, &policy.allowed_modules)
}

/// `(rule, name, line, column)` of one violation, for compact assertions.
type Located<'a> = (Verdict, Option<&'a str>, u32, u32);

/// `(rule, name, line, column)` of each violation, for compact assertions.
fn summary(violations: &[Violation]) -> Vec<Located<'_>> {
    violations
        .iter()
        .map(|v| (v.rule, v.name.as_deref(), v.line, v.column))
        .collect()
}
