//! Turning how a run ended (a trap, a host stop, the guest's own report) into a
//! typed [`Outcome`].
//!
//! Traps are matched by downcasting to wasmtime's `Trap`, `I32Exit` and our
//! own [`HostStop`], never by looking at error strings.

use serde::Deserialize;
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

/// The guest's verdict document. Must match `guest/src/report.rs`.
#[derive(Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
enum Report {
    /// The program finished.
    Ok {
        /// `json.dumps(result)`, if there was a result.
        result: Option<String>,
    },
    /// An uncaught exception.
    Exception {
        /// The exception class.
        exception_type: String,
        /// `str(exc)`.
        message: String,
        /// The formatted traceback.
        traceback: Option<String>,
        /// True for `MemoryError`.
        memory_error: bool,
    },
    /// A non-zero `SystemExit`.
    Exit {
        /// The exit code.
        code: i64,
    },
    /// The guest could not do its job.
    Internal {
        /// What went wrong.
        message: String,
    },
}

/// The input document for the guest (see guest/README.md).
#[derive(serde::Serialize)]
struct Input<'a> {
    /// The source.
    code: &'a str,
    /// The context object, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    context: Option<&'a serde_json::Value>,
    /// The allowlist.
    allow: Vec<&'a str>,
}

/// Encodes a job for the guest.
pub fn encode_input(job: &Job) -> Result<Vec<u8>, String> {
    serde_json::to_vec(&Input {
        code: &job.code,
        context: job.context.as_ref(),
        allow: job.allowlist.iter().map(String::as_str).collect(),
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
                match from_report(end.verdict.as_deref(), end.memory_denied, &limits) {
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
        None => match from_report(end.verdict.as_deref(), end.memory_denied, &limits) {
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

type Decided = (Option<serde_json::Value>, Option<RunError>);

/// Reads the guest's own report. `Err` when there is none or it is unreadable.
fn from_report(
    doc: Option<&[u8]>,
    memory_denied: bool,
    limits: &Limits,
) -> Result<Decided, String> {
    let doc = doc.ok_or("the guest ended without a verdict")?;
    let report: Report = serde_json::from_slice(doc)
        .map_err(|e| format!("unreadable verdict from the guest: {e}"))?;
    Ok(match report {
        Report::Ok { result: None } => (None, None),
        Report::Ok { result: Some(text) } => match serde_json::from_str(&text) {
            Ok(value) => (Some(value), None),
            Err(e) => (
                None,
                Some(RunError::new(
                    Verdict::Internal,
                    format!("unreadable result JSON: {e}"),
                )),
            ),
        },
        Report::Exception {
            exception_type,
            message,
            traceback,
            memory_error,
        } => {
            let (kind, limit, text) = if memory_error && memory_denied {
                (
                    Verdict::MemoryLimit,
                    Some(limits.memory_mb),
                    format!(
                        "MemoryError: the program exceeded the memory limit of {} MiB",
                        limits.memory_mb
                    ),
                )
            } else if message.is_empty() {
                (Verdict::Exception, None, exception_type.clone())
            } else {
                (
                    Verdict::Exception,
                    None,
                    format!("{exception_type}: {message}"),
                )
            };
            (
                None,
                Some(RunError {
                    exception_type: Some(exception_type),
                    traceback,
                    limit,
                    ..RunError::new(kind, text)
                }),
            )
        }
        Report::Exit { code } => (
            None,
            Some(RunError {
                exception_type: Some("SystemExit".to_owned()),
                exit_code: Some(code),
                ..RunError::new(Verdict::Exception, format!("SystemExit: {code}"))
            }),
        ),
        Report::Internal { message } => (None, Some(RunError::new(Verdict::Internal, message))),
    })
}
