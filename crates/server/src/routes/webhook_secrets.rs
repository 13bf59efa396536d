//! `/v1/webhook-secrets`: rotate the webhook signing secret and retire the
//! previous one (`admin`).

use axum::{
    Json,
    extract::State,
    http::StatusCode,
    response::{IntoResponse, Response},
};
use serde::Serialize;
use serde_json::{Value, json};
use utoipa::ToSchema;

use crate::{
    AppState,
    auth::{Auth, Scope},
    error::{ApiError, ErrorBody},
    http::no_store,
    webhook::WebhookError,
};

/// A new webhook secret, shown once.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct RotatedSecret {
    /// The new secret. Deliveries are signed with it and with the previous
    /// one until the previous one is retired.
    pub secret: String,
    /// How many secrets sign each delivery now.
    pub active: usize,
}

fn webhook_error(e: WebhookError) -> ApiError {
    match e {
        WebhookError::Configured => {
            ApiError::new(StatusCode::CONFLICT, "secret_configured", e.to_string())
        }
        other => ApiError::internal(other),
    }
}

/// Start a webhook secret rotation (`admin`).
///
/// A new secret is generated and every delivery is signed with both it and
/// the current one (two `v1=` entries), so receivers can switch to the new
/// secret at any time; then retire the old one with
/// `DELETE /v1/webhook-secrets/previous`.
#[utoipa::path(
    post,
    path = "/v1/webhook-secrets",
    tag = "webhooks",
    security(("bearer" = ["admin"])),
    responses(
        (status = 201, description = "The new secret, shown once", body = RotatedSecret),
        (status = 403, description = "Not an admin token", body = ErrorBody),
        (status = 409, description = "The secrets are set in the configuration", body = ErrorBody),
    )
)]
pub async fn rotate_webhook_secret(
    State(state): State<AppState>,
    Auth(who): Auth,
) -> Result<Response, ApiError> {
    who.require(&state, Scope::Admin)?;
    let secret = state.webhooks.rotate().map_err(webhook_error)?;
    state.audit.record(who.event("webhook_secret_rotated"));
    let active = state.webhooks.active_secrets().len();
    Ok((
        StatusCode::CREATED,
        no_store(),
        Json(RotatedSecret { secret, active }),
    )
        .into_response())
}

/// Retire the previous webhook secret (`admin`): only the newest signs.
#[utoipa::path(
    delete,
    path = "/v1/webhook-secrets/previous",
    tag = "webhooks",
    security(("bearer" = ["admin"])),
    responses(
        (status = 200, description = "How many secrets were retired"),
        (status = 403, description = "Not an admin token", body = ErrorBody),
        (status = 409, description = "The secrets are set in the configuration", body = ErrorBody),
    )
)]
pub async fn retire_webhook_secret(
    State(state): State<AppState>,
    Auth(who): Auth,
) -> Result<Json<Value>, ApiError> {
    who.require(&state, Scope::Admin)?;
    let retired = state.webhooks.retire_previous().map_err(webhook_error)?;
    state.audit.record(
        who.event("webhook_secret_retired")
            .details(json!({ "retired": retired })),
    );
    Ok(Json(json!({ "retired": retired, "active": 1 })))
}
