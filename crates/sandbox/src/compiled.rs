//! Compiling a program once in the guest and keeping its code object, for
//! stored functions: [`Sandbox::compile`] runs the guest in compile-only mode
//! and returns the marshalled code object, and a later [`Job`] carrying it
//! as `compiled` starts at the first bytecode instead of parsing and
//! compiling the source again.
//!
//! The bytes are RustPython's marshal format of the guest's own compiler, so
//! they are only good for the guest that made them: [`Sandbox::code_key`]
//! names that guest, and whoever stores the bytes keeps the key beside them
//! and compiles again when it changes.

use std::path::Path;

use strictpy_types::{Limits, Status, Verdict};

use crate::{Job, Sandbox};

/// Why [`Sandbox::compile`] gave no code object. None of these is an error
/// of the service: the program is then run from its source every time,
/// which gives the same results.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CompileError {
    /// Compiling raised (a `SyntaxError` the static check does not see, or a
    /// warning turned error); every run of the source raises the same.
    #[error("the program does not compile: {0}")]
    Refused(String),
    /// Compiling printed something (a `SyntaxWarning`): a run from the code
    /// object would not print it, so the source must be run to stay exact.
    #[error("compiling printed warnings, which only a run from source repeats")]
    Warnings,
    /// The guest ran out of a limit, or its answer was not a code object.
    #[error("the guest could not compile the program: {0}")]
    Failed(String),
}

/// The key of code objects compiled by the guest at `guest`: a hash of the
/// guest's own bytes, since the guest's RustPython alone decides the
/// bytecode and its marshal format (the engine settings and preload, which
/// change the `.cwasm`, do not change them).
pub(crate) fn code_key(guest: &Path) -> std::io::Result<String> {
    let hash = crate::cache::hash_file(guest)?;
    Ok(format!("guest-{}", hex::encode(&hash.as_bytes()[..16])))
}

impl Sandbox {
    /// The key of the code objects this sandbox's guest compiles and runs; a
    /// code object made under another key must not be handed to it.
    pub fn code_key(&self) -> &str {
        &self.code_key
    }

    /// Compiles `code` in the guest, with the same compiler and options as a
    /// job, and returns its marshalled code object for [`Job::compiled`].
    /// `limits` bound the compile like a job.
    pub fn compile(&self, code: &str, limits: Limits) -> Result<Vec<u8>, CompileError> {
        let job = Job {
            code: code.to_owned(),
            limits,
            compile_only: true,
            ..Job::default()
        };
        let outcome = self.run(&job);
        if outcome.status != Status::Succeeded {
            return Err(match outcome.error {
                Some(e) if e.kind == Verdict::Exception => CompileError::Refused(e.message),
                Some(e) => CompileError::Failed(e.message),
                None => CompileError::Failed("no verdict".to_owned()),
            });
        }
        if !outcome.stderr.is_empty() || !outcome.stdout.is_empty() {
            return Err(CompileError::Warnings);
        }
        let hex = outcome
            .result
            .as_ref()
            .and_then(serde_json::Value::as_str)
            .ok_or_else(|| CompileError::Failed("the guest returned no code object".to_owned()))?;
        strictpy_protocol::hex_decode(hex)
            .ok_or_else(|| CompileError::Failed("the code object is not hex".to_owned()))
    }
}

/// The checksum a stored compiled form is kept with: BLAKE3 of the bytes,
/// lower-case hex.
pub fn checksum(bytes: &[u8]) -> String {
    blake3::hash(bytes).to_hex().to_string()
}
