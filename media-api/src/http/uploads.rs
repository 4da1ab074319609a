//! `/v1/uploads`: chunked, resumable upload sessions. The rules live in
//! `uploads`; this module translates HTTP to and from them.

use std::convert::Infallible;
use std::time::Duration;

use axum::body::Body;
use axum::extract::DefaultBodyLimit;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::{Stream, StreamExt};
use serde::Serialize;
use serde_json::Value;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::openapi::problems;
use super::problem::{ApiError, Json, Path};
use super::state::AppState;
use crate::auth::Caller;
use crate::ids::{ChunkNumber, UploadId};
use crate::uploads::chunk_hash::parse_content_digest;
use crate::uploads::{
    ChunkPut, ChunkReceipt, Completion, CreateUpload, Opened, Progress, UploadError, events,
};

/// Routes that carry only JSON.
pub(crate) fn router(json_limit: usize) -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create))
        .routes(routes!(status, abort))
        .routes(routes!(complete))
        .layer(DefaultBodyLimit::max(json_limit))
}

/// Routes that carry chunk bytes (streamed, sized by the session).
pub(crate) fn chunk_router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(put_chunk))
}

/// Routes that stream events (no request deadline).
pub(crate) fn event_router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(events))
}

/// A new session: where to send its chunks.
#[derive(Serialize, utoipa::ToSchema)]
struct UploadCreated {
    /// The session (also the last segment of `Location`).
    upload_id: String,
    /// Bytes per chunk (the last may be shorter).
    chunk_size: u64,
    /// How many chunks to send.
    total_chunks: u32,
    /// When the session dies if not completed (RFC 3339).
    expires_at: String,
    /// Chunks received: none yet.
    received_chunks: Vec<u32>,
}

/// One server-sent event of an upload's stream.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
struct UploadEvent {
    /// `progress`, `completed`, `aborted`, `processing`, `ready` or `failed`.
    event: String,
    /// A JSON document: the session's progress, the completion, or the
    /// media's processing status.
    data: String,
}

/// The path parameter naming an upload session.
const UPLOAD_ID: &str = "the session's id (a UUID)";

problems!(
    /// What opening a session may answer.
    CreateProblems {
        400 => ["invalid-size", "invalid-file-name", "invalid-blake3", "invalid-chunk-size", "invalid-content-type"],
        409 => ["too-many-open-uploads"],
        413 => ["file-too-large", "too-large-for-type", "quota-exceeded"],
        429 => ["rate-limited"],
        451 => ["content-blocked"],
    }
);
problems!(
    /// A session that is not the caller's, or is over.
    SessionProblems {
        404 => ["upload-not-found"],
        410 => ["upload-expired", "upload-aborted"],
    }
);
problems!(
    /// What a chunk PUT may answer.
    ChunkProblems {
        400 => ["invalid-chunk-number", "chunk-out-of-range", "chunk-size-mismatch", "invalid-content-digest", "content-digest-mismatch", "chunk-incomplete"],
        404 => ["upload-not-found"],
        409 => ["upload-completed", "completion-in-progress", "chunk-conflict"],
        410 => ["upload-expired", "upload-aborted"],
        413 => ["body-too-large"],
        429 => ["rate-limited"],
    }
);
problems!(
    /// What completing a session may answer.
    CompleteProblems {
        404 => ["upload-not-found"],
        409 => ["chunks-missing", "completion-in-progress"],
        410 => ["upload-expired", "upload-aborted", "media-deleted"],
        413 => ["too-large-for-type", "too-many-pixels"],
        422 => ["hash-mismatch"],
        451 => ["content-blocked"],
    }
);
problems!(
    /// What aborting a session may answer.
    AbortProblems {
        404 => ["upload-not-found"],
        409 => ["upload-completed", "completion-in-progress"],
    }
);
problems!(
    /// What opening an event stream may answer.
    EventProblems {
        404 => ["upload-not-found"],
        410 => ["upload-expired", "upload-aborted"],
        429 => ["too-many-streams"],
    }
);

/// Parses a JSON body that must be an object into `T`, naming what is wrong.
pub(crate) fn object_of<T: serde::de::DeserializeOwned>(body: Value) -> Result<T, ApiError> {
    if !body.is_object() {
        return Err(ApiError::bad_request(
            "json-not-object",
            "the request body must be a JSON object",
        ));
    }
    serde_json::from_value(body).map_err(|e| {
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid-json-fields",
            e.to_string(),
        )
    })
}

/// Opens an upload session.
///
/// The answer says the chunk size and count to send. When the caller holds
/// the declared `blake3` already, no session is opened: a new media item is
/// made at once (`200`, `deduplicated: true`, `Location` of the media).
#[utoipa::path(post, path = "/v1/uploads", tag = "uploads",
    request_body = CreateUpload,
    responses(
        (status = 201, body = UploadCreated, headers(("Location" = String, description = "the session"))),
        (status = 200, body = Completion, description = "instant dedup: content the caller holds", headers(("Location" = String, description = "the new media item"))),
        CreateProblems))]
async fn create(
    State(state): State<AppState>,
    caller: Caller,
    Json(body): Json<Value>,
) -> Result<Response, ApiError> {
    let request: CreateUpload = object_of(body)?;
    let upload = match state.uploads.create(&caller.user, request).await? {
        Opened::Session(upload) => upload,
        Opened::Existing(completion) => {
            return Ok((
                StatusCode::OK,
                [(
                    header::LOCATION,
                    format!("/v1/media/{}", completion.media_id),
                )],
                Json(completion),
            )
                .into_response());
        }
    };
    let body = UploadCreated {
        upload_id: upload.upload_id.to_string(),
        chunk_size: upload.chunk_size,
        total_chunks: upload.total_chunks,
        expires_at: crate::ids::rfc3339(upload.expires_at),
        received_chunks: Vec::new(),
    };
    Ok((
        StatusCode::CREATED,
        [(
            header::LOCATION,
            format!("/v1/uploads/{}", upload.upload_id),
        )],
        Json(body),
    )
        .into_response())
}

/// Where a session stands: the chunks received and missing, the bytes, and
/// the media once completed.
#[utoipa::path(get, path = "/v1/uploads/{upload_id}", tag = "uploads",
    params(("upload_id" = String, Path, description = UPLOAD_ID)),
    responses((status = 200, body = Progress), SessionProblems))]
async fn status(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let upload = state.uploads.owned(&caller.user, upload_id(&id)?).await?;
    let progress = state.uploads.progress(&upload).await?;
    Ok(Json(progress).into_response())
}

/// Sends chunk `n` (1-based) of a session, in any order, in parallel; a
/// chunk sent again replaces nothing and is answered the same.
///
/// The body is the chunk's bytes: `chunk_size` of them, fewer for the last.
/// A `Content-Digest: sha-256=:BASE64:` is checked before the chunk is kept.
#[utoipa::path(put, path = "/v1/uploads/{upload_id}/chunks/{n}", tag = "uploads",
    params(
        ("upload_id" = String, Path, description = UPLOAD_ID),
        ("n" = u32, Path, description = "the chunk number, from 1", minimum = 1),
        ("Content-Digest" = Option<String>, Header, description = "`sha-256=:BASE64:` of the chunk (RFC 9530)",
            pattern = "^sha-256=:[A-Za-z0-9+/]{43}=:$"),
    ),
    request_body(content = Vec<u8>, content_type = "application/octet-stream", description = "the chunk's bytes"),
    responses((status = 200, body = ChunkReceipt), ChunkProblems))]
async fn put_chunk(
    State(state): State<AppState>,
    caller: Caller,
    Path((id, n)): Path<(String, String)>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let content_length = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let sha256 = match headers.get("content-digest") {
        None => None,
        Some(v) => {
            let text = v.to_str().map_err(|_| {
                ApiError::from(UploadError::InvalidContentDigest("not ASCII".into()))
            })?;
            parse_content_digest(text).map_err(UploadError::InvalidContentDigest)?
        }
    };
    let put = ChunkPut {
        number: ChunkNumber::parse(&n).map_err(UploadError::InvalidChunkNumber)?,
        content_length,
        sha256,
    };
    let receipt = state
        .uploads
        .put_chunk(&caller.user, upload_id(&id)?, put, body.into_data_stream())
        .await?;
    Ok(Json(receipt).into_response())
}

/// Completes a session once every chunk is in: the BLAKE3 is merged from
/// the chunks, the type sniffed, the media made (deduplicated by content).
/// Calling it again answers the same.
#[utoipa::path(post, path = "/v1/uploads/{upload_id}/complete", tag = "uploads",
    params(("upload_id" = String, Path, description = UPLOAD_ID)),
    responses((status = 200, body = Completion), CompleteProblems))]
async fn complete(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let completion = state
        .uploads
        .complete(&caller.user, upload_id(&id)?)
        .await?;
    Ok(Json(completion).into_response())
}

/// Aborts a session: its chunks are dropped. Aborting twice is fine.
#[utoipa::path(delete, path = "/v1/uploads/{upload_id}", tag = "uploads",
    params(("upload_id" = String, Path, description = UPLOAD_ID)),
    responses((status = 204, description = "aborted"), AbortProblems))]
async fn abort(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    state.uploads.abort(&caller.user, upload_id(&id)?).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// A session's live progress, as server-sent events: `progress`,
/// `completed`, `aborted`, `processing` and `ready`, from where it stands
/// now; the stream ends when the token that opened it expires.
#[utoipa::path(get, path = "/v1/uploads/{upload_id}/events", tag = "uploads",
    params(("upload_id" = String, Path, description = UPLOAD_ID)),
    responses((status = 200, content_type = "text/event-stream", body = UploadEvent, description = "server-sent events"), EventProblems))]
async fn events(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Sse<impl Stream<Item = Result<SseEvent, Infallible>>>, ApiError> {
    let id = upload_id(&id)?;
    let caller_expires_at = caller.expires_at;
    let slot = state.streams.take(&caller.user)?;
    let rx = events::stream(
        state.uploads.clone(),
        state.media.clone(),
        caller.user,
        id,
        state.shutdown.clone(),
    )
    .await?;
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        let event = rx.recv().await?;
        let sse = SseEvent::default()
            .event(event.name())
            .json_data(event.data())
            .unwrap_or_default();
        Some((Ok(sse), rx))
    });
    // The slot is given back when the stream ends or its reader goes.
    let stream = stream.map(move |event| {
        let _held = &slot;
        event
    });
    // The stream ends when the token that opened it expires.
    let left = crate::ids::millis_until(caller_expires_at);
    let stream = stream.take_until(tokio::time::sleep(left));
    Ok(Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))))
}

/// An upload id from the path; one that cannot be ours is not found.
fn upload_id(id: &str) -> Result<UploadId, UploadError> {
    UploadId::parse(id).ok_or(UploadError::NotFound)
}
