//! `GET /v1/me`: who the bearer token says the caller is. Lets a client check
//! its token before it starts a large upload.

use axum::extract::State;
use serde::Serialize;
use serde_json::Value;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::problem::{ApiError, Json};
use super::state::AppState;
use crate::auth::Caller;

pub(crate) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(me))
}

/// The caller, as their token says, with what they use and may use.
#[derive(Serialize, utoipa::ToSchema)]
struct Me {
    /// Their user id.
    user: String,
    /// Whether the token carries the `admin` scope.
    admin: bool,
    /// What they use now: `stored_bytes`, `media`, `open_uploads`,
    /// `open_upload_bytes`, and each rate's use in its window (`media`,
    /// `upload_bytes`, `messages`; null when the counter is unavailable).
    #[schema(value_type = Object)]
    usage: Value,
    /// What they may use: their quotas and rates, and the size limits.
    #[schema(value_type = Object)]
    limits: Value,
}

/// Who the caller is, with their quotas: what they use and what they may.
#[utoipa::path(get, path = "/v1/me", tag = "account",
    responses((status = 200, body = Me)))]
async fn me(State(state): State<AppState>, caller: Caller) -> Result<Json<Me>, ApiError> {
    let account = state.quotas.account(&caller.user).await?;
    let limits = &state.settings.limits;
    let mut limits_doc = account.limits;
    limits_doc["max_file_size"] = limits.max_file_size.0.into();
    limits_doc["max_single_upload"] = limits.max_single_upload.0.into();
    limits_doc["max_image_size"] = limits.max_image_size.0.into();
    limits_doc["max_audio_size"] = limits.max_audio_size.0.into();
    limits_doc["max_video_size"] = limits.max_video_size.0.into();
    limits_doc["max_document_size"] = limits.max_document_size.0.into();
    Ok(Json(Me {
        user: caller.user.to_string(),
        admin: caller.admin,
        usage: account.usage,
        limits: limits_doc,
    }))
}
