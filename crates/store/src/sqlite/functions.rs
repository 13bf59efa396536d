//! The SQLite statements behind stored functions (see `crate::functions`).

use rusqlite::{Connection, params};

use crate::crypto::Keyring;
use crate::functions::{FUNCTION_COLUMNS, decode, seal_compiled, seal_source, stored_record};
use crate::rows::to_json;
use crate::{
    CompiledForm, FunctionPut, FunctionQuery, FunctionRecord, FunctionWrite, NewFunction,
    StoreError,
};

/// Runs `sql` and decodes every function row it selects.
fn query(
    conn: &Connection,
    keys: &Keyring,
    sql: &str,
    params: impl rusqlite::Params,
) -> Result<Vec<FunctionRecord>, StoreError> {
    super::query_all(conn, sql, params, |row| decode(row, keys))
}

/// Picks the next version and inserts it, in one transaction (the one
/// connection makes "read the newest, then insert" atomic).
pub(super) fn put_function(
    conn: &mut Connection,
    keys: &Keyring,
    f: NewFunction,
    write: FunctionWrite,
) -> Result<FunctionPut, StoreError> {
    let tx = conn.transaction()?;
    let (newest, live): (Option<i64>, i64) = tx.query_row(
        "SELECT MAX(version), COUNT(*) FILTER (WHERE deleted_at IS NULL)
         FROM functions WHERE tenant = ?1 AND name = ?2",
        params![f.tenant, f.name],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    match (write, live > 0) {
        (FunctionWrite::Register, true) => return Ok(FunctionPut::Exists),
        (FunctionWrite::Update, false) => return Ok(FunctionPut::Missing),
        _ => {}
    }
    let version = newest.unwrap_or(0) + 1;
    let compiled = f
        .compiled
        .as_ref()
        .map(|c| seal_compiled(keys, &f.tenant, &f.name, version, &c.bytes))
        .transpose()?;
    tx.execute(
        &format!(
            "INSERT INTO functions ({FUNCTION_COLUMNS})
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, NULL, ?9, ?10, ?11)"
        ),
        params![
            f.tenant,
            f.name,
            version,
            seal_source(keys, &f, version)?,
            to_json(&f.allow)?,
            to_json(&f.limits)?,
            f.token_id,
            f.created_at,
            compiled,
            f.compiled.as_ref().map(|c| c.key.clone()),
            f.compiled.as_ref().map(|c| c.checksum.clone()),
        ],
    )?;
    tx.commit()?;
    Ok(FunctionPut::Stored(Box::new(stored_record(f, version))))
}

pub(super) fn function(
    conn: &Connection,
    keys: &Keyring,
    tenant: &str,
    name: &str,
    version: Option<i64>,
) -> Result<Option<FunctionRecord>, StoreError> {
    let found = query(
        conn,
        keys,
        &format!(
            "SELECT {FUNCTION_COLUMNS} FROM functions
             WHERE tenant = ?1 AND name = ?2 AND deleted_at IS NULL
               AND (?3 IS NULL OR version = ?3)
             ORDER BY version DESC LIMIT 1"
        ),
        params![tenant, name, version],
    )?;
    Ok(found.into_iter().next())
}

pub(super) fn list_functions(
    conn: &Connection,
    keys: &Keyring,
    q: &FunctionQuery,
) -> Result<Vec<FunctionRecord>, StoreError> {
    query(
        conn,
        keys,
        &format!(
            "SELECT {FUNCTION_COLUMNS} FROM functions f
             WHERE tenant = ?1 AND deleted_at IS NULL AND (?2 IS NULL OR name > ?2)
               AND version = (SELECT MAX(g.version) FROM functions g
                              WHERE g.tenant = f.tenant AND g.name = f.name
                                AND g.deleted_at IS NULL)
             ORDER BY name LIMIT ?3"
        ),
        params![q.tenant, q.after, i64::from(q.limit)],
    )
}

pub(super) fn function_versions(
    conn: &Connection,
    tenant: &str,
    name: &str,
) -> Result<Vec<i64>, StoreError> {
    let mut stmt = conn.prepare(
        "SELECT version FROM functions
         WHERE tenant = ?1 AND name = ?2 AND deleted_at IS NULL ORDER BY version",
    )?;
    let versions = stmt
        .query_map(params![tenant, name], |r| r.get(0))?
        .collect::<Result<Vec<i64>, _>>()?;
    Ok(versions)
}

pub(super) fn delete_function(
    conn: &Connection,
    tenant: &str,
    name: &str,
    version: Option<i64>,
    at: i64,
) -> Result<u64, StoreError> {
    let n = conn.execute(
        "UPDATE functions SET deleted_at = ?1
         WHERE tenant = ?2 AND name = ?3 AND deleted_at IS NULL
           AND (?4 IS NULL OR version = ?4)",
        params![at, tenant, name, version],
    )?;
    Ok(n as u64)
}

pub(super) fn set_compiled(
    conn: &Connection,
    keys: &Keyring,
    tenant: &str,
    name: &str,
    version: i64,
    c: &CompiledForm,
) -> Result<(), StoreError> {
    conn.execute(
        "UPDATE functions SET compiled = ?1, compiled_key = ?2, compiled_checksum = ?3
         WHERE tenant = ?4 AND name = ?5 AND version = ?6",
        params![
            seal_compiled(keys, tenant, name, version, &c.bytes)?,
            c.key,
            c.checksum,
            tenant,
            name,
            version
        ],
    )?;
    Ok(())
}

pub(super) fn tenant_functions(
    conn: &Connection,
    keys: &Keyring,
    tenant: &str,
) -> Result<Vec<FunctionRecord>, StoreError> {
    query(
        conn,
        keys,
        &format!(
            "SELECT {FUNCTION_COLUMNS} FROM functions WHERE tenant = ?1 ORDER BY name, version"
        ),
        [tenant],
    )
}
