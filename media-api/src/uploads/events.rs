//! The live stream of one upload (`GET /v1/uploads/{id}/events`): a
//! `progress` snapshot first, then `chunk` and `progress` as chunks stream
//! in (from whichever node takes them), then `completed` (or `aborted`, which
//! ends the stream). A completed upload's stream goes on until its media is
//! processed: a last `processed` event carries the media's view (status
//! `ready` or `failed`, and its variants). The HTTP layer only frames these
//! as server-sent events.

use std::time::Duration;

use futures_util::StreamExt;
use serde_json::Value;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::{Progress, UploadError, UploadService};
use crate::ids::{MediaId, UploadId, UserId};
use crate::media::{MediaCatalog, MediaView};
use crate::metadata_store::{MediaStatus, UploadState};
use crate::progress_bus::EventKind;
use crate::progress_bus::upload_topic;

/// Least time between two recomputed `progress` events on one stream.
const PROGRESS_EVERY: Duration = Duration::from_millis(100);
/// How often a completed upload's media is looked at again: a content
/// already being processed for another upload announces on that upload's
/// topic, not this one.
const RECHECK_EVERY: Duration = Duration::from_secs(2);
/// Events held for a slow reader before the stream waits for it.
const BUFFERED: usize = 64;

/// One event of an upload's stream.
#[derive(Debug, Clone)]
pub enum UploadEvent {
    /// Where the upload stands.
    Progress(Progress),
    /// A chunk was received (its number and size).
    Chunk(Value),
    /// The upload completed (the completion document).
    Completed(Value),
    /// The session ended without completing (why); the stream ends.
    Aborted(Value),
    /// Processing ended; the stream ends.
    Processed(MediaView),
}

impl UploadEvent {
    /// The event's name (the SSE `event:` field).
    pub fn name(&self) -> &'static str {
        match self {
            Self::Progress(_) => EventKind::Progress.as_str(),
            Self::Chunk(_) => EventKind::Chunk.as_str(),
            Self::Completed(_) => EventKind::Completed.as_str(),
            Self::Aborted(_) => EventKind::Aborted.as_str(),
            Self::Processed(_) => EventKind::Processed.as_str(),
        }
    }

    /// The event's body.
    pub fn data(&self) -> Value {
        match self {
            Self::Progress(p) => serde_json::to_value(p).unwrap_or_default(),
            Self::Processed(v) => serde_json::to_value(v).unwrap_or_default(),
            Self::Chunk(v) | Self::Completed(v) | Self::Aborted(v) => v.clone(),
        }
    }
}

/// The stream of one of the caller's uploads, until it ends, the reader
/// goes away, or `stop` (shutdown) is cancelled.
pub async fn stream(
    uploads: UploadService,
    media: MediaCatalog,
    caller: UserId,
    id: UploadId,
    stop: CancellationToken,
) -> Result<mpsc::Receiver<UploadEvent>, UploadError> {
    let upload = uploads.owned(&caller, id).await?;
    // Subscribe before reading the state, so nothing falls between the two.
    let mut bus_events = uploads
        .events()
        .subscribe(&upload_topic(upload.upload_id))
        .await?;
    let (tx, rx) = mpsc::channel::<UploadEvent>(BUFFERED);
    tokio::spawn(async move {
        let snapshot = |upload| {
            let uploads = uploads.clone();
            async move {
                uploads
                    .progress(&upload)
                    .await
                    .ok()
                    .map(UploadEvent::Progress)
            }
        };
        // The media's processing outcome once it has one (`None` while it is processing).
        let settled = |media_id: Option<MediaId>| {
            let (media, caller) = (media.clone(), caller.clone());
            async move {
                let view = media.view(&caller, media_id?).await.ok()??;
                (view.status != MediaStatus::Processing).then_some(UploadEvent::Processed(view))
            }
        };
        // Re-read the session: it may have completed between subscribing and now.
        let Ok(current) = uploads.owned(&caller, id).await else {
            return;
        };
        if let Some(first) = snapshot(current.clone()).await
            && tx.send(first).await.is_err()
        {
            return;
        }
        let mut media_id = current.media_id;
        match current.state {
            UploadState::Aborted => return,
            UploadState::Completed => {
                if let Some(done) = settled(media_id).await {
                    let _ = tx.send(done).await;
                    return;
                }
            }
            _ => {}
        }
        let mut last_progress = tokio::time::Instant::now();
        let mut recheck = tokio::time::interval(RECHECK_EVERY);
        loop {
            let event = tokio::select! {
                () = stop.cancelled() => return,
                () = tx.closed() => return,
                _ = recheck.tick(), if media_id.is_some() => {
                    if let Some(done) = settled(media_id).await {
                        let _ = tx.send(done).await;
                        return;
                    }
                    continue;
                }
                e = bus_events.next() => match e { Some(e) => e, None => return },
            };
            match event.kind {
                EventKind::Aborted => {
                    let _ = tx.send(UploadEvent::Aborted(event.data)).await;
                    return;
                }
                EventKind::Completed => {
                    media_id = event.data["media_id"].as_str().and_then(MediaId::parse);
                    if tx.send(UploadEvent::Completed(event.data)).await.is_err() {
                        return;
                    }
                    if let Some(done) = settled(media_id).await {
                        let _ = tx.send(done).await;
                        return;
                    }
                    continue;
                }
                EventKind::Processed => {
                    if let Some(done) = settled(media_id).await {
                        let _ = tx.send(done).await;
                        return;
                    }
                    continue;
                }
                EventKind::Progress => {}
                EventKind::Chunk => {
                    if tx.send(UploadEvent::Chunk(event.data)).await.is_err() {
                        return;
                    }
                }
                // Events may have been lost: where the session stands now
                // comes from the store.
                EventKind::Resync => {
                    let Ok(now) = uploads.owned(&caller, id).await else {
                        return;
                    };
                    media_id = media_id.or(now.media_id);
                    if let Some(done) = settled(media_id).await {
                        let _ = tx.send(done).await;
                        return;
                    }
                    let ended = now.state == UploadState::Aborted;
                    if let Some(p) = snapshot(now).await
                        && tx.send(p).await.is_err()
                    {
                        return;
                    }
                    if ended {
                        return;
                    }
                    continue;
                }
                _ => continue,
            }
            if event.kind == EventKind::Chunk || last_progress.elapsed() >= PROGRESS_EVERY {
                last_progress = tokio::time::Instant::now();
                if let Some(p) = snapshot(current.clone()).await
                    && tx.send(p).await.is_err()
                {
                    return;
                }
            }
        }
    });
    Ok(rx)
}
