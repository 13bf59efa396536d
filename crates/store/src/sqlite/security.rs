//! The SQL behind tokens, the audit log, retention and tenant erasure.

use rusqlite::{Connection, OptionalExtension, params};

use super::{query_all, query_opt};
use crate::rows::{AUDIT_COLUMNS, TOKEN_COLUMNS, final_statuses, json_quoted, to_json};
use crate::{
    AuditQuery, AuditRecord, Erased, NewAuditEvent, Purged, StoreError, TokenKind, TokenRecord,
};

fn query_tokens(
    conn: &Connection,
    sql: &str,
    params: impl rusqlite::Params,
) -> Result<Vec<TokenRecord>, StoreError> {
    query_all(conn, sql, params, |row| TokenRecord::try_from(row))
}

pub(super) fn insert_token(conn: &Connection, t: &TokenRecord) -> Result<(), StoreError> {
    conn.execute(
        &format!(
            "INSERT INTO tokens ({TOKEN_COLUMNS})
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)"
        ),
        params![
            t.id,
            t.kind.as_str(),
            t.tenant,
            t.name,
            t.hash,
            to_json(&t.scopes)?,
            t.created_at,
            t.expires_at,
            t.last_used_at,
            t.revoked_at,
            t.parent_id,
            t.family_id,
            t.used_at,
            to_json(&t.limits)?,
        ],
    )?;
    Ok(())
}

pub(super) fn token(conn: &Connection, id: &str) -> Result<Option<TokenRecord>, StoreError> {
    query_opt(
        conn,
        &format!("SELECT {TOKEN_COLUMNS} FROM tokens WHERE id = ?1"),
        [id],
        |row| TokenRecord::try_from(row),
    )
}

pub(super) fn list_tokens(
    conn: &Connection,
    tenant: Option<&str>,
) -> Result<Vec<TokenRecord>, StoreError> {
    query_tokens(
        conn,
        &format!(
            "SELECT {TOKEN_COLUMNS} FROM tokens
             WHERE kind = ?1 AND (?2 IS NULL OR tenant = ?2)
             ORDER BY created_at, id"
        ),
        params![TokenKind::Api.as_str(), tenant],
    )
}

pub(super) fn has_tokens(conn: &Connection) -> Result<bool, StoreError> {
    Ok(conn
        .query_row("SELECT 1 FROM tokens LIMIT 1", [], |r| r.get::<_, i64>(0))
        .optional()?
        .is_some())
}

pub(super) fn revoke_token(conn: &Connection, id: &str, at: i64) -> Result<bool, StoreError> {
    let own = conn.execute(
        "UPDATE tokens SET revoked_at = ?1 WHERE id = ?2 AND revoked_at IS NULL",
        params![at, id],
    )?;
    conn.execute(
        "UPDATE tokens SET revoked_at = ?1 WHERE parent_id = ?2 AND revoked_at IS NULL",
        params![at, id],
    )?;
    Ok(own == 1)
}

pub(super) fn revoke_family(conn: &Connection, family: &str, at: i64) -> Result<u64, StoreError> {
    let n = conn.execute(
        "UPDATE tokens SET revoked_at = ?1 WHERE family_id = ?2 AND revoked_at IS NULL",
        params![at, family],
    )?;
    Ok(n as u64)
}

pub(super) fn consume_refresh(conn: &Connection, id: &str, at: i64) -> Result<bool, StoreError> {
    let n = conn.execute(
        "UPDATE tokens SET used_at = ?1
         WHERE id = ?2 AND kind = ?3 AND used_at IS NULL AND revoked_at IS NULL",
        params![at, id, TokenKind::Refresh.as_str()],
    )?;
    Ok(n == 1)
}

pub(super) fn touch_token(conn: &Connection, id: &str, at: i64) -> Result<(), StoreError> {
    conn.execute(
        "UPDATE tokens SET last_used_at = ?1 WHERE id = ?2",
        params![at, id],
    )?;
    Ok(())
}

pub(super) fn append_audit(
    conn: &mut Connection,
    events: &[NewAuditEvent],
) -> Result<(), StoreError> {
    let tx = conn.transaction()?;
    {
        let mut stmt = tx.prepare(
            "INSERT INTO audit (at, event, tenant, token_id, ip, details)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        )?;
        for e in events {
            stmt.execute(params![
                e.at,
                e.event,
                e.tenant,
                e.token_id,
                e.ip,
                to_json(&e.details)?
            ])?;
        }
    }
    tx.commit()?;
    Ok(())
}

pub(super) fn list_audit(
    conn: &Connection,
    q: &AuditQuery,
) -> Result<Vec<AuditRecord>, StoreError> {
    query_all(
        conn,
        &format!(
            "SELECT {AUDIT_COLUMNS} FROM audit
             WHERE (?1 IS NULL OR tenant = ?1)
               AND (?2 IS NULL OR event = ?2)
               AND (?3 IS NULL OR at >= ?3)
               AND (?4 IS NULL OR at < ?4)
               AND (?5 IS NULL OR id < ?5)
             ORDER BY id DESC
             LIMIT ?6"
        ),
        params![
            q.tenant,
            q.event,
            q.since,
            q.until,
            q.before_id,
            i64::from(q.limit)
        ],
        |row| AuditRecord::try_from(row),
    )
}

pub(super) fn purge(
    conn: &mut Connection,
    jobs_before: i64,
    audit_before: i64,
    tokens_before: i64,
) -> Result<Purged, StoreError> {
    let tx = conn.transaction()?;
    let [succeeded, failed, cancelled] = final_statuses();
    let jobs = tx.execute(
        "DELETE FROM jobs WHERE finished_at < ?1 AND status IN (?2, ?3, ?4)",
        params![jobs_before, succeeded, failed, cancelled],
    )?;
    let audit = tx.execute("DELETE FROM audit WHERE at < ?1", [audit_before])?;
    let tokens = tx.execute(
        "DELETE FROM tokens WHERE kind <> ?1 AND expires_at < ?2",
        params![TokenKind::Api.as_str(), tokens_before],
    )?;
    tx.commit()?;
    Ok(Purged {
        jobs: jobs as u64,
        audit: audit as u64,
        tokens: tokens as u64,
    })
}

pub(super) fn erase_tenant(
    conn: &mut Connection,
    tenant: &str,
    replacement: &str,
    at: i64,
) -> Result<Erased, StoreError> {
    let tx = conn.transaction()?;
    let jobs = tx.execute("DELETE FROM jobs WHERE tenant = ?1", [tenant])?;
    let functions = tx.execute("DELETE FROM functions WHERE tenant = ?1", [tenant])?;
    let tokens = tx.execute(
        "UPDATE tokens SET revoked_at = COALESCE(revoked_at, ?1), tenant = ?2, name = ''
         WHERE tenant = ?3",
        params![at, replacement, tenant],
    )?;
    let audit = tx.execute(
        "UPDATE audit SET tenant = ?1, ip = NULL WHERE tenant = ?2",
        params![replacement, tenant],
    )?;
    // The name also appears as a JSON string in details (an admin's
    // `token_created` for the tenant, an export of it); replace it there too,
    // in every event.
    tx.execute(
        "UPDATE audit SET details = REPLACE(details, ?1, ?2) WHERE INSTR(details, ?1) > 0",
        params![json_quoted(tenant), json_quoted(replacement)],
    )?;
    tx.commit()?;
    Ok(Erased {
        jobs: jobs as u64,
        tokens: tokens as u64,
        audit: audit as u64,
        functions: functions as u64,
    })
}
