//! The strictpy guest: RustPython embedded in a WASI command that runs one job.
//!
//! The host (crates/sandbox) instantiates this module once per job. The job's
//! input arrives through the `strictpy.input_*` host imports, the program's own
//! output goes to WASI fds 1 and 2, and the verdict goes back through
//! `strictpy.verdict`, a channel user code has no way to reach. `README.md` in
//! this folder is the contract with the host.

mod compiled;
mod policy;
mod preload;
mod report;

use std::cell::{Cell, RefCell};

use rustpython_vm::{
    AsObject, Interpreter, PyObjectRef, PyResult, Settings, VirtualMachine,
    builtins::{PyBaseExceptionRef, PyDict, PyStr},
    compiler::Mode,
    function::{FuncArgs, KwArgs},
    scope::Scope,
};
use strictpy_protocol::Input;

use crate::report::Report;

/// The imports the host provides under the module name `strictpy`.
mod host {
    #[link(wasm_import_module = "strictpy")]
    unsafe extern "C" {
        /// The length in bytes of this job's input document.
        pub fn input_len() -> u32;
        /// Copies the input document to `ptr`, which must have room for
        /// `input_len()` bytes.
        pub fn input_read(ptr: *mut u8, len: u32);
        /// Hands the verdict document (JSON) to the host.
        pub fn verdict(ptr: *const u8, len: u32);
    }
}

/// Modules imported during initialisation and left in `sys.modules` for
/// every job, as they always were: the default allowlist, plus `random`,
/// which `statistics` pulls in anyway. The host's preload document
/// (`preload.rs`) adds the rest of the operator's modules, hidden.
const PRELOAD: &[&str] = &[
    "json",
    "datetime",
    "time",
    "re",
    "math",
    "statistics",
    "collections",
    "itertools",
    "random",
];

/// The file name user code runs under; it shows in tracebacks.
const MAIN_FILENAME: &str = "<main>";

thread_local! {
    /// The interpreter, built once: either in `strictpy_init` (which a
    /// snapshotting host calls ahead of time) or lazily by the first job.
    static INTERPRETER: RefCell<Option<Interpreter>> = const { RefCell::new(None) };
    /// Set while the runner itself (not user code) imports, so the run-time
    /// policy lets it through.
    static TRUSTED_IMPORT: Cell<bool> = const { Cell::new(false) };
    /// The job's `__main__` namespace, made in `strictpy_init` (so in the
    /// snapshot, not in every job) and taken by the one job this instance
    /// runs. Sharing it is sound because no instance runs a second job:
    /// each job gets a fresh copy-on-write instance, so its `__main__` is
    /// as fresh as one built in the job.
    static MAIN: RefCell<Option<Scope>> = const { RefCell::new(None) };
    /// `os.urandom` and `random.seed`, looked up once in `strictpy_init` so
    /// each job's reseeding is two calls, not an import and two lookups.
    static RESEED: RefCell<Option<(PyObjectRef, PyObjectRef)>> = const { RefCell::new(None) };
}

/// Builds the interpreter and imports the modules every job needs. Exported
/// separately from `_start` so a host can snapshot the guest after it.
#[unsafe(export_name = "strictpy_init")]
pub extern "C" fn strictpy_init() {
    INTERPRETER.with(|cell| {
        if cell.borrow().is_some() {
            return;
        }
        let interp = build_interpreter();
        interp.enter(|vm| {
            if let Err(exc) = policy::install_import_guard(vm) {
                vm.print_exception(&exc);
            }
            // `json` carries context in and the result out, and the default
            // allowlist is what most jobs import. Import them here so the cost
            // lands in initialisation (and in a snapshot), not in every job.
            // Being loaded does not make a module importable: the guard
            // checks every user import against the job's allowlist.
            for module in PRELOAD {
                let _ = trusted(|| vm.import(*module, 0));
            }
            if let Err(exc) = add_utc_timezone(vm) {
                vm.print_exception(&exc);
            }
            prepare_job(vm);
            settle_heap(vm);
        });
        *cell.borrow_mut() = Some(interp);
    });
}

/// Runs `f` on the interpreter, if it was built.
fn with_vm(f: impl FnOnce(&VirtualMachine)) {
    INTERPRETER.with(|cell| {
        if let Some(interp) = cell.borrow().as_ref() {
            interp.enter(f);
        }
    });
}

/// Ends a stage of initialisation. Collects the garbage it left, then moves
/// every surviving object out of the collector's view (otherwise the first
/// collection in each job would walk the whole initialised heap), and leaves
/// the allocator free room inside the memory the snapshot will have.
fn settle_heap(vm: &VirtualMachine) {
    let frozen = trusted(|| -> PyResult<()> {
        let gc = vm.import("gc", 0)?;
        vm.call_method(&gc, "collect", ())?;
        vm.call_method(&gc, "freeze", ())?;
        Ok(())
    });
    if let Err(exc) = frozen {
        vm.print_exception(&exc);
    }
    reserve_heap();
}

fn build_interpreter() -> Interpreter {
    let mut settings = Settings::default();
    // Write-through stdio: output up to a trap (timeout, fuel) must reach the
    // host, so nothing may sit in a Python-side buffer.
    settings.buffered_stdio = false;
    settings.import_site = false;
    settings.user_site_directory = false;
    settings.isolated = true;
    settings.safe_path = true;
    settings.argv = vec!["main".to_owned()];
    let builder = Interpreter::builder(settings);
    let defs: Vec<_> = rustpython_stdlib::stdlib_module_defs(&builder.ctx)
        .into_iter()
        .filter(|def| !policy::EXCLUDED_NATIVE_MODULES.contains(&def.name.as_str()))
        .collect();
    builder
        .add_native_modules(&defs)
        .add_frozen_modules(rustpython_pylib::FROZEN_STDLIB)
        .init_hook(|vm| {
            // Some unwanted modules are built into the VM crate itself rather
            // than the stdlib crate; unregister them before the VM starts.
            if let Some(state) = rustpython_vm::common::rc::PyRc::get_mut(&mut vm.state) {
                for name in policy::EXCLUDED_NATIVE_MODULES {
                    state.module_defs.remove(name);
                }
            }
        })
        .build()
}

/// Free heap the allocator keeps after initialisation, in bytes.
const HEAP_RESERVE: usize = 8 << 20;

/// Grows the heap once and frees it again, so that the allocator has room
/// inside the memory the snapshot already has. Without it every job grows
/// linear memory, and a pooled slot must be shrunk back afterwards, which
/// changes page protections and costs cross-CPU TLB flushes: in
/// `strictpy bench` this halves throughput at concurrency 2.
fn reserve_heap() {
    let block: Vec<u8> = Vec::with_capacity(HEAP_RESERVE);
    // Keep the allocation from being optimised away.
    drop(std::hint::black_box(block));
}

/// WASI has no time zones, and RustPython's `time` module on WASI lacks the
/// zone attributes, which breaks `datetime.strptime` (via `_strptime`). The
/// sandbox's clock is UTC, so say so the way CPython does under `TZ=UTC`.
fn add_utc_timezone(vm: &VirtualMachine) -> PyResult<()> {
    let time = trusted(|| vm.import("time", 0))?;
    if time.get_attr("tzname", vm).is_ok() {
        return Ok(());
    }
    let utc: PyObjectRef = vm.ctx.new_str("UTC").into();
    let tzname = vm.ctx.new_tuple(vec![utc.clone(), utc]);
    time.set_attr("tzname", tzname, vm)?;
    for name in ["timezone", "altzone", "daylight"] {
        time.set_attr(name, vm.ctx.new_int(0), vm)?;
    }
    Ok(())
}

/// Builds what every job needs the same of ahead of time, so it lands in
/// the snapshot: the `__main__` module (registered in `sys.modules`,
/// `__name__ == "__main__"`, as under `python -c`) and the reseeding
/// functions (without them each job imported `os` through the import
/// guard). Per job, the two cost `print("hi")` 103,283 fuel of 463,828
/// (docs/benchmarks.md). A job that finds no `__main__` here (a failure
/// now) makes its own.
fn prepare_job(vm: &VirtualMachine) {
    match vm.new_scope_with_main() {
        Ok(scope) => MAIN.with(|m| *m.borrow_mut() = Some(scope)),
        Err(exc) => vm.print_exception(&exc),
    }
    let functions = trusted(|| -> PyResult<Option<(PyObjectRef, PyObjectRef)>> {
        let modules = vm.sys_module.as_object().get_attr("modules", vm)?;
        let Ok(random) = modules.get_item("random", vm) else {
            return Ok(None);
        };
        let os = vm.import("os", 0)?;
        Ok(Some((
            os.get_attr("urandom", vm)?,
            random.get_attr("seed", vm)?,
        )))
    });
    match functions {
        Ok(functions) => RESEED.with(|r| *r.borrow_mut() = functions),
        Err(exc) => vm.print_exception(&exc),
    }
}

/// Re-seeds Rust's thread-local generator from WASI entropy. A snapshot
/// freezes its state, and RustPython seeds every new `random.Random()` from
/// it, so without this every job would draw the same numbers.
fn reseed_thread_rng() {
    let _ = rand::rng().reseed();
}

/// Re-seeds the `random` module's shared generator from WASI entropy, if the
/// module was loaded at initialisation (its state, too, is frozen in a
/// snapshot; a module the job imports itself seeds itself from fresh
/// entropy). With a job seed the host makes WASI entropy deterministic, so
/// this stays reproducible.
fn reseed_random_module(vm: &VirtualMachine) -> PyResult<()> {
    let Some((urandom, seed_fn)) = RESEED.with(|r| r.borrow().clone()) else {
        return Ok(());
    };
    let entropy = urandom.call((32,), vm)?;
    // Seed with an int, not bytes: `random.seed(bytes)` hashes with `_sha2`,
    // which RustPython lacks, and falls back to importing all of `hashlib`.
    let int_type: PyObjectRef = vm.ctx.types.int_type.to_owned().into();
    let seed = vm.call_method(&int_type, "from_bytes", (entropy, "little"))?;
    seed_fn.call((seed,), vm)?;
    Ok(())
}

/// Runs `f` with the run-time import policy suspended, for imports the runner
/// makes on its own behalf.
fn trusted<T>(f: impl FnOnce() -> T) -> T {
    let before = TRUSTED_IMPORT.with(|t| t.replace(true));
    let out = f();
    TRUSTED_IMPORT.with(|t| t.set(before));
    out
}

fn read_input() -> Result<Input, String> {
    // SAFETY: `input_len` takes no arguments and only returns a number.
    let len = unsafe { host::input_len() };
    let mut buf = vec![0u8; len as usize];
    // SAFETY: `buf` is a live, writable allocation of exactly `len` bytes, and
    // the host writes at most `len` bytes into it.
    unsafe { host::input_read(buf.as_mut_ptr(), len) };
    serde_json::from_slice(&buf).map_err(|e| format!("bad job input: {e}"))
}

fn send_verdict(report: Report) {
    // Clip the traceback and messages, and refuse an oversized result, here
    // at the one exit: no verdict document is ever unbounded.
    let bytes = serde_json::to_vec(&report.bounded()).unwrap_or_else(|_| {
        br#"{"status":"internal","message":"could not encode the verdict"}"#.to_vec()
    });
    // SAFETY: `bytes` is a live allocation of `bytes.len()` bytes that the host
    // only reads during this call.
    unsafe { host::verdict(bytes.as_ptr(), bytes.len() as u32) };
}

fn main() {
    let report = match read_input() {
        Ok(input) => {
            strictpy_init();
            policy::set_allowlist(&input.allow);
            reseed_thread_rng();
            INTERPRETER.with(|cell| match cell.borrow().as_ref() {
                Some(interp) => interp.enter(|vm| {
                    if let Err(exc) = reseed_random_module(vm) {
                        return report::from_exception(vm, &exc, 0, "");
                    }
                    let report = if input.compile_only {
                        compiled::compile_only(vm, &input)
                    } else {
                        run_job(vm, &input)
                    };
                    flush_stdio(vm);
                    report
                }),
                None => Report::Internal {
                    message: "interpreter missing after initialisation".to_owned(),
                },
            })
        }
        Err(message) => Report::Internal { message },
    };
    send_verdict(report);
    // Returning from main skips `Interpreter::finalize`: the instance is
    // thrown away after this job, so tearing the VM down would only burn fuel.
}

fn run_job(vm: &VirtualMachine, input: &Input) -> Report {
    // The program's namespace is a real module, `sys.modules["__main__"]`,
    // as under `python -c`: `__name__` is "__main__", there is no `__file__`,
    // and everything that finds a class's module by name (dataclasses with
    // string annotations, `typing.get_type_hints`, `enum`'s functional API,
    // pickle-style lookups) finds it. It stays registered for the whole job.
    // `strictpy_init` made it (see `prepare_job`); this instance runs no
    // other job, so it is this job's alone.
    let made = MAIN.with(|m| m.borrow_mut().take());
    let scope = match made.map_or_else(|| vm.new_scope_with_main(), Ok) {
        Ok(scope) => scope,
        Err(exc) => return report::from_exception(vm, &exc, input.traceback_limit(), ""),
    };
    let globals = scope.globals.clone();
    if let Some(context) = &input.context
        && let Err(report) = load_context(vm, &globals, context.get())
    {
        return report;
    }
    // Python accepts a UTF-8 BOM at the start of a file; RustPython's compiler
    // does not, so drop it here.
    let source = input.code.strip_prefix('\u{feff}').unwrap_or(&input.code);
    // A function's invocation brings the code object compiled at
    // registration; without one (or with one that does not decode), compile.
    let precompiled = input
        .compiled
        .as_deref()
        .and_then(|c| compiled::load(vm, c));
    let code = match precompiled.map_or_else(
        || vm.compile(source, Mode::Exec, MAIN_FILENAME.to_owned()),
        Ok,
    ) {
        Ok(code) => code,
        Err(err) => {
            let exc = err.into_pyexception(vm, Some(source));
            return report::from_exception(vm, &exc, input.traceback_limit(), &input.code);
        }
    };
    match vm.run_code_obj(code, scope) {
        Ok(_) => collect_result(vm, &globals),
        Err(exc) => match report::from_exception(vm, &exc, input.traceback_limit(), &input.code) {
            // `SystemExit(0)` is a success, and the result still counts.
            Report::Ok { .. } => collect_result(vm, &globals),
            other => other,
        },
    }
}

/// Binds each key of the context object as a global.
fn load_context(
    vm: &VirtualMachine,
    globals: &rustpython_vm::builtins::PyDictRef,
    text: &str,
) -> Result<(), Report> {
    // A bad context is the caller's mistake; report it as the ValueError that
    // Python code building the same globals would raise.
    let bad = |message: String| Report::Exception {
        exception_type: "ValueError".to_owned(),
        message,
        traceback: None,
        memory_error: false,
    };
    let value = trusted(|| -> PyResult<PyObjectRef> {
        let json = vm.import("json", 0)?;
        let loads = json.get_attr("loads", vm)?;
        loads.call((vm.ctx.new_str(text),), vm)
    })
    .map_err(|exc| bad(format!("context is not valid JSON: {}", exc_str(vm, &exc))))?;
    let Some(dict) = value.downcast_ref::<PyDict>() else {
        return Err(bad("context must be a JSON object".to_owned()));
    };
    for (key, value) in dict {
        let Some(name) = key.downcast_ref::<PyStr>() else {
            return Err(bad("context keys must be strings".to_owned()));
        };
        let name_str = name.as_wtf8().to_string();
        if !policy::is_identifier(vm, name) {
            return Err(bad(format!(
                "context key {name_str:?} is not a Python identifier"
            )));
        }
        globals
            .set_item(name, value, vm)
            .map_err(|exc| bad(exc_str(vm, &exc)))?;
    }
    Ok(())
}

/// Serialises the global `result`, if the program left one.
fn collect_result(vm: &VirtualMachine, globals: &rustpython_vm::builtins::PyDictRef) -> Report {
    let value = match globals.get_item_opt("result", vm) {
        Ok(Some(value)) => value,
        Ok(None) => return Report::Ok { result: None },
        Err(exc) => return report::from_exception(vm, &exc, 0, ""),
    };
    let dumped = trusted(|| -> PyResult<PyObjectRef> {
        let json = vm.import("json", 0)?;
        let dumps = json.get_attr("dumps", vm)?;
        let no_nan: PyObjectRef = vm.ctx.new_bool(false).into();
        let kwargs: KwArgs = [("allow_nan", no_nan)].into_iter().collect();
        dumps.call(FuncArgs::new(vec![value], kwargs), vm)
    });
    match dumped {
        Ok(text) => match text.downcast_ref::<PyStr>() {
            Some(s) => Report::Ok {
                result: Some(s.as_wtf8().to_string()),
            },
            None => Report::Internal {
                message: "json.dumps returned a non-string".to_owned(),
            },
        },
        Err(exc) => Report::Exception {
            exception_type: "TypeError".to_owned(),
            message: format!("result is not JSON-serialisable: {}", exc_str(vm, &exc)),
            traceback: None,
            memory_error: false,
        },
    }
}

/// `str(exc)`, or a placeholder when even that fails.
fn exc_str(vm: &VirtualMachine, exc: &PyBaseExceptionRef) -> String {
    exc.as_object()
        .str(vm)
        .map(|s| s.as_wtf8().to_string())
        .unwrap_or_else(|_| "<unprintable exception>".to_owned())
}

/// Flushes `sys.stdout` and `sys.stderr`. They are write-through already; this
/// covers a program that replaced them with buffered wrappers.
fn flush_stdio(vm: &VirtualMachine) {
    for name in ["stdout", "stderr"] {
        if let Ok(stream) = vm.sys_module.as_object().get_attr(name, vm) {
            let _ = vm.call_method(&stream, "flush", ());
        }
    }
}
