//! What the consistency check reads: the object keys the rows name, in the
//! store's byte order, a page at a time, and which multipart uploads an open
//! session owns.

use async_trait::async_trait;

use super::MetadataError;
use crate::ids::Blake3;

/// What a row expects to find in the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expected {
    /// A content's original; `true` when a check marked it missing already.
    Original(Blake3, bool),
    /// One of its variants.
    Variant(Blake3, String),
    /// An open session's object: present once a completion joined it, so
    /// neither its presence nor its absence is a finding.
    Session,
}

/// A key a row names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExpectedObject {
    /// The key (a blocked content's under `quarantine/`).
    pub key: String,
    /// Whose it is.
    pub what: Expected,
}

/// The check's queries.
#[async_trait]
pub trait FsckStore: Send + Sync + 'static {
    /// Keys the rows name, strictly after `after` in byte order, at most `limit`.
    async fn expected_objects(
        &self,
        after: &str,
        limit: u32,
    ) -> Result<Vec<ExpectedObject>, MetadataError>;

    /// Which of these multipart upload ids an open session owns.
    async fn owned_multiparts(&self, ids: &[String]) -> Result<Vec<String>, MetadataError>;

    /// Sessions in `completing` since before `before` (Unix ms): how many,
    /// and the first few ids.
    async fn stuck_completing(
        &self,
        before: i64,
        sample: u32,
    ) -> Result<(u64, Vec<String>), MetadataError>;

    /// Marks a content whose original is missing from the store: failed,
    /// with a reason its readers see.
    async fn mark_original_missing(&self, blake3: &Blake3) -> Result<(), MetadataError>;
}
