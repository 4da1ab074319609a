//! Upload sessions and their chunks: the seam's part the upload domain
//! drives, from creation to completion (which references the content and
//! creates the media in the same transaction).

use async_trait::async_trait;

use super::{
    ChunkRecord, Created, MetadataError, NewContent, RecordOutcome, UploadRecord, UploadState,
};
use crate::ids::{MediaId, UploadId, UserId};

/// Upload: a narrow piece of the metadata seam.
#[async_trait]
pub trait UploadStore: Send + Sync + 'static {
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

    /// `owner`'s sessions still receiving or completing, at most `limit`.
    async fn open_uploads_of(
        &self,
        owner: &UserId,
        limit: u32,
    ) -> Result<Vec<UploadId>, MetadataError>;

    /// Sessions still receiving whose expiry has passed, at most `limit`.
    async fn expired_uploads(
        &self,
        now: i64,
        limit: u32,
    ) -> Result<Vec<UploadRecord>, MetadataError>;

    /// Sessions left `completing` since before `stale_before` (their
    /// completion was cut off: a timeout, a crash), oldest first, at most `limit`.
    async fn abandoned_completions(
        &self,
        stale_before: i64,
        limit: u32,
    ) -> Result<Vec<UploadRecord>, MetadataError>;
}
