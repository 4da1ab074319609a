//! The sync log's cursor: where a device is in the stream of every durable
//! change that concerns its user.
//!
//! The rule a reader must keep: nothing skipped and nothing twice, even when
//! transactions commit out of order. An event's position is the pair
//! (`order`, `id`): `id` is the log's own increasing number; `order` is the
//! key in which events become visible. On SQLite (one writer) it is the
//! `id` itself. On PostgreSQL it is the writing transaction's id
//! (`pg_current_xact_id()`), and a read returns only events whose
//! transaction is older than every transaction still running in the
//! database (or than the next to start, when none runs), in (`order`, `id`)
//! order, after the cursor. An event not yet visible then has an `order`
//! at or above that bound, so it sorts after every event returned: the
//! cursor never passes over it, and it is returned once, when it commits.
//!
//! The cursor is opaque to clients: a version byte and the pair, in
//! URL-safe base64 without padding.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// What an event in the sync log records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventKind {
    /// A conversation was made; its founding members get it.
    ConversationCreated,
    /// Someone joined (the joiner gets it first of all the conversation's events).
    MemberAdded,
    /// Someone was removed or left (the last event they get of it).
    MemberRemoved,
    /// Someone's role changed.
    RoleChanged,
    /// A message (or a system message) was posted.
    MessageCreated,
    /// A message's text changed.
    MessageEdited,
    /// A message was deleted for everyone.
    MessageDeleted,
    /// A member's receipt marks moved forward.
    Receipt,
}

named!(EventKind {
    ConversationCreated => "conversation_created",
    MemberAdded => "member_added",
    MemberRemoved => "member_removed",
    RoleChanged => "role_changed",
    MessageCreated => "message_created",
    MessageEdited => "message_edited",
    MessageDeleted => "message_deleted",
    Receipt => "receipt",
});

/// A position in the sync log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct SyncCursor {
    /// The visibility key of the last event read (see the module docs).
    pub order: u64,
    /// The log id of the last event read.
    pub id: u64,
}

const VERSION: u8 = 1;

impl SyncCursor {
    /// The opaque text a client keeps.
    pub fn encode(self) -> String {
        let mut bytes = [0u8; 17];
        bytes[0] = VERSION;
        bytes[1..9].copy_from_slice(&self.order.to_be_bytes());
        bytes[9..].copy_from_slice(&self.id.to_be_bytes());
        URL_SAFE_NO_PAD.encode(bytes)
    }

    /// Reads a cursor this service made; `None` for anything else.
    pub fn decode(text: &str) -> Option<SyncCursor> {
        let bytes = URL_SAFE_NO_PAD.decode(text).ok()?;
        if bytes.len() != 17 || bytes[0] != VERSION {
            return None;
        }
        let word = |at: usize| bytes[at..at + 8].try_into().ok().map(u64::from_be_bytes);
        let cursor = SyncCursor {
            order: word(1)?,
            id: word(9)?,
        };
        // One text per cursor: a re-encoding must give the text back.
        (cursor.encode() == text).then_some(cursor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_refuse_anything_else() {
        for c in [
            SyncCursor::default(),
            SyncCursor { order: 1, id: 2 },
            SyncCursor {
                order: u64::MAX,
                id: u64::MAX,
            },
            SyncCursor {
                order: 771_234,
                id: 98_765_432_101,
            },
        ] {
            let text = c.encode();
            assert_eq!(text.len(), 23, "{text}");
            assert!(
                text.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            );
            assert_eq!(SyncCursor::decode(&text), Some(c), "{text}");
        }
        let good = SyncCursor { order: 5, id: 6 }.encode();
        for bad in [
            "",
            "abc",
            "!!!!!!!!!!!!!!!!!!!!!!!",
            &good[..22],
            &format!("{good}A"),
            &good.replacen('A', "C", 1),
        ] {
            assert_eq!(SyncCursor::decode(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn cursors_order_by_visibility_then_id() {
        let a = SyncCursor { order: 10, id: 50 };
        let b = SyncCursor { order: 11, id: 40 };
        assert!(
            a < b,
            "a later transaction's event comes after, whatever its id"
        );
        assert!(SyncCursor { order: 10, id: 51 } > a);
    }
}
