//! `/v1/media`: one-request uploads of small files, and media metadata.

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;

use crate::auth::Caller;
use crate::media_catalog::{self, ListError, MediaView};
use crate::problem::{ApiError, Json, Path, Query};
use crate::state::AppState;

/// Routes that carry a whole small file.
pub(crate) fn upload_router() -> Router<AppState> {
    Router::new().route("/v1/media", post(upload))
}

/// Metadata routes.
pub(crate) fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/media", get(list))
        .route("/v1/media/{media_id}", get(metadata).delete(delete))
}

#[derive(Debug, Deserialize)]
struct ListQuery {
    limit: Option<u32>,
    cursor: Option<String>,
}

async fn list(
    State(state): State<AppState>,
    caller: Caller,
    Query(query): Query<ListQuery>,
) -> Result<Response, ApiError> {
    let page = media_catalog::list(
        &state.backends,
        &caller.user,
        query.limit,
        query.cursor.as_deref(),
        state.settings.limits.max_page_size,
    )
    .await
    .map_err(|e| match e {
        ListError::InvalidLimit(_) => ApiError::bad_request("invalid-limit", e.to_string()),
        ListError::InvalidCursor => ApiError::bad_request("invalid-cursor", e.to_string()),
        ListError::Backend(e) => e.into(),
    })?;
    Ok(Json(page).into_response())
}

async fn delete(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    if media_catalog::delete(&state.backends, &caller.user, &id).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::not_found("media-not-found", "no such media"))
    }
}

#[derive(Debug, Deserialize)]
struct UploadQuery {
    file_name: Option<String>,
}

async fn upload(
    State(state): State<AppState>,
    caller: Caller,
    Query(query): Query<UploadQuery>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let file_name = query.file_name.ok_or_else(|| {
        ApiError::bad_request("invalid-file-name", "give the file's name as ?file_name=")
    })?;
    let content_length = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let completion = state
        .uploads
        .upload_small(
            &caller.user,
            &file_name,
            headers
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok()),
            content_length,
            body.into_data_stream(),
        )
        .await?;
    Ok((
        StatusCode::CREATED,
        [(
            header::LOCATION,
            format!("/v1/media/{}", completion.media_id),
        )],
        Json(completion),
    )
        .into_response())
}

async fn metadata(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let view = media_view(&state, &caller.user, &id)
        .await?
        .ok_or_else(|| ApiError::not_found("media-not-found", "no such media"))?;
    Ok(Json(view).into_response())
}

/// A media as its owner sees it, with its variants; `None` when it is not theirs.
pub(crate) async fn media_view(
    state: &AppState,
    user: &crate::auth::UserId,
    id: &str,
) -> Result<Option<MediaView>, ApiError> {
    let Some(media) = state.uploads.media(user, id).await? else {
        return Ok(None);
    };
    let variants = state
        .backends
        .jobs
        .variants(&media.blake3)
        .await
        .map_err(crate::upload_session::UploadError::from)?;
    Ok(Some(MediaView::from(&media).with_variants(&variants)))
}
