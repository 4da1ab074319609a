//! What the metadata store keeps, as the domains see it: each row parsed
//! once into typed values, and the states with their stored names.

use super::MetadataError;
use crate::ids::{Blake3, BlobKey, FileName, MediaId, UploadId, UserId};

/// Where an upload session is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UploadState {
    /// Taking chunks.
    Receiving,
    /// One `complete` call is joining the parts; chunks are no longer taken.
    Completing,
    /// Done: the media exists.
    Completed,
    /// Cancelled by its owner, or by a hash mismatch at completion.
    Aborted,
    /// Not completed in time; the janitor dropped its parts.
    Expired,
}

impl UploadState {
    /// The stored (and API) name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Receiving => "receiving",
            Self::Completing => "completing",
            Self::Completed => "completed",
            Self::Aborted => "aborted",
            Self::Expired => "expired",
        }
    }

    /// Reads the stored name.
    pub fn parse(value: &str) -> Result<Self, MetadataError> {
        Ok(match value {
            "receiving" => Self::Receiving,
            "completing" => Self::Completing,
            "completed" => Self::Completed,
            "aborted" => Self::Aborted,
            "expired" => Self::Expired,
            other => {
                return Err(MetadataError::Query(format!(
                    "unknown upload state {other:?}"
                )));
            }
        })
    }
}

/// An upload session as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadRecord {
    /// Its id.
    pub upload_id: UploadId,
    /// Who made it.
    pub owner: UserId,
    /// The file name the client gave (checked).
    pub file_name: FileName,
    /// Declared size in bytes.
    pub size: u64,
    /// The content type the client claimed (informational; completion sniffs).
    pub declared_type: Option<String>,
    /// The BLAKE3 the client declared, checked at completion.
    pub declared_blake3: Option<Blake3>,
    /// Bytes per chunk (the last may be shorter).
    pub chunk_size: u64,
    /// Number of chunks.
    pub total_chunks: u32,
    /// Where it is in its life.
    pub state: UploadState,
    /// The object key the parts complete to.
    pub storage_key: BlobKey,
    /// The blob store's multipart upload id.
    pub multipart_id: String,
    /// The media created at completion.
    pub media_id: Option<MediaId>,
    /// Unix ms.
    pub created_at: i64,
    /// Unix ms.
    pub updated_at: i64,
    /// Unix ms after which the session is dead.
    pub expires_at: i64,
    /// Once completed: whether the completion answered `deduplicated`, kept
    /// so that a repeated `complete` answers as the first did.
    pub deduplicated: bool,
}

impl UploadRecord {
    /// Size of chunk `n` (1-based): `chunk_size`, or the remainder for the last.
    pub fn chunk_len(&self, n: u32) -> u64 {
        if n == self.total_chunks {
            self.size - u64::from(self.total_chunks - 1) * self.chunk_size
        } else {
            self.chunk_size
        }
    }
}

/// One received chunk, durable before its 200.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChunkRecord {
    /// 1-based chunk number (= S3 part number).
    pub number: u32,
    /// Bytes.
    pub size: u64,
    /// SHA-256 of the chunk.
    pub sha256: [u8; 32],
    /// BLAKE3 chaining value (the root hash for a one-chunk upload).
    pub chaining_value: [u8; 32],
    /// The part's ETag in the blob store.
    pub etag: String,
}

/// What recording a chunk did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecordOutcome {
    /// This call recorded it.
    Recorded,
    /// It was recorded before (by this client's earlier try or a racing one).
    AlreadyRecorded(ChunkRecord),
    /// The session no longer takes chunks.
    NotReceiving(UploadState),
}

/// A distinct content, about to be referenced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewContent {
    /// Its BLAKE3.
    pub blake3: Blake3,
    /// Bytes.
    pub size: u64,
    /// The sniffed MIME type.
    pub content_type: String,
    /// Where the bytes were just stored.
    pub storage_key: BlobKey,
    /// The upload it came from, told when processing is done.
    pub origin: Option<UploadId>,
    /// What processing it gets (decided by the processing domain, not here).
    pub processing: Processing,
    /// What is known of it before processing (an image's dimensions from
    /// its header): its probe until processing replaces that, and what a
    /// copy shown as new content shows (kept as `header_probe`).
    pub probe: Option<serde_json::Value>,
}

/// What processing a new content gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Processing {
    /// A job is enqueued with the content.
    Pending,
    /// Not a type that is processed: the original is all there is.
    Skipped,
    /// Refused at once, with the reason shown to its owner.
    Failed(String),
}

/// One user's media item, joined with its blob.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaRecord {
    /// Its id.
    pub media_id: MediaId,
    /// Who owns it.
    pub owner: UserId,
    /// The content's BLAKE3.
    pub blake3: Blake3,
    /// Bytes.
    pub size: u64,
    /// Sniffed MIME type.
    pub content_type: String,
    /// The name it was uploaded under.
    pub file_name: FileName,
    /// Processing status (its content's).
    pub status: MediaStatus,
    /// Why processing failed.
    pub failure: Option<String>,
    /// What probing found.
    pub probe: Option<serde_json::Value>,
    /// Where the blob's bytes are.
    pub storage_key: BlobKey,
    /// Unix ms.
    pub created_at: i64,
    /// Until when (Unix ms) it shows `processing` whatever its content's
    /// state: a media item made from content its owner did not hold before
    /// goes through `processing` as new content would, so that no one learns
    /// from the answer that someone else stored it. `status`, `failure` and
    /// `probe` are already masked when this is in the future.
    pub shown_after: Option<i64>,
    /// Its content is blocked by the operators: nothing of it is served.
    pub blocked: bool,
}

/// A media item's processing status: its content's, as the API shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum MediaStatus {
    /// A job is queued or running.
    Processing,
    /// Done: its variants are made, or it is not a type that has any.
    Ready,
    /// Processing failed; the original stays downloadable.
    Failed,
}

impl MediaStatus {
    /// The API's name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Processing => "processing",
            Self::Ready => "ready",
            Self::Failed => "failed",
        }
    }

    /// From the content's stored `blobs.processing` (`pending`, `ready`,
    /// `skipped` or `failed`).
    pub fn from_processing(value: &str) -> Result<Self, MetadataError> {
        Ok(match value {
            "pending" => Self::Processing,
            "ready" | "skipped" => Self::Ready,
            "failed" => Self::Failed,
            other => {
                return Err(MetadataError::Query(format!(
                    "unknown processing state {other:?}"
                )));
            }
        })
    }
}

/// What creating a media item did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Created {
    /// The media.
    pub media: MediaRecord,
    /// True when the content was stored already: the new bytes are redundant
    /// and the caller must delete the object at `NewContent::storage_key`.
    pub deduplicated: bool,
    /// True when the owner held this content already (another media item of
    /// theirs): the only dedup the API may tell them of.
    pub owned_before: bool,
}

/// A distinct content as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlobRecord {
    /// Its BLAKE3.
    pub blake3: Blake3,
    /// Bytes.
    pub size: u64,
    /// Where its bytes are.
    pub storage_key: BlobKey,
}

/// What one user holds, for their quota.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    /// Media items they own.
    pub media: u64,
    /// The sizes of those media items' contents, summed.
    pub media_bytes: u64,
    /// Upload sessions still open (receiving or completing).
    pub open_uploads: u64,
    /// Those sessions' declared sizes, summed.
    pub open_upload_bytes: u64,
}
