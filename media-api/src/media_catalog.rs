//! A user's media: listing, deleting (dropping a reference), and the garbage
//! collector that deletes contents nobody references any more.
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

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Serialize;

use crate::auth::UserId;
use crate::blob_store::BlobKey;
use crate::ids::{MediaId, now_ms, rfc3339};
use crate::metadata_store::MediaRecord;
use crate::state::Backends;
use crate::upload_session::UploadError;

/// A media item as the API shows it.
#[derive(Debug, Clone, Serialize)]
pub struct MediaView {
    /// Its id.
    pub media_id: String,
    /// The content's BLAKE3.
    pub blake3: String,
    /// Bytes.
    pub size: u64,
    /// Sniffed type.
    pub content_type: String,
    /// The name it was uploaded under.
    pub file_name: String,
    /// RFC 3339.
    pub created_at: String,
    /// Processing status: `processing`, `ready` or `failed`.
    pub status: String,
    /// Why processing failed (the original stays downloadable).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failure_reason: Option<String>,
    /// Pixels wide, when probed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub width: Option<u64>,
    /// Pixels high, when probed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub height: Option<u64>,
    /// Length, when probed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub duration_ms: Option<u64>,
    /// The container FFmpeg found, for video and audio.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub container: Option<String>,
    /// Video codec, such as `h264`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub video_codec: Option<String>,
    /// Audio codec, such as `aac`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub audio_codec: Option<String>,
    /// Overall bit rate, bits per second.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bit_rate: Option<u64>,
    /// The derivatives made so far.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub variants: Option<Vec<VariantView>>,
}

/// A derivative as the API shows it.
#[derive(Debug, Clone, Serialize)]
pub struct VariantView {
    /// Preset name: `?variant=NAME` downloads it.
    pub name: String,
    /// MIME type.
    pub content_type: String,
    /// Bytes.
    pub size: u64,
    /// Pixels wide.
    pub width: Option<u32>,
    /// Pixels high.
    pub height: Option<u32>,
    /// Length, for video and audio.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub duration_ms: Option<u64>,
}

impl From<&MediaRecord> for MediaView {
    fn from(m: &MediaRecord) -> Self {
        let probed = |key: &str| {
            m.probe
                .as_ref()
                .and_then(|p| p.get(key))
                .and_then(|v| v.as_u64())
        };
        let named = |key: &str| {
            m.probe
                .as_ref()
                .and_then(|p| p.get(key))
                .and_then(|v| v.as_str())
                .map(str::to_owned)
        };
        Self {
            media_id: m.media_id.to_string(),
            blake3: m.blake3.to_hex(),
            size: m.size,
            content_type: m.content_type.clone(),
            file_name: m.file_name.clone(),
            created_at: rfc3339(m.created_at),
            status: m.status.clone(),
            failure_reason: (m.status == "failed").then(|| m.failure.clone()).flatten(),
            width: probed("width"),
            height: probed("height"),
            duration_ms: probed("duration_ms"),
            container: named("container"),
            video_codec: named("video_codec"),
            audio_codec: named("audio_codec"),
            bit_rate: probed("bit_rate"),
            variants: None,
        }
    }
}

impl MediaView {
    /// The view with its variants listed.
    pub fn with_variants(mut self, variants: &[crate::job_queue::VariantRecord]) -> Self {
        self.variants = Some(
            variants
                .iter()
                .map(|v| VariantView {
                    name: v.preset.clone(),
                    content_type: v.content_type.clone(),
                    size: v.size,
                    width: v.width,
                    height: v.height,
                    duration_ms: v.duration_ms,
                })
                .collect(),
        );
        self
    }
}

/// One page of a listing.
#[derive(Debug, Clone, Serialize)]
pub struct MediaPage {
    /// Newest first.
    pub items: Vec<MediaView>,
    /// Pass as `cursor` for the next page; absent on the last.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

/// Why a listing request is refused.
#[derive(Debug, thiserror::Error)]
pub enum ListError {
    /// `limit` out of range.
    #[error("limit must be from 1 to {0}")]
    InvalidLimit(u32),
    /// A cursor we did not make.
    #[error("the cursor is not one this service returned")]
    InvalidCursor,
    /// The store failed.
    #[error(transparent)]
    Backend(#[from] UploadError),
}

/// Cursors are opaque to clients: `(created_at, media_id)` of the last item.
fn encode_cursor(m: &MediaRecord) -> String {
    URL_SAFE_NO_PAD.encode(format!("{}.{}", m.created_at, m.media_id))
}

fn decode_cursor(cursor: &str) -> Option<(i64, MediaId)> {
    let raw = URL_SAFE_NO_PAD.decode(cursor).ok()?;
    let text = std::str::from_utf8(&raw).ok()?;
    let (at, id) = text.split_once('.')?;
    Some((at.parse().ok()?, MediaId::parse(id)?))
}

/// Lists the caller's media, newest first.
pub async fn list(
    backends: &Backends,
    owner: &UserId,
    limit: Option<u32>,
    cursor: Option<&str>,
    max_page: u32,
) -> Result<MediaPage, ListError> {
    let limit = limit.unwrap_or(max_page.min(50));
    if limit == 0 || limit > max_page {
        return Err(ListError::InvalidLimit(max_page));
    }
    let after = cursor
        .map(|c| decode_cursor(c).ok_or(ListError::InvalidCursor))
        .transpose()?;
    // One extra row says whether another page follows.
    let mut rows = backends
        .metadata
        .list_media(owner.as_str(), after, limit + 1)
        .await
        .map_err(UploadError::from)?;
    let more = rows.len() > limit as usize;
    rows.truncate(limit as usize);
    Ok(MediaPage {
        next_cursor: if more {
            rows.last().map(encode_cursor)
        } else {
            None
        },
        items: rows.iter().map(MediaView::from).collect(),
    })
}

/// Deletes the caller's media item; false when it is not theirs or not there.
pub async fn delete(backends: &Backends, owner: &UserId, id: &str) -> Result<bool, UploadError> {
    let Some(id) = MediaId::parse(id) else {
        return Ok(false);
    };
    Ok(backends.metadata.delete_media(owner.as_str(), id).await?)
}

/// One GC pass: deletes every blob unreferenced for longer than `grace`.
/// Returns how many it deleted.
pub async fn collect_garbage(backends: &Backends, grace: Duration) -> Result<usize, UploadError> {
    let cutoff = now_ms() - i64::try_from(grace.as_millis()).unwrap_or(i64::MAX / 2);
    let mut deleted = 0;
    loop {
        let candidates = backends.metadata.gc_candidates(cutoff, 100).await?;
        if candidates.is_empty() {
            break;
        }
        let mut progressed = false;
        for blob in &candidates {
            // The decision; the objects go only after it.
            let Some(variant_keys) = backends
                .metadata
                .gc_delete_blob(&blob.blake3, cutoff)
                .await?
            else {
                continue;
            };
            progressed = true;
            deleted += 1;
            metrics::counter!("gc_blobs_deleted_total").increment(1);
            metrics::counter!("gc_bytes_deleted_total").increment(blob.size);
            for storage_key in std::iter::once(&blob.storage_key).chain(&variant_keys) {
                match BlobKey::parse(storage_key) {
                    Ok(key) => {
                        if let Err(e) = backends.blobs.delete(&key).await {
                            // The rows are gone, so nothing reaches the object; it only costs space.
                            tracing::error!(error = %e, key = %key, "GC could not delete an object");
                        }
                    }
                    Err(e) => tracing::error!(error = %e, "GC found a malformed storage key"),
                }
            }
        }
        if !progressed || candidates.len() < 100 {
            break;
        }
    }
    Ok(deleted)
}

/// Publishes how many blobs and bytes are stored.
pub async fn record_totals(backends: &Backends) {
    if let Ok((blobs, bytes)) = backends.metadata.blob_totals().await {
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
    loop {
        match collect_garbage(&backends, grace).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(deleted = n, "GC deleted unreferenced blobs"),
            Err(e) => tracing::warn!(error = %e, "GC pass failed"),
        }
        record_totals(&backends).await;
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(interval) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_reject_forgeries() {
        let id = MediaId::generate();
        let m = MediaRecord {
            media_id: id,
            owner: "a".into(),
            blake3: crate::ids::Blake3([0; 32]),
            size: 1,
            content_type: "text/plain".into(),
            file_name: "f".into(),
            status: "ready".into(),
            storage_key: "o/x".into(),
            failure: None,
            probe: None,
            created_at: 1_700_000_000_123,
        };
        assert_eq!(
            decode_cursor(&encode_cursor(&m)),
            Some((1_700_000_000_123, id))
        );
        for bad in [
            "",
            "!!!",
            "bm9wZQ",
            &URL_SAFE_NO_PAD.encode("12.not-a-uuid"),
        ] {
            assert_eq!(decode_cursor(bad), None, "{bad}");
        }
    }
}
