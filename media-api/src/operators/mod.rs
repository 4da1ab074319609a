//! What batch operators do to the service: reprocess contents by selector,
//! erase a user, check that the store and the database agree, and block
//! content. The admin API (`http::admin`) is their door; the work is here.

pub mod erase;
pub mod fsck;
pub mod moderation;
pub mod reprocess;

use crate::blob_store::BlobStoreError;
use crate::metadata_store::MetadataError;

/// What an operator's action can fail on.
#[derive(Debug, thiserror::Error)]
pub enum OperatorError {
    /// The metadata store.
    #[error(transparent)]
    Metadata(#[from] MetadataError),
    /// The blob store.
    #[error(transparent)]
    Blobs(#[from] BlobStoreError),
}
