//! Importing the operator's allowable modules ahead of time without granting
//! them: pre-imported, still forbidden.
//!
//! The host hands over a [`Preload`] document after `strictpy_init` and before
//! it takes the snapshot (`strictpy_preload_buffer`, then `strictpy_preload`).
//! Every module it names is imported then, so a job that is allowed one pays
//! nothing for it. What those imports added to `sys.modules` is then taken out
//! of it again and kept in a private stash, so the job sees exactly the
//! `sys.modules` it saw before pre-importing existed: a module appears there
//! only once an import that the run-time policy lets through asks for it.
//! At that moment the module comes back together with the modules its own
//! import pulled in (recorded while pre-importing), which is what the import
//! would have put into `sys.modules` anyway.
//!
//! The import guard (`policy.rs`) decides first; revealing only ever follows
//! an import that was allowed, so being in the snapshot grants nothing.

use std::{
    cell::RefCell,
    collections::{BTreeMap, BTreeSet},
};

use rustpython_vm::{
    AsObject, Py, PyObjectRef, VirtualMachine,
    builtins::{PyDict, PyDictRef, PyList, PyModule, PyStr, PyTuple},
    function::FuncArgs,
};
use strictpy_protocol::Preload;

/// Modules imported ahead of time and hidden from `sys.modules`.
struct Hidden {
    /// Name to module, for every hidden module not yet revealed.
    modules: PyDictRef,
    /// For each hidden name, the hidden names an import of it brings back:
    /// itself, its parent packages and what its own import imported.
    closure: BTreeMap<String, Vec<String>>,
}

/// One import seen while pre-importing: who imported what.
struct Edge {
    /// The importing module's `__name__` (empty when the runner imported).
    importer: String,
    /// The absolute name imported.
    target: String,
    /// The `from ... import` names, which may be submodules.
    fromlist: Vec<String>,
}

thread_local! {
    /// The preload document, written by the host into the buffer that
    /// `strictpy_preload_buffer` hands out.
    static DOC: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
    /// Set once the preload ran.
    static HIDDEN: RefCell<Option<Hidden>> = const { RefCell::new(None) };
    /// Imports recorded while pre-importing; `None` at any other time.
    static RECORDING: RefCell<Option<Vec<Edge>>> = const { RefCell::new(None) };
}

/// Makes room for a preload document of `len` bytes and returns where the
/// host must write it.
#[unsafe(export_name = "strictpy_preload_buffer")]
pub extern "C" fn preload_buffer(len: u32) -> *mut u8 {
    DOC.with(|doc| {
        let mut doc = doc.borrow_mut();
        *doc = vec![0; len as usize];
        doc.as_mut_ptr()
    })
}

/// Imports the modules of the preload document and hides what they added.
/// Builds the VM first if `strictpy_init` has not run; a second call does
/// nothing.
#[unsafe(export_name = "strictpy_preload")]
pub extern "C" fn strictpy_preload() {
    crate::strictpy_init();
    if HIDDEN.with(|h| h.borrow().is_some()) {
        return;
    }
    let doc = DOC.with(|d| std::mem::take(&mut *d.borrow_mut()));
    let preload: Preload = match serde_json::from_slice(&doc) {
        Ok(preload) => preload,
        Err(e) => {
            // Nothing per job depends on this; a bad document only means no
            // module is pre-imported. Say so where a host debugging it looks.
            eprintln!("strictpy guest: bad preload document: {e}");
            return;
        }
    };
    crate::with_vm(|vm| {
        preload_modules(vm, &preload.modules);
        crate::settle_heap(vm);
    });
}

fn sys_modules(vm: &VirtualMachine) -> Option<PyDictRef> {
    vm.sys_module
        .as_object()
        .get_attr("modules", vm)
        .ok()?
        .downcast::<PyDict>()
        .ok()
}

fn module_names(modules: &Py<PyDict>) -> BTreeSet<String> {
    modules
        .into_iter()
        .filter_map(|(k, _)| k.downcast_ref::<PyStr>().map(|s| s.as_wtf8().to_string()))
        .collect()
}

fn preload_modules(vm: &VirtualMachine, names: &[String]) {
    let Some(modules) = sys_modules(vm) else {
        return;
    };
    let before = module_names(&modules);
    RECORDING.with(|r| *r.borrow_mut() = Some(Vec::new()));
    for name in names {
        let name = vm.ctx.new_str(name.as_str());
        if let Err(exc) = crate::trusted(|| vm.import(&*name, 0)) {
            // A module this build lacks is simply not pre-imported; a job that
            // imports it gets the same error it always got.
            vm.print_exception(&exc);
        }
    }
    let edges = RECORDING
        .with(|r| r.borrow_mut().take())
        .unwrap_or_default();
    let added: BTreeSet<String> = module_names(&modules)
        .difference(&before)
        .cloned()
        .collect();

    let stash = vm.ctx.new_dict();
    for name in &added {
        if let Ok(Some(module)) = modules.get_item_opt(name.as_str(), vm) {
            let moved = stash
                .set_item(name.as_str(), module, vm)
                .and_then(|()| modules.del_item(name.as_str(), vm));
            if let Err(exc) = moved {
                vm.print_exception(&exc);
            }
        }
    }

    // What importing each module touched, as a graph over names.
    let mut imports: BTreeMap<&str, BTreeSet<String>> = BTreeMap::new();
    for edge in &edges {
        let targets = imports.entry(edge.importer.as_str()).or_default();
        targets.insert(edge.target.clone());
        for item in &edge.fromlist {
            targets.insert(format!("{}.{item}", edge.target));
        }
    }
    let closure = added
        .iter()
        .map(|name| (name.clone(), reachable(name, &imports, &added)))
        .collect();
    HIDDEN.with(|h| {
        *h.borrow_mut() = Some(Hidden {
            modules: stash,
            closure,
        });
    });
}

/// Every hidden name an import of `start` brings back: `start`, its parent
/// packages, and (transitively) what they imported.
fn reachable(
    start: &str,
    imports: &BTreeMap<&str, BTreeSet<String>>,
    hidden: &BTreeSet<String>,
) -> Vec<String> {
    let mut seen = BTreeSet::new();
    let mut todo = vec![start.to_owned()];
    while let Some(name) = todo.pop() {
        for candidate in with_parents(&name) {
            if hidden.contains(&candidate)
                && seen.insert(candidate.clone())
                && let Some(next) = imports.get(candidate.as_str())
            {
                todo.extend(next.iter().cloned());
            }
        }
    }
    seen.into_iter().collect()
}

/// `a.b.c`, `a.b` and `a`.
fn with_parents(name: &str) -> Vec<String> {
    let mut out = vec![name.to_owned()];
    let mut rest = name;
    while let Some((parent, _)) = rest.rsplit_once('.') {
        out.push(parent.to_owned());
        rest = parent;
    }
    out
}

/// Called for every `__import__` the guard let through: records it while
/// pre-importing, and brings hidden modules back when it asks for them.
pub fn on_import(vm: &VirtualMachine, args: &FuncArgs) {
    let recording = RECORDING.with(|r| r.borrow().is_some());
    let hidden = HIDDEN.with(|h| h.borrow().is_some());
    if !recording && !hidden {
        return;
    }
    let Some(call) = ImportCall::parse(vm, args) else {
        return;
    };
    // The import machinery's own modules import on behalf of whoever called
    // it (and `importlib` renames the frozen bootstrap after itself), so an
    // edge from them says nothing about the module being imported.
    let machinery = call.importer.starts_with("importlib._bootstrap")
        || call.importer.starts_with("_frozen_importlib");
    if recording && !machinery {
        RECORDING.with(|r| {
            if let Some(edges) = r.borrow_mut().as_mut() {
                edges.push(Edge {
                    importer: call.importer.clone(),
                    target: call.target.clone(),
                    fromlist: call.fromlist.clone(),
                });
            }
        });
    }
    if hidden {
        reveal(vm, &call);
    }
}

fn reveal(vm: &VirtualMachine, call: &ImportCall) {
    let Some(modules) = sys_modules(vm) else {
        return;
    };
    HIDDEN.with(|h| {
        let h = h.borrow();
        let Some(h) = h.as_ref() else {
            return;
        };
        let mut wanted = with_parents(&call.target);
        wanted.extend(call.fromlist.iter().map(|f| format!("{}.{f}", call.target)));
        for name in wanted {
            let Some(group) = h.closure.get(&name) else {
                continue;
            };
            for member in group {
                if let Ok(Some(module)) = h.modules.get_item_opt(member.as_str(), vm) {
                    let moved = modules
                        .set_item(member.as_str(), module, vm)
                        .and_then(|()| h.modules.del_item(member.as_str(), vm));
                    if let Err(exc) = moved {
                        vm.print_exception(&exc);
                    }
                }
            }
        }
    });
}

/// True when `globals` is the namespace of a hidden (pre-imported, not yet
/// revealed) module: its code is the standard library's, as for a module in
/// `sys.modules`.
pub fn is_hidden_namespace(globals: &PyObjectRef) -> bool {
    HIDDEN.with(|h| {
        h.borrow().as_ref().is_some_and(|h| {
            (&*h.modules).into_iter().any(|(_, module)| {
                module
                    .downcast_ref::<PyModule>()
                    .is_some_and(|m| m.dict().as_object().is(globals))
            })
        })
    })
}

/// The parts of an `__import__(name, globals, locals, fromlist, level)` call
/// that say which modules it needs.
struct ImportCall {
    /// The importing module's `__name__`.
    importer: String,
    /// The absolute module name.
    target: String,
    /// The `from ... import` names (without `*`).
    fromlist: Vec<String>,
}

impl ImportCall {
    fn parse(vm: &VirtualMachine, args: &FuncArgs) -> Option<Self> {
        let arg = |i: usize, name: &str| args.args.get(i).or_else(|| args.kwargs.get(name));
        let name = arg(0, "name")?
            .downcast_ref::<PyStr>()?
            .as_wtf8()
            .to_string();
        let globals = arg(1, "globals").and_then(|g| g.downcast_ref::<PyDict>());
        let global_str = |key: &str| {
            globals
                .and_then(|g| g.get_item_opt(key, vm).ok().flatten())
                .and_then(|v| v.downcast_ref::<PyStr>().map(|s| s.as_wtf8().to_string()))
        };
        let importer = global_str("__name__").unwrap_or_default();
        let level = arg(4, "level")
            .and_then(|l| l.try_index(vm).ok())
            .and_then(|l| l.as_bigint().try_into().ok())
            .unwrap_or(0usize);
        let target = if level == 0 {
            name
        } else {
            // `from .x import y` inside package `p`: resolve against
            // `__package__` the way importlib does.
            let package = global_str("__package__").unwrap_or_default();
            let mut base = package.as_str();
            for _ in 1..level {
                base = base.rsplit_once('.').map_or("", |(p, _)| p);
            }
            match (base.is_empty(), name.is_empty()) {
                (true, _) => name,
                (false, true) => base.to_owned(),
                (false, false) => format!("{base}.{name}"),
            }
        };
        let items: Vec<PyObjectRef> = match arg(3, "fromlist") {
            Some(list) => {
                if let Some(t) = list.downcast_ref::<PyTuple>() {
                    t.as_slice().to_vec()
                } else if let Some(l) = list.downcast_ref::<PyList>() {
                    l.borrow_vec().to_vec()
                } else {
                    Vec::new()
                }
            }
            None => Vec::new(),
        };
        let fromlist = items
            .iter()
            .filter_map(|i| i.downcast_ref::<PyStr>().map(|s| s.as_wtf8().to_string()))
            .filter(|i| i != "*")
            .collect();
        Some(Self {
            importer,
            target,
            fromlist,
        })
    }
}
