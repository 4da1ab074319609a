//! The realtime gateway: one node's WebSocket connections, and how events
//! reach them.
//!
//! The sync log is the truth and the socket the fast path. A write that
//! grows a conversation's log announces it on the conversation's topic
//! (after its transaction committed); each node follows the topics of the
//! conversations its connected users are in (one subscription per topic
//! and node, however many local sockets it serves), and on an announcement
//! wakes those sockets' readers, which read their user's log after their
//! cursor: the frames are the log's own events, in its order, with its
//! cursors, and a lost announcement costs latency, never an event.
//! Ephemeral frames (typing, presence, uploads, media ready) travel on the
//! topics themselves and are never stored.
//!
//! Topics: `c:{conversation}` (log grew, typing, media ready), `u:{user}`
//! (memberships changed, an upload started), `p:{user}` (presence). A node
//! follows only what concerns its own connected users.
//!
//! Here: the node's registry and the gateway's operations; `dispatch`, what
//! arrives on the topics; `reader`, a connection's log reader; `frames`,
//! `outbox`, what goes over the socket.

mod dispatch;
pub mod frames;
pub mod outbox;
mod reader;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use chat_core::sync::SyncCursor;
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::AbortOnDropHandle;

use crate::background::First;
use crate::chat::{Chat, ChatError};
use crate::config::RealtimeSettings;
use crate::ids::{ConversationId, UploadId, UserId, now_ms};
use crate::media::MediaCatalog;
use crate::progress_bus::{
    Event, EventKind, Presence, ProgressBus, ProgressError, conversation_topic, presence_topic,
    user_topic,
};
use crate::uploads::UploadService;
use dispatch::{
    dispatch_presence, dispatch_user, follow_conversation, follow_upload, unfollow_conversation,
};
use outbox::{Frame, Inbox, Outbox};
use reader::read_log;

/// Why a socket's request was refused.
#[derive(Debug, thiserror::Error)]
pub enum RealtimeError {
    /// The conversation is not one of the caller's.
    #[error("no such conversation among the caller's")]
    NotMember,
    /// Following more users' presence than allowed.
    #[error("a connection follows the presence of at most {0} users")]
    TooManyPresenceUsers(usize),
    /// The chat refused it.
    #[error(transparent)]
    Chat(#[from] ChatError),
    /// The bus is unreachable.
    #[error(transparent)]
    Bus(#[from] ProgressError),
}

/// A task aborted when its owner goes.
type Task = AbortOnDropHandle<()>;

/// One WebSocket connection as the gateway knows it.
#[derive(Debug)]
pub struct Connection {
    id: u64,
    /// Whose it is.
    pub user: UserId,
    /// Its frames to write.
    pub outbox: Arc<Outbox>,
    wake: Notify,
    started: Notify,
    start_now: AtomicBool,
    resume: Mutex<Option<SyncCursor>>,
    presence: Mutex<HashSet<UserId>>,
    uploads: Mutex<HashSet<UploadId>>,
    tasks: Mutex<Vec<Task>>,
}

impl Connection {
    /// A connection of `user` that nothing follows yet.
    fn new(id: u64, user: UserId, outbox: Arc<Outbox>) -> Self {
        Self {
            id,
            user,
            outbox,
            wake: Notify::new(),
            started: Notify::new(),
            start_now: AtomicBool::new(false),
            resume: Mutex::new(None),
            presence: Mutex::new(HashSet::new()),
            uploads: Mutex::new(HashSet::new()),
            tasks: Mutex::new(Vec::new()),
        }
    }

    /// Sends a frame to this connection alone.
    pub fn send(&self, frame: Frame) -> bool {
        self.outbox.push(frame)
    }

    /// Holds `task` until the connection closes. Tasks that have ended (an
    /// upload followed to its end) are let go first, so a connection open for
    /// days holds only the tasks still running, not one per upload it saw.
    fn keep(&self, task: JoinHandle<()>) {
        let mut tasks = locked(&self.tasks);
        tasks.retain(|t| !t.is_finished());
        tasks.push(Task::new(task));
    }

    /// Lets the log reader start (the client has spoken).
    fn start(&self) {
        if !self.start_now.swap(true, Ordering::AcqRel) {
            self.started.notify_one();
        }
    }
}

fn locked<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // No lock here is held across a step that can leave its data half
    // changed, so a panic elsewhere does not poison the state.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// What the node follows, and for whom.
#[derive(Debug, Default)]
struct Registry {
    users: HashMap<UserId, LocalUser>,
    /// Each followed conversation: its local members.
    conversations: HashMap<ConversationId, Followed<HashSet<UserId>>>,
    /// Each user whose presence is followed: the local connections that do,
    /// by id (a change reaches them without a look at any other).
    presence: HashMap<UserId, Followed<HashMap<u64, Arc<Connection>>>>,
}

#[derive(Debug)]
struct LocalUser {
    connections: HashMap<u64, Arc<Connection>>,
    /// Their conversations, each with the `seq` after which they read.
    memberships: HashMap<ConversationId, u64>,
    _topic: Task,
}

/// A topic the node follows, and who here follows it.
#[derive(Debug)]
struct Followed<By> {
    by: By,
    _task: Task,
}

/// One node's connections and what they follow.
#[derive(Debug, Clone)]
pub struct Gateway {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    node: String,
    chat: Chat,
    uploads: UploadService,
    media: MediaCatalog,
    bus: Arc<dyn ProgressBus>,
    settings: RealtimeSettings,
    registry: Mutex<Registry>,
    /// Puts following and unfollowing topics in one order.
    follows: tokio::sync::Mutex<()>,
    next_id: AtomicU64,
    stop: CancellationToken,
}

impl Gateway {
    /// The gateway of this node; `stop` ends its heartbeat.
    pub fn new(
        chat: Chat,
        uploads: UploadService,
        media: MediaCatalog,
        bus: Arc<dyn ProgressBus>,
        settings: RealtimeSettings,
        stop: CancellationToken,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                node: uuid::Uuid::new_v4().to_string(),
                chat,
                uploads,
                media,
                bus,
                settings,
                registry: Mutex::new(Registry::default()),
                follows: tokio::sync::Mutex::new(()),
                next_id: AtomicU64::new(1),
                stop,
            }),
        }
    }

    /// The settings in force.
    pub fn settings(&self) -> &RealtimeSettings {
        &self.inner.settings
    }

    /// Connections open on this node.
    pub fn connections(&self) -> usize {
        locked(&self.inner.registry)
            .users
            .values()
            .map(|u| u.connections.len())
            .sum()
    }

    /// Opens a connection for `user`: from now on every event of their
    /// log reaches it. Answers the connection and what its writer drains.
    pub async fn connect(&self, user: UserId) -> Result<(Arc<Connection>, Inbox), RealtimeError> {
        let inner = &self.inner;
        let (outbox, inbox) = Outbox::new(
            inner.settings.max_queued_frames,
            usize::try_from(inner.settings.max_queued_bytes.0).unwrap_or(usize::MAX),
        );
        let conn = Arc::new(Connection::new(
            inner.next_id.fetch_add(1, Ordering::Relaxed),
            user.clone(),
            outbox,
        ));
        // Where the log stands before anything is followed: whatever
        // commits from here on is read (the reader starts with one read).
        let start = inner.chat.log_now().await?;
        let came_online = {
            let _order = inner.follows.lock().await;
            let first = !locked(&inner.registry).users.contains_key(&user);
            if first {
                self.follow_user(&user).await?;
            }
            let mut registry = locked(&inner.registry);
            match registry.users.get_mut(&user) {
                Some(local) => {
                    local.connections.insert(conn.id, Arc::clone(&conn));
                }
                None => {
                    return Err(ProgressError::Unavailable("lost the user's follow".into()).into());
                }
            }
            first
        };
        if came_online {
            self.came_online(&user).await;
        }
        conn.keep(tokio::spawn(read_log(
            Arc::clone(inner),
            Arc::clone(&conn),
            start,
        )));
        // The user's uploads still open are followed from now.
        if let Ok(open) = inner
            .uploads
            .open_uploads(&user, followed_uploads(inner))
            .await
        {
            for id in open {
                follow_upload(inner, &conn, id);
            }
        }
        metrics::gauge!("realtime_connections").increment(1.0);
        Ok((conn, inbox))
    }

    /// Closes a connection's part in the gateway.
    pub async fn disconnect(&self, conn: &Arc<Connection>) {
        let inner = &self.inner;
        locked(&conn.tasks).clear();
        let went_offline = {
            let _order = inner.follows.lock().await;
            let mut registry = locked(&inner.registry);
            for followed in locked(&conn.presence).drain() {
                if let Some(f) = registry.presence.get_mut(&followed) {
                    f.by.remove(&conn.id);
                    if f.by.is_empty() {
                        registry.presence.remove(&followed);
                    }
                }
            }
            let Some(local) = registry.users.get_mut(&conn.user) else {
                return;
            };
            local.connections.remove(&conn.id);
            if local.connections.is_empty() {
                if let Some(local) = registry.users.remove(&conn.user) {
                    for id in local.memberships.keys() {
                        unfollow_conversation(&mut registry, *id, &conn.user);
                    }
                }
                true
            } else {
                false
            }
        };
        metrics::gauge!("realtime_connections").decrement(1.0);
        if went_offline {
            match inner
                .bus
                .presence_leave(&inner.node, conn.user.as_str())
                .await
            {
                Ok(Some(seen)) => {
                    publish_presence(
                        inner,
                        &conn.user,
                        Presence {
                            online: false,
                            last_seen: Some(seen),
                        },
                    )
                    .await;
                }
                Ok(None) => {}
                Err(e) => tracing::warn!(error = %e, "could not record a user going offline"),
            }
        }
    }

    /// Replays the log after `cursor`, then live events.
    pub fn resume(&self, conn: &Connection, cursor: SyncCursor) {
        *locked(&conn.resume) = Some(cursor);
        conn.start();
        conn.wake.notify_one();
    }

    /// The client spoke: its log reader need not wait for a `resume`.
    pub fn heard(&self, conn: &Connection) {
        conn.start();
    }

    /// Tells the conversation's other members that the caller is typing,
    /// at most once per `typing_interval` (extra ones are dropped).
    pub async fn typing(&self, conn: &Connection, id: ConversationId) -> Result<(), RealtimeError> {
        let member = locked(&self.inner.registry)
            .users
            .get(&conn.user)
            .is_some_and(|u| u.memberships.contains_key(&id));
        if !member {
            return Err(RealtimeError::NotMember);
        }
        let key = format!("typing:{id}:{}", conn.user);
        if !self
            .inner
            .bus
            .throttle(&key, self.inner.settings.typing_interval)
            .await?
        {
            return Ok(());
        }
        let event = Event {
            kind: EventKind::Typing,
            data: serde_json::json!({"conversation_id": id.to_string(), "user": conn.user}),
        };
        self.inner
            .bus
            .publish(&conversation_topic(id), &event)
            .await?;
        Ok(())
    }

    /// Follows these users' presence on this connection: each gets a
    /// `presence` frame now and on every change. Answers the users refused
    /// (those who share no conversation with the caller).
    pub async fn follow_presence(
        &self,
        conn: &Arc<Connection>,
        users: Vec<UserId>,
    ) -> Result<Vec<UserId>, RealtimeError> {
        let inner = &self.inner;
        let max = inner.settings.max_presence_users;
        let fresh: Vec<UserId> = {
            let followed = locked(&conn.presence);
            let mut fresh: Vec<UserId> = users
                .into_iter()
                .filter(|u| !followed.contains(u))
                .collect();
            fresh.sort_by(|a, b| a.as_str().cmp(b.as_str()));
            fresh.dedup();
            if followed.len() + fresh.len() > max {
                return Err(RealtimeError::TooManyPresenceUsers(max));
            }
            fresh
        };
        let shared: HashSet<UserId> = inner
            .chat
            .sharing_with(&conn.user, &fresh)
            .await?
            .into_iter()
            .collect();
        let (allowed, refused): (Vec<UserId>, Vec<UserId>) =
            fresh.into_iter().partition(|u| shared.contains(u));
        {
            let _order = inner.follows.lock().await;
            for user in &allowed {
                let new = !locked(&inner.registry).presence.contains_key(user);
                if new {
                    let stream = inner.bus.subscribe(&presence_topic(user.as_str())).await?;
                    let task =
                        tokio::spawn(dispatch_presence(Arc::clone(inner), user.clone(), stream));
                    locked(&inner.registry).presence.insert(
                        user.clone(),
                        Followed {
                            by: HashMap::new(),
                            _task: Task::new(task),
                        },
                    );
                }
                if let Some(f) = locked(&inner.registry).presence.get_mut(user) {
                    f.by.insert(conn.id, Arc::clone(conn));
                }
                locked(&conn.presence).insert(user.clone());
            }
        }
        let names: Vec<String> = allowed.iter().map(|u| u.as_str().to_owned()).collect();
        let now = inner.bus.presence_of(&names).await?;
        for (user, p) in allowed.iter().zip(now) {
            conn.send(frames::presence(user, p));
        }
        Ok(refused)
    }

    /// Says, every heartbeat, which users this node has, and takes over
    /// the users of nodes that stopped saying it, until `stop`.
    pub async fn run_heartbeat(self) {
        let (every, stop) = (self.inner.settings.heartbeat, self.inner.stop.clone());
        crate::background::every("heartbeat", First::Now, every, stop, || beat(&self.inner)).await;
    }

    /// Follows a user newly connected here: their topic, their
    /// conversations' topics. Called in the `follows` order.
    async fn follow_user(&self, user: &UserId) -> Result<(), RealtimeError> {
        let inner = &self.inner;
        let stream = inner.bus.subscribe(&user_topic(user.as_str())).await?;
        let topic = Task::new(tokio::spawn(dispatch_user(
            Arc::clone(inner),
            user.clone(),
            stream,
        )));
        let memberships: HashMap<ConversationId, u64> =
            inner.chat.memberships(user).await?.into_iter().collect();
        let mut followed = Vec::with_capacity(memberships.len());
        for id in memberships.keys() {
            if let Err(e) = follow_conversation(inner, *id, user).await {
                // Leave nothing half followed for a user who is not here.
                let mut registry = locked(&inner.registry);
                for id in followed {
                    unfollow_conversation(&mut registry, id, user);
                }
                return Err(e.into());
            }
            followed.push(*id);
        }
        locked(&inner.registry).users.insert(
            user.clone(),
            LocalUser {
                connections: HashMap::new(),
                memberships,
                _topic: topic,
            },
        );
        Ok(())
    }

    /// Records the user's first connection here; tells their followers
    /// when no node had them before.
    async fn came_online(&self, user: &UserId) {
        let inner = &self.inner;
        let until = now_ms() + millis(inner.settings.presence_expiry);
        match inner
            .bus
            .presence_join(&inner.node, user.as_str(), until)
            .await
        {
            Ok(true) => {
                let p = Presence {
                    online: true,
                    last_seen: None,
                };
                publish_presence(inner, user, p).await;
            }
            Ok(false) => {}
            Err(e) => tracing::warn!(error = %e, "could not record a user coming online"),
        }
    }
}

/// Most uploads of its user one connection follows at once, as the
/// metadata store's page size asks it.
fn followed_uploads(inner: &Inner) -> u32 {
    u32::try_from(inner.settings.max_followed_uploads).unwrap_or(u32::MAX)
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX / 4)
}

/// One heartbeat: says which users this node has, and tells everyone who
/// follows them that the users of nodes that stopped beating are offline.
async fn beat(inner: &Inner) {
    let users: Vec<String> = locked(&inner.registry)
        .users
        .keys()
        .map(|u| u.as_str().to_owned())
        .collect();
    let until = now_ms() + millis(inner.settings.presence_expiry);
    if let Err(e) = inner.bus.presence_beat(&inner.node, &users, until).await {
        tracing::warn!(error = %e, "could not beat presence");
    }
    match inner.bus.presence_reap(now_ms()).await {
        Ok(gone) => {
            for (user, seen) in gone {
                let Ok(user) = UserId::parse(&user) else {
                    continue;
                };
                let p = Presence {
                    online: false,
                    last_seen: Some(seen),
                };
                publish_presence(inner, &user, p).await;
            }
        }
        Err(e) => tracing::warn!(error = %e, "could not reap dead nodes' presence"),
    }
}

async fn publish_presence(inner: &Inner, user: &UserId, p: Presence) {
    let mut data = serde_json::json!({"user": user, "online": p.online});
    if let Some(seen) = p.last_seen {
        data["last_seen"] = seen.into();
    }
    let event = Event {
        kind: EventKind::Presence,
        data,
    };
    if let Err(e) = inner
        .bus
        .publish(&presence_topic(user.as_str()), &event)
        .await
    {
        tracing::warn!(error = %e, "could not publish presence");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_connection_lets_go_of_the_tasks_that_have_ended() {
        let (outbox, _inbox) = Outbox::new(8, 1024);
        let conn = Connection::new(1, UserId::parse("alice").unwrap(), outbox);
        let running = tokio::spawn(std::future::pending::<()>());
        conn.keep(running);
        // A hundred uploads followed to their end while the connection stays.
        for _ in 0..100 {
            let ended = tokio::spawn(async {});
            while !ended.is_finished() {
                tokio::task::yield_now().await;
            }
            conn.keep(ended);
        }
        assert_eq!(
            locked(&conn.tasks).len(),
            2,
            "the running task and the last one kept"
        );
        // The running task is still held, and still aborted at the close.
        assert!(locked(&conn.tasks).iter().any(|t| !t.is_finished()));
    }
}
