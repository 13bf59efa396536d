//! Python fidelity: programs print what CPython 3.11 prints. The program runs
//! as a real `__main__`; the snapshot pre-imports the allowable modules yet
//! grants none of them; verdict documents stay bounded; and a corpus of the
//! Python documentation's own examples (tests/corpus) is compared byte for
//! byte.

use std::{
    collections::{BTreeMap, BTreeSet},
    path::{Path, PathBuf},
    process::Command,
    sync::OnceLock,
};

use strictpy_protocol::{MAX_MESSAGE_BYTES, MAX_RESULT_BYTES, MAX_TRACEBACK_BYTES};
use strictpy_sandbox::{Sandbox, SandboxConfig};
use strictpy_types::{Outcome, Policy, Status, Verdict};

use crate::{allowlist, guest_path, job, sandbox};

/// A CPython 3.11 to compare with live, when the machine has one.
fn cpython311() -> Option<&'static str> {
    static FOUND: OnceLock<Option<&'static str>> = OnceLock::new();
    *FOUND.get_or_init(|| {
        ["python3.11", "python3"].into_iter().find(|p| {
            Command::new(p)
                .arg("--version")
                .output()
                .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).starts_with("Python 3.11"))
        })
    })
}

/// What CPython 3.11 prints for `code` run as `python -c` (no `__file__`),
/// in UTC as the sandbox's clock is.
fn cpython_stdout(python: &str, code: &str) -> String {
    let out = Command::new(python)
        .args(["-I", "-S", "-c", code])
        .env("TZ", "UTC")
        .env("PYTHONHASHSEED", "0")
        .output()
        .expect("python runs");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A program and the output CPython 3.11 gave for it.
struct Program {
    /// The file stem.
    name: String,
    /// The source.
    code: String,
    /// The modules named on its `# allow:` line.
    allow: Vec<String>,
    /// CPython 3.11's stdout, committed beside it.
    expected: String,
}

fn programs(dir: &Path) -> Vec<Program> {
    let mut out: Vec<Program> = std::fs::read_dir(dir)
        .expect("fixture dir")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "py"))
        .map(|path| {
            let code = std::fs::read_to_string(&path).expect("program");
            let allow = code
                .lines()
                .find_map(|l| l.strip_prefix("# allow:"))
                .map(|l| l.split_whitespace().map(str::to_owned).collect())
                .unwrap_or_default();
            let expected =
                std::fs::read_to_string(path.with_extension("expected")).expect("expected output");
            Program {
                name: path
                    .file_stem()
                    .map(|s| s.to_string_lossy().into_owned())
                    .unwrap_or_default(),
                code,
                allow,
                expected,
            }
        })
        .collect();
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

fn run_program(p: &Program) -> Outcome {
    // The default job's limits (`job`), as a user gets them, except the
    // deadline: fuel is the budget, and deterministic, so whether a slow
    // program finishes never depends on the machine's load. The deadline
    // only guards against a hang. The costliest program, `hashlib_0301`,
    // burns 13.3 G of the 60 G.
    let mut j = job(&p.code);
    let extra: Vec<&str> = p.allow.iter().map(String::as_str).collect();
    j.allowlist = allowlist(&extra);
    j.limits.timeout_ms = 60_000;
    sandbox().run(&j)
}

fn fixtures(folder: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(folder)
}

/// Checks the committed outputs against a live CPython 3.11, where there is
/// one, so they cannot drift from what CPython really prints.
fn recorded_outputs_are_cpythons(programs: &[Program]) {
    let Some(python) = cpython311() else {
        eprintln!("no CPython 3.11 here; relying on the recorded outputs");
        return;
    };
    for p in programs {
        assert_eq!(
            cpython_stdout(python, &p.code),
            p.expected,
            "{}: the recorded output is not CPython 3.11's",
            p.name
        );
    }
}

#[test]
fn the_program_is_a_real_main_module() {
    let programs = programs(&fixtures("tests/fixtures/main_module"));
    assert!(programs.len() >= 6);
    for p in &programs {
        let out = run_program(p);
        assert_eq!(
            out.status,
            Status::Succeeded,
            "{}: {:?}\n{}",
            p.name,
            out.error,
            out.stderr
        );
        assert_eq!(out.stdout, p.expected, "{}", p.name);
    }
    recorded_outputs_are_cpythons(&programs);
}

#[test]
fn main_keeps_context_result_and_the_import_guard() {
    let mut j = job("import sys\n\
         m = sys.modules['__main__']\n\
         result = [__name__, m.x, m.__dict__ is globals(), '__file__' in globals()]\n\
         import os\n");
    j.allowlist = allowlist(&["sys"]);
    j.context = Some(serde_json::json!({"x": 5}));
    let out = sandbox().run(&j);
    let error = out.error.expect("os is refused");
    assert_eq!(error.exception_type.as_deref(), Some("ImportError"));
    assert!(
        error.message.contains("strictpy policy"),
        "{}",
        error.message
    );
    let mut j = job(
        "import sys\nm = sys.modules['__main__']\nresult = [__name__, m.x, '__file__' in globals()]\n",
    );
    j.allowlist = allowlist(&["sys"]);
    j.context = Some(serde_json::json!({"x": 5}));
    let out = sandbox().run(&j);
    assert_eq!(out.status, Status::Succeeded, "{:?}", out.error);
    assert_eq!(out.result, Some(serde_json::json!(["__main__", 5, false])));
}

/// The allowable modules that a default job is not allowed.
fn allowable_only() -> Vec<String> {
    let policy = Policy::default();
    policy
        .allowable_modules
        .difference(&policy.allowed_modules)
        .cloned()
        .collect()
}

#[test]
fn pre_imported_modules_are_still_forbidden() {
    for module in allowable_only() {
        let attempts = [
            format!("import {module}"),
            format!("from {module} import *"),
            format!("import json\nx = __import__('{module}')"),
            format!("import {module}.sub"),
        ];
        for code in attempts {
            let out = sandbox().run(&job(&code));
            let error = out.error.unwrap_or_else(|| panic!("{code}: not refused"));
            assert_eq!(
                error.exception_type.as_deref(),
                Some("ImportError"),
                "{code}: {error:?}"
            );
            assert!(
                error.message.contains(&format!("import of '{module}")),
                "{code}: {}",
                error.message
            );
        }
    }
}

/// `sorted(sys.modules)` in a job allowed `sys` and `extra`, after `code`.
fn module_names(sandbox: &Sandbox, code: &str, extra: &[&str]) -> BTreeSet<String> {
    let mut j = job(&format!(
        "import sys\n{code}\nresult = sorted(k for k in sys.modules)\n"
    ));
    let mut allow = vec!["sys"];
    allow.extend_from_slice(extra);
    j.allowlist = allowlist(&allow);
    let out = sandbox.run(&j);
    assert_eq!(out.status, Status::Succeeded, "{code}: {:?}", out.error);
    serde_json::from_value(out.result.expect("result")).expect("names")
}

/// A sandbox without a snapshot: every job builds the VM and imports only
/// what it asks for, which is what `sys.modules` held before pre-importing.
fn plain_sandbox() -> &'static Sandbox {
    static PLAIN: OnceLock<Sandbox> = OnceLock::new();
    PLAIN.get_or_init(|| {
        let mut config = SandboxConfig::new(guest_path());
        config.snapshot = false;
        Sandbox::new(&config).expect("plain sandbox")
    })
}

#[test]
fn sys_modules_shows_only_what_the_job_imported() {
    // Nothing pre-imported is visible to a job that did not import it ...
    let fresh = module_names(sandbox(), "", &[]);
    for module in [
        "dataclasses",
        "typing",
        "calendar",
        "textwrap",
        "pprint",
        "uuid",
    ] {
        assert!(
            !fresh.contains(module),
            "{module} is visible in sys.modules without being imported"
        );
    }
    assert_eq!(fresh, module_names(plain_sandbox(), "", &[]));
    // ... and an allowed import leaves sys.modules as it would without the
    // snapshot: the module and what its import pulled in.
    for module in ["dataclasses", "typing", "decimal", "uuid"] {
        let code = format!("import {module}");
        let with_snapshot = module_names(sandbox(), &code, &[module]);
        let without = module_names(plain_sandbox(), &code, &[module]);
        assert!(with_snapshot.contains(module));
        assert_eq!(
            with_snapshot
                .symmetric_difference(&without)
                .collect::<Vec<_>>(),
            Vec::<&String>::new(),
            "sys.modules after `import {module}` differs from a run without the snapshot"
        );
    }
}

#[test]
fn allowing_a_module_costs_a_job_under_a_million_fuel() {
    let base = sandbox().run(&job("pass\n")).usage.fuel_consumed;
    for module in allowable_only() {
        let mut j = job(&format!("import {module}\n"));
        j.allowlist = allowlist(&[module.as_str()]);
        let out = sandbox().run(&j);
        assert_eq!(out.status, Status::Succeeded, "{module}: {:?}", out.error);
        let tax = out.usage.fuel_consumed.saturating_sub(base);
        assert!(tax < 1_000_000, "import {module} costs {tax} fuel");
    }
}

#[test]
fn a_chained_exception_traceback_is_capped_with_a_marker() {
    let code = "\
def f(n):
    try:
        if n == 0:
            raise ValueError('bottom')
        f(n - 1)
    except Exception as e:
        raise KeyError(n) from e

f(400)
";
    let out = sandbox().run(&job(code));
    let error = out.error.expect("fails");
    assert_eq!(error.kind, Verdict::Exception);
    assert_eq!(error.exception_type.as_deref(), Some("KeyError"));
    let traceback = error.traceback.expect("traceback");
    assert!(
        traceback.len() <= MAX_TRACEBACK_BYTES,
        "{}",
        traceback.len()
    );
    assert!(traceback.contains("traceback truncated"), "{traceback}");
    assert!(
        traceback.trim_end().ends_with("KeyError: 400"),
        "{traceback}"
    );
}

#[test]
fn a_huge_exception_message_is_capped() {
    let out = sandbox().run(&job("raise ValueError('x' * 10**6)"));
    let error = out.error.expect("fails");
    assert_eq!(error.exception_type.as_deref(), Some("ValueError"));
    assert!(
        error.message.len() <= MAX_MESSAGE_BYTES + 32,
        "{}",
        error.message.len()
    );
    assert!(
        error.message.ends_with("bytes omitted]"),
        "{}",
        &error.message[error.message.len() - 40..]
    );
}

#[test]
fn a_result_over_the_cap_fails_the_run_and_one_under_it_does_not() {
    let big = MAX_RESULT_BYTES;
    let out = sandbox().run(&job(&format!("result = 'x' * {big}")));
    let error = out.error.expect("fails");
    assert_eq!(error.exception_type.as_deref(), Some("ValueError"));
    assert!(error.message.contains("over the cap"), "{}", error.message);
    assert!(out.result.is_none());
    let out = sandbox().run(&job(&format!("result = 'x' * {}", big - 10)));
    assert_eq!(out.status, Status::Succeeded, "{:?}", out.error);
    assert_eq!(
        out.result.and_then(|r| r.as_str().map(str::len)),
        Some(big - 10)
    );
}

/// Corpus programs whose sandbox output differs from CPython's, with why;
/// `docs/compatibility.md` lists the same, with workarounds.
fn known_differences() -> BTreeMap<String, String> {
    let text =
        std::fs::read_to_string(fixtures("tests/corpus/differences.txt")).expect("differences.txt");
    text.lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .filter_map(|l| l.split_once(':'))
        .map(|(name, why)| (name.trim().to_owned(), why.trim().to_owned()))
        .collect()
}

#[test]
fn the_documentation_corpus_matches_cpython() {
    let programs = programs(&fixtures("tests/corpus/programs"));
    assert!(programs.len() >= 30, "{}", programs.len());
    let mut differ = BTreeSet::new();
    for p in &programs {
        let out = run_program(p);
        if out.status != Status::Succeeded || out.stdout != p.expected {
            differ.insert(p.name.clone());
        }
    }
    let known = known_differences();
    let pass = programs.len() - differ.len();
    eprintln!(
        "corpus: {pass}/{} programs print what CPython 3.11 prints",
        programs.len()
    );
    let known_names: BTreeSet<String> = known.keys().cloned().collect();
    assert_eq!(
        differ, known_names,
        "the programs that differ from CPython are not the ones tests/corpus/differences.txt lists"
    );
    recorded_outputs_are_cpythons(&programs);
}
