//! Messages: posting (with attachments made from media the sender may
//! read), history, edits and deletes within their windows, receipts, and
//! forwarding.

use chat_core::conversation::{ConversationKind, Role};
use chat_core::message::{MessageError, MessageKind};

use super::{
    AttachmentRequest, Chat, ChatError, MarksDoc, MessageDoc, MessageReceiptDoc, MessageRequest,
    Others, age,
};
use crate::ids::{ClientMessageId, ConversationId, MediaId, UserId, page_size, rfc3339};
use crate::metadata_store::chat::{MessageRecord, NewAttachment, NewMessage, Page, Posted, Seat};

impl Chat {
    /// The content an attachment request names, if the sender may read it.
    pub(super) async fn attachment_source(
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
        if media.blocked {
            return Err(ChatError::ContentBlocked);
        }
        Ok(NewAttachment {
            media_id: MediaId::generate(),
            blake3: media.blake3,
            file_name: media.file_name,
            caption: request.caption.clone(),
            // A media item's owner uploaded it; an attachment's media names
            // its uploader: forwarding keeps who that was.
            uploader: media.owner,
            shown_after: media.shown_after,
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
        self.quotas
            .charge(caller, crate::quotas::Rate::Messages, 1)
            .await?;
        // Membership, and whether `reply_to_seq` is a message the sender
        // sees, are checked by the store as it posts.
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

    pub(super) async fn store_post(
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
        if created {
            self.logged(message.conversation_id);
        }
        let others = if created { Others::Posted } else { Others::Ask };
        Ok((self.render_one(caller, &record, others).await?, created))
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
        let limit = page_size(limit, 50, max).ok_or(ChatError::InvalidLimit(max))?;
        let page = match (after_seq, before_seq) {
            (Some(_), Some(_)) => return Err(ChatError::InvalidRange),
            (Some(n), None) => Page::After(n),
            (None, Some(n)) => Page::Before(n),
            (None, None) => Page::Before(u64::MAX),
        };
        let seat = self.joined(caller, id).await?;
        let messages = self
            .backends
            .chat
            .history(id, page, seat.joined_seq, limit)
            .await?;
        self.render(caller, id, &messages, Others::Ask).await
    }

    /// A message the caller may see, with their seat.
    pub(super) async fn visible(
        &self,
        caller: &UserId,
        id: ConversationId,
        seq: u64,
    ) -> Result<(Seat, MessageRecord), ChatError> {
        let seat = self.joined(caller, id).await?;
        if seq <= seat.joined_seq {
            return Err(ChatError::MessageNotFound);
        }
        let m = self
            .backends
            .chat
            .message(id, seq)
            .await?
            .ok_or(ChatError::MessageNotFound)?;
        Ok((seat, m))
    }

    /// Edits the caller's message within the edit window.
    pub async fn edit(
        &self,
        caller: &UserId,
        id: ConversationId,
        seq: u64,
        text: &str,
    ) -> Result<MessageDoc, ChatError> {
        let (_, m) = self.visible(caller, id, seq).await?;
        if m.kind != MessageKind::Text {
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
                ChatError::Contended => MessageError::Deleted.into(),
                other => other,
            })?;
        self.logged(id);
        self.render_one(caller, &edited, Others::Ask).await
    }

    /// Deletes a message for everyone.
    pub async fn delete(
        &self,
        caller: &UserId,
        id: ConversationId,
        seq: u64,
    ) -> Result<MessageDoc, ChatError> {
        let (seat, m) = self.visible(caller, id, seq).await?;
        if m.kind != MessageKind::Text {
            return Err(ChatError::SystemMessage);
        }
        if m.deleted {
            return Err(MessageError::Deleted.into());
        }
        let group_admin = seat.kind == ConversationKind::Group && seat.role >= Role::Admin;
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
                ChatError::Contended => MessageError::Deleted.into(),
                other => other,
            })?;
        self.logged(id);
        self.render_one(caller, &deleted, Others::Ask).await
    }

    /// Moves the caller's receipt marks forward.
    pub async fn receipt(
        &self,
        caller: &UserId,
        id: ConversationId,
        delivered: Option<u64>,
        read: Option<u64>,
    ) -> Result<MarksDoc, ChatError> {
        let seat = self.joined(caller, id).await?;
        let wanted = seat.marks.advance(delivered, read, seat.last_seq)?;
        let marks = self
            .backends
            .chat
            .raise_marks(id, caller, wanted)
            .await
            .map_err(|e| self.refused(e))?;
        self.logged(id);
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
        let (seat, m) = self.visible(caller, id, seq).await?;
        let group_admin = seat.kind == ConversationKind::Group && seat.role >= Role::Admin;
        if &m.sender != caller && !group_admin {
            return Err(MessageError::NotSender.into());
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
        let (_, source) = self.visible(caller, from.0, from.1).await?;
        if source.deleted || source.kind != MessageKind::Text {
            return Err(ChatError::MessageNotFound);
        }
        for target in targets {
            self.joined(caller, *target).await?;
        }
        self.quotas
            .charge(caller, crate::quotas::Rate::Messages, targets.len() as u64)
            .await?;
        let mut docs = Vec::with_capacity(targets.len());
        let mut any_created = false;
        for target in targets {
            let message = NewMessage {
                conversation_id: *target,
                sender: caller.clone(),
                client_message_id,
                text: source.text.clone(),
                // New attachment ids over the same contents, per target.
                attachments: source
                    .attachments
                    .iter()
                    .map(|a| NewAttachment {
                        media_id: MediaId::generate(),
                        blake3: a.media.blake3,
                        file_name: a.media.file_name.clone(),
                        caption: a.caption.clone(),
                        uploader: a.media.owner.clone(),
                        shown_after: a.media.shown_after,
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
}
