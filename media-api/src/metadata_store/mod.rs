//! The metadata store seam: the source of truth for uploads, chunks, blobs,
//! media and jobs.
//!
//! One implementation, [`sql::SqlMetadataStore`], serves PostgreSQL and SQLite
//! through sqlx's `Any` driver: the SQL is written once in the dialect both
//! share (`$n` parameters, `on conflict`, `returning`, bigint milliseconds for
//! time), and the few statements that must differ are picked by [`Dialect`].

pub mod jobs;
pub mod sql;
mod sql_jobs;

pub use jobs::JobQueue;

use std::sync::Arc;

use async_trait::async_trait;

use crate::config::Settings;
use crate::ids::{Blake3, MediaId, UploadId};

/// Which database is behind the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// PostgreSQL: many writers, `for update skip locked`, `listen/notify`.
    Postgres,
    /// SQLite: one writer, the embedded default.
    Sqlite,
}

/// What can go wrong in the metadata store.
#[derive(Debug, thiserror::Error)]
pub enum MetadataError {
    /// The database could not be reached or timed out.
    #[error("metadata store unavailable: {0}")]
    Unavailable(String),
    /// A query failed.
    #[error("metadata store error: {0}")]
    Query(String),
}

impl From<sqlx::Error> for MetadataError {
    fn from(e: sqlx::Error) -> Self {
        match e {
            sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::Io(_)
            | sqlx::Error::Tls(_) => MetadataError::Unavailable(e.to_string()),
            other => MetadataError::Query(other.to_string()),
        }
    }
}

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

    fn parse(value: &str) -> Result<Self, MetadataError> {
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
    pub owner: String,
    /// The file name the client gave (checked).
    pub file_name: String,
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
    pub storage_key: String,
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
    pub storage_key: String,
    /// The upload it came from, told when processing is done.
    pub origin: Option<UploadId>,
    /// What processing it gets (decided by the processing domain, not here).
    pub processing: Processing,
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
    pub owner: String,
    /// The content's BLAKE3.
    pub blake3: Blake3,
    /// Bytes.
    pub size: u64,
    /// Sniffed MIME type.
    pub content_type: String,
    /// The name it was uploaded under.
    pub file_name: String,
    /// Processing status: `processing`, `ready` or `failed`.
    pub status: String,
    /// Why processing failed.
    pub failure: Option<String>,
    /// What probing found.
    pub probe: Option<serde_json::Value>,
    /// Where the blob's bytes are.
    pub storage_key: String,
    /// Unix ms.
    pub created_at: i64,
}

/// What creating a media item did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Created {
    /// The media.
    pub media: MediaRecord,
    /// True when the content was stored already: the new bytes are redundant
    /// and the caller must delete the object at `NewContent::storage_key`.
    pub deduplicated: bool,
}

/// The durable record of everything.
#[async_trait]
pub trait MetadataStore: Send + Sync + 'static {
    /// `postgres` or `sqlite`.
    fn kind(&self) -> &'static str;

    /// Answers when the database is reachable.
    async fn ping(&self) -> Result<(), MetadataError>;

    /// Versions of the migrations applied, oldest first.
    async fn applied_migrations(&self) -> Result<Vec<i64>, MetadataError>;

    /// Stores a new session.
    async fn create_upload(&self, upload: &UploadRecord) -> Result<(), MetadataError>;

    /// A session by id.
    async fn upload(&self, id: UploadId) -> Result<Option<UploadRecord>, MetadataError>;

    /// Every recorded chunk of a session, in chunk order.
    async fn chunks(&self, id: UploadId) -> Result<Vec<ChunkRecord>, MetadataError>;

    /// One recorded chunk.
    async fn chunk(&self, id: UploadId, number: u32) -> Result<Option<ChunkRecord>, MetadataError>;

    /// Records a chunk if the session is receiving and the chunk is new. The
    /// session row is share-locked meanwhile, so a completion that starts
    /// after this returns sees the chunk.
    async fn record_chunk(
        &self,
        id: UploadId,
        chunk: &ChunkRecord,
    ) -> Result<RecordOutcome, MetadataError>;

    /// Forgets a chunk, if it is still the one with this SHA-256 and the
    /// session is receiving. True when forgotten.
    async fn forget_chunk(
        &self,
        id: UploadId,
        number: u32,
        sha256: &[u8; 32],
    ) -> Result<bool, MetadataError>;

    /// Moves a session from one of `from` to `to`. With `stale_before`, only
    /// if it was last updated before then (to take over an abandoned
    /// completion). True when this call made the move.
    async fn transition(
        &self,
        id: UploadId,
        from: &[UploadState],
        to: UploadState,
        stale_before: Option<i64>,
    ) -> Result<bool, MetadataError>;

    /// Drops every chunk record of a session.
    async fn drop_chunks(&self, id: UploadId) -> Result<(), MetadataError>;

    /// In one transaction: references the content (a new blob row, or the
    /// existing one with that BLAKE3), creates the media, and marks the
    /// session completed with it, if it is still completing.
    async fn finish_upload(
        &self,
        id: UploadId,
        content: &NewContent,
        media_id: MediaId,
    ) -> Result<Option<Created>, MetadataError>;

    /// References the content and creates a media item for `owner` (the
    /// one-request upload).
    async fn create_media(
        &self,
        owner: &str,
        file_name: &str,
        content: &NewContent,
        media_id: MediaId,
    ) -> Result<Created, MetadataError>;

    /// A media item by id.
    async fn media(&self, id: MediaId) -> Result<Option<MediaRecord>, MetadataError>;

    /// Sessions still receiving whose expiry has passed, at most `limit`.
    async fn expired_uploads(
        &self,
        now: i64,
        limit: u32,
    ) -> Result<Vec<UploadRecord>, MetadataError>;

    /// Instant dedup: when `owner` already has a media item of this content
    /// (same BLAKE3 and size), creates another one for it and returns it.
    /// Never looks at anyone else's media.
    async fn create_media_if_owned(
        &self,
        owner: &str,
        file_name: &str,
        blake3: &Blake3,
        size: u64,
        media_id: MediaId,
    ) -> Result<Option<MediaRecord>, MetadataError>;

    /// The owner's media, newest first, strictly after `after` (a
    /// `(created_at, media_id)` cursor), at most `limit`.
    async fn list_media(
        &self,
        owner: &str,
        after: Option<(i64, MediaId)>,
        limit: u32,
    ) -> Result<Vec<MediaRecord>, MetadataError>;

    /// Deletes the owner's media item. When it was the content's last
    /// reference, the blob starts its grace period. True when deleted.
    async fn delete_media(&self, owner: &str, id: MediaId) -> Result<bool, MetadataError>;

    /// Blobs unreferenced since before `cutoff`, oldest first, at most `limit`.
    async fn gc_candidates(
        &self,
        cutoff: i64,
        limit: u32,
    ) -> Result<Vec<BlobRecord>, MetadataError>;

    /// The GC's decision, in one conditional statement: deletes the blob row
    /// only if it is still unreferenced since before `cutoff` and no media
    /// points at it, with its variants. When deleted, answers the variants'
    /// object keys; only then may the objects go.
    async fn gc_delete_blob(
        &self,
        blake3: &Blake3,
        cutoff: i64,
    ) -> Result<Option<Vec<String>>, MetadataError>;

    /// How many blobs are stored, and their bytes.
    async fn blob_totals(&self) -> Result<(u64, u64), MetadataError>;
}

/// A distinct content as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlobRecord {
    /// Its BLAKE3.
    pub blake3: Blake3,
    /// Bytes.
    pub size: u64,
    /// Where its bytes are.
    pub storage_key: String,
}

/// Connects to the store the settings name and brings its schema up to date.
pub async fn from_settings(settings: &Settings) -> anyhow::Result<Arc<dyn MetadataStore>> {
    Ok(Arc::new(sql::SqlMetadataStore::connect(settings).await?))
}

/// The store as both of its seams: the metadata and the job queue.
pub async fn with_queue(
    settings: &Settings,
) -> anyhow::Result<(Arc<dyn MetadataStore>, Arc<dyn JobQueue>)> {
    let store = Arc::new(sql::SqlMetadataStore::connect(settings).await?);
    Ok((store.clone(), store))
}
