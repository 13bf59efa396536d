//! Stored functions: a tenant's program registered once under a name and
//! invoked many times. Each update is a new version; versions are never
//! edited, only deleted (soft: `deleted_at`), so a job that recorded the
//! version it ran keeps meaning something.
//!
//! The program and its description are sealed like a job's spec (bound to
//! tenant, name and version); the compiled form (the guest's marshalled code
//! object) is sealed too and kept with the key of the guest that made it and
//! a checksum, which the server checks before using it: a stale or corrupt
//! form is compiled again from the source, never trusted. What both backends
//! share below the SQL lives here; their statements are in
//! `{sqlite,postgres}/functions.rs`.

use serde::{Deserialize, Serialize};
use strictpy_types::Limits;

use crate::{
    StoreError,
    crypto::Keyring,
    rows::{self, Columns},
};

/// One version of a stored function, as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FunctionRecord {
    /// The tenant that owns it.
    pub tenant: String,
    /// Its name, unique within the tenant.
    pub name: String,
    /// 1 for the first registration, one more for each update.
    pub version: i64,
    /// What the caller said it is for.
    pub description: Option<String>,
    /// The Python source, accepted by the static check at registration.
    pub code: String,
    /// The extra modules it may import.
    pub allow: Vec<String>,
    /// Its own limits, which an invocation may only tighten.
    pub limits: Limits,
    /// The token that registered this version (its public id).
    pub token_id: Option<String>,
    /// When this version was stored, Unix milliseconds.
    pub created_at: i64,
    /// When it was deleted; deleted versions are neither shown nor invoked.
    pub deleted_at: Option<i64>,
    /// The compiled form, if the guest produced one.
    pub compiled: Option<CompiledForm>,
}

/// A program compiled by the guest: its marshalled code object, the key of
/// the guest that compiled it (`Sandbox::code_key`) and a checksum of the
/// bytes (BLAKE3, hex), checked before each use.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CompiledForm {
    /// The guest that made it.
    pub key: String,
    /// The BLAKE3 hash of `bytes`, lower-case hex.
    pub checksum: String,
    /// The marshalled code object.
    pub bytes: Vec<u8>,
}

/// A version to store.
#[derive(Debug, Clone, PartialEq)]
pub struct NewFunction {
    /// The owning tenant.
    pub tenant: String,
    /// The name.
    pub name: String,
    /// See [`FunctionRecord::description`].
    pub description: Option<String>,
    /// See [`FunctionRecord::code`].
    pub code: String,
    /// See [`FunctionRecord::allow`].
    pub allow: Vec<String>,
    /// See [`FunctionRecord::limits`].
    pub limits: Limits,
    /// See [`FunctionRecord::token_id`].
    pub token_id: Option<String>,
    /// See [`FunctionRecord::created_at`].
    pub created_at: i64,
    /// See [`FunctionRecord::compiled`].
    pub compiled: Option<CompiledForm>,
}

/// Whether [`crate::JobStore::put_function`] registers a new name or adds
/// a version to an existing one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FunctionWrite {
    /// A new name: refused if the tenant has a live function by that name.
    Register,
    /// A new version: refused if the tenant has no live function by that
    /// name.
    Update,
}

/// What [`crate::JobStore::put_function`] did.
#[derive(Debug, Clone, PartialEq)]
pub enum FunctionPut {
    /// The version was stored.
    Stored(Box<FunctionRecord>),
    /// [`FunctionWrite::Register`] of a name that is taken.
    Exists,
    /// [`FunctionWrite::Update`] of a name that has no live version.
    Missing,
}

/// A page of [`crate::JobStore::list_functions`]: the newest live version
/// of each function, by name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FunctionQuery {
    /// Only this tenant's functions.
    pub tenant: String,
    /// Only names after this one (the cursor).
    pub after: Option<String>,
    /// At most this many.
    pub limit: u32,
}

/// The function columns every query reads, in the order [`decode`] reads
/// them.
pub(crate) const FUNCTION_COLUMNS: &str = "tenant, name, version, source, allow, limits, \
                                           token_id, created_at, deleted_at, compiled, \
                                           compiled_key, compiled_checksum";

/// The sealed part of a version: what the caller wrote.
#[derive(Serialize, Deserialize)]
struct Source {
    /// The program.
    code: String,
    /// The description.
    description: Option<String>,
}

/// The associated data of a function's sealed column: tenant, name and
/// version, so a value copied into another row does not open.
fn aad(column: &str, tenant: &str, name: &str, version: i64) -> Vec<u8> {
    // Tenant names and function names hold no `/` (both are checked
    // identifiers), so the triple is unambiguous.
    format!("functions.{column}:{tenant}/{name}/{version}").into_bytes()
}

/// The sealed `source` column of a version.
pub(crate) fn seal_source(
    keys: &Keyring,
    f: &NewFunction,
    version: i64,
) -> Result<String, StoreError> {
    let json = zeroize::Zeroizing::new(rows::to_json(&Source {
        code: f.code.clone(),
        description: f.description.clone(),
    })?);
    keys.seal(json.as_bytes(), &aad("source", &f.tenant, &f.name, version))
}

/// The sealed `compiled` column (the bytes, base64 inside the seal).
pub(crate) fn seal_compiled(
    keys: &Keyring,
    tenant: &str,
    name: &str,
    version: i64,
    bytes: &[u8],
) -> Result<String, StoreError> {
    use base64::Engine as _;
    let text = base64::engine::general_purpose::STANDARD.encode(bytes);
    keys.seal(text.as_bytes(), &aad("compiled", tenant, name, version))
}

/// Decodes a function row selected with [`FUNCTION_COLUMNS`], whichever
/// backend read it: opens the sealed columns and parses the rest. A
/// compiled form that does not open or decode is dropped rather than
/// failing the read: it is only a cache of the source, which is compiled
/// again.
pub(crate) fn decode(row: &dyn Columns, keys: &Keyring) -> Result<FunctionRecord, StoreError> {
    let tenant = row.text(0)?;
    let name = row.text(1)?;
    let version = row.int(2)?;
    let source_aad = aad("source", &tenant, &name, version);
    let json = zeroize::Zeroizing::new(keys.open(&row.text(3)?, &source_aad)?);
    let source: Source =
        serde_json::from_slice(&json).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    let compiled = match (row.opt_text(9)?, row.opt_text(10)?, row.opt_text(11)?) {
        (Some(sealed), Some(key), Some(checksum)) => {
            open_compiled(keys, &tenant, &name, version, &sealed).map(|bytes| CompiledForm {
                key,
                checksum,
                bytes,
            })
        }
        _ => None,
    };
    Ok(FunctionRecord {
        allow: rows::from_json(&row.text(4)?)?,
        limits: rows::from_json(&row.text(5)?)?,
        token_id: row.opt_text(6)?,
        created_at: row.int(7)?,
        deleted_at: row.opt_int(8)?,
        tenant,
        name,
        version,
        description: source.description,
        code: source.code,
        compiled,
    })
}

/// The bytes of a sealed `compiled` column, or `None` if they do not open.
fn open_compiled(
    keys: &Keyring,
    tenant: &str,
    name: &str,
    version: i64,
    sealed: &str,
) -> Option<Vec<u8>> {
    use base64::Engine as _;
    let text = keys
        .open(sealed, &aad("compiled", tenant, name, version))
        .inspect_err(|e| tracing::warn!(%name, version, error = %e, "compiled form does not open"))
        .ok()?;
    base64::engine::general_purpose::STANDARD.decode(text).ok()
}

/// The record of `f` as inserted under `version`.
pub(crate) fn stored_record(f: NewFunction, version: i64) -> FunctionRecord {
    FunctionRecord {
        tenant: f.tenant,
        name: f.name,
        version,
        description: f.description,
        code: f.code,
        allow: f.allow,
        limits: f.limits,
        token_id: f.token_id,
        created_at: f.created_at,
        deleted_at: None,
        compiled: f.compiled,
    }
}
