//! The router and the OpenAPI document, assembled in one place from one
//! module per resource. Each route is registered together with its OpenAPI
//! operation (both come from the same `routes!` call), so the document
//! cannot drift from the routes.
//!
//! Route modules share only what lives outside `routes/` (`http`, `views`,
//! `policy`, `auth`, `error`); none imports a sibling's handlers or helpers.

pub mod audit;
pub mod check;
pub mod cluster;
pub mod events;
pub mod functions;
pub mod jobs;
pub mod oauth;
pub mod probes;
pub mod sessions;
pub mod tenants;
pub mod tokens;
pub mod web;
pub mod webhook_secrets;

use std::sync::OnceLock;

use axum::{Router, http::StatusCode, response::IntoResponse};
use tower_http::{catch_panic::CatchPanicLayer, trace::TraceLayer};
use utoipa::OpenApi;
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::{
    AppState,
    error::{ApiError, ErrorBody},
};

/// The OpenAPI document's root; the paths come from the router.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "strictpy",
        description = "Runs untrusted Python in RustPython under wasmtime, with a static policy check."
    ),
    components(schemas(ErrorBody)),
    modifiers(&BearerScheme),
    security(("bearer" = []), ("session" = []))
)]
struct ApiDoc;

/// Declares the `bearer` and `session` security schemes the operations
/// refer to.
struct BearerScheme;

impl utoipa::Modify for BearerScheme {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{
            ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme,
        };
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "An API token (spk_...) or an access token (spa_...); see docs/security.md",
                    ))
                    .build(),
            ),
        );
        components.add_security_scheme(
            "session",
            SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::with_description(
                crate::auth::SESSION_COOKIE,
                "A browser session from POST /v1/sessions (HttpOnly cookie); POST, PUT, PATCH \
                 and DELETE also need the session's X-CSRF-Token header (403 csrf_token_invalid \
                 otherwise); see docs/security.md",
            ))),
        );
    }
}

/// Adds the answers every route can give that its handler does not name:
/// `403 ip_not_allowed` from the network guard everywhere; `401`, the scope's
/// `403` and `429` wherever a bearer token is checked; `429` where the
/// per-IP bucket applies (the refresh and revoke endpoints); `400` wherever
/// there is a query, a path or a body to get wrong; `413` and `408` wherever
/// there is a body; `503 storage_unavailable` (with `Retry-After`) wherever
/// the store is read or written. Every `429` carries `Retry-After`, and a `rate_limited` one
/// `RateLimit-Policy` and `RateLimit` too.
fn add_common_responses(doc: &mut utoipa::openapi::OpenApi) {
    use utoipa::openapi::{
        ContentBuilder, Ref, RefOr, ResponseBuilder, Type, header::HeaderBuilder, path::Operation,
        schema::ObjectBuilder,
    };
    let error = |description: &str| {
        ResponseBuilder::new().description(description).content(
            "application/json",
            ContentBuilder::new()
                .schema(Some(Ref::from_schema_name("ErrorBody")))
                .build(),
        )
    };
    let header = |ty: Type, description: &str| {
        HeaderBuilder::new()
            .schema(ObjectBuilder::new().schema_type(ty))
            .description(Some(description))
            .build()
    };
    let too_many = |description: &str| {
        error(description)
            .header(
                "Retry-After",
                header(Type::Integer, "Seconds to wait before retrying"),
            )
            .header(
                "RateLimit-Policy",
                header(Type::String, "The token's bucket (`rate_limited` only)"),
            )
            .header(
                "RateLimit",
                header(Type::String, "What is left of it (`rate_limited` only)"),
            )
            .build()
    };
    const UNAUTHENTICATED: &[&str] = &[
        "/healthz",
        "/readyz",
        "/metrics",
        "/openapi.json",
        "/v1/oauth/token/refresh",
        "/v1/oauth/revoke",
        "/v1/sessions",
    ];
    // Routes that never reach the store, so never answer
    // `503 storage_unavailable` (`/readyz` documents its own `503`).
    const STORELESS: &[&str] = &["/healthz", "/readyz", "/metrics", "/openapi.json"];
    for (path, item) in doc.paths.paths.iter_mut() {
        let bearer = !UNAUTHENTICATED.contains(&path.as_str());
        let per_ip = path.starts_with("/v1/");
        let ops: [&mut Option<Operation>; 4] = [
            &mut item.get,
            &mut item.post,
            &mut item.delete,
            &mut item.put,
        ];
        for op in ops.into_iter().flatten() {
            let has_body = op.request_body.is_some();
            let has_params = op.parameters.as_ref().is_some_and(|p| !p.is_empty());
            let responses = &mut op.responses.responses;
            let mut add = |code: &str, response: utoipa::openapi::Response| {
                responses
                    .entry(code.to_owned())
                    .or_insert_with(|| RefOr::T(response));
            };
            if has_body || has_params {
                add(
                    "400",
                    error("invalid_request: a malformed body, query or path").build(),
                );
            }
            if has_body {
                add(
                    "413",
                    error("payload_too_large: the body is over max_body_bytes").build(),
                );
                add(
                    "408",
                    error("request_timeout: the body did not arrive within body_read_timeout_ms (with Connection: close)").build(),
                );
            }
            if !STORELESS.contains(&path.as_str()) {
                add(
                    "503",
                    error("storage_unavailable: the job store cannot serve now (disk full, read-only, database down); with Retry-After")
                        .header(
                            "Retry-After",
                            header(Type::Integer, "Seconds to wait before retrying"),
                        )
                        .build(),
                );
            }
            if bearer {
                // Wherever a bearer token is accepted, so is the session
                // cookie, with the same scopes.
                if let Some(security) = op.security.as_mut() {
                    let sessions: Vec<_> = security
                        .iter()
                        .filter_map(|r| serde_json::to_value(r).ok())
                        .filter_map(|v| v.get("bearer").cloned())
                        .map(|scopes| {
                            let scopes: Vec<String> =
                                serde_json::from_value(scopes).unwrap_or_default();
                            utoipa::openapi::security::SecurityRequirement::new("session", scopes)
                        })
                        .collect();
                    security.extend(sessions);
                }
                add(
                    "401",
                    error("unauthorized: a missing, malformed, unknown, expired or revoked token (with WWW-Authenticate)").build(),
                );
                add(
                    "403",
                    error("insufficient_scope (details.required), csrf_token_invalid (the session cookie without its X-CSRF-Token on a method that changes state), or ip_not_allowed").build(),
                );
                add(
                    "429",
                    too_many(
                        "rate_limited (with Retry-After, RateLimit-Policy, RateLimit), too_many_jobs or locked_out (with Retry-After)",
                    ),
                );
            } else {
                add(
                    "403",
                    error("ip_not_allowed: the client is outside the IP allowlist").build(),
                );
                if per_ip {
                    add(
                        "429",
                        too_many("rate_limited per client IP, or locked_out (with Retry-After)"),
                    );
                }
            }
        }
    }
}

/// The API routes, each registered together with its OpenAPI operation.
fn api_router() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(jobs::create_job, jobs::list_jobs))
        .routes(routes!(jobs::create_batch))
        .routes(routes!(jobs::get_job, jobs::cancel_job))
        .routes(routes!(jobs::get_job_input))
        .routes(routes!(events::job_events))
        .routes(routes!(check::check))
        .routes(routes!(
            functions::register_function,
            functions::list_functions
        ))
        .routes(routes!(
            functions::get_function,
            functions::update_function,
            functions::delete_function
        ))
        .routes(routes!(
            functions::get_function_version,
            functions::delete_function_version
        ))
        .routes(routes!(functions::invoke_function))
        .routes(routes!(sessions::create_session))
        .routes(routes!(sessions::get_session, sessions::delete_session))
        .routes(routes!(tokens::create_token, tokens::list_tokens))
        .routes(routes!(tokens::revoke_token))
        .routes(routes!(oauth::oauth_token))
        .routes(routes!(oauth::oauth_refresh))
        .routes(routes!(oauth::oauth_revoke))
        .routes(routes!(audit::audit_log))
        .routes(routes!(cluster::cluster))
        .routes(routes!(tenants::export_tenant))
        .routes(routes!(tenants::erase_tenant))
        .routes(routes!(webhook_secrets::rotate_webhook_secret))
        .routes(routes!(webhook_secrets::retire_webhook_secret))
        .routes(routes!(probes::healthz))
        .routes(routes!(probes::readyz))
        .routes(routes!(probes::metrics))
        .routes(routes!(probes::openapi_json))
}

/// The OpenAPI 3 document, built once.
pub fn openapi() -> &'static utoipa::openapi::OpenApi {
    static DOC: OnceLock<utoipa::openapi::OpenApi> = OnceLock::new();
    DOC.get_or_init(|| {
        // The paths exist only once the routes are registered, so the
        // answers common to every route are added here, not in a modifier.
        let mut doc = api_router().split_for_parts().1;
        add_common_responses(&mut doc);
        doc
    })
}

/// The router: every API route, the body cap, panic catching, request
/// tracing, and JSON 404/405 answers in the error shape.
pub fn app(state: AppState) -> Router {
    let max_body = state.config.max_body_bytes;
    let (router, _) = api_router().split_for_parts();
    router
        .merge(web::router())
        .fallback(|| async { ApiError::not_found("no such route") })
        .method_not_allowed_fallback(|| async {
            ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "this route does not take that method",
            )
        })
        .layer(axum::extract::DefaultBodyLimit::max(max_body))
        .layer(CatchPanicLayer::custom(
            |_: Box<dyn std::any::Any + Send>| {
                ApiError::internal("a handler panicked").into_response()
            },
        ))
        // The client IP and the allowlist, before everything listed above
        // (which this layer wraps) and every handler: authentication and
        // rate limits read `net::ClientIp` from the request's extensions,
        // and refused addresses never get to try a token.
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            crate::net::guard,
        ))
        // Outside everything else that can answer early (the guard's 403,
        // a 401, a 413), so whatever body they leave unread is drained
        // before the answer goes out and a client that sends its whole body
        // first still reads it.
        .layer(axum::middleware::from_fn_with_state(
            max_body,
            crate::drain::unread_body,
        ))
        // Spans and events at debug, with method, URI and status only: no
        // headers (credentials) and no bodies (code, context) ever.
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(
                    tower_http::trace::DefaultMakeSpan::new()
                        .level(tracing::Level::DEBUG)
                        .include_headers(false),
                )
                .on_response(
                    tower_http::trace::DefaultOnResponse::new()
                        .level(tracing::Level::DEBUG)
                        .include_headers(false),
                ),
        )
        .with_state(state)
}
