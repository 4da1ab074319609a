//! `/healthz`, `/readyz` and `/metrics`.

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{Value, json};

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

/// 200 when every backend answers; 503 naming each one that does not.
async fn readyz(State(state): State<AppState>) -> Response {
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
    if down.is_empty() {
        (
            StatusCode::OK,
            Json(json!({ "status": "ready", "backends": backends, "processing": processing })),
        )
            .into_response()
    } else {
        ApiError::unavailable("not-ready", format!("not ready: {}", down.join("; ")))
            .with("backends", backends)
            .into_response()
    }
}

/// Prometheus text exposition.
async fn metrics(State(state): State<AppState>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        state.metrics.render(),
    )
        .into_response()
}
