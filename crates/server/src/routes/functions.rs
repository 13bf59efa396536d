//! `/v1/functions`: stored functions. A tenant registers a program once
//! under a name (statically checked and compiled in the guest once) and
//! invokes it by name many times; each invocation is an ordinary job that
//! records the function's name and version and starts from the compiled
//! form (see `crate::compiled`). Updates make new versions; earlier ones
//! stay readable and invocable until deleted.

use axum::{
    Json,
    body::Bytes,
    extract::{
        Path, Query, State,
        rejection::{BytesRejection, PathRejection, QueryRejection},
    },
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use strictpy_store::{
    FunctionPut, FunctionQuery, FunctionRecord, FunctionRef, FunctionWrite, JobSpec, NewFunction,
};
use strictpy_types::{LimitOverrides, Limits};
use utoipa::ToSchema;

use crate::{
    AppState,
    auth::{Auth, Principal, Scope},
    error::{ApiError, ErrorBody},
    http::{parse_body, rfc3339},
    intake::{
        Prepared, RunOptions, answer, check_callback, check_options, limit_error, submit, too_large,
    },
    now_ms,
    policy::{allowlist, static_check},
    views::{FunctionView, JobView},
};

/// Longest function name, in bytes.
pub const MAX_NAME: usize = 64;

/// Longest description, in bytes.
pub const MAX_DESCRIPTION: usize = 1024;

/// Default page size of `GET /v1/functions`.
const DEFAULT_PAGE: u32 = 50;

/// Largest page size of `GET /v1/functions`.
const MAX_PAGE: u32 = 200;

/// The documented name pattern (also in the OpenAPI document).
const NAME_PATTERN: &str = "^[A-Za-z_][A-Za-z0-9_-]{0,63}$";

/// `POST /v1/functions`: a function to register.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FunctionRequest {
    /// The name: a letter or `_`, then up to 63 letters, digits, `_` or
    /// `-`. Unique within the tenant.
    #[schema(pattern = "^[A-Za-z_][A-Za-z0-9_-]{0,63}$")]
    pub name: String,
    /// The Python source, statically checked once, here.
    pub code: String,
    /// Extra modules to allow, from the policy's `allowable_modules`.
    #[serde(default)]
    pub allow: Vec<String>,
    /// The function's limits (each at most the configured maximum);
    /// invocations may only tighten them.
    #[serde(default)]
    pub limits: Option<LimitOverrides>,
    /// What it is for, up to 1024 bytes.
    #[serde(default)]
    #[schema(max_length = 1024)]
    pub description: Option<String>,
}

/// `PUT /v1/functions/{name}`: the next version.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FunctionUpdate {
    /// The Python source of the new version.
    pub code: String,
    /// Extra modules to allow.
    #[serde(default)]
    pub allow: Vec<String>,
    /// The new version's limits.
    #[serde(default)]
    pub limits: Option<LimitOverrides>,
    /// What it is for, up to 1024 bytes.
    #[serde(default)]
    #[schema(max_length = 1024)]
    pub description: Option<String>,
}

/// `POST /v1/functions/{name}/invoke`: run a function as a job.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct InvokeRequest {
    /// A JSON object whose keys become globals of the program.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub context: Option<serde_json::Map<String, Value>>,
    /// Text for the program's stdin.
    #[serde(default)]
    pub stdin: Option<String>,
    /// Limit overrides, each at most the function's own limit (`422
    /// limit_exceeded` above it).
    #[serde(default)]
    pub limits: Option<LimitOverrides>,
    /// Seeds every source of randomness; 0 to 2^63 - 1.
    #[serde(default)]
    pub seed: Option<u64>,
    /// Hold the request open until the job is final and answer `200`.
    #[serde(default)]
    pub wait: bool,
    /// Where to POST the job's final state.
    #[serde(default)]
    pub callback_url: Option<String>,
    /// Invoking again with the same key returns the original job.
    #[serde(default)]
    #[schema(min_length = 1, max_length = 255)]
    pub idempotency_key: Option<String>,
    /// The version to run; the newest when absent.
    #[serde(default)]
    #[schema(minimum = 1)]
    pub version: Option<i64>,
}

/// A function in a listing: its newest version, without the code.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct FunctionSummary {
    /// The name.
    pub name: String,
    /// The newest version.
    pub version: i64,
    /// What it is for.
    pub description: Option<String>,
    /// When the newest version was stored.
    pub created_at: String,
}

/// A page of functions, by name.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct FunctionList {
    /// The functions.
    pub functions: Vec<FunctionSummary>,
    /// Pass as `cursor` for the next page; `null` on the last page.
    pub next_cursor: Option<String>,
}

/// A function's newest version and the numbers of all its live versions.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct FunctionDetail {
    /// The newest version.
    #[serde(flatten)]
    pub function: FunctionView,
    /// Every live version's number, oldest first.
    pub versions: Vec<i64>,
}

/// Query of `GET /v1/functions`.
#[derive(Debug, Clone, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListParams {
    /// Page size, 1 to 200 (default 50).
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<u32>,
    /// The `next_cursor` of the previous page.
    #[param(pattern = "^n1[A-Za-z_][A-Za-z0-9_-]{0,63}$")]
    pub cursor: Option<String>,
}

/// True for a name matching [`NAME_PATTERN`].
fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    name.len() <= MAX_NAME
        && chars
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

/// The name in the path; one that cannot exist is a plain `404`.
fn name_path(path: Result<Path<String>, PathRejection>) -> Result<String, ApiError> {
    let Path(name) = path.map_err(|e| ApiError::bad_request(e.body_text()))?;
    if valid_name(&name) {
        Ok(name)
    } else {
        Err(no_function(&name))
    }
}

/// `404` for a function the caller's tenant does not have (another tenant's
/// is the same answer).
fn no_function(name: &str) -> ApiError {
    ApiError::not_found(format!("no function {name}"))
}

/// Reading functions takes either function scope (or `admin`).
fn require_read(state: &AppState, who: &Principal) -> Result<(), ApiError> {
    if who.has(Scope::FunctionsWrite) {
        return Ok(());
    }
    who.require(state, Scope::FunctionsInvoke)
}

/// What a registration or update asks to store, checked.
struct Checked {
    /// The source, statically checked (BOM dropped).
    code: String,
    /// The extra modules.
    allow: Vec<String>,
    /// The limits as applied.
    limits: Limits,
    /// The description.
    description: Option<String>,
}

/// The checks of a new version: description, allowlist, limits, then the
/// static check (the same `422`s as a job).
async fn check_version(
    state: &AppState,
    who: &Principal,
    code: String,
    allow: Vec<String>,
    limits: Option<LimitOverrides>,
    description: Option<String>,
) -> Result<Checked, ApiError> {
    if let Some(d) = &description {
        too_large("description", d.len(), MAX_DESCRIPTION)?;
    }
    let allowlist = allowlist(&state.config.policy, &allow)?;
    let limits = state
        .default_limits
        .with_overrides(&limits.unwrap_or_default(), &state.max_limits)
        .map_err(limit_error)?;
    let code = static_check(state, who, code, allowlist).await?;
    Ok(Checked {
        code,
        allow,
        limits,
        description,
    })
}

/// Compiles a checked version in the guest (on the blocking pool) and
/// stores it.
async fn store_version(
    state: &AppState,
    who: &Principal,
    name: String,
    checked: Checked,
    write: FunctionWrite,
) -> Result<FunctionPut, ApiError> {
    let sandbox = state.sandbox.clone();
    let (code, limits) = (checked.code.clone(), checked.limits);
    let compiled =
        tokio::task::spawn_blocking(move || crate::compiled::compile(&sandbox, &code, limits))
            .await
            .map_err(ApiError::internal)?;
    Ok(state
        .store
        .put_function(
            NewFunction {
                tenant: who.tenant.clone(),
                name,
                description: checked.description,
                code: checked.code,
                allow: checked.allow,
                limits: checked.limits,
                token_id: Some(who.token_id.clone()),
                created_at: now_ms(),
                compiled,
            },
            write,
        )
        .await?)
}

/// The answer with a stored version and its `Location`.
fn stored(status: StatusCode, f: &FunctionRecord) -> Response {
    let mut headers = HeaderMap::new();
    if let Ok(v) =
        HeaderValue::from_str(&format!("/v1/functions/{}/versions/{}", f.name, f.version))
    {
        headers.insert(header::LOCATION, v);
    }
    (status, headers, Json(FunctionView::from(f))).into_response()
}

/// Register a function.
///
/// The code is statically checked (a violation is the same `422` as for a
/// job) and compiled in the guest once; the answer is the function at
/// version 1 (or the next unused number, when the name belonged to a
/// function that was deleted).
#[utoipa::path(
    post,
    path = "/v1/functions",
    tag = "functions",
    request_body = FunctionRequest,
    security(("bearer" = ["functions:write"])),
    responses(
        (status = 201, description = "Registered", body = FunctionView, headers(("Location" = String, description = "The version's URL"))),
        (status = 409, description = "The tenant already has a function by this name", body = ErrorBody),
        (status = 422, description = "Invalid name, policy violation, limit above the maximum, or a description over the cap", body = ErrorBody),
    )
)]
pub async fn register_function(
    State(state): State<AppState>,
    Auth(who): Auth,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    who.require(&state, Scope::FunctionsWrite)?;
    let req: FunctionRequest = parse_body(body)?;
    if !valid_name(&req.name) {
        return Err(ApiError::unprocessable(
            "invalid_function_name",
            format!("a function name matches {NAME_PATTERN}"),
        )
        .with_details(json!({ "field": "name" })));
    }
    let exists = || {
        ApiError::new(
            StatusCode::CONFLICT,
            "function_exists",
            format!("a function named {} exists; PUT a new version", req.name),
        )
        .with_details(json!({ "name": req.name }))
    };
    // Cheap refusal before the compile; the store decides for real.
    if state
        .store
        .function(who.tenant.clone(), req.name.clone(), None)
        .await?
        .is_some()
    {
        return Err(exists());
    }
    let checked = check_version(
        &state,
        &who,
        req.code.clone(),
        req.allow.clone(),
        req.limits,
        req.description.clone(),
    )
    .await?;
    match store_version(
        &state,
        &who,
        req.name.clone(),
        checked,
        FunctionWrite::Register,
    )
    .await?
    {
        FunctionPut::Stored(f) => {
            state.audit.record(
                who.event("function_registered")
                    .details(json!({ "name": f.name, "version": f.version })),
            );
            Ok(stored(StatusCode::CREATED, &f))
        }
        FunctionPut::Exists => Err(exists()),
        FunctionPut::Missing => Err(no_function(&req.name)),
    }
}

/// Store a new version of a function.
///
/// The new version is checked and compiled like a registration and
/// becomes the one invocations run by default; earlier versions stay
/// readable and invocable by number.
#[utoipa::path(
    put,
    path = "/v1/functions/{name}",
    tag = "functions",
    params(("name" = String, Path, description = "The function's name")),
    request_body = FunctionUpdate,
    security(("bearer" = ["functions:write"])),
    responses(
        (status = 200, description = "The new version", body = FunctionView, headers(("Location" = String, description = "The version's URL"))),
        (status = 404, description = "No such function", body = ErrorBody),
        (status = 422, description = "Policy violation, limit above the maximum, or a description over the cap", body = ErrorBody),
    )
)]
pub async fn update_function(
    State(state): State<AppState>,
    Auth(who): Auth,
    path: Result<Path<String>, PathRejection>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    who.require(&state, Scope::FunctionsWrite)?;
    let name = name_path(path)?;
    let req: FunctionUpdate = parse_body(body)?;
    if state
        .store
        .function(who.tenant.clone(), name.clone(), None)
        .await?
        .is_none()
    {
        return Err(no_function(&name));
    }
    let checked = check_version(
        &state,
        &who,
        req.code,
        req.allow,
        req.limits,
        req.description,
    )
    .await?;
    match store_version(&state, &who, name.clone(), checked, FunctionWrite::Update).await? {
        FunctionPut::Stored(f) => {
            state.audit.record(
                who.event("function_updated")
                    .details(json!({ "name": f.name, "version": f.version })),
            );
            Ok(stored(StatusCode::OK, &f))
        }
        FunctionPut::Missing | FunctionPut::Exists => Err(no_function(&name)),
    }
}

/// List functions, by name.
#[utoipa::path(
    get,
    path = "/v1/functions",
    tag = "functions",
    params(ListParams),
    security(("bearer" = ["functions:write"]), ("bearer" = ["functions:invoke"])),
    responses(
        (status = 200, description = "A page of functions (newest version of each)", body = FunctionList),
    )
)]
pub async fn list_functions(
    State(state): State<AppState>,
    Auth(who): Auth,
    query: Result<Query<ListParams>, QueryRejection>,
) -> Result<Json<FunctionList>, ApiError> {
    require_read(&state, &who)?;
    let Query(params) = query.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let limit = params.limit.unwrap_or(DEFAULT_PAGE);
    if limit == 0 || limit > MAX_PAGE {
        return Err(
            ApiError::bad_request(format!("limit must be 1 to {MAX_PAGE}"))
                .with_details(json!({ "field": "limit" })),
        );
    }
    let after = match &params.cursor {
        None => None,
        Some(c) => Some(
            c.strip_prefix("n1")
                .filter(|n| valid_name(n))
                .map(str::to_owned)
                .ok_or_else(|| {
                    ApiError::bad_request("invalid cursor")
                        .with_details(json!({ "field": "cursor" }))
                })?,
        ),
    };
    let functions = state
        .store
        .list_functions(FunctionQuery {
            tenant: who.tenant.clone(),
            after,
            limit,
        })
        .await?;
    let next_cursor = (functions.len() == limit as usize)
        .then(|| functions.last().map(|f| format!("n1{}", f.name)))
        .flatten();
    Ok(Json(FunctionList {
        functions: functions
            .iter()
            .map(|f| FunctionSummary {
                name: f.name.clone(),
                version: f.version,
                description: f.description.clone(),
                created_at: rfc3339(f.created_at),
            })
            .collect(),
        next_cursor,
    }))
}

/// Get a function: its newest version and the numbers of all versions.
#[utoipa::path(
    get,
    path = "/v1/functions/{name}",
    tag = "functions",
    params(("name" = String, Path, description = "The function's name")),
    security(("bearer" = ["functions:write"]), ("bearer" = ["functions:invoke"])),
    responses(
        (status = 200, description = "The function", body = FunctionDetail),
        (status = 404, description = "No such function", body = ErrorBody),
    )
)]
pub async fn get_function(
    State(state): State<AppState>,
    Auth(who): Auth,
    path: Result<Path<String>, PathRejection>,
) -> Result<Json<FunctionDetail>, ApiError> {
    require_read(&state, &who)?;
    let name = name_path(path)?;
    let f = state
        .store
        .function(who.tenant.clone(), name.clone(), None)
        .await?
        .ok_or_else(|| no_function(&name))?;
    let versions = state
        .store
        .function_versions(who.tenant.clone(), name)
        .await?;
    Ok(Json(FunctionDetail {
        function: FunctionView::from(&f),
        versions,
    }))
}

/// A version number in a path; one that cannot exist is a `404`.
fn version_path(
    path: Result<Path<(String, String)>, PathRejection>,
) -> Result<(String, i64), ApiError> {
    let Path((name, version)) = path.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let number = version
        .parse::<i64>()
        .ok()
        .filter(|v| *v >= 1 && valid_name(&name))
        .ok_or_else(|| ApiError::not_found(format!("no version {version} of {name}")))?;
    Ok((name, number))
}

/// Get one version of a function.
#[utoipa::path(
    get,
    path = "/v1/functions/{name}/versions/{version}",
    tag = "functions",
    params(
        ("name" = String, Path, description = "The function's name"),
        ("version" = String, Path, description = "The version number"),
    ),
    security(("bearer" = ["functions:write"]), ("bearer" = ["functions:invoke"])),
    responses(
        (status = 200, description = "The version", body = FunctionView),
        (status = 404, description = "No such function or version", body = ErrorBody),
    )
)]
pub async fn get_function_version(
    State(state): State<AppState>,
    Auth(who): Auth,
    path: Result<Path<(String, String)>, PathRejection>,
) -> Result<Json<FunctionView>, ApiError> {
    require_read(&state, &who)?;
    let (name, version) = version_path(path)?;
    let f = state
        .store
        .function(who.tenant.clone(), name.clone(), Some(version))
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no version {version} of {name}")))?;
    Ok(Json(FunctionView::from(&f)))
}

/// Deletes `version` (or every version) and audits it.
async fn delete(
    state: &AppState,
    who: &Principal,
    name: String,
    version: Option<i64>,
) -> Result<Response, ApiError> {
    let deleted = state
        .store
        .delete_function(who.tenant.clone(), name.clone(), version, now_ms())
        .await?;
    if deleted == 0 {
        return Err(match version {
            Some(v) => ApiError::not_found(format!("no version {v} of {name}")),
            None => no_function(&name),
        });
    }
    state.audit.record(
        who.event("function_deleted")
            .details(json!({ "name": name, "version": version, "versions_deleted": deleted })),
    );
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// Delete a function: every version. The name may then be registered
/// again (version numbers go on from the last one). Jobs that ran it keep
/// their record.
#[utoipa::path(
    delete,
    path = "/v1/functions/{name}",
    tag = "functions",
    params(("name" = String, Path, description = "The function's name")),
    security(("bearer" = ["functions:write"])),
    responses(
        (status = 204, description = "Deleted"),
        (status = 404, description = "No such function", body = ErrorBody),
    )
)]
pub async fn delete_function(
    State(state): State<AppState>,
    Auth(who): Auth,
    path: Result<Path<String>, PathRejection>,
) -> Result<Response, ApiError> {
    who.require(&state, Scope::FunctionsWrite)?;
    let name = name_path(path)?;
    delete(&state, &who, name, None).await
}

/// Delete one version of a function; the newest remaining version becomes
/// the default.
#[utoipa::path(
    delete,
    path = "/v1/functions/{name}/versions/{version}",
    tag = "functions",
    params(
        ("name" = String, Path, description = "The function's name"),
        ("version" = String, Path, description = "The version number"),
    ),
    security(("bearer" = ["functions:write"])),
    responses(
        (status = 204, description = "Deleted"),
        (status = 404, description = "No such function or version", body = ErrorBody),
    )
)]
pub async fn delete_function_version(
    State(state): State<AppState>,
    Auth(who): Auth,
    path: Result<Path<(String, String)>, PathRejection>,
) -> Result<Response, ApiError> {
    who.require(&state, Scope::FunctionsWrite)?;
    let (name, version) = version_path(path)?;
    delete(&state, &who, name, Some(version)).await
}

/// The field-wise smaller of two limits: a function's own, under the
/// operator's current maximum.
fn min_limits(a: Limits, b: Limits) -> Limits {
    Limits {
        timeout_ms: a.timeout_ms.min(b.timeout_ms),
        fuel: a.fuel.min(b.fuel),
        memory_mb: a.memory_mb.min(b.memory_mb),
        max_output_bytes: a.max_output_bytes.min(b.max_output_bytes),
    }
}

/// Invoke a function.
///
/// Creates an ordinary job (`wait`, webhooks, cancel, listing and
/// idempotency all apply) that runs the function's code and records its
/// name and version; it starts from the compiled form. Limits may only
/// tighten the function's own: a value above one is `422 limit_exceeded`.
#[utoipa::path(
    post,
    path = "/v1/functions/{name}/invoke",
    tag = "functions",
    params(("name" = String, Path, description = "The function's name")),
    request_body = InvokeRequest,
    security(("bearer" = ["functions:invoke"])),
    responses(
        (status = 202, description = "Queued", body = JobView, headers(("Location" = String, description = "The job's URL"))),
        (status = 200, description = "Final (wait, or an idempotent replay of a final job)", body = JobView),
        (status = 404, description = "No such function or version", body = ErrorBody),
        (status = 409, description = "The idempotency key was used for a different request", body = ErrorBody),
        (status = 422, description = "A limit above the function's, a bad context, seed or key, a refused callback, or a module the policy no longer allows", body = ErrorBody),
        (status = 503, description = "queue_full, shutting_down, or storage_unavailable", body = ErrorBody, headers(("Retry-After" = u64, description = "Seconds to wait before retrying: for queue_full, when the job at the head of the queue is expected to start"))),
    )
)]
pub async fn invoke_function(
    State(state): State<AppState>,
    Auth(who): Auth,
    path: Result<Path<String>, PathRejection>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    who.require(&state, Scope::FunctionsInvoke)?;
    let name = name_path(path)?;
    // Every field is optional, and serde would also take a JSON array as
    // the struct's fields in order: only an object is an invocation.
    let raw: Value = parse_body(body)?;
    if !raw.is_object() {
        return Err(ApiError::bad_request("the body must be a JSON object"));
    }
    let req: InvokeRequest = serde_json::from_value(raw)
        .map_err(|e| ApiError::bad_request(format!("invalid invocation: {e}")))?;
    let f = state
        .store
        .function(who.tenant.clone(), name.clone(), req.version)
        .await?
        .ok_or_else(|| match req.version {
            Some(v) => ApiError::not_found(format!("no version {v} of {name}")),
            None => no_function(&name),
        })?;
    let callback = check_options(
        &state.config,
        &RunOptions {
            stdin: req.stdin.as_deref(),
            context: req.context.as_ref(),
            seed: req.seed,
            idempotency_key: req.idempotency_key.as_deref(),
            callback_url: req.callback_url.as_deref(),
        },
    )?;
    check_callback(&state, callback.as_ref()).await?;
    // The policy may have changed since registration: the allowlist is
    // resolved again, and the limits stay under today's maximum.
    let allowlist = allowlist(&state.config.policy, &f.allow)?;
    let cap = min_limits(f.limits, state.max_limits);
    let limits = cap
        .with_overrides(&req.limits.unwrap_or_default(), &cap)
        .map_err(limit_error)?;
    let spec = JobSpec {
        code: f.code,
        stdin: req.stdin.unwrap_or_default(),
        context: req.context.map(Value::Object),
        allow: f.allow,
        allowlist,
        limits,
        seed: req.seed,
        function: Some(FunctionRef {
            name: f.name.clone(),
            version: f.version,
        }),
    };
    let prepared = Prepared::new(spec, req.callback_url, req.idempotency_key);
    // Waiting from before the insert on, so the finish hands its record over.
    let waiter = req.wait.then(|| state.waiter(prepared.id));
    let submitted = submit(&state, &who, prepared, req.wait).await?;
    if !submitted.replayed {
        state.audit.record(
            who.event("function_invoked").details(
                json!({ "name": f.name, "version": f.version, "job_id": submitted.job.id }),
            ),
        );
    }
    answer(&state, waiter, submitted, req.wait).await
}
