//! In-process progress and events: the embedded default for one process.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use futures_util::StreamExt;
use tokio::sync::broadcast;

use super::{Event, EventStream, INFLIGHT_STALE_MS, LiveProgress, ProgressBus, ProgressError};
use crate::ids::now_ms;

/// Slow subscribers that fall this far behind skip ahead rather than hold memory.
const TOPIC_BUFFER: usize = 256;

/// Topics as broadcast channels in a map, live views in another.
#[derive(Debug, Clone, Default)]
pub struct MemoryProgressBus {
    topics: Arc<Mutex<HashMap<String, broadcast::Sender<Event>>>>,
    uploads: Arc<Mutex<HashMap<String, Live>>>,
}

#[derive(Debug, Default)]
struct Live {
    seeded: bool,
    chunks: BTreeSet<u32>,
    inflight: HashMap<u32, (u64, i64)>,
    expires_at: i64,
}

impl MemoryProgressBus {
    /// An empty bus.
    pub fn new() -> Self {
        Self::default()
    }

    fn topics(&self) -> std::sync::MutexGuard<'_, HashMap<String, broadcast::Sender<Event>>> {
        // A panic while holding this lock cannot leave the map inconsistent.
        self.topics.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn uploads(&self) -> std::sync::MutexGuard<'_, HashMap<String, Live>> {
        self.uploads.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[async_trait]
impl ProgressBus for MemoryProgressBus {
    fn kind(&self) -> &'static str {
        "memory"
    }

    async fn ping(&self) -> Result<(), ProgressError> {
        Ok(())
    }

    async fn publish(&self, topic: &str, event: &Event) -> Result<(), ProgressError> {
        let mut topics = self.topics();
        if let Some(sender) = topics.get(topic)
            && sender.send(event.clone()).is_err()
        {
            // Every subscriber has gone: forget the topic.
            topics.remove(topic);
        }
        Ok(())
    }

    async fn subscribe(&self, topic: &str) -> Result<EventStream, ProgressError> {
        let receiver = self
            .topics()
            .entry(topic.to_owned())
            .or_insert_with(|| broadcast::channel(TOPIC_BUFFER).0)
            .subscribe();
        Ok(tokio_stream_from(receiver).boxed())
    }
    async fn seed(
        &self,
        upload: &str,
        chunks: &[u32],
        expires_at: i64,
    ) -> Result<(), ProgressError> {
        let mut uploads = self.uploads();
        // Expired views go whenever a new one comes, so the map stays bounded.
        let now = now_ms();
        uploads.retain(|_, live| live.expires_at >= now);
        let live = uploads.entry(upload.to_owned()).or_default();
        live.seeded = true;
        live.chunks.extend(chunks.iter().copied());
        live.expires_at = expires_at;
        Ok(())
    }

    async fn mark_chunk(
        &self,
        upload: &str,
        chunk: u32,
        expires_at: i64,
    ) -> Result<(), ProgressError> {
        let mut uploads = self.uploads();
        let live = uploads.entry(upload.to_owned()).or_default();
        live.chunks.insert(chunk);
        live.inflight.remove(&chunk);
        live.expires_at = expires_at;
        Ok(())
    }

    async fn unmark_chunk(&self, upload: &str, chunk: u32) -> Result<(), ProgressError> {
        if let Some(live) = self.uploads().get_mut(upload) {
            live.chunks.remove(&chunk);
        }
        Ok(())
    }

    async fn report_inflight(
        &self,
        upload: &str,
        chunk: u32,
        bytes: u64,
        expires_at: i64,
        event: &Event,
    ) -> Result<(), ProgressError> {
        {
            let mut uploads = self.uploads();
            let live = uploads.entry(upload.to_owned()).or_default();
            live.inflight.insert(chunk, (bytes, now_ms()));
            live.expires_at = expires_at;
        }
        self.publish(upload, event).await
    }

    async fn clear_inflight(&self, upload: &str, chunk: u32) -> Result<(), ProgressError> {
        if let Some(live) = self.uploads().get_mut(upload) {
            live.inflight.remove(&chunk);
        }
        Ok(())
    }

    async fn live(&self, upload: &str) -> Result<Option<LiveProgress>, ProgressError> {
        let uploads = self.uploads();
        let now = now_ms();
        Ok(uploads
            .get(upload)
            .filter(|live| live.seeded && live.expires_at >= now)
            .map(|live| LiveProgress {
                chunks: live.chunks.iter().copied().collect(),
                inflight: live
                    .inflight
                    .iter()
                    .filter(|(_, (_, at))| now - at < INFLIGHT_STALE_MS)
                    .map(|(n, (b, _))| (*n, *b))
                    .collect(),
            }))
    }

    async fn forget(&self, upload: &str) -> Result<(), ProgressError> {
        self.uploads().remove(upload);
        Ok(())
    }
}

fn tokio_stream_from(
    receiver: broadcast::Receiver<Event>,
) -> impl futures_util::Stream<Item = Event> + Send + 'static {
    futures_util::stream::unfold(receiver, |mut rx| async move {
        loop {
            match rx.recv().await {
                Ok(event) => return Some((event, rx)),
                Err(broadcast::error::RecvError::Lagged(_)) => continue,
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    })
}
