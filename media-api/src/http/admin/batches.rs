//! Batches: reprocessing by selector (with a dry run), their progress, and
//! pause, resume and cancel.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{Admin, AdminPageProblems, PageQuery, next_cursor, plain_page};
use crate::http::openapi::{Report, problems};
use crate::http::problem::{ApiError, Json, Path, Query};
use crate::http::state::AppState;
use crate::ids::{now_ms, rfc3339};
use crate::metadata_store::batches::{Batch, BatchAction, NewBatch};
use crate::operators::fsck::Fsck;
use crate::operators::reprocess::{self, Selector};

/// How many matched contents a dry run shows.
const SAMPLE: u32 = 20;

/// A reprocessing batch to start.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct ReprocessRequest {
    /// Which contents.
    #[serde(default)]
    selector: Selector,
    /// Only count and sample what would match.
    #[serde(default)]
    dry_run: bool,
    /// Jobs per second.
    rate: Option<f64>,
}

problems!(
    /// What starting a reprocessing batch may answer.
    ReprocessProblems { 400 => ["invalid-selector", "invalid-rate"], 403 => ["admin-required"] }
);
problems!(
    /// What a batch's routes may answer.
    BatchProblems {
        403 => ["admin-required"],
        404 => ["batch-not-found", "route-not-found"],
        409 => ["invalid-batch-state"],
    }
);

fn invalid(detail: String) -> ApiError {
    ApiError::bad_request("invalid-selector", detail)
}

/// Reprocesses the contents a selector matches, as a paced batch below live
/// uploads; a dry run answers `{matched, bytes, sample}` and starts nothing.
#[utoipa::path(post, path = "/v1/admin/reprocess", tag = "admin",
    request_body = ReprocessRequest,
    responses(
        (status = 202, body = Report, description = "`{batch_id, matched, bytes}`"),
        (status = 200, body = Report, description = "a dry run: `{matched, bytes, sample}`"),
        ReprocessProblems))]
pub(super) async fn reprocess(
    State(state): State<AppState>,
    Admin(admin): Admin,
    Json(request): Json<ReprocessRequest>,
) -> Result<Response, ApiError> {
    let (filter, presets) =
        reprocess::resolve(&request.selector, &state.settings.presets).map_err(invalid)?;
    let interval_ms = reprocess::interval_ms(request.rate)
        .map_err(|e| ApiError::bad_request("invalid-rate", e))?;
    if request.dry_run {
        let matched = state
            .backends
            .batches
            .match_contents(&filter, SAMPLE)
            .await?;
        return Ok(Json(json!({
            "matched": matched.matched,
            "bytes": matched.bytes,
            "sample": matched.sample,
        }))
        .into_response());
    }
    let batch = NewBatch {
        batch_id: uuid::Uuid::now_v7().to_string(),
        selector: serde_json::to_string(&request.selector).unwrap_or_default(),
        interval_ms,
        presets,
        created_by: admin.as_str().to_owned(),
        now: now_ms(),
    };
    let batch = state
        .backends
        .batches
        .start_reprocess(&batch, &filter)
        .await?;
    tracing::info!(batch = %batch.batch_id, matched = batch.matched, "reprocessing batch started");
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({
            "batch_id": batch.batch_id,
            "matched": batch.matched,
            "bytes": batch.bytes,
        })),
    )
        .into_response())
}

/// A consistency check to start.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct FsckRequest {
    /// Repair what it finds.
    #[serde(default)]
    repair: bool,
}

/// Starts the consistency check of the store against the database as a
/// batch; its findings grow in the batch's `report` until it is done.
#[utoipa::path(post, path = "/v1/admin/fsck", tag = "admin",
    request_body = FsckRequest,
    responses((status = 202, body = Report, description = "the batch"), super::AdminProblems))]
pub(super) async fn fsck(
    State(state): State<AppState>,
    Admin(admin): Admin,
    Json(request): Json<FsckRequest>,
) -> Result<Response, ApiError> {
    let batch = NewBatch {
        batch_id: uuid::Uuid::now_v7().to_string(),
        selector: json!({ "repair": request.repair }).to_string(),
        interval_ms: 0,
        presets: None,
        created_by: admin.as_str().to_owned(),
        now: now_ms(),
    };
    let batch = state.backends.batches.start_batch(&batch, "fsck").await?;
    let check = Fsck {
        backends: state.backends.clone(),
        janitor: Arc::new(state.uploads.clone()),
        grace: state.settings.gc_grace,
        abandoned: state.settings.limits.abandoned_completion,
    };
    let id = batch.batch_id.clone();
    tokio::spawn(async move { check.run(&id, request.repair).await });
    Ok((StatusCode::ACCEPTED, Json(batch_json(&batch))).into_response())
}

/// A batch as the API shows it.
pub(crate) fn batch_json(b: &Batch) -> Value {
    let parse = |text: &str| serde_json::from_str::<Value>(text).unwrap_or(Value::Null);
    json!({
        "batch_id": b.batch_id,
        "kind": b.kind,
        "state": b.state,
        "selector": parse(&b.selector),
        "rate": (b.interval_ms > 0).then(|| 1000.0 / b.interval_ms as f64),
        "matched": b.matched,
        "bytes": b.bytes,
        "enqueued": b.enqueued,
        "done": b.done,
        "failed": b.failed,
        "cancelled": b.cancelled,
        "created_by": b.created_by,
        "started_at": rfc3339(b.started_at),
        "finished_at": b.finished_at.map(rfc3339),
        "report": b.report.as_deref().map(parse),
    })
}

fn not_found() -> ApiError {
    ApiError::not_found("batch-not-found", "no batch with that id")
}

/// A batch id as this service makes them, or 404.
fn batch_id(id: &str) -> Result<&str, ApiError> {
    uuid::Uuid::parse_str(id)
        .map(|_| id)
        .map_err(|_| not_found())
}

/// The batches, newest first.
#[utoipa::path(get, path = "/v1/admin/batches", tag = "admin",
    params(PageQuery),
    responses((status = 200, body = Report, description = "`{items, next_cursor}`"), AdminPageProblems))]
pub(super) async fn list(
    State(state): State<AppState>,
    _: Admin,
    Query(query): Query<PageQuery>,
) -> Result<Json<Value>, ApiError> {
    let (limit, cursor) = plain_page(&state, &query)?;
    let items = state.backends.batches.batches(cursor, limit).await?;
    let next = next_cursor(&items, limit, |b| &b.batch_id);
    Ok(Json(json!({
        "items": items.iter().map(batch_json).collect::<Vec<_>>(),
        "next_cursor": next,
    })))
}

/// One batch: its state, selector, rate and counts, and a check's report.
#[utoipa::path(get, path = "/v1/admin/batches/{batch_id}", tag = "admin",
    params(("batch_id" = String, Path, description = "the batch's id")),
    responses((status = 200, body = Report), BatchProblems))]
pub(super) async fn one(
    State(state): State<AppState>,
    _: Admin,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let batch = state
        .backends
        .batches
        .batch(batch_id(&id)?)
        .await?
        .ok_or_else(not_found)?;
    Ok(Json(batch_json(&batch)))
}

/// Pauses, resumes or cancels a batch: the batch as it is after; `409
/// invalid-batch-state` when the action does not apply (pausing or
/// cancelling a finished batch, resuming a cancelled one).
#[utoipa::path(post, path = "/v1/admin/batches/{batch_id}/{action}", tag = "admin",
    params(
        ("batch_id" = String, Path, description = "the batch's id"),
        ("action" = String, Path, description = "`pause`, `resume` or `cancel`"),
    ),
    responses((status = 200, body = Report), BatchProblems))]
pub(super) async fn act(
    State(state): State<AppState>,
    _: Admin,
    Path((id, action)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    let (action, wants): (_, &[&str]) = match action.as_str() {
        "pause" => (BatchAction::Pause, &["paused"]),
        "resume" => (BatchAction::Resume, &["running", "done"]),
        "cancel" => (BatchAction::Cancel, &["cancelled"]),
        _ => {
            return Err(ApiError::not_found(
                "route-not-found",
                "a batch is paused, resumed or cancelled",
            ));
        }
    };
    let after = state
        .backends
        .batches
        .act_on_batch(batch_id(&id)?, action)
        .await?
        .ok_or_else(not_found)?;
    // Asked twice, an action answers the same.
    if !wants.contains(&after.state.as_str()) {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "invalid-batch-state",
            format!(
                "the batch is {}: it cannot be {}",
                after.state,
                past(action)
            ),
        ));
    }
    Ok(Json(batch_json(&after)))
}

fn past(action: BatchAction) -> &'static str {
    match action {
        BatchAction::Pause => "paused",
        BatchAction::Resume => "resumed",
        BatchAction::Cancel => "cancelled",
    }
}
