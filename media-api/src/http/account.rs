//! `GET /v1/me`: who the bearer token says the caller is. Lets a client check
//! its token before it starts a large upload.

use axum::Router;
use axum::routing::get;
use serde_json::{Value, json};

use axum::extract::State;

use super::problem::{ApiError, Json};
use super::state::AppState;
use crate::auth::Caller;

pub(crate) fn router() -> Router<AppState> {
    Router::new().route("/v1/me", get(me))
}

/// The caller, with their quotas: what they use and what they may.
async fn me(State(state): State<AppState>, caller: Caller) -> Result<Json<Value>, ApiError> {
    let account = state.quotas.account(&caller.user).await?;
    let limits = &state.settings.limits;
    let mut limits_doc = account.limits;
    limits_doc["max_file_size"] = limits.max_file_size.0.into();
    limits_doc["max_single_upload"] = limits.max_single_upload.0.into();
    limits_doc["max_image_size"] = limits.max_image_size.0.into();
    limits_doc["max_audio_size"] = limits.max_audio_size.0.into();
    limits_doc["max_video_size"] = limits.max_video_size.0.into();
    limits_doc["max_document_size"] = limits.max_document_size.0.into();
    Ok(Json(json!({
        "user": caller.user,
        "admin": caller.admin,
        "usage": account.usage,
        "limits": limits_doc,
    })))
}
