//! Conversations: opening a direct one or making a group, reading and
//! listing them, and membership changes decided by `chat-core`'s rules.

use chat_core::conversation::{Change, ConversationKind, Role, handed_over, may_change};

use super::documents::membership;
use super::{
    Chat, ChatError, ConversationDoc, ConversationPage, NewConversationRequest, RETRIES,
    decode_list_cursor, encode_list_cursor, user,
};
use crate::ids::{ConversationId, UserId, page_size};
use crate::metadata_store::chat::{
    Actor, ChatStoreError, ConversationRecord, MemberChange, Refusal,
};

impl Chat {
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
        if created {
            let members: Vec<UserId> = record.members.iter().map(|m| m.user.clone()).collect();
            self.memberships_changed(&members);
        }
        Ok((self.conversation_for(caller, &record).await?, created))
    }

    /// One of the caller's conversations.
    pub async fn conversation(
        &self,
        caller: &UserId,
        id: ConversationId,
    ) -> Result<ConversationDoc, ChatError> {
        let (c, _) = self.whole(caller, id).await?;
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
        let limit = page_size(limit, 50, max).ok_or(ChatError::InvalidLimit(max))?;
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
    pub(super) async fn change(
        &self,
        caller: &UserId,
        id: ConversationId,
        target: &UserId,
        decide: impl Fn(&ConversationRecord, Role) -> Result<MemberChange, ChatError>,
    ) -> Result<ConversationDoc, ChatError> {
        for _ in 0..RETRIES {
            let (c, role) = self.whole(caller, id).await?;
            let change = decide(&c, role)?;
            let actor = Actor {
                user: caller.clone(),
                role,
            };
            match self.backends.chat.change_member(id, &actor, &change).await {
                Ok((after, _message)) => {
                    self.logged(id);
                    self.memberships_changed(std::slice::from_ref(target));
                    return self.conversation_for(caller, &after).await;
                }
                Err(ChatStoreError::Refused(Refusal::Stale)) => {
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
}
