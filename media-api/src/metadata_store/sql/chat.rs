//! The messaging core's statements: conversations, members, messages and
//! attachments. The sync log, receipts and their reads are in `chat_log`.
//!
//! Every write that gives a conversation a new `seq` or changes its members
//! first takes the conversation's lock (on PostgreSQL a transaction-scoped
//! advisory lock, taken before the transaction writes anything; SQLite's one
//! writer connection is the lock). Writes to one conversation therefore
//! commit in the order they took it, `seq`s come out gapless, and each
//! transaction is given its id only after the lock: the sync log's order
//! (`chat-core`'s `sync` module) agrees with the conversation's.

use async_trait::async_trait;
use chat_core::conversation::{ConversationKind, Role};
use chat_core::message::MessageKind;
use chat_core::receipts::Marks;
use chat_core::sync::{EventKind, SyncCursor};
use sqlx::any::AnyRow;
use sqlx::{Any, Row, Transaction};

use super::chat_log::{insert_event, mark_if_unreferenced, record_marks};
use super::{SqlMetadataStore, bad_id, get_hash, get_u64, media_with_blob, to_i64};
use crate::ids::{ClientMessageId, ConversationId, FileName, MediaId, MessageId, UserId, now_ms};
use crate::metadata_store::chat::{
    Actor, AttachmentRecord, ChatStore, ChatStoreError, ConversationRecord, MemberChange,
    MemberRecord, MessageRecord, NewMessage, Page, Posted, ReceiptRecord, Refusal, SyncRecords,
};
use crate::metadata_store::{Dialect, MetadataError};

const CONVERSATION_COLUMNS: &str =
    "conversation_id, kind, title, last_seq, last_activity, created_at";
const MEMBER_COLUMNS: &str =
    "conversation_id, user_id, role, joined_seq, delivered_seq, read_seq, left_event";
const MESSAGE_COLUMNS: &str = "conversation_id, seq, message_id, client_message_id, sender, kind, \
    body, member, role, reply_to_seq, forwarded, created_at, edited_at, deleted_at";
const ATTACHMENT_SELECT: &str = "select a.media_id, a.conversation_id, a.message_seq, a.blake3, \
    a.file_name, a.caption, a.uploader, a.created_at, b.size, b.content_type, b.processing, \
    b.processing_error, b.probe, b.storage_key \
    from attachments a join blobs b on b.blake3 = a.blake3";

type Tx = Transaction<'static, Any>;

fn stored(column: &str, value: &str) -> MetadataError {
    MetadataError::Query(format!("unknown {column} {value:?}"))
}

fn user_in(row: &AnyRow, column: &str) -> Result<UserId, MetadataError> {
    UserId::parse(&row.try_get::<String, _>(column)?).map_err(MetadataError::Query)
}

fn opt_user_in(row: &AnyRow, column: &str) -> Result<Option<UserId>, MetadataError> {
    row.try_get::<Option<String>, _>(column)?
        .map(|u| UserId::parse(&u).map_err(MetadataError::Query))
        .transpose()
}

fn opt_u64(row: &AnyRow, column: &str) -> Result<Option<u64>, MetadataError> {
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

fn conversation_from_row(row: &AnyRow) -> Result<ConversationRecord, MetadataError> {
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

fn member_from_row(row: &AnyRow) -> Result<MemberRecord, MetadataError> {
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

fn message_from_row(row: &AnyRow) -> Result<MessageRecord, MetadataError> {
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

fn attachment_from_row(row: &AnyRow) -> Result<AttachmentRecord, MetadataError> {
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
fn direct_key(a: &UserId, b: &UserId) -> String {
    let (first, second) = if a.as_str() <= b.as_str() {
        (a, b)
    } else {
        (b, a)
    };
    format!("{}:{}{}", first.as_str().len(), first, second)
}

impl SqlMetadataStore {
    /// Takes the conversation's write lock for the rest of the transaction
    /// (see the module docs) and reads its kind and last `seq`.
    async fn lock_conversation(
        &self,
        tx: &mut Tx,
        id: ConversationId,
    ) -> Result<(ConversationKind, u64), ChatStoreError> {
        if self.dialect == Dialect::Postgres {
            sqlx::query("select pg_advisory_xact_lock(7411, hashtext($1))")
                .bind(id.to_string())
                .execute(&mut **tx)
                .await?;
        }
        let row =
            sqlx::query("select kind, last_seq from conversations where conversation_id = $1")
                .bind(id.to_string())
                .fetch_optional(&mut **tx)
                .await?
                .ok_or(Refusal::NoConversation)?;
        let kind: String = row.try_get("kind")?;
        Ok((
            ConversationKind::parse(&kind).ok_or_else(|| stored("kind", &kind))?,
            get_u64(&row, "last_seq")?,
        ))
    }

    /// Gives the conversation its next `seq`.
    async fn next_seq(&self, tx: &mut Tx, id: ConversationId) -> Result<u64, ChatStoreError> {
        let seq: i64 = sqlx::query_scalar(
            "update conversations set last_seq = last_seq + 1, last_activity = $2 \
             where conversation_id = $1 returning last_seq",
        )
        .bind(id.to_string())
        .bind(now_ms())
        .fetch_one(&mut **tx)
        .await?;
        Ok(u64::try_from(seq).map_err(|_| MetadataError::Query("negative seq".into()))?)
    }

    async fn member_in(
        &self,
        tx: &mut Tx,
        id: ConversationId,
        user: &UserId,
    ) -> Result<Option<MemberRecord>, ChatStoreError> {
        Ok(sqlx::query(&format!(
            "select {MEMBER_COLUMNS} from chat_members where conversation_id = $1 and user_id = $2"
        ))
        .bind(id.to_string())
        .bind(user.as_str())
        .fetch_optional(&mut **tx)
        .await?
        .as_ref()
        .map(member_from_row)
        .transpose()?)
    }

    /// The members, founding ones first, all joining at `event`.
    async fn insert_founders(
        &self,
        tx: &mut Tx,
        id: ConversationId,
        members: &[(&UserId, Role)],
        event: i64,
    ) -> Result<(), ChatStoreError> {
        for (user, role) in members {
            sqlx::query(
                "insert into chat_members (conversation_id, user_id, role, joined_seq, \
                 joined_event, delivered_seq, read_seq) values ($1, $2, $3, 0, $4, 0, 0)",
            )
            .bind(id.to_string())
            .bind(user.as_str())
            .bind(role.as_str())
            .bind(event)
            .execute(&mut **tx)
            .await?;
        }
        Ok(())
    }

    async fn new_conversation(
        &self,
        tx: &mut Tx,
        id: ConversationId,
        kind: ConversationKind,
        title: Option<&str>,
        direct_key: Option<&str>,
        creator: &UserId,
    ) -> Result<bool, ChatStoreError> {
        let now = now_ms();
        let made: Option<String> = sqlx::query_scalar(
            "insert into conversations (conversation_id, kind, title, direct_key, created_by, \
             last_seq, last_activity, created_at) values ($1, $2, $3, $4, $5, 0, $6, $6) \
             on conflict do nothing returning conversation_id",
        )
        .bind(id.to_string())
        .bind(kind.as_str())
        .bind(title)
        .bind(direct_key)
        .bind(creator.as_str())
        .bind(now)
        .fetch_optional(&mut **tx)
        .await?;
        Ok(made.is_some())
    }

    /// A system message recording a membership change, and its event.
    async fn system_message(
        &self,
        tx: &mut Tx,
        id: ConversationId,
        actor: &UserId,
        kind: MessageKind,
        member: &UserId,
        role: Option<Role>,
    ) -> Result<u64, ChatStoreError> {
        let seq = self.next_seq(tx, id).await?;
        sqlx::query(&format!(
            "insert into messages ({MESSAGE_COLUMNS}) values \
             ($1, $2, $3, $4, $5, $6, null, $7, $8, null, 0, $9, null, null)"
        ))
        .bind(id.to_string())
        .bind(to_i64(seq)?)
        .bind(MessageId::generate().to_string())
        .bind(ClientMessageId::generate().to_string())
        .bind(actor.as_str())
        .bind(kind.as_str())
        .bind(member.as_str())
        .bind(role.map(Role::as_str))
        .bind(now_ms())
        .execute(&mut **tx)
        .await?;
        self.advance_own_marks(tx, id, actor, seq).await?;
        insert_event(
            tx,
            id,
            EventKind::MessageCreated,
            Some(actor),
            Some(seq),
            None,
            None,
        )
        .await?;
        Ok(seq)
    }

    async fn set_member_role(
        &self,
        tx: &mut Tx,
        id: ConversationId,
        user: &UserId,
        role: Role,
    ) -> Result<(), ChatStoreError> {
        sqlx::query(
            "update chat_members set role = $3 where conversation_id = $1 and user_id = $2",
        )
        .bind(id.to_string())
        .bind(user.as_str())
        .bind(role.as_str())
        .execute(&mut **tx)
        .await?;
        Ok(())
    }

    /// A sender has read everything up to what they sent.
    async fn advance_own_marks(
        &self,
        tx: &mut Tx,
        id: ConversationId,
        user: &UserId,
        seq: u64,
    ) -> Result<(), ChatStoreError> {
        sqlx::query(
            "update chat_members set delivered_seq = $3, read_seq = $3 \
             where conversation_id = $1 and user_id = $2",
        )
        .bind(id.to_string())
        .bind(user.as_str())
        .bind(to_i64(seq)?)
        .execute(&mut **tx)
        .await?;
        let marks = Marks {
            delivered_seq: seq,
            read_seq: seq,
        };
        record_marks(tx, id, user, marks).await
    }

    async fn members_of(
        &self,
        ids: &[ConversationId],
    ) -> Result<Vec<(ConversationId, MemberRecord)>, MetadataError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let sql = format!(
            "select {MEMBER_COLUMNS} from chat_members where left_event is null \
             and conversation_id in ({}) order by joined_event, user_id",
            placeholders(1, ids.len())
        );
        let mut query = sqlx::query(&sql);
        for id in ids {
            query = query.bind(id.to_string());
        }
        query
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(|row| {
                Ok((
                    conversation_id_in(row, "conversation_id")?,
                    member_from_row(row)?,
                ))
            })
            .collect()
    }

    /// Conversation rows with their current members.
    async fn with_members(
        &self,
        mut conversations: Vec<ConversationRecord>,
    ) -> Result<Vec<ConversationRecord>, MetadataError> {
        let ids: Vec<ConversationId> = conversations.iter().map(|c| c.conversation_id).collect();
        for (id, member) in self.members_of(&ids).await? {
            if let Some(c) = conversations.iter_mut().find(|c| c.conversation_id == id) {
                c.members.push(member);
            }
        }
        Ok(conversations)
    }

    async fn conversation_after_write(
        &self,
        id: ConversationId,
    ) -> Result<ConversationRecord, MetadataError> {
        self.conversation(id)
            .await?
            .ok_or_else(|| MetadataError::Query("a conversation vanished".into()))
    }

    /// Messages of one conversation by a `where` clause over `seq` (binding
    /// from `$2`), with their attachments.
    async fn messages_where(
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

    async fn message_in_tx(
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

    async fn message_after_write(
        &self,
        id: ConversationId,
        seq: u64,
    ) -> Result<MessageRecord, MetadataError> {
        self.message(id, seq)
            .await?
            .ok_or_else(|| MetadataError::Query("a message vanished".into()))
    }
}

#[async_trait]
impl ChatStore for SqlMetadataStore {
    async fn open_direct(
        &self,
        id: ConversationId,
        a: &UserId,
        b: &UserId,
    ) -> Result<(ConversationRecord, bool), ChatStoreError> {
        let key = direct_key(a, b);
        let mut tx = self.pool.begin().await?;
        let made = self
            .new_conversation(&mut tx, id, ConversationKind::Direct, None, Some(&key), a)
            .await?;
        let id = if made {
            let event = insert_event(
                &mut tx,
                id,
                EventKind::ConversationCreated,
                Some(a),
                None,
                None,
                None,
            )
            .await?;
            self.insert_founders(&mut tx, id, &[(a, Role::Member), (b, Role::Member)], event)
                .await?;
            tx.commit().await?;
            id
        } else {
            tx.rollback().await?;
            let existing: String = sqlx::query_scalar(
                "select conversation_id from conversations where direct_key = $1",
            )
            .bind(&key)
            .fetch_one(&self.pool)
            .await?;
            ConversationId::parse(&existing).ok_or_else(|| bad_id("conversation_id"))?
        };
        Ok((self.conversation_after_write(id).await?, made))
    }

    async fn create_group(
        &self,
        id: ConversationId,
        owner: &UserId,
        title: &str,
        members: &[UserId],
    ) -> Result<ConversationRecord, ChatStoreError> {
        let mut tx = self.pool.begin().await?;
        self.new_conversation(
            &mut tx,
            id,
            ConversationKind::Group,
            Some(title),
            None,
            owner,
        )
        .await?;
        let event = insert_event(
            &mut tx,
            id,
            EventKind::ConversationCreated,
            Some(owner),
            None,
            None,
            None,
        )
        .await?;
        let founders: Vec<(&UserId, Role)> = std::iter::once((owner, Role::Owner))
            .chain(members.iter().map(|m| (m, Role::Member)))
            .collect();
        self.insert_founders(&mut tx, id, &founders, event).await?;
        tx.commit().await?;
        Ok(self.conversation_after_write(id).await?)
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
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let sql = format!(
            "select {CONVERSATION_COLUMNS} from conversations where conversation_id in ({})",
            placeholders(1, ids.len())
        );
        let mut query = sqlx::query(&sql);
        for id in ids {
            query = query.bind(id.to_string());
        }
        let rows = query
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(conversation_from_row)
            .collect::<Result<Vec<_>, _>>()?;
        self.with_members(rows).await
    }

    async fn conversations_of(
        &self,
        user: &UserId,
        after: Option<(i64, ConversationId)>,
        limit: u32,
    ) -> Result<Vec<ConversationRecord>, MetadataError> {
        let sql = format!(
            "select c.conversation_id, c.kind, c.title, c.last_seq, c.last_activity, \
             c.created_at from chat_members m \
             join conversations c on c.conversation_id = m.conversation_id \
             where m.user_id = $1 and m.left_event is null{} \
             order by c.last_activity desc, c.conversation_id desc limit $2",
            if after.is_some() {
                " and (c.last_activity, c.conversation_id) < ($3, $4)"
            } else {
                ""
            }
        );
        let mut query = sqlx::query(&sql).bind(user.as_str()).bind(i64::from(limit));
        if let Some((at, id)) = after {
            query = query.bind(at).bind(id.to_string());
        }
        let rows = query
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(conversation_from_row)
            .collect::<Result<Vec<_>, _>>()?;
        self.with_members(rows).await
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
        .fetch_optional(&self.pool)
        .await?
        .as_ref()
        .map(member_from_row)
        .transpose()
    }

    async fn change_member(
        &self,
        id: ConversationId,
        actor: &Actor,
        change: &MemberChange,
    ) -> Result<(ConversationRecord, MessageRecord), ChatStoreError> {
        let mut tx = self.pool.begin().await?;
        let (_, last_seq) = self.lock_conversation(&mut tx, id).await?;
        match self.member_in(&mut tx, id, &actor.user).await? {
            Some(m) if m.active && m.role == actor.role => {}
            Some(m) if m.active => return Err(Refusal::Stale.into()),
            _ => return Err(Refusal::NotMember.into()),
        }
        let seq = match change {
            MemberChange::Add { user, max_members } => {
                if self
                    .member_in(&mut tx, id, user)
                    .await?
                    .is_some_and(|m| m.active)
                {
                    return Err(Refusal::AlreadyMember.into());
                }
                let count: i64 = sqlx::query_scalar(
                    "select count(*) from chat_members where conversation_id = $1 \
                     and left_event is null",
                )
                .bind(id.to_string())
                .fetch_one(&mut *tx)
                .await?;
                if usize::try_from(count).unwrap_or(usize::MAX) >= *max_members {
                    return Err(Refusal::GroupFull.into());
                }
                // The joiner's first event is this one; they read from the
                // system message that records their joining.
                let event = insert_event(
                    &mut tx,
                    id,
                    EventKind::MemberAdded,
                    Some(&actor.user),
                    None,
                    Some(user),
                    None,
                )
                .await?;
                let joined = last_seq;
                sqlx::query(
                    "insert into chat_members (conversation_id, user_id, role, joined_seq, \
                     joined_event, delivered_seq, read_seq) values ($1, $2, 'member', $3, $4, $3, $3) \
                     on conflict (conversation_id, user_id) do update set role = 'member', \
                     joined_seq = $3, joined_event = $4, left_event = null, delivered_seq = $3, \
                     read_seq = $3",
                )
                .bind(id.to_string())
                .bind(user.as_str())
                .bind(to_i64(joined)?)
                .bind(event)
                .execute(&mut *tx)
                .await?;
                self.system_message(
                    &mut tx,
                    id,
                    &actor.user,
                    MessageKind::MemberAdded,
                    user,
                    None,
                )
                .await?
            }
            MemberChange::Remove { user, role } => {
                match self.member_in(&mut tx, id, user).await? {
                    Some(m) if m.active && m.role == *role => {}
                    _ => return Err(Refusal::Stale.into()),
                }
                let kind = if *user == actor.user {
                    MessageKind::MemberLeft
                } else {
                    MessageKind::MemberRemoved
                };
                let seq = self
                    .system_message(&mut tx, id, &actor.user, kind, user, None)
                    .await?;
                // The leaver's last event of the conversation.
                let event = insert_event(
                    &mut tx,
                    id,
                    EventKind::MemberRemoved,
                    Some(&actor.user),
                    None,
                    Some(user),
                    None,
                )
                .await?;
                sqlx::query(
                    "update chat_members set left_event = $3 \
                     where conversation_id = $1 and user_id = $2",
                )
                .bind(id.to_string())
                .bind(user.as_str())
                .bind(event)
                .execute(&mut *tx)
                .await?;
                seq
            }
            MemberChange::SetRole {
                user,
                from,
                to,
                actor_becomes,
            } => {
                match self.member_in(&mut tx, id, user).await? {
                    Some(m) if m.active && m.role == *from => {}
                    _ => return Err(Refusal::Stale.into()),
                }
                self.set_member_role(&mut tx, id, user, *to).await?;
                if let Some(role) = actor_becomes {
                    self.set_member_role(&mut tx, id, &actor.user, *role)
                        .await?;
                }
                let seq = self
                    .system_message(
                        &mut tx,
                        id,
                        &actor.user,
                        MessageKind::RoleChanged,
                        user,
                        Some(*to),
                    )
                    .await?;
                insert_event(
                    &mut tx,
                    id,
                    EventKind::RoleChanged,
                    Some(&actor.user),
                    None,
                    Some(user),
                    None,
                )
                .await?;
                seq
            }
        };
        tx.commit().await?;
        Ok((
            self.conversation_after_write(id).await?,
            self.message_after_write(id, seq).await?,
        ))
    }

    async fn post_message(&self, message: &NewMessage) -> Result<Posted, ChatStoreError> {
        let id = message.conversation_id;
        let mut tx = self.pool.begin().await?;
        let (_, last_seq) = self.lock_conversation(&mut tx, id).await?;
        if !self
            .member_in(&mut tx, id, &message.sender)
            .await?
            .is_some_and(|m| m.active)
        {
            return Err(Refusal::NotMember.into());
        }
        let client_id = message.client_message_id.to_string();
        if let Some(existing) = self
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
                self.message_after_write(id, existing.seq).await?,
            ));
        }
        if let Some(reply) = message.reply_to_seq
            && (reply == 0 || reply > last_seq)
        {
            return Err(Refusal::NoReplyTarget.into());
        }
        let seq = self.next_seq(&mut tx, id).await?;
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
            let revived =
                sqlx::query("update blobs set unreferenced_since = null where blake3 = $1")
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
        self.advance_own_marks(&mut tx, id, &message.sender, seq)
            .await?;
        insert_event(
            &mut tx,
            id,
            EventKind::MessageCreated,
            Some(&message.sender),
            Some(seq),
            None,
            None,
        )
        .await?;
        tx.commit().await?;
        Ok(Posted::Created(self.message_after_write(id, seq).await?))
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
        self.messages_where(
            id,
            "seq between $2 and $3 order by seq",
            &[to_i64(first)?, to_i64(last)?],
        )
        .await
    }

    async fn history(
        &self,
        id: ConversationId,
        page: Page,
        floor: u64,
        limit: u32,
    ) -> Result<Vec<MessageRecord>, MetadataError> {
        let (clause, from) = match page {
            Page::After(n) => ("seq > $2 and seq > $3 order by seq limit $4", n),
            Page::Before(n) => ("seq < $2 and seq > $3 order by seq desc limit $4", n),
        };
        let mut messages = self
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

    async fn edit_message(
        &self,
        id: ConversationId,
        seq: u64,
        editor: &UserId,
        text: &str,
    ) -> Result<MessageRecord, ChatStoreError> {
        let mut tx = self.pool.begin().await?;
        self.lock_conversation(&mut tx, id).await?;
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
        insert_event(
            &mut tx,
            id,
            EventKind::MessageEdited,
            Some(editor),
            Some(seq),
            None,
            None,
        )
        .await?;
        tx.commit().await?;
        Ok(self.message_after_write(id, seq).await?)
    }

    async fn delete_message(
        &self,
        id: ConversationId,
        seq: u64,
        actor: &UserId,
    ) -> Result<MessageRecord, ChatStoreError> {
        let mut tx = self.pool.begin().await?;
        self.lock_conversation(&mut tx, id).await?;
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
        insert_event(
            &mut tx,
            id,
            EventKind::MessageDeleted,
            Some(actor),
            Some(seq),
            None,
            None,
        )
        .await?;
        tx.commit().await?;
        Ok(self.message_after_write(id, seq).await?)
    }

    async fn raise_marks(
        &self,
        id: ConversationId,
        user: &UserId,
        to: Marks,
    ) -> Result<Marks, ChatStoreError> {
        super::chat_log::raise_marks(self, id, user, to).await
    }

    async fn receipts(
        &self,
        id: ConversationId,
        seq: u64,
        except: &UserId,
    ) -> Result<Vec<ReceiptRecord>, MetadataError> {
        super::chat_log::receipts(self, id, seq, except).await
    }

    async fn attachment(&self, id: MediaId) -> Result<Option<AttachmentRecord>, MetadataError> {
        sqlx::query(&format!("{ATTACHMENT_SELECT} where a.media_id = $1"))
            .bind(id.to_string())
            .fetch_optional(&self.pool)
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
        super::chat_log::sync(self, user, after, limit).await
    }

    async fn sync_horizon(&self) -> Result<SyncCursor, MetadataError> {
        super::chat_log::horizon(self).await
    }

    async fn purge_events(&self, before: i64) -> Result<u64, MetadataError> {
        super::chat_log::purge(self, before).await
    }
}
