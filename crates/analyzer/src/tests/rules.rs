//! The import, builtin and attribute rules, including known bypass attempts.

use std::collections::BTreeSet;

use strictpy_types::{Policy, Verdict};

use super::{Located, run, summary};

use Verdict::{ForbiddenAttribute as Attr, ForbiddenBuiltin as Builtin, ForbiddenImport as Import};

/// Asserts that `source` yields exactly the `(rule, name)` pairs in `expected`, in order.
fn check(source: &str, expected: &[(Verdict, &str)]) {
    let violations = run(source);
    let got: Vec<(Verdict, &str)> = violations
        .iter()
        .map(|v| (v.rule, v.name.as_deref().unwrap_or("")))
        .collect();
    assert_eq!(
        got, expected,
        "source: {source:?}\nviolations: {violations:#?}"
    );
}

#[test]
fn imports() {
    let cases: &[(&str, &[(Verdict, &str)])] = &[
        ("import json", &[]),
        ("import json as j", &[]),
        ("import collections.abc", &[]),
        ("from collections.abc import Mapping", &[]),
        ("from collections import abc, deque", &[]),
        ("from __future__ import annotations", &[]),
        ("from math import *", &[]),
        ("import os", &[(Import, "os")]),
        ("import os.path", &[(Import, "os.path")]),
        ("from os import path", &[(Import, "os")]),
        ("import importlib", &[(Import, "importlib")]),
        (
            "import sys, json, subprocess",
            &[(Import, "sys"), (Import, "subprocess")],
        ),
        ("import builtins", &[(Import, "builtins")]),
        ("import __future__", &[(Import, "__future__")]),
        ("import jsonx", &[(Import, "jsonx")]),
        // Relative imports are always refused, named as written.
        ("from . import x", &[(Import, ".")]),
        ("from .m import y", &[(Import, ".m")]),
        ("from ..pkg.mod import z", &[(Import, "..pkg.mod")]),
        ("from .json import loads", &[(Import, ".json")]),
        // Imports anywhere: in functions, classes, conditionals, try blocks.
        ("def f():\n    import os\n", &[(Import, "os")]),
        ("class C:\n    from sys import argv\n", &[(Import, "sys")]),
        (
            "try:\n    import ctypes\nexcept ImportError:\n    pass\n",
            &[(Import, "ctypes")],
        ),
        // Fullwidth module names are normalised like any identifier.
        ("import ｏｓ", &[(Import, "os")]),
        // A name imported from an allowed module that is a forbidden attribute.
        ("from json import __builtins__", &[(Attr, "__builtins__")]),
        (
            "from os import __loader__",
            &[(Import, "os"), (Attr, "__loader__")],
        ),
    ];
    for (source, expected) in cases {
        check(source, expected);
    }
}

#[test]
fn builtins() {
    let cases: &[(&str, &[(Verdict, &str)])] = &[
        ("eval('1')", &[(Builtin, "eval")]),
        ("exec('x = 1')", &[(Builtin, "exec")]),
        ("x = compile", &[(Builtin, "compile")]),
        ("open('/etc/passwd')", &[(Builtin, "open")]),
        ("breakpoint()", &[(Builtin, "breakpoint")]),
        ("g = globals()", &[(Builtin, "globals")]),
        ("l = locals()", &[(Builtin, "locals")]),
        ("v = vars()", &[(Builtin, "vars")]),
        ("help(len)", &[(Builtin, "help")]),
        ("__import__('o' + 's')", &[(Builtin, "__import__")]),
        ("f = __import__\nf('os')", &[(Builtin, "__import__")]),
        // Store and delete contexts count as well.
        ("eval = 1", &[(Builtin, "eval")]),
        ("del exec", &[(Builtin, "exec")]),
        ("for open in range(3):\n    pass\n", &[(Builtin, "open")]),
        // Fullwidth letters are NFKC-normalised.
        ("ｅｘｅｃ(\"1\")", &[(Builtin, "exec")]),
        ("ｅval('1')", &[(Builtin, "eval")]),
        // Attributes with a builtin's name are not builtins.
        ("import re\nre.compile('x')", &[]),
        ("import json\nx = json.loads", &[]),
        (
            "class C:\n    def open(self):\n        return self.eval\n",
            &[],
        ),
        ("d = {'eval': 1}\nd['exec']", &[]),
        // `input` is deliberately allowed.
        ("name = input()", &[]),
        // Everywhere in the tree: decorators, defaults, lambdas, comprehensions,
        // f-strings, annotations, type aliases, match guards.
        ("@eval\ndef f(): pass", &[(Builtin, "eval")]),
        ("def f(x=exec): pass", &[(Builtin, "exec")]),
        (
            "def f(x: vars) -> open: pass",
            &[(Builtin, "vars"), (Builtin, "open")],
        ),
        ("f = lambda: eval('1')", &[(Builtin, "eval")]),
        ("f = lambda x=compile: x", &[(Builtin, "compile")]),
        ("[eval(x) for x in 'ab']", &[(Builtin, "eval")]),
        ("{k: exec for k in 'ab'}", &[(Builtin, "exec")]),
        ("s = f'{eval(\"1\")}'", &[(Builtin, "eval")]),
        ("s = f\"{f'{exec}'}\"", &[(Builtin, "exec")]),
        ("s = f'{1:{open}}'", &[(Builtin, "open")]),
        ("type X = eval", &[(Builtin, "eval")]),
        ("def f[T: exec](): pass", &[(Builtin, "exec")]),
        ("class C(eval): pass", &[(Builtin, "eval")]),
        (
            "match 1:\n    case 1 if exec():\n        pass\n",
            &[(Builtin, "exec")],
        ),
        ("x: open = 1", &[(Builtin, "open")]),
        ("with open('f') as fh: pass", &[(Builtin, "open")]),
        ("(y := globals)", &[(Builtin, "globals")]),
        (
            "async def f():\n    await eval('1')\n",
            &[(Builtin, "eval")],
        ),
    ];
    for (source, expected) in cases {
        check(source, expected);
    }
}

#[test]
fn attributes() {
    let cases: &[(&str, &[(Verdict, &str)])] = &[
        (
            "().__class__.__bases__[0].__subclasses__()",
            &[(Attr, "__bases__"), (Attr, "__subclasses__")],
        ),
        ("def f(): pass\nf.__globals__", &[(Attr, "__globals__")]),
        ("def f(): pass\nf.__code__ = None", &[(Attr, "__code__")]),
        ("del x.__dict__", &[(Attr, "__dict__")]),
        ("type(x).__mro__", &[(Attr, "__mro__")]),
        (
            "x.__self__.__func__",
            &[(Attr, "__self__"), (Attr, "__func__")],
        ),
        ("(1).__reduce_ex__(2)", &[(Attr, "__reduce_ex__")]),
        // Frame walks.
        (
            "import sys\nsys._getframe().f_back.f_globals",
            &[(Import, "sys"), (Attr, "f_back"), (Attr, "f_globals")],
        ),
        (
            "def g(): yield\ng().gi_frame.f_locals",
            &[(Attr, "gi_frame"), (Attr, "f_locals")],
        ),
        (
            "try:\n    1/0\nexcept Exception as e:\n    e.__traceback__.tb_frame.f_builtins\n",
            &[(Attr, "tb_frame"), (Attr, "f_builtins")],
        ),
        // Bare forbidden dunders.
        ("getattr(__builtins__, 'len')", &[(Attr, "__builtins__")]),
        ("getattr(__builtins__, 'eval')", &[(Attr, "__builtins__")]),
        ("__loader__", &[(Attr, "__loader__")]),
        ("print(__spec__)", &[(Attr, "__spec__")]),
        // `__import__` is both; it is reported once, as a builtin.
        ("__import__", &[(Builtin, "__import__")]),
        // Non-dunder forbidden attribute names are fine as bare names.
        ("f_back = 1\nprint(f_back)", &[]),
        // String literals naming attributes in reflective calls.
        ("getattr(f, '__globals__')", &[(Attr, "__globals__")]),
        ("getattr(f, '__glo' 'bals__')", &[(Attr, "__globals__")]),
        ("setattr(f, '__code__', None)", &[(Attr, "__code__")]),
        ("delattr(C, '__dict__')", &[(Attr, "__dict__")]),
        ("hasattr(f, 'f_back')", &[(Attr, "f_back")]),
        (
            "import builtins\nbuiltins.getattr(f, '__globals__')",
            &[(Import, "builtins"), (Attr, "__globals__")],
        ),
        (
            "object.__getattribute__(f, '__globals__')",
            &[(Attr, "__globals__")],
        ),
        (
            "f.__getattribute__('__globals__')",
            &[(Attr, "__globals__")],
        ),
        (
            "import operator\noperator.attrgetter('__class__.__bases__')(1)",
            &[(Import, "operator"), (Attr, "__bases__")],
        ),
        ("getattr(f, 'name')", &[]),
        ("getattr(f, name)", &[]),
        ("getattr('__globals__', 'x')", &[]),
        // str.format templates can read attributes.
        ("'{0.__globals__}'.format(f)", &[(Attr, "__globals__")]),
        ("t = '{x.__class__.__base__}'", &[(Attr, "__base__")]),
        ("t = '{0[__globals__]}'", &[]),
        ("t = '{{0.__globals__}}'", &[]),
        ("t = '{0.real:{1.__dict__}}'", &[(Attr, "__dict__")]),
        // Class pattern keywords read attributes.
        (
            "match f:\n    case C(__globals__=g):\n        pass\n",
            &[(Attr, "__globals__")],
        ),
        ("match f:\n    case C(x=0, y=0):\n        pass\n", &[]),
        // Everywhere: f-strings, decorators, defaults, lambdas, comprehensions,
        // annotations, type aliases.
        ("s = f'{f.__globals__}'", &[(Attr, "__globals__")]),
        ("s = f'{x!r:>{y.__dict__}}'", &[(Attr, "__dict__")]),
        ("@x.__dict__.get\ndef f(): pass", &[(Attr, "__dict__")]),
        (
            "def f(a=().__class__.__base__): pass",
            &[(Attr, "__base__")],
        ),
        ("g = lambda f: f.__code__", &[(Attr, "__code__")]),
        ("[c for c in ().__class__.__mro__]", &[(Attr, "__mro__")]),
        ("def f(x: T.__dict__): pass", &[(Attr, "__dict__")]),
        ("type A = B.__subclasses__", &[(Attr, "__subclasses__")]),
        ("class C(object.__base__): pass", &[(Attr, "__base__")]),
        // Fullwidth attribute names are normalised.
        ("f.__ｇｌｏｂａｌｓ__", &[(Attr, "__globals__")]),
        // Ordinary dunders stay allowed.
        (
            "x = ().__class__.__name__\nclass C:\n    def __init__(self): pass\n",
            &[],
        ),
    ];
    for (source, expected) in cases {
        check(source, expected);
    }
}

#[test]
fn positions_are_one_based_character_columns() {
    let cases: &[(&str, &[Located<'_>])] = &[
        ("import os", &[(Import, Some("os"), 1, 8)]),
        ("x = eval('1')", &[(Builtin, Some("eval"), 1, 5)]),
        // Columns count characters, not bytes: `ñ` is two bytes.
        ("s = 'ñ'; eval(s)", &[(Builtin, Some("eval"), 1, 10)]),
        ("s = '日本'; f.__code__", &[(Attr, Some("__code__"), 1, 13)]),
        ("from .m import y", &[(Import, Some(".m"), 1, 7)]),
        ("from . import y", &[(Import, Some("."), 1, 1)]),
        ("getattr(f, '__dict__')", &[(Attr, Some("__dict__"), 1, 12)]),
    ];
    for (source, expected) in cases {
        assert_eq!(summary(&run(source)), *expected, "source: {source:?}");
    }
}

#[test]
fn all_violations_are_reported_sorted() {
    let source =
        "x = eval('1'); y = exec\nimport os\nimport json, sys\nf.__globals__\nfrom . import z\n";
    let violations = run(source);
    assert_eq!(
        summary(&violations),
        [
            (Builtin, Some("eval"), 1, 5),
            (Builtin, Some("exec"), 1, 20),
            (Import, Some("os"), 2, 8),
            (Import, Some("sys"), 3, 14),
            (Attr, Some("__globals__"), 4, 3),
            (Import, Some("."), 5, 1),
        ]
    );
    assert!(violations.iter().all(|v| !v.message.is_empty()));
}

#[test]
fn the_allowlist_argument_decides_imports() {
    let policy = Policy::default();
    let extended = policy
        .effective_allowlist(&["random".to_owned()])
        .expect("random is allowable");
    assert!(crate::check(b"import random", &policy, &extended).is_empty());
    assert_eq!(
        crate::check(b"import random", &policy, &policy.allowed_modules).len(),
        1
    );
    // `policy.allowed_modules` is not consulted: an empty allowlist refuses json.
    let violations = crate::check(b"import json", &policy, &BTreeSet::new());
    assert_eq!(summary(&violations), [(Import, Some("json"), 1, 8)]);
}

#[test]
fn the_policy_lists_decide_names() {
    let mut policy = Policy::default();
    policy.forbidden_builtins.insert("print".to_owned());
    policy.forbidden_attributes.insert("__class__".to_owned());
    policy.forbidden_builtins.remove("eval");
    let violations = crate::check(
        b"print(().__class__)\neval('1')",
        &policy,
        &policy.allowed_modules,
    );
    assert_eq!(
        summary(&violations),
        [
            (Builtin, Some("print"), 1, 1),
            (Attr, Some("__class__"), 1, 10),
        ]
    );
}
