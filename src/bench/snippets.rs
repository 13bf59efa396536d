//! The Python programs that `strictpy bench` and the criterion benches in
//! `benches/` both run, kept in one place so the two always measure the same
//! code. This file is also compiled into the bench target with `#[path]`, so
//! it depends on nothing but `std`.

/// One program of the CPU micro-suite.
#[derive(Debug, Clone, Copy)]
pub struct Snippet {
    /// A short, stable name used in tables, JSON keys and bench ids.
    pub name: &'static str,
    /// The Python source. It must pass the default static policy, print one
    /// line, and run unchanged under CPython and native RustPython.
    pub code: &'static str,
}

/// The hello job: the smallest job that produces output.
pub const HELLO: &str = "print(\"hi\")\n";

/// A job that does nothing: what remains is the cost of starting one.
pub const EMPTY: &str = "pass\n";

/// A job that spins until the wall-clock deadline stops it, for the
/// fuel-per-second calibration.
pub const SPIN: &str = "while True:\n    pass\n";

/// The CPU-bound micro-suite from issue 3. Sizes are chosen so that each takes
/// roughly 50–500 ms in the sandbox: long enough that per-job start-up is noise,
/// short enough that the whole suite runs in seconds.
pub const SUITE: &[Snippet] = &[
    Snippet {
        name: "fib(25)",
        code: "\
def fib(n):
    if n < 2:
        return n
    return fib(n - 1) + fib(n - 2)

print(fib(25))
",
    },
    Snippet {
        name: "sum loop 1e6",
        code: "\
total = 0
for i in range(10**6):
    total += i
print(total)
",
    },
    Snippet {
        name: "json round trip",
        code: "\
import json

data = [
    {\"id\": i, \"name\": \"item%d\" % i, \"tags\": [\"a\", \"b\", \"c\"], \"score\": i * 0.5}
    for i in range(1000)
]
for _ in range(5):
    data = json.loads(json.dumps(data))
print(len(data))
",
    },
    Snippet {
        name: "regex search",
        code: "\
import re

words = [\"alpha\", \"beta\", \"gamma\", \"delta\", \"epsilon\"]
text = \" \".join(words[i % 5] + str(i) for i in range(20000))
pattern = re.compile(r\"\\b(gamma|delta)(\\d*7)\\b\")
count = 0
for _ in range(5):
    count += len(pattern.findall(text))
print(count)
",
    },
    Snippet {
        name: "Counter 100k",
        code: "\
from collections import Counter

items = [i % 1000 for i in range(100000)]
counts = Counter(items)
print(len(counts), counts.most_common(1)[0][1])
",
    },
];

/// A small, typical job source for the static check: a dozen lines.
pub const CHECK_SMALL: &str = "\
import json
import math

def score(values):
    total = 0.0
    for v in values:
        total += math.sqrt(abs(v))
    return total / max(len(values), 1)

data = json.loads('[1, 2, 3, 4]')
print(score(data))
";

/// A generated source of exactly `lines` lines that the default policy
/// accepts: functions, loops, comprehensions, classes and allowed imports,
/// each block with fresh names so the analyzer sees many distinct symbols.
pub fn check_source(lines: usize) -> String {
    const BLOCK_LINES: usize = 10;
    let mut out = String::from("import json\nimport math\nimport re\nimport collections\n\n");
    let mut written = 5;
    let mut i = 0;
    while written + BLOCK_LINES <= lines {
        out.push_str(&format!(
            "\
def func_{i}(values, scale={i}):
    result = [math.sqrt(abs(v)) * scale for v in values if v % 3 != {m}]
    counts = collections.Counter(str(v)[:1] for v in values)
    if re.match(r\"^\\d+$\", str(len(result))):
        return json.dumps({{\"n\": len(result), \"top\": counts.most_common(2)}})
    return None

class Item{i}:
    name = \"item_{i}\"

",
            m = i % 3
        ));
        written += BLOCK_LINES;
        i += 1;
    }
    // Top up with one-line statements to hit the count exactly.
    while written < lines {
        out.push_str(&format!("value_{written} = {written} * 2\n"));
        written += 1;
    }
    out
}

/// The suite snippet wrapped for a CPython or RustPython subprocess: it
/// compiles and runs the snippet in a fresh namespace and then prints the
/// seconds that took on its own line, prefixed with [`COMPUTE_MARKER`].
/// Compilation is inside the timed region because the sandbox's run time
/// includes it too.
pub fn timed_wrapper(code: &str) -> String {
    // A Python string literal of the snippet: the snippets are ASCII, so
    // escaping the backslash, the quote and the line break is enough.
    let mut literal = String::with_capacity(code.len() + 16);
    literal.push('"');
    for c in code.chars() {
        match c {
            '\\' => literal.push_str("\\\\"),
            '"' => literal.push_str("\\\""),
            '\n' => literal.push_str("\\n"),
            c => literal.push(c),
        }
    }
    literal.push('"');
    format!(
        "import time as _bench_time\n\
         _bench_src = {literal}\n\
         _bench_t0 = _bench_time.perf_counter()\n\
         exec(compile(_bench_src, '<bench>', 'exec'), {{'__name__': '__main__'}})\n\
         print('{COMPUTE_MARKER}', _bench_time.perf_counter() - _bench_t0)\n"
    )
}

/// Prefixes the compute-time line that [`timed_wrapper`] prints.
pub const COMPUTE_MARKER: &str = "__strictpy_bench_compute_s";
