//! Stored functions: compile once, run many times. `compile_only` compiles a
//! program exactly as a job would (same compiler, options, file name and
//! warnings) and hands back its code object marshalled; `load` turns such
//! bytes back into a code object so a later job starts at its first bytecode.

use rustpython_vm::{
    PyRef, VirtualMachine,
    builtins::PyCode,
    bytecode::BasicBag,
    compiler::{Mode, core::marshal},
};
use strictpy_protocol::{Input, hex_decode, hex_encode};

use crate::{MAIN_FILENAME, report, report::Report};

/// Compiles `input.code` and reports the marshalled code object (hex, as a
/// JSON string) as the `ok` verdict's result; a compile error is reported
/// exactly as a run would report it.
pub fn compile_only(vm: &VirtualMachine, input: &Input) -> Report {
    let source = input.code.strip_prefix('\u{feff}').unwrap_or(&input.code);
    let code = match vm.compile(source, Mode::Exec, MAIN_FILENAME.to_owned()) {
        Ok(code) => code,
        Err(err) => {
            let exc = err.into_pyexception(vm, Some(source));
            return report::from_exception(vm, &exc, input.traceback_limit(), &input.code);
        }
    };
    // `map_clone_bag(&BasicBag)` turns the VM's constants back into plain
    // data, the form the marshal format describes.
    let data = code.code.map_clone_bag(&BasicBag);
    let mut bytes = Vec::new();
    marshal::serialize_code(&mut bytes, &data);
    match serde_json::to_string(&hex_encode(&bytes)) {
        Ok(text) => Report::Ok { result: Some(text) },
        Err(e) => Report::Internal {
            message: format!("cannot encode the compiled code: {e}"),
        },
    }
}

/// The code object in `hex`, or `None` if it does not decode (the caller
/// then compiles the source instead).
pub fn load(vm: &VirtualMachine, hex: &str) -> Option<PyRef<PyCode>> {
    let bytes = hex_decode(hex)?;
    let mut reader = &bytes[..];
    let code = marshal::deserialize_code(&mut reader, BasicBag).ok()?;
    // Trailing bytes mean this is not what `compile_only` wrote.
    if !reader.is_empty() {
        return None;
    }
    // The way `vm.compile` makes its code object: constants the context
    // alone cannot build (a `frozenset`) need the VM.
    Some(PyCode::new_ref_from_bytecode(vm, code))
}
