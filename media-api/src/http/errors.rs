//! The one place where every domain error becomes a problem response: its
//! status and stable `code`. A backend failure is logged with its whole
//! chain of causes and answered `503 backend-unavailable` with `Retry-After`;
//! its details never reach the client.

use axum::http::{HeaderValue, StatusCode, header};

use super::problem::ApiError;
use crate::auth::AuthError;
use crate::blob_store::BlobStoreError;
use crate::blob_store::signed_url::UrlError;
use crate::chat::ChatError;
use crate::downloads::DownloadError;
use crate::media::ListError;
use crate::metadata_store::MetadataError;
use crate::quotas::Refused;
use crate::uploads::UploadError;

/// 503 for a backend that failed; the cause goes to the log, with its sources.
fn backend_unavailable(cause: &(dyn std::error::Error + 'static)) -> ApiError {
    let mut chain = cause.to_string();
    let mut source = cause.source();
    while let Some(s) = source {
        chain.push_str(": ");
        chain.push_str(&s.to_string());
        source = s.source();
    }
    tracing::error!(error = %chain, "backend failure");
    ApiError::unavailable(
        "backend-unavailable",
        "a backend is unavailable; retry shortly",
    )
    .with_header(header::RETRY_AFTER, header::HeaderValue::from_static("1"))
}

impl From<AuthError> for ApiError {
    fn from(e: AuthError) -> Self {
        ApiError::unauthorized(e.code(), e.to_string())
    }
}

impl From<MetadataError> for ApiError {
    fn from(e: MetadataError) -> Self {
        match e {
            MetadataError::ContentBlocked => content_blocked(),
            e => backend_unavailable(&e),
        }
    }
}

/// `451 content-blocked`: the operators blocked this content.
pub(crate) fn content_blocked() -> ApiError {
    ApiError::new(
        StatusCode::UNAVAILABLE_FOR_LEGAL_REASONS,
        "content-blocked",
        "this content is blocked by the service's operators",
    )
}

impl From<BlobStoreError> for ApiError {
    fn from(e: BlobStoreError) -> Self {
        backend_unavailable(&e)
    }
}

impl From<ListError> for ApiError {
    fn from(e: ListError) -> Self {
        match e {
            ListError::InvalidLimit(_) => ApiError::bad_request("invalid-limit", e.to_string()),
            ListError::InvalidCursor => ApiError::bad_request("invalid-cursor", e.to_string()),
            ListError::Backend(e) => e.into(),
        }
    }
}

impl From<DownloadError> for ApiError {
    fn from(e: DownloadError) -> Self {
        match e {
            DownloadError::NotSigning => ApiError::not_found("not-found", "no such route"),
            DownloadError::Url(url) => {
                let code = match url {
                    UrlError::SignatureInvalid => "signature-invalid",
                    UrlError::Expired => "url-expired",
                };
                ApiError::new(StatusCode::FORBIDDEN, code, url.to_string())
            }
            DownloadError::NotFound => ApiError::not_found("not-found", "no such object"),
            DownloadError::RangeNotSatisfiable { size } => ApiError::new(
                StatusCode::RANGE_NOT_SATISFIABLE,
                "range-not-satisfiable",
                format!("the object is {size} bytes"),
            )
            .with_header(
                header::CONTENT_RANGE,
                header::HeaderValue::from_str(&format!("bytes */{size}"))
                    .unwrap_or(header::HeaderValue::from_static("bytes */0")),
            ),
            DownloadError::Blobs(e) => backend_unavailable(&e),
        }
    }
}

impl From<Refused> for ApiError {
    fn from(e: Refused) -> Self {
        let detail = e.to_string();
        match e {
            Refused::Rate {
                name,
                limit,
                retry_after,
            } => {
                let seconds = retry_after.as_secs_f64().ceil().max(1.0) as u64;
                ApiError::new(StatusCode::TOO_MANY_REQUESTS, "rate-limited", detail)
                    .with("quota", name)
                    .with("limit", limit)
                    .with("retry_after", seconds)
                    .with_header(header::RETRY_AFTER, HeaderValue::from(seconds))
            }
            Refused::Stored { limit, used, .. } => {
                ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "quota-exceeded", detail)
                    .with("limit", limit)
                    .with("used", used)
            }
            Refused::OpenUploads { limit } => {
                ApiError::conflict("too-many-open-uploads", detail).with("limit", limit)
            }
        }
    }
}

impl From<UploadError> for ApiError {
    fn from(e: UploadError) -> Self {
        use UploadError as U;
        let detail = e.to_string();
        match &e {
            U::Refused(r) => r.clone().into(),
            U::NotFound => ApiError::not_found("upload-not-found", detail),
            U::Expired => ApiError::new(StatusCode::GONE, "upload-expired", detail),
            U::Aborted => ApiError::new(StatusCode::GONE, "upload-aborted", detail),
            U::AlreadyCompleted => ApiError::conflict("upload-completed", detail),
            U::MediaDeleted => ApiError::new(StatusCode::GONE, "media-deleted", detail),
            U::CompletionInProgress => ApiError::conflict("completion-in-progress", detail),
            U::InvalidSize(_) => ApiError::bad_request("invalid-size", detail),
            U::FileTooLarge { limit, .. } => {
                ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "file-too-large", detail)
                    .with("limit", limit)
            }
            U::TooLargeForType {
                content_type,
                limit,
                ..
            } => ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "too-large-for-type", detail)
                .with("limit", limit)
                .with("content_type", content_type),
            U::TooManyPixels {
                width,
                height,
                limit,
            } => ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "too-many-pixels", detail)
                .with("limit", limit)
                .with("width", width)
                .with("height", height),
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
            U::BodyTooSlow { rate } => {
                ApiError::new(StatusCode::REQUEST_TIMEOUT, "body-too-slow", detail)
                    .with("min_rate", rate)
            }
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
            U::TusOffsetMismatch { expected } => {
                ApiError::conflict("offset-mismatch", detail).with("offset", expected)
            }
            U::TusPastLength { length } => {
                ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "past-upload-length", detail)
                    .with("length", length)
            }
            U::TusFinalUpload => ApiError::new(StatusCode::FORBIDDEN, "upload-is-final", detail),
            U::TusConcat(_) => ApiError::bad_request("invalid-upload-concat", detail),
            U::TusPartialUnfinished(_) => {
                ApiError::bad_request("partial-upload-unfinished", detail)
            }
            U::TusLocked => ApiError::new(StatusCode::LOCKED, "upload-locked", detail),
            U::TusChecksumMismatch => ApiError::new(
                StatusCode::from_u16(460).unwrap_or(StatusCode::BAD_REQUEST),
                "checksum-mismatch",
                detail,
            ),
            U::Metadata(MetadataError::ContentBlocked) => content_blocked(),
            U::Metadata(_) | U::Blobs(_) | U::Progress(_) | U::Backend(_) => {
                backend_unavailable(&e)
            }
        }
    }
}

impl From<ChatError> for ApiError {
    fn from(e: ChatError) -> Self {
        use ChatError as C;
        use chat_core::conversation::MembershipError as M;
        use chat_core::message::MessageError as E;
        use chat_core::receipts::ReceiptError as R;
        let detail = e.to_string();
        let forbidden = |code| ApiError::new(StatusCode::FORBIDDEN, code, detail.clone());
        match &e {
            C::Refused(r) => r.clone().into(),
            C::InvalidKind => ApiError::bad_request("invalid-conversation-kind", detail),
            C::InvalidMembers(_) => ApiError::bad_request("invalid-members", detail),
            C::InvalidUser(_) => ApiError::bad_request("invalid-user-id", detail),
            C::InvalidRole => ApiError::bad_request("invalid-role", detail),
            C::GroupFull(limit) => ApiError::conflict("group-full", detail).with("limit", limit),
            C::ConversationNotFound => ApiError::not_found("conversation-not-found", detail),
            C::MessageNotFound => ApiError::not_found("message-not-found", detail),
            C::MemberNotFound => ApiError::not_found("member-not-found", detail),
            C::AlreadyMember => ApiError::conflict("already-a-member", detail),
            C::Membership(m) => match m {
                M::NotAGroup => ApiError::conflict("not-a-group", detail),
                M::NotAdmin => forbidden("not-conversation-admin"),
                M::NotOwner => forbidden("not-conversation-owner"),
                M::Outranked => forbidden("outranked"),
                M::OwnerMustHandOver => ApiError::conflict("owner-must-hand-over", detail),
            },
            C::Message(m) => match m {
                E::Empty => ApiError::bad_request("empty-message", detail),
                E::TextTooLong { limit, .. } => {
                    ApiError::bad_request("text-too-long", detail).with("limit", limit)
                }
                E::TooManyAttachments { limit, .. } => {
                    ApiError::bad_request("too-many-attachments", detail).with("limit", limit)
                }
                E::InvalidTitle { .. } => ApiError::bad_request("invalid-title", detail),
                E::NotSender => forbidden("not-message-sender"),
                E::EditWindowPassed(_) => ApiError::conflict("edit-window-passed", detail),
                E::DeleteWindowPassed(_) => ApiError::conflict("delete-window-passed", detail),
                E::Deleted => ApiError::conflict("message-deleted", detail),
            },
            C::Receipt(r) => match r {
                R::Empty => ApiError::bad_request("empty-receipt", detail),
                R::PastLast { last_seq, .. } => {
                    ApiError::bad_request("receipt-past-last-seq", detail)
                        .with("last_seq", last_seq)
                }
            },
            C::SystemMessage => ApiError::conflict("system-message", detail),
            C::InvalidClientMessageId => ApiError::bad_request("invalid-client-message-id", detail),
            C::ReplyNotFound => ApiError::bad_request("reply-not-found", detail),
            C::MediaNotFound => ApiError::not_found("media-not-found", detail),
            C::ContentBlocked => content_blocked(),
            C::InvalidCaption(_) => ApiError::bad_request("invalid-caption", detail),
            C::InvalidForwardTargets(limit) => {
                ApiError::bad_request("invalid-forward-targets", detail).with("limit", limit)
            }
            C::InvalidLimit(_) => ApiError::bad_request("invalid-limit", detail),
            C::InvalidRange => ApiError::bad_request("invalid-range", detail),
            C::InvalidCursor => ApiError::bad_request("invalid-cursor", detail),
            C::SyncCursorExpired => ApiError::new(StatusCode::GONE, "sync-cursor-expired", detail),
            C::Contended => ApiError::conflict("conversation-changed", detail)
                .with_header(header::RETRY_AFTER, header::HeaderValue::from_static("1")),
            C::Backend(inner) => backend_unavailable(inner),
        }
    }
}
