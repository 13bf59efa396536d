//! Turning how a run ended (a trap, a host stop, the guest's own report) into a
//! typed [`Outcome`].
//!
//! Traps are matched by downcasting to wasmtime's `Trap`, `I32Exit` and our
//! own [`HostStop`], never by looking at error strings. The guest's own
//! verdict document is read by `strictpy_protocol::outcome`, which holds its
//! shape and caps for both sides.

use strictpy_protocol::{Input, outcome};
use strictpy_types::{Limits, Outcome, RunError, Status, Usage, Verdict};
use wasmtime::Trap;
use wasmtime_wasi::I32Exit;

use crate::{HostStop, Job};

/// Why the host stopped waiting for the guest, if it did.
pub enum Stop {
    /// The call returned an error: a trap, an exit, or a host stop.
    Error(wasmtime::Error),
    /// The host-side timer fired while the guest was in a host call.
    Deadline,
    /// The job was cancelled while the guest was in a host call.
    Cancelled,
}

/// Everything known when a run is over.
pub struct Ending {
    /// How the call ended; `None` when `_start` returned normally.
    pub stop: Option<Stop>,
    /// The guest's verdict document, if it sent one.
    pub verdict: Option<Vec<u8>>,
    /// True if the limiter refused a memory growth.
    pub memory_denied: bool,
    /// The limits that applied.
    pub limits: Limits,
    /// Captured stdout and its truncation flag.
    pub stdout: (Vec<u8>, bool),
    /// Captured stderr and its truncation flag.
    pub stderr: (Vec<u8>, bool),
    /// What the run used.
    pub usage: Usage,
}

/// Encodes a job for the guest (the document is `strictpy_protocol::Input`).
pub fn encode_input(job: &Job) -> Result<Vec<u8>, String> {
    let context = job
        .context
        .as_ref()
        .map(serde_json::value::to_raw_value)
        .transpose()
        .map_err(|e| format!("cannot encode the context: {e}"))?;
    serde_json::to_vec(&Input {
        code: job.code.clone(),
        context,
        allow: job.allowlist.iter().cloned().collect(),
        traceback_limit: None,
        compiled: job.compiled.as_deref().map(strictpy_protocol::hex_encode),
        compile_only: job.compile_only,
    })
    .map_err(|e| format!("cannot encode the job: {e}"))
}

/// An `internal` outcome with no output.
pub fn internal(message: &str, usage: Usage) -> Outcome {
    Outcome {
        usage,
        ..Outcome::failed(Verdict::Internal, message)
    }
}

fn limit_error(kind: Verdict, limit: u64, message: String) -> RunError {
    RunError {
        limit: Some(limit),
        ..RunError::new(kind, message)
    }
}

/// Decides the outcome of a finished run.
pub fn decide(end: Ending) -> Outcome {
    let limits = end.limits;
    let memory_error = || {
        limit_error(
            Verdict::MemoryLimit,
            limits.memory_mb,
            format!(
                "the program exceeded the memory limit of {} MiB",
                limits.memory_mb
            ),
        )
    };
    let timeout = || {
        limit_error(
            Verdict::Timeout,
            limits.timeout_ms,
            format!(
                "the program exceeded the time limit of {} ms",
                limits.timeout_ms
            ),
        )
    };
    let cancelled = || RunError::new(Verdict::Cancelled, "the job was cancelled");

    let mut result = None;
    let error: Option<RunError> = match end.stop {
        Some(Stop::Deadline) => Some(timeout()),
        Some(Stop::Cancelled) => Some(cancelled()),
        Some(Stop::Error(e)) => {
            if let Some(stop) = e.downcast_ref::<HostStop>() {
                Some(match stop {
                    HostStop::Deadline => timeout(),
                    HostStop::Cancelled => cancelled(),
                })
            } else if let Some(exit) = e.downcast_ref::<I32Exit>() {
                // The guest returns from main normally; an explicit exit
                // means something below Python called `exit()`. Trust the
                // report if there is one.
                match outcome::decode(end.verdict.as_deref(), end.memory_denied, &limits) {
                    Ok((r, err)) => {
                        result = r;
                        err
                    }
                    Err(_) if exit.0 == 0 => None,
                    Err(_) => Some(RunError::new(
                        Verdict::Internal,
                        format!("the guest exited with code {} and no verdict", exit.0),
                    )),
                }
            } else if let Some(trap) = e.downcast_ref::<Trap>() {
                Some(match trap {
                    Trap::OutOfFuel => limit_error(
                        Verdict::FuelExhausted,
                        limits.fuel,
                        format!("the program used up its fuel budget of {}", limits.fuel),
                    ),
                    Trap::StackOverflow => RunError::new(
                        Verdict::StackOverflow,
                        "the program overflowed the wasm stack (recursion too deep in native code)",
                    ),
                    Trap::Interrupt => timeout(),
                    // Rust's allocation-failure abort shows up as an
                    // `unreachable` trap; after a refused growth, that is
                    // the memory limit.
                    _ if end.memory_denied => memory_error(),
                    other => {
                        RunError::new(Verdict::Internal, format!("the guest trapped: {other}"))
                    }
                })
            } else if end.memory_denied {
                Some(memory_error())
            } else {
                Some(RunError::new(
                    Verdict::Internal,
                    format!("the guest failed: {e}"),
                ))
            }
        }
        None => match outcome::decode(end.verdict.as_deref(), end.memory_denied, &limits) {
            Ok((r, err)) => {
                result = r;
                err
            }
            Err(msg) => Some(RunError::new(Verdict::Internal, msg)),
        },
    };
    let (stdout, stdout_truncated) = end.stdout;
    let (stderr, stderr_truncated) = end.stderr;
    Outcome {
        status: if error.is_some() {
            Status::Failed
        } else {
            Status::Succeeded
        },
        stdout: String::from_utf8_lossy(&stdout).into_owned(),
        stderr: String::from_utf8_lossy(&stderr).into_owned(),
        stdout_truncated,
        stderr_truncated,
        result,
        error,
        usage: end.usage,
    }
}
