//! Blocking content. A block is refused at the API at once (downloads,
//! variants and new uploads of it answer 451); its objects are then moved
//! under `quarantine/`, so a presigned URL handed out before the block finds
//! nothing at the store, and an edge that cached it lets go within its cache
//! lifetime (shorter than one signing window: see `infra/nginx`). Unblocking
//! moves them back first, then lifts the block.

use super::OperatorError;
use crate::backends::Backends;
use crate::blob_store::{BlobKey, BlobStore, BlobStoreError};
use crate::ids::{Blake3, now_ms};

/// Where a blocked content's object waits.
pub fn quarantined(key: &BlobKey) -> BlobKey {
    BlobKey::parse(&format!("quarantine/{key}")).unwrap_or_else(|_| key.clone())
}

/// What a block did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Blocked {
    /// False when it was blocked already.
    pub newly: bool,
    /// Objects the content is stored as (none when it is not stored).
    pub objects: usize,
}

/// Moves an object, idempotently: one already moved (an earlier attempt
/// that failed halfway) is left where it is.
async fn relocate(
    blobs: &dyn BlobStore,
    from: &BlobKey,
    to: &BlobKey,
) -> Result<(), BlobStoreError> {
    match blobs.rename(from, to).await {
        Ok(()) => Ok(()),
        Err(BlobStoreError::NotFound) => {
            if blobs.head(to).await?.is_none() {
                tracing::warn!(key = %from, "an object of a content is missing from the store");
            }
            Ok(())
        }
        Err(e) => Err(e),
    }
}

/// Blocks a content for `reason`. Repeating it finishes what a failed
/// attempt left (objects not yet moved).
pub async fn block(
    backends: &Backends,
    blake3: &Blake3,
    reason: &str,
    by: &str,
) -> Result<Blocked, OperatorError> {
    let newly = backends.admin.block(blake3, reason, by, now_ms()).await?;
    let keys = backends.admin.object_keys(blake3).await?;
    for key in &keys {
        relocate(backends.blobs.as_ref(), key, &quarantined(key)).await?;
    }
    tracing::info!(%blake3, newly, objects = keys.len(), "content blocked");
    Ok(Blocked {
        newly,
        objects: keys.len(),
    })
}

/// Lifts a block: the objects go back, then the content is served again.
/// False when it was not blocked.
pub async fn unblock(backends: &Backends, blake3: &Blake3) -> Result<bool, OperatorError> {
    if backends.admin.block_of(blake3).await?.is_none() {
        return Ok(false);
    }
    for key in &backends.admin.object_keys(blake3).await? {
        relocate(backends.blobs.as_ref(), &quarantined(key), key).await?;
    }
    let lifted = backends.admin.unblock(blake3).await?;
    tracing::info!(%blake3, "content unblocked");
    Ok(lifted)
}
