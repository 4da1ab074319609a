//! Messages: what a new one may carry, and who may edit or delete one, when.

use std::time::Duration;

/// What a message is: text from a member, or a system message recording a
/// membership change in the history.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MessageKind {
    /// Text and/or attachments from a member.
    Text,
    /// Someone was added (`member`); the actor is its sender.
    MemberAdded,
    /// Someone was removed by an admin.
    MemberRemoved,
    /// Someone left.
    MemberLeft,
    /// Someone's role changed (to `role`).
    RoleChanged,
}

named!(MessageKind {
    Text => "text",
    MemberAdded => "member_added",
    MemberRemoved => "member_removed",
    MemberLeft => "member_left",
    RoleChanged => "role_changed",
});

/// The limits on conversations and messages (all configurable).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatLimits {
    /// Most members in a group, its creator included.
    pub max_group_members: usize,
    /// Most bytes of text in one message.
    pub max_text_bytes: usize,
    /// Most attachments in one message.
    pub max_attachments: usize,
    /// Most characters in a group's title.
    pub max_title_chars: usize,
    /// How long a sender may edit a message.
    pub edit_window: Duration,
    /// How long a sender may delete a message for everyone.
    pub delete_window: Duration,
    /// Most conversations one forward posts into.
    pub max_forward_targets: usize,
}

impl Default for ChatLimits {
    /// 1,024 members, 64 KiB of text, 30 attachments, 100-character titles,
    /// 15 minutes to edit, 48 hours to delete, 5 forward targets.
    fn default() -> Self {
        Self {
            max_group_members: 1024,
            max_text_bytes: 64 * 1024,
            max_attachments: 30,
            max_title_chars: 100,
            edit_window: Duration::from_secs(15 * 60),
            delete_window: Duration::from_secs(48 * 3600),
            max_forward_targets: 5,
        }
    }
}

/// Why a message (or a title) is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MessageError {
    /// Neither text nor attachments.
    #[error("a message needs text, attachments or both")]
    Empty,
    /// Text over the limit.
    #[error("the text is {bytes} bytes; the limit is {limit}")]
    TextTooLong {
        /// Its size.
        bytes: usize,
        /// The limit.
        limit: usize,
    },
    /// Too many attachments.
    #[error("{count} attachments; the limit is {limit}")]
    TooManyAttachments {
        /// How many were sent.
        count: usize,
        /// The limit.
        limit: usize,
    },
    /// A title that is empty, too long, or has control characters.
    #[error("a title is 1 to {limit} characters without control characters")]
    InvalidTitle {
        /// The limit.
        limit: usize,
    },
    /// Someone else's message.
    #[error("only its sender may do that")]
    NotSender,
    /// Past the edit window.
    #[error("messages may be edited for {0:?} after sending")]
    EditWindowPassed(Duration),
    /// Past the delete window (and not a group admin).
    #[error("messages may be deleted for everyone for {0:?} after sending")]
    DeleteWindowPassed(Duration),
    /// Deleted already.
    #[error("the message was deleted")]
    Deleted,
}

impl ChatLimits {
    /// Checks what a new message carries.
    pub fn check_message(
        &self,
        text: Option<&str>,
        attachments: usize,
    ) -> Result<(), MessageError> {
        let text_len = text.map_or(0, str::len);
        if text_len == 0 && attachments == 0 {
            return Err(MessageError::Empty);
        }
        if text_len > self.max_text_bytes {
            return Err(MessageError::TextTooLong {
                bytes: text_len,
                limit: self.max_text_bytes,
            });
        }
        if attachments > self.max_attachments {
            return Err(MessageError::TooManyAttachments {
                count: attachments,
                limit: self.max_attachments,
            });
        }
        Ok(())
    }

    /// Checks a group's title.
    pub fn check_title(&self, title: &str) -> Result<(), MessageError> {
        let chars = title.chars().count();
        if title.trim().is_empty()
            || chars > self.max_title_chars
            || title.chars().any(char::is_control)
        {
            return Err(MessageError::InvalidTitle {
                limit: self.max_title_chars,
            });
        }
        Ok(())
    }

    /// Whether `actor` may edit a message sent by `sender` `age` ago.
    pub fn may_edit(
        &self,
        actor: &str,
        sender: &str,
        age: Duration,
        deleted: bool,
    ) -> Result<(), MessageError> {
        if deleted {
            return Err(MessageError::Deleted);
        }
        if actor != sender {
            return Err(MessageError::NotSender);
        }
        if age > self.edit_window {
            return Err(MessageError::EditWindowPassed(self.edit_window));
        }
        Ok(())
    }

    /// Whether `actor` may delete for everyone a message sent by `sender`
    /// `age` ago: its sender within the window, a group admin at any time.
    pub fn may_delete(
        &self,
        actor: &str,
        sender: &str,
        actor_is_group_admin: bool,
        age: Duration,
    ) -> Result<(), MessageError> {
        if actor_is_group_admin {
            return Ok(());
        }
        if actor != sender {
            return Err(MessageError::NotSender);
        }
        if age > self.delete_window {
            return Err(MessageError::DeleteWindowPassed(self.delete_window));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_message_carries_something_within_the_limits() {
        let l = ChatLimits::default();
        assert_eq!(l.check_message(None, 0), Err(MessageError::Empty));
        assert_eq!(l.check_message(Some(""), 0), Err(MessageError::Empty));
        assert_eq!(l.check_message(Some("hi"), 0), Ok(()));
        assert_eq!(l.check_message(None, 30), Ok(()));
        assert_eq!(
            l.check_message(None, 31),
            Err(MessageError::TooManyAttachments {
                count: 31,
                limit: 30
            })
        );
        let long = "x".repeat(64 * 1024 + 1);
        assert!(matches!(
            l.check_message(Some(&long), 0),
            Err(MessageError::TextTooLong { .. })
        ));
        assert_eq!(l.check_message(Some(&long[1..]), 0), Ok(()));
    }

    #[test]
    fn titles_are_1_to_100_characters() {
        let l = ChatLimits::default();
        assert!(l.check_title("Trip").is_ok());
        assert!(
            l.check_title(&"é".repeat(100)).is_ok(),
            "characters, not bytes"
        );
        assert!(l.check_title(&"é".repeat(101)).is_err());
        assert!(l.check_title("   ").is_err());
        assert!(l.check_title("a\nb").is_err());
    }

    #[test]
    fn senders_edit_and_delete_within_their_windows_and_admins_delete_any_time() {
        let l = ChatLimits::default();
        let minute = Duration::from_secs(60);
        assert_eq!(l.may_edit("a", "a", minute, false), Ok(()));
        assert_eq!(
            l.may_edit("b", "a", minute, false),
            Err(MessageError::NotSender)
        );
        assert!(matches!(
            l.may_edit("a", "a", 16 * minute, false),
            Err(MessageError::EditWindowPassed(_))
        ));
        assert_eq!(
            l.may_edit("a", "a", minute, true),
            Err(MessageError::Deleted)
        );
        assert_eq!(l.may_delete("a", "a", false, 47 * 60 * minute), Ok(()));
        assert!(matches!(
            l.may_delete("a", "a", false, 49 * 60 * minute),
            Err(MessageError::DeleteWindowPassed(_))
        ));
        assert_eq!(
            l.may_delete("b", "a", false, minute),
            Err(MessageError::NotSender)
        );
        assert_eq!(l.may_delete("b", "a", true, 1000 * 60 * minute), Ok(()));
    }
}
