//! A connection's log reader: the sync log, read after the connection's
//! cursor whenever it is woken, queued as `event` frames.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use chat_core::sync::SyncCursor;

use super::{Connection, Inner, frames, locked};

/// How long a new connection's reader waits for a `resume` before it
/// starts from the moment the connection opened (any first frame ends
/// the wait): a client that resumes at once gets no live event twice.
const RESUME_WINDOW: Duration = Duration::from_secs(1);

/// A connection's log reader: on every wake, reads the user's log after
/// its cursor and queues each event; a `resume` moves the cursor.
pub(super) async fn read_log(inner: Arc<Inner>, conn: Arc<Connection>, start: SyncCursor) {
    // A client that resumes at once must not get live events first.
    if !conn.start_now.load(Ordering::Acquire) {
        let _ = tokio::time::timeout(RESUME_WINDOW, conn.started.notified()).await;
    }
    let batch = inner.settings.sync_batch;
    let mut cursor = start;
    loop {
        let mut held = Duration::from_millis(2);
        // Where the first read after the wake said the log would stand once
        // the transactions running then had ended: read until there.
        let mut target: Option<SyncCursor> = None;
        loop {
            if let Some(resumed) = locked(&conn.resume).take() {
                cursor = resumed;
                target = None;
            }
            // Boxed: the task stays small while it waits for a wake.
            let read = match Box::pin(inner.chat.read_log(&conn.user, cursor, batch)).await {
                Ok(read) => read,
                Err(e) => {
                    tracing::warn!(error = %e, "could not read a connection's log; retrying");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    continue;
                }
            };
            for (position, doc) in &read.events {
                if !conn.send(frames::event(*position, doc)) {
                    return;
                }
            }
            cursor = read.next;
            let target = *target.get_or_insert(read.tip);
            if read.has_more {
                // Catching up: as fast as the client reads, no faster.
                conn.outbox.room().await;
                if conn.outbox.is_lagging() {
                    return;
                }
                continue;
            }
            if cursor < target {
                // A transaction that began before this read still runs:
                // what it commits belongs before the tip. Read again soon.
                tokio::time::sleep(held).await;
                held = (held * 2).min(Duration::from_millis(250));
                continue;
            }
            break;
        }
        conn.wake.notified().await;
    }
}
