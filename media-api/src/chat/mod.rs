//! The messaging core over the store: conversations, membership changes,
//! messages with attachments, receipts, forwarding and sync. The rules are
//! `chat-core`'s; this domain reads what they need, asks them, and has the
//! store write with the premises named (`metadata_store::chat`).
//!
//! Where things are: `conversations` (creating, listing, membership),
//! `messages` (posting, history, edits, deletes, receipts, forwarding),
//! `sync` (the log as a device reads it, retention), `documents` (what the
//! API shows, rendered for one viewer), `error` (why a request is refused).

mod conversations;
mod documents;
mod error;
mod messages;
mod sync;

use std::collections::HashMap;
use std::time::Duration;

use chat_core::conversation::Role;
use serde::{Deserialize, Serialize};

pub use documents::{ConversationDoc, EventDoc, MessageDoc, MessageReceiptDoc, ReceiptDoc};
pub use error::ChatError;
pub use sync::LogRead;

use crate::backends::Backends;
use crate::config::ChatSettings;
use crate::ids::{Blake3, ConversationId, UserId, decode_page_cursor, encode_page_cursor, now_ms};
use crate::media::MediaCatalog;
use crate::metadata_store::chat::{
    AttachmentRecord, ConversationRecord, MessageRecord, Refusal, Seat,
};
use crate::metadata_store::jobs::VariantRecord;
use crate::progress_bus::{EventKind, Notifier, conversation_topic, user_topic};
use documents::{conversation_doc, membership, message_doc};

/// Where a rendered message's status comes from: the other members' lowest
/// marks.
#[derive(Debug, Clone, Copy)]
enum Others<'a> {
    /// Read them (one aggregate for the page).
    Ask,
    /// From the conversation's members, loaded already.
    Of(&'a ConversationRecord),
    /// The message was just posted: no one else can have it yet (`sent`).
    Posted,
}

/// How often a decision whose premise changed under it is made again.
const RETRIES: usize = 3;

/// The messaging core.
#[derive(Debug, Clone)]
pub struct Chat {
    backends: Backends,
    media: MediaCatalog,
    quotas: crate::quotas::QuotaBook,
    settings: ChatSettings,
    announce: Notifier,
}

/// `POST /v1/conversations`.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
pub struct NewConversationRequest {
    /// `direct` or `group`.
    #[schema(pattern = "^(direct|group)$")]
    pub kind: String,
    /// A group's title.
    pub title: Option<String>,
    /// The other members.
    #[serde(default)]
    pub members: Vec<String>,
}

/// One attachment of `POST …/messages`.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
pub struct AttachmentRequest {
    /// Media the sender may read.
    pub media_id: String,
    /// A caption.
    pub caption: Option<String>,
}

/// `POST /v1/conversations/{id}/messages`.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
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
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ConversationPage {
    /// Latest activity first.
    pub items: Vec<ConversationDoc>,
    /// Pass as `cursor` for the next page; absent on the last.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

/// A page of the sync log.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct SyncPage {
    /// In order.
    pub events: Vec<EventDoc>,
    /// Where to continue from.
    pub next_cursor: String,
    /// Whether more events are waiting now.
    pub has_more: bool,
}

/// The caller's marks after a receipt.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
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
    encode_page_cursor(c.last_activity, c.conversation_id)
}

fn decode_list_cursor(cursor: &str) -> Option<(i64, ConversationId)> {
    decode_page_cursor(cursor, ConversationId::parse)
}

impl Chat {
    /// The messaging core over these backends.
    /// The messaging core over these backends (inside a Tokio runtime: its
    /// announcements are sent by a task of their own).
    pub fn new(
        backends: Backends,
        media: MediaCatalog,
        settings: ChatSettings,
        quotas: crate::quotas::QuotaBook,
    ) -> Self {
        let announce = Notifier::spawn(backends.progress.clone());
        Self {
            backends,
            media,
            quotas,
            settings,
            announce,
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

    /// The caller's seat in a conversation, when they are a current member
    /// (one row, whatever the conversation's size).
    async fn joined(&self, caller: &UserId, id: ConversationId) -> Result<Seat, ChatError> {
        self.backends
            .chat
            .seat(id, caller)
            .await?
            .ok_or(ChatError::ConversationNotFound)
    }

    /// The whole conversation with its members, when the caller is one.
    async fn whole(
        &self,
        caller: &UserId,
        id: ConversationId,
    ) -> Result<(ConversationRecord, Role), ChatError> {
        let c = self
            .backends
            .chat
            .conversation(id)
            .await?
            .ok_or(ChatError::ConversationNotFound)?;
        let role = membership(&c, caller)
            .map(|m| m.role)
            .ok_or(ChatError::ConversationNotFound)?;
        Ok((c, role))
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

    /// Messages of one conversation as `viewer` sees them. The status of
    /// the viewer's own messages comes from the other members' lowest marks
    /// (`others`).
    async fn render(
        &self,
        viewer: &UserId,
        id: ConversationId,
        messages: &[MessageRecord],
        others: Others<'_>,
    ) -> Result<Vec<MessageDoc>, ChatError> {
        let refs: Vec<&MessageRecord> = messages.iter().collect();
        let variants = self.variants_of(&refs).await?;
        let lookup =
            |a: &AttachmentRecord| variants.get(&a.media.blake3).cloned().unwrap_or_default();
        let others = match others {
            _ if !messages.iter().any(|m| documents::shows_status(m, viewer)) => None,
            Others::Posted => None,
            Others::Of(c) => documents::lowest_marks(c, viewer),
            Others::Ask => self.backends.chat.others_marks(id, viewer).await?,
        };
        Ok(messages
            .iter()
            .map(|m| message_doc(m, viewer, others, &lookup))
            .collect())
    }

    async fn render_one(
        &self,
        viewer: &UserId,
        m: &MessageRecord,
        others: Others<'_>,
    ) -> Result<MessageDoc, ChatError> {
        Ok(self
            .render(viewer, m.conversation_id, std::slice::from_ref(m), others)
            .await?
            .remove(0))
    }

    /// Tells the devices following a conversation that its sync log grew
    /// (the write has committed: they read it). Sent off the request's path
    /// and in batches; losing it costs latency, never an event: a device
    /// reads the log when it resumes.
    fn logged(&self, id: ConversationId) {
        self.announce
            .notify(conversation_topic(id), EventKind::Logged);
    }

    /// Tells these users' devices that their memberships changed (they
    /// follow other conversations now) and what their log holds.
    fn memberships_changed(&self, users: &[UserId]) {
        for user in users {
            self.announce
                .notify(user_topic(user.as_str()), EventKind::Memberships);
        }
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
                Some(m) => Some(self.render_one(viewer, &m, Others::Of(c)).await?),
                None => None,
            }
        } else {
            None
        };
        Ok(conversation_doc(c, viewer, last))
    }
}

/// Deletes the sync log's expired events every `interval` until `stop`.
pub async fn run_retention(
    chat: Chat,
    interval: Duration,
    stop: tokio_util::sync::CancellationToken,
) {
    let first = crate::background::First::Now;
    crate::background::every("retention", first, interval, stop, || async {
        match chat.purge_old_events().await {
            Ok(0) => {}
            Ok(n) => tracing::info!(deleted = n, "sync log: expired events deleted"),
            Err(e) => tracing::warn!(error = %e, "sync log retention pass failed"),
        }
    })
    .await;
}
