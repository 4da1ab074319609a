//! `/v1/media`: one-request uploads of small files, and media metadata.

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;

use super::problem::{ApiError, Json, Path, Query};
use super::state::AppState;
use crate::auth::Caller;
use crate::ids::MediaId;

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
    let page = state
        .media
        .list(&caller.user, query.limit, query.cursor.as_deref())
        .await?;
    Ok(Json(page).into_response())
}

async fn delete(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    if state.media.delete(&caller.user, media_id(&id)?).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(media_not_found())
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
    let view = state
        .media
        .view(&caller.user, media_id(&id)?)
        .await?
        .ok_or_else(media_not_found)?;
    Ok(Json(view).into_response())
}

/// A media id from the path; one that cannot be a media id is not found,
/// like one that names no media.
pub(super) fn media_id(id: &str) -> Result<MediaId, ApiError> {
    MediaId::parse(id).ok_or_else(media_not_found)
}

/// The one answer for media that does not exist and media the caller may
/// not read.
pub(super) fn media_not_found() -> ApiError {
    ApiError::not_found("media-not-found", "no such media")
}
