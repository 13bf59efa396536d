//! The host's reading of a verdict document: untrusted bytes in, a `result`
//! and a typed [`RunError`] out. Fallible, never panicking, and every cap of
//! the crate root re-applied, so a misbehaving guest cannot make a stored
//! outcome unbounded. `fuzz/fuzz_targets/verdict.rs` feeds it arbitrary bytes.

use strictpy_types::{Limits, RunError, Verdict};

use crate::{MAX_RESULT_BYTES, Report, result_too_large};

/// What a verdict document decides: the program's `result` and, if it
/// failed, why.
pub type Decided = (Option<serde_json::Value>, Option<RunError>);

/// Reads the guest's verdict document. `Err` (with a message for an
/// `internal` outcome) when there is none or it is unreadable.
pub fn decode(doc: Option<&[u8]>, memory_denied: bool, limits: &Limits) -> Result<Decided, String> {
    let doc = doc.ok_or("the guest ended without a verdict")?;
    let report: Report = serde_json::from_slice(doc)
        .map_err(|e| format!("unreadable verdict from the guest: {e}"))?;
    Ok(match report.bounded() {
        Report::Ok { result: None } => (None, None),
        Report::Ok { result: Some(text) } => {
            // `bounded` already refused an oversized result; check again so
            // the bound holds however `bounded` changes.
            if text.len() > MAX_RESULT_BYTES {
                return Ok((
                    None,
                    Some(RunError::new(
                        Verdict::Internal,
                        result_too_large(text.len()),
                    )),
                ));
            }
            match serde_json::from_str(&text) {
                Ok(value) => (Some(value), None),
                Err(e) => (
                    None,
                    Some(RunError::new(
                        Verdict::Internal,
                        format!("unreadable result JSON: {e}"),
                    )),
                ),
            }
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{MAX_MESSAGE_BYTES, MAX_TRACEBACK_BYTES};

    #[test]
    fn garbage_and_absence_are_errors_not_panics() {
        let limits = Limits::default();
        assert!(decode(None, false, &limits).is_err());
        assert!(decode(Some(b"\xff{"), false, &limits).is_err());
        assert!(decode(Some(br#"{"status":"nope"}"#), false, &limits).is_err());
        let (result, error) =
            decode(Some(br#"{"status":"ok","result":"{"}"#), false, &limits).expect("decodes");
        assert!(result.is_none());
        assert_eq!(error.map(|e| e.kind), Some(Verdict::Internal));
    }

    #[test]
    fn the_host_reapplies_every_cap() {
        let limits = Limits::default();
        let doc = serde_json::json!({
            "status": "exception",
            "exception_type": "ValueError",
            "message": "m".repeat(MAX_MESSAGE_BYTES * 4),
            "traceback": "t\n".repeat(MAX_TRACEBACK_BYTES),
            "memory_error": false,
        });
        let bytes = serde_json::to_vec(&doc).expect("encode");
        let (_, error) = decode(Some(&bytes), false, &limits).expect("decodes");
        let error = error.expect("an exception is an error");
        assert!(error.message.len() <= MAX_MESSAGE_BYTES + "ValueError: ".len());
        let traceback = error.traceback.expect("traceback kept");
        assert!(traceback.len() <= MAX_TRACEBACK_BYTES);
        assert!(traceback.contains("traceback truncated"));

        let huge = serde_json::json!({"status": "ok", "result": "1".repeat(MAX_RESULT_BYTES + 1)});
        let bytes = serde_json::to_vec(&huge).expect("encode");
        let (result, error) = decode(Some(&bytes), false, &limits).expect("decodes");
        assert!(result.is_none());
        assert!(error.is_some_and(|e| e.message.contains("over the cap")));
    }
}
