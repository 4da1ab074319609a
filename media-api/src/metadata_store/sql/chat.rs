//! The messaging core's statements: conversations, members, messages and
//! attachments: the trait's face here, conversations and membership in
//! `chat_members`, messages in `chat_messages`, rows in `chat_rows`, and the
//! sync log and receipts in `chat_log`.
//!
//! Every write that gives a conversation a new `seq` or changes its members
//! first takes the conversation's lock (on PostgreSQL a transaction-scoped
//! advisory lock, taken before the transaction writes anything; SQLite's one
//! writer connection is the lock). Writes to one conversation therefore
//! commit in the order they took it, `seq`s come out gapless, and each
//! transaction is given its id only after the lock: the sync log's order
//! (`chat-core`'s `sync` module) agrees with the conversation's.

use async_trait::async_trait;
use chat_core::receipts::Marks;
use chat_core::sync::SyncCursor;

use super::chat_rows::{
    ATTACHMENT_SELECT, MEMBER_COLUMNS, attachment_from_row, conversation_id_in, member_from_row,
    seat_from_row, user_in,
};
use super::{SqlMetadataStore, chat_log, chat_members, chat_messages};
use crate::ids::{Blake3, ConversationId, MediaId, UserId};
use crate::metadata_store::MetadataError;
use crate::metadata_store::chat::{
    Actor, AttachmentRecord, ChatStore, ChatStoreError, ConversationRecord, MemberChange,
    MemberRecord, MessageRecord, NewMessage, Page, Posted, ReceiptRecord, Seat, SyncRecords,
};
use sqlx::Row;

#[async_trait]
impl ChatStore for SqlMetadataStore {
    async fn open_direct(
        &self,
        id: ConversationId,
        a: &UserId,
        b: &UserId,
    ) -> Result<(ConversationRecord, bool), ChatStoreError> {
        chat_members::open_direct(self, id, a, b).await
    }

    async fn create_group(
        &self,
        id: ConversationId,
        owner: &UserId,
        title: &str,
        members: &[UserId],
    ) -> Result<ConversationRecord, ChatStoreError> {
        chat_members::create_group(self, id, owner, title, members).await
    }

    async fn conversation(
        &self,
        id: ConversationId,
    ) -> Result<Option<ConversationRecord>, MetadataError> {
        Ok(self.conversations(&[id]).await?.pop())
    }

    async fn conversations(
        &self,
        ids: &[ConversationId],
    ) -> Result<Vec<ConversationRecord>, MetadataError> {
        chat_members::conversations(self, ids).await
    }

    async fn conversations_of(
        &self,
        user: &UserId,
        after: Option<(i64, ConversationId)>,
        limit: u32,
    ) -> Result<Vec<ConversationRecord>, MetadataError> {
        chat_members::conversations_of(self, user, after, limit).await
    }

    async fn member(
        &self,
        id: ConversationId,
        user: &UserId,
    ) -> Result<Option<MemberRecord>, MetadataError> {
        sqlx::query(&format!(
            "select {MEMBER_COLUMNS} from chat_members where conversation_id = $1 and user_id = $2"
        ))
        .bind(id.to_string())
        .bind(user.as_str())
        .fetch_optional(&self.reads)
        .await?
        .as_ref()
        .map(member_from_row)
        .transpose()
    }

    async fn memberships_of(
        &self,
        user: &UserId,
    ) -> Result<Vec<(ConversationId, u64)>, MetadataError> {
        let rows = sqlx::query(
            "select conversation_id, joined_seq from chat_members \
             where user_id = $1 and left_event is null",
        )
        .bind(user.as_str())
        .fetch_all(&self.reads)
        .await?;
        rows.iter()
            .map(|row| {
                let joined: i64 = row.try_get("joined_seq")?;
                Ok((
                    conversation_id_in(row, "conversation_id")?,
                    u64::try_from(joined).unwrap_or(0),
                ))
            })
            .collect()
    }

    async fn sharing_with(
        &self,
        user: &UserId,
        others: &[UserId],
    ) -> Result<Vec<UserId>, MetadataError> {
        if others.is_empty() {
            return Ok(Vec::new());
        }
        // One placeholder each: the list is bounded by the caller's limit.
        let marks: Vec<String> = (0..others.len()).map(|i| format!("${}", i + 2)).collect();
        let sql = format!(
            "select distinct o.user_id from chat_members me \
             join chat_members o on o.conversation_id = me.conversation_id \
             where me.user_id = $1 and me.left_event is null and o.left_event is null \
             and o.user_id in ({})",
            marks.join(", ")
        );
        let mut query = sqlx::query(&sql).bind(user.as_str());
        for other in others {
            query = query.bind(other.as_str());
        }
        let rows = query.fetch_all(&self.reads).await?;
        rows.iter().map(|row| user_in(row, "user_id")).collect()
    }

    async fn attachments_holding(
        &self,
        blake3: &Blake3,
    ) -> Result<Vec<AttachmentRecord>, MetadataError> {
        sqlx::query(&format!("{ATTACHMENT_SELECT} where a.blake3 = $1"))
            .bind(blake3.to_hex())
            .fetch_all(&self.reads)
            .await?
            .iter()
            .map(attachment_from_row)
            .collect()
    }

    async fn seat(&self, id: ConversationId, user: &UserId) -> Result<Option<Seat>, MetadataError> {
        sqlx::query(
            "select c.kind, c.last_seq, m.role, m.joined_seq, m.delivered_seq, m.read_seq \
             from chat_members m join conversations c on c.conversation_id = m.conversation_id \
             where m.conversation_id = $1 and m.user_id = $2 and m.left_event is null",
        )
        .bind(id.to_string())
        .bind(user.as_str())
        .fetch_optional(&self.reads)
        .await?
        .as_ref()
        .map(seat_from_row)
        .transpose()
    }

    async fn others_marks(
        &self,
        id: ConversationId,
        except: &UserId,
    ) -> Result<Option<Marks>, MetadataError> {
        let row = sqlx::query(
            "select min(delivered_seq) as delivered_seq, min(read_seq) as read_seq \
             from chat_members where conversation_id = $1 and left_event is null \
             and user_id <> $2",
        )
        .bind(id.to_string())
        .bind(except.as_str())
        .fetch_one(&self.reads)
        .await?;
        let delivered: Option<i64> = row.try_get("delivered_seq")?;
        let read: Option<i64> = row.try_get("read_seq")?;
        Ok(match (delivered, read) {
            (Some(d), Some(r)) => Some(Marks {
                delivered_seq: u64::try_from(d).unwrap_or(0),
                read_seq: u64::try_from(r).unwrap_or(0),
            }),
            _ => None,
        })
    }

    async fn change_member(
        &self,
        id: ConversationId,
        actor: &Actor,
        change: &MemberChange,
    ) -> Result<(ConversationRecord, MessageRecord), ChatStoreError> {
        chat_members::change_member(self, id, actor, change).await
    }

    async fn post_message(&self, message: &NewMessage) -> Result<Posted, ChatStoreError> {
        chat_messages::post_message(self, message).await
    }

    async fn message(
        &self,
        id: ConversationId,
        seq: u64,
    ) -> Result<Option<MessageRecord>, MetadataError> {
        Ok(self.messages_between(id, seq, seq).await?.pop())
    }

    async fn messages_between(
        &self,
        id: ConversationId,
        first: u64,
        last: u64,
    ) -> Result<Vec<MessageRecord>, MetadataError> {
        chat_messages::messages_between(self, id, first, last).await
    }

    async fn history(
        &self,
        id: ConversationId,
        page: Page,
        floor: u64,
        limit: u32,
    ) -> Result<Vec<MessageRecord>, MetadataError> {
        chat_messages::history(self, id, page, floor, limit).await
    }

    async fn edit_message(
        &self,
        id: ConversationId,
        seq: u64,
        editor: &UserId,
        text: &str,
    ) -> Result<MessageRecord, ChatStoreError> {
        chat_messages::edit_message(self, id, seq, editor, text).await
    }

    async fn delete_message(
        &self,
        id: ConversationId,
        seq: u64,
        actor: &UserId,
    ) -> Result<MessageRecord, ChatStoreError> {
        chat_messages::delete_message(self, id, seq, actor).await
    }

    async fn raise_marks(
        &self,
        id: ConversationId,
        user: &UserId,
        to: Marks,
    ) -> Result<Marks, ChatStoreError> {
        chat_log::raise_marks(self, id, user, to).await
    }

    async fn receipts(
        &self,
        id: ConversationId,
        seq: u64,
        except: &UserId,
    ) -> Result<Vec<ReceiptRecord>, MetadataError> {
        chat_log::receipts(self, id, seq, except).await
    }

    async fn attachment(&self, id: MediaId) -> Result<Option<AttachmentRecord>, MetadataError> {
        sqlx::query(&format!("{ATTACHMENT_SELECT} where a.media_id = $1"))
            .bind(id.to_string())
            .fetch_optional(&self.reads)
            .await?
            .as_ref()
            .map(attachment_from_row)
            .transpose()
    }

    async fn sync(
        &self,
        user: &UserId,
        after: SyncCursor,
        limit: u32,
    ) -> Result<SyncRecords, MetadataError> {
        chat_log::sync(self, user, after, limit).await
    }

    async fn sync_now(&self) -> Result<SyncCursor, MetadataError> {
        chat_log::now(self).await
    }

    async fn sync_horizon(&self) -> Result<SyncCursor, MetadataError> {
        chat_log::horizon(self).await
    }

    async fn purge_events(&self, before: i64) -> Result<u64, MetadataError> {
        chat_log::purge(self, before).await
    }
}
