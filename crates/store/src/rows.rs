//! What both backends share below the SQL: the column lists, the raw rows
//! and how they decode into records, JSON columns, and the sealing of job
//! columns with their associated data. Each backend only reads its driver's
//! row into a [`RawRow`] or [`RawToken`].

use strictpy_types::JobStatus;
use uuid::Uuid;

use crate::{
    Callback, DeliveryState, JobRecord, NewJob, StoreError, TokenKind, TokenRecord, crypto::Keyring,
};

/// The job columns every query reads, in the order of [`RawRow`]'s fields.
pub(crate) const COLUMNS: &str = "id, tenant, idempotency_key, request_hash, status, created_at, \
                                  started_at, finished_at, spec, outcome, callback, token_id";

/// The token columns, in the order of [`RawToken`]'s fields.
pub(crate) const TOKEN_COLUMNS: &str = "id, kind, tenant, name, hash, scopes, created_at, \
                                        expires_at, last_used_at, revoked_at, parent_id, \
                                        family_id, used_at, rate_limit";

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

/// The raw columns of one job row ([`COLUMNS`]), decoded after the statement
/// finishes so JSON errors surface as [`StoreError::Corrupt`] rather than as
/// driver errors. Each field is the column of the same name.
pub(crate) struct RawRow {
    /// `id`.
    pub id: String,
    /// `tenant`.
    pub tenant: String,
    /// `idempotency_key`.
    pub idempotency_key: Option<String>,
    /// `request_hash`.
    pub request_hash: String,
    /// `status`.
    pub status: String,
    /// `created_at`.
    pub created_at: i64,
    /// `started_at`.
    pub started_at: Option<i64>,
    /// `finished_at`.
    pub finished_at: Option<i64>,
    /// `spec`, sealed JSON.
    pub spec: String,
    /// `outcome`, sealed JSON.
    pub outcome: Option<String>,
    /// `callback`, JSON.
    pub callback: Option<String>,
    /// `token_id`.
    pub token_id: Option<String>,
}

impl RawRow {
    /// Opens the sealed columns and parses the rest.
    pub(crate) fn decode(self, keys: &Keyring) -> Result<JobRecord, StoreError> {
        let spec = open_json(keys, "spec", &self.id, &self.spec)?;
        let outcome = self
            .outcome
            .as_deref()
            .map(|o| open_json(keys, "outcome", &self.id, o))
            .transpose()?;
        Ok(JobRecord {
            id: parse_id(&self.id)?,
            tenant: self.tenant,
            token_id: self.token_id,
            idempotency_key: self.idempotency_key,
            request_hash: self.request_hash,
            status: JobStatus::parse(&self.status)
                .ok_or_else(|| StoreError::Corrupt(format!("unknown status {}", self.status)))?,
            created_at: self.created_at,
            started_at: self.started_at,
            finished_at: self.finished_at,
            spec,
            outcome,
            callback: self.callback.as_deref().map(from_json).transpose()?,
        })
    }
}

/// A stored job id.
pub(crate) fn parse_id(id: &str) -> Result<Uuid, StoreError> {
    Uuid::parse_str(id).map_err(|e| StoreError::Corrupt(e.to_string()))
}

/// The raw columns of a token row ([`TOKEN_COLUMNS`]), decoded after the
/// statement so JSON errors surface as [`StoreError::Corrupt`]. Each field is
/// the column of the same name in [`TokenRecord`].
pub(crate) struct RawToken {
    /// `id`.
    pub id: String,
    /// `kind`.
    pub kind: String,
    /// `tenant`.
    pub tenant: String,
    /// `name`.
    pub name: String,
    /// `hash`.
    pub hash: String,
    /// `scopes`, JSON.
    pub scopes: String,
    /// `created_at`.
    pub created_at: i64,
    /// `expires_at`.
    pub expires_at: Option<i64>,
    /// `last_used_at`.
    pub last_used_at: Option<i64>,
    /// `revoked_at`.
    pub revoked_at: Option<i64>,
    /// `parent_id`.
    pub parent_id: Option<String>,
    /// `family_id`.
    pub family_id: Option<String>,
    /// `used_at`.
    pub used_at: Option<i64>,
    /// `rate_limit`, JSON.
    pub limits: Option<String>,
}

impl RawToken {
    /// Parses the JSON and enum columns.
    pub(crate) fn decode(self) -> Result<TokenRecord, StoreError> {
        Ok(TokenRecord {
            kind: TokenKind::parse(&self.kind)
                .ok_or_else(|| StoreError::Corrupt(format!("unknown token kind {}", self.kind)))?,
            scopes: from_json(&self.scopes)?,
            limits: self
                .limits
                .as_deref()
                .map(from_json)
                .transpose()?
                .unwrap_or_default(),
            id: self.id,
            tenant: self.tenant,
            name: self.name,
            hash: self.hash,
            created_at: self.created_at,
            expires_at: self.expires_at,
            last_used_at: self.last_used_at,
            revoked_at: self.revoked_at,
            parent_id: self.parent_id,
            family_id: self.family_id,
            used_at: self.used_at,
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
    JobRecord {
        id: job.id,
        tenant: job.tenant,
        token_id: job.token_id,
        idempotency_key: job.idempotency_key,
        request_hash: job.request_hash,
        status: JobStatus::Queued,
        created_at: job.created_at,
        started_at: None,
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
