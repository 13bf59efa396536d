"""Builds the fidelity corpus from the Python 3.11 documentation's examples.

Reads the reST sources that Debian's `python3.11-doc` package installs
(`/usr/share/doc/python3.11/html/_sources/library/<module>.rst.txt`), takes
every interactive session (`>>>` examples) of the page of each module a job
may import, and turns each session into a program that prints what the
interactive interpreter would have echoed (after `import <module>` and
`from <module> import *` when the session assumes them, as the pages say
once at the top). A program is kept when CPython 3.11
runs it cleanly and prints the same bytes twice under different hash seeds
(so its output is a fact, not an accident of one run), when it reads no
clock and no unseeded randomness, and when the static check accepts it.

Usage (from the repository root, after `make build`):

    python3.11 tests/corpus/extract.py [DOC_SOURCES_DIR]

It rewrites tests/corpus/programs/*.py and their .expected outputs; the
test in tests/integration/fidelity.rs runs them in the sandbox.
"""

import ast
import doctest
import json
import os
import pathlib
import re
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parent
REPO = ROOT.parent.parent
OUT = ROOT / "programs"
DOCS = pathlib.Path(
    sys.argv[1] if len(sys.argv) > 1 else "/usr/share/doc/python3.11/html/_sources/library"
)
STRICTPY = REPO / "target/release/strictpy"

# The default policy's allowed and allowable modules (crates/types/src/lib.rs).
ALLOWED = "datetime time json re math statistics collections itertools".split()
ALLOWABLE = (
    "random string functools operator fractions decimal heapq bisect textwrap "
    "dataclasses enum typing copy pprint base64 hashlib uuid calendar array "
    "struct unicodedata abc"
).split()
MODULES = ALLOWED + ALLOWABLE
# Programs kept per module page, so no single page dominates the rate.
PER_MODULE = 10
# Output that depends on the moment or on fresh entropy cannot be recorded.
UNSTABLE = re.compile(
    r"\b(today|now|utcnow|time|time_ns|localtime|ctime|uuid1|uuid4|getnode|"
    r"SystemRandom|urandom|token_\w+|perf_counter|monotonic|process_time)\s*\("
    r"|\b(gmtime|formatdate)\(\s*\)"
)


def sessions(text):
    """Each run of consecutive `>>>` examples in a page, with its line."""
    parser = doctest.DocTestParser()
    block, start, last = [], 0, -10
    for example in parser.get_examples(text):
        if example.lineno - last > 3 + example.source.count("\n") + example.want.count("\n") + 2:
            if block:
                yield start, block
            block, start = [], example.lineno + 1
        block.append(example)
        last = example.lineno + example.source.count("\n") + example.want.count("\n")
    if block:
        yield start, block


def echo(source):
    """`source` with its last expression printed as the prompt would."""
    tree = ast.parse(source)
    if tree.body and isinstance(tree.body[-1], ast.Expr):
        value = tree.body[-1].value
        echoed = ast.parse(
            "if (_ := VALUE) is not None:\n    print(repr(_))"
        ).body[0]
        echoed.test.left.value = value
        tree.body[-1] = echoed
    return ast.unparse(ast.fix_missing_locations(tree))


def imports(tree):
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def cpython(program, seed):
    env = {"PYTHONHASHSEED": str(seed), "TZ": "UTC", "PATH": os.environ.get("PATH", "")}
    try:
        return subprocess.run(
            [sys.executable, "-I", "-S", "-c", program],
            capture_output=True,
            timeout=20,
            env=env,
        )
    except subprocess.TimeoutExpired:
        return None


def accepted(path, allow):
    args = [str(STRICTPY), "check", "--json", str(path)]
    for module in allow:
        args += ["--allow", module]
    return subprocess.run(args, capture_output=True).returncode == 0


def main():
    if sys.version_info[:2] != (3, 11):
        sys.exit("run this with CPython 3.11")
    OUT.mkdir(exist_ok=True)
    for old in OUT.iterdir():
        old.unlink()
    stats = {"sessions": 0, "kept": 0, "dropped": {}}

    def drop(reason):
        stats["dropped"][reason] = stats["dropped"].get(reason, 0) + 1

    for module in MODULES:
        page = DOCS / f"{module}.rst.txt"
        if not page.exists():
            continue
        kept = 0
        for line, examples in sessions(page.read_text()):
            if kept >= PER_MODULE:
                break
            stats["sessions"] += 1
            try:
                body = "\n".join(echo(e.source) for e in examples)
            except SyntaxError:
                drop("not Python 3.11 syntax")
                continue
            tree = ast.parse(body)
            used = imports(tree)
            if not used <= set(MODULES):
                drop("imports a module no policy allows")
                continue
            if UNSTABLE.search(body):
                drop("reads a clock or fresh entropy")
                continue
            first = cpython(body, 0)
            if first is not None and first.returncode != 0:
                # A page's sessions assume its module is imported (the
                # decimal page says `from decimal import *` once, up top).
                body = f"import {module}\nfrom {module} import *\n{body}"
                used.add(module)
                first = cpython(body, 0)
            second = cpython(body, 1)
            if first is None or first.returncode != 0:
                drop("fails or hangs under CPython (needs files, input or earlier state)")
                continue
            if second is None or first.stdout != second.stdout or not first.stdout:
                drop("output differs between CPython runs, or is empty")
                continue
            allow = sorted(used - set(ALLOWED))
            name = f"{module}_{line:04d}"
            header = (
                f"# From the Python 3.11 documentation, Doc/library/{module}.rst, "
                f"line {line}.\n# allow: {' '.join(allow)}\n"
            )
            path = OUT / f"{name}.py"
            path.write_text(header + body + "\n")
            if not accepted(path, allow):
                path.unlink()
                drop("refused by the static check (policy)")
                continue
            (OUT / f"{name}.expected").write_bytes(first.stdout)
            kept += 1
            stats["kept"] += 1
    print(json.dumps(stats, indent=2))


main()
