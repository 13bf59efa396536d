//! The static policy check: decides, without running it, whether a Python program may run.
//!
//! [`check`] runs every rule in a fixed order and returns every violation it found,
//! sorted by position:
//!
//! 1. `source_too_large`: more bytes than [`Policy::max_source_bytes`]. Stops here.
//! 2. `invalid_encoding`: not UTF-8, a NUL byte, or a PEP 263 coding cookie naming
//!    anything but UTF-8. A leading UTF-8 byte-order mark is accepted and stripped.
//!    Stops here.
//! 3. `too_deeply_nested`: brackets, f-string replacement fields or indented blocks
//!    nested deeper than [`Policy::max_nesting_depth`], found by a cheap scanner
//!    before the parser runs. Stops here.
//! 4. `syntax_error`: every error the parser reports. Stops here: code that does not
//!    parse never runs, so the semantic rules would add nothing.
//! 5. `forbidden_import`, `forbidden_builtin`, `forbidden_attribute`, and
//!    `too_deeply_nested` for a syntax tree deeper than the guest's compiler accepts.
//!
//! The parser is the one the guest's RustPython 0.6.0 compiles with
//! (`rustpython-ruff_python_parser` 0.16.5), called with the same options, so a
//! program the guest would run is never refused as a syntax error.
//!
//! A small source is checked on the caller's thread (see [`INLINE_CHECK_BYTES`] for
//! why no small input can overflow its stack); a bigger one on a worker thread with
//! a large stack, so that no input can overflow the caller's stack. A panic either
//! way becomes a violation instead of unwinding into the caller. The syntax tree is walked, and taken apart,
//! iteratively, so even a million-deep tree needs no deep recursion (see `walk`).

use std::collections::BTreeSet;
use std::panic::AssertUnwindSafe;

use ruff_source_file::{LineIndex, PositionEncoding};
use ruff_text_size::TextSize;
use strictpy_types::{Policy, Verdict, Violation};

mod context_key;
mod encoding;
mod nesting;
mod parse;
mod pool;
mod walk;

#[cfg(test)]
mod tests;

pub use context_key::check_context_key;

/// Stack reserved for the worker thread. Only the pages actually touched are
/// committed, so reserving much more than a normal program needs costs nothing
/// but address space. The walk over the syntax tree is iterative and the parser
/// grows its own stack, so this is a second line of defence, not the first.
const WORKER_STACK_BYTES: usize = 256 * 1024 * 1024;

/// One finding before it is placed on a line: positions are byte offsets into
/// the decoded source (after the byte-order mark) until the very end, so that
/// the line index is only built when there is something to report.
#[derive(Debug)]
pub(crate) struct Finding {
    /// Which rule fired.
    pub(crate) rule: Verdict,
    /// The offending name, if there is one.
    pub(crate) name: Option<String>,
    /// Byte offset into the decoded source.
    pub(crate) offset: usize,
    /// A sentence for people.
    pub(crate) message: String,
}

impl Finding {
    /// A finding with a name.
    pub(crate) fn named(
        rule: Verdict,
        name: impl Into<String>,
        offset: usize,
        message: String,
    ) -> Self {
        Self {
            rule,
            name: Some(name.into()),
            offset,
            message,
        }
    }

    /// A finding without a name.
    pub(crate) fn unnamed(rule: Verdict, offset: usize, message: String) -> Self {
        Self {
            rule,
            name: None,
            offset,
            message,
        }
    }
}

/// Runs every rule; returns ALL violations sorted by (line, column). Pure, never panics on any input.
///
/// `allowlist` is the effective allowlist for this call, as computed by
/// [`Policy::effective_allowlist`]; `policy.allowed_modules` is not consulted.
///
/// A source of at most [`INLINE_CHECK_BYTES`] is checked on the caller's own
/// thread; a bigger one on a long-lived analyzer thread with a large stack.
///
/// If the worker thread cannot be started, or the check panics (which would be
/// a bug in the parser or here), the result is a single `syntax_error` violation
/// at line 1, column 1 whose message says the analyzer failed: the static check
/// has no `internal` verdict, and refusing the program is the only safe answer.
pub fn check(source: &[u8], policy: &Policy, allowlist: &BTreeSet<String>) -> Vec<Violation> {
    if source.len() <= INLINE_CHECK_BYTES {
        return std::panic::catch_unwind(AssertUnwindSafe(|| analyze(source, policy, allowlist)))
            .unwrap_or_else(|_| vec![parser_failed()]);
    }
    let (owned, policy, allowlist) = (source.to_vec(), policy.clone(), allowlist.clone());
    match on_worker(move || analyze(&owned, &policy, &allowlist)) {
        Some(Ok(violations)) => violations,
        Some(Err(_)) => vec![parser_failed()],
        None => vec![analyzer_failure(
            "the analyzer could not start its worker thread; the program is refused",
        )],
    }
}

/// Sources up to this many bytes are checked on the caller's thread, without
/// the hand-off to an analyzer thread and back, which costs a small check
/// (such as `print('hi')`) more than the check itself: two thread wake-ups and
/// copies of the source, policy and allowlist.
///
/// This is safe on any thread with [`INLINE_STACK_BYTES`] of stack, because
/// nothing in the check needs more for a source this small:
///
/// - the nesting pre-scan, the rules' walk over the tree and `dismantle` are
///   iterative, and the decoder and `locate` do not recurse;
/// - the parser recurses, but grows its own stack (`stacker::maybe_grow`,
///   with a 100 KiB red zone, in `ruff_python_parser`'s `Parser::parse` and
///   `with_recursion`), so it never uses more than that red zone plus 20
///   unchecked levels of the caller's stack;
/// - the only plain recursion left is dropping a tree no deeper than
///   `MAX_TREE_DEPTH` (deeper ones are dismantled), and a source of this size
///   bounds that depth by its byte count too.
///
/// `inline_checks_fit_a_small_stack` (in the tests) runs the deepest sources
/// of this size the grammar allows on a thread with [`INLINE_STACK_BYTES`] of
/// stack; tokio's runtime threads have 2 MiB and a main thread 8 MiB.
pub const INLINE_CHECK_BYTES: usize = 2048;

/// The stack a thread needs to call [`check`] with a source of at most
/// [`INLINE_CHECK_BYTES`]; see there.
pub const INLINE_STACK_BYTES: usize = 512 * 1024;

/// The largest source [`bare_parse`] takes: its tree is dropped by plain
/// recursion (that is the point: no policy work at all), and a source this
/// small cannot nest deep enough to exhaust the worker's stack, whatever it
/// holds (one level per byte at most, each drop frame far below 1 KiB).
pub const BARE_PARSE_MAX_BYTES: usize = 256 * 1024;

/// The floor under [`check`], for `strictpy bench`: parses `source` with the
/// same parser and options as the check, on the same worker threads through
/// the same hand-off, and drops the tree, with no decoding, scanning, rules
/// or disposal. Returns the number of syntax errors the parser reported;
/// `None` for a source over [`BARE_PARSE_MAX_BYTES`] or when the parser
/// panicked or no thread could be started. Never panics.
pub fn bare_parse(source: &str) -> Option<usize> {
    if source.len() > BARE_PARSE_MAX_BYTES {
        return None;
    }
    let owned = source.to_owned();
    on_worker(move || parse::bare(&owned))?.ok()
}

/// Runs `task` on a long-lived analyzer thread, or on a thread of its own
/// when those could not be started. `None` when no thread could be started
/// (or the worker vanished); `Some(Err)` when `task` panicked.
fn on_worker<R: Send + 'static>(
    task: impl FnOnce() -> R + Send + 'static,
) -> Option<std::thread::Result<R>> {
    if pool::available() {
        return pool::run(task);
    }
    std::thread::scope(|scope| {
        std::thread::Builder::new()
            .name("strictpy-analyzer".to_owned())
            .stack_size(WORKER_STACK_BYTES)
            .spawn_scoped(scope, task)
            .ok()
            .map(|handle| handle.join())
    })
}

/// The violation for a panic inside the analyzer.
fn parser_failed() -> Violation {
    analyzer_failure("the analyzer failed on this input (parser failed); the program is refused")
}

/// The violation that stands for a failure of the analyzer itself.
fn analyzer_failure(message: &str) -> Violation {
    Violation {
        rule: Verdict::SyntaxError,
        name: None,
        line: 1,
        column: 1,
        message: message.to_owned(),
    }
}

/// The whole check, run on the worker thread.
fn analyze(source: &[u8], policy: &Policy, allowlist: &BTreeSet<String>) -> Vec<Violation> {
    // The lexer only takes sources that fit a u32 offset, whatever the policy says.
    let limit = policy.max_source_bytes.min(u32::MAX as usize);
    if source.len() > limit {
        return vec![Violation {
            rule: Verdict::SourceTooLarge,
            name: None,
            line: 1,
            column: 1,
            message: format!(
                "the source is {} bytes, more than the limit of {} bytes",
                source.len(),
                limit
            ),
        }];
    }

    let text = match encoding::decode(source) {
        Ok(text) => text,
        Err(violation) => return vec![violation],
    };

    let mut findings = Vec::new();
    if let Some(finding) = nesting::scan(text, policy.max_nesting_depth) {
        findings.push(finding);
    } else {
        parse::check_parsed(text, policy, allowlist, &mut findings);
    }
    locate(text, findings)
}

/// Turns findings into violations with 1-based lines and character columns,
/// sorted by position.
fn locate(text: &str, findings: Vec<Finding>) -> Vec<Violation> {
    if findings.is_empty() {
        return Vec::new();
    }
    let index = LineIndex::from_source_text(text);
    let mut violations: Vec<Violation> = findings
        .into_iter()
        .map(|finding| {
            let offset = char_boundary_at_or_before(text, finding.offset);
            let location = index.source_location(
                TextSize::new(u32::try_from(offset).unwrap_or(u32::MAX)),
                text,
                PositionEncoding::Utf32,
            );
            Violation {
                rule: finding.rule,
                name: finding.name,
                line: u32::try_from(location.line.get()).unwrap_or(u32::MAX),
                column: u32::try_from(location.character_offset.get()).unwrap_or(u32::MAX),
                message: finding.message,
            }
        })
        .collect();
    // A stable sort keeps the rules' own order for findings at the same place.
    violations.sort_by_key(|v| (v.line, v.column));
    violations
}

/// `offset` clamped to the text and moved back to the start of the character it
/// falls in, so slicing there cannot panic.
pub(crate) fn char_boundary_at_or_before(text: &str, offset: usize) -> usize {
    let mut offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    offset
}

/// NFKC-normalises an identifier, borrowing when it is ASCII (and so already normal).
pub(crate) fn nfkc(name: &str) -> std::borrow::Cow<'_, str> {
    use unicode_normalization::UnicodeNormalization;
    if name.is_ascii() {
        std::borrow::Cow::Borrowed(name)
    } else {
        std::borrow::Cow::Owned(name.nfkc().collect())
    }
}
