//! `/v1/media`: one-request uploads of small files, and media metadata.

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::openapi::problems;
use super::problem::{ApiError, Json, Path, Query};
use super::state::AppState;
use crate::auth::Caller;
use crate::ids::MediaId;
use crate::media::{MediaPage, MediaView};
use crate::uploads::Completion;

/// Routes that carry a whole small file.
pub(crate) fn upload_router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(upload))
}

/// Metadata routes.
pub(crate) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list))
        .routes(routes!(metadata, delete))
}

/// A page of a listing.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct ListQuery {
    /// Most items in the page (default 50, at most `limits.max_page_size`).
    #[param(minimum = 1)]
    pub(crate) limit: Option<u32>,
    /// `next_cursor` of the page before.
    pub(crate) cursor: Option<String>,
}

/// The path parameter naming a media item.
pub(super) const MEDIA_ID: &str = "the media item's id (a UUID)";

problems!(
    /// A listing's page that cannot be read.
    ListProblems { 400 => ["invalid-limit", "invalid-cursor"] }
);
problems!(
    /// A media item that is not there for the caller.
    MediaProblems { 404 => ["media-not-found"] }
);
problems!(
    /// What a one-request upload may answer.
    UploadProblems {
        400 => ["invalid-file-name", "invalid-size", "chunk-incomplete"],
        413 => ["body-too-large", "file-too-large", "too-large-for-type", "too-many-pixels", "quota-exceeded"],
        429 => ["rate-limited"],
        451 => ["content-blocked"],
    }
);

/// The caller's media items, newest first.
#[utoipa::path(get, path = "/v1/media", tag = "media",
    params(ListQuery),
    responses((status = 200, body = MediaPage), ListProblems))]
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

/// Deletes one of the caller's media items (their reference to the
/// content; the content goes when nothing references it).
#[utoipa::path(delete, path = "/v1/media/{media_id}", tag = "media",
    params(("media_id" = String, Path, description = MEDIA_ID)),
    responses((status = 204, description = "deleted"), MediaProblems))]
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

/// A one-request upload's name.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct UploadQuery {
    /// The file's name (required).
    file_name: Option<String>,
}

/// Uploads a small file in one request (at most `limits.max_single_upload`):
/// the body is the file. Deduplicated by content like any upload.
#[utoipa::path(post, path = "/v1/media", tag = "media",
    params(UploadQuery),
    request_body(content = Vec<u8>, content_type = "application/octet-stream", description = "the file"),
    responses(
        (status = 201, body = Completion, headers(("Location" = String, description = "the media item"))),
        UploadProblems))]
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

/// One media item: its content, processing status, what probing found,
/// and its variants.
#[utoipa::path(get, path = "/v1/media/{media_id}", tag = "media",
    params(("media_id" = String, Path, description = MEDIA_ID)),
    responses((status = 200, body = MediaView), MediaProblems))]
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
