//! The messaging core's rows: the columns each query reads, and each row
//! parsed once into the seam's records.

use chat_core::conversation::{ConversationKind, Role};
use chat_core::message::MessageKind;
use chat_core::receipts::Marks;
use sqlx::any::AnyRow;
use sqlx::{Any, Row, Transaction};

use super::{bad_id, get_hash, get_u64, media_with_blob};
use crate::ids::{ClientMessageId, ConversationId, FileName, MediaId, MessageId, UserId};
use crate::metadata_store::MetadataError;
use crate::metadata_store::chat::{
    AttachmentRecord, ConversationRecord, MemberRecord, MessageRecord, Seat,
};

pub(super) const CONVERSATION_COLUMNS: &str =
    "conversation_id, kind, title, last_seq, last_activity, created_at";
pub(super) const MEMBER_COLUMNS: &str =
    "conversation_id, user_id, role, joined_seq, delivered_seq, read_seq, left_event";
pub(super) const MESSAGE_COLUMNS: &str = "conversation_id, seq, message_id, client_message_id, sender, kind, \
    body, member, role, reply_to_seq, forwarded, created_at, edited_at, deleted_at";
pub(super) const ATTACHMENT_SELECT: &str = "select a.media_id, a.conversation_id, a.message_seq, a.blake3, \
    a.file_name, a.caption, a.uploader, a.created_at, b.size, b.content_type, b.processing, \
    b.processing_error, b.probe, b.header_probe, b.storage_key, b.blocked_at, a.shown_after \
    from attachments a join blobs b on b.blake3 = a.blake3";

pub(super) type Tx = Transaction<'static, Any>;

pub(super) fn stored(column: &str, value: &str) -> MetadataError {
    MetadataError::Query(format!("unknown {column} {value:?}"))
}

pub(super) fn user_in(row: &AnyRow, column: &str) -> Result<UserId, MetadataError> {
    UserId::parse(&row.try_get::<String, _>(column)?).map_err(MetadataError::Query)
}

pub(super) fn opt_user_in(row: &AnyRow, column: &str) -> Result<Option<UserId>, MetadataError> {
    row.try_get::<Option<String>, _>(column)?
        .map(|u| UserId::parse(&u).map_err(MetadataError::Query))
        .transpose()
}

pub(super) fn opt_u64(row: &AnyRow, column: &str) -> Result<Option<u64>, MetadataError> {
    row.try_get::<Option<i64>, _>(column)?
        .map(|v| u64::try_from(v).map_err(|_| MetadataError::Query(format!("negative {column}"))))
        .transpose()
}

pub(super) fn conversation_id_in(
    row: &AnyRow,
    column: &str,
) -> Result<ConversationId, MetadataError> {
    ConversationId::parse(&row.try_get::<String, _>(column)?).ok_or_else(|| bad_id(column))
}

pub(super) fn conversation_from_row(row: &AnyRow) -> Result<ConversationRecord, MetadataError> {
    let kind: String = row.try_get("kind")?;
    Ok(ConversationRecord {
        conversation_id: conversation_id_in(row, "conversation_id")?,
        kind: ConversationKind::parse(&kind).ok_or_else(|| stored("kind", &kind))?,
        title: row.try_get("title")?,
        last_seq: get_u64(row, "last_seq")?,
        last_activity: row.try_get("last_activity")?,
        created_at: row.try_get("created_at")?,
        members: Vec::new(),
    })
}

pub(super) fn member_from_row(row: &AnyRow) -> Result<MemberRecord, MetadataError> {
    let role: String = row.try_get("role")?;
    Ok(MemberRecord {
        user: user_in(row, "user_id")?,
        role: Role::parse(&role).ok_or_else(|| stored("role", &role))?,
        joined_seq: get_u64(row, "joined_seq")?,
        marks: Marks {
            delivered_seq: get_u64(row, "delivered_seq")?,
            read_seq: get_u64(row, "read_seq")?,
        },
        active: row.try_get::<Option<i64>, _>("left_event")?.is_none(),
    })
}

pub(super) fn seat_from_row(row: &AnyRow) -> Result<Seat, MetadataError> {
    let kind: String = row.try_get("kind")?;
    let role: String = row.try_get("role")?;
    Ok(Seat {
        kind: ConversationKind::parse(&kind).ok_or_else(|| stored("kind", &kind))?,
        last_seq: get_u64(row, "last_seq")?,
        role: Role::parse(&role).ok_or_else(|| stored("role", &role))?,
        joined_seq: get_u64(row, "joined_seq")?,
        marks: Marks {
            delivered_seq: get_u64(row, "delivered_seq")?,
            read_seq: get_u64(row, "read_seq")?,
        },
    })
}

pub(super) fn message_from_row(row: &AnyRow) -> Result<MessageRecord, MetadataError> {
    let kind: String = row.try_get("kind")?;
    let role: Option<String> = row.try_get("role")?;
    Ok(MessageRecord {
        conversation_id: conversation_id_in(row, "conversation_id")?,
        seq: get_u64(row, "seq")?,
        message_id: MessageId::parse(&row.try_get::<String, _>("message_id")?)
            .ok_or_else(|| bad_id("message_id"))?,
        client_message_id: ClientMessageId::parse(&row.try_get::<String, _>("client_message_id")?)
            .ok_or_else(|| bad_id("client_message_id"))?,
        sender: user_in(row, "sender")?,
        kind: MessageKind::parse(&kind).ok_or_else(|| stored("message kind", &kind))?,
        text: row.try_get("body")?,
        member: opt_user_in(row, "member")?,
        role: role
            .map(|r| Role::parse(&r).ok_or_else(|| stored("role", &r)))
            .transpose()?,
        reply_to_seq: opt_u64(row, "reply_to_seq")?,
        forwarded: row.try_get::<i64, _>("forwarded")? != 0,
        created_at: row.try_get("created_at")?,
        edited_at: row.try_get("edited_at")?,
        deleted: row.try_get::<Option<i64>, _>("deleted_at")?.is_some(),
        attachments: Vec::new(),
    })
}

pub(super) fn attachment_from_row(row: &AnyRow) -> Result<AttachmentRecord, MetadataError> {
    let media_id =
        MediaId::parse(&row.try_get::<String, _>("media_id")?).ok_or_else(|| bad_id("media_id"))?;
    Ok(AttachmentRecord {
        media: media_with_blob(
            row,
            media_id,
            user_in(row, "uploader")?,
            crate::ids::Blake3(get_hash(row, "blake3")?),
            FileName::parse(&row.try_get::<String, _>("file_name")?)
                .map_err(MetadataError::Query)?,
            row.try_get("created_at")?,
            row.try_get("shown_after")?,
        )?,
        conversation_id: conversation_id_in(row, "conversation_id")?,
        message_seq: get_u64(row, "message_seq")?,
        caption: row.try_get("caption")?,
    })
}

/// `$first, $first+1, …`: placeholders for an `in (…)` list.
pub(super) fn placeholders(first: usize, count: usize) -> String {
    (first..first + count)
        .map(|n| format!("${n}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// One key per pair, whatever the order they are named in; the length
/// prefix keeps `("ab", "c")` and `("a", "bc")` apart.
pub(super) fn direct_key(a: &UserId, b: &UserId) -> String {
    let (first, second) = if a.as_str() <= b.as_str() {
        (a, b)
    } else {
        (b, a)
    };
    format!("{}:{}{}", first.as_str().len(), first, second)
}
