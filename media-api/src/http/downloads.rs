//! Downloads: `GET /v1/media/{id}/content` checks access and redirects to a
//! presigned URL; `GET /blobs/{key}` serves the filesystem store's own signed
//! URLs the way S3 serves its presigned ones.

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Deserialize;

use super::media::{media_id, media_not_found};
use super::problem::{ApiError, Json, Path, Query};
use super::state::AppState;
use crate::auth::Caller;
use crate::downloads::{SignedObject, SignedQuery};
use crate::ids::rfc3339;
use crate::media::OriginalObject;

pub(crate) fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/media/{media_id}/content", get(content))
        .route("/blobs/{*key}", get(serve_blob))
}

#[derive(Debug, Deserialize)]
struct ContentQuery {
    variant: Option<String>,
    redirect: Option<bool>,
}

/// 302 to a presigned URL, or with `?redirect=false` the URL as JSON.
async fn content(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    Query(query): Query<ContentQuery>,
) -> Result<Response, ApiError> {
    let media = state
        .media
        .readable(&caller.user, media_id(&id)?)
        .await?
        .ok_or_else(media_not_found)?;
    if media.blocked {
        return Err(super::errors::content_blocked());
    }
    let url = match query.variant {
        None => match state.media.original(&caller.user, &media).await? {
            OriginalObject::Exact => state.downloads.presign_media(&media).await?,
            OriginalObject::Stripped(variant) => {
                state.downloads.presign_variant(&media, &variant).await?
            }
            OriginalObject::NotYet => {
                return Err(ApiError::conflict(
                    "media-processing",
                    "the original without its metadata is still being made; retry shortly",
                )
                .with_header(header::RETRY_AFTER, HeaderValue::from_static("2")));
            }
            OriginalObject::Withheld => {
                return Err(ApiError::conflict(
                    "original-withheld",
                    "this image could not be processed, so its original stays with its \
                     uploader (it could carry where it was taken)",
                ));
            }
        },
        Some(name) => {
            let variants = state.media.variants(&media).await?;
            // The newest version of the preset.
            let variant = variants
                .iter()
                .filter(|v| v.preset == name)
                .max_by_key(|v| v.version)
                .ok_or_else(|| {
                    ApiError::not_found(
                        "variant-not-found",
                        format!("this media has no variant {name:?} (yet)"),
                    )
                })?;
            state.downloads.presign_variant(&media, variant).await?
        }
    };
    let cache = HeaderValue::from_str(&format!("private, max-age={}", url.max_age))
        .map_err(ApiError::internal)?;
    if query.redirect == Some(false) {
        let body = serde_json::json!({
            "url": url.url,
            "expires_at": rfc3339(i64::try_from(url.expires_at).unwrap_or(i64::MAX / 1000) * 1000),
        });
        return Ok(([(header::CACHE_CONTROL, cache)], Json(body)).into_response());
    }
    let location = HeaderValue::from_str(&url.url).map_err(ApiError::internal)?;
    Ok((
        StatusCode::FOUND,
        [(header::LOCATION, location), (header::CACHE_CONTROL, cache)],
    )
        .into_response())
}

fn header_value(value: &str) -> Result<HeaderValue, ApiError> {
    HeaderValue::from_str(value).map_err(ApiError::internal)
}

/// Immutable for a year: the bytes behind a key never change.
const IMMUTABLE: &str = "public, max-age=31536000, immutable";

/// The filesystem store's signed URLs, answered as S3 answers presigned ones.
async fn serve_blob(
    State(state): State<AppState>,
    Path(key): Path<String>,
    axum::extract::Query(query): axum::extract::Query<SignedQuery>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let text = |name| {
        headers
            .get(name)
            .and_then(|v: &HeaderValue| v.to_str().ok())
    };
    let object = state
        .downloads
        .serve_signed(
            &key,
            query,
            text(header::IF_NONE_MATCH),
            text(header::RANGE),
        )
        .await?;
    let params = match &object {
        SignedObject::NotModified(params) | SignedObject::Body { params, .. } => params,
    };
    let mut common = HeaderMap::new();
    common.insert(header::ETAG, header_value(&format!("\"{}\"", params.etag))?);
    common.insert(header::CACHE_CONTROL, HeaderValue::from_static(IMMUTABLE));
    common.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    common.insert(header::CONTENT_TYPE, header_value(&params.content_type)?);
    common.insert(
        header::CONTENT_DISPOSITION,
        header_value(&params.disposition)?,
    );
    common.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    let SignedObject::Body { range, body, .. } = object else {
        return Ok((StatusCode::NOT_MODIFIED, common).into_response());
    };
    let mut response_headers = common;
    response_headers.insert(header::CONTENT_LENGTH, header_value(&body.len.to_string())?);
    let status = match range {
        Some(r) => {
            let first = r.start;
            let last = first + body.len.saturating_sub(1);
            response_headers.insert(
                header::CONTENT_RANGE,
                header_value(&format!("bytes {first}-{last}/{}", body.total))?,
            );
            StatusCode::PARTIAL_CONTENT
        }
        None => StatusCode::OK,
    };
    Ok((status, response_headers, Body::from_stream(body.stream)).into_response())
}
