//! Messages and their attachments: posting under the conversation's lock,
//! history pages, edits, and deletion for everyone.

use chat_core::sync::EventKind;

use super::SqlMetadataStore;
use super::chat_log::{About, insert_event, mark_if_unreferenced};
use super::chat_rows::{
    ATTACHMENT_SELECT, MESSAGE_COLUMNS, Tx, attachment_from_row, message_from_row,
};
use super::to_i64;
use crate::ids::{ConversationId, MessageId, UserId, now_ms};
use crate::metadata_store::MetadataError;
use crate::metadata_store::chat::{
    ChatStore, ChatStoreError, MessageRecord, NewMessage, Page, Posted, Refusal,
};

impl SqlMetadataStore {
    /// Records a change to message `seq` in the sync log, commits, and
    /// answers the message as it now is.
    async fn commit_message_change(
        &self,
        mut tx: Tx,
        id: ConversationId,
        kind: EventKind,
        actor: &UserId,
        seq: u64,
    ) -> Result<MessageRecord, ChatStoreError> {
        insert_event(&mut tx, id, kind, actor, About::Message(seq)).await?;
        tx.commit().await?;
        Ok(self.message_after_write(id, seq).await?)
    }

    /// Messages of one conversation by a `where` clause over `seq` (binding
    /// from `$2`), with their attachments.
    pub(super) async fn messages_where(
        &self,
        id: ConversationId,
        clause: &str,
        binds: &[i64],
    ) -> Result<Vec<MessageRecord>, MetadataError> {
        let sql = format!(
            "select {MESSAGE_COLUMNS} from messages where conversation_id = $1 and {clause}"
        );
        let mut query = sqlx::query(&sql).bind(id.to_string());
        for b in binds {
            query = query.bind(*b);
        }
        let mut messages = query
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(message_from_row)
            .collect::<Result<Vec<_>, _>>()?;
        let (Some(low), Some(high)) = (
            messages.iter().map(|m| m.seq).min(),
            messages.iter().map(|m| m.seq).max(),
        ) else {
            return Ok(messages);
        };
        let attachments = sqlx::query(&format!(
            "{ATTACHMENT_SELECT} where a.conversation_id = $1 \
             and a.message_seq between $2 and $3 order by a.message_seq, a.position"
        ))
        .bind(id.to_string())
        .bind(to_i64(low)?)
        .bind(to_i64(high)?)
        .fetch_all(&self.pool)
        .await?;
        for row in &attachments {
            let a = attachment_from_row(row)?;
            if let Some(m) = messages.iter_mut().find(|m| m.seq == a.message_seq) {
                m.attachments.push(a);
            }
        }
        Ok(messages)
    }

    pub(super) async fn message_in_tx(
        &self,
        tx: &mut Tx,
        id: ConversationId,
        clause: &str,
        binds: &[&str],
    ) -> Result<Option<MessageRecord>, ChatStoreError> {
        let sql = format!(
            "select {MESSAGE_COLUMNS} from messages where conversation_id = $1 and {clause}"
        );
        let mut query = sqlx::query(&sql).bind(id.to_string());
        for b in binds {
            query = query.bind(*b);
        }
        Ok(query
            .fetch_optional(&mut **tx)
            .await?
            .as_ref()
            .map(message_from_row)
            .transpose()?)
    }

    pub(super) async fn message_after_write(
        &self,
        id: ConversationId,
        seq: u64,
    ) -> Result<MessageRecord, MetadataError> {
        self.message(id, seq)
            .await?
            .ok_or_else(|| MetadataError::Query("a message vanished".into()))
    }
}

pub(super) async fn post_message(
    store: &SqlMetadataStore,
    message: &NewMessage,
) -> Result<Posted, ChatStoreError> {
    let id = message.conversation_id;
    let mut tx = store.pool.begin().await?;
    let (_, last_seq) = store.lock_conversation(&mut tx, id).await?;
    if !store
        .member_in(&mut tx, id, &message.sender)
        .await?
        .is_some_and(|m| m.active)
    {
        return Err(Refusal::NotMember.into());
    }
    let client_id = message.client_message_id.to_string();
    if let Some(existing) = store
        .message_in_tx(
            &mut tx,
            id,
            "sender = $2 and client_message_id = $3",
            &[message.sender.as_str(), &client_id],
        )
        .await?
    {
        tx.rollback().await?;
        return Ok(Posted::Existing(
            store.message_after_write(id, existing.seq).await?,
        ));
    }
    if let Some(reply) = message.reply_to_seq
        && (reply == 0 || reply > last_seq)
    {
        return Err(Refusal::NoReplyTarget.into());
    }
    let seq = store.next_seq(&mut tx, id).await?;
    let now = now_ms();
    sqlx::query(&format!(
        "insert into messages ({MESSAGE_COLUMNS}) values \
         ($1, $2, $3, $4, $5, 'text', $6, null, null, $7, $8, $9, null, null)"
    ))
    .bind(id.to_string())
    .bind(to_i64(seq)?)
    .bind(MessageId::generate().to_string())
    .bind(&client_id)
    .bind(message.sender.as_str())
    .bind(message.text.as_deref())
    .bind(message.reply_to_seq.map(to_i64).transpose()?)
    .bind(i64::from(message.forwarded))
    .bind(now)
    .execute(&mut *tx)
    .await?;
    for (position, a) in message.attachments.iter().enumerate() {
        // Touching the blob row locks it against a GC decision and ends
        // any grace period; a content already collected is gone.
        let revived = sqlx::query("update blobs set unreferenced_since = null where blake3 = $1")
            .bind(a.blake3.to_hex())
            .execute(&mut *tx)
            .await?
            .rows_affected();
        if revived != 1 {
            return Err(Refusal::ContentGone.into());
        }
        sqlx::query(
            "insert into attachments (media_id, conversation_id, message_seq, position, \
             blake3, file_name, caption, uploader, created_at) \
             values ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(a.media_id.to_string())
        .bind(id.to_string())
        .bind(to_i64(seq)?)
        .bind(i64::try_from(position).unwrap_or(i64::MAX))
        .bind(a.blake3.to_hex())
        .bind(a.file_name.as_str())
        .bind(a.caption.as_deref())
        .bind(a.uploader.as_str())
        .bind(now)
        .execute(&mut *tx)
        .await?;
    }
    store
        .advance_own_marks(&mut tx, id, &message.sender, seq)
        .await?;
    insert_event(
        &mut tx,
        id,
        EventKind::MessageCreated,
        &message.sender,
        About::Message(seq),
    )
    .await?;
    tx.commit().await?;
    Ok(Posted::Created(store.message_after_write(id, seq).await?))
}

pub(super) async fn history(
    store: &SqlMetadataStore,
    id: ConversationId,
    page: Page,
    floor: u64,
    limit: u32,
) -> Result<Vec<MessageRecord>, MetadataError> {
    let (clause, from) = match page {
        Page::After(n) => ("seq > $2 and seq > $3 order by seq limit $4", n),
        Page::Before(n) => ("seq < $2 and seq > $3 order by seq desc limit $4", n),
    };
    let mut messages = store
        .messages_where(
            id,
            clause,
            &[
                i64::try_from(from).unwrap_or(i64::MAX),
                to_i64(floor)?,
                i64::from(limit),
            ],
        )
        .await?;
    if let Page::Before(_) = page {
        // `messages_where` gathers attachments in any order; keep the page's.
        messages.sort_by_key(|m| std::cmp::Reverse(m.seq));
    }
    Ok(messages)
}

pub(super) async fn edit_message(
    store: &SqlMetadataStore,
    id: ConversationId,
    seq: u64,
    editor: &UserId,
    text: &str,
) -> Result<MessageRecord, ChatStoreError> {
    let mut tx = store.pool.begin().await?;
    store.lock_conversation(&mut tx, id).await?;
    let edited = sqlx::query(
        "update messages set body = $4, edited_at = $5 where conversation_id = $1 \
         and seq = $2 and sender = $3 and kind = 'text' and deleted_at is null",
    )
    .bind(id.to_string())
    .bind(to_i64(seq)?)
    .bind(editor.as_str())
    .bind(text)
    .bind(now_ms())
    .execute(&mut *tx)
    .await?
    .rows_affected();
    if edited != 1 {
        return Err(Refusal::Stale.into());
    }
    store
        .commit_message_change(tx, id, EventKind::MessageEdited, editor, seq)
        .await
}

pub(super) async fn delete_message(
    store: &SqlMetadataStore,
    id: ConversationId,
    seq: u64,
    actor: &UserId,
) -> Result<MessageRecord, ChatStoreError> {
    let mut tx = store.pool.begin().await?;
    store.lock_conversation(&mut tx, id).await?;
    let deleted = sqlx::query(
        "update messages set body = null, deleted_at = $3 where conversation_id = $1 \
         and seq = $2 and kind = 'text' and deleted_at is null",
    )
    .bind(id.to_string())
    .bind(to_i64(seq)?)
    .bind(now_ms())
    .execute(&mut *tx)
    .await?
    .rows_affected();
    if deleted != 1 {
        return Err(Refusal::Stale.into());
    }
    let contents: Vec<String> = sqlx::query_scalar(
        "delete from attachments where conversation_id = $1 and message_seq = $2 \
         returning blake3",
    )
    .bind(id.to_string())
    .bind(to_i64(seq)?)
    .fetch_all(&mut *tx)
    .await?;
    for blake3 in &contents {
        mark_if_unreferenced(&mut tx, blake3).await?;
    }
    store
        .commit_message_change(tx, id, EventKind::MessageDeleted, actor, seq)
        .await
}

pub(super) async fn messages_between(
    store: &SqlMetadataStore,
    id: ConversationId,
    first: u64,
    last: u64,
) -> Result<Vec<MessageRecord>, MetadataError> {
    store
        .messages_where(
            id,
            "seq between $2 and $3 order by seq",
            &[to_i64(first)?, to_i64(last)?],
        )
        .await
}
