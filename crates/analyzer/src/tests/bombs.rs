//! Size and depth bombs: each must come back with a verdict, never crash.

use strictpy_types::{DEFAULT_MAX_NESTING_DEPTH, DEFAULT_MAX_SOURCE_BYTES, Verdict};

use super::{run, summary};

use Verdict::{SourceTooLarge, TooDeeplyNested};

/// Asserts that `source` yields exactly `expected` as `(rule, line, column)`.
fn check(label: &str, source: &str, expected: &[(Verdict, u32, u32)]) {
    let violations = run(source);
    let got: Vec<(Verdict, u32, u32)> = violations
        .iter()
        .map(|v| (v.rule, v.line, v.column))
        .collect();
    assert_eq!(
        got,
        expected,
        "{label}: {:#?}",
        &violations[..violations.len().min(3)]
    );
}

/// A labelled source and the `(rule, line, column)` list it must yield.
type Case = (&'static str, String, Vec<(Verdict, u32, u32)>);

/// `n` nested `if` blocks with `pass` at the bottom, indented one space a level.
fn nested_blocks(n: usize) -> String {
    let mut source = String::new();
    for level in 0..n {
        source.push_str(&" ".repeat(level));
        source.push_str("if 1:\n");
    }
    source.push_str(&" ".repeat(n));
    source.push_str("pass\n");
    source
}

#[test]
fn bracket_nesting_is_limited_before_parsing() {
    let max = DEFAULT_MAX_NESTING_DEPTH;
    let at_limit = format!("x = {}{}", "(".repeat(max), ")".repeat(max));
    let cases: Vec<Case> = vec![
        // 100 nested brackets are fine; the 101st is refused where it opens.
        ("100 parentheses", at_limit, vec![]),
        (
            "101 square brackets",
            format!("{}{}", "[".repeat(max + 1), "]".repeat(max + 1)),
            vec![(TooDeeplyNested, 1, 101)],
        ),
        (
            "100k open parentheses",
            "(".repeat(100_000),
            vec![(TooDeeplyNested, 1, 101)],
        ),
        (
            "mixed brackets",
            format!("x = {}0{}", "[{(".repeat(34), ")}]".repeat(34)),
            vec![(TooDeeplyNested, 1, 105)],
        ),
        // Brackets in strings and comments do not count.
        (
            "brackets in a string",
            format!("x = '{}'", "(".repeat(1000)),
            vec![],
        ),
        (
            "brackets in a comment",
            format!("# {}\nx = 1", "[".repeat(1000)),
            vec![],
        ),
        (
            "brackets in a triple-quoted string",
            format!("x = r'''\n{}\n'''", "{".repeat(1000)),
            vec![],
        ),
        // Replacement fields of f-strings do count: nested f-strings nest.
        (
            "nested f-strings",
            format!("x = {}1{}", "f\"{".repeat(max + 1), "}\"".repeat(max + 1)),
            vec![(TooDeeplyNested, 1, 7 + 3 * max as u32)],
        ),
        (
            "doubled braces are text",
            format!("x = f'{}'", "{{".repeat(1000)),
            vec![],
        ),
    ];
    for (label, source, expected) in &cases {
        check(label, source, expected);
    }
}

#[test]
fn block_nesting_is_limited_before_parsing() {
    let max = DEFAULT_MAX_NESTING_DEPTH;
    check("100 nested blocks", &nested_blocks(max), &[]);
    // The first line indented past the limit is the 102nd (`pass` under 101 ifs
    // is at level 101).
    check(
        "101 nested blocks",
        &nested_blocks(max + 1),
        &[(TooDeeplyNested, 102, 102)],
    );
    check(
        "1000 nested blocks",
        &nested_blocks(1000),
        &[(TooDeeplyNested, 102, 102)],
    );
    // Tabs count as indentation too.
    let mut tabs = String::new();
    for level in 0..=max {
        tabs.push_str(&"\t".repeat(level));
        tabs.push_str("if 1:\n");
    }
    tabs.push_str(&"\t".repeat(max + 1));
    tabs.push_str("pass\n");
    check("tabs", &tabs, &[(TooDeeplyNested, 102, 102)]);
    // Indentation inside brackets and strings is not block nesting.
    let mut in_brackets = String::from("x = [\n");
    for level in 0..500 {
        in_brackets.push_str(&" ".repeat(level));
        in_brackets.push_str("1,\n");
    }
    in_brackets.push_str("]\n");
    check("indented lines in brackets", &in_brackets, &[]);
}

#[test]
fn size_is_limited() {
    let mut at_limit = "#".repeat(DEFAULT_MAX_SOURCE_BYTES - 1);
    at_limit.push('\n');
    check("exactly 1 MiB", &at_limit, &[]);
    at_limit.push('\n');
    check("1 MiB + 1 byte", &at_limit, &[(SourceTooLarge, 1, 1)]);
    // Size wins over everything else, even invalid bytes.
    let mut bytes = vec![0xffu8; DEFAULT_MAX_SOURCE_BYTES + 1];
    bytes[0] = b'(';
    assert_eq!(
        summary(&super::run_bytes(&bytes)),
        [(SourceTooLarge, None, 1, 1)]
    );
}

#[test]
fn deep_trees_without_brackets_are_refused_without_crashing() {
    // Chains the bracket scanner cannot see: operators, attribute access, calls,
    // conditional expressions, lambdas and powers. Each parses into a tree far
    // deeper than the guest's compiler accepts (1000), so each is refused as too
    // deeply nested at the node where the walk crossed the limit; the test only
    // pins the rule and that the first violation is on line 1.
    let deep: Vec<(&str, String)> = vec![
        ("binary operators", format!("{}a", "a+".repeat(300_000))),
        ("not", format!("{}x", "not ".repeat(200_000))),
        ("unary minus", format!("{}1", "-".repeat(300_000))),
        (
            "unary minus at 1 MiB",
            format!("{}1", "-".repeat(DEFAULT_MAX_SOURCE_BYTES - 1)),
        ),
        ("attributes", format!("a{}", ".b".repeat(300_000))),
        ("calls", format!("f{}", "()".repeat(300_000))),
        ("subscripts", format!("a{}", "[0]".repeat(200_000))),
        (
            "conditional expressions",
            format!("{}1", "1 if 1 else ".repeat(50_000)),
        ),
        ("lambdas", format!("{}1", "lambda: ".repeat(100_000))),
        (
            "lambda defaults",
            format!("{}0{}", "lambda a=".repeat(50_000), ": 0".repeat(50_000)),
        ),
        ("power", format!("{}2", "2**".repeat(300_000))),
    ];
    for (label, source) in &deep {
        let violations = run(source);
        assert!(
            !violations.is_empty() && violations.iter().all(|v| v.rule == TooDeeplyNested),
            "{label}: {:#?}",
            &violations[..violations.len().min(3)]
        );
        assert_eq!(violations.len(), 1, "{label}");
    }

    // The limit is exact: the assignment is at depth 1, so 998 unary operators put
    // the literal at depth 1000, which the compiler accepts, and 999 at 1001.
    check("depth 1000", &format!("x = {}1", "-".repeat(998)), &[]);
    check(
        "depth 1001",
        &format!("x = {}1", "-".repeat(999)),
        &[(TooDeeplyNested, 1, 1004)],
    );

    // Long but flat constructs are not deep at all.
    let flat: Vec<(&str, String)> = vec![
        (
            "elif chain",
            format!(
                "x = 1\nif x:\n    pass\n{}else:\n    pass\n",
                "elif x:\n    pass\n".repeat(50_000)
            ),
        ),
        (
            "implicit string concatenation",
            format!("x = {}", "'a' ".repeat(200_000)),
        ),
        (
            "string concatenation with +",
            format!("x = 'a'{}", " + 'a'".repeat(900)),
        ),
        ("boolean chain", format!("x = 1{}", " or 1".repeat(100_000))),
        (
            "comparison chain",
            format!("x = 1{}", " < 1".repeat(100_000)),
        ),
        ("many statements", "x = 1\n".repeat(100_000)),
        ("long tuple", format!("x = ({})", "1, ".repeat(200_000))),
    ];
    for (label, source) in &flat {
        check(label, source, &[]);
    }
}

#[test]
fn deep_trees_with_syntax_errors_are_taken_apart_safely() {
    // The parser recovers and still builds the deep tree; it must be dropped
    // without recursion, and only the syntax error reported.
    let source = format!("{}1 +", "-".repeat(500_000));
    let violations = run(&source);
    assert!(!violations.is_empty());
    assert!(violations.iter().all(|v| v.rule == Verdict::SyntaxError));
}

#[test]
fn the_walk_does_not_need_the_big_stack() {
    // The worker's 256 MiB stack is a second line of defence: parsing (which
    // grows its own stack), walking and dropping a million-deep tree, or dropping
    // a tree right at the depth limit the ordinary way, must fit in a 2 MiB stack.
    let cases = [
        (
            format!("x = {}1", "-".repeat(DEFAULT_MAX_SOURCE_BYTES - 5)),
            1,
        ),
        (format!("x = {}1", "-".repeat(998)), 0),
        (format!("x = {}1{}", "-(".repeat(100), ")".repeat(100)), 0),
    ];
    for (source, expected) in cases {
        let policy = strictpy_types::Policy::default();
        let findings = std::thread::Builder::new()
            .stack_size(2 * 1024 * 1024)
            .spawn(move || {
                let mut findings = Vec::new();
                crate::parse::check_parsed(
                    &source,
                    &policy,
                    &policy.allowed_modules,
                    &mut findings,
                );
                findings
            })
            .expect("spawn")
            .join()
            .expect("no stack overflow");
        assert_eq!(findings.len(), expected, "{findings:?}");
        assert!(findings.iter().all(|f| f.rule == TooDeeplyNested));
    }
}
