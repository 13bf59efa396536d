//! Pre-initialising the guest: run `strictpy_init` once, then
//! `strictpy_preload` with the modules to pre-import, and snapshot the
//! instance (Wizer), so no job pays for building the Python VM or for
//! importing a module it is allowed.
//!
//! What a snapshot freezes, and how each job gets it fresh again:
//! - Rust's `ThreadRng` and the `random` module's generator: the guest
//!   re-seeds both from WASI entropy at the start of every job.
//! - Clocks: nothing is cached; every clock read is a live WASI call.
//! - The str/bytes hash secret: RustPython sets it once per interpreter and
//!   caches hashes in every string made during initialisation, so it cannot
//!   change after the snapshot. It is derived from the guest's hash, which
//!   makes fuel counts reproducible across machines; see docs/security.md for
//!   why a fixed secret is acceptable inside a per-job sandbox.

use strictpy_protocol::Preload;
use wasmtime::{Engine, Instance, Linker, Module, Store};
use wasmtime_wizer::{InstanceState, SnapshotVal, ValType, Wizer};

use crate::{JobState, SandboxError};

/// The guest export that builds the VM.
pub const INIT_EXPORT: &str = "strictpy_init";

/// The guest export that makes room for the preload document.
const PRELOAD_BUFFER_EXPORT: &str = "strictpy_preload_buffer";

/// The guest export that imports (and hides) the preload document's modules.
const PRELOAD_EXPORT: &str = "strictpy_preload";

/// Runs the guest's initialisation, then its preload of `preload`'s modules,
/// and returns the pre-initialised module.
pub fn wizen(
    engine: &Engine,
    linker: &Linker<JobState>,
    wasm: &[u8],
    state: JobState,
    fuel_metering: bool,
    preload: &Preload,
) -> Result<Vec<u8>, SandboxError> {
    let doc =
        serde_json::to_vec(preload).map_err(|e| SandboxError::Snapshot(format!("preload: {e}")))?;
    let doc_len = u32::try_from(doc.len())
        .map_err(|_| SandboxError::Snapshot("preload document too large".into()))?;
    let fail = |what: &str, e: wasmtime::Error| SandboxError::Snapshot(format!("{what}: {e:#}"));
    let wizer = {
        let mut w = Wizer::new();
        w.init_func(INIT_EXPORT);
        w
    };
    let (cx, instrumented) = wizer.instrument(wasm).map_err(|e| fail("instrument", e))?;
    let module = Module::new(engine, &instrumented).map_err(|e| fail("compile", e))?;
    let mut store = Store::new(engine, state);
    store.limiter(|s| &mut s.limiter);
    // Initialisation is trusted and bounded; give it room, not a deadline.
    if fuel_metering {
        store.set_fuel(u64::MAX / 2).map_err(|e| fail("fuel", e))?;
    }
    store.set_epoch_deadline(u64::MAX / 2);
    // The async linker needs an executor; run on a private thread so this also
    // works when the caller is itself inside an async runtime.
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_time()
                    .build()
                    .map_err(|e| SandboxError::Snapshot(format!("runtime: {e}")))?;
                rt.block_on(async {
                    let instance = linker
                        .instantiate_async(&mut store, &module)
                        .await
                        .map_err(|e| fail("instantiate", e))?;
                    let init = instance
                        .get_typed_func::<(), ()>(&mut store, INIT_EXPORT)
                        .map_err(|e| fail("init export", e))?;
                    init.call_async(&mut store, ())
                        .await
                        .map_err(|e| fail("init", e))?;
                    // Hand the module list over through guest memory (init
                    // itself reads nothing per host), then import them.
                    let buffer = instance
                        .get_typed_func::<u32, u32>(&mut store, PRELOAD_BUFFER_EXPORT)
                        .map_err(|e| fail("preload buffer export", e))?;
                    let ptr = buffer
                        .call_async(&mut store, doc_len)
                        .await
                        .map_err(|e| fail("preload buffer", e))?;
                    let memory = instance.get_memory(&mut store, "memory").ok_or_else(|| {
                        SandboxError::Snapshot("the guest exports no memory".into())
                    })?;
                    memory
                        .write(&mut store, ptr as usize, &doc)
                        .map_err(|e| fail("preload write", e.into()))?;
                    let run_preload = instance
                        .get_typed_func::<(), ()>(&mut store, PRELOAD_EXPORT)
                        .map_err(|e| fail("preload export", e))?;
                    run_preload
                        .call_async(&mut store, ())
                        .await
                        .map_err(|e| fail("preload", e))?;
                    wizer
                        .snapshot(
                            &cx,
                            &mut Snapshotter {
                                store: &mut store,
                                instance,
                            },
                        )
                        .await
                        .map_err(|e| fail("snapshot", e))
                })
            })
            .join()
            .unwrap_or_else(|_| {
                Err(SandboxError::Snapshot(
                    "the snapshot thread panicked".into(),
                ))
            })
    })
}

/// Reads globals and memory out of the initialised instance for Wizer.
struct Snapshotter<'a> {
    /// The store that owns `instance`.
    store: &'a mut Store<JobState>,
    /// The initialised instance.
    instance: Instance,
}

impl InstanceState for Snapshotter<'_> {
    async fn global_get(&mut self, name: &str, _type_hint: ValType) -> SnapshotVal {
        // Wizer only asks for globals it exported itself while instrumenting,
        // so a missing one is a bug in Wizer; report zero rather than panic.
        let Some(global) = self.instance.get_global(&mut *self.store, name) else {
            return SnapshotVal::I32(0);
        };
        match global.get(&mut *self.store) {
            wasmtime::Val::I32(x) => SnapshotVal::I32(x),
            wasmtime::Val::I64(x) => SnapshotVal::I64(x),
            wasmtime::Val::F32(x) => SnapshotVal::F32(x),
            wasmtime::Val::F64(x) => SnapshotVal::F64(x),
            wasmtime::Val::V128(x) => SnapshotVal::V128(x.as_u128()),
            _ => SnapshotVal::I32(0),
        }
    }

    async fn memory_contents(&mut self, name: &str, contents: impl FnOnce(&[u8]) + Send) {
        match self.instance.get_memory(&mut *self.store, name) {
            Some(memory) => contents(memory.data(&*self.store)),
            None => contents(&[]),
        }
    }
}
