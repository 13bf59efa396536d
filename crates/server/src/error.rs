//! The one error type of the HTTP API and its stable JSON shape:
//! `{"error": {"code": "...", "message": "...", "details": ...}}`.

use axum::{
    Json,
    http::{HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;

/// The `Retry-After` of a `503 storage_unavailable`, in seconds.
pub const STORAGE_RETRY_AFTER_S: u64 = 5;

/// The body of every error response.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ErrorBody {
    /// The error.
    pub error: ErrorDetail,
}

/// What went wrong, for programs (`code`) and people (`message`).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ErrorDetail {
    /// A stable, snake_case error code.
    pub code: String,
    /// A sentence for people.
    pub message: String,
    /// Structured details (the offending field, the violations, ...);
    /// `null` when the error has none.
    #[schema(value_type = Option<Object>)]
    pub details: Value,
}

/// An API error: a status, a stable code, a message and details.
#[derive(Debug, Clone)]
pub struct ApiError {
    /// The HTTP status.
    pub status: StatusCode,
    /// See [`ErrorDetail::code`].
    pub code: &'static str,
    /// See [`ErrorDetail::message`].
    pub message: String,
    /// See [`ErrorDetail::details`].
    pub details: Value,
    /// Seconds for a `Retry-After` header, for `503`s and `429`s.
    pub retry_after: Option<u64>,
    /// Further headers (`WWW-Authenticate`, `RateLimit`, ...).
    pub headers: Vec<(header::HeaderName, HeaderValue)>,
}

impl ApiError {
    /// An error with no details.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            details: Value::Null,
            retry_after: None,
            headers: Vec::new(),
        }
    }

    /// Adds a header to the response; a value that is not a valid header
    /// value is dropped (the values here are built by strictpy, not clients).
    pub fn with_header(mut self, name: impl TryInto<header::HeaderName>, value: &str) -> Self {
        if let (Ok(name), Ok(value)) = (name.try_into(), HeaderValue::from_str(value)) {
            self.headers.push((name, value));
        }
        self
    }

    /// Adds details.
    pub fn with_details(mut self, details: Value) -> Self {
        self.details = details;
        self
    }

    /// `400`: the body is not JSON, has a wrong type or an unknown field.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_request", message)
    }

    /// `404`: no such job (or route).
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    /// `422`: the request is well-formed but not acceptable.
    pub fn unprocessable(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, code, message)
    }

    /// `503` with `Retry-After`: the queue is full; a place is expected in
    /// `retry_after` seconds (from the queue estimate).
    pub fn queue_full(retry_after: u64) -> Self {
        Self {
            retry_after: Some(retry_after),
            ..Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "queue_full",
                "the job queue is full; retry later",
            )
        }
    }

    /// `503` with `Retry-After`: the server is shutting down.
    pub fn shutting_down() -> Self {
        Self {
            retry_after: Some(5),
            ..Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "shutting_down",
                "the server is shutting down and accepts no new jobs",
            )
        }
    }

    /// `503` with `Retry-After`: the store cannot take the request now (its
    /// disk is full, it turned read-only, the database is down). The cause
    /// is logged, not sent.
    pub fn storage_unavailable(err: impl std::fmt::Display) -> Self {
        tracing::warn!(error = %err, "store unavailable");
        Self {
            retry_after: Some(STORAGE_RETRY_AFTER_S),
            ..Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "storage_unavailable",
                "the job store is unavailable (disk full, read-only or unreachable); retry later",
            )
        }
    }

    /// `500`: something failed inside strictpy. The message is logged, not
    /// sent, so storage details do not leak.
    pub fn internal(err: impl std::fmt::Display) -> Self {
        tracing::error!(error = %err, "internal error");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "an internal error occurred",
        )
    }

    /// The JSON body of this error.
    pub fn body(&self) -> ErrorBody {
        ErrorBody {
            error: ErrorDetail {
                code: self.code.to_owned(),
                message: self.message.clone(),
                details: self.details.clone(),
            },
        }
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({}): {}", self.code, self.status, self.message)
    }
}

impl std::error::Error for ApiError {}

impl From<strictpy_store::StoreError> for ApiError {
    /// A store that cannot serve now (full disk, read-only, database down)
    /// is `503 storage_unavailable`; anything else is a bug, `500`.
    fn from(err: strictpy_store::StoreError) -> Self {
        if err.is_unavailable() {
            Self::storage_unavailable(err)
        } else {
            Self::internal(err)
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (self.status, Json(self.body())).into_response();
        if let Some(secs) = self.retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        for (name, value) in self.headers {
            response.headers_mut().insert(name, value);
        }
        response
    }
}
