//! Messages and their attachments: posting under the conversation's lock,
//! history pages, edits, and deletion for everyone.

use chat_core::sync::EventKind;

use super::SqlMetadataStore;
use super::chat_log::{About, insert_event, mark_if_unreferenced};
use super::chat_rows::{
    ATTACHMENT_SELECT, MESSAGE_COLUMNS, Tx, attachment_from_row, message_from_row,
};
use super::{BLOB_COLUMNS, media_with_blob, to_i64};
use crate::ids::{ConversationId, MessageId, UserId, now_ms};
use crate::metadata_store::chat::{
    AttachmentRecord, ChatStore, ChatStoreError, MessageRecord, NewMessage, Page, Posted, Refusal,
};
use crate::metadata_store::{Dialect, MetadataError};
use chat_core::message::MessageKind;
use sqlx::pool::PoolConnection;
use sqlx::{Any, AnyConnection, Row};

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
            .fetch_all(&self.reads)
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
        .fetch_all(&self.reads)
        .await?;
        for row in &attachments {
            let a = attachment_from_row(row)?;
            if let Some(m) = messages.iter_mut().find(|m| m.seq == a.message_seq) {
                m.attachments.push(a);
            }
        }
        Ok(messages)
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

/// Where a post writes. On SQLite a text message is one statement (its
/// trigger's writes included), atomic without a transaction, on the one
/// writer connection, which also serialises posts: no round trips for
/// `begin` and `commit`. Otherwise (a message with attachments) a
/// transaction, holding the conversation's lock on PostgreSQL. (A text
/// message on PostgreSQL is `post_text_postgres`.)
enum Writer {
    Alone(PoolConnection<Any>),
    Transaction(Tx),
}

impl Writer {
    async fn for_post(
        store: &SqlMetadataStore,
        message: &NewMessage,
    ) -> Result<Self, ChatStoreError> {
        if store.dialect == Dialect::Sqlite && message.attachments.is_empty() {
            return Ok(Self::Alone(store.pool.acquire().await?));
        }
        let tx = match store.dialect {
            // `begin` and the conversation's lock in one round trip.
            Dialect::Postgres => {
                let key = super::chat_members::lock_key(message.conversation_id);
                store
                    .pool
                    .begin_with(format!("begin; select pg_advisory_xact_lock({key})"))
                    .await?
            }
            Dialect::Sqlite => store.pool.begin().await?,
        };
        Ok(Self::Transaction(tx))
    }

    fn connection(&mut self) -> &mut AnyConnection {
        match self {
            Self::Alone(connection) => connection,
            Self::Transaction(tx) => tx,
        }
    }

    async fn commit(self) -> Result<(), ChatStoreError> {
        if let Self::Transaction(tx) = self {
            tx.commit().await?;
        }
        Ok(())
    }

    async fn rollback(self) -> Result<(), ChatStoreError> {
        if let Self::Transaction(tx) = self {
            tx.rollback().await?;
        }
        Ok(())
    }
}

pub(super) async fn post_message(
    store: &SqlMetadataStore,
    message: &NewMessage,
) -> Result<Posted, ChatStoreError> {
    if store.dialect == Dialect::Postgres && message.attachments.is_empty() {
        return post_text_postgres(store, message).await;
    }
    let id = message.conversation_id;
    let client_id = message.client_message_id.to_string();
    let mut writer = Writer::for_post(store, message).await?;
    let now = now_ms();
    let message_id = MessageId::generate();
    // One statement: the next seq, if the sender is a member, has not
    // posted this client id before, and replies to a message they see
    // (after they joined, before this one). Its trigger moves the
    // conversation's last seq, logs the message in the sync log and moves
    // the sender's marks (they read what they answer).
    let posted: Option<i64> = sqlx::query_scalar(&format!(
        "insert into messages ({MESSAGE_COLUMNS}) \
         select c.conversation_id, c.last_seq + 1, $2, $3, $4, 'text', $5, null, null, $6, \
         $7, $8, null, null from conversations c join chat_members m \
         on m.conversation_id = c.conversation_id and m.user_id = $4 and m.left_event is null \
         where c.conversation_id = $1 \
         and not exists (select 1 from messages p where p.conversation_id = $1 \
         and p.sender = $4 and p.client_message_id = $3) \
         and ($6 is null or ($6 > m.joined_seq and $6 <= c.last_seq)) \
         returning seq"
    ))
    .bind(id.to_string())
    .bind(message_id.to_string())
    .bind(&client_id)
    .bind(message.sender.as_str())
    .bind(message.text.as_deref())
    .bind(message.reply_to_seq.map(to_i64).transpose()?)
    .bind(i64::from(message.forwarded))
    .bind(now)
    .fetch_optional(writer.connection())
    .await?;
    let Some(seq) = posted else {
        // Why not: rare, so asked only now.
        let row = sqlx::query(
            "select (select count(*) from chat_members where conversation_id = $1 \
             and user_id = $2 and left_event is null) as member, \
             (select seq from messages where conversation_id = $1 and sender = $2 \
             and client_message_id = $3) as existing",
        )
        .bind(id.to_string())
        .bind(message.sender.as_str())
        .bind(&client_id)
        .fetch_one(writer.connection())
        .await?;
        writer.rollback().await?;
        if row.try_get::<i64, _>("member")? == 0 {
            return Err(Refusal::NotMember.into());
        }
        return match row.try_get::<Option<i64>, _>("existing")? {
            Some(seq) => Ok(Posted::Existing(
                store
                    .message_after_write(id, u64::try_from(seq).unwrap_or(0))
                    .await?,
            )),
            None => Err(Refusal::NoReplyTarget.into()),
        };
    };
    let seq = u64::try_from(seq).map_err(|_| MetadataError::Query("negative seq".into()))?;
    let mut attachments = Vec::with_capacity(message.attachments.len());
    for (position, a) in message.attachments.iter().enumerate() {
        // Touching the blob row locks it against a GC decision and ends
        // any grace period; a content already collected is gone. Its
        // columns make the attachment's document without another read.
        let blob = sqlx::query(&format!(
            "update blobs set unreferenced_since = null where blake3 = $1 \
             returning {BLOB_COLUMNS}"
        ))
        .bind(a.blake3.to_hex())
        .fetch_optional(writer.connection())
        .await?
        .ok_or(Refusal::ContentGone)?;
        sqlx::query(
            "insert into attachments (media_id, conversation_id, message_seq, position, \
             blake3, file_name, caption, uploader, created_at, shown_after) \
             values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
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
        .bind(a.shown_after)
        .execute(writer.connection())
        .await?;
        attachments.push(AttachmentRecord {
            media: media_with_blob(
                &blob,
                a.media_id,
                a.uploader.clone(),
                a.blake3,
                a.file_name.clone(),
                now,
                a.shown_after,
            )?,
            conversation_id: id,
            message_seq: seq,
            caption: a.caption.clone(),
        });
    }
    writer.commit().await?;
    Ok(Posted::Created(posted_record(
        message,
        seq,
        message_id,
        now,
        attachments,
    )))
}

/// The record of a message just posted, from what was written.
fn posted_record(
    message: &NewMessage,
    seq: u64,
    message_id: MessageId,
    now: i64,
    attachments: Vec<AttachmentRecord>,
) -> MessageRecord {
    MessageRecord {
        conversation_id: message.conversation_id,
        seq,
        message_id,
        client_message_id: message.client_message_id,
        sender: message.sender.clone(),
        kind: MessageKind::Text,
        text: message.text.clone(),
        member: None,
        role: None,
        reply_to_seq: message.reply_to_seq,
        forwarded: message.forwarded,
        created_at: now,
        edited_at: None,
        deleted: false,
        attachments,
    }
}

/// A text message on PostgreSQL: one statement in a transaction of its own.
/// Inserted with seq 0, it is numbered by its `messages_numbered` trigger
/// (the migration), which takes the conversation's lock and refuses, by
/// SQLSTATE, a sender who is not a member (`MC001`), a client id posted
/// before (`MC002`) and a reply to no message they see (`MC003`).
async fn post_text_postgres(
    store: &SqlMetadataStore,
    message: &NewMessage,
) -> Result<Posted, ChatStoreError> {
    let id = message.conversation_id;
    let now = now_ms();
    let message_id = MessageId::generate();
    let inserted: Result<i64, sqlx::Error> = sqlx::query_scalar(&format!(
        "insert into messages ({MESSAGE_COLUMNS}) values \
         ($1, 0, $2, $3, $4, 'text', $5, null, null, $6, $7, $8, null, null) returning seq"
    ))
    .bind(id.to_string())
    .bind(message_id.to_string())
    .bind(message.client_message_id.to_string())
    .bind(message.sender.as_str())
    .bind(message.text.as_deref())
    .bind(message.reply_to_seq.map(to_i64).transpose()?)
    .bind(i64::from(message.forwarded))
    .bind(now)
    .fetch_one(&store.pool)
    .await;
    let code = match &inserted {
        Err(sqlx::Error::Database(e)) => e.code().map(|c| c.into_owned()),
        _ => None,
    };
    match (inserted, code.as_deref()) {
        (Ok(seq), _) => {
            let seq =
                u64::try_from(seq).map_err(|_| MetadataError::Query("negative seq".into()))?;
            Ok(Posted::Created(posted_record(
                message,
                seq,
                message_id,
                now,
                Vec::new(),
            )))
        }
        (_, Some("MC001")) => Err(Refusal::NotMember.into()),
        (_, Some("MC003")) => Err(Refusal::NoReplyTarget.into()),
        // Posted before: by an earlier try, or by one racing this one.
        (_, Some("MC002" | "23505")) => {
            let seq: i64 = sqlx::query_scalar(
                "select seq from messages where conversation_id = $1 and sender = $2 \
                 and client_message_id = $3",
            )
            .bind(id.to_string())
            .bind(message.sender.as_str())
            .bind(message.client_message_id.to_string())
            .fetch_one(&store.reads)
            .await?;
            Ok(Posted::Existing(
                store
                    .message_after_write(id, u64::try_from(seq).unwrap_or(0))
                    .await?,
            ))
        }
        (Err(e), _) => Err(e.into()),
    }
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
    store.lock_writes(&mut tx, id).await?;
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
    store.lock_writes(&mut tx, id).await?;
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
    let (low, high) = (to_i64(first)?, to_i64(last)?);
    // Shared: every member's reader renders the message just posted.
    store
        .message_reads
        .get((id, first, last), || async move {
            store
                .messages_where(id, "seq between $2 and $3 order by seq", &[low, high])
                .await
        })
        .await
}
