//! The documents the strictpy guest and host exchange, written once.
//!
//! The host (`crates/sandbox`) encodes an [`Input`] and a [`Preload`] and
//! decodes a [`Report`]; the guest (`guest/`, built for wasm32-wasip1 in its own
//! workspace) does the reverse with the very same types, so a field cannot
//! drift between the two sides. Plain serde types only: no wasmtime, no
//! RustPython. `guest/README.md` describes the channel the documents travel on.
//!
//! The caps ([`MAX_TRACEBACK_BYTES`], [`MAX_MESSAGE_BYTES`],
//! [`MAX_RESULT_BYTES`]) bound every verdict document. The guest applies them
//! before sending ([`Report::bounded`]); the host applies them again on what it
//! receives, because it does not trust the guest.

#[cfg(feature = "outcome")]
pub mod outcome;

use std::borrow::Cow;

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

/// Traceback entries kept when the input names no limit.
pub const DEFAULT_TRACEBACK_LIMIT: usize = 50;

/// The most bytes of traceback a verdict carries. Depth alone does not bound
/// it: a chain of exceptions repeats its frames once per link, and one frame
/// can quote a long source line.
pub const MAX_TRACEBACK_BYTES: usize = 32 * 1024;

/// The most bytes of `str(exception)` a verdict carries.
pub const MAX_MESSAGE_BYTES: usize = 8 * 1024;

/// The most bytes of `json.dumps(result)` a verdict carries. A larger result
/// is not cut (half a JSON document means nothing): the run fails instead.
pub const MAX_RESULT_BYTES: usize = 1024 * 1024;

/// How much of a clipped traceback comes from its start; the rest is its end,
/// where the innermost frames and the exception line are.
const TRACEBACK_HEAD_BYTES: usize = 4 * 1024;

/// One job, as the host sends it through `strictpy.input_*`.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Input {
    /// The Python source to run as `__main__`.
    pub code: String,
    /// A JSON object whose keys become globals, as JSON text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context: Option<Box<RawValue>>,
    /// The effective import allowlist (top-level module names).
    pub allow: Vec<String>,
    /// How many traceback entries to keep at most; [`DEFAULT_TRACEBACK_LIMIT`]
    /// when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traceback_limit: Option<usize>,
    /// `code` already compiled by a guest of the same build: the marshalled
    /// code object, in lower-case hex ([`hex_encode`]). The guest runs it
    /// instead of compiling `code` (which it still needs for nothing but
    /// its own fallback); one it cannot decode is ignored and `code` is
    /// compiled as usual, so a bad form never changes a result.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compiled: Option<String>,
    /// Compile `code` and stop: nothing runs, and an `ok` verdict's `result`
    /// is the JSON string of the marshalled code object in hex, which a later
    /// input may carry as `compiled`. A compile error is the same verdict as
    /// when running.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub compile_only: bool,
}

/// `bytes` in lower-case hex: how a compiled code object travels inside the
/// JSON documents (no dependency on a base64 crate on either side).
pub fn hex_encode(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0xf)]));
    }
    out
}

/// The bytes of a [`hex_encode`]d string; `None` if it is not one.
pub fn hex_decode(text: &str) -> Option<Vec<u8>> {
    fn digit(c: u8) -> Option<u8> {
        match c {
            b'0'..=b'9' => Some(c - b'0'),
            b'a'..=b'f' => Some(c - b'a' + 10),
            _ => None,
        }
    }
    let bytes = text.as_bytes();
    if !bytes.len().is_multiple_of(2) {
        return None;
    }
    bytes
        .chunks_exact(2)
        .map(|pair| Some(digit(pair[0])? << 4 | digit(pair[1])?))
        .collect()
}

impl Input {
    /// The traceback depth cap that applies.
    pub fn traceback_limit(&self) -> usize {
        self.traceback_limit.unwrap_or(DEFAULT_TRACEBACK_LIMIT)
    }
}

/// The modules the guest imports ahead of any job, after building the VM
/// (the host hands it over before taking a snapshot).
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Preload {
    /// Top-level module names, in the order to import them.
    pub modules: Vec<String>,
}

/// What the guest tells the host about the run, through `strictpy.verdict`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum Report {
    /// The program finished (or exited with code 0).
    Ok {
        /// `json.dumps(result)`, when the program left a global `result`.
        result: Option<String>,
    },
    /// An uncaught exception.
    Exception {
        /// The exception class, module-qualified outside builtins.
        exception_type: String,
        /// `str(exc)`, at most [`MAX_MESSAGE_BYTES`].
        message: String,
        /// The formatted traceback, depth-capped and at most
        /// [`MAX_TRACEBACK_BYTES`].
        traceback: Option<String>,
        /// True for `MemoryError`, so the host can tell a memory cap apart.
        memory_error: bool,
    },
    /// `SystemExit` with a non-zero code.
    Exit {
        /// The exit code.
        code: i64,
    },
    /// The guest itself could not do its job.
    Internal {
        /// What went wrong, at most [`MAX_MESSAGE_BYTES`].
        message: String,
    },
}

impl Report {
    /// The report with every cap applied: long messages and tracebacks are
    /// clipped with a visible marker, and a result over [`MAX_RESULT_BYTES`]
    /// turns the run into a `ValueError` that says so.
    pub fn bounded(self) -> Self {
        match self {
            Report::Ok { result: Some(text) } if text.len() > MAX_RESULT_BYTES => {
                Report::Exception {
                    exception_type: "ValueError".to_owned(),
                    message: result_too_large(text.len()),
                    traceback: None,
                    memory_error: false,
                }
            }
            Report::Exception {
                exception_type,
                message,
                traceback,
                memory_error,
            } => Report::Exception {
                exception_type: clip_end(&exception_type, MAX_MESSAGE_BYTES).into_owned(),
                message: clip_end(&message, MAX_MESSAGE_BYTES).into_owned(),
                traceback: traceback.map(|t| clip_traceback(&t).into_owned()),
                memory_error,
            },
            Report::Internal { message } => Report::Internal {
                message: clip_end(&message, MAX_MESSAGE_BYTES).into_owned(),
            },
            other => other,
        }
    }
}

/// The message of the `ValueError` a too-large result becomes.
pub fn result_too_large(len: usize) -> String {
    format!(
        "result is {len} bytes of JSON, over the cap of {MAX_RESULT_BYTES} bytes; \
         print large output instead"
    )
}

/// The largest index `<= at` that is a char boundary of `text`.
fn floor_boundary(text: &str, at: usize) -> usize {
    let mut at = at.min(text.len());
    while !text.is_char_boundary(at) {
        at -= 1;
    }
    at
}

/// The smallest index `>= at` that is a char boundary of `text`.
fn ceil_boundary(text: &str, at: usize) -> usize {
    let mut at = at.min(text.len());
    while !text.is_char_boundary(at) {
        at += 1;
    }
    at
}

/// `text` cut to at most `max` bytes (marker included), ending in
/// `... [N bytes omitted]`.
pub fn clip_end(text: &str, max: usize) -> Cow<'_, str> {
    if text.len() <= max {
        return Cow::Borrowed(text);
    }
    // The marker's length depends on the count; a bound on it is enough.
    let room = max.saturating_sub(48);
    let keep = floor_boundary(text, room);
    Cow::Owned(format!(
        "{}... [{} bytes omitted]",
        &text[..keep],
        text.len() - keep
    ))
}

/// A traceback cut to at most [`MAX_TRACEBACK_BYTES`] (marker included): its
/// first few KiB, a marker line saying how much went, and its end, so the
/// innermost frames and the exception line always survive.
pub fn clip_traceback(text: &str) -> Cow<'_, str> {
    if text.len() <= MAX_TRACEBACK_BYTES {
        return Cow::Borrowed(text);
    }
    let marker_room = 64;
    let head = floor_boundary(text, TRACEBACK_HEAD_BYTES);
    // Cut at line starts, so no frame line is left half-printed.
    let head = text[..head].rfind('\n').map_or(head, |i| i + 1);
    let tail_len = MAX_TRACEBACK_BYTES - head - marker_room;
    let mut tail = ceil_boundary(text, text.len() - tail_len);
    if let Some(i) = text[tail..].find('\n') {
        tail += i + 1;
    }
    Cow::Owned(format!(
        "{}  [... traceback truncated: {} bytes omitted ...]\n{}",
        &text[..head],
        tail - head,
        &text[tail..]
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trips_and_refuses_what_is_not_hex() {
        let bytes: Vec<u8> = (0..=255).collect();
        let text = hex_encode(&bytes);
        assert_eq!(text.len(), 512);
        assert_eq!(hex_decode(&text), Some(bytes));
        assert_eq!(hex_decode("abc"), None);
        assert_eq!(hex_decode("zz"), None);
        assert_eq!(hex_decode("AB"), None);
        assert_eq!(hex_decode(""), Some(Vec::new()));
    }

    #[test]
    fn compile_fields_are_absent_unless_set() {
        let input = Input {
            code: "x = 1".to_owned(),
            context: None,
            allow: Vec::new(),
            traceback_limit: None,
            compiled: None,
            compile_only: false,
        };
        let text = serde_json::to_string(&input).unwrap();
        assert_eq!(text, r#"{"code":"x = 1","allow":[]}"#);
        let back: Input =
            serde_json::from_str(r#"{"code":"x","allow":[],"compile_only":true,"compiled":"00"}"#)
                .unwrap();
        assert!(back.compile_only);
        assert_eq!(back.compiled.as_deref(), Some("00"));
    }

    #[test]
    fn reports_round_trip_in_the_documented_shape() {
        let report = Report::Exception {
            exception_type: "ValueError".into(),
            message: "bad".into(),
            traceback: Some("Traceback ...".into()),
            memory_error: false,
        };
        let text = serde_json::to_string(&report).expect("encode");
        assert_eq!(
            text,
            r#"{"status":"exception","exception_type":"ValueError","message":"bad","traceback":"Traceback ...","memory_error":false}"#
        );
        assert_eq!(
            serde_json::from_str::<Report>(&text).expect("decode"),
            report
        );
        let ok: Report = serde_json::from_str(r#"{"status":"ok","result":null}"#).expect("ok");
        assert_eq!(ok, Report::Ok { result: None });
    }

    #[test]
    fn input_without_optional_fields_decodes() {
        let input: Input =
            serde_json::from_str(r#"{"code":"print(1)","allow":["json"]}"#).expect("decode");
        assert_eq!(input.traceback_limit(), DEFAULT_TRACEBACK_LIMIT);
        assert!(input.context.is_none());
        assert!(serde_json::from_str::<Input>(r#"{"code":"","allow":[],"x":1}"#).is_err());
    }

    #[test]
    fn long_tracebacks_keep_both_ends_under_the_cap() {
        let mut text = String::from("Traceback (most recent call last):\n");
        for i in 0..5000 {
            text.push_str(&format!("  File \"<main>\", line {i}, in f\n"));
        }
        text.push_str("RecursionError: é\n");
        let clipped = clip_traceback(&text);
        assert!(clipped.len() <= MAX_TRACEBACK_BYTES, "{}", clipped.len());
        assert!(clipped.starts_with("Traceback (most recent call last):\n"));
        assert!(clipped.ends_with("RecursionError: é\n"));
        assert!(clipped.contains("[... traceback truncated: "));
        assert_eq!(clip_traceback("short"), "short");
    }

    #[test]
    fn long_messages_are_clipped_on_a_char_boundary() {
        let text = "é".repeat(MAX_MESSAGE_BYTES);
        let clipped = clip_end(&text, MAX_MESSAGE_BYTES);
        assert!(clipped.len() <= MAX_MESSAGE_BYTES);
        assert!(clipped.is_char_boundary(clipped.len()));
        let omitted = text.len() - clipped.find("... [").expect("marker");
        assert!(clipped.ends_with(&format!("... [{omitted} bytes omitted]")));
    }

    #[test]
    fn bounded_turns_a_huge_result_into_an_error() {
        let big = format!("\"{}\"", "x".repeat(MAX_RESULT_BYTES));
        let Report::Exception {
            exception_type,
            message,
            ..
        } = (Report::Ok { result: Some(big) }).bounded()
        else {
            panic!("a huge result must fail the run");
        };
        assert_eq!(exception_type, "ValueError");
        assert!(message.contains("over the cap"), "{message}");
        let small = Report::Ok {
            result: Some("[1]".into()),
        };
        assert_eq!(small.clone().bounded(), small);
    }
}
