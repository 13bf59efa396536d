//! The probes: `/healthz`, `/readyz`, `/metrics` and `/openapi.json`, none of
//! which takes a token.

use axum::{
    Json,
    extract::State,
    http::{StatusCode, header},
    response::{IntoResponse, Response},
};
use serde::Serialize;
use utoipa::ToSchema;

use crate::AppState;

/// `/healthz` and `/readyz` answers.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Health {
    /// `ok`, `ready` or `not_ready`.
    pub status: String,
    /// Why the server is not ready.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// Liveness: answers while the process serves HTTP.
#[utoipa::path(
    get,
    path = "/healthz",
    tag = "probes",
    security(()),
    responses((status = 200, description = "Alive", body = Health))
)]
pub async fn healthz() -> Json<Health> {
    Json(Health {
        status: "ok".into(),
        reason: None,
    })
}

/// Readiness: the store answers and every worker is up.
#[utoipa::path(
    get,
    path = "/readyz",
    tag = "probes",
    security(()),
    responses(
        (status = 200, description = "Ready", body = Health),
        (status = 503, description = "Not ready", body = Health),
    )
)]
pub async fn readyz(State(state): State<AppState>) -> (StatusCode, Json<Health>) {
    match state.ready().await {
        Ok(()) => (
            StatusCode::OK,
            Json(Health {
                status: "ready".into(),
                reason: None,
            }),
        ),
        Err(reason) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(Health {
                status: "not_ready".into(),
                reason: Some(reason),
            }),
        ),
    }
}

/// Prometheus metrics in the text exposition format.
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "probes",
    security(()),
    responses((status = 200, description = "Metrics", body = String, content_type = "application/openmetrics-text"))
)]
pub async fn metrics(State(state): State<AppState>) -> Response {
    // With the queue in the database the depth is the cluster's, counted
    // now (a failed count keeps the last one).
    if let Some(q) = state.queue.database()
        && let Ok(n) = q.store.queued_count().await
    {
        q.set_depth(n);
    }
    let depth = i64::try_from(state.queue.len()).unwrap_or(i64::MAX);
    state.metrics.queue_depth.set(depth);
    let gauge = |n: usize| i64::try_from(n).unwrap_or(i64::MAX);
    state.metrics.waiters.set(gauge(state.waiter_count()));
    let tasks = tokio::runtime::Handle::current()
        .metrics()
        .num_alive_tasks();
    state.metrics.alive_tasks.set(gauge(tasks));
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.metrics.render(),
    )
        .into_response()
}

/// This OpenAPI 3 document.
#[utoipa::path(
    get,
    path = "/openapi.json",
    tag = "probes",
    security(()),
    responses((status = 200, description = "The OpenAPI document", content_type = "application/json"))
)]
pub async fn openapi_json() -> Json<&'static utoipa::openapi::OpenApi> {
    Json(super::openapi())
}
