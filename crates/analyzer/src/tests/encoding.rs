//! The `invalid_encoding` rule: UTF-8 only, no NUL, no other coding cookie.

use strictpy_types::Verdict;

use super::{Located, run_bytes, summary};

use Verdict::InvalidEncoding;

/// Asserts the `(rule, name, line, column)` list for raw `source` bytes.
fn check(source: &[u8], expected: &[Located<'_>]) {
    let violations = run_bytes(source);
    assert_eq!(
        summary(&violations),
        expected,
        "source: {:?}\n{violations:#?}",
        String::from_utf8_lossy(source)
    );
}

#[test]
fn encodings() {
    let cases: &[(&[u8], &[Located<'_>])] = &[
        // Invalid UTF-8: where the first bad byte is.
        (b"x = 1\n\xff", &[(InvalidEncoding, None, 2, 1)]),
        (b"s = '\xc3\xa9\xc3'", &[(InvalidEncoding, None, 1, 7)]),
        (b"\xc0\x80", &[(InvalidEncoding, None, 1, 1)]),
        // Encoded surrogates are not UTF-8.
        (b"x = '\xed\xa0\x80'", &[(InvalidEncoding, None, 1, 6)]),
        // NUL bytes, even in strings and comments.
        (b"x = 1\x00", &[(InvalidEncoding, None, 1, 6)]),
        (b"# \x00\n", &[(InvalidEncoding, None, 1, 3)]),
        // Coding cookies other than UTF-8 (reported at the encoding's name).
        (
            b"# -*- coding: latin-1 -*-\nx = 1\n",
            &[(InvalidEncoding, Some("latin-1"), 1, 15)],
        ),
        (
            b"#!/usr/bin/python\n# vim: set fileencoding=cp1252 :\n",
            &[(InvalidEncoding, Some("cp1252"), 2, 25)],
        ),
        (
            b"\n# coding=ascii\n",
            &[(InvalidEncoding, Some("ascii"), 2, 10)],
        ),
        (
            b"  #coding:utf-16",
            &[(InvalidEncoding, Some("utf-16"), 1, 11)],
        ),
        // A BOM with a contradicting cookie.
        (
            b"\xef\xbb\xbf# coding: latin-1\n",
            &[(InvalidEncoding, Some("latin-1"), 1, 11)],
        ),
        // Accepted spellings of UTF-8.
        (b"# coding: utf-8\n", &[]),
        (b"# coding: UTF-8\n", &[]),
        (b"# coding: utf8\n", &[]),
        (b"# coding: utf_8\n", &[]),
        (b"# coding: utf-8-sig\n", &[]),
        (b"# -*- coding: UTF_8 -*-\n", &[]),
        // Only the first two lines count, the second only after a blank or comment line.
        (b"x = 1\n# coding: latin-1\n", &[]),
        (b"\n\n# coding: latin-1\n", &[]),
        // Not a cookie: no `:` or `=`, or not in a comment.
        (b"# coding latin-1\n", &[]),
        (b"x = '# coding: latin-1'\n", &[]),
        // A byte-order mark is fine, and is not a column.
        (b"\xef\xbb\xbfx = 1\n", &[]),
        (
            b"\xef\xbb\xbfeval('1')\n",
            &[(Verdict::ForbiddenBuiltin, Some("eval"), 1, 1)],
        ),
    ];
    for (source, expected) in cases {
        check(source, expected);
    }
}

#[test]
fn invalid_encoding_stops_the_check() {
    // The program also has a syntax error and a forbidden import; only the
    // encoding is reported.
    check(
        b"import os\nx = = 1\n\xfe\n",
        &[(InvalidEncoding, None, 3, 1)],
    );
}
