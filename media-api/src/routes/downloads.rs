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

use crate::auth::Caller;
use crate::blob_store::fs::{SignedParams, UrlError};
use crate::blob_store::{BlobKey, BlobStoreError, ByteRange};
use crate::downloads::{self, RangeSpec};
use crate::ids::rfc3339;
use crate::problem::{ApiError, Json, Path, Query};
use crate::state::AppState;

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
        .uploads
        .media(&caller.user, &id)
        .await?
        .ok_or_else(|| ApiError::not_found("media-not-found", "no such media"))?;
    let url = match query.variant {
        None => downloads::presign_media(&state.backends, &state.settings, &media).await?,
        Some(name) => {
            let variants = state
                .backends
                .jobs
                .variants(&media.blake3)
                .await
                .map_err(crate::upload_session::UploadError::from)?;
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
            downloads::presign_variant(&state.backends, &state.settings, &media, variant).await?
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

/// The query of a filesystem download URL; every field is checked by the signature.
#[derive(Debug, Deserialize)]
struct SignedQuery {
    #[serde(rename = "x-expires")]
    expires: Option<String>,
    #[serde(rename = "x-type")]
    content_type: Option<String>,
    #[serde(rename = "x-disposition")]
    disposition: Option<String>,
    #[serde(rename = "x-etag")]
    etag: Option<String>,
    #[serde(rename = "x-signature")]
    signature: Option<String>,
}

fn forbidden(e: UrlError) -> ApiError {
    let code = match e {
        UrlError::SignatureInvalid => "signature-invalid",
        UrlError::Expired => "url-expired",
    };
    ApiError::new(StatusCode::FORBIDDEN, code, e.to_string())
}

fn header_value(value: &str) -> Result<HeaderValue, ApiError> {
    HeaderValue::from_str(value).map_err(ApiError::internal)
}

/// Immutable for a year: the bytes behind a key never change.
const IMMUTABLE: &str = "public, max-age=31536000, immutable";

async fn serve_blob(
    State(state): State<AppState>,
    Path(key): Path<String>,
    axum::extract::Query(query): axum::extract::Query<SignedQuery>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let Some(signer) = &state.backends.url_signer else {
        return Err(ApiError::not_found("not-found", "no such route"));
    };
    let (Some(expires), Some(content_type), Some(disposition), Some(etag), Some(signature)) = (
        query.expires.and_then(|e| e.parse::<u64>().ok()),
        query.content_type,
        query.disposition,
        query.etag,
        query.signature,
    ) else {
        return Err(forbidden(UrlError::SignatureInvalid));
    };
    let params = SignedParams {
        expires,
        content_type,
        disposition,
        etag,
    };
    signer
        .verify(&key, &params, &signature)
        .map_err(forbidden)?;
    let key =
        BlobKey::parse(&key).map_err(|_| ApiError::not_found("not-found", "no such object"))?;
    let etag = format!("\"{}\"", params.etag);
    let mut common = HeaderMap::new();
    common.insert(header::ETAG, header_value(&etag)?);
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

    let not_modified = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag || t.trim() == "*"));
    if not_modified {
        return Ok((StatusCode::NOT_MODIFIED, common).into_response());
    }

    let blobs = &state.backends.blobs;
    let range = match headers
        .get(header::RANGE)
        .and_then(|v| v.to_str().ok())
        .and_then(downloads::parse_range)
    {
        None => None,
        Some(RangeSpec::From(start, end)) => Some(ByteRange { start, end }),
        Some(RangeSpec::Suffix(n)) => {
            let size = blobs
                .head(&key)
                .await
                .map_err(crate::upload_session::UploadError::from)?
                .unwrap_or(0);
            Some(ByteRange {
                start: size.saturating_sub(n),
                end: None,
            })
        }
    };
    let body = match blobs.get(&key, range).await {
        Ok(body) => body,
        Err(BlobStoreError::NotFound) => {
            return Err(ApiError::not_found("not-found", "no such object"));
        }
        Err(BlobStoreError::RangeNotSatisfiable { size }) => {
            return Err(ApiError::new(
                StatusCode::RANGE_NOT_SATISFIABLE,
                "range-not-satisfiable",
                format!("the object is {size} bytes"),
            )
            .with_header(
                header::CONTENT_RANGE,
                header_value(&format!("bytes */{size}"))?,
            ));
        }
        Err(e) => return Err(crate::upload_session::UploadError::from(e).into()),
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
