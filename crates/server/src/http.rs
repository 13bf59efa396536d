//! Pieces every route module shares: reading JSON and form bodies, the
//! `Cache-Control: no-store` header for answers with secrets, timestamps as
//! RFC 3339, and the tenant name check.

use std::time::Duration;

use axum::{
    body::Bytes,
    extract::rejection::BytesRejection,
    http::{HeaderMap, StatusCode, header},
};
use serde::de::DeserializeOwned;
use serde_json::json;

use crate::error::ApiError;

/// Reads a JSON body: `413` past the cap, `400` for bad JSON, a wrong type
/// or an unknown field (with the position and serde's message).
pub fn parse_body<T: DeserializeOwned>(body: Result<Bytes, BytesRejection>) -> Result<T, ApiError> {
    let bytes = body.map_err(body_error)?;
    parse_json(&bytes)
}

/// The answer to a body that could not be read: `413` past the cap, `408`
/// when it did not arrive within `body_read_timeout_ms` (and the connection
/// is closed, since the rest of the body may still be on its way), `400`
/// otherwise.
pub fn body_error(rejection: BytesRejection) -> ApiError {
    if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            "the request body is larger than the server accepts",
        )
    } else if body_timed_out(&rejection) {
        ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            "request_timeout",
            "the request body did not arrive within the server's body read timeout",
        )
        .with_header(header::CONNECTION, "close")
    } else {
        ApiError::bad_request(rejection.body_text())
    }
}

/// True when `err` or one of its sources is the body read timeout
/// ([`crate::conn::BodyTimeout`]), found by type.
pub fn body_timed_out(err: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur = Some(err);
    while let Some(e) = cur {
        if e.is::<crate::conn::BodyTimeout>() {
            return true;
        }
        cur = e.source();
    }
    false
}

fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(bytes).map_err(|e| {
        ApiError::bad_request(format!("invalid JSON body: {e}"))
            .with_details(json!({ "line": e.line(), "column": e.column() }))
    })
}

/// Reads a body that may be JSON or `application/x-www-form-urlencoded`
/// (what OAuth clients send).
pub fn parse_form_or_json<T: DeserializeOwned>(
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<T, ApiError> {
    let is_form = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
    if !is_form {
        return parse_body(body);
    }
    let bytes = body.map_err(body_error)?;
    serde_urlencoded::from_bytes(&bytes)
        .map_err(|e| ApiError::bad_request(format!("invalid form body: {e}")))
}

/// `Cache-Control: no-store` for answers that carry secrets (RFC 6749 5.1).
pub fn no_store() -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert(
        header::CACHE_CONTROL,
        header::HeaderValue::from_static("no-store"),
    );
    h
}

/// The last millisecond RFC 3339 can write (9999-12-31T23:59:59.999Z).
const LAST_MS: u64 = 253_402_300_799_999;

/// Unix milliseconds as RFC 3339 UTC with milliseconds; a time before 1970
/// or past the year 9999 is written as the nearest one there is.
pub fn rfc3339(ms: i64) -> String {
    let ms = u64::try_from(ms).unwrap_or(0).min(LAST_MS);
    let t = std::time::UNIX_EPOCH + Duration::from_millis(ms);
    humantime::format_rfc3339_millis(t).to_string()
}

/// Longest tenant name, in bytes.
const MAX_TENANT: usize = 128;

/// Checks a tenant name: short, and plain enough to put in paths and logs.
pub fn valid_tenant(tenant: &str) -> Result<(), String> {
    let ok = !tenant.is_empty()
        && tenant.len() <= MAX_TENANT
        && tenant
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "a tenant is 1 to {MAX_TENANT} characters of A-Z, a-z, 0-9, '.', '_' and '-'"
        ))
    }
}
