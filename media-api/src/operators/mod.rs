//! What batch operators do to the service: reprocess contents by selector,
//! erase a user, check that the store and the database agree, and block
//! content. The admin API (`http::admin`) is their door; the work is here.

pub mod moderation;
pub mod reprocess;
