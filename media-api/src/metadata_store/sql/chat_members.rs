//! Conversations and their members: creating them, the conversation's
//! lock and `seq`, membership changes with their system messages.

use chat_core::conversation::{ConversationKind, Role};
use chat_core::message::MessageKind;
use chat_core::sync::EventKind;

use super::SqlMetadataStore;
use super::chat_log::{About, insert_event};
use super::chat_rows::{
    CONVERSATION_COLUMNS, MEMBER_COLUMNS, MESSAGE_COLUMNS, Tx, conversation_from_row,
    conversation_id_in, direct_key, member_from_row, placeholders,
};
use super::{bad_id, to_i64};
use crate::ids::{ClientMessageId, ConversationId, MessageId, UserId, now_ms};
use crate::metadata_store::chat::{
    Actor, ChatStore, ChatStoreError, ConversationRecord, MemberChange, MemberRecord,
    MessageRecord, Refusal,
};
use crate::metadata_store::{Dialect, MetadataError};

pub(super) use crate::metadata_store::chat::lock_key;

impl SqlMetadataStore {
    /// Takes the conversation's write lock for the rest of the transaction
    /// (see `chat`'s module docs): on PostgreSQL an advisory lock, taken
    /// before the transaction writes anything; SQLite's one writer
    /// connection is the lock already.
    pub(super) async fn lock_writes(
        &self,
        tx: &mut Tx,
        id: ConversationId,
    ) -> Result<(), ChatStoreError> {
        if self.dialect == Dialect::Postgres {
            sqlx::query("select pg_advisory_xact_lock($1)")
                .bind(lock_key(id))
                .execute(&mut **tx)
                .await?;
        }
        Ok(())
    }

    /// Takes the conversation's write lock and reads its last `seq`.
    pub(super) async fn lock_conversation(
        &self,
        tx: &mut Tx,
        id: ConversationId,
    ) -> Result<u64, ChatStoreError> {
        self.lock_writes(tx, id).await?;
        let last: i64 =
            sqlx::query_scalar("select last_seq from conversations where conversation_id = $1")
                .bind(id.to_string())
                .fetch_optional(&mut **tx)
                .await?
                .ok_or(Refusal::NoConversation)?;
        Ok(u64::try_from(last).map_err(|_| MetadataError::Query("negative seq".into()))?)
    }

    /// Gives the conversation its next `seq`.
    pub(super) async fn next_seq(
        &self,
        tx: &mut Tx,
        id: ConversationId,
    ) -> Result<u64, ChatStoreError> {
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

    pub(super) async fn member_in(
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
    pub(super) async fn insert_founders(
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

    pub(super) async fn new_conversation(
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

    /// A system message recording a membership change.
    pub(super) async fn system_message(
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
        // The insert's trigger (the migration) logs it and moves the actor's marks.
        Ok(seq)
    }

    pub(super) async fn set_member_role(
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

    pub(super) async fn members_of(
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
            .fetch_all(&self.reads)
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
    pub(super) async fn with_members(
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

    pub(super) async fn conversation_after_write(
        &self,
        id: ConversationId,
    ) -> Result<ConversationRecord, MetadataError> {
        self.conversation(id)
            .await?
            .ok_or_else(|| MetadataError::Query("a conversation vanished".into()))
    }
}

pub(super) async fn open_direct(
    store: &SqlMetadataStore,
    id: ConversationId,
    a: &UserId,
    b: &UserId,
) -> Result<(ConversationRecord, bool), ChatStoreError> {
    let key = direct_key(a, b);
    let mut tx = store.pool.begin().await?;
    let made = store
        .new_conversation(&mut tx, id, ConversationKind::Direct, None, Some(&key), a)
        .await?;
    let id = if made {
        let event = insert_event(
            &mut tx,
            id,
            EventKind::ConversationCreated,
            a,
            About::Conversation,
        )
        .await?;
        store
            .insert_founders(&mut tx, id, &[(a, Role::Member), (b, Role::Member)], event)
            .await?;
        tx.commit().await?;
        id
    } else {
        tx.rollback().await?;
        let existing: String =
            sqlx::query_scalar("select conversation_id from conversations where direct_key = $1")
                .bind(&key)
                .fetch_one(&store.pool)
                .await?;
        ConversationId::parse(&existing).ok_or_else(|| bad_id("conversation_id"))?
    };
    Ok((store.conversation_after_write(id).await?, made))
}

pub(super) async fn create_group(
    store: &SqlMetadataStore,
    id: ConversationId,
    owner: &UserId,
    title: &str,
    members: &[UserId],
) -> Result<ConversationRecord, ChatStoreError> {
    let mut tx = store.pool.begin().await?;
    store
        .new_conversation(
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
        owner,
        About::Conversation,
    )
    .await?;
    let founders: Vec<(&UserId, Role)> = std::iter::once((owner, Role::Owner))
        .chain(members.iter().map(|m| (m, Role::Member)))
        .collect();
    store.insert_founders(&mut tx, id, &founders, event).await?;
    tx.commit().await?;
    Ok(store.conversation_after_write(id).await?)
}

pub(super) async fn change_member(
    store: &SqlMetadataStore,
    id: ConversationId,
    actor: &Actor,
    change: &MemberChange,
) -> Result<(ConversationRecord, MessageRecord), ChatStoreError> {
    let mut tx = store.pool.begin().await?;
    let last_seq = store.lock_conversation(&mut tx, id).await?;
    match store.member_in(&mut tx, id, &actor.user).await? {
        Some(m) if m.active && m.role == actor.role => {}
        Some(m) if m.active => return Err(Refusal::Stale.into()),
        _ => return Err(Refusal::NotMember.into()),
    }
    let seq = match change {
        MemberChange::Add { user, max_members } => {
            if store
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
                &actor.user,
                About::Member(user),
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
            store
                .system_message(
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
            match store.member_in(&mut tx, id, user).await? {
                Some(m) if m.active && m.role == *role => {}
                _ => return Err(Refusal::Stale.into()),
            }
            let kind = if *user == actor.user {
                MessageKind::MemberLeft
            } else {
                MessageKind::MemberRemoved
            };
            let seq = store
                .system_message(&mut tx, id, &actor.user, kind, user, None)
                .await?;
            // The leaver's last event of the conversation.
            let event = insert_event(
                &mut tx,
                id,
                EventKind::MemberRemoved,
                &actor.user,
                About::Member(user),
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
            match store.member_in(&mut tx, id, user).await? {
                Some(m) if m.active && m.role == *from => {}
                _ => return Err(Refusal::Stale.into()),
            }
            store.set_member_role(&mut tx, id, user, *to).await?;
            if let Some(role) = actor_becomes {
                store
                    .set_member_role(&mut tx, id, &actor.user, *role)
                    .await?;
            }
            let seq = store
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
                &actor.user,
                About::Member(user),
            )
            .await?;
            seq
        }
    };
    tx.commit().await?;
    Ok((
        store.conversation_after_write(id).await?,
        store.message_after_write(id, seq).await?,
    ))
}

pub(super) async fn conversations(
    store: &SqlMetadataStore,
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
        .fetch_all(&store.reads)
        .await?
        .iter()
        .map(conversation_from_row)
        .collect::<Result<Vec<_>, _>>()?;
    store.with_members(rows).await
}

pub(super) async fn conversations_of(
    store: &SqlMetadataStore,
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
        .fetch_all(&store.reads)
        .await?
        .iter()
        .map(conversation_from_row)
        .collect::<Result<Vec<_>, _>>()?;
    store.with_members(rows).await
}
