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

use crate::backends::Backends;
use crate::blob_store::BlobKey;
use crate::ids::{Blake3, UploadId, UserId};
use crate::metadata_store::Processing;
use crate::progress_bus::{Event, EventKind, conversation_topic, upload_topic};

/// Tells that a content's processing ended (`data`: its status and
/// variants): the upload's event stream, the `media` topic, and each
/// conversation holding it as an attachment, under the attachment's own
/// media id. `uploader` narrows the conversations to attachments of that
/// user's uploads (a media item shown `processing` for a while, whose
/// content was processed long before, announces only its own).
pub(crate) async fn announce(
    backends: &Backends,
    blake3: &Blake3,
    upload: Option<UploadId>,
    mut data: serde_json::Value,
    uploader: Option<&UserId>,
) {
    data["blake3"] = blake3.to_hex().into();
    let event = Event {
        kind: EventKind::Processed,
        data,
    };
    let bus = &backends.progress;
    if let Some(upload) = upload {
        let _ = bus.publish(&upload_topic(upload), &event).await;
    }
    if uploader.is_none() {
        let _ = bus.publish("media", &event).await;
    }
    match backends.chat.attachments_holding(blake3).await {
        Ok(attachments) => {
            for a in attachments
                .into_iter()
                .filter(|a| uploader.is_none_or(|u| a.media.owner == *u))
            {
                let ready = Event {
                    kind: EventKind::MediaReady,
                    data: serde_json::json!({
                        "media_id": a.media.media_id.to_string(),
                        "conversation_id": a.conversation_id.to_string(),
                        "seq": a.message_seq,
                        "status": event.data["status"],
                        "variants": event.data["variants"],
                    }),
                };
                let _ = bus
                    .publish(&conversation_topic(a.conversation_id), &ready)
                    .await;
            }
        }
        Err(e) => tracing::warn!(error = %e, "could not find the content's attachments"),
    }
}

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

/// An image's width and height as its header states them (`head` is its
/// first bytes, up to [`transcoder::sniff::DIMENSIONS_LEN`]); `None` for
/// any other type, or a header that does not say.
pub fn header_dimensions(content_type: &str, head: &[u8]) -> Option<(u32, u32)> {
    use transcoder::sniff::{MediaKind, image_dimensions, kind_of};
    (kind_of(content_type) == MediaKind::Image)
        .then(|| image_dimensions(head))
        .flatten()
}

/// What is known of a new content before it is processed: its header's
/// dimensions, so a client lays out its placeholder at the right shape
/// while the thumbnail is made. Processing replaces it with the whole probe.
pub fn header_probe((width, height): (u32, u32)) -> serde_json::Value {
    serde_json::json!({ "width": width, "height": height })
}

/// The object key of a variant: derived from what it is, so it is written once.
pub fn variant_key(blake3: &str, preset: &str, version: u32) -> BlobKey {
    BlobKey::parse(&format!("v/{}/{blake3}/{preset}-v{version}", &blake3[..2]))
        .unwrap_or_else(|_| BlobKey::generate())
}
