//! The `invalid_encoding` rule: the source must be UTF-8 without NUL bytes and must
//! not declare any other encoding in a PEP 263 coding cookie.

use ruff_source_file::{LineIndex, PositionEncoding};
use ruff_text_size::TextSize;
use strictpy_types::{Verdict, Violation};

/// The UTF-8 byte-order mark, accepted (and stripped) at the very start.
const BOM: &str = "\u{feff}";

/// Decodes `source`, strips a leading byte-order mark and checks the coding cookie.
///
/// Positions in every later finding are relative to the returned text, which has
/// no byte-order mark; CPython does not count the mark as a column either.
pub(crate) fn decode(source: &[u8]) -> Result<&str, Violation> {
    let text = match std::str::from_utf8(source) {
        Ok(text) => text,
        Err(error) => {
            let valid = &source[..error.valid_up_to()];
            // The prefix the decoder accepted is valid by definition.
            let prefix = std::str::from_utf8(valid).unwrap_or_default();
            let (line, column) = position(prefix, prefix.len());
            return Err(violation(
                None,
                line,
                column,
                format!(
                    "the source is not valid UTF-8 (invalid byte at line {line}, column {column})"
                ),
            ));
        }
    };
    let text = text.strip_prefix(BOM).unwrap_or(text);
    if let Some(nul) = text.bytes().position(|b| b == 0) {
        let (line, column) = position(text, nul);
        return Err(violation(
            None,
            line,
            column,
            "the source contains a NUL byte".to_owned(),
        ));
    }
    if let Some((name, offset)) = coding_cookie(text)
        && !is_utf8_name(name)
    {
        let (line, column) = position(text, offset);
        return Err(violation(
            Some(name.to_owned()),
            line,
            column,
            format!("the source declares encoding `{name}`; only UTF-8 is accepted"),
        ));
    }
    Ok(text)
}

/// An `invalid_encoding` violation.
fn violation(name: Option<String>, line: u32, column: u32, message: String) -> Violation {
    Violation {
        rule: Verdict::InvalidEncoding,
        name,
        line,
        column,
        message,
    }
}

/// The 1-based line and character column of a byte offset (on a char boundary).
fn position(text: &str, offset: usize) -> (u32, u32) {
    let index = LineIndex::from_source_text(text);
    let offset = crate::char_boundary_at_or_before(text, offset);
    let location = index.source_location(
        TextSize::new(u32::try_from(offset).unwrap_or(u32::MAX)),
        text,
        PositionEncoding::Utf32,
    );
    (
        u32::try_from(location.line.get()).unwrap_or(u32::MAX),
        u32::try_from(location.character_offset.get()).unwrap_or(u32::MAX),
    )
}

/// True for the encoding names that mean UTF-8: `utf-8`, `utf8`, `utf_8` and
/// `utf-8-sig`, in any case (and with `_` for `-`, as Python's codec lookup allows).
fn is_utf8_name(name: &str) -> bool {
    let normal = name.to_ascii_lowercase().replace('_', "-");
    matches!(normal.as_str(), "utf-8" | "utf8" | "utf-8-sig")
}

/// The PEP 263 coding cookie, as `tokenize.detect_encoding` finds it: on the first
/// line, or on the second when the first is blank or only a comment. Returns the
/// declared name and its byte offset.
fn coding_cookie(text: &str) -> Option<(&str, usize)> {
    let (first, rest_start) = first_line(text, 0);
    if let Some(found) = cookie_in_line(first, 0) {
        return Some(found);
    }
    if !is_blank_or_comment(first) {
        return None;
    }
    let (second, _) = first_line(text, rest_start);
    cookie_in_line(second, rest_start)
}

/// The line starting at `start` (without its line break) and where the next begins.
fn first_line(text: &str, start: usize) -> (&str, usize) {
    let rest = text.get(start..).unwrap_or_default();
    match rest.find(['\n', '\r']) {
        Some(end) => {
            let next = if rest[end..].starts_with("\r\n") {
                end + 2
            } else {
                end + 1
            };
            (&rest[..end], start + next)
        }
        None => (rest, text.len()),
    }
}

/// `^[ \t\f]*(?:[#\r\n]|$)`: Python's test for a line that cannot hold code.
fn is_blank_or_comment(line: &str) -> bool {
    let trimmed = line.trim_start_matches([' ', '\t', '\x0c']);
    trimmed.is_empty() || trimmed.starts_with('#')
}

/// Matches `^[ \t\f]*#.*?coding[:=][ \t]*([-\w.]+)` (ASCII `\w`) against one line.
fn cookie_in_line(line: &str, line_start: usize) -> Option<(&str, usize)> {
    let trimmed = line.trim_start_matches([' ', '\t', '\x0c']);
    if !trimmed.starts_with('#') {
        return None;
    }
    let mut search_from = line.len() - trimmed.len();
    // `.*?` is lazy: the first `coding[:=]` followed by a name wins, and a
    // `coding:` with no name after it lets the search go on.
    while let Some(found) = line[search_from..].find("coding") {
        let after = search_from + found + "coding".len();
        search_from = search_from + found + 1;
        if !matches!(line.as_bytes().get(after), Some(b':' | b'=')) {
            continue;
        }
        let value = line[after + 1..].trim_start_matches([' ', '\t']);
        let value_start = line.len() - value.len();
        let end = value
            .find(|c: char| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')))
            .unwrap_or(value.len());
        if end > 0 {
            return Some((&value[..end], line_start + value_start));
        }
    }
    None
}
