//! `check_context_key`: keys must be Python identifiers Python code can spell.

use crate::check_context_key;

#[test]
fn context_keys() {
    let ok = [
        "x",
        "_a1",
        "ñ",
        "_",
        "__dunder__",
        "CamelCase",
        "变量",
        "données",
        "match",
        "case",
        "type",
        "lazy",
        "print",
        "eval",
        "x1_2",
    ];
    for key in ok {
        assert_eq!(check_context_key(key), Ok(()), "{key:?} should be accepted");
    }
    let bad = [
        "",
        "1x",
        "a-b",
        "class",
        "None",
        "True",
        "False",
        "import",
        "async",
        "await",
        "a b",
        " x",
        "x ",
        "x\n",
        "a.b",
        "a#b",
        "x\\",
        "€",
        "a€",
        "ｘ",
        "ﬁ",
        "n\u{303}",
        "\u{feff}x",
        "x\0",
        "'x'",
        "(x)",
    ];
    for key in bad {
        let message = check_context_key(key).expect_err(key);
        assert!(message.contains("context key"), "{key:?}: {message}");
        if !key.is_empty() {
            // The message names the key (as written).
            assert!(message.contains(key), "{key:?}: {message}");
        }
    }
    // Long keys are shortened in the message but still refused or accepted.
    assert_eq!(check_context_key(&"a".repeat(10_000)), Ok(()));
    let long = format!("{}-", "a".repeat(10_000));
    let message = check_context_key(&long).expect_err("long invalid key");
    assert!(message.len() < 300, "{message}");
}
