//! The messaging core, pure of HTTP and SQL: conversations and their
//! members' roles (`conversation`), what a message may carry and who may
//! edit or delete it (`message`), receipts and a message's status for its
//! sender (`receipts`), the sync log's cursor and its no-gap rule (`sync`),
//! and the rule "who may read this media" (`access`).
//!
//! The media service links it in so that an attachment belongs to a
//! conversation and only its members can read it; its persistence and HTTP
//! surface live in `media-api`.

#![forbid(unsafe_code)]

/// The stored and API spelling of an enum's variants, both ways.
macro_rules! named {
    ($ty:ident { $($variant:ident => $name:literal),+ $(,)? }) => {
        impl $ty {
            /// The stored and API name.
            pub fn as_str(self) -> &'static str {
                match self { $(Self::$variant => $name),+ }
            }

            /// Reads a name; `None` for anything else.
            pub fn parse(value: &str) -> Option<Self> {
                match value { $($name => Some(Self::$variant),)+ _ => None }
            }
        }

        impl std::fmt::Display for $ty {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

pub mod access;
pub mod conversation;
pub mod message;
pub mod receipts;
pub mod sync;

pub use access::may_read;
