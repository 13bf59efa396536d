//! The on-disk cache of the precompiled guest (`.cwasm`).
//!
//! Compiling the 28 MB guest with Cranelift takes seconds; loading native code
//! that was compiled before takes milliseconds. A `.cwasm` only loads into the
//! same wasmtime version with the same engine settings, so the file name is a
//! key over the guest's bytes, the wasmtime version and the engine's
//! compatibility hash. A BLAKE3 checksum beside it catches truncated or
//! corrupt files, which are rebuilt rather than loaded. (BLAKE3 rather than
//! SHA-256 because it hashes the 70 MB artefact in a few milliseconds, and
//! this runs on every start.)

use std::{
    hash::{Hash, Hasher},
    path::{Path, PathBuf},
};

use wasmtime::{Engine, Module};

use crate::SandboxError;

/// Where a cached artefact and its checksum live.
struct Paths {
    /// The precompiled module.
    cwasm: PathBuf,
    /// The hex BLAKE3 hash of `cwasm`.
    checksum: PathBuf,
}

/// The cache key: guest bytes, wasmtime version and engine settings.
pub fn key(engine: &Engine, wasm: &[u8]) -> String {
    let mut h = blake3::Hasher::new();
    h.update(wasm);
    // The compatibility hash covers what makes a `.cwasm` incompatible: the
    // wasmtime version, the target and CPU flags, and the engine's tunables and
    // features (fuel, epochs, stack limits). `DefaultHasher::new()` uses fixed
    // keys, so the value is stable within one build of strictpy.
    let mut settings = std::collections::hash_map::DefaultHasher::new();
    engine.precompile_compatibility_hash().hash(&mut settings);
    h.update(&settings.finish().to_le_bytes());
    hex::encode(&h.finalize().as_bytes()[..16])
}

fn paths(dir: &Path, key: &str) -> Paths {
    Paths {
        cwasm: dir.join(format!("strictpy-guest-{key}.cwasm")),
        checksum: dir.join(format!("strictpy-guest-{key}.blake3")),
    }
}

/// How the module was obtained, for timing reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoadedFrom {
    /// A valid cached artefact was loaded.
    Cache,
    /// The module was compiled now (and cached, when the directory allowed).
    Compiled,
}

/// Loads the guest from `dir`'s cache, or compiles and caches it.
pub fn load(
    engine: &Engine,
    wasm: &[u8],
    dir: Option<&Path>,
) -> Result<(Module, LoadedFrom), SandboxError> {
    let key = key(engine, wasm);
    if let Some(dir) = dir {
        let p = paths(dir, &key);
        if let (Ok(bytes), Ok(sum)) = (std::fs::read(&p.cwasm), std::fs::read_to_string(&p.checksum))
        {
            if blake3::hash(&bytes).to_hex().as_str() == sum.trim() {
                // SAFETY: `Module::deserialize` requires bytes produced by
                // `Engine::precompile_module` of a compatible engine. The bytes
                // come from our own cache directory, were written by
                // `precompile_module` below, and match the checksum written
                // alongside them, so they are exactly what we wrote; the file
                // name keys them to this wasmtime version and engine config,
                // and wasmtime itself re-checks version and settings.
                match unsafe { Module::deserialize(engine, &bytes) } {
                    Ok(module) => return Ok((module, LoadedFrom::Cache)),
                    Err(e) => tracing::warn!(error = %e, "cached guest rejected; recompiling"),
                }
            } else {
                tracing::warn!(path = %p.cwasm.display(), "cached guest fails its checksum; recompiling");
            }
        }
    }
    let compiled = engine
        .precompile_module(wasm)
        .map_err(|e| SandboxError::Compile(e.to_string()))?;
    if let Some(dir) = dir
        && let Err(e) = store(dir, &key, &compiled)
    {
        tracing::warn!(error = %e, dir = %dir.display(), "could not cache the compiled guest");
    }
    // SAFETY: `compiled` was produced by `precompile_module` on this very
    // engine a moment ago.
    let module = unsafe { Module::deserialize(engine, &compiled) }
        .map_err(|e| SandboxError::Compile(e.to_string()))?;
    Ok((module, LoadedFrom::Compiled))
}

/// Writes the artefact and its checksum atomically (write, then rename), so a
/// crash mid-write leaves no half file under the final name.
fn store(dir: &Path, key: &str, compiled: &[u8]) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let p = paths(dir, key);
    let tmp = dir.join(format!(".strictpy-guest-{key}.{}.tmp", std::process::id()));
    std::fs::write(&tmp, compiled)?;
    std::fs::rename(&tmp, &p.cwasm)?;
    let tmp_sum = tmp.with_extension("sum.tmp");
    std::fs::write(&tmp_sum, blake3::hash(compiled).to_hex().as_str())?;
    std::fs::rename(&tmp_sum, &p.checksum)?;
    Ok(())
}
