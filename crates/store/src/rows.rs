//! What both backends share below the SQL: the column lists, how a row
//! decodes into a record, JSON columns, and the sealing of job columns with
//! their associated data. Each backend only says how its driver's row hands
//! out one column ([`Columns`]); the decoding is written once, here.

use strictpy_types::JobStatus;
use uuid::Uuid;

use crate::{
    AuditRecord, Callback, DeliveryState, JobRecord, NewAuditEvent, NewJob, StoreError, TokenKind,
    TokenRecord, crypto::Keyring,
};

/// The job columns every query reads, in the order [`job`] reads them.
pub(crate) const COLUMNS: &str = "id, tenant, idempotency_key, request_hash, status, created_at, \
                                  started_at, finished_at, spec, outcome, callback, token_id";

/// The token columns, in the order `TokenRecord::try_from` reads them.
pub(crate) const TOKEN_COLUMNS: &str = "id, kind, tenant, name, hash, scopes, created_at, \
                                        expires_at, last_used_at, revoked_at, parent_id, \
                                        family_id, used_at, rate_limit";

/// The audit columns, in the order `AuditRecord::try_from` reads them.
pub(crate) const AUDIT_COLUMNS: &str = "id, at, event, tenant, token_id, ip, details";

/// The current time in Unix milliseconds.
pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

pub(crate) fn to_json<T: serde::Serialize>(value: &T) -> Result<String, StoreError> {
    serde_json::to_string(value).map_err(|e| StoreError::Corrupt(e.to_string()))
}

pub(crate) fn from_json<T: serde::de::DeserializeOwned>(text: &str) -> Result<T, StoreError> {
    serde_json::from_str(text).map_err(|e| StoreError::Corrupt(e.to_string()))
}

/// The associated data of a sealed column: table, column and row id, so a
/// value copied into another row or column does not open.
fn aad(column: &str, id: &str) -> Vec<u8> {
    format!("jobs.{column}:{id}").into_bytes()
}

/// `value` as JSON, sealed for column `column` of job `id`.
pub(crate) fn seal_json<T: serde::Serialize>(
    keys: &Keyring,
    column: &str,
    id: &str,
    value: &T,
) -> Result<String, StoreError> {
    let json = zeroize::Zeroizing::new(to_json(value)?);
    keys.seal(json.as_bytes(), &aad(column, id))
}

/// Opens column `column` of job `id` (or reads it as is if it predates
/// encryption) and parses the JSON.
fn open_json<T: serde::de::DeserializeOwned>(
    keys: &Keyring,
    column: &str,
    id: &str,
    stored: &str,
) -> Result<T, StoreError> {
    let json = zeroize::Zeroizing::new(keys.open(stored, &aad(column, id))?);
    serde_json::from_slice(&json).map_err(|e| StoreError::Corrupt(e.to_string()))
}

/// Refuses keys that cannot open the newest job, given that job's stored
/// `spec`. One row is enough to catch a lost or overwritten key file (every
/// new job is sealed with the current key), and cheap at start; older rows
/// under a dropped key fail when read.
pub(crate) fn check_newest_key(
    newest_spec: Option<&str>,
    keys: &Keyring,
) -> Result<(), StoreError> {
    match newest_spec.and_then(Keyring::key_id_of) {
        Some(id) if !keys.has_id(id) => Err(StoreError::Crypto(format!(
            "the newest job is sealed with key id {id}, but the configured keys are [{}]; \
             restore the key that holds it (a rotation keeps old keys after the new one)",
            keys.ids().collect::<Vec<_>>().join(", ")
        ))),
        _ => Ok(()),
    }
}

/// One column's value, in the two types the schema uses.
pub(crate) enum Value {
    /// SQL `NULL`.
    Null,
    /// A `BIGINT` (`INTEGER` in SQLite).
    Int(i64),
    /// A `TEXT`.
    Text(String),
}

/// One row as the driver returns it: the one thing decoding needs of
/// `rusqlite::Row` and `tokio_postgres::Row`, so that each record has one
/// decoder for both backends. A column that does not read as the type the
/// decoder asks for is [`StoreError::Corrupt`]: retrying would not help,
/// and no statement failed.
pub(crate) trait Columns {
    /// Column `index`.
    fn value(&self, index: usize) -> Result<Value, StoreError>;

    /// A nullable `TEXT` column.
    fn opt_text(&self, index: usize) -> Result<Option<String>, StoreError> {
        match self.value(index)? {
            Value::Null => Ok(None),
            Value::Text(text) => Ok(Some(text)),
            Value::Int(_) => Err(bad_column(index, "an integer where text belongs")),
        }
    }

    /// A nullable `BIGINT` column.
    fn opt_int(&self, index: usize) -> Result<Option<i64>, StoreError> {
        match self.value(index)? {
            Value::Null => Ok(None),
            Value::Int(n) => Ok(Some(n)),
            Value::Text(_) => Err(bad_column(index, "text where an integer belongs")),
        }
    }

    /// A `TEXT NOT NULL` column.
    fn text(&self, index: usize) -> Result<String, StoreError> {
        self.opt_text(index)?
            .ok_or_else(|| bad_column(index, "NULL where text belongs"))
    }

    /// A `BIGINT NOT NULL` column.
    fn int(&self, index: usize) -> Result<i64, StoreError> {
        self.opt_int(index)?
            .ok_or_else(|| bad_column(index, "NULL where an integer belongs"))
    }
}

/// The error of a column that does not read as its type.
pub(crate) fn bad_column(index: usize, err: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(format!("column {index}: {err}"))
}

/// Decodes a job row selected with [`COLUMNS`]: opens the sealed columns and
/// parses the rest.
pub(crate) fn job(row: &dyn Columns, keys: &Keyring) -> Result<JobRecord, StoreError> {
    let id = row.text(0)?;
    let status = row.text(4)?;
    let spec = open_json(keys, "spec", &id, &row.text(8)?)?;
    let outcome = row
        .opt_text(9)?
        .map(|o| open_json(keys, "outcome", &id, &o))
        .transpose()?;
    Ok(JobRecord {
        id: parse_id(&id)?,
        tenant: row.text(1)?,
        token_id: row.opt_text(11)?,
        idempotency_key: row.opt_text(2)?,
        request_hash: row.text(3)?,
        status: JobStatus::parse(&status)
            .ok_or_else(|| StoreError::Corrupt(format!("unknown status {status}")))?,
        created_at: row.int(5)?,
        started_at: row.opt_int(6)?,
        finished_at: row.opt_int(7)?,
        spec,
        outcome,
        callback: row.opt_text(10)?.as_deref().map(from_json).transpose()?,
    })
}

/// A stored job id.
pub(crate) fn parse_id(id: &str) -> Result<Uuid, StoreError> {
    Uuid::parse_str(id).map_err(|e| StoreError::Corrupt(e.to_string()))
}

/// Decodes a token row selected with [`TOKEN_COLUMNS`], whichever backend
/// read it.
impl TryFrom<&dyn Columns> for TokenRecord {
    type Error = StoreError;

    fn try_from(row: &dyn Columns) -> Result<Self, StoreError> {
        let kind = row.text(1)?;
        Ok(TokenRecord {
            id: row.text(0)?,
            kind: TokenKind::parse(&kind)
                .ok_or_else(|| StoreError::Corrupt(format!("unknown token kind {kind}")))?,
            tenant: row.text(2)?,
            name: row.text(3)?,
            hash: row.text(4)?,
            scopes: from_json(&row.text(5)?)?,
            created_at: row.int(6)?,
            expires_at: row.opt_int(7)?,
            last_used_at: row.opt_int(8)?,
            revoked_at: row.opt_int(9)?,
            parent_id: row.opt_text(10)?,
            family_id: row.opt_text(11)?,
            used_at: row.opt_int(12)?,
            // `rate_limit`
            limits: row
                .opt_text(13)?
                .as_deref()
                .map(from_json)
                .transpose()?
                .unwrap_or_default(),
        })
    }
}

/// Decodes an audit row selected with [`AUDIT_COLUMNS`], whichever backend
/// read it.
impl TryFrom<&dyn Columns> for AuditRecord {
    type Error = StoreError;

    fn try_from(row: &dyn Columns) -> Result<Self, StoreError> {
        Ok(AuditRecord {
            id: row.int(0)?,
            event: NewAuditEvent {
                at: row.int(1)?,
                event: row.text(2)?,
                tenant: row.opt_text(3)?,
                token_id: row.opt_text(4)?,
                ip: row.opt_text(5)?,
                details: from_json(&row.text(6)?)?,
            },
        })
    }
}

/// The quoted JSON form of a tenant name, as it appears inside audit
/// `details`, which erasure rewrites.
pub(crate) fn json_quoted(s: &str) -> String {
    serde_json::Value::from(s).to_string()
}

/// The webhook record a new job starts with: pending, no attempts.
pub(crate) fn new_callback(job: &NewJob) -> Option<Callback> {
    job.callback_url.as_ref().map(|url| Callback {
        url: url.clone(),
        state: DeliveryState::Pending,
        attempts: Vec::new(),
    })
}

/// The record of `job` as inserted: queued, with `callback`.
pub(crate) fn queued_record(job: NewJob, callback: Option<Callback>) -> JobRecord {
    new_record(job, callback, None)
}

/// The status a job is inserted with: `running` when it has a start time
/// (handed straight to a worker), else `queued`.
pub(crate) fn inserted_status(started_at: Option<i64>) -> JobStatus {
    match started_at {
        Some(_) => JobStatus::Running,
        None => JobStatus::Queued,
    }
}

/// The record of a job just inserted: `queued`, or `running` since
/// `started_at` when that is set.
pub(crate) fn new_record(
    job: NewJob,
    callback: Option<Callback>,
    started_at: Option<i64>,
) -> JobRecord {
    JobRecord {
        id: job.id,
        tenant: job.tenant,
        token_id: job.token_id,
        idempotency_key: job.idempotency_key,
        request_hash: job.request_hash,
        status: inserted_status(started_at),
        created_at: job.created_at,
        started_at,
        finished_at: None,
        spec: job.spec,
        outcome: None,
        callback,
    }
}

/// The final statuses, as stored.
pub(crate) fn final_statuses() -> [&'static str; 3] {
    [
        JobStatus::Succeeded.as_str(),
        JobStatus::Failed.as_str(),
        JobStatus::Cancelled.as_str(),
    ]
}

/// Keeps the final jobs whose webhook is still pending.
pub(crate) fn pending_only(jobs: Vec<JobRecord>) -> Vec<JobRecord> {
    jobs.into_iter()
        .filter(|j| {
            j.callback
                .as_ref()
                .is_some_and(|c| c.state == DeliveryState::Pending)
        })
        .collect()
}

/// The error of an insert that conflicted on its idempotency key when no job
/// holds the key (it was erased between the two statements).
pub(crate) fn no_holder_of_key(id: &str) -> StoreError {
    StoreError::Corrupt(format!(
        "job {id} conflicted on its idempotency key, but no job holds that key"
    ))
}
