//! `/healthz`, `/readyz` and `/metrics`.

use std::future::Future;
use std::time::Duration;

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{Value, json};

use crate::problem::ApiError;
use crate::state::AppState;

/// How long one backend gets to answer a readiness probe.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

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

async fn probe<E: std::fmt::Display>(
    name: &'static str,
    kind: &'static str,
    check: impl Future<Output = Result<(), E>>,
) -> (&'static str, &'static str, Result<(), String>) {
    let outcome = match tokio::time::timeout(PROBE_TIMEOUT, check).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!("no answer within {PROBE_TIMEOUT:?}")),
    };
    (name, kind, outcome)
}

/// 200 when every backend answers; 503 naming each one that does not.
async fn readyz(State(state): State<AppState>) -> Response {
    let b = &state.backends;
    let results = [
        probe("metadata", b.metadata.kind(), b.metadata.ping()).await,
        probe("progress", b.progress.kind(), b.progress.ping()).await,
        probe("blobs", b.blobs.kind(), b.blobs.ping()).await,
    ];
    let mut backends = serde_json::Map::new();
    let mut down = Vec::new();
    for (name, kind, outcome) in &results {
        let mut entry = json!({ "kind": kind, "up": outcome.is_ok() });
        if let Err(e) = outcome {
            entry["error"] = Value::from(e.as_str());
            down.push(format!("{kind} ({name}): {e}"));
        }
        backends.insert((*name).to_owned(), entry);
    }
    if down.is_empty() {
        (
            StatusCode::OK,
            Json(json!({ "status": "ready", "backends": backends })),
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
