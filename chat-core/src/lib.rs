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

pub mod access;
pub mod conversation;
pub mod message;
pub mod receipts;
pub mod sync;

pub use access::may_read;
