//! The garbage collector: deletes contents (and their variants) nobody has
//! referenced for longer than the grace period.
//!
//! The GC's safety rests on one conditional statement in the metadata store
//! (`gc_delete_blob`): a blob row goes only if it is still unreferenced since
//! before the grace cutoff and no media points at it. New references take a
//! lock on the blob row and clear `unreferenced_since` in the same
//! transaction, so a reference and a deletion cannot both win. The object is
//! deleted from the store only after the row is gone, and a media row can only
//! point at an existing blob row (a foreign key): no media ever points at a
//! deleted object.

use std::time::Duration;

use crate::backends::Backends;
use crate::background::First;
use crate::ids::now_ms;
use crate::metadata_store::MetadataError;

/// One GC pass: deletes every blob unreferenced for longer than `grace`.
/// Returns how many it deleted.
pub async fn collect_garbage(backends: &Backends, grace: Duration) -> Result<usize, MetadataError> {
    const PAGE: u32 = 100;
    let cutoff = now_ms() - i64::try_from(grace.as_millis()).unwrap_or(i64::MAX / 2);
    let mut deleted = 0;
    // Paged by (unreferenced_since, blake3): a content that cannot be
    // collected (still referenced, a statement failing on it) is passed
    // over, never holding up the ones behind it.
    let mut after = None;
    loop {
        let candidates = backends.gc.gc_candidates(cutoff, after, PAGE).await?;
        let Some(last) = candidates.last() else {
            break;
        };
        after = Some((last.unreferenced_since, last.blob.blake3));
        for candidate in &candidates {
            let blob = &candidate.blob;
            // The decision; the objects go only after it.
            let variant_keys = match backends.gc.gc_delete_blob(&blob.blake3, cutoff).await {
                Ok(Some(keys)) => keys,
                Ok(None) => continue,
                Err(e) => {
                    tracing::error!(error = %e, blake3 = %blob.blake3, "GC could not decide on a content; passing it over");
                    continue;
                }
            };
            deleted += 1;
            metrics::counter!("gc_blobs_deleted_total").increment(1);
            metrics::counter!("gc_bytes_deleted_total").increment(blob.size);
            for key in std::iter::once(&blob.storage_key).chain(&variant_keys) {
                if let Err(e) = backends.blobs.delete(key).await {
                    // The rows are gone, so nothing reaches the object; it only costs space.
                    tracing::error!(error = %e, key = %key, "GC could not delete an object");
                }
            }
        }
        if candidates.len() < PAGE as usize {
            break;
        }
    }
    Ok(deleted)
}

/// Publishes how many blobs and bytes are stored.
pub async fn record_totals(backends: &Backends) {
    if let Ok((blobs, bytes)) = backends.media.blob_totals().await {
        metrics::gauge!("blobs_stored").set(blobs as f64);
        metrics::gauge!("blob_bytes_stored").set(bytes as f64);
    }
}

/// Runs the GC every `interval` until `stop` is cancelled.
pub async fn run_gc(
    backends: Backends,
    grace: Duration,
    interval: Duration,
    stop: tokio_util::sync::CancellationToken,
) {
    crate::background::every("gc", First::Now, interval, stop, || async {
        match collect_garbage(&backends, grace).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(deleted = n, "GC deleted unreferenced blobs"),
            Err(e) => tracing::warn!(error = %e, "GC pass failed"),
        }
        record_totals(&backends).await;
    })
    .await;
}
