//! The PostgreSQL statements behind stored functions: the SQLite ones in
//! Postgres's placeholders and types (see `crate::functions`).

use deadpool_postgres::Object;

use super::execute;
use crate::crypto::Keyring;
use crate::functions::{FUNCTION_COLUMNS, decode, seal_compiled, seal_source, stored_record};
use crate::rows::to_json;
use crate::{
    CompiledForm, FunctionPut, FunctionQuery, FunctionRecord, FunctionWrite, NewFunction,
    StoreError,
};

/// Runs a cached statement and decodes every function row it selects.
async fn query(
    client: &Object,
    keys: &Keyring,
    sql: &str,
    params: &super::Params<'_>,
) -> Result<Vec<FunctionRecord>, StoreError> {
    let stmt = client.prepare_cached(sql).await?;
    client
        .query(&stmt, params)
        .await?
        .iter()
        .map(|r| decode(r, keys))
        .collect()
}

/// Picks the next version and inserts it in one transaction, under an
/// advisory lock on the name so that two nodes updating one function at once
/// make two versions rather than one conflict.
pub(super) async fn put_function(
    client: &mut Object,
    keys: &Keyring,
    f: NewFunction,
    write: FunctionWrite,
) -> Result<FunctionPut, StoreError> {
    let tx = client.transaction().await?;
    tx.execute(
        "SELECT pg_advisory_xact_lock(hashtextextended($1::TEXT || '/' || $2::TEXT, 0))",
        &[&f.tenant, &f.name],
    )
    .await?;
    let row = tx
        .query_one(
            "SELECT MAX(version), COUNT(*) FILTER (WHERE deleted_at IS NULL)
             FROM functions WHERE tenant = $1 AND name = $2",
            &[&f.tenant, &f.name],
        )
        .await?;
    let newest: Option<i64> = row.try_get(0)?;
    let live: i64 = row.try_get(1)?;
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
    let key = f.compiled.as_ref().map(|c| c.key.clone());
    let checksum = f.compiled.as_ref().map(|c| c.checksum.clone());
    tx.execute(
        &format!(
            "INSERT INTO functions ({FUNCTION_COLUMNS})
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, NULL, $9, $10, $11)"
        ),
        &[
            &f.tenant,
            &f.name,
            &version,
            &seal_source(keys, &f, version)?,
            &to_json(&f.allow)?,
            &to_json(&f.limits)?,
            &f.token_id,
            &f.created_at,
            &compiled,
            &key,
            &checksum,
        ],
    )
    .await?;
    tx.commit().await?;
    Ok(FunctionPut::Stored(Box::new(stored_record(f, version))))
}

pub(super) async fn function(
    client: &Object,
    keys: &Keyring,
    tenant: &str,
    name: &str,
    version: Option<i64>,
) -> Result<Option<FunctionRecord>, StoreError> {
    let found = query(
        client,
        keys,
        &format!(
            "SELECT {FUNCTION_COLUMNS} FROM functions
             WHERE tenant = $1 AND name = $2 AND deleted_at IS NULL
               AND ($3::BIGINT IS NULL OR version = $3)
             ORDER BY version DESC LIMIT 1"
        ),
        &[&tenant, &name, &version],
    )
    .await?;
    Ok(found.into_iter().next())
}

pub(super) async fn list_functions(
    client: &Object,
    keys: &Keyring,
    q: &FunctionQuery,
) -> Result<Vec<FunctionRecord>, StoreError> {
    query(
        client,
        keys,
        &format!(
            "SELECT {FUNCTION_COLUMNS} FROM functions f
             WHERE tenant = $1 AND deleted_at IS NULL AND ($2::TEXT IS NULL OR name > $2)
               AND version = (SELECT MAX(g.version) FROM functions g
                              WHERE g.tenant = f.tenant AND g.name = f.name
                                AND g.deleted_at IS NULL)
             ORDER BY name LIMIT $3"
        ),
        &[&q.tenant, &q.after, &i64::from(q.limit)],
    )
    .await
}

pub(super) async fn function_versions(
    client: &Object,
    tenant: &str,
    name: &str,
) -> Result<Vec<i64>, StoreError> {
    let stmt = client
        .prepare_cached(
            "SELECT version FROM functions
             WHERE tenant = $1 AND name = $2 AND deleted_at IS NULL ORDER BY version",
        )
        .await?;
    client
        .query(&stmt, &[&tenant, &name])
        .await?
        .iter()
        .map(|r| Ok(r.try_get(0)?))
        .collect()
}

pub(super) async fn delete_function(
    client: &Object,
    tenant: &str,
    name: &str,
    version: Option<i64>,
    at: i64,
) -> Result<u64, StoreError> {
    execute(
        client,
        "UPDATE functions SET deleted_at = $1
         WHERE tenant = $2 AND name = $3 AND deleted_at IS NULL
           AND ($4::BIGINT IS NULL OR version = $4)",
        &[&at, &tenant, &name, &version],
    )
    .await
}

pub(super) async fn set_compiled(
    client: &Object,
    keys: &Keyring,
    tenant: &str,
    name: &str,
    version: i64,
    c: &CompiledForm,
) -> Result<(), StoreError> {
    execute(
        client,
        "UPDATE functions SET compiled = $1, compiled_key = $2, compiled_checksum = $3
         WHERE tenant = $4 AND name = $5 AND version = $6",
        &[
            &seal_compiled(keys, tenant, name, version, &c.bytes)?,
            &c.key,
            &c.checksum,
            &tenant,
            &name,
            &version,
        ],
    )
    .await?;
    Ok(())
}

pub(super) async fn tenant_functions(
    client: &Object,
    keys: &Keyring,
    tenant: &str,
) -> Result<Vec<FunctionRecord>, StoreError> {
    query(
        client,
        keys,
        &format!(
            "SELECT {FUNCTION_COLUMNS} FROM functions WHERE tenant = $1 ORDER BY name, version"
        ),
        &[&tenant],
    )
    .await
}
