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

/// Sources up to this size are checked without the hop to tokio's blocking
/// pool: the request's thread waits for the analyzer's own large-stack
/// worker (which is what keeps any input from overflowing a runtime
/// thread's stack). The analyzer is linear (about 25 µs per KiB: the
/// bench's 1000-line file of 32 KiB takes 0.75 ms), so that wait is at most
/// about 50 µs, less than the extra hand-off costs a small job. Bigger
/// sources, up to the body cap, wait on the blocking pool instead, so a
/// runtime thread is never held for long.
const INLINE_CHECK_BYTES: usize = 2048;

/// Runs the analyzer (off the async threads for all but small sources, see
/// [`INLINE_CHECK_BYTES`]); returns the source with a BOM dropped, or `422`
/// with the violations. Forbidden imports, builtins and attributes are
/// audited as attempts.
pub async fn static_check(
    state: &AppState,
    who: &Principal,
    code: String,
    allowlist: BTreeSet<String>,
) -> Result<String, ApiError> {
    let violations = if code.len() <= INLINE_CHECK_BYTES {
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
