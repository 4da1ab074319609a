//! tus 1.0 (`/v1/tus/`): the resumable-upload protocol stock clients speak
//! (tus-js-client, Uppy, TUSKit, tuspy), over the same upload sessions as
//! `/v1/uploads`: the URL's last segment is the upload id. Headers in and
//! out are translated here; the rules are `uploads::tus`.

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::openapi::problems;
use super::problem::{ApiError, Path};
use super::state::AppState;
use crate::auth::Caller;
use crate::ids::UploadId;
use crate::uploads::{Concat, CreateUpload, TusChecksum, TusState, UploadError};

/// The protocol version spoken.
const VERSION: &str = "1.0.0";
/// The extensions supported, without and with concatenation (turned off by
/// `limits.max_concat_uploads = 0`).
const EXTENSIONS: &str = "creation,creation-with-upload,expiration,checksum,termination";
const EXTENSIONS_WITH_CONCAT: &str =
    "creation,creation-with-upload,expiration,checksum,termination,concatenation";
/// The checksum algorithms supported (`sha1` is the protocol's must).
const CHECKSUMS: &str = "sha1,sha256";
/// The PATCH body type the protocol prescribes.
const OFFSET_STREAM: &str = "application/offset+octet-stream";

static TUS_RESUMABLE: HeaderName = HeaderName::from_static("tus-resumable");
static UPLOAD_OFFSET: HeaderName = HeaderName::from_static("upload-offset");
static UPLOAD_LENGTH: HeaderName = HeaderName::from_static("upload-length");
static UPLOAD_EXPIRES: HeaderName = HeaderName::from_static("upload-expires");
static MEDIA_ID: HeaderName = HeaderName::from_static("media-id");

/// The request headers a browser's tus client sends (allowed by CORS).
pub(crate) const REQUEST_HEADERS: &[&str] = &[
    "tus-resumable",
    "upload-length",
    "upload-offset",
    "upload-metadata",
    "upload-checksum",
    "upload-concat",
    "upload-defer-length",
    "x-http-method-override",
    "x-requested-with",
];

/// The response headers it reads (exposed by CORS).
pub(crate) const RESPONSE_HEADERS: &[&str] = &[
    "tus-resumable",
    "tus-version",
    "tus-extension",
    "tus-max-size",
    "tus-checksum-algorithm",
    "upload-offset",
    "upload-length",
    "upload-expires",
    "media-id",
];

/// Answers tus's capability request (an `OPTIONS` on `/v1/tus…` that is
/// not a CORS preflight) before the CORS layer would take it for one.
pub(crate) async fn capabilities(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    let is_capabilities = request.method() == Method::OPTIONS
        && request.uri().path().starts_with("/v1/tus")
        && !request
            .headers()
            .contains_key("access-control-request-method");
    if !is_capabilities {
        return next.run(request).await;
    }
    let mut response = options(State(state)).await;
    response
        .headers_mut()
        .insert(TUS_RESUMABLE.clone(), HeaderValue::from_static(VERSION));
    response
}

/// The tus routes (they carry upload bytes: the long deadline).
pub(crate) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_bare, options_bare))
        .routes(routes!(create, options))
        .routes(routes!(head, patch, terminate, options_upload))
        .layer(middleware::from_fn(protocol))
}

/// The protocol version a request speaks.
const RESUMABLE: &str = "`1.0.0`: other versions are answered `412`";

problems!(
    /// What creating a tus upload may answer.
    TusCreateProblems {
        400 => ["defer-length-unsupported", "upload-length-required", "invalid-tus-header", "invalid-upload-metadata", "invalid-upload-checksum", "checksum-algorithm-unsupported", "invalid-upload-concat", "partial-upload-unfinished", "invalid-size", "invalid-file-name", "invalid-blake3", "invalid-content-type"],
        409 => ["too-many-open-uploads", "completion-in-progress"],
        412 => ["tus-version-unsupported"],
        413 => ["file-too-large", "too-large-for-type", "too-many-pixels", "quota-exceeded", "past-upload-length", "body-too-large"],
        422 => ["hash-mismatch"],
        429 => ["rate-limited"],
        451 => ["content-blocked"],
        460 => ["checksum-mismatch"],
    }
);
problems!(
    /// What asking where a tus upload stands may answer.
    TusHeadProblems {
        404 => ["upload-not-found"],
        410 => ["upload-expired", "upload-aborted"],
        412 => ["tus-version-unsupported"],
    }
);
problems!(
    /// What a tus PATCH may answer.
    TusPatchProblems {
        400 => ["upload-offset-required", "invalid-tus-header", "invalid-upload-checksum", "checksum-algorithm-unsupported"],
        403 => ["upload-is-final"],
        404 => ["upload-not-found"],
        409 => ["offset-mismatch", "upload-completed", "completion-in-progress", "chunks-missing"],
        410 => ["upload-expired", "upload-aborted", "media-deleted"],
        412 => ["tus-version-unsupported"],
        413 => ["past-upload-length", "body-too-large", "too-large-for-type", "too-many-pixels"],
        415 => ["offset-stream-required"],
        422 => ["hash-mismatch"],
        423 => ["upload-locked"],
        429 => ["rate-limited"],
        451 => ["content-blocked"],
        460 => ["checksum-mismatch"],
    }
);
problems!(
    /// What terminating a tus upload may answer.
    TusDeleteProblems {
        404 => ["upload-not-found"],
        409 => ["upload-completed", "completion-in-progress"],
        412 => ["tus-version-unsupported"],
    }
);

/// Every answer says `Tus-Resumable`.
async fn protocol(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    response
        .headers_mut()
        .insert(TUS_RESUMABLE.clone(), HeaderValue::from_static(VERSION));
    response
}

/// Proof that a request speaks tus 1.0.0 (`412` with `Tus-Version`
/// otherwise). Taken after the caller: a request without a token is told
/// that first.
struct Speaks;

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for Speaks {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _: &S,
    ) -> Result<Self, ApiError> {
        if parts
            .headers
            .get(&TUS_RESUMABLE)
            .is_some_and(|v| v.as_bytes() == VERSION.as_bytes())
        {
            return Ok(Self);
        }
        Err(ApiError::new(
            StatusCode::PRECONDITION_FAILED,
            "tus-version-unsupported",
            "this server speaks tus 1.0.0 (Tus-Resumable: 1.0.0)",
        )
        .with_header(
            HeaderName::from_static("tus-version"),
            HeaderValue::from_static(VERSION),
        ))
    }
}

/// tus's capability request: the version, extensions, largest upload and
/// checksum algorithms this server supports.
#[utoipa::path(options, path = "/v1/tus/", tag = "tus",
    responses((status = 204, description = "capabilities", headers(
        ("Tus-Version" = String), ("Tus-Extension" = String), ("Tus-Max-Size" = u64),
        ("Tus-Checksum-Algorithm" = String), ("Tus-Resumable" = String)))))]
async fn options(State(state): State<AppState>) -> Response {
    let mut response = StatusCode::NO_CONTENT.into_response();
    let h = response.headers_mut();
    h.insert("tus-version", HeaderValue::from_static(VERSION));
    h.insert(
        "tus-extension",
        HeaderValue::from_static(if state.settings.limits.max_concat_uploads > 0 {
            EXTENSIONS_WITH_CONCAT
        } else {
            EXTENSIONS
        }),
    );
    h.insert(
        "tus-checksum-algorithm",
        HeaderValue::from_static(CHECKSUMS),
    );
    h.insert(
        "tus-max-size",
        HeaderValue::from(state.settings.limits.max_file_size.0),
    );
    response
}

fn number(headers: &HeaderMap, name: &HeaderName) -> Result<Option<u64>, ApiError> {
    headers
        .get(name)
        .map(|v| {
            v.to_str()
                .ok()
                .filter(|t| !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit()))
                .and_then(|t| t.parse::<u64>().ok())
                .ok_or_else(|| {
                    ApiError::bad_request(
                        "invalid-tus-header",
                        format!("{name} is a non-negative integer"),
                    )
                })
        })
        .transpose()
}

/// `Upload-Metadata`: comma-separated `key base64value` pairs (a value may
/// be absent).
fn metadata(headers: &HeaderMap) -> Result<Vec<(String, String)>, ApiError> {
    let Some(raw) = headers.get("upload-metadata") else {
        return Ok(Vec::new());
    };
    let bad = || {
        ApiError::bad_request(
            "invalid-upload-metadata",
            "Upload-Metadata is comma-separated `key base64value` pairs",
        )
    };
    let text = raw.to_str().map_err(|_| bad())?;
    let mut pairs = Vec::new();
    for pair in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let mut parts = pair.splitn(2, ' ');
        let key = parts.next().ok_or_else(bad)?.to_owned();
        let value = match parts.next() {
            Some(v) => {
                let bytes = base64::engine::general_purpose::STANDARD
                    .decode(v.trim())
                    .map_err(|_| bad())?;
                String::from_utf8(bytes).map_err(|_| bad())?
            }
            None => String::new(),
        };
        if key.is_empty() || pairs.iter().any(|(k, _)| k == &key) {
            return Err(bad());
        }
        pairs.push((key, value));
    }
    Ok(pairs)
}

/// `Upload-Checksum: ALGORITHM BASE64`.
fn checksum(headers: &HeaderMap) -> Result<Option<TusChecksum>, ApiError> {
    let Some(raw) = headers.get("upload-checksum") else {
        return Ok(None);
    };
    let bad = |what: &str| ApiError::bad_request("invalid-upload-checksum", what.to_owned());
    let text = raw.to_str().map_err(|_| bad("Upload-Checksum is ASCII"))?;
    let (algorithm, digest) = text
        .trim()
        .split_once(' ')
        .ok_or_else(|| bad("Upload-Checksum is `ALGORITHM BASE64`"))?;
    let digest = base64::engine::general_purpose::STANDARD
        .decode(digest.trim())
        .map_err(|_| bad("the checksum is base64"))?;
    match algorithm {
        "sha1" if digest.len() == 20 => Ok(Some(TusChecksum::Sha1(digest))),
        "sha256" if digest.len() == 32 => Ok(Some(TusChecksum::Sha256(digest))),
        "sha1" | "sha256" => Err(bad("the checksum is not that algorithm's length")),
        _ => Err(ApiError::bad_request(
            "checksum-algorithm-unsupported",
            format!("the checksum algorithms are {CHECKSUMS}"),
        )),
    }
}

/// An HTTP date (`Upload-Expires`).
fn http_date(ms: i64) -> HeaderValue {
    let at = time::OffsetDateTime::from_unix_timestamp(ms / 1000)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    let format = time::macros::format_description!(
        "[weekday repr:short], [day] [month repr:short] [year] [hour]:[minute]:[second] GMT"
    );
    HeaderValue::from_str(&at.format(&format).unwrap_or_default())
        .unwrap_or(HeaderValue::from_static(""))
}

/// The headers that say where an upload stands.
fn stand(response: &mut Response, state: &TusState) {
    let h = response.headers_mut();
    h.insert(UPLOAD_OFFSET.clone(), HeaderValue::from(state.offset));
    if let Some(at) = state.expires_at {
        h.insert(UPLOAD_EXPIRES.clone(), http_date(at));
    }
    if let Some(media) = state
        .media_id
        .as_deref()
        .and_then(|m| HeaderValue::from_str(m).ok())
    {
        h.insert(MEDIA_ID.clone(), media);
    }
}

fn upload_id(id: &str) -> Result<UploadId, ApiError> {
    UploadId::parse(id).ok_or_else(|| UploadError::NotFound.into())
}

fn is_offset_stream(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|t| {
            t.split(';')
                .next()
                .is_some_and(|t| t.trim().eq_ignore_ascii_case(OFFSET_STREAM))
        })
}

/// `Upload-Concat`: `partial`, or `final;` and the partial uploads' URLs
/// (absolute or not) separated by spaces.
fn concat(headers: &HeaderMap) -> Result<Option<Concat>, ApiError> {
    let Some(raw) = headers.get("upload-concat") else {
        return Ok(None);
    };
    let bad = |why: &str| {
        ApiError::from(UploadError::TusConcat(format!(
            "Upload-Concat is `partial` or `final;URL URL…`: {why}"
        )))
    };
    let text = raw.to_str().map_err(|_| bad("not ASCII"))?.trim();
    if text == "partial" {
        return Ok(Some(Concat::Partial));
    }
    let urls = text.strip_prefix("final;").ok_or_else(|| bad("neither"))?;
    let ids = urls
        .split_ascii_whitespace()
        .map(|url| {
            url.split_once("/v1/tus/")
                .map(|(_, rest)| rest.split(['?', '#']).next().unwrap_or_default())
                .and_then(UploadId::parse)
                .ok_or_else(|| bad(&format!("{url} is not an upload of this server")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Some(Concat::Final(ids, text.to_owned())))
}

/// The same capabilities, at the endpoint without its slash.
#[utoipa::path(options, path = "/v1/tus", tag = "tus",
    responses((status = 204, description = "capabilities")))]
async fn options_bare(state: State<AppState>) -> Response {
    options(state).await
}

/// The same capabilities, at an upload's URL.
#[utoipa::path(options, path = "/v1/tus/{upload_id}", tag = "tus",
    params(("upload_id" = String, Path, description = "the upload session's id")),
    responses((status = 204, description = "capabilities")))]
async fn options_upload(state: State<AppState>) -> Response {
    options(state).await
}

/// Creation, at the endpoint without its slash.
#[utoipa::path(post, path = "/v1/tus", tag = "tus",
    params(
        ("Tus-Resumable" = String, Header, description = RESUMABLE, pattern = "^1\\.0\\.0$"),
        ("Upload-Length" = Option<u64>, Header, description = "the file's length (required but for a final upload)"),
        ("Upload-Metadata" = Option<String>, Header, description = "`key base64,…`: `filename`, `filetype`, `blake3`"),
        ("Upload-Concat" = Option<String>, Header, description = "`partial`, or `final;URL URL…`"),
    ),
    responses((status = 201, description = "created", headers(("Location" = String), ("Upload-Offset" = u64), ("Upload-Expires" = String), ("Media-Id" = String))), TusCreateProblems))]
async fn create_bare(
    state: State<AppState>,
    caller: Caller,
    speaks: Speaks,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    create(state, caller, speaks, headers, body).await
}

/// Creates a tus upload (an upload session; `Location`'s last segment is
/// its id), with its first bytes when the body carries them
/// (creation-with-upload), or concatenates the caller's partial uploads
/// into one (`Upload-Concat: final;…`), completed in the same request.
///
/// A `blake3` in `Upload-Metadata` naming content the caller holds makes
/// the upload complete at once (`Media-Id`), with no byte sent.
#[utoipa::path(post, path = "/v1/tus/", tag = "tus",
    params(
        ("Tus-Resumable" = String, Header, description = RESUMABLE, pattern = "^1\\.0\\.0$"),
        ("Upload-Length" = Option<u64>, Header, description = "the file's length (required but for a final upload)"),
        ("Upload-Metadata" = Option<String>, Header, description = "`key base64,…`: `filename`, `filetype`, `blake3`"),
        ("Upload-Concat" = Option<String>, Header, description = "`partial`, or `final;URL URL…`"),
        ("Upload-Checksum" = Option<String>, Header, description = "`sha1 BASE64` or `sha256 BASE64` of the body's bytes"),
    ),
    request_body(content = Vec<u8>, content_type = "application/offset+octet-stream", description = "the first bytes (creation-with-upload)"),
    responses((status = 201, description = "created", headers(
        ("Location" = String), ("Upload-Offset" = u64), ("Upload-Expires" = String),
        ("Media-Id" = String, description = "once complete"))), TusCreateProblems))]
async fn create(
    State(state): State<AppState>,
    caller: Caller,
    _: Speaks,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    if headers.contains_key("upload-defer-length") {
        return Err(ApiError::bad_request(
            "defer-length-unsupported",
            "Upload-Defer-Length is not supported: send Upload-Length",
        ));
    }
    let concat = concat(&headers)?;
    if concat.is_some() && state.settings.limits.max_concat_uploads == 0 {
        return Err(UploadError::TusConcat("concatenation is turned off here".into()).into());
    }
    let meta = metadata(&headers)?;
    let get = |key: &str| meta.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone());
    let mut request = CreateUpload {
        file_name: get("filename").unwrap_or_else(|| "upload".into()),
        size: 0,
        content_type: get("filetype").filter(|t| !t.is_empty()),
        blake3: get("blake3").filter(|b| !b.is_empty()),
        chunk_size: None,
    };
    if let Some(Concat::Final(partials, header)) = &concat {
        // Its length is its pieces': Upload-Length is not sent, and a
        // final upload takes no bytes of its own.
        let (upload, tus_state) = state
            .uploads
            .tus_concatenate(&caller.user, request, partials, header)
            .await?;
        return Ok(created(upload.upload_id, &tus_state));
    }
    let length = number(&headers, &UPLOAD_LENGTH)?.ok_or_else(|| {
        ApiError::bad_request("upload-length-required", "Upload-Length is required")
    })?;
    let max = state.settings.limits.max_file_size.0;
    if length > max {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "file-too-large",
            format!("the largest upload is {max} bytes"),
        )
        .with("limit", max));
    }
    request.size = i64::try_from(length).unwrap_or(i64::MAX);
    let partial = concat == Some(Concat::Partial);
    let upload = state
        .uploads
        .tus_create(&caller.user, request, partial)
        .await?;
    let id = upload.upload_id;
    let done = upload.state == crate::metadata_store::UploadState::Completed;
    let mut tus_state = TusState {
        // The owner's own content (instant dedup): complete already.
        offset: if done { length } else { 0 },
        length,
        expires_at: (!done).then_some(upload.expires_at),
        media_id: upload.media_id.map(|m| m.to_string()),
        concat: None,
    };
    // creation-with-upload: the first bytes in the same request.
    let content_length = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if !done && is_offset_stream(&headers) && content_length != Some(0) {
        tus_state = state
            .uploads
            .tus_patch(
                &caller.user,
                id,
                0,
                content_length,
                checksum(&headers)?,
                body.into_data_stream(),
            )
            .await?;
    }
    Ok(created(id, &tus_state))
}

/// `201 Created` with the new upload's URL and where it stands.
fn created(id: UploadId, tus_state: &TusState) -> Response {
    let mut response = StatusCode::CREATED.into_response();
    stand(&mut response, tus_state);
    response.headers_mut().insert(
        header::LOCATION,
        HeaderValue::from_str(&format!("/v1/tus/{id}"))
            .unwrap_or(HeaderValue::from_static("/v1/tus/")),
    );
    response
}

/// Where a tus upload stands (never cached).
#[utoipa::path(head, path = "/v1/tus/{upload_id}", tag = "tus",
    params(
        ("upload_id" = String, Path, description = "the upload session's id"),
        ("Tus-Resumable" = String, Header, description = RESUMABLE, pattern = "^1\\.0\\.0$"),
    ),
    responses((status = 200, description = "where it stands", headers(
        ("Upload-Offset" = u64), ("Upload-Length" = u64), ("Cache-Control" = String),
        ("Upload-Expires" = String), ("Upload-Concat" = String), ("Media-Id" = String))), TusHeadProblems))]
async fn head(
    State(state): State<AppState>,
    caller: Caller,
    _: Speaks,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let tus_state = state
        .uploads
        .tus_state(&caller.user, upload_id(&id)?)
        .await?;
    let mut response = StatusCode::OK.into_response();
    stand(&mut response, &tus_state);
    let h = response.headers_mut();
    h.insert(UPLOAD_LENGTH.clone(), HeaderValue::from(tus_state.length));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if let Some(concat) = tus_state
        .concat
        .as_deref()
        .and_then(|c| HeaderValue::from_str(c).ok())
    {
        h.insert(HeaderName::from_static("upload-concat"), concat);
    }
    Ok(response)
}

/// Bytes at the upload's offset, any number of them; the last completes
/// the upload (`Media-Id`). A PATCH cut off midway keeps what arrived.
#[utoipa::path(patch, path = "/v1/tus/{upload_id}", tag = "tus",
    params(
        ("upload_id" = String, Path, description = "the upload session's id"),
        ("Tus-Resumable" = String, Header, description = RESUMABLE, pattern = "^1\\.0\\.0$"),
        ("Upload-Offset" = u64, Header, description = "where the bytes start: the upload's offset"),
        ("Upload-Checksum" = Option<String>, Header, description = "`sha1 BASE64` or `sha256 BASE64`: the bytes are taken only if they match"),
    ),
    request_body(content = Vec<u8>, content_type = "application/offset+octet-stream"),
    responses((status = 204, description = "taken", headers(
        ("Upload-Offset" = u64), ("Upload-Expires" = String), ("Media-Id" = String))), TusPatchProblems))]
async fn patch(
    State(state): State<AppState>,
    caller: Caller,
    _: Speaks,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    if !is_offset_stream(&headers) {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "offset-stream-required",
            format!("a PATCH carries Content-Type: {OFFSET_STREAM}"),
        ));
    }
    let offset = number(&headers, &UPLOAD_OFFSET)?.ok_or_else(|| {
        ApiError::bad_request("upload-offset-required", "Upload-Offset is required")
    })?;
    let content_length = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let tus_state = state
        .uploads
        .tus_patch(
            &caller.user,
            upload_id(&id)?,
            offset,
            content_length,
            checksum(&headers)?,
            body.into_data_stream(),
        )
        .await?;
    let mut response = StatusCode::NO_CONTENT.into_response();
    stand(&mut response, &tus_state);
    Ok(response)
}

/// Termination: the session is aborted, its multipart upload with it.
#[utoipa::path(delete, path = "/v1/tus/{upload_id}", tag = "tus",
    params(
        ("upload_id" = String, Path, description = "the upload session's id"),
        ("Tus-Resumable" = String, Header, description = RESUMABLE, pattern = "^1\\.0\\.0$"),
    ),
    responses((status = 204, description = "terminated"), TusDeleteProblems))]
async fn terminate(
    State(state): State<AppState>,
    caller: Caller,
    _: Speaks,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    state.uploads.abort(&caller.user, upload_id(&id)?).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
