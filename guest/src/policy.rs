//! The guest's run-time import policy: user code may import only allowlisted
//! modules, while the standard library imports whatever it needs.
//!
//! This repeats the host's static check on purpose. The static check can be
//! switched off per builtin by an operator (allowing `exec`, say), and source
//! built at run time never passes through it; this guard still holds then.

use std::cell::RefCell;

use rustpython_vm::{
    AsObject, Py, PyObjectRef, PyResult, VirtualMachine,
    builtins::{PyDict, PyModule, PyStr},
    function::FuncArgs,
};

/// Native modules left out of the interpreter: they have no business in a
/// sandbox (sockets, process control, memory mapping, foreign functions,
/// signal and fd tricks), and WASI would refuse most of what they do anyway.
pub const EXCLUDED_NATIVE_MODULES: &[&str] = &[
    "_socket",
    "select",
    "fcntl",
    "mmap",
    "_posixsubprocess",
    "_multiprocessing",
    "_posixshmem",
    "faulthandler",
    "_remote_debugging",
    "resource",
    "termios",
    "syslog",
    "grp",
    "_ssl",
    "_asyncio",
    "_ctypes",
];

/// Private helper modules that allowed modules import lazily from native code
/// while a user frame is on top of the stack (so the import looks like the
/// user's own). They are implementation details of allowed modules, pure
/// computation, and reachable through those modules anyway.
const IMPLEMENTATION_HELPERS: &[&str] = &["_strptime", "_datetime", "_pydatetime", "_json", "_sre"];

thread_local! {
    /// The effective allowlist of the current job.
    static ALLOWLIST: RefCell<Vec<String>> = const { RefCell::new(Vec::new()) };
}

/// Sets the allowlist for the job about to run.
pub fn set_allowlist(modules: &[String]) {
    ALLOWLIST.with(|a| *a.borrow_mut() = modules.to_vec());
}

/// Replaces `builtins.__import__` with a guard that applies the allowlist to
/// imports made by user code, then calls the original import.
///
/// Replacing the builtin also turns off RustPython's cached-module fast path
/// (it only runs while `__import__` is the original), so an import of a module
/// that is already loaded still passes through the guard.
pub fn install_import_guard(vm: &VirtualMachine) -> PyResult<()> {
    let original = vm.import_func.clone();
    let guard = vm.new_function(
        "__import__",
        move |args: FuncArgs, vm: &VirtualMachine| -> PyResult {
            check_import(vm, &args)?;
            // Only now, with the import allowed, may a pre-imported module
            // come back into `sys.modules`.
            crate::preload::on_import(vm, &args);
            original.call(args, vm)
        },
    );
    vm.builtins.as_object().set_attr("__import__", guard, vm)
}

fn arg<'a>(args: &'a FuncArgs, index: usize, name: &str) -> Option<&'a PyObjectRef> {
    args.args.get(index).or_else(|| args.kwargs.get(name))
}

fn check_import(vm: &VirtualMachine, args: &FuncArgs) -> PyResult<()> {
    if crate::TRUSTED_IMPORT.with(|t| t.get()) {
        return Ok(());
    }
    let Some(name) = arg(args, 0, "name").and_then(|n| n.downcast_ref::<PyStr>()) else {
        // Let the real `__import__` report the bad argument.
        return Ok(());
    };
    let name = name.as_wtf8().to_string();
    if let Some(globals) = arg(args, 1, "globals")
        && is_library_namespace(vm, globals)
    {
        return Ok(());
    }
    let level = match arg(args, 4, "level") {
        Some(level) => level.try_index(vm)?.as_bigint().to_string(),
        None => "0".to_owned(),
    };
    if level != "0" {
        return Err(vm.new_import_error(
            format!("relative import of '{name}' is not allowed by the strictpy policy"),
            vm.ctx.new_str(name),
        ));
    }
    let top = name.split('.').next().unwrap_or_default();
    let allowed = top == "__future__"
        || IMPLEMENTATION_HELPERS.contains(&top)
        || ALLOWLIST.with(|a| a.borrow().iter().any(|m| m == top));
    if allowed {
        Ok(())
    } else {
        Err(vm.new_import_error(
            format!("import of '{name}' is not allowed by the strictpy policy"),
            vm.ctx.new_str(name),
        ))
    }
}

/// True when `globals` is the namespace of a module that the import system
/// loaded (the standard library), as opposed to the user's `__main__` or a
/// dict user code made up and passed to `exec`.
fn is_library_namespace(vm: &VirtualMachine, globals: &PyObjectRef) -> bool {
    let Some(dict) = globals.downcast_ref::<PyDict>() else {
        return false;
    };
    let Ok(Some(name)) = dict.get_item_opt("__name__", vm) else {
        return false;
    };
    let Some(name) = name.downcast_ref::<PyStr>() else {
        return false;
    };
    let name = name.as_wtf8().to_string();
    if name == "__main__" {
        return false;
    }
    let Ok(modules) = vm.sys_module.as_object().get_attr("modules", vm) else {
        return false;
    };
    // Identity, not equality: a copy of a module's namespace is not trusted.
    let is_namespace = |module: &PyObjectRef| {
        module
            .downcast_ref::<PyModule>()
            .is_some_and(|m| m.dict().as_object().is(globals))
    };
    if let Ok(module) = modules.get_item(name.as_str(), vm)
        && is_namespace(&module)
    {
        return true;
    }
    // A pre-imported module that no allowed import revealed yet is still
    // the standard library's.
    if crate::preload::is_hidden_namespace(globals) {
        return true;
    }
    // Some modules claim another module's name (`_pydecimal` sets
    // `__name__ = 'decimal'` for pickling), so fall back to a scan of every
    // loaded module. `sys.modules` holds a few hundred entries at most.
    let Some(modules) = modules.downcast_ref::<PyDict>() else {
        return false;
    };
    modules.into_iter().any(|(_, module)| is_namespace(&module))
}

/// Python's own rule for identifiers, minus keywords (which cannot be
/// referenced as globals).
pub fn is_identifier(vm: &VirtualMachine, name: &Py<PyStr>) -> bool {
    const KEYWORDS: &[&str] = &[
        "False", "None", "True", "and", "as", "assert", "async", "await", "break", "class",
        "continue", "def", "del", "elif", "else", "except", "finally", "for", "from", "global",
        "if", "import", "in", "is", "lambda", "nonlocal", "not", "or", "pass", "raise", "return",
        "try", "while", "with", "yield",
    ];
    let is_ident = vm
        .call_method(name.as_object(), "isidentifier", ())
        .and_then(|r| r.try_to_bool(vm))
        .unwrap_or(false);
    is_ident && !KEYWORDS.contains(&name.as_wtf8().to_string().as_str())
}
