//! What tus needs beyond an upload session: its lock (one PATCH at a time,
//! whatever node takes it) and its tail (the bytes that do not fill a part
//! yet).

use async_trait::async_trait;

use super::MetadataError;
use crate::ids::UploadId;

/// The tus part of the seam.
#[async_trait]
pub trait TusStore: Send + Sync + 'static {
    /// Marks a session as taken through tus; `concat` is its
    /// `Upload-Concat` (`partial`, or `final;…`), kept as sent.
    async fn tus_create(&self, id: UploadId, concat: Option<&str>) -> Result<(), MetadataError>;

    /// A tus session's `Upload-Concat`: `None` for an ordinary upload (or
    /// one not taken through tus).
    async fn tus_concat(&self, id: UploadId) -> Result<Option<String>, MetadataError>;

    /// Takes the session's lock as `token` until `until` (Unix ms), if no
    /// one holds it (or their hold ran out at `now`); false when held.
    async fn tus_lock(
        &self,
        id: UploadId,
        token: &str,
        until: i64,
        now: i64,
    ) -> Result<bool, MetadataError>;

    /// Lets the lock go, if `token` still holds it.
    async fn tus_unlock(&self, id: UploadId, token: &str) -> Result<(), MetadataError>;

    /// The bytes waiting to fill a part, and the number of the part they
    /// are the head of.
    async fn tus_tail(&self, id: UploadId) -> Result<(Vec<u8>, u32), MetadataError>;

    /// Replaces them, if `token` holds the lock; false when it does not.
    async fn tus_set_tail(
        &self,
        id: UploadId,
        token: &str,
        tail: &[u8],
        part: u32,
    ) -> Result<bool, MetadataError>;
}
