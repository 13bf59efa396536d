//! How a Python exception becomes the verdict document the guest hands the
//! host. The document itself (`Report`) and its caps live in the
//! `strictpy-protocol` crate, which the host decodes with.

use rustpython_vm::{
    AsObject, VirtualMachine,
    builtins::{PyBaseExceptionRef, PyInt},
};
pub use strictpy_protocol::Report;

/// Turns an uncaught exception into a report, printing the traceback to the
/// program's stderr as CPython would.
pub fn from_exception(
    vm: &VirtualMachine,
    exc: &PyBaseExceptionRef,
    traceback_limit: usize,
    _source: &str,
) -> Report {
    if exc.fast_isinstance(vm.ctx.exceptions.system_exit) {
        return from_system_exit(vm, exc);
    }
    let class = exc.class();
    let module = class
        .as_object()
        .get_attr("__module__", vm)
        .ok()
        .and_then(|m| m.str(vm).ok())
        .map(|m| m.as_wtf8().to_string())
        .unwrap_or_default();
    let exception_type = if module.is_empty() || module == "builtins" || module == "__main__" {
        class.name().to_string()
    } else {
        format!("{module}.{}", class.name())
    };
    let message = exc
        .as_object()
        .str(vm)
        .map(|s| s.as_wtf8().to_string())
        .unwrap_or_default();
    let omitted = cap_traceback(exc, traceback_limit);
    let mut text = String::new();
    let traceback = match vm.write_exception(&mut text, exc) {
        Ok(()) => {
            if omitted > 0 {
                let marker = "Traceback (most recent call last):\n";
                if let Some(at) = text.rfind(marker) {
                    text.insert_str(
                        at + marker.len(),
                        &format!("  [... {omitted} earlier frames omitted ...]\n"),
                    );
                }
            }
            write_stderr(vm, &text);
            Some(text)
        }
        Err(_) => None,
    };
    Report::Exception {
        exception_type,
        message,
        traceback,
        memory_error: exc.fast_isinstance(vm.ctx.exceptions.memory_error),
    }
}

/// Keeps only the last `limit` traceback entries of `exc` and of the
/// exceptions it chains to. Returns how many entries `exc` lost.
fn cap_traceback(exc: &PyBaseExceptionRef, limit: usize) -> usize {
    let mut omitted_top = 0;
    let mut current = Some(exc.clone());
    // A chain of causes is short in practice; bound it anyway so a hostile
    // chain cannot make this loop long.
    for depth in 0..16 {
        let Some(e) = current else { break };
        if let Some(tb) = e.traceback() {
            let entries: Vec<_> = tb.iter().collect();
            if entries.len() > limit.max(1) {
                let cut = entries.len() - limit.max(1);
                e.set_traceback(Some(entries[cut].clone()));
                if depth == 0 {
                    omitted_top = cut;
                }
            }
        }
        current = e.__cause__().or_else(|| e.__context__());
    }
    omitted_top
}

fn from_system_exit(vm: &VirtualMachine, exc: &PyBaseExceptionRef) -> Report {
    let code = exc
        .as_object()
        .get_attr("code", vm)
        .unwrap_or_else(|_| vm.ctx.none());
    if vm.is_none(&code) {
        return Report::Ok { result: None };
    }
    if let Some(int) = code.downcast_ref::<PyInt>() {
        let code: i64 = int.as_bigint().try_into().unwrap_or(1);
        return if code == 0 {
            Report::Ok { result: None }
        } else {
            Report::Exit { code }
        };
    }
    // CPython prints a non-integer exit code to stderr and exits with 1.
    if let Ok(text) = code.str(vm) {
        write_stderr(vm, &format!("{}\n", text.as_wtf8()));
    }
    Report::Exit { code: 1 }
}

fn write_stderr(vm: &VirtualMachine, text: &str) {
    if let Ok(stderr) = vm.sys_module.as_object().get_attr("stderr", vm) {
        let _ = vm.call_method(&stderr, "write", (vm.ctx.new_str(text),));
        let _ = vm.call_method(&stderr, "flush", ());
    }
}
