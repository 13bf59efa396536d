//! Programs that get past the static check (because the operator allowed a
//! builtin, or because they call the sandbox directly) still meet the guest's
//! run-time policy and WASI's empty world.

use strictpy_types::Verdict;

use crate::{job, run, sandbox};

fn import_error(code: &str) -> String {
    let out = run(code);
    let err = out.error.unwrap_or_else(|| panic!("{code:?} must fail"));
    assert_eq!(err.kind, Verdict::Exception, "{code:?}: {err:?}");
    assert_eq!(
        err.exception_type.as_deref(),
        Some("ImportError"),
        "{code:?}: {err:?}"
    );
    err.message
}

#[test]
fn disallowed_imports_are_refused_at_run_time() {
    for code in [
        "import os",
        "import sys",
        "from os import path",
        "import importlib",
        "exec('import os')",
        "exec('import os', {})",
        "__import__('o' + 's')",
        "eval(\"__import__('subprocess')\")",
        "import socket",
    ] {
        let message = import_error(code);
        assert!(message.contains("strictpy policy"), "{code:?}: {message}");
    }
}

#[test]
fn relative_imports_are_refused_at_run_time() {
    let message = import_error("from . import json");
    assert!(message.contains("relative import"), "{message}");
}

#[test]
fn an_already_loaded_module_is_still_refused() {
    // `json` loads `re` and more behind the scenes; user code may not import
    // them just because they are in sys.modules.
    let mut j = job("import json\nimport _json\nimport sys");
    j.allowlist.remove("re");
    let out = sandbox().run(&j);
    let err = out.error.expect("must fail");
    assert_eq!(
        err.exception_type.as_deref(),
        Some("ImportError"),
        "{err:?}"
    );
}

#[test]
fn allowed_modules_import_their_own_dependencies() {
    // `statistics` imports fractions, decimal, random and more, none of which
    // the user may import directly.
    let out = run("import statistics\nprint(statistics.mean([1, 2, 3, 4]))");
    assert_eq!(out.stdout, "2.5\n", "{:?}", out.error);
    let message = import_error("import statistics\nimport fractions");
    assert!(message.contains("fractions"), "{message}");
}

#[test]
fn submodules_of_allowed_modules_and_future_are_fine() {
    let out = run(
        "from __future__ import annotations\nimport collections.abc\nfrom json import decoder\nprint(collections.abc.Mapping.__name__)",
    );
    assert_eq!(out.stdout, "Mapping\n", "{:?}", out.error);
}

#[test]
fn the_file_system_is_empty() {
    for code in [
        "open('/etc/passwd').read()",
        "open('x.txt', 'w').write('data')",
        "open('.').read()",
    ] {
        let out = run(code);
        let err = out.error.unwrap_or_else(|| panic!("{code:?} must fail"));
        assert_eq!(err.kind, Verdict::Exception, "{code:?}: {err:?}");
        let ty = err.exception_type.unwrap_or_default();
        assert!(
            matches!(
                ty.as_str(),
                "FileNotFoundError" | "PermissionError" | "OSError"
            ),
            "{code:?}: {ty}"
        );
    }
}

#[test]
fn the_environment_is_empty() {
    // `os` reached through an allowed module's internals: still nothing there.
    let out = run(
        "import statistics\nos = statistics.random._os\nprint(dict(os.environ), os.listdir('/') if hasattr(os, 'listdir') else None)",
    );
    // Either the walk fails or it shows an empty world; it never shows ours.
    if out.error.is_none() {
        assert!(out.stdout.starts_with("{}"), "{}", out.stdout);
        assert!(!out.stdout.contains("etc"), "{}", out.stdout);
    }
}

#[test]
fn native_modules_with_no_business_here_are_not_built_in() {
    // Even with the policy allowing them, they do not exist in the guest.
    for module in [
        "_ctypes",
        "_socket",
        "select",
        "mmap",
        "_posixsubprocess",
        "faulthandler",
    ] {
        let mut j = job(&format!("import {module}"));
        j.allowlist.insert(module.to_owned());
        let out = sandbox().run(&j);
        let err = out
            .error
            .unwrap_or_else(|| panic!("import {module} must fail"));
        assert_eq!(
            err.exception_type.as_deref(),
            Some("ModuleNotFoundError"),
            "{module}: {err:?}"
        );
    }
}
