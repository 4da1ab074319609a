//! A node's local subscribers, by topic: every subscription of the node
//! (each SSE stream, each WebSocket's conversations) is a receiver of one
//! broadcast channel per topic, so a topic costs the bus one subscription
//! however many local readers it has. Both buses deliver through it: the
//! in-process bus directly, the Redis bus from its one subscriber
//! connection.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use futures_util::Stream;
use futures_util::stream::BoxStream;
use futures_util::{FutureExt, StreamExt};
use tokio::sync::broadcast;

use super::{Event, EventKind, EventStream};

/// Events held for a topic's slowest local reader; one that falls further
/// behind is told to re-read (`Resync`) instead of holding memory. Local
/// readers are dispatch tasks that only hand frames on, so they rarely lag;
/// the buffer is allocated whole for every topic a node follows (a user's
/// own topic for each connected user), so it is small.
const TOPIC_BUFFER: usize = 16;

/// The node's topics and their local readers.
#[derive(Debug, Clone, Default)]
pub(super) struct Topics {
    map: Arc<Mutex<HashMap<String, broadcast::Sender<Event>>>>,
}

impl Topics {
    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<String, broadcast::Sender<Event>>> {
        // A panic while holding this lock cannot leave the map inconsistent.
        self.map.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Hands `event` to the topic's local readers, if it has any.
    pub(super) fn deliver(&self, topic: &str, event: &Event) {
        if let Some(sender) = self.map().get(topic) {
            let _ = sender.send(event.clone());
        }
    }

    /// A new reader of `topic`, and whether the topic is new on this node
    /// (the bus must then subscribe to it).
    pub(super) fn join(&self, topic: &str) -> (broadcast::Receiver<Event>, bool) {
        let mut map = self.map();
        match map.get(topic) {
            Some(sender) => (sender.subscribe(), false),
            None => {
                let (sender, receiver) = broadcast::channel(TOPIC_BUFFER);
                map.insert(topic.to_owned(), sender);
                (receiver, true)
            }
        }
    }

    /// Forgets `topic` if no reader is left; answers whether it did (the
    /// bus then unsubscribes).
    pub(super) fn leave_if_unread(&self, topic: &str) -> bool {
        let mut map = self.map();
        if map.get(topic).is_some_and(|s| s.receiver_count() == 0) {
            map.remove(topic);
            return true;
        }
        false
    }

    /// Every topic read on this node.
    pub(super) fn names(&self) -> Vec<String> {
        self.map().keys().cloned().collect()
    }

    /// Tells every reader it may have missed events.
    pub(super) fn resync_all(&self) {
        let resync = Event {
            kind: EventKind::Resync,
            data: serde_json::Value::Null,
        };
        for sender in self.map().values() {
            let _ = sender.send(resync.clone());
        }
    }
}

/// A reader's stream: a lag becomes one `Resync`; when the stream is
/// dropped, `left` runs (the bus forgets the topic if it was the last).
pub(super) fn reader_stream(
    receiver: broadcast::Receiver<Event>,
    left: impl FnOnce() + Send + 'static,
) -> EventStream {
    let events: BoxStream<'static, Event> = futures_util::stream::unfold(receiver, |mut rx| {
        async move {
            match rx.recv().await {
                Ok(event) => Some((event, rx)),
                Err(broadcast::error::RecvError::Lagged(_)) => Some((
                    Event {
                        kind: EventKind::Resync,
                        data: serde_json::Value::Null,
                    },
                    rx,
                )),
                Err(broadcast::error::RecvError::Closed) => None,
            }
        }
        .boxed()
    })
    .boxed();
    OnDrop {
        inner: events,
        left: Some(Box::new(left)),
    }
    .boxed()
}

struct OnDrop {
    inner: BoxStream<'static, Event>,
    left: Option<Box<dyn FnOnce() + Send>>,
}

impl Stream for OnDrop {
    type Item = Event;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Event>> {
        self.inner.poll_next_unpin(cx)
    }
}

impl Drop for OnDrop {
    fn drop(&mut self) {
        // The receiver must be gone before the count is read.
        self.inner = futures_util::stream::empty().boxed();
        if let Some(left) = self.left.take() {
            left();
        }
    }
}
