//! Announcements that need no answer, sent in batches: a burst of writes
//! (32 senders posting at once) becomes one pipelined round trip to the bus
//! with each topic announced once, off the request's path. What is
//! announced here only tells readers to look (the source of truth has the
//! content), so coalescing two announcements of one topic loses nothing.

use std::collections::HashSet;
use std::sync::Arc;

use tokio::sync::mpsc;

use super::{Event, EventKind, ProgressBus};

/// Most announcements sent in one batch.
const BATCH: usize = 256;

/// Queues announcements for a task that sends them.
#[derive(Debug, Clone)]
pub struct Notifier {
    tx: mpsc::UnboundedSender<(String, EventKind)>,
}

impl Notifier {
    /// A notifier over `bus`; its task runs until every clone is dropped.
    /// Must be made inside a Tokio runtime.
    pub fn spawn(bus: Arc<dyn ProgressBus>) -> Self {
        let (tx, mut rx) = mpsc::unbounded_channel::<(String, EventKind)>();
        tokio::spawn(async move {
            let mut batch = Vec::with_capacity(BATCH);
            while rx.recv_many(&mut batch, BATCH).await > 0 {
                let mut seen = HashSet::with_capacity(batch.len());
                let events: Vec<(String, Event)> = batch
                    .drain(..)
                    .filter(|(topic, kind)| seen.insert((topic.clone(), *kind)))
                    .map(|(topic, kind)| {
                        let event = Event {
                            kind,
                            data: serde_json::Value::Null,
                        };
                        (topic, event)
                    })
                    .collect();
                if let Err(e) = bus.publish_many(&events).await {
                    tracing::warn!(error = %e, count = events.len(), "could not announce changes");
                }
            }
        });
        Self { tx }
    }

    /// Announces `kind` on `topic`, soon.
    pub fn notify(&self, topic: String, kind: EventKind) {
        let _ = self.tx.send((topic, kind));
    }
}
