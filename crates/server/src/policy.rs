//! The configured policy applied to a request: the allowlist a request may
//! extend and the static check, shared by job submission and `/v1/check`.

use std::collections::BTreeSet;

use serde_json::json;
use strictpy_types::{Policy, Verdict};

use crate::{AppState, auth::Principal, error::ApiError};

/// The configured allowlist plus `allow`, or `422` naming the module the
/// policy does not let calls add.
pub fn allowlist(policy: &Policy, allow: &[String]) -> Result<BTreeSet<String>, ApiError> {
    policy.effective_allowlist(allow).map_err(|e| {
        ApiError::unprocessable("module_not_allowable", e.to_string())
            .with_details(json!({ "field": "allow", "module": e.module }))
    })
}

/// Runs the analyzer; returns the source with a BOM dropped, or `422`
/// with the violations. Forbidden imports, builtins and attributes are
/// audited as attempts.
pub async fn static_check(
    state: &AppState,
    who: &Principal,
    code: String,
    allowlist: BTreeSet<String>,
) -> Result<String, ApiError> {
    // A small source is checked right here on the runtime thread: the
    // analyzer does that within a stack bound far below a runtime thread's
    // (`strictpy_analyzer::INLINE_CHECK_BYTES`), and it takes microseconds
    // (about 25 µs per KiB). A bigger one waits on the blocking pool, so a
    // runtime thread is never held for long; the analyzer then runs it on
    // its own large-stack thread.
    let violations = if code.len() <= strictpy_analyzer::INLINE_CHECK_BYTES {
        let v = strictpy_analyzer::check(code.as_bytes(), &state.config.policy, &allowlist);
        (v, code)
    } else {
        let policy = state.config.policy.clone();
        tokio::task::spawn_blocking(move || {
            let v = strictpy_analyzer::check(code.as_bytes(), &policy, &allowlist);
            (v, code)
        })
        .await
        .map_err(ApiError::internal)?
    };
    match violations {
        (v, code) if v.is_empty() => Ok(code
            .strip_prefix('\u{feff}')
            .map_or(code.clone(), str::to_owned)),
        (v, _) => {
            let attempts: Vec<_> = v
                .iter()
                .filter(|x| {
                    matches!(
                        x.rule,
                        Verdict::ForbiddenImport
                            | Verdict::ForbiddenBuiltin
                            | Verdict::ForbiddenAttribute
                    )
                })
                .map(|x| json!({ "rule": x.rule, "name": x.name, "line": x.line }))
                .collect();
            if !attempts.is_empty() {
                state.audit.record(
                    who.event("policy_violation")
                        .details(json!({ "violations": attempts })),
                );
            }
            let message = match v.as_slice() {
                [one] => one.message.clone(),
                [first, rest @ ..] => format!("{} (and {} more)", first.message, rest.len()),
                [] => String::new(),
            };
            Err(ApiError::unprocessable("policy_violation", message)
                .with_details(json!({ "violations": v })))
        }
    }
}
