//! `/v1/uploads`: chunked, resumable upload sessions. The rules live in
//! `uploads`; this module translates HTTP to and from them.

use std::convert::Infallible;
use std::time::Duration;

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Router, extract::DefaultBodyLimit};
use futures_util::{Stream, StreamExt};
use serde_json::Value;

use super::problem::{ApiError, Json, Path};
use super::state::AppState;
use crate::auth::Caller;
use crate::ids::{ChunkNumber, UploadId};
use crate::uploads::chunk_hash::parse_content_digest;
use crate::uploads::{ChunkPut, CreateUpload, Opened, UploadError, events};

/// Routes that carry only JSON.
pub(crate) fn router(json_limit: usize) -> Router<AppState> {
    Router::new()
        .route("/v1/uploads", post(create))
        .route("/v1/uploads/{upload_id}", get(status).delete(abort))
        .route("/v1/uploads/{upload_id}/complete", post(complete))
        .layer(DefaultBodyLimit::max(json_limit))
}

/// Routes that carry chunk bytes (streamed, sized by the session).
pub(crate) fn chunk_router() -> Router<AppState> {
    Router::new().route("/v1/uploads/{upload_id}/chunks/{n}", put(put_chunk))
}

/// Routes that stream events (no request deadline).
pub(crate) fn event_router() -> Router<AppState> {
    Router::new().route("/v1/uploads/{upload_id}/events", get(events))
}

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
    let body = serde_json::json!({
        "upload_id": upload.upload_id.to_string(),
        "chunk_size": upload.chunk_size,
        "total_chunks": upload.total_chunks,
        "expires_at": crate::ids::rfc3339(upload.expires_at),
        "received_chunks": [],
    });
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

async fn status(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let upload = state.uploads.owned(&caller.user, upload_id(&id)?).await?;
    let progress = state.uploads.progress(&upload).await?;
    Ok(Json(progress).into_response())
}

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

async fn abort(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    state.uploads.abort(&caller.user, upload_id(&id)?).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Server-sent events of one upload (the stream is `uploads::events`).
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
