//! Processing: the worker pool that claims jobs from the durable queue
//! (`metadata_store::jobs`), runs the transcoder in a child process with
//! resource limits and a wall-clock timeout, stores the variants and records
//! them; and the policy of what a new content gets.
//!
//! Where things are: `pool` (start, stop, queue depth), `worker` (one job
//! from claim to stored variants), `child` (the `media-render` runner and
//! the failure kinds).
//!
//! Decoding untrusted media happens only in the child (`media-render`),
//! under `ulimit -v` (address space) and `ulimit -t` (CPU seconds). A decoder
//! that crashes, hangs or blows its memory kills the child, which fails that
//! one job (retried with backoff, then dead); the worker goes on. Variant keys
//! are derived from (content, preset, version), so a job run twice (its first
//! worker died after uploading) writes the same objects and one row each.

mod child;
mod pool;
mod worker;

pub use pool::{run, workers_for};

use crate::blob_store::BlobKey;
use crate::metadata_store::Processing;

/// What a new content gets: a job when it is a type we process; a failure at
/// once when it was presented as media (by its declared type or file name)
/// but is not a recognised image, video or audio file; else nothing.
pub fn plan(content_type: &str, claimed_media: bool) -> Processing {
    use transcoder::sniff::{MediaKind, is_processed, kind_of};
    if is_processed(content_type) {
        Processing::Pending
    } else if claimed_media && kind_of(content_type) == MediaKind::Other {
        Processing::Failed(format!(
            "presented as media, but the content is not a recognised image, video or \
             audio file (it is {content_type})"
        ))
    } else {
        Processing::Skipped
    }
}

/// The object key of a variant: derived from what it is, so it is written once.
pub fn variant_key(blake3: &str, preset: &str, version: u32) -> BlobKey {
    BlobKey::parse(&format!("v/{}/{blake3}/{preset}-v{version}", &blake3[..2]))
        .unwrap_or_else(|_| BlobKey::generate())
}
