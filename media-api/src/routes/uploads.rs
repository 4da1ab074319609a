//! `/v1/uploads`: chunked, resumable upload sessions. The rules live in
//! `upload_session`; this module translates HTTP to and from them.

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

use crate::auth::Caller;
use crate::chunk_hash::parse_content_digest;
use crate::problem::{ApiError, Json, Path};
use crate::state::AppState;
use crate::upload_session::{ChunkPut, CreateUpload, Opened, UploadError, topic};

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

impl From<UploadError> for ApiError {
    fn from(e: UploadError) -> Self {
        use UploadError as U;
        let detail = e.to_string();
        match e {
            U::NotFound => ApiError::not_found("upload-not-found", detail),
            U::Expired => ApiError::new(StatusCode::GONE, "upload-expired", detail),
            U::Aborted => ApiError::new(StatusCode::GONE, "upload-aborted", detail),
            U::AlreadyCompleted => ApiError::conflict("upload-completed", detail),
            U::CompletionInProgress => ApiError::conflict("completion-in-progress", detail),
            U::InvalidSize(_) => ApiError::bad_request("invalid-size", detail),
            U::FileTooLarge { limit, .. } => {
                ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "file-too-large", detail)
                    .with("limit", limit)
            }
            U::InvalidFileName(_) => ApiError::bad_request("invalid-file-name", detail),
            U::InvalidBlake3(_) => ApiError::bad_request("invalid-blake3", detail),
            U::InvalidChunkSize(_) => ApiError::bad_request("invalid-chunk-size", detail),
            U::InvalidContentType(_) => ApiError::bad_request("invalid-content-type", detail),
            U::InvalidChunkNumber(_) => ApiError::bad_request("invalid-chunk-number", detail),
            U::ChunkOutOfRange { .. } => ApiError::bad_request("chunk-out-of-range", detail),
            U::ChunkSizeMismatch { expected, .. } => {
                ApiError::bad_request("chunk-size-mismatch", detail).with("expected_size", expected)
            }
            U::InvalidContentDigest(_) => ApiError::bad_request("invalid-content-digest", detail),
            U::ContentDigestMismatch => ApiError::bad_request("content-digest-mismatch", detail),
            U::ChunkIncomplete(_) => ApiError::bad_request("chunk-incomplete", detail),
            U::ChunkConflict(_) => ApiError::conflict("chunk-conflict", detail),
            U::ChunksMissing(missing) => {
                ApiError::conflict("chunks-missing", detail).with("missing_chunks", missing)
            }
            U::HashMismatch { declared, actual } => {
                ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "hash-mismatch", detail)
                    .with("declared_blake3", declared)
                    .with("actual_blake3", actual)
            }
            U::BodyTooLarge { limit } => {
                ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "body-too-large", detail)
                    .with("limit", limit)
            }
            U::Backend(cause) => {
                tracing::error!(error = %cause, "backend failure");
                ApiError::unavailable(
                    "backend-unavailable",
                    "a backend is unavailable; retry shortly",
                )
                .with_header(header::RETRY_AFTER, header::HeaderValue::from_static("1"))
            }
        }
    }
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
    let upload = state.uploads.owned(&caller.user, &id).await?;
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
        number: n,
        content_length,
        sha256,
    };
    let receipt = state
        .uploads
        .put_chunk(&caller.user, &id, put, body.into_data_stream())
        .await?;
    Ok(Json(receipt).into_response())
}

async fn complete(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let completion = state.uploads.complete(&caller.user, &id).await?;
    Ok(Json(completion).into_response())
}

async fn abort(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    state.uploads.abort(&caller.user, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Least time between two recomputed `progress` events on one stream.
const PROGRESS_EVERY: Duration = Duration::from_millis(100);

/// Server-sent events: a `progress` snapshot first, then `chunk` and
/// `progress` as chunks stream in (from whichever node takes them), then
/// `completed` (or `aborted`, which ends the stream). A completed upload's
/// stream goes on until its media is processed: a last `processed` event
/// carries the media's status (`ready` or `failed`) and its variants.
async fn events(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Sse<impl Stream<Item = Result<SseEvent, Infallible>>>, ApiError> {
    let upload = state.uploads.owned(&caller.user, &id).await?;
    let mut bus_events = state
        .uploads
        .events()
        .subscribe(&topic(upload.upload_id))
        .await
        .map_err(|e| ApiError::from(UploadError::Backend(e.to_string())))?;
    let (tx, rx) = tokio::sync::mpsc::channel::<SseEvent>(64);
    let uploads = state.uploads.clone();
    let stop = state.shutdown.clone();
    tokio::spawn(async move {
        let snapshot = |upload| {
            let uploads = uploads.clone();
            async move {
                let progress = uploads.progress(&upload).await.ok()?;
                SseEvent::default()
                    .event("progress")
                    .json_data(progress)
                    .ok()
            }
        };
        // Re-read the session: it may have completed between subscribing and now.
        let Ok(current) = uploads.owned(&caller.user, &id).await else {
            return;
        };
        // The media's processing outcome once it has one (`None` while it is processing).
        let settled = |media_id: Option<String>| {
            let (state, user) = (state.clone(), caller.user.clone());
            async move {
                let view = super::media::media_view(&state, &user, &media_id?)
                    .await
                    .ok()??;
                (view.status != "processing").then(|| {
                    SseEvent::default()
                        .event("processed")
                        .json_data(&view)
                        .unwrap_or_default()
                })
            }
        };
        if let Some(first) = snapshot(current.clone()).await
            && tx.send(first).await.is_err()
        {
            return;
        }
        let mut media_id = current.media_id.map(|m| m.to_string());
        match current.state.as_str() {
            "aborted" => return,
            "completed" => {
                if let Some(done) = settled(media_id.clone()).await {
                    let _ = tx.send(done).await;
                    return;
                }
            }
            _ => {}
        }
        let mut last_progress = tokio::time::Instant::now();
        // A content already being processed for another upload announces on
        // that upload's topic: look again now and then.
        let mut recheck = tokio::time::interval(Duration::from_secs(2));
        loop {
            let event = tokio::select! {
                () = stop.cancelled() => return,
                () = tx.closed() => return,
                _ = recheck.tick(), if media_id.is_some() => {
                    if let Some(done) = settled(media_id.clone()).await {
                        let _ = tx.send(done).await;
                        return;
                    }
                    continue;
                }
                e = bus_events.next() => match e { Some(e) => e, None => return },
            };
            match event.kind.as_str() {
                "aborted" => {
                    let sse = SseEvent::default()
                        .event("aborted")
                        .json_data(&event.data)
                        .unwrap_or_default();
                    let _ = tx.send(sse).await;
                    return;
                }
                "completed" => {
                    media_id = event.data["media_id"].as_str().map(str::to_owned);
                    let sse = SseEvent::default()
                        .event("completed")
                        .json_data(&event.data)
                        .unwrap_or_default();
                    if tx.send(sse).await.is_err() {
                        return;
                    }
                    if let Some(done) = settled(media_id.clone()).await {
                        let _ = tx.send(done).await;
                        return;
                    }
                    continue;
                }
                "processed" => {
                    if let Some(done) = settled(media_id.clone()).await {
                        let _ = tx.send(done).await;
                        return;
                    }
                    continue;
                }
                "progress" => {}
                _ => {
                    let sse = SseEvent::default()
                        .event(event.kind.clone())
                        .json_data(&event.data)
                        .unwrap_or_default();
                    if tx.send(sse).await.is_err() {
                        return;
                    }
                }
            }
            if event.kind == "chunk" || last_progress.elapsed() >= PROGRESS_EVERY {
                last_progress = tokio::time::Instant::now();
                if let Some(p) = snapshot(current.clone()).await
                    && tx.send(p).await.is_err()
                {
                    return;
                }
            }
        }
    });
    let stream =
        futures_util::stream::unfold(
            rx,
            |mut rx| async move { rx.recv().await.map(|e| (Ok(e), rx)) },
        );
    Ok(Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))))
}
