//! Moderation: blocking and unblocking a content by its BLAKE3.

use axum::extract::State;
use serde::Deserialize;
use serde_json::{Value, json};

use super::Admin;
use crate::http::openapi::{Report, problems};
use crate::http::problem::{ApiError, Json, Path};
use crate::http::state::AppState;
use crate::ids::{Blake3, rfc3339};
use crate::operators::OperatorError;
use crate::operators::moderation;

/// The longest reason kept.
const MAX_REASON: usize = 1000;

impl From<OperatorError> for ApiError {
    fn from(e: OperatorError) -> Self {
        match e {
            OperatorError::Metadata(e) => e.into(),
            OperatorError::Blobs(e) => e.into(),
        }
    }
}

pub(super) fn blake3_of(text: &str) -> Result<Blake3, ApiError> {
    Blake3::parse(text).map_err(|e| ApiError::bad_request("invalid-blake3", e))
}

/// Why a content is blocked.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct BlockRequest {
    /// 1 to 1000 bytes of text.
    reason: String,
}

problems!(
    /// What blocking a content may answer.
    BlockProblems { 400 => ["invalid-blake3", "invalid-reason"], 403 => ["admin-required"] }
);

/// Blocks a content everywhere: nothing of it downloads (`451`), it cannot
/// be uploaded or attached again, and its objects are set aside.
#[utoipa::path(post, path = "/v1/admin/content/{blake3}/block", tag = "admin",
    params(("blake3" = String, Path, description = "the content's BLAKE3, hex", pattern = "^[0-9a-f]{64}$")),
    request_body = BlockRequest,
    responses((status = 200, body = Report, description = "`{blake3, blocked, newly_blocked, stored, objects}`"), BlockProblems))]
pub(super) async fn block(
    State(state): State<AppState>,
    Admin(admin): Admin,
    Path(blake3): Path<String>,
    Json(request): Json<BlockRequest>,
) -> Result<Json<Value>, ApiError> {
    let blake3 = blake3_of(&blake3)?;
    let reason = request.reason.trim();
    if reason.is_empty() || reason.len() > MAX_REASON || reason.chars().any(char::is_control) {
        return Err(ApiError::bad_request(
            "invalid-reason",
            format!("a reason is 1 to {MAX_REASON} bytes of text"),
        ));
    }
    let done = moderation::block(&state.backends, &blake3, reason, admin.as_str()).await?;
    let block = state.backends.admin.block_of(&blake3).await?;
    Ok(Json(json!({
        "blake3": blake3.to_hex(),
        "blocked": block_json(block.as_ref()),
        "newly_blocked": done.newly,
        "stored": done.objects > 0,
        "objects": done.objects,
    })))
}

/// Unblocks a content.
#[utoipa::path(delete, path = "/v1/admin/content/{blake3}/block", tag = "admin",
    params(("blake3" = String, Path, description = "the content's BLAKE3, hex", pattern = "^[0-9a-f]{64}$")),
    responses((status = 200, body = Report, description = "`{blake3, blocked: null, was_blocked}`"), BlockProblems))]
pub(super) async fn unblock(
    State(state): State<AppState>,
    _: Admin,
    Path(blake3): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let blake3 = blake3_of(&blake3)?;
    let was = moderation::unblock(&state.backends, &blake3).await?;
    Ok(Json(json!({
        "blake3": blake3.to_hex(),
        "blocked": null,
        "was_blocked": was,
    })))
}

/// A block as the API shows it (`null` when not blocked).
pub(super) fn block_json(block: Option<&crate::metadata_store::admin::Block>) -> Value {
    block.map_or(Value::Null, |b| {
        json!({
            "reason": b.reason,
            "blocked_by": b.blocked_by,
            "blocked_at": rfc3339(b.blocked_at),
        })
    })
}
