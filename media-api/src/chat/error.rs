//! Why a chat request is refused.

use chat_core::conversation::MembershipError;
use chat_core::message::MessageError;
use chat_core::receipts::ReceiptError;

use crate::metadata_store::MetadataError;
use crate::metadata_store::chat::{ChatStoreError, Refusal};

/// Why a chat request is refused.
#[derive(Debug, thiserror::Error)]
pub enum ChatError {
    /// A quota or rate of the sender's is spent.
    #[error("{0}")]
    Refused(#[from] crate::quotas::Refused),
    /// `kind` is not `direct` or `group`.
    #[error("kind must be \"direct\" or \"group\"")]
    InvalidKind,
    /// A member list a conversation cannot have.
    #[error("{0}")]
    InvalidMembers(String),
    /// A user id that cannot be one.
    #[error("invalid user id: {0}")]
    InvalidUser(String),
    /// A role that does not exist (or `owner` for a new member).
    #[error("role must be \"member\", \"admin\" or \"owner\"")]
    InvalidRole,
    /// The group is at its size limit.
    #[error("the group has its {0} members already")]
    GroupFull(usize),
    /// No such conversation, or the caller is not in it.
    #[error("no such conversation")]
    ConversationNotFound,
    /// No such message, or not one the caller sees.
    #[error("no such message")]
    MessageNotFound,
    /// No such member.
    #[error("no such member")]
    MemberNotFound,
    /// The user to add is a member already.
    #[error("already a member")]
    AlreadyMember,
    /// A membership change the rules refuse.
    #[error(transparent)]
    Membership(#[from] MembershipError),
    /// A message the rules refuse.
    #[error(transparent)]
    Message(#[from] MessageError),
    /// A receipt the rules refuse.
    #[error(transparent)]
    Receipt(#[from] ReceiptError),
    /// A system message is not edited or deleted.
    #[error("system messages are not edited or deleted")]
    SystemMessage,
    /// Not a UUID.
    #[error("client_message_id must be a UUID")]
    InvalidClientMessageId,
    /// `reply_to_seq` names no message the sender can see.
    #[error("reply_to_seq names no message of this conversation")]
    ReplyNotFound,
    /// An attachment's `media_id` the sender may not read (or none).
    #[error("no such media")]
    MediaNotFound,
    /// An attachment's content is blocked by the operators.
    #[error("the content is blocked")]
    ContentBlocked,
    /// A caption over the limit or with control characters.
    #[error("a caption is at most {0} bytes without control characters")]
    InvalidCaption(usize),
    /// More forward targets than allowed, or none.
    #[error("forward to 1 to {0} conversations")]
    InvalidForwardTargets(usize),
    /// `limit` out of range.
    #[error("limit must be from 1 to {0}")]
    InvalidLimit(u32),
    /// Both `after_seq` and `before_seq`.
    #[error("give after_seq or before_seq, not both")]
    InvalidRange,
    /// A cursor we did not make.
    #[error("the cursor is not one this service returned")]
    InvalidCursor,
    /// A sync cursor older than the log's retention.
    #[error("the sync cursor is older than the events kept; re-read the conversations")]
    SyncCursorExpired,
    /// The conversation kept changing under the request: retry it.
    #[error("the conversation changed while this request was decided; retry it")]
    Contended,
    /// The store failed.
    #[error(transparent)]
    Backend(#[from] MetadataError),
}

impl From<ChatStoreError> for ChatError {
    fn from(e: ChatStoreError) -> Self {
        match e {
            ChatStoreError::Store(e) => Self::Backend(e),
            ChatStoreError::Refused(r) => match r {
                Refusal::NoConversation | Refusal::NotMember => Self::ConversationNotFound,
                Refusal::AlreadyMember => Self::AlreadyMember,
                Refusal::NoReplyTarget => Self::ReplyNotFound,
                Refusal::ContentGone => Self::MediaNotFound,
                Refusal::Stale => Self::Contended,
                // The domain names its limit (`Chat::refused`).
                Refusal::GroupFull => Self::GroupFull(0),
            },
        }
    }
}
