//! Entry points for the fuzz targets in `fuzz/`: the server's own decoding
//! and validation of request bodies and query strings, exactly as the
//! handlers run them, minus what needs a store, the network or a worker
//! (token lookup, the callback host's DNS, the static check, which has its
//! own target). Each returns the `ApiError` the handler would answer, so a
//! target can assert that every refusal is a client error.

use axum::{
    body::Bytes,
    extract::Query,
    http::{HeaderMap, HeaderValue, Uri, header},
};
use serde_json::Value;
use strictpy_types::Limits;

use crate::{
    Config,
    error::ApiError,
    http::{parse_body, parse_form_or_json},
    routes::{audit, jobs, oauth, tokens},
};

/// What validates job requests: the default configuration's limits.
#[derive(Debug)]
pub struct JobChecks {
    /// The configuration (policy, field caps).
    config: Config,
    /// Limits for a request that asks for none.
    default_limits: Limits,
    /// The most a request may ask for.
    max_limits: Limits,
}

impl Default for JobChecks {
    fn default() -> Self {
        let config = Config::default();
        let (default_limits, max_limits) = config
            .limits
            .resolve()
            .unwrap_or((Limits::default(), Limits::default_max()));
        Self {
            config,
            default_limits,
            max_limits,
        }
    }
}

impl JobChecks {
    /// `POST /v1/jobs`: the body decoded and every configuration-only check.
    pub fn job(&self, body: &[u8]) -> Result<jobs::Checked, ApiError> {
        let req: jobs::JobRequest = parse_body(Ok(Bytes::copy_from_slice(body)))?;
        jobs::check_request(&self.config, &self.default_limits, &self.max_limits, &req)
    }

    /// `POST /v1/jobs/batch`: the body, its size, then each item as
    /// [`JobChecks::job`] checks it (a refused item does not refuse the
    /// batch). Returns how many items passed.
    pub fn batch(&self, body: &[u8]) -> Result<usize, ApiError> {
        let batch: jobs::BatchRequest = parse_body(Ok(Bytes::copy_from_slice(body)))?;
        if batch.jobs.is_empty() || batch.jobs.len() > jobs::MAX_BATCH {
            return Err(ApiError::unprocessable("invalid_batch", "1 to 20 jobs"));
        }
        Ok(batch
            .jobs
            .into_iter()
            .filter(|raw| {
                serde_json::from_value::<jobs::JobRequest>(raw.clone())
                    .ok()
                    .is_some_and(|req| {
                        jobs::check_request(
                            &self.config,
                            &self.default_limits,
                            &self.max_limits,
                            &req,
                        )
                        .is_ok()
                    })
            })
            .count())
    }
}

/// `POST /v1/tokens`: the body decoded and validated into a token spec;
/// returns its tenant and scopes.
pub fn token_create(body: &[u8]) -> Result<(String, Vec<String>), ApiError> {
    let req: tokens::CreateTokenRequest = parse_body(Ok(Bytes::copy_from_slice(body)))?;
    let spec = tokens::token_spec(req)?;
    Ok((
        spec.tenant,
        spec.scopes.iter().map(|s| s.as_str().to_owned()).collect(),
    ))
}

/// Headers saying the body is a form (`form`) or JSON.
fn content_type(form: bool) -> HeaderMap {
    let mut headers = HeaderMap::new();
    let value = if form {
        "application/x-www-form-urlencoded"
    } else {
        "application/json"
    };
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(value));
    headers
}

/// `POST /v1/oauth/token`, as a form or JSON: decoded, the grant type
/// checked and the scope narrowed from an admin token's.
pub fn oauth_token(form: bool, body: &[u8]) -> Result<(), ApiError> {
    let grant: oauth::TokenGrant =
        parse_form_or_json(&content_type(form), Ok(Bytes::copy_from_slice(body)))?;
    oauth::check_token_grant(&grant)?;
    oauth::narrow(&["admin".to_owned()], grant.scope.as_deref()).map(drop)
}

/// `POST /v1/oauth/token/refresh`, as a form or JSON: decoded, the grant
/// type checked and the scope narrowed.
pub fn oauth_refresh(form: bool, body: &[u8]) -> Result<(), ApiError> {
    let grant: oauth::RefreshGrant =
        parse_form_or_json(&content_type(form), Ok(Bytes::copy_from_slice(body)))?;
    oauth::check_refresh_grant(&grant)?;
    oauth::narrow(&["jobs:read".to_owned()], grant.scope.as_deref()).map(drop)
}

/// `POST /v1/oauth/revoke`, as a form or JSON: decoded.
pub fn oauth_revoke(form: bool, body: &[u8]) -> Result<(), ApiError> {
    let _: oauth::RevokeRequest =
        parse_form_or_json(&content_type(form), Ok(Bytes::copy_from_slice(body)))?;
    Ok(())
}

/// The URI `path?query`, or `400` as the router would refuse it.
fn uri(path: &str, query: &str) -> Result<Uri, ApiError> {
    format!("{path}?{query}")
        .parse()
        .map_err(|_| ApiError::bad_request("not a URI"))
}

/// `GET /v1/jobs?...`: the query decoded as the extractor decodes it and the
/// page checked; returns the page size.
pub fn job_list_query(query: &str) -> Result<u32, ApiError> {
    let Query(params) = Query::<jobs::ListParams>::try_from_uri(&uri("/v1/jobs", query)?)
        .map_err(|e| ApiError::bad_request(e.body_text()))?;
    jobs::page(&params).map(|(limit, _)| limit)
}

/// `GET /v1/audit?...`: the query decoded and checked; returns the page size.
pub fn audit_list_query(query: &str) -> Result<u32, ApiError> {
    let Query(params) = Query::<audit::AuditParams>::try_from_uri(&uri("/v1/audit", query)?)
        .map_err(|e| ApiError::bad_request(e.body_text()))?;
    audit::audit_query(params).map(|q| q.limit)
}

/// True when `err` is what a client error looks like: a 4xx with the shared
/// body shape (a `code`, a `message`, `details`), which must re-encode.
pub fn is_client_error(err: &ApiError) -> bool {
    let body = serde_json::to_value(err.body()).unwrap_or(Value::Null);
    err.status.is_client_error()
        && body["error"]["code"].is_string()
        && body["error"]["message"].is_string()
}
