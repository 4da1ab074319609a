//! `/healthz`, `/readyz` and `/metrics`. What a load balancer needs is open
//! (`/healthz`, and `/readyz` as a bare status); what tells an attacker
//! about the deployment (each backend's kind and errors, the job queue,
//! every metric) needs a token with the `admin` scope.

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{Value, json};

use super::auth::admin_of;
use super::problem::ApiError;
use super::state::AppState;

pub(crate) fn router() -> Router<AppState> {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
}

/// The process is alive and serving HTTP.
async fn healthz() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

/// 200 when every backend answers, 503 when one does not. With an admin
/// token: each backend's kind and error, and the processing queue.
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
    let mut processing = json!({
        "workers_in_process": crate::processing::workers_for(&state.settings, true),
    });
    if let Some(counts) = state.backends.job_counts().await {
        for (job_state, n) in counts {
            processing[job_state.as_str()] = Value::from(n);
        }
    }
    match (down.is_empty(), detailed) {
        (true, true) => (
            StatusCode::OK,
            Json(json!({ "status": "ready", "backends": backends, "processing": processing })),
        )
            .into_response(),
        (true, false) => (StatusCode::OK, Json(json!({ "status": "ready" }))).into_response(),
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

/// Prometheus text exposition, for an admin token.
async fn metrics(State(state): State<AppState>, headers: HeaderMap) -> Result<Response, ApiError> {
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
