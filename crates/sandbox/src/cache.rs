//! The on-disk cache of the precompiled guest (`.cwasm`).
//!
//! Compiling the 28 MB guest with Cranelift takes seconds; loading native code
//! that was compiled before takes milliseconds. A `.cwasm` only loads into the
//! same wasmtime version with the same engine settings, so the file name is a
//! key over the guest's bytes and the engine's compatibility hash (which
//! covers the wasmtime version). A BLAKE3 checksum beside it catches truncated
//! or corrupt files, which are rebuilt rather than loaded. BLAKE3 rather than
//! SHA-256 because it hashes the 70 MB artefact in milliseconds, and this runs
//! on every start; files are hashed through a memory map so that a cache hit
//! never copies them.

use std::{
    hash::{Hash, Hasher},
    path::{Path, PathBuf},
    time::Instant,
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

/// How the module was obtained, for timing reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoadedFrom {
    /// A valid cached artefact was loaded.
    Cache,
    /// The module was compiled now (and cached, when the directory allowed).
    Compiled,
}

pub(crate) fn hash_file(path: &Path) -> std::io::Result<blake3::Hash> {
    let mut h = blake3::Hasher::new();
    h.update_mmap(path)?;
    Ok(h.finalize())
}

/// The cache key: the guest's hash, how it was prepared, and the engine's
/// compatibility hash.
fn key(engine: &Engine, guest_hash: &blake3::Hash, variant: &str) -> String {
    let mut h = blake3::Hasher::new();
    h.update(guest_hash.as_bytes());
    h.update(variant.as_bytes());
    // The compatibility hash covers what makes a `.cwasm` incompatible: the
    // wasmtime version, the target and CPU flags, and the engine's tunables and
    // features (fuel, epochs, stack limits). `DefaultHasher::new()` uses fixed
    // keys, so the value is stable within one build of strictpy.
    let mut settings = std::collections::hash_map::DefaultHasher::new();
    engine.precompile_compatibility_hash().hash(&mut settings);
    h.update(&settings.finish().to_le_bytes());
    hex::encode(&h.finalize().as_bytes()[..16])
}

/// Names how the module is prepared, for the cache key and file name. The
/// preparation and fuel metering both change the compiled code; naming them
/// keeps a fuel-off or plain artefact from pruning the default one (both may
/// be in use at once, as in `strictpy bench`). A snapshot also depends on the
/// modules it pre-imports, so each module set gets its own file: an operator
/// who changes `allowable_modules` gets a matching snapshot, built once and
/// cached beside the default one.
pub fn variant(snapshot: bool, fuel_metering: bool, preload: &[String]) -> String {
    // Every variant ends in `-fuel` or `-nofuel`, so no variant's name is a
    // prefix of another's and `prune` never takes a sibling's files.
    let fuel = if fuel_metering { "fuel" } else { "nofuel" };
    if !snapshot {
        return format!("plain-{fuel}");
    }
    let mut h = blake3::Hasher::new();
    for module in preload {
        h.update(module.as_bytes());
        h.update(b"\n");
    }
    let set = hex::encode(&h.finalize().as_bytes()[..4]);
    format!("snapshot-v2-m{set}-{fuel}")
}

fn paths(dir: &Path, variant: &str, key: &str) -> Paths {
    Paths {
        cwasm: dir.join(format!("strictpy-guest-{variant}-{key}.cwasm")),
        checksum: dir.join(format!("strictpy-guest-{variant}-{key}.blake3")),
    }
}

/// Removes artefacts of the same variant under other keys (older guests or
/// engine settings), so the cache does not grow with every rebuild.
fn prune(dir: &Path, variant: &str, keep: &Paths) {
    let prefix = format!("strictpy-guest-{variant}-");
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let stale = path
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with(&prefix))
            && path != keep.cwasm
            && path != keep.checksum;
        if stale && let Err(e) = std::fs::remove_file(&path) {
            tracing::debug!(error = %e, path = %path.display(), "could not prune a stale artefact");
        }
    }
}

/// Loads the guest at `guest` from `dir`'s cache, or prepares it (for
/// instance, snapshots it), compiles it and caches it. `variant` names the
/// preparation and is part of the key.
pub fn load(
    engine: &Engine,
    guest: &Path,
    dir: Option<&Path>,
    variant: &str,
    prepare: impl FnOnce(&[u8]) -> Result<Vec<u8>, SandboxError>,
) -> Result<(Module, LoadedFrom), SandboxError> {
    let started = Instant::now();
    let read_err = |source| SandboxError::ReadGuest {
        path: guest.to_owned(),
        source,
    };
    let key = key(engine, &hash_file(guest).map_err(read_err)?, variant);
    if let Some(dir) = dir
        && let Some(module) = load_cached(engine, &paths(dir, variant, &key))
    {
        tracing::debug!(elapsed = ?started.elapsed(), "loaded the cached guest");
        return Ok((module, LoadedFrom::Cache));
    }
    let wasm = prepare(&std::fs::read(guest).map_err(read_err)?)?;
    let compiled = engine
        .precompile_module(&wasm)
        .map_err(|e| SandboxError::Compile(e.to_string()))?;
    tracing::info!(elapsed = ?started.elapsed(), "compiled the guest");
    if let Some(dir) = dir
        && let Err(e) = store(dir, variant, &key, &compiled)
    {
        tracing::warn!(error = %e, dir = %dir.display(), "could not cache the compiled guest");
    }
    // SAFETY: `compiled` was produced by `precompile_module` on this very
    // engine a moment ago.
    let module = unsafe { Module::deserialize(engine, &compiled) }
        .map_err(|e| SandboxError::Compile(e.to_string()))?;
    Ok((module, LoadedFrom::Compiled))
}

/// A cached module, if there is one whose checksum holds.
fn load_cached(engine: &Engine, p: &Paths) -> Option<Module> {
    let expected = std::fs::read_to_string(&p.checksum).ok()?;
    let actual = hash_file(&p.cwasm).ok()?;
    if actual.to_hex().as_str() != expected.trim() {
        tracing::warn!(path = %p.cwasm.display(), "cached guest fails its checksum; recompiling");
        return None;
    }
    // SAFETY: `Module::deserialize_file` requires a file produced by
    // `Engine::precompile_module` of a compatible engine, which is not modified
    // while mapped. The file lives in strictpy's own cache directory, was
    // written by `store` below (atomically, by rename), and matches the
    // checksum written after it, so it is exactly what we wrote; its name keys
    // it to this engine's compatibility hash, and wasmtime re-checks version
    // and settings in the header. strictpy never rewrites a file in place, so
    // the mapping stays valid.
    match unsafe { Module::deserialize_file(engine, &p.cwasm) } {
        Ok(module) => Some(module),
        Err(e) => {
            tracing::warn!(error = %e, "cached guest rejected; recompiling");
            None
        }
    }
}

/// Writes the artefact, then its checksum, each atomically (write to a
/// temporary name, then rename), so a crash mid-write leaves no half file under
/// a final name and an artefact without its checksum is never trusted.
fn store(dir: &Path, variant: &str, key: &str, compiled: &[u8]) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let p = paths(dir, variant, key);
    let tmp = dir.join(format!(
        ".strictpy-guest-{variant}-{key}.{}.tmp",
        std::process::id()
    ));
    std::fs::write(&tmp, compiled)?;
    std::fs::rename(&tmp, &p.cwasm)?;
    let tmp_sum = tmp.with_extension("sum.tmp");
    std::fs::write(&tmp_sum, blake3::hash(compiled).to_hex().as_str())?;
    std::fs::rename(&tmp_sum, &p.checksum)?;
    prune(dir, variant, &p);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The smallest valid module: magic and version, no sections.
    const EMPTY_MODULE: &[u8] = b"\0asm\x01\0\0\0";

    fn load_empty(engine: &Engine, dir: &Path, guest: &Path) -> LoadedFrom {
        load(engine, guest, Some(dir), "test", |w| Ok(w.to_vec()))
            .map(|(_, from)| from)
            .expect("load")
    }

    #[test]
    fn stale_or_corrupt_artefacts_are_rebuilt() {
        let dir = tempfile::tempdir().expect("tempdir");
        let guest = dir.path().join("guest.wasm");
        std::fs::write(&guest, EMPTY_MODULE).expect("write guest");
        let engine = Engine::default();
        assert_eq!(
            load_empty(&engine, dir.path(), &guest),
            LoadedFrom::Compiled
        );
        assert_eq!(load_empty(&engine, dir.path(), &guest), LoadedFrom::Cache);

        let artefact = |ext: &str| {
            std::fs::read_dir(dir.path())
                .expect("read dir")
                .flatten()
                .map(|e| e.path())
                .find(|p| p.extension().is_some_and(|x| x == ext))
                .expect("artefact")
        };
        // Corrupt the artefact: its checksum no longer matches.
        let cwasm = artefact("cwasm");
        let mut bytes = std::fs::read(&cwasm).expect("read");
        let mid = bytes.len() / 2;
        bytes[mid] ^= 0xff;
        std::fs::write(&cwasm, &bytes).expect("corrupt");
        assert_eq!(
            load_empty(&engine, dir.path(), &guest),
            LoadedFrom::Compiled
        );
        assert_eq!(load_empty(&engine, dir.path(), &guest), LoadedFrom::Cache);

        // Truncate it and keep the checksum in step: wasmtime's own header
        // checks refuse it, and it is rebuilt rather than loaded.
        let cwasm = artefact("cwasm");
        let bytes = std::fs::read(&cwasm).expect("read");
        std::fs::write(&cwasm, &bytes[..16]).expect("truncate");
        std::fs::write(
            artefact("blake3"),
            blake3::hash(&bytes[..16]).to_hex().as_str(),
        )
        .expect("checksum");
        assert_eq!(
            load_empty(&engine, dir.path(), &guest),
            LoadedFrom::Compiled
        );

        // A different guest is a different key, and the stale one is pruned.
        // (A custom section: id 0, size 5, a 4-byte name.)
        std::fs::write(&guest, [EMPTY_MODULE, b"\0\x05\x04name"].concat()).expect("write");
        assert_eq!(
            load_empty(&engine, dir.path(), &guest),
            LoadedFrom::Compiled
        );
        let cwasms = std::fs::read_dir(dir.path())
            .expect("read dir")
            .flatten()
            .filter(|e| e.path().extension().is_some_and(|x| x == "cwasm"))
            .count();
        assert_eq!(cwasms, 1);
    }

    #[test]
    fn each_module_set_has_its_own_snapshot() {
        let set = |names: &[&str]| names.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        let a = variant(true, true, &set(&["json", "typing"]));
        assert_eq!(a, variant(true, true, &set(&["json", "typing"])));
        assert_ne!(a, variant(true, true, &set(&["json"])));
        assert_ne!(a, variant(true, false, &set(&["json", "typing"])));
        // The prefix of one set's files is never a prefix of another's, so
        // pruning one set's stale files leaves the others alone.
        let names = [
            a.clone(),
            variant(true, false, &set(&["json", "typing"])),
            variant(true, true, &set(&["json"])),
            variant(false, true, &[]),
            variant(false, false, &[]),
        ];
        for x in &names {
            for y in &names {
                assert!(
                    x == y || !format!("{x}-").starts_with(&format!("{y}-")),
                    "{x} {y}"
                );
            }
        }
    }

    #[test]
    fn key_changes_with_engine_settings() {
        let guest = blake3::hash(b"guest");
        let mut a = wasmtime::Config::new();
        a.consume_fuel(true);
        let mut b = wasmtime::Config::new();
        b.consume_fuel(false);
        let (Ok(ea), Ok(eb)) = (Engine::new(&a), Engine::new(&b)) else {
            panic!("engines")
        };
        assert_ne!(key(&ea, &guest, "v"), key(&eb, &guest, "v"));
        assert_eq!(key(&ea, &guest, "v"), key(&ea, &guest, "v"));
        assert_ne!(key(&ea, &guest, "v"), key(&ea, &guest, "w"));
        assert_ne!(
            key(&ea, &guest, "v"),
            key(&ea, &blake3::hash(b"other"), "v")
        );
    }
}
