//! Log redaction: a [`MakeWriter`] wrapper that rewrites every formatted log
//! line before it reaches its destination, so credentials never land in
//! logs, whichever crate logged them and at whatever level.
//!
//! Three rules, applied in this order:
//!
//! 1. the value of a field or key named like a credential (`password`,
//!    `token`, `access_token`, `refresh_token`, `api_key`, `secret`,
//!    `client_secret`, `authorization`, also with a prefix such as
//!    `webhook_secret`) in the forms `key=value`, `key: value` and
//!    `"key":"value"` (also inside escaped JSON) becomes `[REDACTED]`;
//! 2. `Bearer <credential>` becomes `Bearer [REDACTED]`;
//! 3. any strictpy token literal (`spk_`, `spa_`, `spr_`, `sps_` and at least 16
//!    URL-safe characters) becomes `[REDACTED]`;
//! 4. the password in a URL's `user:password@` (a store URL such as
//!    `postgres://strictpy:secret@db/jobs`) becomes `[REDACTED]`.
//!
//! Redaction is a safety net; code still must not log secrets on purpose.

use std::{
    borrow::Cow,
    io::{self, Write},
    sync::LazyLock,
};

use regex::bytes::{Captures, Regex};
use tracing_subscriber::fmt::MakeWriter;

/// What a secret is replaced with.
pub const REDACTED: &str = "[REDACTED]";

/// A field or key named like a credential, its separator, and its value.
static KEY_VALUE: LazyLock<Regex> = LazyLock::new(|| {
    compile(
        r#"(?xi)
        (?P<head>
            (?:\x1b\[[0-9;]*m|\b)       # a word start, or ANSI styling
            (?:[a-z0-9]+[_.\-]+)*          # a prefix: webhook_, x-, client.
            (?:password|passwd|token|access[_\-]token|refresh[_\-]token|api[_\-]?key
              |secret|client[_\-]secret|authorization)
            \b
            (?:\\*["'])?               # the key's closing quote, maybe escaped
            (?:\x1b\[[0-9;]*m)*        # ANSI styling around the field name
            [\ \t]*[:=][\ \t]*
            (?:\x1b\[[0-9;]*m)*
        )
        (?P<value>
            \\+".*?\\+"                               # \"escaped JSON\"
          | "(?:[^"\\]|\\.)*"                         # "quoted"
          | '(?:[^'\\]|\\.)*'                         # 'quoted'
          | Some\((?:"(?:[^"\\]|\\.)*"|[^)\s]*)\)     # Debug of an Option
          | ["']?(?:(?:bearer|basic|digest|token)[\ \t]+)?[^\s,;&"'\\}\])>(]+
        )
        "#,
    )
});

/// An HTTP bearer credential.
static BEARER: LazyLock<Regex> =
    LazyLock::new(|| compile(r#"(?i)(?P<scheme>\bbearer)[ \t]+[^\s"'\\,;]+"#));

/// A strictpy token literal.
static TOKEN: LazyLock<Regex> = LazyLock::new(|| compile(r"\bsp[akrs]_[A-Za-z0-9_\-]{16,}"));

/// The password of a URL's userinfo: `scheme://user:` then the password up
/// to the last `@` of the authority.
static URL_PASSWORD: LazyLock<Regex> =
    LazyLock::new(|| compile(r"(?i)(?P<head>\b[a-z][a-z0-9+.\-]*://[^\s:/?#@]*:)[^\s/?#]+@"));

/// The patterns are constants covered by the tests below, so a failure here
/// is a bug in this file, found by any test that logs.
#[allow(clippy::expect_used)]
fn compile(pattern: &str) -> Regex {
    Regex::new(pattern).expect("redaction patterns are valid")
}

/// `text` with every secret replaced by [`REDACTED`].
pub fn redact(text: &[u8]) -> Cow<'_, [u8]> {
    let out = KEY_VALUE.replace_all(text, |caps: &Captures<'_>| {
        let value = caps.name("value").map_or(&[][..], |m| m.as_bytes());
        let mut replaced = caps.name("head").map_or(&[][..], |m| m.as_bytes()).to_vec();
        // Keep the quotes around a quoted value, so the line still reads as
        // what it was (JSON stays JSON).
        let quotes = |b: &u8| matches!(b, b'"' | b'\'' | b'\\');
        let opening = value.iter().take_while(|b| quotes(b)).count();
        if opening == value.len() {
            // Only quotes: an empty value, nothing to hide.
            return caps[0].to_vec();
        }
        let closing = if opening == 0 {
            0
        } else {
            value.iter().rev().take_while(|b| quotes(b)).count()
        };
        replaced.extend_from_slice(&value[..opening]);
        replaced.extend_from_slice(REDACTED.as_bytes());
        replaced.extend_from_slice(&value[value.len() - closing..]);
        replaced
    });
    let out = replace(out, &BEARER, "${scheme} [REDACTED]".as_bytes());
    let out = replace(out, &TOKEN, REDACTED.as_bytes());
    replace(out, &URL_PASSWORD, "${head}[REDACTED]@".as_bytes())
}

/// `text` with every match of `re` replaced; still borrowed if none.
fn replace<'t>(text: Cow<'t, [u8]>, re: &Regex, with: &[u8]) -> Cow<'t, [u8]> {
    let replaced = match re.replace_all(&text, with) {
        Cow::Owned(bytes) => Some(bytes),
        Cow::Borrowed(_) => None,
    };
    replaced.map_or(text, Cow::Owned)
}

/// `text` with every secret replaced by [`REDACTED`].
pub fn redact_str(text: &str) -> String {
    String::from_utf8_lossy(&redact(text.as_bytes())).into_owned()
}

/// A [`MakeWriter`] whose writers redact each line before passing it to the
/// writer `inner` makes: `fmt().with_writer(RedactingWriter::new(io::stderr))`.
#[derive(Debug, Clone, Default)]
pub struct RedactingWriter<M> {
    /// Makes the writers that receive the redacted lines.
    inner: M,
}

impl<M> RedactingWriter<M> {
    /// Wraps `inner`.
    pub fn new(inner: M) -> Self {
        Self { inner }
    }
}

impl<'a, M: MakeWriter<'a>> MakeWriter<'a> for RedactingWriter<M> {
    type Writer = RedactingLines<M::Writer>;

    fn make_writer(&'a self) -> Self::Writer {
        RedactingLines::new(self.inner.make_writer())
    }

    fn make_writer_for(&'a self, meta: &tracing::Metadata<'_>) -> Self::Writer {
        RedactingLines::new(self.inner.make_writer_for(meta))
    }
}

/// A writer that holds bytes until a line is complete, then writes it
/// redacted to `inner`. A partial line is written when the writer is flushed
/// or dropped (the fmt layer makes one writer per event).
#[derive(Debug)]
pub struct RedactingLines<W: Write> {
    /// Where redacted lines go.
    inner: W,
    /// Bytes of the line not complete yet.
    pending: Vec<u8>,
}

impl<W: Write> RedactingLines<W> {
    /// Wraps `inner`.
    pub fn new(inner: W) -> Self {
        Self {
            inner,
            pending: Vec::new(),
        }
    }

    /// Writes every complete line held, or everything when `all`.
    fn emit(&mut self, all: bool) -> io::Result<()> {
        let end = if all {
            self.pending.len()
        } else {
            match self.pending.iter().rposition(|&b| b == b'\n') {
                Some(newline) => newline + 1,
                None => return Ok(()),
            }
        };
        if end == 0 {
            return Ok(());
        }
        let lines: Vec<u8> = self.pending.drain(..end).collect();
        self.inner.write_all(&redact(&lines))
    }
}

impl<W: Write> Write for RedactingLines<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.pending.extend_from_slice(buf);
        self.emit(false)?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.emit(true)?;
        self.inner.flush()
    }
}

impl<W: Write> Drop for RedactingLines<W> {
    fn drop(&mut self) {
        // A log line that cannot be written has nowhere to report to.
        let _ = self.flush();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn check(input: &str, expected: &str) {
        assert_eq!(redact_str(input), expected, "input: {input}");
    }

    #[test]
    fn credential_fields_are_redacted_in_every_form() {
        check(
            "login password=hunter2 user=bob",
            "login password=[REDACTED] user=bob",
        );
        check(r#"token="abc def" next=1"#, r#"token="[REDACTED]" next=1"#);
        check("api_key: k-123, other: 4", "api_key: [REDACTED], other: 4");
        check(
            r#"{"access_token":"a.b.c","refresh_token": "r", "expires_in":3600}"#,
            r#"{"access_token":"[REDACTED]","refresh_token": "[REDACTED]", "expires_in":3600}"#,
        );
        check(
            r#"body="{\"client_secret\":\"s3cr3t\",\"code\":\"print(1)\"}""#,
            r#"body="{\"client_secret\":\"[REDACTED]\",\"code\":\"print(1)\"}""#,
        );
        check(
            "authorization: Basic dXNlcjpwYXNz",
            "authorization: [REDACTED]",
        );
        check(r#"secret=Some("x") ok"#, "secret=[REDACTED] ok");
        check(
            "uri=/v1/jobs?token=abc&limit=5",
            "uri=/v1/jobs?token=[REDACTED]&limit=5",
        );
        check(
            "STRICTPY_WEBHOOK__SECRET=abc",
            "STRICTPY_WEBHOOK__SECRET=[REDACTED]",
        );
        check(
            "\x1b[3mpassword\x1b[0m\x1b[2m=\x1b[0mhunter2 done",
            "\x1b[3mpassword\x1b[0m\x1b[2m=\x1b[0m[REDACTED] done",
        );
    }

    #[test]
    fn bearer_credentials_and_token_literals_are_redacted() {
        check(
            "sent header Bearer abc.def-ghi to upstream",
            "sent header Bearer [REDACTED] to upstream",
        );
        check("id spk_0123456789abcdefXYZ_- end", "id [REDACTED] end");
        check(
            "spa_AAAAAAAAAAAAAAAA spr_BBBBBBBBBBBBBBBBBBBB",
            "[REDACTED] [REDACTED]",
        );
        check(
            "cookie strictpy_session=sps_0123456789abcdef_CCCCCCCC",
            "cookie strictpy_session=[REDACTED]",
        );
    }

    #[test]
    fn the_password_of_a_url_is_redacted() {
        check(
            "store open store=postgres://strictpy:hunter2@db:5432/jobs",
            "store open store=postgres://strictpy:[REDACTED]@db:5432/jobs",
        );
        check(
            "error connecting to postgresql://u:p@ss:w@rd@10.0.0.1/db?sslmode=disable: refused",
            "error connecting to postgresql://u:[REDACTED]@10.0.0.1/db?sslmode=disable: refused",
        );
        check(
            r#"url: Some("postgres://u:s3cr3t@h/db")"#,
            r#"url: Some("postgres://u:[REDACTED]@h/db")"#,
        );
        // No password, or a port rather than a password: nothing to hide.
        for line in [
            "store=postgres://strictpy@db/jobs",
            "listening on http://127.0.0.1:8080/v1",
            "see https://example.test:8443/docs",
        ] {
            assert!(
                matches!(redact(line.as_bytes()), Cow::Borrowed(_)),
                "{line}"
            );
        }
    }

    #[test]
    fn ordinary_lines_are_untouched() {
        for line in [
            "job 0190c1c2 succeeded in 12 ms",
            "tokens_used=5 status=ok",
            "spk_short is not a token",
            "GET /v1/jobs 200",
        ] {
            assert!(
                matches!(redact(line.as_bytes()), Cow::Borrowed(_)),
                "{line}"
            );
        }
    }

    #[test]
    fn the_writer_redacts_whole_lines_even_when_written_in_pieces() {
        let mut sink = Vec::new();
        {
            let mut w = RedactingLines::new(&mut sink);
            w.write_all(b"first pass").expect("write");
            w.write_all(b"word=hunter2 end\nsecond Bear")
                .expect("write");
            w.write_all(b"er xyz\ntail spk_0123456789abcdef0123")
                .expect("write");
        }
        assert_eq!(
            String::from_utf8_lossy(&sink),
            "first password=[REDACTED] end\nsecond Bearer [REDACTED]\ntail [REDACTED]"
        );
    }
}
