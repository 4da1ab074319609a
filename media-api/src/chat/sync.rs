//! The sync log as a device reads it: its events after a cursor, each with
//! the document it is about as the reader sees it now, and retention.

use std::collections::HashMap;

use chat_core::sync::{EventKind, SyncCursor};

use super::documents::{self, conversation_doc};
use super::{Chat, ChatError, EventDoc, MessageDoc, Others, SyncPage};
use crate::ids::{ConversationId, UserId, now_ms, page_size};
use crate::metadata_store::chat::{EventRecord, MessageRecord};

/// A read of one user's log (`Chat::read_log`).
#[derive(Debug, Clone)]
pub struct LogRead {
    /// In order, each with its position.
    pub events: Vec<(SyncCursor, EventDoc)>,
    /// Where to continue from.
    pub next: SyncCursor,
    /// Whether more events are waiting now.
    pub has_more: bool,
    /// Where `next` would be had every transaction running at the read
    /// ended: a reader that must see everything committed before the read
    /// reads again until it gets there.
    pub tip: SyncCursor,
}

impl Chat {
    /// The events concerning the caller after `since`.
    pub async fn sync(
        &self,
        caller: &UserId,
        since: Option<&str>,
        limit: Option<u32>,
    ) -> Result<SyncPage, ChatError> {
        let max = self.settings.max_sync_page;
        let limit = page_size(limit, 100, max).ok_or(ChatError::InvalidLimit(max))?;
        let after = match since {
            None => self.backends.chat.sync_horizon().await?,
            Some(text) => self.resume_from(text).await?,
        };
        let page = self.read_log(caller, after, limit).await?;
        Ok(SyncPage {
            events: page.events.into_iter().map(|(_, e)| e).collect(),
            next_cursor: page.next.encode(),
            has_more: page.has_more,
        })
    }

    /// A cursor a device gave back, checked: readable, and not past the
    /// log's retention.
    pub async fn resume_from(&self, text: &str) -> Result<SyncCursor, ChatError> {
        let cursor = SyncCursor::decode(text).ok_or(ChatError::InvalidCursor)?;
        if cursor < self.backends.chat.sync_horizon().await? {
            return Err(ChatError::SyncCursorExpired);
        }
        Ok(cursor)
    }

    /// Where the log stands now: a device starting here gets every event
    /// that commits from now on (and those committing meanwhile).
    pub async fn log_now(&self) -> Result<SyncCursor, ChatError> {
        Ok(self.backends.chat.sync_now().await?)
    }

    /// The user's conversations, each with the `seq` after which they read.
    pub async fn memberships(
        &self,
        user: &UserId,
    ) -> Result<Vec<(ConversationId, u64)>, ChatError> {
        Ok(self.backends.chat.memberships_of(user).await?)
    }

    /// Those of `others` who share a conversation with `user`.
    pub async fn sharing_with(
        &self,
        user: &UserId,
        others: &[UserId],
    ) -> Result<Vec<UserId>, ChatError> {
        Ok(self.backends.chat.sharing_with(user, others).await?)
    }

    /// At most `limit` of the caller's events after `after`, each with its
    /// position, rendered for them.
    pub async fn read_log(
        &self,
        caller: &UserId,
        after: SyncCursor,
        limit: u32,
    ) -> Result<LogRead, ChatError> {
        let mut page = self.backends.chat.sync(caller, after, limit + 1).await?;
        let has_more = page.events.len() > limit as usize;
        page.events.truncate(limit as usize);
        let next = if has_more {
            page.events.last().map_or(after, |e| e.position)
        } else {
            page.reached
        };
        let docs = self.render_events(caller, &page.events).await?;
        Ok(LogRead {
            events: page.events.iter().map(|e| e.position).zip(docs).collect(),
            next,
            has_more,
            tip: page.tip.max(next),
        })
    }

    /// Each event with the document it is about, as the caller sees it now.
    pub(super) async fn render_events(
        &self,
        caller: &UserId,
        events: &[EventRecord],
    ) -> Result<Vec<EventDoc>, ChatError> {
        let distinct = |wanted: &dyn Fn(&EventRecord) -> bool| {
            let mut ids: Vec<ConversationId> = events
                .iter()
                .filter(|e| wanted(e))
                .map(|e| e.conversation_id)
                .collect();
            ids.sort();
            ids.dedup();
            ids
        };
        // The whole conversation (its members) only for the events about it.
        let about_conversation = distinct(&|e| {
            matches!(
                e.kind,
                EventKind::ConversationCreated
                    | EventKind::MemberAdded
                    | EventKind::MemberRemoved
                    | EventKind::RoleChanged
            )
        });
        let conversations = self
            .backends
            .chat
            .conversations(&about_conversation)
            .await?;
        let docs: HashMap<ConversationId, _> = conversations
            .iter()
            .map(|c| (c.conversation_id, conversation_doc(c, caller, None)))
            .collect();
        let mut messages: HashMap<(ConversationId, u64), MessageDoc> = HashMap::new();
        for id in distinct(&|e| e.seq.is_some()) {
            let seqs: Vec<u64> = events
                .iter()
                .filter(|e| e.conversation_id == id)
                .filter_map(|e| e.seq)
                .collect();
            let (Some(&low), Some(&high)) = (seqs.iter().min(), seqs.iter().max()) else {
                continue;
            };
            let found = self.backends.chat.messages_between(id, low, high).await?;
            let wanted: Vec<MessageRecord> = found
                .into_iter()
                .filter(|m| seqs.contains(&m.seq))
                .collect();
            let others = conversations
                .iter()
                .find(|c| c.conversation_id == id)
                .map_or(Others::Ask, Others::Of);
            for doc in self.render(caller, id, &wanted, others).await? {
                messages.insert((id, doc.seq), doc);
            }
        }
        Ok(events
            .iter()
            .map(|e| {
                let mut doc = documents::event_doc(e);
                match e.kind {
                    EventKind::MessageCreated
                    | EventKind::MessageEdited
                    | EventKind::MessageDeleted => {
                        doc.message = e
                            .seq
                            .and_then(|seq| messages.get(&(e.conversation_id, seq)).cloned());
                    }
                    EventKind::Receipt => {}
                    _ => doc.conversation = docs.get(&e.conversation_id).cloned(),
                }
                doc
            })
            .collect())
    }

    /// Deletes the sync log's events older than the retention.
    pub async fn purge_old_events(&self) -> Result<u64, ChatError> {
        let retention = i64::try_from(self.settings.sync_retention.as_millis()).unwrap_or(i64::MAX);
        Ok(self
            .backends
            .chat
            .purge_events(now_ms().saturating_sub(retention))
            .await?)
    }
}
