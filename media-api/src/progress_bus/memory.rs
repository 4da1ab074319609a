//! In-process progress and events: the embedded default for one process.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use futures_util::StreamExt;
use tokio::sync::broadcast;

use super::{Event, EventStream, ProgressBus, ProgressError};

/// Slow subscribers that fall this far behind skip ahead rather than hold memory.
const TOPIC_BUFFER: usize = 256;

/// Topics as broadcast channels in a map.
#[derive(Debug, Clone, Default)]
pub struct MemoryProgressBus {
    topics: Arc<Mutex<HashMap<String, broadcast::Sender<Event>>>>,
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
