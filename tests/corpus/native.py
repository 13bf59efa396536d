"""Runs the fidelity corpus under native RustPython and compares with CPython.

The sandbox runs RustPython 0.6.0 compiled to wasm32-wasip1;
tests/integration/fidelity.rs compares its output with CPython 3.11's. This
script runs the same programs under a native build of the same RustPython
(`make corpus-native` builds one into target/native-rustpython and runs
this), so each difference can be told apart: one that native RustPython
shows too is RustPython's, one that only the sandbox shows is wasm32's or
the sandbox's.

Usage (from the repository root):

    python3 tests/corpus/native.py [PATH_TO_RUSTPYTHON]

Each program runs as CPython's recorded output was made: `-I -S -c PROGRAM`,
`TZ=UTC`, a fixed hash seed, no stdin. It prints one line per program that
differs from CPython, a table of how native RustPython and the sandbox
compare (the sandbox's side is tests/corpus/differences.txt, which the
integration test keeps exact), and the pass rate. The exit status is 0 when
it could run every program, whatever they printed: this is a measurement,
not a test.
"""

import os
import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parent
REPO = ROOT.parent.parent
PROGRAMS = ROOT / "programs"
DEFAULT_BINARY = REPO / "target/native-rustpython/bin/rustpython"
# Native RustPython has no fuel; a program that needs more than this is
# reported as a time-out (the sandbox's corpus test allows about a second).
TIMEOUT_S = 120


def sandbox_differences():
    """Program name to cause, from differences.txt."""
    out = {}
    for line in (ROOT / "differences.txt").read_text().splitlines():
        if line.strip() and not line.startswith("#") and ":" in line:
            name, cause = line.split(":", 1)
            out[name.strip()] = cause.strip()
    return out


def run(binary, program):
    """(stdout, note) of one program under native RustPython."""
    env = {"PYTHONHASHSEED": "0", "TZ": "UTC", "PATH": os.environ.get("PATH", "")}
    try:
        done = subprocess.run(
            [str(binary), "-I", "-S", "-c", program],
            capture_output=True,
            stdin=subprocess.DEVNULL,
            timeout=TIMEOUT_S,
            env=env,
        )
    except subprocess.TimeoutExpired:
        return None, f"timed out after {TIMEOUT_S} s"
    if done.returncode != 0:
        last = done.stderr.decode("utf-8", "replace").strip().splitlines()[-1:] or ["?"]
        return done.stdout, f"exit {done.returncode}: {last[0]}"
    return done.stdout, ""


def first_difference(got, expected):
    """The first line where two outputs part, for the report."""
    got_lines = got.decode("utf-8", "replace").splitlines()
    want_lines = expected.decode("utf-8", "replace").splitlines()
    for i, (g, w) in enumerate(zip(got_lines, want_lines)):
        if g != w:
            # Show both from a little before the first character that differs.
            at = next((j for j, (a, b) in enumerate(zip(g, w)) if a != b), min(len(g), len(w)))
            start = max(0, at - 20)
            return f"line {i + 1}, column {at + 1}: got {g[start:start + 80]!r}, CPython {w[start:start + 80]!r}"
    return f"{len(got_lines)} lines, CPython {len(want_lines)}"


def main():
    binary = pathlib.Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT_BINARY
    if not binary.exists():
        sys.exit(f"{binary} is missing: run `make corpus-native`, which builds it")
    version = subprocess.run([str(binary), "--version"], capture_output=True, text=True)
    print(f"native: {version.stdout.strip() or version.stderr.strip()} ({binary})")
    sandbox = sandbox_differences()
    programs = sorted(PROGRAMS.glob("*.py"))
    native = {}
    for path in programs:
        expected = path.with_suffix(".expected").read_bytes()
        stdout, note = run(binary, path.read_text())
        if stdout == expected and not note:
            continue
        why = note or first_difference(stdout or b"", expected)
        native[path.stem] = why
        print(f"differs natively: {path.stem}: {why}")

    print()
    print("| program | native RustPython | sandbox (wasm32) | sandbox's cause |")
    print("| --- | --- | --- | --- |")
    for name in sorted(set(native) | set(sandbox)):
        n = "differs" if name in native else "same as CPython"
        s = "differs" if name in sandbox else "same as CPython"
        print(f"| `{name}` | {n} | {s} | {sandbox.get(name, '')} |")
    total = len(programs)
    print()
    print(
        f"native RustPython: {total - len(native)} of {total} print what CPython 3.11 prints; "
        f"sandbox: {total - len(sandbox)} of {total}"
    )


if __name__ == "__main__":
    main()
