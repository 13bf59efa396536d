//! `/v1/check`: the static check alone, as `strictpy check --json` runs it.

use axum::{
    Json,
    body::Bytes,
    extract::{State, rejection::BytesRejection},
};
use serde::{Deserialize, Serialize};
use strictpy_types::Violation;
use utoipa::ToSchema;

use crate::{
    AppState,
    auth::{Auth, Scope},
    error::{ApiError, ErrorBody},
    http::parse_body,
    policy::{allowlist, static_check},
};

/// `POST /v1/check`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CheckRequest {
    /// The Python source.
    pub code: String,
    /// Extra modules to allow, as for a job.
    #[serde(default)]
    pub allow: Vec<String>,
}

/// The static check's verdict, as `strictpy check --json` prints it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct CheckResponse {
    /// True when there are no violations.
    pub ok: bool,
    /// Every finding.
    pub violations: Vec<Violation>,
}

/// Run the static check only.
///
/// What `strictpy check --json` prints; the seed's `validate_code`.
#[utoipa::path(
    post,
    path = "/v1/check",
    tag = "check",
    request_body = CheckRequest,
    responses(
        (status = 200, description = "The verdict", body = CheckResponse),
        (status = 400, description = "Malformed body", body = ErrorBody),
        (status = 422, description = "A module in `allow` may not be added", body = ErrorBody),
    )
)]
pub async fn check(
    State(state): State<AppState>,
    Auth(who): Auth,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<CheckResponse>, ApiError> {
    who.require(&state, Scope::Check)?;
    let req: CheckRequest = parse_body(body)?;
    let allowlist = allowlist(&state.config.policy, &req.allow)?;
    match static_check(&state, &who, req.code, allowlist).await {
        Ok(_) => Ok(Json(CheckResponse {
            ok: true,
            violations: Vec::new(),
        })),
        Err(e) if e.code == "policy_violation" => {
            let violations = serde_json::from_value(e.details["violations"].clone())
                .map_err(ApiError::internal)?;
            Ok(Json(CheckResponse {
                ok: false,
                violations,
            }))
        }
        Err(e) => Err(e),
    }
}
