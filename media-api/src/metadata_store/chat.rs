//! The messaging core's part of the seam: conversations and their members,
//! messages with a gapless `seq` per conversation, attachments (media
//! references owned by a message), receipt marks and their history, and the
//! sync log.
//!
//! The rules (who may do what, the limits, monotonic marks) are `chat-core`'s
//! and are checked by the `chat` domain before it calls here. A write whose
//! premise can change between that check and the write (the actor's role, a
//! target's role, membership, a message's state) names the premise, and the
//! store checks it inside the transaction: when it no longer holds the write
//! is refused as [`Refusal::Stale`] and the domain decides again.

use async_trait::async_trait;
use chat_core::conversation::{ConversationKind, Role};
use chat_core::message::MessageKind;
use chat_core::receipts::Marks;
use chat_core::sync::{EventKind, SyncCursor};

use super::{MediaRecord, MetadataError};
use crate::ids::{Blake3, ClientMessageId, ConversationId, FileName, MediaId, MessageId, UserId};

/// A conversation's lock key on PostgreSQL (`pg_advisory_xact_lock`): its
/// id folded to 64 bits, the high half XOR the low. Every writer of a
/// conversation takes it, in Rust and in the `messages_numbered` trigger,
/// which computes the same from the id's text. Two conversations sharing a
/// key only wait for each other.
pub fn lock_key(id: ConversationId) -> i64 {
    let v = id.as_u128();
    ((v as u64) ^ ((v >> 64) as u64)) as i64
}

/// A conversation with its current members.
#[derive(Debug, Clone, PartialEq)]
pub struct ConversationRecord {
    /// Its id.
    pub conversation_id: ConversationId,
    /// Direct or group.
    pub kind: ConversationKind,
    /// A group's title.
    pub title: Option<String>,
    /// The last message's `seq` (0: none yet).
    pub last_seq: u64,
    /// Unix ms of the last message (or of creation).
    pub last_activity: i64,
    /// Unix ms.
    pub created_at: i64,
    /// Current members, in the order they joined.
    pub members: Vec<MemberRecord>,
}

/// A current member's place in a conversation: what most requests need to
/// know, read in one row whatever the conversation's size.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seat {
    /// Direct or group.
    pub kind: ConversationKind,
    /// The conversation's last `seq`.
    pub last_seq: u64,
    /// The member's role.
    pub role: Role,
    /// They read messages after this `seq`.
    pub joined_seq: u64,
    /// Their receipt marks.
    pub marks: Marks,
}

/// One person's membership, current or ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberRecord {
    /// The member.
    pub user: UserId,
    /// Their role.
    pub role: Role,
    /// They read messages after this `seq`.
    pub joined_seq: u64,
    /// Their receipt marks.
    pub marks: Marks,
    /// False once they left or were removed.
    pub active: bool,
}

/// A message as stored, with its attachments.
#[derive(Debug, Clone, PartialEq)]
pub struct MessageRecord {
    /// Its conversation.
    pub conversation_id: ConversationId,
    /// Its place in the conversation.
    pub seq: u64,
    /// Its id.
    pub message_id: MessageId,
    /// The id its sender's client gave it.
    pub client_message_id: ClientMessageId,
    /// Who sent it (a system message: who made the change).
    pub sender: UserId,
    /// Text or a system message's kind.
    pub kind: MessageKind,
    /// The text (none once deleted).
    pub text: Option<String>,
    /// A system message's subject.
    pub member: Option<UserId>,
    /// A role change's new role.
    pub role: Option<Role>,
    /// The message it answers.
    pub reply_to_seq: Option<u64>,
    /// Posted by a forward.
    pub forwarded: bool,
    /// Unix ms.
    pub created_at: i64,
    /// Unix ms of the last edit.
    pub edited_at: Option<i64>,
    /// Deleted for everyone.
    pub deleted: bool,
    /// In the order they were sent (none once deleted).
    pub attachments: Vec<AttachmentRecord>,
}

/// An attachment: its own media id over the content, owned by a message.
#[derive(Debug, Clone, PartialEq)]
pub struct AttachmentRecord {
    /// The content as a media item: `media_id` is the attachment's, `owner`
    /// the user whose upload the content came from.
    pub media: MediaRecord,
    /// The conversation of the message carrying it.
    pub conversation_id: ConversationId,
    /// That message's `seq`.
    pub message_seq: u64,
    /// The sender's caption.
    pub caption: Option<String>,
}

/// An attachment a message is about to carry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewAttachment {
    /// The attachment's new media id.
    pub media_id: MediaId,
    /// The content it references.
    pub blake3: Blake3,
    /// Its name, from the media it was made from.
    pub file_name: FileName,
    /// The sender's caption.
    pub caption: Option<String>,
    /// Whose upload the content came from.
    pub uploader: UserId,
    /// Until when it shows `processing` (its media's [`MediaRecord::shown_after`]).
    pub shown_after: Option<i64>,
}

/// A message about to be posted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewMessage {
    /// Where.
    pub conversation_id: ConversationId,
    /// Who (must be a current member when it commits).
    pub sender: UserId,
    /// The client's id for it: a second post with it answers the first.
    pub client_message_id: ClientMessageId,
    /// The text.
    pub text: Option<String>,
    /// The attachments, in order.
    pub attachments: Vec<NewAttachment>,
    /// The message it answers (one the sender sees when it commits).
    pub reply_to_seq: Option<u64>,
    /// Posted by a forward.
    pub forwarded: bool,
}

/// A new message, or the one already posted with its client id.
#[derive(Debug, Clone, PartialEq)]
pub enum Posted {
    /// Stored now.
    Created(MessageRecord),
    /// Stored before, by an earlier try.
    Existing(MessageRecord),
}

/// A premise the domain checked, which the store checks again inside the
/// write's transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor {
    /// Who acts.
    pub user: UserId,
    /// The role they had when the domain decided.
    pub role: Role,
}

/// A membership change, as decided by the domain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MemberChange {
    /// Adds `user` (not a current member), within `max_members`.
    Add {
        /// Who joins.
        user: UserId,
        /// The group's size limit.
        max_members: usize,
    },
    /// Ends `user`'s membership (leaving when the actor is `user`).
    Remove {
        /// Who goes.
        user: UserId,
        /// Their role when the domain decided.
        role: Role,
    },
    /// Gives `user` a new role.
    SetRole {
        /// Whose role.
        user: UserId,
        /// Their role when the domain decided.
        from: Role,
        /// The new role.
        to: Role,
        /// The actor's role after it (a hand-over demotes the owner).
        actor_becomes: Option<Role>,
    },
}

/// Which messages a history page holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Page {
    /// `seq` greater than this, ascending.
    After(u64),
    /// `seq` less than this, descending.
    Before(u64),
}

/// One member's receipt times for one message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceiptRecord {
    /// The member.
    pub user: UserId,
    /// Unix ms at which their delivered mark reached the message.
    pub delivered_at: Option<i64>,
    /// Unix ms at which their read mark reached it.
    pub read_at: Option<i64>,
}

/// One event of the sync log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventRecord {
    /// Its position.
    pub position: SyncCursor,
    /// What happened.
    pub kind: EventKind,
    /// Where.
    pub conversation_id: ConversationId,
    /// Unix ms.
    pub at: i64,
    /// Who did it.
    pub actor: Option<UserId>,
    /// The message it is about.
    pub seq: Option<u64>,
    /// The member it is about.
    pub member: Option<UserId>,
    /// A receipt's marks.
    pub marks: Option<Marks>,
}

/// A page of the sync log for one user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncRecords {
    /// In log order.
    pub events: Vec<EventRecord>,
    /// A position up to which the user has nothing more to read than these
    /// events (the last one's position when the page is full).
    pub reached: SyncCursor,
    /// Where `reached` would be had every transaction running at the read
    /// ended: a reader that must see everything committed before now
    /// reads again until it reaches this.
    pub tip: SyncCursor,
}

/// A write the store refused because its premise no longer holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// The conversation does not exist.
    #[error("no such conversation")]
    NoConversation,
    /// The actor (or sender) is not a current member.
    #[error("not a member")]
    NotMember,
    /// What the domain decided on changed meanwhile: decide again.
    #[error("the conversation changed meanwhile")]
    Stale,
    /// The group is at its size limit.
    #[error("the group is full")]
    GroupFull,
    /// The user to add is a member already.
    #[error("already a member")]
    AlreadyMember,
    /// The message replied to does not exist.
    #[error("no message to reply to")]
    NoReplyTarget,
    /// An attachment's content was collected meanwhile.
    #[error("an attachment's content is gone")]
    ContentGone,
}

/// What can go wrong in a chat write.
#[derive(Debug, thiserror::Error)]
pub enum ChatStoreError {
    /// Refused: see [`Refusal`].
    #[error(transparent)]
    Refused(#[from] Refusal),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] MetadataError),
}

impl From<sqlx::Error> for ChatStoreError {
    fn from(e: sqlx::Error) -> Self {
        Self::Store(e.into())
    }
}

/// Chat: a narrow piece of the metadata seam.
#[async_trait]
pub trait ChatStore: Send + Sync + 'static {
    /// The direct conversation of `a` and `b`, made (with `id`) if there is
    /// none; true when made now.
    async fn open_direct(
        &self,
        id: ConversationId,
        a: &UserId,
        b: &UserId,
    ) -> Result<(ConversationRecord, bool), ChatStoreError>;

    /// A new group: `owner` owns it, `members` (distinct, not the owner) are
    /// its members.
    async fn create_group(
        &self,
        id: ConversationId,
        owner: &UserId,
        title: &str,
        members: &[UserId],
    ) -> Result<ConversationRecord, ChatStoreError>;

    /// A conversation with its current members.
    async fn conversation(
        &self,
        id: ConversationId,
    ) -> Result<Option<ConversationRecord>, MetadataError>;

    /// Conversations by id (those that exist), with their current members.
    async fn conversations(
        &self,
        ids: &[ConversationId],
    ) -> Result<Vec<ConversationRecord>, MetadataError>;

    /// `user`'s conversations, latest activity first, strictly after `after`
    /// (a `(last_activity, id)` cursor), at most `limit`.
    async fn conversations_of(
        &self,
        user: &UserId,
        after: Option<(i64, ConversationId)>,
        limit: u32,
    ) -> Result<Vec<ConversationRecord>, MetadataError>;

    /// `user`'s membership of a conversation, current or ended.
    async fn member(
        &self,
        id: ConversationId,
        user: &UserId,
    ) -> Result<Option<MemberRecord>, MetadataError>;

    /// Where the log stands now for a reader: every event that commits
    /// later lies after it.
    async fn sync_now(&self) -> Result<SyncCursor, MetadataError>;

    /// `user`'s current memberships: each conversation, and the `seq` after
    /// which they read its messages.
    async fn memberships_of(
        &self,
        user: &UserId,
    ) -> Result<Vec<(ConversationId, u64)>, MetadataError>;

    /// Those of `others` who are a current member of some conversation
    /// `user` is a current member of.
    async fn sharing_with(
        &self,
        user: &UserId,
        others: &[UserId],
    ) -> Result<Vec<UserId>, MetadataError>;

    /// The attachments whose content is `blake3`.
    async fn attachments_holding(
        &self,
        blake3: &Blake3,
    ) -> Result<Vec<AttachmentRecord>, MetadataError>;

    /// `user`'s seat in a conversation, while they are a member.
    async fn seat(&self, id: ConversationId, user: &UserId) -> Result<Option<Seat>, MetadataError>;

    /// The lowest marks among the current members other than `except`
    /// (`None` when there is no other): a message's status for its sender.
    async fn others_marks(
        &self,
        id: ConversationId,
        except: &UserId,
    ) -> Result<Option<Marks>, MetadataError>;

    /// Changes a group's membership as `actor`, recording the system
    /// message; answers the conversation after it and the message.
    async fn change_member(
        &self,
        id: ConversationId,
        actor: &Actor,
        change: &MemberChange,
    ) -> Result<(ConversationRecord, MessageRecord), ChatStoreError>;

    /// Posts a message under the conversation's lock: the next `seq`, or
    /// the message already posted with the same client id by the same sender.
    async fn post_message(&self, message: &NewMessage) -> Result<Posted, ChatStoreError>;

    /// One message.
    async fn message(
        &self,
        id: ConversationId,
        seq: u64,
    ) -> Result<Option<MessageRecord>, MetadataError>;

    /// Messages of a conversation with `seq` in `first..=last` (ascending).
    async fn messages_between(
        &self,
        id: ConversationId,
        first: u64,
        last: u64,
    ) -> Result<Vec<MessageRecord>, MetadataError>;

    /// A page of history, never at or below `floor` (the reader's
    /// `joined_seq`).
    async fn history(
        &self,
        id: ConversationId,
        page: Page,
        floor: u64,
        limit: u32,
    ) -> Result<Vec<MessageRecord>, MetadataError>;

    /// Sets a message's text as `editor`, its sender, unless it was deleted.
    async fn edit_message(
        &self,
        id: ConversationId,
        seq: u64,
        editor: &UserId,
        text: &str,
    ) -> Result<MessageRecord, ChatStoreError>;

    /// Deletes a message for everyone: its text and attachments go (their
    /// contents start their grace period when nothing else references
    /// them); the tombstone stays.
    async fn delete_message(
        &self,
        id: ConversationId,
        seq: u64,
        actor: &UserId,
    ) -> Result<MessageRecord, ChatStoreError>;

    /// Raises `user`'s marks to at least `to` (never lowers them); answers
    /// the marks after it. A change is recorded in the receipts' history and
    /// the sync log.
    async fn raise_marks(
        &self,
        id: ConversationId,
        user: &UserId,
        to: Marks,
    ) -> Result<Marks, ChatStoreError>;

    /// Each current member's (but `except`'s) receipt times for message `seq`.
    async fn receipts(
        &self,
        id: ConversationId,
        seq: u64,
        except: &UserId,
    ) -> Result<Vec<ReceiptRecord>, MetadataError>;

    /// An attachment by its media id.
    async fn attachment(&self, id: MediaId) -> Result<Option<AttachmentRecord>, MetadataError>;

    /// The events concerning `user` after `after`, in log order, at most `limit`.
    async fn sync(
        &self,
        user: &UserId,
        after: SyncCursor,
        limit: u32,
    ) -> Result<SyncRecords, MetadataError>;

    /// The oldest position still answered: cursors before it are expired.
    async fn sync_horizon(&self) -> Result<SyncCursor, MetadataError>;

    /// Deletes the events older than `before` (Unix ms), moving the horizon;
    /// answers how many went.
    async fn purge_events(&self, before: i64) -> Result<u64, MetadataError>;
}
