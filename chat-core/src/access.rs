//! Who may read a media item. A media item is readable by its owner; an
//! attachment by the members of its conversation who joined before it was
//! sent, while they are members and the message is not deleted. Everyone
//! else gets the answer given for something that does not exist. An image's
//! exact bytes are for its uploader; other readers get it without metadata.

/// Who may read a media item (not an attachment), given its owner and the
/// caller.
pub fn may_read(owner: &str, caller: &str) -> bool {
    owner == caller
}

/// What the access rule needs to know about an attachment and the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AttachmentView {
    /// The `seq` of the message carrying the attachment.
    pub message_seq: u64,
    /// Whether that message was deleted for everyone.
    pub message_deleted: bool,
    /// The `seq` after which the caller joined (`None`: not a member now).
    pub caller_joined_seq: Option<u64>,
}

/// Whether the caller may read an attachment: a current member who joined
/// before the message was sent, and the message not deleted.
pub fn may_read_attachment(view: AttachmentView) -> bool {
    !view.message_deleted
        && view
            .caller_joined_seq
            .is_some_and(|joined| joined < view.message_seq)
}

/// Which original bytes a reader is given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Original {
    /// The bytes as uploaded.
    Exact,
    /// The image without its metadata (EXIF, XMP, GPS, comments): a photo
    /// sent into a conversation does not tell where it was taken.
    Stripped,
}

impl Original {
    /// The API name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Exact => "exact",
            Self::Stripped => "metadata_stripped",
        }
    }
}

/// The original a caller gets: its uploader the exact bytes; anyone else,
/// for an image, the metadata-free rendition.
pub fn original_for(uploader: &str, caller: &str, is_image: bool) -> Original {
    if uploader == caller || !is_image {
        Original::Exact
    } else {
        Original::Stripped
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_uploader_gets_an_images_exact_bytes() {
        assert_eq!(original_for("alice", "alice", true), Original::Exact);
        assert_eq!(original_for("alice", "bob", true), Original::Stripped);
        assert_eq!(original_for("alice", "bob", false), Original::Exact);
    }

    #[test]
    fn media_items_are_their_owners() {
        assert!(may_read("alice", "alice"));
        assert!(!may_read("alice", "bob"));
    }

    #[test]
    fn attachments_are_for_members_who_joined_before_and_not_after_deletion() {
        let view = |message_seq, message_deleted, caller_joined_seq| AttachmentView {
            message_seq,
            message_deleted,
            caller_joined_seq,
        };
        assert!(
            may_read_attachment(view(10, false, Some(0))),
            "a founding member"
        );
        assert!(
            may_read_attachment(view(10, false, Some(9))),
            "joined just before"
        );
        assert!(
            !may_read_attachment(view(10, false, Some(10))),
            "joined at it: after"
        );
        assert!(
            !may_read_attachment(view(10, false, Some(12))),
            "a late joiner"
        );
        assert!(
            !may_read_attachment(view(10, false, None)),
            "removed or never a member"
        );
        assert!(
            !may_read_attachment(view(10, true, Some(0))),
            "deleted for everyone"
        );
    }
}
