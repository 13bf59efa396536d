//! The compiled form of stored functions: made in the guest when a version
//! is stored, checked before every use, and made again when it does not fit
//! the running guest (another build: a different `Sandbox::code_key`) or
//! does not match its checksum. A form that fails either check is never
//! handed to the guest; the job then gets a fresh one, or runs from its
//! source, which gives the same results (only slower).

use strictpy_sandbox::Sandbox;
use strictpy_store::{CompiledForm, FunctionRef};
use strictpy_types::Limits;

use crate::AppState;

/// Compiles `code` in `sandbox`'s guest. `None` when the guest makes no form
/// that reproduces a run from source exactly (a compile error, warnings);
/// such a function always runs from its source.
pub fn compile(sandbox: &Sandbox, code: &str, limits: Limits) -> Option<CompiledForm> {
    match sandbox.compile(code, limits) {
        Ok(bytes) => Some(CompiledForm {
            key: sandbox.code_key().to_owned(),
            checksum: strictpy_sandbox::checksum(&bytes),
            bytes,
        }),
        Err(e) => {
            tracing::debug!(error = %e, "no compiled form; the function runs from source");
            None
        }
    }
}

/// The bytes of `form` if it was made by `sandbox`'s guest and is intact.
pub fn usable<'a>(form: &'a CompiledForm, sandbox: &Sandbox) -> Option<&'a [u8]> {
    (form.key == sandbox.code_key() && strictpy_sandbox::checksum(&form.bytes) == form.checksum)
        .then_some(form.bytes.as_slice())
}

/// The compiled form to run job code `code` of `function` with, on a worker
/// thread: the stored one if it is usable, else a new one (stored for the
/// next invocation). `None` runs the source: the version is gone, it has no
/// form, or it no longer holds `code`.
pub fn for_job(
    state: &AppState,
    sandbox: &Sandbox,
    tenant: &str,
    function: &FunctionRef,
    code: &str,
) -> Option<Vec<u8>> {
    let found = state.runtime.block_on(state.store.function(
        tenant.to_owned(),
        function.name.clone(),
        Some(function.version),
    ));
    let record = match found {
        Ok(Some(record)) if record.code == code => record,
        Ok(_) => return None,
        Err(e) => {
            tracing::warn!(error = %e, "cannot read the function; running from source");
            return None;
        }
    };
    if let Some(bytes) = record.compiled.as_ref().and_then(|f| usable(f, sandbox)) {
        return Some(bytes.to_vec());
    }
    tracing::info!(
        name = %function.name,
        version = function.version,
        stale = record.compiled.is_some(),
        "compiling a function for this guest"
    );
    let form = compile(sandbox, code, record.limits)?;
    let bytes = form.bytes.clone();
    if let Err(e) = state.runtime.block_on(state.store.set_compiled(
        tenant.to_owned(),
        function.name.clone(),
        function.version,
        form,
    )) {
        tracing::warn!(error = %e, "cannot store the compiled form");
    }
    Some(bytes)
}
