//! The garbage collector's part of the seam: finding contents nobody
//! references and deleting one in a single conditional statement.

use async_trait::async_trait;

use super::{BlobRecord, MetadataError};
use crate::ids::{Blake3, BlobKey};

/// Gc: a narrow piece of the metadata seam.
#[async_trait]
pub trait GcStore: Send + Sync + 'static {
    /// Blobs unreferenced since before `cutoff`, oldest first (then by
    /// BLAKE3), strictly after `after` in that order, at most `limit`.
    async fn gc_candidates(
        &self,
        cutoff: i64,
        after: Option<(i64, Blake3)>,
        limit: u32,
    ) -> Result<Vec<GcCandidate>, MetadataError>;

    /// The GC's decision, in one conditional statement: deletes the blob row
    /// only if it is still unreferenced since before `cutoff` and no media
    /// points at it, with its variants. When deleted, answers the variants'
    /// object keys; only then may the objects go. A blob marked but
    /// referenced after all has its mark cleared.
    async fn gc_delete_blob(
        &self,
        blake3: &Blake3,
        cutoff: i64,
    ) -> Result<Option<Vec<BlobKey>>, MetadataError>;
}

/// A blob the GC may collect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GcCandidate {
    /// The blob.
    pub blob: BlobRecord,
    /// When it lost its last reference (Unix ms): the paging key with its BLAKE3.
    pub unreferenced_since: i64,
}
