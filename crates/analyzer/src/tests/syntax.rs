//! Syntax: modern Python the guest runs must pass untouched, and syntax errors must
//! be reported where the parser finds them.

use strictpy_types::Verdict;

use super::{run, summary};

/// Asserts that `source` passes every rule.
fn check_accepted(source: &str) {
    let violations = run(source);
    assert!(
        violations.is_empty(),
        "source should be accepted:\n{source}\nviolations: {violations:#?}"
    );
}

#[test]
fn modern_syntax_is_accepted() {
    let programs: &[&str] = &[
        // match with class, mapping, sequence, or, as, value, star and guard patterns.
        r#"
class Point:
    __match_args__ = ("x", "y")
    def __init__(self, x, y):
        self.x, self.y = x, y

def describe(p):
    match p:
        case Point(x=0, y=0):
            return "origin"
        case Point(0, y):
            return f"on the y axis at {y}"
        case {"kind": "circle", "r": r, **rest}:
            return r
        case [first, *others] if others:
            return first
        case (1 | 2 | 3) as small:
            return small
        case str() | bytes():
            return "text"
        case None | True:
            return "singleton"
        case -1.5 | 2j:
            return "number"
        case _:
            return "other"
"#,
        // Walrus.
        "if (n := len([1, 2, 3])) > 2:\n    print(n)\nwhile (line := input()):\n    break\n",
        "print([y for x in range(5) if (y := x * 2) > 3])",
        // PEP 701 f-strings: nested same quotes, nested f-strings, backslashes,
        // comments and newlines in replacement fields, format specs, debug `=`.
        r#"
d = {"k": 1, "name": "x"}
words = ["a", "b"]
a = f"{d["k"]}"
b = f"{f"{f"{1}"}"}"
c = f"{'\n'.join(words)}"
e = f"{d['k']!r:>{10}} {3.14159:.{2}f} {d=} {'{'}"
g = f"""{
    d["name"]  # a comment inside a replacement field
}"""
h = f"{'a' if d else 'b'}" f'{1}' "plain" rf"\d{1}" F"{{literal}}" fR'{2}'
i = f"\N{BULLET} {1}"
j = f"{ {'a': 1}['a'] }"
k = f"{(lambda x: x * 2)(3)}"
"#,
        // except*.
        "try:\n    pass\nexcept* ValueError as eg:\n    pass\nexcept* (TypeError, KeyError):\n    pass\n",
        // Type aliases and generics (PEP 695), with bounds, constraints and defaults.
        "type X = list[int]\ntype Pair[T] = tuple[T, T]\n",
        "def f[T](x: T) -> T:\n    return x\n",
        "class Box[T: (int, str), *Ts, **P]:\n    def get[U = int](self) -> T: ...\n",
        // Positional-only and keyword-only parameters, defaults, *args, **kwargs.
        "def f(a, b=2, /, c=3, *, d, e=5, **kw):\n    return a\ndef g(*args, **kwargs): pass\n",
        // Decorators: arbitrary expressions (PEP 614).
        "@functools.lru_cache(maxsize=None)\n@(lambda f: f)\n@[lambda f: f][0]\ndef f(): pass\n",
        // async def, await, async for, async with, async comprehensions.
        r#"
async def agen():
    yield 1

async def main(cm):
    async for x in agen():
        print(x)
    async with cm as c, cm as d:
        pass
    ys = [y async for y in agen()]
    zs = [await z for z in []]
    return await main(cm)
"#,
        // Star expressions and unpacking.
        "first, *rest = [1, 2, 3]\nprint(*rest, **{})\nt = (*rest, 1)\ns = {*rest}\nd = {**{}, 'a': 1}\nfor a, *b in [(1, 2)]: pass\n",
        // global and nonlocal.
        "x = 0\ndef f():\n    global x\n    y = 1\n    def g():\n        nonlocal y\n        y += 1\n    g()\n",
        // Chained comparisons, conditional expressions, slices, ellipsis.
        "a = 1 < 2 <= 3 != 4 is not None in [1]\nb = 1 if a else 2\nc = [1, 2, 3][::2]\nd = ...\n",
        // Lambdas with defaults, keyword-only and positional-only parameters.
        "f = lambda a, b=1, /, c=2, *args, d=3, **kw: a + b\n",
        // Dict, set and generator comprehensions.
        "d = {k: v for k, v in [(1, 2)] if k}\ns = {x for x in range(3)}\ng = sum(x for x in range(3))\n",
        // try/except/else/finally.
        "try:\n    x = 1\nexcept (ValueError, TypeError) as e:\n    pass\nexcept Exception:\n    raise\nelse:\n    pass\nfinally:\n    pass\n",
        // Parenthesised context managers.
        "with (nullcontext() as a, nullcontext() as b):\n    pass\n",
        "with (open_a() as a, open_b() as b,):\n    pass\n",
        // Soft keywords used as names.
        "match = 1\ncase = 2\ntype = 3\n_ = match + case + type\n",
        // Assorted: classes, properties, yield from, raise from, assert, del, augmented
        // assignment, annotated assignment, semicolons, continuation lines, bytes,
        // numbers with underscores, complex numbers, string prefixes.
        r#"
class C(dict, metaclass=type):
    x: int = 1
    @property
    def p(self) -> int:
        return self.x
def gen():
    yield from range(3)
try:
    raise ValueError("x") from None
except ValueError:
    pass
assert 1, "message"
a = [1]; del a[0]; a += [2]
b = 1 + \
    2
c = b"bytes" + rb"\d" + Br'\x'
n = 1_000_000 + 0x_ff + 0o17 + 0b1 + 1e10 + 3j
u = u"unicode" + R"raw"
"#,
        // A UTF-8 cookie and a BOM are fine.
        "# -*- coding: utf-8 -*-\nx = 1\n",
        "#!/usr/bin/env python3\n# vim: set fileencoding=UTF8 :\nx = 1\n",
        "\u{feff}x = 1\n",
        // Non-ASCII identifiers and strings.
        "ñ = 'mañana'\n変数 = ñ\nprint(変数)\n",
        // Empty and comment-only programs.
        "",
        "# just a comment\n",
        "\n\n   \n",
        // CRLF and CR line endings.
        "x = 1\r\nif x:\r\n    y = 2\r\n",
        "x = 1\rif x:\r    y = 2\r",
        // t-strings (PEP 750), which the parser also knows.
        "name = 'x'\nt = t\"hello {name}\"\n",
    ];
    for program in programs {
        check_accepted(program);
    }
}

#[test]
fn syntax_errors_are_located() {
    // `(source, line, column)` of the first error; every violation must be a
    // syntax error, since nothing else is checked on a program that does not parse.
    let cases: &[(&str, u32, u32)] = &[
        ("x = = 1", 1, 5),
        ("def f(:\n    pass\n", 1, 7),
        // An unclosed bracket is found at the end of the input, where the parser
        // runs out of tokens (CPython would point at the bracket instead).
        ("x = 1\ny = (1, 2\n", 3, 1),
        ("x = 1\nif x\n    pass\n", 2, 5),
        ("print 'hello'", 1, 7),
        ("x = 1\n  y = 2\n", 2, 1),
        ("s = 'unterminated\n", 1, 5),
        ("class C\n", 1, 8),
        ("f(**)", 1, 5),
        ("x = ñ ñ", 1, 7),
        ("for x in range(3):\npass\n", 2, 1),
        ("return = 1", 1, 8),
        ("a = 1 +", 1, 8),
        ("'''never closed", 1, 1),
        ("x = f'{'", 1, 8),
    ];
    let mut mismatches = Vec::new();
    for (source, line, column) in cases {
        let violations = run(source);
        assert!(!violations.is_empty(), "{source:?} should not parse");
        assert!(
            violations.iter().all(|v| v.rule == Verdict::SyntaxError),
            "{source:?}: {violations:#?}"
        );
        let first = &violations[0];
        assert!(!first.message.is_empty());
        if (first.line, first.column) != (*line, *column) {
            mismatches.push(format!(
                "{source:?}: expected {line}:{column}, got {}:{} ({})",
                first.line, first.column, first.message
            ));
        }
    }
    assert!(mismatches.is_empty(), "{}", mismatches.join("\n"));
}

#[test]
fn semantic_rules_are_skipped_after_syntax_errors() {
    // The program would also import os and call eval, but it never runs.
    let violations = run("import os\neval('1')\nx = = 2\n");
    assert_eq!(
        summary(&violations),
        [(Verdict::SyntaxError, None, 3, 5)],
        "{violations:#?}"
    );
}

#[test]
fn every_syntax_error_is_reported() {
    let violations = run("x = = 1\ny = = 2\n");
    assert!(violations.len() >= 2, "{violations:#?}");
    assert_eq!((violations[0].line, violations[1].line), (1, 2));
}

#[test]
fn bare_parse_counts_what_the_check_reports_as_syntax_errors() {
    // The same parser and options: no errors where the check sees none, and
    // as many as the check's syntax_error violations otherwise.
    let cases: &[&str] = &[
        "x = 1\nprint(x)\n",
        "import os\n",
        "def f(:\n    pass\n",
        "x = (1,\ny = ]\n",
        "",
    ];
    for source in cases {
        let syntax_errors = run(source)
            .iter()
            .filter(|v| v.rule == Verdict::SyntaxError)
            .count();
        assert_eq!(crate::bare_parse(source), Some(syntax_errors), "{source:?}");
    }
}

#[test]
fn bare_parse_refuses_large_sources_and_survives_deep_ones() {
    let large = "x = 1\n".repeat(crate::BARE_PARSE_MAX_BYTES / 6 + 1);
    assert_eq!(crate::bare_parse(&large), None);
    // A unary chain as deep as the size limit allows is parsed and dropped
    // without exhausting the worker's stack.
    let deep = format!("{}1\n", "-".repeat(crate::BARE_PARSE_MAX_BYTES - 2));
    assert_eq!(crate::bare_parse(&deep), Some(0));
}
