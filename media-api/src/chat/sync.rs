//! The sync log as a device reads it: its events after a cursor, each with
//! the document it is about as the reader sees it now, and retention.

use std::collections::HashMap;

use chat_core::sync::{EventKind, SyncCursor};

use super::documents::{self, conversation_doc};
use super::{Chat, ChatError, EventDoc, MessageDoc, Others, SyncPage};
use crate::ids::{ConversationId, UserId, now_ms, page_size};
use crate::metadata_store::chat::{EventRecord, MessageRecord};

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
        let horizon = self.backends.chat.sync_horizon().await?;
        let after = match since {
            None => horizon,
            Some(text) => {
                let cursor = SyncCursor::decode(text).ok_or(ChatError::InvalidCursor)?;
                if cursor < horizon {
                    return Err(ChatError::SyncCursorExpired);
                }
                cursor
            }
        };
        let mut page = self.backends.chat.sync(caller, after, limit + 1).await?;
        let has_more = page.events.len() > limit as usize;
        page.events.truncate(limit as usize);
        let next = if has_more {
            page.events.last().map_or(after, |e| e.position)
        } else {
            page.reached
        };
        let events = self.render_events(caller, &page.events).await?;
        Ok(SyncPage {
            events,
            next_cursor: next.encode(),
            has_more,
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
