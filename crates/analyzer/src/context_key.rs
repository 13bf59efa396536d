//! Validation of the keys of a job's JSON `context`, which become Python globals.

use ruff_python_ast::token::TokenKind;
use ruff_python_parser::{Mode, lexer};

/// Validates the keys of a job's JSON `context`: each must be a Python identifier (per Python's rules, NFKC) and not a keyword; Err carries a human message naming the key.
///
/// The character classes are the parser's own (`XID_Start`/`XID_Continue`, as the
/// guest's lexer applies them), so a key passes exactly when Python code could
/// spell it. A key that NFKC normalisation would change (`ｘ`, `ﬁ`) is refused
/// too: Python normalises identifiers in source, so code that writes `ｘ` reads the
/// global `x`, and a global stored under the raw key could never be reached.
/// Soft keywords (`match`, `case`, `type`, `_`) are ordinary names and pass.
pub fn check_context_key(key: &str) -> Result<(), String> {
    if key.is_empty() {
        return Err("context key is empty; keys must be Python identifiers".to_owned());
    }
    let shown = shorten(key);
    let normal = crate::nfkc(key);
    if normal != key {
        return Err(format!(
            "context key `{shown}` is not in NFKC normal form; Python code would read it as `{}`",
            shorten(&normal)
        ));
    }
    // Anything but an identifier character (whitespace, `#`, `\`, quotes) would
    // let the lexer skip or join text, so refuse those before lexing. Non-ASCII
    // characters are left to the lexer's Unicode tables.
    let mut chars = key.chars();
    let first_ok = chars
        .next()
        .is_some_and(|c| c == '_' || c.is_ascii_alphabetic() || !c.is_ascii());
    if !first_ok || !chars.all(|c| c == '_' || c.is_ascii_alphanumeric() || !c.is_ascii()) {
        return Err(format!("context key `{shown}` is not a Python identifier"));
    }
    // The lexer skips a leading byte-order mark, which no identifier starts with.
    if key.starts_with('\u{feff}') {
        return Err(format!("context key `{shown}` is not a Python identifier"));
    }
    let mut lexer = lexer::lex(key, Mode::Module);
    let first = lexer.next_token();
    let is_name = first == TokenKind::Name || first.is_soft_keyword();
    if first.is_non_soft_keyword() {
        return Err(format!("context key `{shown}` is a Python keyword"));
    }
    // A single name, then at most the implicit end of line, then the end.
    let mut rest = std::iter::from_fn(|| Some(lexer.next_token()));
    let tail_ok = rest
        .find(|kind| *kind != TokenKind::Newline)
        .is_some_and(|kind| kind == TokenKind::EndOfFile);
    if is_name && tail_ok {
        Ok(())
    } else {
        Err(format!("context key `{shown}` is not a Python identifier"))
    }
}

/// The key as shown in a message: at most 64 characters.
fn shorten(key: &str) -> String {
    const MAX: usize = 64;
    if key.chars().count() <= MAX {
        key.to_owned()
    } else {
        let mut short: String = key.chars().take(MAX).collect();
        short.push('…');
        short
    }
}
