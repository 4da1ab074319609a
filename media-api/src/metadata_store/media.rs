//! Media items and the contents they reference: one-request uploads,
//! instant dedup for an owner, listing, deletion, totals.

use async_trait::async_trait;

use super::{Created, MediaRecord, MetadataError, NewContent, Usage};
use crate::ids::{Blake3, FileName, MediaId, UserId};

/// Media: a narrow piece of the metadata seam.
#[async_trait]
pub trait MediaStore: Send + Sync + 'static {
    /// References the content and creates a media item for `owner` (the
    /// one-request upload).
    async fn create_media(
        &self,
        owner: &UserId,
        file_name: &FileName,
        content: &NewContent,
        media_id: MediaId,
    ) -> Result<Created, MetadataError>;

    /// A media item by id.
    async fn media(&self, id: MediaId) -> Result<Option<MediaRecord>, MetadataError>;

    /// Instant dedup: when `owner` already has a media item of this content
    /// (same BLAKE3 and size), creates another one for it and returns it.
    /// Never looks at anyone else's media.
    async fn create_media_if_owned(
        &self,
        owner: &UserId,
        file_name: &FileName,
        blake3: &Blake3,
        size: u64,
        media_id: MediaId,
    ) -> Result<Option<MediaRecord>, MetadataError>;

    /// The owner's media, newest first, strictly after `after` (a
    /// `(created_at, media_id)` cursor), at most `limit`.
    async fn list_media(
        &self,
        owner: &UserId,
        after: Option<(i64, MediaId)>,
        limit: u32,
    ) -> Result<Vec<MediaRecord>, MetadataError>;

    /// Deletes the owner's media item. When it was the content's last
    /// reference, the blob starts its grace period. True when deleted.
    async fn delete_media(&self, owner: &UserId, id: MediaId) -> Result<bool, MetadataError>;

    /// What `owner` holds: their media and open upload sessions, counted
    /// and summed (each media item counts its content's whole size).
    async fn usage_of(&self, owner: &UserId) -> Result<Usage, MetadataError>;

    /// How many blobs are stored, and their bytes.
    async fn blob_totals(&self) -> Result<(u64, u64), MetadataError>;
}
