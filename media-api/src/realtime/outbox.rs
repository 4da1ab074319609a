//! What waits to be written to one socket, bounded: a consumer that lets
//! more than `max_frames` frames or `max_bytes` bytes pile up is lagging,
//! and its connection is closed (4008) instead of growing the server's
//! memory. It reconnects and resumes from its cursor.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::sync::{Notify, mpsc};
use tokio_util::sync::CancellationToken;

/// A frame as it is written: JSON text, shared by every socket it goes to.
pub type Frame = Arc<str>;

/// The sending half, held by whoever produces frames for the socket.
#[derive(Debug)]
pub struct Outbox {
    tx: mpsc::UnboundedSender<Frame>,
    frames: AtomicUsize,
    bytes: AtomicUsize,
    max_frames: usize,
    max_bytes: usize,
    drained: Notify,
    lagging: CancellationToken,
}

/// The writing half, held by the socket's writer.
#[derive(Debug)]
pub struct Inbox {
    rx: mpsc::UnboundedReceiver<Frame>,
}

impl Outbox {
    /// A queue of at most `max_frames` frames and `max_bytes` bytes.
    pub fn new(max_frames: usize, max_bytes: usize) -> (Arc<Self>, Inbox) {
        let (tx, rx) = mpsc::unbounded_channel();
        let outbox = Arc::new(Self {
            tx,
            frames: AtomicUsize::new(0),
            bytes: AtomicUsize::new(0),
            max_frames,
            max_bytes,
            drained: Notify::new(),
            lagging: CancellationToken::new(),
        });
        (outbox, Inbox { rx })
    }

    /// Queues a frame; answers false when the consumer is lagging (the
    /// frame, and every later one, is dropped and the socket closes).
    pub fn push(&self, frame: Frame) -> bool {
        if self.lagging.is_cancelled() {
            return false;
        }
        let frames = self.frames.fetch_add(1, Ordering::AcqRel) + 1;
        let bytes = self.bytes.fetch_add(frame.len(), Ordering::AcqRel) + frame.len();
        if frames > self.max_frames || bytes > self.max_bytes {
            self.frames.fetch_sub(1, Ordering::AcqRel);
            self.bytes.fetch_sub(frame.len(), Ordering::AcqRel);
            self.lagging.cancel();
            return false;
        }
        if self.tx.send(frame).is_err() {
            // The writer has gone: the connection is closing.
            return false;
        }
        true
    }

    /// Waits until at most half the queue is taken, so a catch-up read can
    /// add a batch without passing the bounds (or the consumer lags).
    pub async fn room(&self) {
        loop {
            let notified = self.drained.notified();
            if self.frames.load(Ordering::Acquire) <= self.max_frames / 2
                && self.bytes.load(Ordering::Acquire) <= self.max_bytes / 2
            {
                return;
            }
            tokio::select! {
                () = notified => {}
                () = self.lagging.cancelled() => return,
            }
        }
    }

    /// Resolves when the consumer is found lagging.
    pub async fn lagging(&self) {
        self.lagging.cancelled().await;
    }

    /// Whether the consumer was found lagging.
    pub fn is_lagging(&self) -> bool {
        self.lagging.is_cancelled()
    }

    /// Frames queued now.
    pub fn queued(&self) -> usize {
        self.frames.load(Ordering::Acquire)
    }
}

impl Inbox {
    /// The next frame to write; `None` once every sender has gone.
    pub async fn next(&mut self) -> Option<Frame> {
        self.rx.recv().await
    }
}

impl Outbox {
    /// The writer wrote `frame`.
    pub fn written(&self, frame: &Frame) {
        self.frames.fetch_sub(1, Ordering::AcqRel);
        self.bytes.fetch_sub(frame.len(), Ordering::AcqRel);
        self.drained.notify_waiters();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_full_queue_marks_the_consumer_lagging() {
        let (outbox, mut inbox) = Outbox::new(3, 1024);
        for _ in 0..3 {
            assert!(outbox.push(Arc::from("x")));
        }
        assert!(
            !outbox.push(Arc::from("x")),
            "the fourth frame is one too many"
        );
        assert!(outbox.is_lagging());
        assert!(!outbox.push(Arc::from("x")), "nothing is queued after");
        let first = inbox.next().await.expect("queued");
        outbox.written(&first);
        assert_eq!(outbox.queued(), 2);
    }

    #[tokio::test]
    async fn bytes_are_bounded_too() {
        let (outbox, _inbox) = Outbox::new(100, 10);
        assert!(outbox.push(Arc::from("123456")));
        assert!(!outbox.push(Arc::from("123456")));
        assert!(outbox.is_lagging());
    }
}
