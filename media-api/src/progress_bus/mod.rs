//! The progress and events seam: the live, losable view of uploads and the
//! event fan-out between API nodes.
//!
//! [`redis::RedisProgressBus`] serves a cluster of API nodes; [`memory::MemoryProgressBus`]
//! is the embedded default for a single process. Nothing here is the source of
//! truth: the metadata store is, and whatever this seam loses is rebuilt from it.

pub mod memory;
mod notifier;
pub mod redis;
mod topics;

pub use notifier::Notifier;

use std::sync::Arc;

use async_trait::async_trait;
use futures_util::stream::BoxStream;
use serde::{Deserialize, Serialize};

use crate::config::Settings;
use crate::ids::UploadId;

/// What an event says. Its name (`as_str`, and the serialised form on the
/// bus) is the SSE `event:` field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// Bytes of a chunk still streaming in.
    Progress,
    /// A chunk was received and recorded.
    Chunk,
    /// The upload completed: its media exists.
    Completed,
    /// The session ended without completing (deleted, expired, hash mismatch).
    Aborted,
    /// Processing of the content ended (ready or failed).
    Processed,
    /// A conversation's sync log grew: its members' devices read it.
    Logged,
    /// A member is typing (never stored).
    Typing,
    /// An attachment's processing finished.
    MediaReady,
    /// A user's memberships changed (a device follows other conversations).
    Memberships,
    /// A user began an upload (their devices follow its events).
    UploadStarted,
    /// A user came online or went offline.
    Presence,
    /// The reader may have missed events (it lagged, or the bus
    /// reconnected): it re-reads what it follows from the source of truth.
    Resync,
}

impl EventKind {
    /// The event's name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Progress => "progress",
            Self::Chunk => "chunk",
            Self::Completed => "completed",
            Self::Aborted => "aborted",
            Self::Processed => "processed",
            Self::Logged => "logged",
            Self::Typing => "typing",
            Self::MediaReady => "media_ready",
            Self::Memberships => "memberships",
            Self::UploadStarted => "upload_started",
            Self::Presence => "presence",
            Self::Resync => "resync",
        }
    }
}

/// One event on a topic (for example an upload's `progress` or `completed`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// What it says.
    pub kind: EventKind,
    /// The event body.
    pub data: serde_json::Value,
}

/// The event topic of an upload: its progress, completion and processing
/// are published there.
pub fn upload_topic(id: UploadId) -> String {
    id.to_string()
}

/// The topic of a conversation: its log growing, typing, media ready.
pub fn conversation_topic(id: impl std::fmt::Display) -> String {
    format!("c:{id}")
}

/// The topic of a user: their memberships changing, their uploads starting.
pub fn user_topic(user: &str) -> String {
    format!("u:{user}")
}

/// The topic of a user's presence.
pub fn presence_topic(user: &str) -> String {
    format!("p:{user}")
}

/// A user's presence.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Presence {
    /// Connected to some node now.
    pub online: bool,
    /// When their last connection closed (Unix ms), if known.
    pub last_seen: Option<i64>,
}

/// A live subscription: yields events published after it was made.
pub type EventStream = BoxStream<'static, Event>;

/// What can go wrong talking to the progress backend.
#[derive(Debug, thiserror::Error)]
pub enum ProgressError {
    /// The backend could not be reached.
    #[error("progress backend unavailable: {0}")]
    Unavailable(String),
}

/// The live view of one upload's chunks.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LiveProgress {
    /// Chunks received and recorded, ascending.
    pub chunks: Vec<u32>,
    /// Chunks still streaming in, with the bytes received so far.
    pub inflight: Vec<(u32, u64)>,
}

/// An in-flight report older than this is from a request that died without
/// clearing it, and is ignored.
pub const INFLIGHT_STALE_MS: i64 = 60_000;

/// What charging a rate said: whether the cost fit, and how much of the
/// limit is in use (after the charge when it fit).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Charge {
    /// The cost fit within the limit and was taken.
    pub allowed: bool,
    /// Units counted against the limit now (the window's use).
    pub used: u64,
    /// When refused: how long until the cost would fit.
    pub retry_after: std::time::Duration,
}

/// The generic cell rate algorithm: each key holds one number, the time its
/// use will have drained (the "theoretical arrival time", Unix ms). A cost
/// of `n` moves it `n` emission intervals (`window / limit`) later, and fits
/// while it stays within `window` of now. Answers the charge and the key's
/// new time when it moved. The Redis script does the same sums.
pub fn gcra(
    tat: Option<f64>,
    now: f64,
    cost: u64,
    limit: u64,
    window_ms: f64,
) -> (Charge, Option<f64>) {
    let interval = window_ms / limit.max(1) as f64;
    let tat = tat.unwrap_or(now).max(now);
    let used = |until: f64| ((until - now) / interval).ceil().max(0.0) as u64;
    let next = tat + cost as f64 * interval;
    let allow_at = next - window_ms;
    if cost > 0 && allow_at > now {
        let wait = if cost > limit {
            window_ms
        } else {
            allow_at - now
        };
        return (
            Charge {
                allowed: false,
                used: used(tat),
                retry_after: std::time::Duration::from_millis(wait.ceil() as u64),
            },
            None,
        );
    }
    let charge = Charge {
        allowed: true,
        used: used(next),
        retry_after: std::time::Duration::ZERO,
    };
    (charge, (cost > 0).then_some(next))
}

/// Live progress and event fan-out.
#[async_trait]
pub trait ProgressBus: Send + Sync + 'static {
    /// `redis` or `memory`, for readiness and logs.
    fn kind(&self) -> &'static str;

    /// Answers when the backend is reachable.
    async fn ping(&self) -> Result<(), ProgressError>;

    /// Sends an event to every current subscriber of `topic`, on any node.
    async fn publish(&self, topic: &str, event: &Event) -> Result<(), ProgressError>;

    /// Publishes each event on its topic (Redis: one pipelined round trip).
    async fn publish_many(&self, events: &[(String, Event)]) -> Result<(), ProgressError> {
        for (topic, event) in events {
            self.publish(topic, event).await?;
        }
        Ok(())
    }

    /// Subscribes to `topic`. Once this returns, every later publish is delivered.
    async fn subscribe(&self, topic: &str) -> Result<EventStream, ProgressError>;

    /// Marks an upload's live view as complete with these recorded chunks
    /// (a new session: none; after a loss: those in the metadata store).
    /// Everything about the upload expires at `expires_at` (Unix ms).
    async fn seed(
        &self,
        upload: &str,
        chunks: &[u32],
        expires_at: i64,
    ) -> Result<(), ProgressError>;

    /// Adds a recorded chunk and clears its in-flight report.
    async fn mark_chunk(
        &self,
        upload: &str,
        chunk: u32,
        expires_at: i64,
    ) -> Result<(), ProgressError>;

    /// Removes a chunk that was recorded and then forgotten.
    async fn unmark_chunk(&self, upload: &str, chunk: u32) -> Result<(), ProgressError>;

    /// Records `bytes` of a chunk received so far and publishes `event` on
    /// the upload's topic, together (one round trip to Redis: this runs for
    /// every MiB that streams in).
    async fn report_inflight(
        &self,
        upload: &str,
        chunk: u32,
        bytes: u64,
        expires_at: i64,
        event: &Event,
    ) -> Result<(), ProgressError>;

    /// Forgets a chunk's in-flight report (it finished, or its client went).
    async fn clear_inflight(&self, upload: &str, chunk: u32) -> Result<(), ProgressError>;

    /// The live view, or `None` when it was never seeded or has been lost
    /// (the caller rebuilds it from the metadata store).
    async fn live(&self, upload: &str) -> Result<Option<LiveProgress>, ProgressError>;

    /// Drops an upload's live view.
    async fn forget(&self, upload: &str) -> Result<(), ProgressError>;

    /// Charges `cost` units to `key`'s rate of `limit` per `window`, across
    /// nodes ([`gcra`]); a cost of 0 only reads the use.
    async fn charge(
        &self,
        key: &str,
        cost: u64,
        limit: u64,
        window: std::time::Duration,
    ) -> Result<Charge, ProgressError>;

    /// Answers true at most once per `window` for `key`, across nodes.
    async fn throttle(&self, key: &str, window: std::time::Duration)
    -> Result<bool, ProgressError>;

    /// `user` has a first connection on `node`, live until `expires_at`
    /// (Unix ms) unless beaten again; answers whether they were offline
    /// everywhere before.
    async fn presence_join(
        &self,
        node: &str,
        user: &str,
        expires_at: i64,
    ) -> Result<bool, ProgressError>;

    /// `user`'s last connection on `node` closed; answers their `last_seen`
    /// when no node has them any more.
    async fn presence_leave(&self, node: &str, user: &str) -> Result<Option<i64>, ProgressError>;

    /// `node` still has these users, until `expires_at`.
    async fn presence_beat(
        &self,
        node: &str,
        users: &[String],
        expires_at: i64,
    ) -> Result<(), ProgressError>;

    /// The presence of each user, in order.
    async fn presence_of(&self, users: &[String]) -> Result<Vec<Presence>, ProgressError>;

    /// Takes the users of nodes that stopped beating before `now`; answers
    /// those now offline everywhere, with their `last_seen`. Each dead
    /// node is taken by one caller.
    async fn presence_reap(&self, now: i64) -> Result<Vec<(String, i64)>, ProgressError>;
}

impl std::fmt::Debug for dyn ProgressBus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.kind())
    }
}

/// Builds the bus the settings name.
pub async fn from_settings(settings: &Settings) -> anyhow::Result<Arc<dyn ProgressBus>> {
    use secrecy::ExposeSecret;
    match &settings.redis_url {
        None => Ok(Arc::new(memory::MemoryProgressBus::new())),
        Some(url) => Ok(Arc::new(
            redis::RedisProgressBus::connect(url.expose_secret(), &settings.redis_namespace)
                .await?,
        )),
    }
}
