//! The documents the upload API takes and gives: the session request, the
//! progress view, a chunk's receipt and a completion.

use serde::Serialize;

use crate::ids::{ChunkNumber, FileName};
use crate::metadata_store::{MediaRecord, UploadRecord};

/// What `POST /v1/uploads` asks for.
#[derive(Debug, Clone, serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateUpload {
    /// The file's name (1 to 255 bytes of UTF-8, no control characters, no
    /// `/` or `\\`, not `.` or `..`).
    #[schema(min_length = 1, max_length = 255)]
    pub file_name: String,
    /// Its size in bytes (an integer; signed so negatives get a clear error).
    #[schema(minimum = 1)]
    pub size: i64,
    /// What the client thinks it is (kept; completion sniffs the real type).
    #[serde(default)]
    #[schema(max_length = 255)]
    pub content_type: Option<String>,
    /// The file's BLAKE3 (64 hex digits), checked at completion; content the
    /// caller holds already is answered at once (instant dedup).
    #[serde(default)]
    #[schema(pattern = "^[0-9a-f]{64}$")]
    pub blake3: Option<String>,
    /// A chunk size the client prefers (a power of two).
    #[serde(default)]
    pub chunk_size: Option<u64>,
}

/// Where an upload stands.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Progress {
    /// The session.
    pub upload_id: String,
    /// `receiving`, `completed`, `aborted` or `expired` (`completing` while a
    /// completion runs).
    #[schema(value_type = String)]
    pub state: &'static str,
    /// File name.
    #[schema(value_type = String)]
    pub file_name: FileName,
    /// Declared size.
    pub size: u64,
    /// Bytes per chunk.
    pub chunk_size: u64,
    /// Number of chunks.
    pub total_chunks: u32,
    /// Chunks received, ascending.
    pub received_chunks: Vec<u32>,
    /// Chunks still to send, ascending.
    pub missing_chunks: Vec<u32>,
    /// Bytes received, counting chunks still streaming.
    pub received_bytes: u64,
    /// `received_bytes` as a percentage of `size`.
    pub percent: f64,
    /// When the session dies if not completed.
    pub expires_at: String,
    /// The media, once completed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub media_id: Option<String>,
}

/// The answer to a chunk PUT.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ChunkReceipt {
    /// The chunk number.
    pub chunk: u32,
    /// Its size.
    pub size: u64,
    /// Its SHA-256, hex.
    pub sha256: String,
    /// How many chunks the session has now.
    pub received_chunks: usize,
    /// Bytes received so far.
    pub received_bytes: u64,
}

/// The answer to `complete` and to a one-request upload.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Completion {
    /// The new media.
    pub media_id: String,
    /// The content's BLAKE3.
    pub blake3: String,
    /// Bytes.
    pub size: u64,
    /// Sniffed type.
    pub content_type: String,
    /// File name.
    #[schema(value_type = String)]
    pub file_name: FileName,
    /// True when the content was already stored and the new bytes were dropped.
    pub deduplicated: bool,
}

impl Completion {
    pub(super) fn of(media: &MediaRecord, deduplicated: bool) -> Self {
        Self {
            media_id: media.media_id.to_string(),
            blake3: media.blake3.to_hex(),
            size: media.size,
            content_type: media.content_type.clone(),
            file_name: media.file_name.clone(),
            deduplicated,
        }
    }
}

/// What opening an upload gave.
#[derive(Debug, Clone)]
pub enum Opened {
    /// A new session to send chunks to.
    Session(UploadRecord),
    /// The caller owns this content already: a new media item, no bytes needed.
    Existing(Completion),
}

/// The chunk a PUT carries, as the HTTP layer saw it.
#[derive(Debug, Clone)]
pub struct ChunkPut {
    /// The number as sent in the path.
    pub number: ChunkNumber,
    /// `Content-Length`, if sent.
    pub content_length: Option<u64>,
    /// The SHA-256 from `Content-Digest`, if sent (already parsed).
    pub sha256: Option<[u8; 32]>,
}
