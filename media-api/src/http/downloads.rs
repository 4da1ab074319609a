//! Downloads: `GET /v1/media/{id}/content` checks access and redirects to a
//! presigned URL; `GET /blobs/{key}` serves the filesystem store's own signed
//! URLs the way S3 serves its presigned ones.

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::media::{MEDIA_ID, media_id, media_not_found};
use super::openapi::problems;
use super::problem::{ApiError, Json, Path, Query};
use super::state::AppState;
use crate::auth::Caller;
use crate::downloads::{SignedObject, SignedQuery};
use crate::ids::rfc3339;
use crate::media::OriginalObject;

pub(crate) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(content))
        .routes(routes!(serve_blob))
}

/// Which bytes, and how.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct ContentQuery {
    /// A variant's preset name (`thumb`, `preview`, `h264_720p`, `opus`,
    /// …); the original without it.
    variant: Option<String>,
    /// `false`: the URL as JSON instead of a redirect to it.
    redirect: Option<bool>,
}

/// A presigned download URL.
#[derive(Serialize, utoipa::ToSchema)]
struct DownloadUrl {
    /// GET it, with no token, until it expires (a CDN edge may serve it).
    url: String,
    /// RFC 3339.
    expires_at: String,
}

problems!(
    /// What a download may answer.
    ContentProblems {
        404 => ["media-not-found", "variant-not-found"],
        409 => ["media-processing", "original-withheld"],
        451 => ["content-blocked"],
    }
);
problems!(
    /// What a signed URL may answer.
    BlobProblems {
        403 => ["signature-invalid", "url-expired"],
        404 => ["not-found"],
        416 => ["range-not-satisfiable"],
    }
);

/// Downloads a media item the caller may read (theirs, or an attachment in
/// one of their conversations): `302` to a presigned URL, or with
/// `?redirect=false` the URL as JSON. An image's original is served without
/// its metadata to anyone but its uploader.
#[utoipa::path(get, path = "/v1/media/{media_id}/content", tag = "media",
    params(("media_id" = String, Path, description = MEDIA_ID), ContentQuery),
    responses(
        (status = 302, description = "to the presigned URL", headers(("Location" = String), ("Cache-Control" = String))),
        (status = 200, body = DownloadUrl, description = "with `redirect=false`"),
        ContentProblems))]
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
        let body = DownloadUrl {
            url: url.url,
            expires_at: rfc3339(i64::try_from(url.expires_at).unwrap_or(i64::MAX / 1000) * 1000),
        };
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

/// The embedded store's presigned URLs, answered as S3 answers its own
/// (`ETag`, `Range`, `If-None-Match`, immutable caching); `404` when the
/// service stores its objects in S3.
#[utoipa::path(get, path = "/blobs/{*key}", tag = "media",
    params(
        ("key" = String, Path, description = "the object's key"),
        SignedQuery,
        ("Range" = Option<String>, Header, description = "`bytes=FIRST-LAST`"),
        ("If-None-Match" = Option<String>, Header, description = "an `ETag` already held"),
    ),
    responses(
        (status = 200, content_type = "*/*", body = Vec<u8>, description = "the object"),
        (status = 206, content_type = "*/*", body = Vec<u8>, description = "the range asked for"),
        (status = 304, description = "not modified"),
        BlobProblems))]
async fn serve_blob(
    State(state): State<AppState>,
    Path(key): Path<String>,
    Query(query): Query<SignedQuery>,
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
