//! Plain data shared by every strictpy crate: limits, policy, verdicts and outcomes.
//!
//! Nothing here does I/O or knows about wasmtime, HTTP or the parser, so every
//! other crate can depend on it without pulling anything heavy in.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

/// The modules user code may import when the operator configures nothing else
/// (the seed's `ALLOWED_MODULES`).
pub const DEFAULT_ALLOWED_MODULES: &[&str] = &[
    "datetime",
    "time",
    "json",
    "re",
    "math",
    "statistics",
    "collections",
    "itertools",
];

/// Builtins that are refused as bare names by default. `input` is deliberately
/// absent: it reads the job's own stdin.
pub const DEFAULT_FORBIDDEN_BUILTINS: &[&str] = &[
    "__import__",
    "eval",
    "exec",
    "compile",
    "open",
    "breakpoint",
    "globals",
    "locals",
    "vars",
    "help",
];

/// Attributes that lead from ordinary objects to interpreter internals (module
/// globals, frames, the class graph). `docs/security.md` explains each entry.
pub const DEFAULT_FORBIDDEN_ATTRIBUTES: &[&str] = &[
    "__subclasses__",
    "__globals__",
    "__builtins__",
    "__code__",
    "__closure__",
    "__bases__",
    "__base__",
    "__mro__",
    "__loader__",
    "__spec__",
    "__dict__",
    "__reduce__",
    "__reduce_ex__",
    "__self__",
    "__func__",
    "__objclass__",
    "__import__",
    "f_globals",
    "f_locals",
    "f_builtins",
    "f_back",
    "f_code",
    "gi_frame",
    "gi_code",
    "cr_frame",
    "cr_code",
    "ag_frame",
    "ag_code",
    "tb_frame",
    "tb_next",
];

/// The default cap on source size: 1 MiB.
pub const DEFAULT_MAX_SOURCE_BYTES: usize = 1024 * 1024;

/// The default cap on bracket and block nesting.
pub const DEFAULT_MAX_NESTING_DEPTH: usize = 100;

/// Resource limits for one run. Every field is a hard cap enforced by the sandbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct Limits {
    /// Wall-clock deadline in milliseconds, enforced by epoch interruption and a
    /// host-side timer.
    pub timeout_ms: u64,
    /// wasmtime fuel: roughly one unit per executed wasm instruction.
    pub fuel: u64,
    /// Cap on the guest's linear memory, in MiB.
    pub memory_mb: u64,
    /// Cap on captured stdout and on captured stderr, each, in bytes.
    pub max_output_bytes: u64,
}

impl Default for Limits {
    /// The seed's defaults: 5 s and 1024 MB. Fuel sits just above what 5 s of
    /// guest CPU burns on the reference machine (about 1.1e10 fuel per second
    /// in a tight interpreter loop, `strictpy bench`'s calibration row in
    /// docs/benchmarks.md), so on an idle machine the timeout fires first on a
    /// busy loop and fuel is the deterministic backstop.
    fn default() -> Self {
        Self {
            timeout_ms: 5_000,
            fuel: 60_000_000_000,
            memory_mb: 1024,
            max_output_bytes: 1024 * 1024,
        }
    }
}

impl Limits {
    /// The operator's default ceiling: what a request may ask for at most.
    pub fn default_max() -> Self {
        Self {
            timeout_ms: 60_000,
            fuel: 700_000_000_000,
            memory_mb: 2048,
            max_output_bytes: 16 * 1024 * 1024,
        }
    }

    /// Applies per-request overrides on top of `self`, refusing any value above
    /// `max` or equal to zero. The error names the offending field.
    pub fn with_overrides(
        &self,
        overrides: &LimitOverrides,
        max: &Limits,
    ) -> Result<Limits, LimitError> {
        fn pick(
            field: &'static str,
            base: u64,
            wanted: Option<u64>,
            max: u64,
        ) -> Result<u64, LimitError> {
            match wanted {
                None => Ok(base.min(max)),
                Some(0) => Err(LimitError {
                    field,
                    value: 0,
                    max,
                }),
                Some(v) if v > max => Err(LimitError {
                    field,
                    value: v,
                    max,
                }),
                Some(v) => Ok(v),
            }
        }
        Ok(Limits {
            timeout_ms: pick(
                "timeout_ms",
                self.timeout_ms,
                overrides.timeout_ms,
                max.timeout_ms,
            )?,
            fuel: pick("fuel", self.fuel, overrides.fuel, max.fuel)?,
            memory_mb: pick(
                "memory_mb",
                self.memory_mb,
                overrides.memory_mb,
                max.memory_mb,
            )?,
            max_output_bytes: pick(
                "max_output_bytes",
                self.max_output_bytes,
                overrides.max_output_bytes,
                max.max_output_bytes,
            )?,
        })
    }
}

/// Per-request limit overrides; `None` keeps the configured default.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct LimitOverrides {
    /// See [`Limits::timeout_ms`].
    pub timeout_ms: Option<u64>,
    /// See [`Limits::fuel`].
    pub fuel: Option<u64>,
    /// See [`Limits::memory_mb`].
    pub memory_mb: Option<u64>,
    /// See [`Limits::max_output_bytes`].
    pub max_output_bytes: Option<u64>,
}

/// A requested limit that is zero or above the configured maximum.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("limit `{field}` = {value} is outside 1..={max}")]
pub struct LimitError {
    /// The name of the limit, as it appears in requests.
    pub field: &'static str,
    /// The value that was asked for.
    pub value: u64,
    /// The configured maximum.
    pub max: u64,
}

/// The static and run-time policy: which modules user code may import and which
/// names and attributes the static check refuses.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Policy {
    /// Top-level modules user code may import. Submodules of an allowed module
    /// are allowed too.
    pub allowed_modules: BTreeSet<String>,
    /// Modules a single call may add to `allowed_modules` with `allow`. A module
    /// outside both sets can never be imported.
    pub allowable_modules: BTreeSet<String>,
    /// Bare names refused by the static check.
    pub forbidden_builtins: BTreeSet<String>,
    /// Attribute names refused by the static check.
    pub forbidden_attributes: BTreeSet<String>,
    /// Largest accepted source, in bytes.
    pub max_source_bytes: usize,
    /// Deepest accepted nesting of brackets and blocks.
    pub max_nesting_depth: usize,
}

impl Default for Policy {
    fn default() -> Self {
        let set = |items: &[&str]| items.iter().map(|s| (*s).to_owned()).collect();
        Self {
            allowed_modules: set(DEFAULT_ALLOWED_MODULES),
            allowable_modules: set(&[
                "random",
                "string",
                "functools",
                "operator",
                "fractions",
                "decimal",
                "heapq",
                "bisect",
                "textwrap",
                "dataclasses",
                "enum",
                "typing",
                "copy",
                "pprint",
                "base64",
                "hashlib",
                "uuid",
                "calendar",
                "array",
                "struct",
                "unicodedata",
                "abc",
            ]),
            forbidden_builtins: set(DEFAULT_FORBIDDEN_BUILTINS),
            forbidden_attributes: set(DEFAULT_FORBIDDEN_ATTRIBUTES),
            max_source_bytes: DEFAULT_MAX_SOURCE_BYTES,
            max_nesting_depth: DEFAULT_MAX_NESTING_DEPTH,
        }
    }
}

/// A module asked for with `allow` that the policy does not let calls add.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("module `{module}` may not be allowed by a call; the operator's policy does not permit it")]
pub struct AllowError {
    /// The refused module name.
    pub module: String,
}

impl Policy {
    /// The allowlist for one call: the configured modules plus `extra`, each of
    /// which must be in `allowable_modules` (or already allowed).
    pub fn effective_allowlist(&self, extra: &[String]) -> Result<BTreeSet<String>, AllowError> {
        let mut out = self.allowed_modules.clone();
        for module in extra {
            let module = module.trim();
            if self.allowed_modules.contains(module) {
                continue;
            }
            if !self.allowable_modules.contains(module) {
                return Err(AllowError {
                    module: module.to_owned(),
                });
            }
            out.insert(module.to_owned());
        }
        Ok(out)
    }
}

/// Why a run did not succeed. The first seven are static (the code never ran);
/// the rest come from the sandbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// The code does not parse.
    SyntaxError,
    /// An import of a module outside the allowlist.
    ForbiddenImport,
    /// A reference to a denied builtin such as `eval`.
    ForbiddenBuiltin,
    /// An escape-hatch attribute such as `__subclasses__`.
    ForbiddenAttribute,
    /// The source is larger than the policy allows.
    SourceTooLarge,
    /// Brackets or blocks nest deeper than the policy allows.
    TooDeeplyNested,
    /// Not UTF-8, a NUL byte, or a coding cookie other than utf-8.
    InvalidEncoding,
    /// An uncaught Python exception, or a non-zero `SystemExit`.
    Exception,
    /// The wall-clock deadline passed.
    Timeout,
    /// The fuel budget ran out.
    FuelExhausted,
    /// The guest wanted more memory than the cap.
    MemoryLimit,
    /// The guest overflowed the wasm stack.
    StackOverflow,
    /// The run was cancelled from outside.
    Cancelled,
    /// Something went wrong in strictpy itself, not in the program.
    Internal,
}

impl Verdict {
    /// True for the verdicts of the static check, which mean the code never ran.
    pub fn is_static(self) -> bool {
        matches!(
            self,
            Verdict::SyntaxError
                | Verdict::ForbiddenImport
                | Verdict::ForbiddenBuiltin
                | Verdict::ForbiddenAttribute
                | Verdict::SourceTooLarge
                | Verdict::TooDeeplyNested
                | Verdict::InvalidEncoding
        )
    }

    /// The snake_case name used on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::SyntaxError => "syntax_error",
            Verdict::ForbiddenImport => "forbidden_import",
            Verdict::ForbiddenBuiltin => "forbidden_builtin",
            Verdict::ForbiddenAttribute => "forbidden_attribute",
            Verdict::SourceTooLarge => "source_too_large",
            Verdict::TooDeeplyNested => "too_deeply_nested",
            Verdict::InvalidEncoding => "invalid_encoding",
            Verdict::Exception => "exception",
            Verdict::Timeout => "timeout",
            Verdict::FuelExhausted => "fuel_exhausted",
            Verdict::MemoryLimit => "memory_limit",
            Verdict::StackOverflow => "stack_overflow",
            Verdict::Cancelled => "cancelled",
            Verdict::Internal => "internal",
        }
    }
}

impl std::fmt::Display for Verdict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One finding of the static check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Violation {
    /// Which rule fired; always a static verdict.
    pub rule: Verdict,
    /// The offending name (module, builtin or attribute), when there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// 1-based line.
    pub line: u32,
    /// 1-based column, counted in characters.
    pub column: u32,
    /// A sentence for people.
    pub message: String,
}

/// The overall result of a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// The program ran to the end (or exited with code 0).
    Succeeded,
    /// The program ran and failed: an exception, a limit, or an internal error.
    Failed,
    /// The static check refused the program; it never ran.
    Rejected,
}

/// What the run used. Always present, also on failure.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Usage {
    /// Fuel burned by the guest, including interpreter work for this job.
    pub fuel_consumed: u64,
    /// Wall time from instantiation to the end of the run, in milliseconds.
    pub wall_time_ms: f64,
    /// The largest linear memory the guest had, in bytes.
    pub memory_peak_bytes: u64,
}

/// Why a run failed, in a shape clients can act on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RunError {
    /// The verdict.
    pub kind: Verdict,
    /// A sentence for people.
    pub message: String,
    /// The Python exception class, for `exception` (and `memory_limit` when it
    /// surfaced as `MemoryError`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exception_type: Option<String>,
    /// The formatted Python traceback, depth-capped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traceback: Option<String>,
    /// The value of the limit that fired (ms, fuel units, MiB).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u64>,
    /// The `SystemExit` code of a non-zero exit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i64>,
    /// Every static-check finding, for rejected programs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub violations: Option<Vec<Violation>>,
}

impl RunError {
    /// An error with only a kind and a message.
    pub fn new(kind: Verdict, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
            exception_type: None,
            traceback: None,
            limit: None,
            exit_code: None,
            violations: None,
        }
    }
}

/// Everything a run produced.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Outcome {
    /// Succeeded, failed or rejected.
    pub status: Status,
    /// The program's stdout (lossily decoded as UTF-8), up to the output cap.
    pub stdout: String,
    /// The program's stderr, up to the output cap.
    pub stderr: String,
    /// True when stdout went past the cap and was cut.
    pub stdout_truncated: bool,
    /// True when stderr went past the cap and was cut.
    pub stderr_truncated: bool,
    /// The JSON value of the program's global `result`, if it left one.
    pub result: Option<serde_json::Value>,
    /// Why the run failed; `None` on success.
    pub error: Option<RunError>,
    /// What the run used.
    pub usage: Usage,
}

impl Outcome {
    /// The outcome of a program the static check refused: nothing ran.
    pub fn rejected(violations: Vec<Violation>) -> Self {
        let first = violations.first();
        let kind = first.map_or(Verdict::Internal, |v| v.rule);
        let message = match (first, violations.len()) {
            (Some(v), 1) => v.message.clone(),
            (Some(v), n) => format!("{} (and {} more violations)", v.message, n - 1),
            (None, _) => "rejected".to_owned(),
        };
        Self {
            status: Status::Rejected,
            stdout: String::new(),
            stderr: String::new(),
            stdout_truncated: false,
            stderr_truncated: false,
            result: None,
            error: Some(RunError {
                violations: Some(violations),
                ..RunError::new(kind, message)
            }),
            usage: Usage::default(),
        }
    }

    /// A failed outcome with only an error of `kind`: for runs that ended
    /// before the program could produce anything (cancelled while queued, a
    /// worker that stopped, an internal error).
    pub fn failed(kind: Verdict, message: impl Into<String>) -> Self {
        Self {
            status: Status::Failed,
            stdout: String::new(),
            stderr: String::new(),
            stdout_truncated: false,
            stderr_truncated: false,
            result: None,
            error: Some(RunError::new(kind, message)),
            usage: Usage::default(),
        }
    }

    /// The verdict: `None` for success.
    pub fn verdict(&self) -> Option<Verdict> {
        self.error.as_ref().map(|e| e.kind)
    }
}

/// Where a job of the HTTP service is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum JobStatus {
    /// Accepted and waiting for a worker.
    Queued,
    /// A worker is running it.
    Running,
    /// It ran and succeeded.
    Succeeded,
    /// It ran and failed, or the worker running it stopped.
    Failed,
    /// It was cancelled, before or while it ran.
    Cancelled,
}

impl JobStatus {
    /// Every status, in life order.
    pub const ALL: [JobStatus; 5] = [
        JobStatus::Queued,
        JobStatus::Running,
        JobStatus::Succeeded,
        JobStatus::Failed,
        JobStatus::Cancelled,
    ];

    /// The snake_case name used on the wire and in storage.
    pub fn as_str(self) -> &'static str {
        match self {
            JobStatus::Queued => "queued",
            JobStatus::Running => "running",
            JobStatus::Succeeded => "succeeded",
            JobStatus::Failed => "failed",
            JobStatus::Cancelled => "cancelled",
        }
    }

    /// Parses a name produced by [`JobStatus::as_str`].
    pub fn parse(name: &str) -> Option<JobStatus> {
        JobStatus::ALL.into_iter().find(|s| s.as_str() == name)
    }

    /// True once the job can change no more.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            JobStatus::Succeeded | JobStatus::Failed | JobStatus::Cancelled
        )
    }
}

impl std::fmt::Display for JobStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overrides_above_max_name_the_field() {
        let err = Limits::default()
            .with_overrides(
                &LimitOverrides {
                    memory_mb: Some(1 << 20),
                    ..Default::default()
                },
                &Limits::default_max(),
            )
            .unwrap_err();
        assert_eq!(err.field, "memory_mb");
    }

    #[test]
    fn allow_is_bounded_by_policy() {
        let p = Policy::default();
        let allowed = p.effective_allowlist(&["random".into()]).unwrap();
        assert!(allowed.contains("random") && allowed.contains("json"));
        assert_eq!(
            p.effective_allowlist(&["os".into()]).unwrap_err().module,
            "os"
        );
    }

    #[test]
    fn verdict_names_match_serde() {
        for v in [
            Verdict::SyntaxError,
            Verdict::FuelExhausted,
            Verdict::Internal,
        ] {
            assert_eq!(serde_json::to_value(v).unwrap(), v.as_str());
        }
    }
}
