//! Robustness: a few thousand deterministic pseudo-random and mutated inputs must
//! all come back with an answer.

use strictpy_types::Policy;

/// A xorshift64 generator: deterministic, dependency-free, good enough to shuffle bytes.
struct XorShift(u64);

impl XorShift {
    /// The next pseudo-random number.
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// A number below `n` (which must not be zero).
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// Seeds for mutation: valid programs touching every part of the grammar.
const SEEDS: &[&str] = &[
    "import json\nx = json.loads('[1, 2]')\nprint(x)\n",
    "def f(a, /, b=1, *c, d, **e) -> int:\n    return a\n",
    "class C[T](B, metaclass=M):\n    x: int = 1\n    async def m(self): await g()\n",
    "match p:\n    case Point(x=0, y=[1, *r]) | {'k': v, **kw} if v:\n        pass\n",
    "s = f\"{x!r:>{w}} {d['k']} {f'{1}'}\" rb'\\d' '''tri\nple''' t'{y}'\n",
    "try:\n    pass\nexcept* E as e:\n    raise\nelse:\n    pass\nfinally:\n    del x\n",
    "with (a as b, c as d):\n    x = [i async for i in y if (z := i)]\n",
    "type X[T = int] = list[T]\nlambda a=1, *, b: (yield from a)\n",
    "@dec(1)\n@x.y\ndef g(): global q; nonlocal r\n\n\tif 1:\n\t\tpass\n",
    "x = 1 if y else -~z ** 2 // 3 @ m < n <= o is not p not in q\n",
];

/// Fragments spliced in by the mutator, chosen to stress the scanner and parser.
const FRAGMENTS: &[&str] = &[
    "(",
    ")",
    "[",
    "]",
    "{",
    "}",
    "'",
    "\"",
    "'''",
    "\"\"\"",
    "f'",
    "f\"",
    "rf'",
    "t'",
    "\\",
    "\n",
    "\r",
    "\r\n",
    "\t",
    " ",
    "    ",
    "#",
    ":",
    "=",
    ":=",
    "{{",
    "}}",
    "\\N{",
    "lambda",
    "not ",
    "-",
    "+",
    "**",
    ".",
    "@",
    "*",
    "import ",
    "from . import",
    "eval",
    "__class__",
    "async ",
    "await ",
    "match ",
    "case ",
    "\u{feff}",
    "é",
    "ｅ",
    "\u{0}",
    "if x:\n ",
];

/// Applies one random mutation to `input`.
fn mutate(rng: &mut XorShift, input: &mut Vec<u8>) {
    let at = rng.below(input.len() + 1);
    match rng.below(6) {
        0 => {
            let fragment = FRAGMENTS[rng.below(FRAGMENTS.len())].as_bytes();
            input.splice(at..at, fragment.iter().copied());
        }
        1 if at < input.len() => {
            let end = (at + 1 + rng.below(8)).min(input.len());
            input.drain(at..end);
        }
        2 if at < input.len() => input[at] = (rng.next() & 0xff) as u8,
        3 => {
            // Repeat a fragment many times: depth and length bombs in miniature.
            let fragment = FRAGMENTS[rng.below(FRAGMENTS.len())].as_bytes();
            let times = 1 + rng.below(300);
            let repeated: Vec<u8> = fragment.repeat(times);
            input.splice(at..at, repeated);
        }
        4 if !input.is_empty() => {
            // Duplicate a slice of the input elsewhere.
            let start = rng.below(input.len());
            let end = (start + 1 + rng.below(64)).min(input.len());
            let slice = input[start..end].to_vec();
            input.splice(at..at, slice);
        }
        _ => {
            let bytes = b"()[]{}'\"\\#\n :=.fr";
            input.insert(at, bytes[rng.below(bytes.len())]);
        }
    }
}

#[test]
fn never_panics_on_mutated_or_random_input() {
    let policy = Policy::default();
    let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
    let mut checked = 0usize;
    for round in 0..3000 {
        let input: Vec<u8> = if round % 10 == 0 {
            // Pure noise, biased towards ASCII.
            let len = rng.below(512);
            (0..len)
                .map(|_| {
                    let b = rng.next();
                    if b.is_multiple_of(4) {
                        (b >> 8) as u8
                    } else {
                        32 + ((b >> 8) % 95) as u8
                    }
                })
                .collect()
        } else {
            let mut input = SEEDS[rng.below(SEEDS.len())].as_bytes().to_vec();
            for _ in 0..1 + rng.below(6) {
                mutate(&mut rng, &mut input);
            }
            input
        };
        let violations = crate::check(&input, &policy, &policy.allowed_modules);
        for v in &violations {
            assert!(v.line >= 1 && v.column >= 1, "{v:?} for {input:?}");
            assert!(v.rule.is_static());
        }
        assert!(
            violations
                .windows(2)
                .all(|w| (w[0].line, w[0].column) <= (w[1].line, w[1].column)),
            "unsorted for {input:?}"
        );
        checked += 1;
    }
    assert_eq!(checked, 3000);
}
