//! Parsing with exactly the parser and options the guest's compiler uses, and the
//! `syntax_error` rule.
//!
//! RustPython 0.6.0 compiles a program in `rustpython-compiler-0.6.0/src/lib.rs`,
//! `_compile_with_syntax_warning_handler` (around line 7272):
//!
//! ```text
//! let parser_options = parser::ParseOptions::from(parser_mode);  // Mode::Module for exec
//! ...
//! let parsed = parser::parse(barry_source.source(), parser_options);
//! ```
//!
//! So: `Mode::Module`, and the target version left at `ParseOptions`' default
//! (`PythonVersion::PY310`). `parser::parse` is `parse_unchecked(..).into_result()`,
//! which fails on the first entry of `errors()` and ignores
//! `unsupported_syntax_errors()` (the errors for syntax newer than the target
//! version, such as `type X = ...` or PEP 701 f-strings under 3.10). The compiler
//! never looks at those either, so neither do we: the guest runs such programs.
//!
//! We call `parse_unchecked` to get every error the parser recovered from, not just
//! the first; the set of programs with at least one error is the same.

use std::collections::BTreeSet;

use ruff_python_ast::Mod;
use ruff_python_parser::{Mode, ParseOptions};
use strictpy_types::{Policy, Verdict};

use crate::Finding;
use crate::walk::{self, Rules};

/// Parses `text`; reports every syntax error, or else runs the semantic rules.
pub(crate) fn check_parsed(
    text: &str,
    policy: &Policy,
    allowlist: &BTreeSet<String>,
    findings: &mut Vec<Finding>,
) {
    let parsed = ruff_python_parser::parse_unchecked(text, ParseOptions::from(Mode::Module));
    let errors = parsed.errors();
    for error in errors {
        findings.push(Finding::unnamed(
            Verdict::SyntaxError,
            error.location.start().to_usize(),
            error.error.to_string(),
        ));
    }
    // A program with syntax errors never runs, so the semantic rules would only
    // add noise about a tree the parser partly invented while recovering. The tree
    // still has to be disposed of without deep recursion.
    let rules = errors.is_empty().then(|| Rules::new(policy, allowlist));
    let body = match parsed.into_syntax() {
        Mod::Module(module) => module.body,
        // `Mode::Module` always yields a module; an expression is taken apart too.
        Mod::Expression(expression) => {
            let mut body = ruff_python_ast::Suite::new();
            body.push(ruff_python_ast::Stmt::Expr(ruff_python_ast::StmtExpr {
                node_index: Default::default(),
                range: Default::default(),
                value: expression.body,
            }));
            body
        }
    };
    walk::check_tree(body, rules.as_ref(), findings);
}

/// The bare parse behind [`crate::bare_parse`]: the same call as
/// [`check_parsed`], then the tree is simply dropped. Returns the number of
/// syntax errors.
pub(crate) fn bare(text: &str) -> usize {
    let parsed = ruff_python_parser::parse_unchecked(text, ParseOptions::from(Mode::Module));
    parsed.errors().len()
}
