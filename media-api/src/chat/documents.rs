//! Conversations, messages, receipts and sync events as the API shows them,
//! each rendered for one viewer (their marks, their messages' status).

use chat_core::access::original_for;
use chat_core::receipts::{Marks, Status};
use serde::Serialize;

use crate::ids::{UserId, rfc3339};
use crate::media::MediaView;
use crate::metadata_store::chat::{
    AttachmentRecord, ConversationRecord, EventRecord, MemberRecord, MessageRecord,
};
use crate::metadata_store::jobs::VariantRecord;

/// A member as the API shows them.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct MemberDoc {
    /// The member's user id.
    #[schema(value_type = String)]
    pub user: UserId,
    /// `owner`, `admin` or `member`.
    #[schema(value_type = String)]
    pub role: &'static str,
    /// They read the messages after this `seq`.
    pub joined_seq: u64,
}

/// A conversation as one of its members sees it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ConversationDoc {
    /// Its id.
    pub conversation_id: String,
    /// `direct` or `group`.
    #[schema(value_type = String)]
    pub kind: &'static str,
    /// A group's title.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    /// Current members, in the order they joined (absent for a viewer who
    /// is no longer one of them).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub members: Option<Vec<MemberDoc>>,
    /// The last message's `seq`.
    pub last_seq: u64,
    /// The last message, when the viewer may see it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_message: Option<Box<MessageDoc>>,
    /// The viewer's read mark.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub my_read_seq: Option<u64>,
    /// The viewer's delivered mark.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub my_delivered_seq: Option<u64>,
    /// Messages after the viewer's read mark.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unread: Option<u64>,
    /// RFC 3339.
    pub created_at: String,
}

/// An attachment: its media document (its own `media_id`) and caption.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct AttachmentDoc {
    /// The content as a media item.
    #[serde(flatten)]
    pub media: MediaView,
    /// The sender's caption.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub caption: Option<String>,
    /// What `/content` gives this viewer: `exact` (the bytes as uploaded:
    /// the uploader, or not an image) or `metadata_stripped`.
    #[schema(value_type = String)]
    pub original: &'static str,
}

/// A message as one member sees it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct MessageDoc {
    /// Its conversation.
    pub conversation_id: String,
    /// Its place there.
    pub seq: u64,
    /// Its id.
    pub message_id: String,
    /// The id the sender's client gave it.
    pub client_message_id: String,
    /// Who sent it.
    #[schema(value_type = String)]
    pub sender: UserId,
    /// `text`, or a system message's kind.
    #[serde(rename = "type")]
    #[schema(value_type = String)]
    pub kind: &'static str,
    /// The text.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    /// A system message's subject.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub member: Option<UserId>,
    /// A role change's new role.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub role: Option<&'static str>,
    /// The attachments, in order.
    pub attachments: Vec<AttachmentDoc>,
    /// The message it answers.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reply_to_seq: Option<u64>,
    /// Posted by a forward.
    pub forwarded: bool,
    /// RFC 3339.
    pub created_at: String,
    /// RFC 3339, once edited.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub edited_at: Option<String>,
    /// Deleted for everyone.
    pub deleted: bool,
    /// For its sender: `sent`, `delivered` or `read`.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub status: Option<&'static str>,
}

/// A receipt event's marks.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ReceiptDoc {
    /// Whose marks.
    #[schema(value_type = String)]
    pub user: UserId,
    /// Delivered up to.
    pub delivered_seq: u64,
    /// Read up to.
    pub read_seq: u64,
}

/// One member's receipt for one message.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct MessageReceiptDoc {
    /// The member.
    #[schema(value_type = String)]
    pub user: UserId,
    /// RFC 3339: when it reached one of their devices.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub delivered_at: Option<String>,
    /// RFC 3339: when they read it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub read_at: Option<String>,
}

/// One event of the sync log, with the document it is about.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct EventDoc {
    /// What happened.
    #[schema(value_type = String)]
    pub kind: &'static str,
    /// Where.
    pub conversation_id: String,
    /// RFC 3339.
    pub at: String,
    /// Who did it.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub actor: Option<UserId>,
    /// The member a membership event is about.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub member: Option<UserId>,
    /// The message (`message_*` events).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<MessageDoc>,
    /// The marks (`receipt` events).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub receipt: Option<ReceiptDoc>,
    /// The conversation (creation and membership events).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub conversation: Option<ConversationDoc>,
}

/// The lowest marks of every current member but `sender` (`None`: there is
/// no other): what a message's status is computed from.
pub(super) fn lowest_marks(conversation: &ConversationRecord, sender: &UserId) -> Option<Marks> {
    let others = conversation.members.iter().filter(|m| &m.user != sender);
    others.fold(None, |low: Option<Marks>, m| {
        Some(match low {
            None => m.marks,
            Some(l) => Marks {
                delivered_seq: l.delivered_seq.min(m.marks.delivered_seq),
                read_seq: l.read_seq.min(m.marks.read_seq),
            },
        })
    })
}

/// Whether `viewer` is shown the message's status: their own text message,
/// not deleted.
pub(super) fn shows_status(m: &MessageRecord, viewer: &UserId) -> bool {
    &m.sender == viewer && m.kind == chat_core::message::MessageKind::Text && !m.deleted
}

/// The viewer's current membership, if they are a member.
pub(super) fn membership<'a>(
    conversation: &'a ConversationRecord,
    viewer: &UserId,
) -> Option<&'a MemberRecord> {
    conversation.members.iter().find(|m| &m.user == viewer)
}

/// An attachment with its content's variants, as `viewer` gets it.
pub(super) fn attachment_doc(
    a: &AttachmentRecord,
    variants: &[VariantRecord],
    viewer: &UserId,
) -> AttachmentDoc {
    let is_image =
        transcoder::sniff::kind_of(&a.media.content_type) == transcoder::sniff::MediaKind::Image;
    AttachmentDoc {
        media: MediaView::from(&a.media).with_variants(variants),
        caption: a.caption.clone(),
        original: original_for(a.media.owner.as_str(), viewer.as_str(), is_image).as_str(),
    }
}

/// A message for `viewer`; `variants` gives each attachment's content's
/// variants; its status, when the viewer sent it, comes from `others` (the
/// other members' lowest marks).
pub(super) fn message_doc(
    m: &MessageRecord,
    viewer: &UserId,
    others: Option<Marks>,
    variants: &dyn Fn(&AttachmentRecord) -> Vec<VariantRecord>,
) -> MessageDoc {
    let status = shows_status(m, viewer).then(|| Status::of(m.seq, others.as_slice()).as_str());
    MessageDoc {
        conversation_id: m.conversation_id.to_string(),
        seq: m.seq,
        message_id: m.message_id.to_string(),
        client_message_id: m.client_message_id.to_string(),
        sender: m.sender.clone(),
        kind: m.kind.as_str(),
        text: m.text.clone(),
        member: m.member.clone(),
        role: m.role.map(|r| r.as_str()),
        attachments: m
            .attachments
            .iter()
            .map(|a| attachment_doc(a, &variants(a), viewer))
            .collect(),
        reply_to_seq: m.reply_to_seq,
        forwarded: m.forwarded,
        created_at: rfc3339(m.created_at),
        edited_at: m.edited_at.map(rfc3339),
        deleted: m.deleted,
        status,
    }
}

/// A conversation for `viewer`, with its last message when given.
pub(super) fn conversation_doc(
    c: &ConversationRecord,
    viewer: &UserId,
    last_message: Option<MessageDoc>,
) -> ConversationDoc {
    let me = membership(c, viewer);
    ConversationDoc {
        conversation_id: c.conversation_id.to_string(),
        kind: c.kind.as_str(),
        title: c.title.clone(),
        members: me.map(|_| {
            c.members
                .iter()
                .map(|m| MemberDoc {
                    user: m.user.clone(),
                    role: m.role.as_str(),
                    joined_seq: m.joined_seq,
                })
                .collect()
        }),
        last_seq: c.last_seq,
        last_message: me.and(last_message).map(Box::new),
        my_read_seq: me.map(|m| m.marks.read_seq),
        my_delivered_seq: me.map(|m| m.marks.delivered_seq),
        unread: me.map(|m| c.last_seq.saturating_sub(m.marks.read_seq)),
        created_at: rfc3339(c.created_at),
    }
}

/// An event's own fields; the document it is about is added by the caller.
pub(super) fn event_doc(e: &EventRecord) -> EventDoc {
    EventDoc {
        kind: e.kind.as_str(),
        conversation_id: e.conversation_id.to_string(),
        at: rfc3339(e.at),
        actor: e.actor.clone(),
        member: e.member.clone(),
        message: None,
        receipt: match (&e.member, e.marks) {
            (Some(user), Some(marks)) => Some(ReceiptDoc {
                user: user.clone(),
                delivered_seq: marks.delivered_seq,
                read_seq: marks.read_seq,
            }),
            _ => None,
        },
        conversation: None,
    }
}
