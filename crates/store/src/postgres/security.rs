//! The PostgreSQL statements behind tokens, the audit log, retention and
//! tenant erasure: the SQLite ones in Postgres's placeholders and types.

use deadpool_postgres::Object;

use super::execute;
use crate::rows::{AUDIT_COLUMNS, Columns, TOKEN_COLUMNS, final_statuses, json_quoted, to_json};
use crate::{
    AuditQuery, AuditRecord, Erased, NewAuditEvent, Purged, StoreError, TokenKind, TokenRecord,
};

pub(super) async fn insert_token(client: &Object, t: &TokenRecord) -> Result<(), StoreError> {
    execute(
        client,
        &format!(
            "INSERT INTO tokens ({TOKEN_COLUMNS})
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)"
        ),
        &[
            &t.id,
            &t.kind.as_str(),
            &t.tenant,
            &t.name,
            &t.hash,
            &to_json(&t.scopes)?,
            &t.created_at,
            &t.expires_at,
            &t.last_used_at,
            &t.revoked_at,
            &t.parent_id,
            &t.family_id,
            &t.used_at,
            &to_json(&t.limits)?,
        ],
    )
    .await?;
    Ok(())
}

pub(super) async fn token(client: &Object, id: &str) -> Result<Option<TokenRecord>, StoreError> {
    let stmt = client
        .prepare_cached(&format!("SELECT {TOKEN_COLUMNS} FROM tokens WHERE id = $1"))
        .await?;
    client
        .query_opt(&stmt, &[&id])
        .await?
        .map(|r| TokenRecord::try_from(&r as &dyn Columns))
        .transpose()
}

pub(super) async fn list_tokens(
    client: &Object,
    tenant: Option<&str>,
) -> Result<Vec<TokenRecord>, StoreError> {
    let stmt = client
        .prepare_cached(&format!(
            "SELECT {TOKEN_COLUMNS} FROM tokens
             WHERE kind = $1 AND ($2::TEXT IS NULL OR tenant = $2)
             ORDER BY created_at, id"
        ))
        .await?;
    client
        .query(&stmt, &[&TokenKind::Api.as_str(), &tenant])
        .await?
        .iter()
        .map(|r| TokenRecord::try_from(r as &dyn Columns))
        .collect()
}

pub(super) async fn has_tokens(client: &Object) -> Result<bool, StoreError> {
    Ok(client
        .query_one("SELECT EXISTS (SELECT 1 FROM tokens)", &[])
        .await?
        .try_get(0)?)
}

pub(super) async fn revoke_token(
    client: &mut Object,
    id: &str,
    at: i64,
) -> Result<bool, StoreError> {
    let tx = client.transaction().await?;
    let own = tx
        .execute(
            "UPDATE tokens SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL",
            &[&at, &id],
        )
        .await?;
    tx.execute(
        "UPDATE tokens SET revoked_at = $1 WHERE parent_id = $2 AND revoked_at IS NULL",
        &[&at, &id],
    )
    .await?;
    tx.commit().await?;
    Ok(own == 1)
}

pub(super) async fn revoke_family(
    client: &Object,
    family: &str,
    at: i64,
) -> Result<u64, StoreError> {
    execute(
        client,
        "UPDATE tokens SET revoked_at = $1 WHERE family_id = $2 AND revoked_at IS NULL",
        &[&at, &family],
    )
    .await
}

pub(super) async fn consume_refresh(
    client: &Object,
    id: &str,
    at: i64,
) -> Result<bool, StoreError> {
    let n = execute(
        client,
        "UPDATE tokens SET used_at = $1
         WHERE id = $2 AND kind = $3 AND used_at IS NULL AND revoked_at IS NULL",
        &[&at, &id, &TokenKind::Refresh.as_str()],
    )
    .await?;
    Ok(n == 1)
}

pub(super) async fn touch_token(client: &Object, id: &str, at: i64) -> Result<(), StoreError> {
    execute(
        client,
        "UPDATE tokens SET last_used_at = $1 WHERE id = $2",
        &[&at, &id],
    )
    .await?;
    Ok(())
}

pub(super) async fn append_audit(
    client: &mut Object,
    events: &[NewAuditEvent],
) -> Result<(), StoreError> {
    let tx = client.transaction().await?;
    let stmt = tx
        .prepare_cached(
            "INSERT INTO audit (at, event, tenant, token_id, ip, details)
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .await?;
    for e in events {
        tx.execute(
            &stmt,
            &[
                &e.at,
                &e.event,
                &e.tenant,
                &e.token_id,
                &e.ip,
                &to_json(&e.details)?,
            ],
        )
        .await?;
    }
    tx.commit().await?;
    Ok(())
}

pub(super) async fn list_audit(
    client: &Object,
    q: &AuditQuery,
) -> Result<Vec<AuditRecord>, StoreError> {
    let stmt = client
        .prepare_cached(&format!(
            "SELECT {AUDIT_COLUMNS} FROM audit
             WHERE ($1::TEXT IS NULL OR tenant = $1)
               AND ($2::TEXT IS NULL OR event = $2)
               AND ($3::BIGINT IS NULL OR at >= $3)
               AND ($4::BIGINT IS NULL OR at < $4)
               AND ($5::BIGINT IS NULL OR id < $5)
             ORDER BY id DESC
             LIMIT $6"
        ))
        .await?;
    let rows = client
        .query(
            &stmt,
            &[
                &q.tenant,
                &q.event,
                &q.since,
                &q.until,
                &q.before_id,
                &i64::from(q.limit),
            ],
        )
        .await?;
    rows.iter()
        .map(|r| AuditRecord::try_from(r as &dyn Columns))
        .collect()
}

pub(super) async fn purge(
    client: &mut Object,
    jobs_before: i64,
    audit_before: i64,
    tokens_before: i64,
) -> Result<Purged, StoreError> {
    let tx = client.transaction().await?;
    // One node purges at a time: another that finds the lock taken skips
    // this run (the holder deletes the same rows).
    let ours: bool = tx
        .query_one(
            "SELECT pg_try_advisory_xact_lock($1, 0)",
            &[&crate::cluster::lock_class::RETENTION],
        )
        .await?
        .try_get(0)?;
    if !ours {
        return Ok(Purged::default());
    }
    let [succeeded, failed, cancelled] = final_statuses();
    // Failed authentications and lockouts older than a day count for
    // nothing any more.
    tx.execute("DELETE FROM auth_failures WHERE at < $1", &[&tokens_before])
        .await?;
    tx.execute(
        "DELETE FROM auth_lockouts WHERE until < $1",
        &[&tokens_before],
    )
    .await?;
    let jobs = tx
        .execute(
            "DELETE FROM jobs WHERE finished_at < $1 AND status IN ($2, $3, $4)",
            &[&jobs_before, &succeeded, &failed, &cancelled],
        )
        .await?;
    let audit = tx
        .execute("DELETE FROM audit WHERE at < $1", &[&audit_before])
        .await?;
    let tokens = tx
        .execute(
            "DELETE FROM tokens WHERE kind <> $1 AND expires_at < $2",
            &[&TokenKind::Api.as_str(), &tokens_before],
        )
        .await?;
    tx.commit().await?;
    Ok(Purged {
        jobs,
        audit,
        tokens,
    })
}

pub(super) async fn erase_tenant(
    client: &mut Object,
    tenant: &str,
    replacement: &str,
    at: i64,
) -> Result<Erased, StoreError> {
    let tx = client.transaction().await?;
    let jobs = tx
        .execute("DELETE FROM jobs WHERE tenant = $1", &[&tenant])
        .await?;
    let functions = tx
        .execute("DELETE FROM functions WHERE tenant = $1", &[&tenant])
        .await?;
    let tokens = tx
        .execute(
            "UPDATE tokens SET revoked_at = COALESCE(revoked_at, $1), tenant = $2, name = ''
             WHERE tenant = $3",
            &[&at, &replacement, &tenant],
        )
        .await?;
    let audit = tx
        .execute(
            "UPDATE audit SET tenant = $1, ip = NULL WHERE tenant = $2",
            &[&replacement, &tenant],
        )
        .await?;
    // As in SQLite: the name also appears as a JSON string in details.
    tx.execute(
        "UPDATE audit SET details = REPLACE(details, $1, $2) WHERE STRPOS(details, $1) > 0",
        &[&json_quoted(tenant), &json_quoted(replacement)],
    )
    .await?;
    tx.commit().await?;
    Ok(Erased {
        jobs,
        tokens,
        audit,
        functions,
    })
}
