//! The `too_deeply_nested` pre-scan: bracket and indentation depth, measured before
//! the parser runs so that a nesting bomb never reaches it.
//!
//! The scanner works on bytes (every character that matters is ASCII), looks at each
//! byte a bounded number of times, and keeps state proportional to the nesting depth
//! it allows, so it is linear in the source. It skips comments and string literals,
//! including triple-quoted and prefixed ones, and follows f-strings and t-strings
//! (PEP 701) into their replacement fields: a field's `{` counts as a bracket, since
//! a nested f-string is as deep as the brackets around it.
//!
//! Brackets and indentation are limited separately, each to the policy's depth: a
//! program may be 100 blocks deep and have 100 nested brackets on one line. That
//! follows CPython, whose tokenizer also counts the two independently.
//!
//! The scanner only has to be exact on valid programs, which it must never refuse
//! below the limit; on invalid ones it just has to stay linear, since the parser will
//! refuse them anyway.

use strictpy_types::Verdict;

use crate::Finding;

/// Where the scanner is.
#[derive(Debug, Clone, Copy)]
enum Frame {
    /// Inside the literal text of a string.
    Str(Quote),
    /// Inside an f-string replacement field: code, until the `}` that brings the
    /// bracket depth back to `floor` minus one.
    Field {
        /// The bracket depth just after the field's `{`.
        floor: usize,
        /// The string the field belongs to.
        quote: Quote,
    },
    /// Inside a replacement field's format spec (after its top-level `:`): literal
    /// text again, where `{` opens a nested field and `}` ends the outer one.
    Spec {
        /// The string the spec belongs to.
        quote: Quote,
    },
}

/// How a string literal is delimited and read.
#[derive(Debug, Clone, Copy)]
struct Quote {
    /// `'` or `"`.
    byte: u8,
    /// Three quote characters.
    triple: bool,
    /// An `r` prefix: backslashes do not start escapes (but still protect a quote).
    raw: bool,
    /// An `f` or `t` prefix: `{` opens a replacement field.
    interpolated: bool,
}

/// The bytes `Scanner::code` acts on; every other byte is skipped.
const MATTERS_IN_CODE: [bool; 256] = {
    let mut table = [false; 256];
    let bytes = b"#\\\n\r([{)]}:'\"";
    let mut i = 0;
    while i < bytes.len() {
        table[bytes[i] as usize] = true;
        i += 1;
    }
    table
};

/// Returns the first place where brackets or blocks nest deeper than `max`.
pub(crate) fn scan(text: &str, max: usize) -> Option<Finding> {
    Scanner {
        bytes: text.as_bytes(),
        max,
        pos: 0,
        depth: 0,
        frames: Vec::new(),
        indents: vec![0],
    }
    .run()
}

/// The scanner's state.
struct Scanner<'a> {
    /// The source.
    bytes: &'a [u8],
    /// The deepest nesting allowed.
    max: usize,
    /// The next byte to look at.
    pos: usize,
    /// Open brackets, counting replacement fields.
    depth: usize,
    /// Strings, fields and specs we are inside, innermost last.
    frames: Vec<Frame>,
    /// The indentation widths of the open blocks, outermost (0) first.
    indents: Vec<usize>,
}

impl Scanner<'_> {
    /// Scans the whole source.
    fn run(mut self) -> Option<Finding> {
        let mut at_line_start = true;
        while self.pos < self.bytes.len() {
            if at_line_start {
                at_line_start = false;
                if let Some(finding) = self.indentation() {
                    return Some(finding);
                }
                continue;
            }
            let step = match self.frames.last().copied() {
                None => self.code(None),
                Some(Frame::Field { floor, quote }) => self.code(Some((floor, quote))),
                Some(Frame::Str(quote)) => self.string(quote),
                Some(Frame::Spec { quote }) => self.spec(quote),
            };
            match step {
                Step::Go => {}
                Step::LogicalNewline => at_line_start = true,
                Step::TooDeep => {
                    return Some(Finding::unnamed(
                        Verdict::TooDeeplyNested,
                        self.pos,
                        format!("brackets are nested more than {} deep", self.max),
                    ));
                }
            }
        }
        None
    }

    /// The byte at `pos + ahead`, if any.
    fn peek(&self, ahead: usize) -> Option<u8> {
        self.bytes.get(self.pos + ahead).copied()
    }

    /// Measures the indentation of the line starting at `pos` and updates the
    /// block stack. Blank and comment-only lines do not count, as in Python.
    fn indentation(&mut self) -> Option<Finding> {
        let mut width = 0usize;
        while let Some(b) = self.peek(0) {
            match b {
                b' ' => width = width.saturating_add(1),
                b'\t' => width = (width / 8).saturating_add(1).saturating_mul(8),
                0x0c => width = 0,
                _ => break,
            }
            self.pos += 1;
        }
        match self.peek(0) {
            None | Some(b'\n' | b'\r' | b'#') => return None,
            // A backslash continuation right after the indentation: the
            // tokenizer joins the lines; leave the indentation alone.
            Some(b'\\') => return None,
            Some(_) => {}
        }
        let top = self.indents.last().copied().unwrap_or(0);
        if width > top {
            self.indents.push(width);
            if self.indents.len() - 1 > self.max {
                return Some(Finding::unnamed(
                    Verdict::TooDeeplyNested,
                    self.pos,
                    format!("blocks are nested more than {} deep", self.max),
                ));
            }
        } else {
            while self.indents.len() > 1 && self.indents.last().is_some_and(|&w| w > width) {
                self.indents.pop();
            }
        }
        None
    }

    /// Opens a bracket (or a replacement field); says whether that was too deep.
    fn open(&mut self) -> bool {
        self.depth += 1;
        self.depth > self.max
    }

    /// One step in code: at top level (`field` is `None`) or inside a replacement
    /// field whose floor and string are given.
    fn code(&mut self, field: Option<(usize, Quote)>) -> Step {
        let b = self.bytes[self.pos];
        match b {
            b'#' => {
                while !matches!(self.peek(0), None | Some(b'\n' | b'\r')) {
                    self.pos += 1;
                }
            }
            b'\\' => {
                // A line continuation joins the next line to this one.
                self.pos += 1;
                self.skip_newline();
            }
            b'\n' | b'\r' => {
                self.skip_newline();
                if self.frames.is_empty() && self.depth == 0 {
                    return Step::LogicalNewline;
                }
            }
            b'(' | b'[' | b'{' => {
                if self.open() {
                    return Step::TooDeep;
                }
                self.pos += 1;
            }
            b')' | b']' | b'}' => {
                self.pos += 1;
                match field {
                    Some((floor, _)) if self.depth <= floor => {
                        // Only a `}` closes the field; any other closer here is an
                        // error the parser will report.
                        if b == b'}' {
                            self.frames.pop();
                            self.depth = floor.saturating_sub(1);
                        }
                    }
                    _ => self.depth = self.depth.saturating_sub(1),
                }
            }
            b':' => {
                self.pos += 1;
                if let Some((floor, quote)) = field
                    && self.depth == floor
                {
                    self.frames.push(Frame::Spec { quote });
                }
            }
            b'\'' | b'"' => self.open_string(b),
            // Most of a program is names, operators and spaces: skip the
            // whole run up to the next byte that matters in one tight loop
            // rather than one dispatch per byte (this scan used to cost a
            // fifth of a bare parse).
            _ => {
                self.pos += self.bytes[self.pos..]
                    .iter()
                    .position(|&b| MATTERS_IN_CODE[usize::from(b)])
                    .unwrap_or(self.bytes.len() - self.pos)
            }
        }
        Step::Go
    }

    /// Consumes one line break (`\n`, `\r\n` or `\r`) at `pos`, if there is one.
    fn skip_newline(&mut self) {
        match self.peek(0) {
            Some(b'\r') if self.peek(1) == Some(b'\n') => self.pos += 2,
            Some(b'\n' | b'\r') => self.pos += 1,
            _ => {}
        }
    }

    /// Starts a string literal whose (first) quote is at `pos`.
    fn open_string(&mut self, byte: u8) {
        let (raw, interpolated) = self.prefix();
        let triple = self.peek(1) == Some(byte) && self.peek(2) == Some(byte);
        self.pos += if triple { 3 } else { 1 };
        self.frames.push(Frame::Str(Quote {
            byte,
            triple,
            raw,
            interpolated,
        }));
    }

    /// Reads the string prefix just before the quote at `pos`: returns whether it
    /// makes the string raw and whether it makes it an f- or t-string. A prefix is
    /// the whole identifier-like run before the quote, so `xf"..."` has none.
    fn prefix(&self) -> (bool, bool) {
        let mut start = self.pos;
        while start > 0 && self.pos - start < 3 && is_identifier_byte(self.bytes[start - 1]) {
            start -= 1;
        }
        let prefix = &self.bytes[start..self.pos];
        if prefix.len() == 3 || (start > 0 && is_identifier_byte(self.bytes[start - 1])) {
            return (false, false);
        }
        let first = prefix.first().map(u8::to_ascii_lowercase);
        let second = prefix.get(1).map(u8::to_ascii_lowercase);
        match (prefix.len(), first, second) {
            (1, Some(b'r'), _) | (2, Some(b'r'), Some(b'b')) | (2, Some(b'b'), Some(b'r')) => {
                (true, false)
            }
            (1, Some(b'f' | b't'), _) => (false, true),
            (2, Some(b'r'), Some(b'f' | b't')) | (2, Some(b'f' | b't'), Some(b'r')) => (true, true),
            _ => (false, false),
        }
    }

    /// True when the string's closing quote(s) start at `pos`.
    fn at_closing_quote(&self, quote: Quote) -> bool {
        self.peek(0) == Some(quote.byte)
            && (!quote.triple
                || (self.peek(1) == Some(quote.byte) && self.peek(2) == Some(quote.byte)))
    }

    /// Consumes a backslash escape at `pos` inside string text.
    fn escape(&mut self, quote: Quote) {
        match self.peek(1) {
            // A brace after a backslash still opens or closes a field.
            Some(b'{' | b'}') if quote.interpolated => self.pos += 1,
            // `\N{NAME}` is one escape; its braces are not a field.
            Some(b'N') if quote.interpolated && !quote.raw && self.peek(2) == Some(b'{') => {
                self.pos += 3;
                while !matches!(
                    self.peek(0),
                    None | Some(b'}' | b'\n' | b'\r' | b'\'' | b'"')
                ) {
                    self.pos += 1;
                }
                if self.peek(0) == Some(b'}') {
                    self.pos += 1;
                }
            }
            Some(b'\r') if self.peek(2) == Some(b'\n') => self.pos += 3,
            Some(_) => self.pos += 2,
            None => self.pos += 1,
        }
    }

    /// One step in the literal text of a string.
    fn string(&mut self, quote: Quote) -> Step {
        let b = self.bytes[self.pos];
        if b == b'\\' {
            self.escape(quote);
        } else if self.at_closing_quote(quote) {
            self.frames.pop();
            self.pos += if quote.triple { 3 } else { 1 };
        } else if matches!(b, b'\n' | b'\r') && !quote.triple {
            // Unterminated: the string ends with the line (the parser will
            // report it), and the line break is read as code.
            self.frames.pop();
        } else if quote.interpolated && b == b'{' {
            if self.peek(1) == Some(b'{') {
                self.pos += 2;
            } else {
                return self.open_field(quote);
            }
        } else {
            // The rest of a run of plain text, up to the next byte that could
            // end it, escape or open a field, at once (as in `code`).
            self.pos += 1;
            let interpolated = quote.interpolated;
            self.pos += self.bytes[self.pos..]
                .iter()
                .position(|&b| {
                    matches!(b, b'\\' | b'\n' | b'\r')
                        || b == quote.byte
                        || (interpolated && b == b'{')
                })
                .unwrap_or(self.bytes.len() - self.pos);
        }
        Step::Go
    }

    /// Enters a replacement field at the current `{`: it counts as one more
    /// level of nesting, and the field remembers where it started.
    fn open_field(&mut self, quote: Quote) -> Step {
        if self.open() {
            return Step::TooDeep;
        }
        self.pos += 1;
        self.frames.push(Frame::Field {
            floor: self.depth,
            quote,
        });
        Step::Go
    }

    /// One step in a format spec.
    fn spec(&mut self, quote: Quote) -> Step {
        let b = self.bytes[self.pos];
        if b == b'{' {
            return self.open_field(quote);
        } else if b == b'}' {
            // Ends the spec and the field it belongs to.
            self.pos += 1;
            self.frames.pop();
            self.close_field();
        } else if b == b'\\' {
            self.escape(quote);
        } else if self.at_closing_quote(quote) || (matches!(b, b'\n' | b'\r') && !quote.triple) {
            // The string ends inside the spec (an error): unwind to the code
            // around the string, and read the quote or line break there.
            while let Some(frame) = self.frames.pop() {
                match frame {
                    Frame::Field { floor, .. } => self.depth = floor.saturating_sub(1),
                    Frame::Str(_) => break,
                    Frame::Spec { .. } => {}
                }
            }
            if self.at_closing_quote(quote) {
                self.pos += if quote.triple { 3 } else { 1 };
            }
        } else {
            self.pos += 1;
        }
        Step::Go
    }

    /// Pops the replacement field on top of the frames, restoring the depth.
    fn close_field(&mut self) {
        if let Some(Frame::Field { floor, .. }) = self.frames.last().copied() {
            self.frames.pop();
            self.depth = floor.saturating_sub(1);
        }
    }
}

/// What one step found.
enum Step {
    /// Nothing special; go on.
    Go,
    /// The end of a logical line: the next line's indentation counts.
    LogicalNewline,
    /// A bracket at `pos` opened one level too many.
    TooDeep,
}

/// Bytes that can be part of an identifier (any non-ASCII byte may be).
fn is_identifier_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b >= 0x80
}
