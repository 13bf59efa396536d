//! Ad-hoc timing of `check` on a generated 1000-line program, and of the parser
//! alone on the same program (not a test: nothing is asserted). Run with
//! `cargo run --release --ignore-rust-version -p strictpy-analyzer --example timing`.

use std::time::Instant;

use strictpy_types::Policy;

/// A realistic 1000-line program: functions, classes, comprehensions, f-strings.
fn program() -> String {
    let mut source =
        String::from("import json\nimport math\nfrom collections import defaultdict\n\n");
    let mut lines = 4;
    let mut i = 0;
    while lines < 1000 {
        source.push_str(&format!(
            "class Item{i}:\n    \"\"\"A thing with a value.\"\"\"\n\n    def __init__(self, value: int, name: str = 'x{i}') -> None:\n        self.value = value\n        self.name = name\n\n    def score(self, weights: dict[str, float]) -> float:\n        total = sum(w * math.sqrt(abs(self.value)) for w in weights.values() if w > 0)\n        return total / max(len(weights), 1)\n\n\ndef summarize_{i}(items: list[Item{i}]) -> str:\n    groups = defaultdict(list)\n    for item in items:\n        groups[item.name].append(item.score({{'a': 1.0, 'b': 2.5}}))\n    best = {{k: max(v) for k, v in groups.items() if v}}\n    return json.dumps({{'count': len(items), 'best': best, 'label': f\"{{len(best)}} groups, first={{next(iter(best), None)!r}}\"}})\n\n\n"
        ));
        lines += 20;
        i += 1;
    }
    source
}

fn main() {
    let policy = Policy::default();
    let source = program();
    let lines = source.lines().count();
    // Warm up, then time.
    for _ in 0..20 {
        assert!(
            strictpy_analyzer::check(source.as_bytes(), &policy, &policy.allowed_modules)
                .is_empty()
        );
    }
    let runs = 500;
    let start = Instant::now();
    for _ in 0..runs {
        std::hint::black_box(strictpy_analyzer::check(
            source.as_bytes(),
            &policy,
            &policy.allowed_modules,
        ));
    }
    let per_run = start.elapsed() / runs;
    println!(
        "{lines} lines, {} bytes: {per_run:?} per check (mean of {runs})",
        source.len()
    );
    let start = Instant::now();
    for _ in 0..runs {
        let parsed =
            ruff_python_parser::parse_unchecked(&source, ruff_python_parser::Mode::Module.into());
        std::hint::black_box(parsed);
    }
    println!("of which the parser alone: {:?}", start.elapsed() / runs);
}
