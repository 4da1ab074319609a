//! Why an upload request failed. Each case maps to one HTTP status and
//! stable problem `code` (in `http::errors`); backend failures keep their
//! source.

use crate::blob_store::BlobStoreError;
use crate::metadata_store::MetadataError;
use crate::progress_bus::ProgressError;

/// Why an upload request failed. Each maps to one HTTP status and stable code.
#[derive(Debug, thiserror::Error)]
pub enum UploadError {
    /// tus: the PATCH's `Upload-Offset` is not where the upload stands.
    #[error("the upload is at offset {expected}")]
    TusOffsetMismatch {
        /// Where it stands.
        expected: u64,
    },
    /// tus: the bytes go past the upload's length.
    #[error("the upload is {length} bytes long; these bytes go past its end")]
    TusPastLength {
        /// Its length.
        length: u64,
    },
    /// tus: the PATCH's bytes do not hash to its `Upload-Checksum`.
    #[error("the bytes do not match Upload-Checksum; none of them were taken")]
    TusChecksumMismatch,
    /// tus: a PATCH to a final (concatenated) upload, which takes no bytes.
    #[error("a final upload is made of its partial uploads and takes no bytes")]
    TusFinalUpload,
    /// tus: an `Upload-Concat` that cannot be taken.
    #[error("{0}")]
    TusConcat(String),
    /// tus: a partial upload named in a final one has not all its bytes yet.
    #[error("partial upload {0} has not received all its bytes")]
    TusPartialUnfinished(String),
    /// tus: another PATCH of this upload is under way.
    #[error("another request is writing to this upload")]
    TusLocked,
    /// A quota or rate of the caller's is spent.
    #[error("{0}")]
    Refused(#[from] crate::quotas::Refused),
    /// Unknown, someone else's, or malformed id.
    #[error("no such upload")]
    NotFound,
    /// The session expired.
    #[error("the upload session has expired")]
    Expired,
    /// The session was aborted.
    #[error("the upload session was aborted")]
    Aborted,
    /// The session completed; it takes no more chunks.
    #[error("the upload is already completed")]
    AlreadyCompleted,
    /// The session completed, and its owner has deleted the media since.
    #[error("the upload completed, and its media has been deleted since")]
    MediaDeleted,
    /// Another `complete` call is running.
    #[error("another completion of this upload is in progress")]
    CompletionInProgress,
    /// `size` is not a positive integer.
    #[error("{0}")]
    InvalidSize(String),
    /// `size` is over the configured limit.
    #[error("the file is {size} bytes; the limit is {limit}")]
    FileTooLarge {
        /// Declared size.
        size: u64,
        /// The limit.
        limit: u64,
    },
    /// The content's type has a lower size limit than its size.
    #[error("a {content_type} file may be at most {limit} bytes; this one is {size}")]
    TooLargeForType {
        /// The sniffed (or declared) type.
        content_type: String,
        /// Its size.
        size: u64,
        /// The type's limit.
        limit: u64,
    },
    /// An image whose header states more pixels than processing takes (a
    /// decompression bomb, or a scan too large to show).
    #[error("the image is {width}×{height} pixels; at most {limit} pixels are taken")]
    TooManyPixels {
        /// As its header says.
        width: u64,
        /// As its header says.
        height: u64,
        /// `presets.max_image_pixels`.
        limit: u64,
    },
    /// A bad file name.
    #[error("{0}")]
    InvalidFileName(String),
    /// A malformed `blake3`.
    #[error("{0}")]
    InvalidBlake3(String),
    /// A requested chunk size that breaks the rules.
    #[error("{0}")]
    InvalidChunkSize(String),
    /// A bad `content_type`.
    #[error("{0}")]
    InvalidContentType(String),
    /// Chunk number is not a number.
    #[error("chunk number {0:?} is not a positive integer")]
    InvalidChunkNumber(String),
    /// Chunk number is 0 or past the last.
    #[error("chunk {number} is out of range 1..={total}")]
    ChunkOutOfRange {
        /// The number sent.
        number: u64,
        /// The last chunk.
        total: u32,
    },
    /// The body is longer or shorter than the chunk must be.
    #[error("chunk {number} must be exactly {expected} bytes{}", got.map(|g| format!(", got {g}")).unwrap_or_default())]
    ChunkSizeMismatch {
        /// The chunk.
        number: u32,
        /// Its required size.
        expected: u64,
        /// What was sent, when known.
        got: Option<u64>,
    },
    /// A malformed `Content-Digest`.
    #[error("invalid Content-Digest: {0}")]
    InvalidContentDigest(String),
    /// The body does not match its `Content-Digest`.
    #[error("the chunk's SHA-256 does not match its Content-Digest")]
    ContentDigestMismatch,
    /// The client went away mid-body.
    #[error("the chunk body ended early: {0}")]
    ChunkIncomplete(String),
    /// The body arrived slower than `limits.min_body_rate`.
    #[error("the body arrived slower than {rate} bytes a second; send it again")]
    BodyTooSlow {
        /// The least rate, bytes a second.
        rate: u64,
    },
    /// The chunk was received before with other bytes.
    #[error("chunk {0} was already received with different bytes")]
    ChunkConflict(u32),
    /// `complete` before every chunk arrived.
    #[error("{} chunks are missing", .0.len())]
    ChunksMissing(Vec<u32>),
    /// The content is not what the client declared.
    #[error("the content's BLAKE3 is {actual}, not the declared {declared}")]
    HashMismatch {
        /// What the client declared.
        declared: String,
        /// What the bytes hash to.
        actual: String,
    },
    /// A one-request upload over its limit.
    #[error("the body is over the {limit}-byte limit of a one-request upload")]
    BodyTooLarge {
        /// The limit.
        limit: u64,
    },
    /// The metadata store failed or is unreachable.
    #[error("metadata store: {0}")]
    Metadata(#[from] MetadataError),
    /// The blob store failed or is unreachable.
    #[error("blob store: {0}")]
    Blobs(#[from] BlobStoreError),
    /// The progress bus failed or is unreachable.
    #[error("progress bus: {0}")]
    Progress(#[from] ProgressError),
    /// Something else on our side failed.
    #[error("{0}")]
    Backend(String),
}
