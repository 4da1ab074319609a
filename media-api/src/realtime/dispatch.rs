//! What a node does with what arrives on the topics it follows: wakes log
//! readers, hands typing, presence, media-ready and upload frames to the
//! local connections they concern, and follows conversations as its users'
//! memberships change.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use futures_util::StreamExt;

use super::{
    Connection, Followed, Inner, RealtimeError, Registry, Task, followed_uploads, frames, locked,
};
use crate::ids::{ConversationId, UploadId, UserId};
use crate::progress_bus::{EventKind, EventStream, Presence, ProgressError, conversation_topic};
use crate::uploads::events as upload_events;

/// Adds `user` to a conversation's local members, following its topic if
/// it is new here. Called in the `follows` order.
pub(super) async fn follow_conversation(
    inner: &Arc<Inner>,
    id: ConversationId,
    user: &UserId,
) -> Result<(), ProgressError> {
    let followed = locked(&inner.registry).conversations.contains_key(&id);
    if !followed {
        let stream = inner.bus.subscribe(&conversation_topic(id)).await?;
        let task = Task::new(tokio::spawn(dispatch_conversation(
            Arc::clone(inner),
            id,
            stream,
        )));
        locked(&inner.registry).conversations.insert(
            id,
            Followed {
                by: HashSet::new(),
                _task: task,
            },
        );
    }
    if let Some(f) = locked(&inner.registry).conversations.get_mut(&id) {
        f.by.insert(user.clone());
    }
    Ok(())
}

/// Removes `user` from a conversation's local members; the topic is no
/// longer followed when none is left.
pub(super) fn unfollow_conversation(registry: &mut Registry, id: ConversationId, user: &UserId) {
    if let Some(f) = registry.conversations.get_mut(&id) {
        f.by.remove(user);
        if f.by.is_empty() {
            registry.conversations.remove(&id);
        }
    }
}

/// The connections of these users, on this node.
pub(super) fn connections_of<'a>(
    registry: &Registry,
    users: impl IntoIterator<Item = &'a UserId>,
) -> Vec<Arc<Connection>> {
    users
        .into_iter()
        .filter_map(|u| registry.users.get(u))
        .flat_map(|u| u.connections.values().cloned())
        .collect()
}

/// A conversation's topic: wakes its local members' readers, hands on
/// typing and media-ready frames.
pub(super) async fn dispatch_conversation(
    inner: Arc<Inner>,
    id: ConversationId,
    mut events: EventStream,
) {
    while let Some(event) = events.next().await {
        let registry = locked(&inner.registry);
        let Some(members) = registry.conversations.get(&id) else {
            continue;
        };
        match event.kind {
            EventKind::Logged | EventKind::Resync => {
                for conn in connections_of(&registry, &members.by) {
                    conn.wake.notify_one();
                }
            }
            EventKind::Typing => {
                let typist = event.data["user"].as_str().unwrap_or_default();
                let frame = frames::typing(&id.to_string(), typist);
                let others = members.by.iter().filter(|u| u.as_str() != typist);
                for conn in connections_of(&registry, others) {
                    conn.send(Arc::clone(&frame));
                }
            }
            EventKind::MediaReady => {
                // Only members who joined before the message read it.
                let seq = event.data["seq"].as_u64().unwrap_or(0);
                let readers = members.by.iter().filter(|u| {
                    registry
                        .users
                        .get(*u)
                        .and_then(|l| l.memberships.get(&id))
                        .is_some_and(|&joined| joined < seq)
                });
                let frame = frames::media_ready(&event.data);
                for conn in connections_of(&registry, readers) {
                    conn.send(Arc::clone(&frame));
                }
            }
            _ => {}
        }
    }
}

/// A user's topic: their memberships changed (follow other
/// conversations, read the log), or an upload of theirs started.
pub(super) async fn dispatch_user(inner: Arc<Inner>, user: UserId, mut events: EventStream) {
    while let Some(event) = events.next().await {
        match event.kind {
            EventKind::Memberships | EventKind::Resync => {
                if let Err(e) = Box::pin(refresh_memberships(&inner, &user)).await {
                    tracing::warn!(error = %e, "could not refresh a user's conversations");
                }
                let conns = connections_of(&locked(&inner.registry), [&user]);
                for conn in &conns {
                    conn.wake.notify_one();
                }
                // A lost `upload_started` would leave an upload unfollowed.
                if event.kind == EventKind::Resync
                    && let Ok(open) =
                        Box::pin(inner.uploads.open_uploads(&user, followed_uploads(&inner))).await
                {
                    for conn in &conns {
                        for id in &open {
                            follow_upload(&inner, conn, *id);
                        }
                    }
                }
            }
            EventKind::UploadStarted => {
                let Some(id) = event.data["upload_id"].as_str().and_then(UploadId::parse) else {
                    continue;
                };
                let conns = connections_of(&locked(&inner.registry), [&user]);
                for conn in conns {
                    follow_upload(&inner, &conn, id);
                }
            }
            _ => {}
        }
    }
}

/// Re-reads a local user's conversations and follows what changed.
pub(super) async fn refresh_memberships(
    inner: &Arc<Inner>,
    user: &UserId,
) -> Result<(), RealtimeError> {
    let now: HashMap<ConversationId, u64> =
        inner.chat.memberships(user).await?.into_iter().collect();
    let _order = inner.follows.lock().await;
    let before: HashMap<ConversationId, u64> = match locked(&inner.registry).users.get(user) {
        Some(local) => local.memberships.clone(),
        None => return Ok(()),
    };
    for id in now.keys().filter(|id| !before.contains_key(id)) {
        follow_conversation(inner, *id, user).await?;
    }
    let mut registry = locked(&inner.registry);
    for id in before.keys().filter(|id| !now.contains_key(id)) {
        unfollow_conversation(&mut registry, *id, user);
    }
    if let Some(local) = registry.users.get_mut(user) {
        local.memberships = now;
    }
    Ok(())
}

/// A followed user's presence: to the local connections that follow it.
pub(super) async fn dispatch_presence(inner: Arc<Inner>, user: UserId, mut events: EventStream) {
    while let Some(event) = events.next().await {
        let p = match event.kind {
            EventKind::Presence => Presence {
                online: event.data["online"].as_bool().unwrap_or(false),
                last_seen: event.data["last_seen"].as_i64(),
            },
            EventKind::Resync => match inner.bus.presence_of(&[user.as_str().to_owned()]).await {
                Ok(mut p) => p.pop().unwrap_or_default(),
                Err(_) => continue,
            },
            _ => continue,
        };
        let frame = frames::presence(&user, p);
        let registry = locked(&inner.registry);
        let Some(followed) = registry.presence.get(&user) else {
            continue;
        };
        for conn in followed.by.values() {
            conn.send(Arc::clone(&frame));
        }
    }
}

/// Forwards one of the user's uploads' events to a connection, until the
/// upload's stream ends.
pub(super) fn follow_upload(inner: &Arc<Inner>, conn: &Arc<Connection>, id: UploadId) {
    {
        let mut followed = locked(&conn.uploads);
        if followed.len() >= inner.settings.max_followed_uploads || !followed.insert(id) {
            return;
        }
    }
    let (inner, c) = (Arc::clone(inner), Arc::clone(conn));
    conn.keep(tokio::spawn(async move {
        let stream = upload_events::stream(
            inner.uploads.clone(),
            inner.media.clone(),
            c.user.clone(),
            id,
            inner.stop.clone(),
        )
        .await;
        if let Ok(mut events) = stream {
            let name = id.to_string();
            while let Some(event) = events.recv().await {
                if !c.send(frames::upload(&name, event.name(), event.data())) {
                    break;
                }
            }
        }
        locked(&c.uploads).remove(&id);
    }));
}
