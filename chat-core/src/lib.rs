//! The messaging core: conversations, their members, messages that carry
//! attachments, and the access rule "who may read this media".
//!
//! It links into the media service so that an attachment belongs to a
//! conversation and only its members can read it. Until conversations land,
//! the media service's rule is the owner-only one below.

#![forbid(unsafe_code)]

/// Who may read a media item, given its owner and the caller.
///
/// Today only the owner may; conversation membership extends this.
pub fn may_read(owner: &str, caller: &str) -> bool {
    owner == caller
}

#[cfg(test)]
mod tests {
    #[test]
    fn only_the_owner_reads_for_now() {
        assert!(super::may_read("alice", "alice"));
        assert!(!super::may_read("alice", "bob"));
    }
}
