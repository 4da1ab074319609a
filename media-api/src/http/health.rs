//! `/healthz`, `/readyz` and `/metrics`. What a load balancer needs is open
//! (`/healthz`, and `/readyz` as a bare status); what tells an attacker
//! about the deployment (each backend's kind and errors, the job queue,
//! every metric) needs a token with the `admin` scope.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::{Value, json};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::auth::admin_of;
use super::openapi::problems;
use super::problem::ApiError;
use super::state::AppState;

pub(crate) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(healthz))
        .routes(routes!(readyz))
        .routes(routes!(metrics))
}

/// Whether the process serves.
#[derive(Serialize, utoipa::ToSchema)]
struct Health {
    /// `ok`.
    status: String,
}

/// Whether its backends answer.
#[derive(Serialize, utoipa::ToSchema)]
struct Readiness {
    /// `ready`.
    status: String,
    /// With an admin token: each seam's backend, `{kind, up, error?}`.
    #[serde(skip_serializing_if = "Option::is_none")]
    backends: Option<serde_json::Map<String, Value>>,
    /// With an admin token: the workers this process runs and the job
    /// queue's count by state.
    #[serde(skip_serializing_if = "Option::is_none")]
    processing: Option<serde_json::Map<String, Value>>,
}

problems!(
    /// A backend does not answer.
    NotReady { 503 => ["not-ready"] }
);
problems!(
    /// `/metrics` without an admin token.
    AdminRequired { 401 => ["token-missing", "token-malformed", "token-invalid", "token-expired", "token-not-yet-valid", "token-lifetime-too-long"], 403 => ["admin-required"] }
);

/// Liveness: the process is alive and serving HTTP.
#[utoipa::path(get, path = "/healthz", tag = "health",
    responses((status = 200, body = Health)))]
async fn healthz() -> Json<Health> {
    Json(Health {
        status: "ok".into(),
    })
}

/// Readiness: 200 when every backend answers, 503 when one does not.
///
/// With an admin token: each backend's kind and error, and the processing queue.
#[utoipa::path(get, path = "/readyz", tag = "health",
    responses((status = 200, body = Readiness), NotReady))]
async fn readyz(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let detailed = matches!(admin_of(&headers, &state.tokens), Ok(true));
    let mut backends = serde_json::Map::new();
    let mut down = Vec::new();
    for probe in state.backends.readiness().await {
        let mut entry = json!({ "kind": probe.kind, "up": probe.error.is_none() });
        if let Some(e) = &probe.error {
            entry["error"] = Value::from(e.as_str());
            down.push(format!("{} ({}): {e}", probe.kind, probe.seam));
        }
        backends.insert(probe.seam.to_owned(), entry);
    }
    // A queue nobody drains must be visible: how many workers this process
    // runs, and where the jobs stand.
    let mut processing = serde_json::Map::new();
    processing.insert(
        "workers_in_process".into(),
        crate::processing::workers_for(&state.settings, true).into(),
    );
    if let Some(counts) = state.backends.job_counts().await {
        for (job_state, n) in counts {
            processing.insert(job_state.as_str().into(), Value::from(n));
        }
    }
    let ready = |detailed: bool| Readiness {
        status: "ready".into(),
        backends: detailed.then(|| backends.clone()),
        processing: detailed.then(|| processing.clone()),
    };
    match (down.is_empty(), detailed) {
        (true, detailed) => (StatusCode::OK, Json(ready(detailed))).into_response(),
        (false, true) => {
            ApiError::unavailable("not-ready", format!("not ready: {}", down.join("; ")))
                .with("backends", backends)
                .into_response()
        }
        (false, false) => {
            ApiError::unavailable("not-ready", "a backend is not ready").into_response()
        }
    }
}

/// Prometheus text exposition, for an admin token (`401` without one,
/// `403` for another).
#[utoipa::path(get, path = "/metrics", tag = "health",
    security(("bearer" = [])),
    responses((status = 200, content_type = "text/plain; version=0.0.4; charset=utf-8", body = String,
        description = "Prometheus text exposition"), AdminRequired))]
async fn metrics(State(state): State<AppState>, headers: HeaderMap) -> Result<Response, ApiError> {
    if super::auth::bearer(&headers)?.is_none() {
        return Err(crate::auth::AuthError::Missing.into());
    }
    if !admin_of(&headers, &state.tokens)? {
        return Err(super::admin::admin_required());
    }
    Ok((
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        state.metrics.render(),
    )
        .into_response())
}
