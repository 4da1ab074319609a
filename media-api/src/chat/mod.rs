//! The messaging core over the store: conversations, membership changes,
//! messages with attachments, receipts, forwarding and sync. The rules are
//! `chat-core`'s; this domain reads what they need, asks them, and has the
//! store write with the premises named (`metadata_store::chat`).

mod documents;
mod error;

use std::collections::HashMap;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chat_core::conversation::{Change, ConversationKind, Role, handed_over, may_change};
use chat_core::sync::SyncCursor;
use serde::{Deserialize, Serialize};

pub use documents::{ConversationDoc, EventDoc, MessageDoc, MessageReceiptDoc, ReceiptDoc};
pub use error::ChatError;

use crate::backends::Backends;
use crate::config::ChatSettings;
use crate::ids::{Blake3, ClientMessageId, ConversationId, MediaId, UserId, now_ms, rfc3339};
use crate::media::MediaCatalog;
use crate::metadata_store::chat::{
    Actor, AttachmentRecord, ConversationRecord, MemberChange, MessageRecord, NewAttachment,
    NewMessage, Page, Posted, Refusal,
};
use crate::metadata_store::jobs::VariantRecord;
use documents::{conversation_doc, membership, message_doc};

/// How often a decision whose premise changed under it is made again.
const RETRIES: usize = 3;

/// The messaging core.
#[derive(Debug, Clone)]
pub struct Chat {
    backends: Backends,
    media: MediaCatalog,
    settings: ChatSettings,
}

/// `POST /v1/conversations`.
#[derive(Debug, Clone, Deserialize)]
pub struct NewConversationRequest {
    /// `direct` or `group`.
    pub kind: String,
    /// A group's title.
    pub title: Option<String>,
    /// The other members.
    #[serde(default)]
    pub members: Vec<String>,
}

/// One attachment of `POST …/messages`.
#[derive(Debug, Clone, Deserialize)]
pub struct AttachmentRequest {
    /// Media the sender may read.
    pub media_id: String,
    /// A caption.
    pub caption: Option<String>,
}

/// `POST /v1/conversations/{id}/messages`.
#[derive(Debug, Clone, Deserialize)]
pub struct MessageRequest {
    /// The client's UUID for it.
    pub client_message_id: String,
    /// The text.
    pub text: Option<String>,
    /// The attachments.
    #[serde(default)]
    pub attachments: Vec<AttachmentRequest>,
    /// The message it answers.
    pub reply_to_seq: Option<u64>,
}

/// A page of the caller's conversations.
#[derive(Debug, Clone, Serialize)]
pub struct ConversationPage {
    /// Latest activity first.
    pub items: Vec<ConversationDoc>,
    /// Pass as `cursor` for the next page; absent on the last.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

/// A page of the sync log.
#[derive(Debug, Clone, Serialize)]
pub struct SyncPage {
    /// In order.
    pub events: Vec<EventDoc>,
    /// Where to continue from.
    pub next_cursor: String,
    /// Whether more events are waiting now.
    pub has_more: bool,
}

/// The caller's marks after a receipt.
#[derive(Debug, Clone, Serialize)]
pub struct MarksDoc {
    /// Delivered up to.
    pub delivered_seq: u64,
    /// Read up to.
    pub read_seq: u64,
}

fn user(value: &str) -> Result<UserId, ChatError> {
    UserId::parse(value).map_err(ChatError::InvalidUser)
}

fn age(created_at: i64) -> Duration {
    Duration::from_millis(u64::try_from(now_ms() - created_at).unwrap_or(0))
}

/// Cursors of the conversation list: `(last_activity, id)` of the last item.
fn encode_list_cursor(c: &ConversationRecord) -> String {
    URL_SAFE_NO_PAD.encode(format!("{}.{}", c.last_activity, c.conversation_id))
}

fn decode_list_cursor(cursor: &str) -> Option<(i64, ConversationId)> {
    let raw = URL_SAFE_NO_PAD.decode(cursor).ok()?;
    let (at, id) = std::str::from_utf8(&raw).ok()?.split_once('.')?;
    Some((at.parse().ok()?, ConversationId::parse(id)?))
}

impl Chat {
    /// The messaging core over these backends.
    pub fn new(backends: Backends, media: MediaCatalog, settings: ChatSettings) -> Self {
        Self {
            backends,
            media,
            settings,
        }
    }

    fn refused(&self, e: crate::metadata_store::chat::ChatStoreError) -> ChatError {
        match e {
            crate::metadata_store::chat::ChatStoreError::Refused(Refusal::GroupFull) => {
                ChatError::GroupFull(self.settings.max_group_members)
            }
            other => other.into(),
        }
    }

    /// The conversation, when the caller is a current member of it.
    async fn joined(
        &self,
        caller: &UserId,
        id: ConversationId,
    ) -> Result<(ConversationRecord, Role, u64), ChatError> {
        let c = self
            .backends
            .chat
            .conversation(id)
            .await?
            .ok_or(ChatError::ConversationNotFound)?;
        let (role, joined) = membership(&c, caller)
            .map(|m| (m.role, m.joined_seq))
            .ok_or(ChatError::ConversationNotFound)?;
        Ok((c, role, joined))
    }

    /// Each content's variants, for the attachments of `messages`.
    async fn variants_of(
        &self,
        messages: &[&MessageRecord],
    ) -> Result<HashMap<Blake3, Vec<VariantRecord>>, ChatError> {
        let mut variants = HashMap::new();
        for a in messages.iter().flat_map(|m| &m.attachments) {
            if let std::collections::hash_map::Entry::Vacant(slot) = variants.entry(a.media.blake3)
            {
                slot.insert(self.backends.jobs.variants(&a.media.blake3).await?);
            }
        }
        Ok(variants)
    }

    /// Messages of one conversation as `viewer` sees them.
    async fn render(
        &self,
        viewer: &UserId,
        c: &ConversationRecord,
        messages: &[MessageRecord],
    ) -> Result<Vec<MessageDoc>, ChatError> {
        let refs: Vec<&MessageRecord> = messages.iter().collect();
        let variants = self.variants_of(&refs).await?;
        let lookup =
            |a: &AttachmentRecord| variants.get(&a.media.blake3).cloned().unwrap_or_default();
        Ok(messages
            .iter()
            .map(|m| message_doc(m, viewer, c, &lookup))
            .collect())
    }

    async fn render_one(
        &self,
        viewer: &UserId,
        c: &ConversationRecord,
        m: &MessageRecord,
    ) -> Result<MessageDoc, ChatError> {
        Ok(self
            .render(viewer, c, std::slice::from_ref(m))
            .await?
            .remove(0))
    }

    /// A conversation for `viewer`, with its last message if they may see it.
    async fn conversation_for(
        &self,
        viewer: &UserId,
        c: &ConversationRecord,
    ) -> Result<ConversationDoc, ChatError> {
        let visible = membership(c, viewer).is_some_and(|m| c.last_seq > m.joined_seq);
        let last = if visible {
            match self
                .backends
                .chat
                .message(c.conversation_id, c.last_seq)
                .await?
            {
                Some(m) => Some(self.render_one(viewer, c, &m).await?),
                None => None,
            }
        } else {
            None
        };
        Ok(conversation_doc(c, viewer, last))
    }

    /// Opens a direct conversation (the existing one for the pair: `false`)
    /// or creates a group (`true`).
    pub async fn create_conversation(
        &self,
        caller: &UserId,
        request: NewConversationRequest,
    ) -> Result<(ConversationDoc, bool), ChatError> {
        let kind = ConversationKind::parse(&request.kind).ok_or(ChatError::InvalidKind)?;
        let members = request
            .members
            .iter()
            .map(|m| user(m))
            .collect::<Result<Vec<_>, _>>()?;
        let mut distinct = members.clone();
        distinct.sort_by(|a, b| a.as_str().cmp(b.as_str()));
        distinct.dedup();
        if distinct.len() != members.len() {
            return Err(ChatError::InvalidMembers("members are named twice".into()));
        }
        if members.contains(caller) {
            return Err(ChatError::InvalidMembers(
                "members are the others: the caller is a member already".into(),
            ));
        }
        let chat = &self.backends.chat;
        let (record, created) = match kind {
            ConversationKind::Direct => {
                if request.title.is_some() {
                    return Err(ChatError::InvalidMembers(
                        "a direct conversation has no title".into(),
                    ));
                }
                let [other] = members.as_slice() else {
                    return Err(ChatError::InvalidMembers(
                        "a direct conversation has exactly one other member".into(),
                    ));
                };
                chat.open_direct(ConversationId::generate(), caller, other)
                    .await
                    .map_err(|e| self.refused(e))?
            }
            ConversationKind::Group => {
                let title = request.title.unwrap_or_default();
                self.settings.limits().check_title(&title)?;
                if members.len() + 1 > self.settings.max_group_members {
                    return Err(ChatError::GroupFull(self.settings.max_group_members));
                }
                let record = chat
                    .create_group(ConversationId::generate(), caller, &title, &members)
                    .await
                    .map_err(|e| self.refused(e))?;
                (record, true)
            }
        };
        Ok((self.conversation_for(caller, &record).await?, created))
    }

    /// One of the caller's conversations.
    pub async fn conversation(
        &self,
        caller: &UserId,
        id: ConversationId,
    ) -> Result<ConversationDoc, ChatError> {
        let (c, _, _) = self.joined(caller, id).await?;
        self.conversation_for(caller, &c).await
    }

    /// The caller's conversations, latest activity first.
    pub async fn conversations(
        &self,
        caller: &UserId,
        limit: Option<u32>,
        cursor: Option<&str>,
    ) -> Result<ConversationPage, ChatError> {
        let max = self.settings.max_history_page;
        let limit = limit.unwrap_or(max.min(50));
        if limit == 0 || limit > max {
            return Err(ChatError::InvalidLimit(max));
        }
        let after = cursor
            .map(|c| decode_list_cursor(c).ok_or(ChatError::InvalidCursor))
            .transpose()?;
        let mut rows = self
            .backends
            .chat
            .conversations_of(caller, after, limit + 1)
            .await?;
        let more = rows.len() > limit as usize;
        rows.truncate(limit as usize);
        let mut items = Vec::with_capacity(rows.len());
        for c in &rows {
            items.push(self.conversation_for(caller, c).await?);
        }
        Ok(ConversationPage {
            next_cursor: more.then(|| rows.last().map(encode_list_cursor)).flatten(),
            items,
        })
    }

    /// Decides a membership change and has the store make it, deciding
    /// again if its premise changed meanwhile.
    async fn change(
        &self,
        caller: &UserId,
        id: ConversationId,
        target: &UserId,
        decide: impl Fn(&ConversationRecord, Role) -> Result<MemberChange, ChatError>,
    ) -> Result<ConversationDoc, ChatError> {
        for _ in 0..RETRIES {
            let (c, role, _) = self.joined(caller, id).await?;
            let change = decide(&c, role)?;
            let actor = Actor {
                user: caller.clone(),
                role,
            };
            match self.backends.chat.change_member(id, &actor, &change).await {
                Ok((after, _message)) => return self.conversation_for(caller, &after).await,
                Err(crate::metadata_store::chat::ChatStoreError::Refused(Refusal::Stale)) => {
                    tracing::debug!(%id, %target, "membership changed meanwhile; deciding again");
                }
                Err(e) => return Err(self.refused(e)),
            }
        }
        Err(ChatError::Contended)
    }

    /// Adds `user` to a group.
    pub async fn add_member(
        &self,
        caller: &UserId,
        id: ConversationId,
        user_id: &str,
    ) -> Result<ConversationDoc, ChatError> {
        let target = user(user_id)?;
        let max_members = self.settings.max_group_members;
        self.change(caller, id, &target, |c, role| {
            may_change(c.kind, role, Change::Add)?;
            if membership(c, &target).is_some() {
                return Err(ChatError::AlreadyMember);
            }
            Ok(MemberChange::Add {
                user: target.clone(),
                max_members,
            })
        })
        .await
    }

    /// Removes `user` from a group (the caller leaving when it is them).
    pub async fn remove_member(
        &self,
        caller: &UserId,
        id: ConversationId,
        user_id: &str,
    ) -> Result<ConversationDoc, ChatError> {
        let target = user(user_id)?;
        self.change(caller, id, &target, |c, role| {
            let target_role = membership(c, &target)
                .map(|m| m.role)
                .ok_or(ChatError::MemberNotFound)?;
            may_change(
                c.kind,
                role,
                Change::Remove {
                    target: target_role,
                    leaving: &target == caller,
                },
            )?;
            Ok(MemberChange::Remove {
                user: target.clone(),
                role: target_role,
            })
        })
        .await
    }

    /// Gives a member another role (`owner`: the owner hands the group over).
    pub async fn set_role(
        &self,
        caller: &UserId,
        id: ConversationId,
        user_id: &str,
        role: &str,
    ) -> Result<ConversationDoc, ChatError> {
        let target = user(user_id)?;
        let to = Role::parse(role).ok_or(ChatError::InvalidRole)?;
        self.change(caller, id, &target, |c, actor_role| {
            let from = membership(c, &target)
                .map(|m| m.role)
                .ok_or(ChatError::MemberNotFound)?;
            may_change(c.kind, actor_role, Change::SetRole { target: from, to })?;
            Ok(MemberChange::SetRole {
                user: target.clone(),
                from,
                to,
                actor_becomes: handed_over(to),
            })
        })
        .await
    }

    /// The content an attachment request names, if the sender may read it.
    async fn attachment_source(
        &self,
        sender: &UserId,
        request: &AttachmentRequest,
    ) -> Result<NewAttachment, ChatError> {
        if let Some(caption) = &request.caption
            && (caption.len() > self.settings.max_caption_bytes
                || caption.chars().any(|c| c.is_control() && c != '\n'))
        {
            return Err(ChatError::InvalidCaption(self.settings.max_caption_bytes));
        }
        let media_id = MediaId::parse(&request.media_id).ok_or(ChatError::MediaNotFound)?;
        let media = self
            .media
            .readable(sender, media_id)
            .await?
            .ok_or(ChatError::MediaNotFound)?;
        Ok(NewAttachment {
            media_id: MediaId::generate(),
            blake3: media.blake3,
            file_name: media.file_name,
            caption: request.caption.clone(),
            // A media item's owner uploaded it; an attachment's media names
            // its uploader: forwarding keeps who that was.
            uploader: media.owner,
        })
    }

    /// Posts a message; `false` when it was posted before with this client id.
    pub async fn post(
        &self,
        caller: &UserId,
        id: ConversationId,
        request: MessageRequest,
    ) -> Result<(MessageDoc, bool), ChatError> {
        let client_message_id = ClientMessageId::parse(&request.client_message_id)
            .ok_or(ChatError::InvalidClientMessageId)?;
        let text = request.text.filter(|t| !t.is_empty());
        self.settings
            .limits()
            .check_message(text.as_deref(), request.attachments.len())?;
        let (_, _, joined) = self.joined(caller, id).await?;
        if let Some(reply) = request.reply_to_seq
            && reply <= joined
        {
            return Err(ChatError::ReplyNotFound);
        }
        let mut attachments = Vec::with_capacity(request.attachments.len());
        for a in &request.attachments {
            attachments.push(self.attachment_source(caller, a).await?);
        }
        let message = NewMessage {
            conversation_id: id,
            sender: caller.clone(),
            client_message_id,
            text,
            attachments,
            reply_to_seq: request.reply_to_seq,
            forwarded: false,
        };
        self.store_post(caller, &message).await
    }

    async fn store_post(
        &self,
        caller: &UserId,
        message: &NewMessage,
    ) -> Result<(MessageDoc, bool), ChatError> {
        let (record, created) = match self
            .backends
            .chat
            .post_message(message)
            .await
            .map_err(|e| self.refused(e))?
        {
            Posted::Created(m) => (m, true),
            Posted::Existing(m) => (m, false),
        };
        let (c, _, _) = self.joined(caller, message.conversation_id).await?;
        Ok((self.render_one(caller, &c, &record).await?, created))
    }

    /// A page of history: after `after_seq` ascending, or before
    /// `before_seq` descending (the latest when neither is given).
    pub async fn history(
        &self,
        caller: &UserId,
        id: ConversationId,
        after_seq: Option<u64>,
        before_seq: Option<u64>,
        limit: Option<u32>,
    ) -> Result<Vec<MessageDoc>, ChatError> {
        let max = self.settings.max_history_page;
        let limit = limit.unwrap_or(max.min(50));
        if limit == 0 || limit > max {
            return Err(ChatError::InvalidLimit(max));
        }
        let page = match (after_seq, before_seq) {
            (Some(_), Some(_)) => return Err(ChatError::InvalidRange),
            (Some(n), None) => Page::After(n),
            (None, Some(n)) => Page::Before(n),
            (None, None) => Page::Before(u64::MAX),
        };
        let (c, _, joined) = self.joined(caller, id).await?;
        let messages = self.backends.chat.history(id, page, joined, limit).await?;
        self.render(caller, &c, &messages).await
    }

    /// A message the caller may see, with its conversation.
    async fn visible(
        &self,
        caller: &UserId,
        id: ConversationId,
        seq: u64,
    ) -> Result<(ConversationRecord, Role, MessageRecord), ChatError> {
        let (c, role, joined) = self.joined(caller, id).await?;
        if seq <= joined {
            return Err(ChatError::MessageNotFound);
        }
        let m = self
            .backends
            .chat
            .message(id, seq)
            .await?
            .ok_or(ChatError::MessageNotFound)?;
        Ok((c, role, m))
    }

    /// Edits the caller's message within the edit window.
    pub async fn edit(
        &self,
        caller: &UserId,
        id: ConversationId,
        seq: u64,
        text: &str,
    ) -> Result<MessageDoc, ChatError> {
        let (_, _, m) = self.visible(caller, id, seq).await?;
        if m.kind != chat_core::message::MessageKind::Text {
            return Err(ChatError::SystemMessage);
        }
        let limits = self.settings.limits();
        limits.may_edit(
            caller.as_str(),
            m.sender.as_str(),
            age(m.created_at),
            m.deleted,
        )?;
        limits.check_message(Some(text), m.attachments.len())?;
        let edited = self
            .backends
            .chat
            .edit_message(id, seq, caller, text)
            .await
            .map_err(|e| match self.refused(e) {
                // Deleted meanwhile.
                ChatError::Contended => chat_core::message::MessageError::Deleted.into(),
                other => other,
            })?;
        let (c, _, _) = self.joined(caller, id).await?;
        self.render_one(caller, &c, &edited).await
    }

    /// Deletes a message for everyone.
    pub async fn delete(
        &self,
        caller: &UserId,
        id: ConversationId,
        seq: u64,
    ) -> Result<MessageDoc, ChatError> {
        let (c, role, m) = self.visible(caller, id, seq).await?;
        if m.kind != chat_core::message::MessageKind::Text {
            return Err(ChatError::SystemMessage);
        }
        if m.deleted {
            return Err(chat_core::message::MessageError::Deleted.into());
        }
        let group_admin = c.kind == ConversationKind::Group && role >= Role::Admin;
        self.settings.limits().may_delete(
            caller.as_str(),
            m.sender.as_str(),
            group_admin,
            age(m.created_at),
        )?;
        let deleted = self
            .backends
            .chat
            .delete_message(id, seq, caller)
            .await
            .map_err(|e| match self.refused(e) {
                ChatError::Contended => chat_core::message::MessageError::Deleted.into(),
                other => other,
            })?;
        self.render_one(caller, &c, &deleted).await
    }

    /// Moves the caller's receipt marks forward.
    pub async fn receipt(
        &self,
        caller: &UserId,
        id: ConversationId,
        delivered: Option<u64>,
        read: Option<u64>,
    ) -> Result<MarksDoc, ChatError> {
        let (c, _, _) = self.joined(caller, id).await?;
        let held = membership(&c, caller).map(|m| m.marks).unwrap_or_default();
        let wanted = held.advance(delivered, read, c.last_seq)?;
        let marks = self
            .backends
            .chat
            .raise_marks(id, caller, wanted)
            .await
            .map_err(|e| self.refused(e))?;
        Ok(MarksDoc {
            delivered_seq: marks.delivered_seq,
            read_seq: marks.read_seq,
        })
    }

    /// Who has a message, for its sender and group admins.
    pub async fn receipts(
        &self,
        caller: &UserId,
        id: ConversationId,
        seq: u64,
    ) -> Result<Vec<MessageReceiptDoc>, ChatError> {
        let (c, role, m) = self.visible(caller, id, seq).await?;
        let group_admin = c.kind == ConversationKind::Group && role >= Role::Admin;
        if &m.sender != caller && !group_admin {
            return Err(chat_core::message::MessageError::NotSender.into());
        }
        Ok(self
            .backends
            .chat
            .receipts(id, seq, &m.sender)
            .await?
            .into_iter()
            .map(|r| MessageReceiptDoc {
                user: r.user,
                delivered_at: r.delivered_at.map(rfc3339),
                read_at: r.read_at.map(rfc3339),
            })
            .collect())
    }

    /// Posts a message's text and attachments into each target as new
    /// messages marked forwarded; `false` when every one existed already.
    pub async fn forward(
        &self,
        caller: &UserId,
        from: (ConversationId, u64),
        targets: &[ConversationId],
        client_message_id: &str,
    ) -> Result<(Vec<MessageDoc>, bool), ChatError> {
        let client_message_id =
            ClientMessageId::parse(client_message_id).ok_or(ChatError::InvalidClientMessageId)?;
        let max = self.settings.max_forward_targets;
        let mut distinct = targets.to_vec();
        distinct.sort();
        distinct.dedup();
        if targets.is_empty() || targets.len() > max || distinct.len() != targets.len() {
            return Err(ChatError::InvalidForwardTargets(max));
        }
        let (_, _, source) = self.visible(caller, from.0, from.1).await?;
        if source.deleted || source.kind != chat_core::message::MessageKind::Text {
            return Err(ChatError::MessageNotFound);
        }
        for target in targets {
            self.joined(caller, *target).await?;
        }
        let attachments: Vec<NewAttachment> = source
            .attachments
            .iter()
            .map(|a| NewAttachment {
                media_id: MediaId::generate(),
                blake3: a.media.blake3,
                file_name: a.media.file_name.clone(),
                caption: a.caption.clone(),
                uploader: a.media.owner.clone(),
            })
            .collect();
        let mut docs = Vec::with_capacity(targets.len());
        let mut any_created = false;
        for target in targets {
            let message = NewMessage {
                conversation_id: *target,
                sender: caller.clone(),
                client_message_id,
                text: source.text.clone(),
                attachments: attachments
                    .iter()
                    .map(|a| NewAttachment {
                        media_id: MediaId::generate(),
                        ..a.clone()
                    })
                    .collect(),
                reply_to_seq: None,
                forwarded: true,
            };
            let (doc, created) = self.store_post(caller, &message).await?;
            any_created |= created;
            docs.push(doc);
        }
        Ok((docs, any_created))
    }

    /// The events concerning the caller after `since`.
    pub async fn sync(
        &self,
        caller: &UserId,
        since: Option<&str>,
        limit: Option<u32>,
    ) -> Result<SyncPage, ChatError> {
        let max = self.settings.max_sync_page;
        let limit = limit.unwrap_or(max.min(100));
        if limit == 0 || limit > max {
            return Err(ChatError::InvalidLimit(max));
        }
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
    async fn render_events(
        &self,
        caller: &UserId,
        events: &[crate::metadata_store::chat::EventRecord],
    ) -> Result<Vec<EventDoc>, ChatError> {
        use chat_core::sync::EventKind as K;
        let mut ids: Vec<ConversationId> = events.iter().map(|e| e.conversation_id).collect();
        ids.sort();
        ids.dedup();
        let conversations = self.backends.chat.conversations(&ids).await?;
        let mut docs = HashMap::new();
        let mut messages: HashMap<(ConversationId, u64), MessageDoc> = HashMap::new();
        for c in &conversations {
            let seqs: Vec<u64> = events
                .iter()
                .filter(|e| e.conversation_id == c.conversation_id)
                .filter_map(|e| e.seq)
                .collect();
            if let (Some(&low), Some(&high)) = (seqs.iter().min(), seqs.iter().max()) {
                let found = self
                    .backends
                    .chat
                    .messages_between(c.conversation_id, low, high)
                    .await?;
                let wanted: Vec<MessageRecord> = found
                    .into_iter()
                    .filter(|m| seqs.contains(&m.seq))
                    .collect();
                for doc in self.render(caller, c, &wanted).await? {
                    messages.insert((c.conversation_id, doc.seq), doc);
                }
            }
            if events.iter().any(|e| {
                e.conversation_id == c.conversation_id
                    && matches!(
                        e.kind,
                        K::ConversationCreated | K::MemberAdded | K::MemberRemoved | K::RoleChanged
                    )
            }) {
                docs.insert(c.conversation_id, conversation_doc(c, caller, None));
            }
        }
        Ok(events
            .iter()
            .map(|e| {
                let mut doc = documents::event_doc(e);
                match e.kind {
                    K::MessageCreated | K::MessageEdited | K::MessageDeleted => {
                        doc.message = e
                            .seq
                            .and_then(|seq| messages.get(&(e.conversation_id, seq)).cloned());
                    }
                    K::Receipt => {}
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

/// Deletes the sync log's expired events every `interval` until `stop`.
pub async fn run_retention(
    chat: Chat,
    interval: Duration,
    stop: tokio_util::sync::CancellationToken,
) {
    loop {
        match chat.purge_old_events().await {
            Ok(0) => {}
            Ok(n) => tracing::info!(deleted = n, "sync log: expired events deleted"),
            Err(e) => tracing::warn!(error = %e, "sync log retention pass failed"),
        }
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(interval) => {}
        }
    }
}
