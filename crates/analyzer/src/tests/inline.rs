//! The inline check's stack bound: the deepest sources of at most
//! [`INLINE_CHECK_BYTES`] the grammar allows, checked on a thread with only
//! [`INLINE_STACK_BYTES`] of stack. A stack overflow aborts the whole test
//! binary, so getting an answer for every case is the assertion that matters.

use strictpy_types::{Policy, Verdict};

use crate::walk::MAX_TREE_DEPTH;
use crate::{INLINE_CHECK_BYTES, INLINE_STACK_BYTES};

/// A way to nest: `open` repeated, then `leaf`, then `close` repeated.
type Shape = (&'static str, &'static str, &'static str, &'static str);

/// Every construct that nests in the tree, in the parser, or in `Drop`.
const SHAPES: &[Shape] = &[
    ("unary minus", "-", "1", ""),
    ("bitwise not", "~", "1", ""),
    ("boolean not", "not ", "x", ""),
    ("await", "await ", "x", ""),
    ("lambda", "lambda:", "x", ""),
    ("conditional", "x if y else ", "z", ""),
    ("power (right-associative)", "x**", "y", ""),
    ("walrus", "(a:=", "1", ")"),
    ("parentheses", "(", "1", ")"),
    ("lists", "[", "1", "]"),
    ("sets", "{", "1", "}"),
    ("starred lists", "[*", "a", "]"),
    ("calls", "f(", "1", ")"),
    ("subscripts", "x[", "1", "]"),
    ("comprehensions", "[x for x in ", "y", "]"),
    ("f-strings", "f\"{", "1", "}\""),
    ("dict values", "{1:", "1", "}"),
    // Left-deep trees that the parser builds in a loop but `Drop` recurses on.
    ("attribute chain", "", "x", ".a"),
    ("call chain", "", "x", "()"),
    ("subscript chain", "", "x", "[0]"),
    ("binary chain", "", "x", "+x"),
];

/// The source `shape` nested `depth` times, if it fits the inline size.
fn nest(shape: &Shape, depth: usize) -> Option<String> {
    let (_, open, leaf, close) = shape;
    let source = format!("{}{leaf}{}\n", open.repeat(depth), close.repeat(depth));
    (source.len() <= INLINE_CHECK_BYTES).then_some(source)
}

/// The deepest nesting of `shape` that fits the inline size.
fn deepest(shape: &Shape) -> usize {
    let (_, open, _, close) = shape;
    (INLINE_CHECK_BYTES - 2) / (open.len() + close.len())
}

/// Blocks nested one space per level, as deep as fits.
fn nested_blocks() -> String {
    let mut source = String::new();
    let mut level = 0;
    loop {
        let line = format!("{}if 1:\n", " ".repeat(level));
        let last = format!("{}pass\n", " ".repeat(level + 1));
        if source.len() + line.len() + last.len() > INLINE_CHECK_BYTES {
            source.push_str(&format!("{}pass\n", " ".repeat(level)));
            return source;
        }
        source.push_str(&line);
        level += 1;
    }
}

#[test]
fn inline_checks_fit_a_small_stack() {
    // Brackets may nest as deep as the source allows, so the parser and the
    // tree, not the pre-scan, meet every case.
    let policy = Policy {
        max_nesting_depth: INLINE_CHECK_BYTES,
        ..Policy::default()
    };
    let mut sources = vec![("nested blocks".to_owned(), nested_blocks())];
    let limit = MAX_TREE_DEPTH as usize;
    for shape in SHAPES {
        // The deepest that fits, and the depths around the tree limit, where
        // the tree is still dropped by plain recursion.
        let mut depths = vec![deepest(shape)];
        depths.extend(limit.saturating_sub(8)..=limit + 2);
        for depth in depths {
            if let Some(source) = nest(shape, depth) {
                sources.push((format!("{} x{depth}", shape.0), source));
            }
        }
    }
    assert!(sources.iter().all(|(_, s)| s.len() <= INLINE_CHECK_BYTES));
    let count = sources.len();
    let answers = std::thread::Builder::new()
        .name("small-stack".to_owned())
        .stack_size(INLINE_STACK_BYTES)
        .spawn(move || {
            sources
                .into_iter()
                .map(|(label, source)| {
                    let violations =
                        crate::check(source.as_bytes(), &policy, &policy.allowed_modules);
                    (label, violations)
                })
                .collect::<Vec<_>>()
        })
        .expect("spawn")
        .join()
        .expect("the small-stack thread finished");
    assert_eq!(answers.len(), count);
    let mut too_deep = 0;
    for (label, violations) in &answers {
        // An answer from the rules, never the analyzer's own failure.
        assert!(
            violations.iter().all(|v| !v.message.contains("analyzer")),
            "{label}: {violations:?}"
        );
        if violations
            .iter()
            .any(|v| v.rule == Verdict::TooDeeplyNested)
        {
            too_deep += 1;
        }
    }
    // The deepest cases really are deeper than the tree limit, so both the
    // dismantling and the recursive drop were exercised.
    assert!(too_deep > 0 && too_deep < count, "{too_deep} of {count}");
    assert!(
        answers
            .iter()
            .any(|(label, v)| label == "nested blocks" && v.is_empty()),
        "nested blocks are valid and shallow enough"
    );
}
