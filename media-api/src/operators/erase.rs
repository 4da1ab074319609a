//! Erasing a user (the GDPR right to erasure): their media, their upload
//! sessions (multipart uploads aborted) and the attachments they sent go
//! now, and every content no one else references is deleted from the store
//! at once, not after the GC's grace. Contents others hold stay for them; a
//! blocked content stays while it is blocked (moderation holds it).

use serde::Serialize;

use super::OperatorError;
use crate::backends::Backends;
use crate::blob_store::MultipartId;
use crate::ids::{Blake3, UserId};
use crate::metadata_store::chat::ChatStoreError;
use crate::progress_bus::{Event, EventKind, conversation_topic};

/// What an erasure did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ErasureReport {
    /// The user.
    pub user: String,
    /// Media items deleted.
    pub media_deleted: u64,
    /// Messages with attachments the user sent, deleted for everyone.
    pub messages_deleted: u64,
    /// Attachments those carried.
    pub attachments_deleted: u64,
    /// Upload sessions deleted.
    pub sessions_deleted: u64,
    /// Of those, open ones whose multipart upload was aborted.
    pub sessions_aborted: u64,
    /// Contents deleted from the store (no one else referenced them).
    pub contents_deleted: u64,
    /// Contents kept because someone else still references them.
    pub contents_kept: u64,
    /// Contents kept because they are blocked.
    pub contents_held: u64,
    /// Bytes deleted from the store (originals and variants).
    pub bytes_freed: u64,
}

/// Erases `user`. Idempotent: a second run finds nothing and reports zeros.
pub async fn erase_user(
    backends: &Backends,
    user: &UserId,
) -> Result<ErasureReport, OperatorError> {
    let mut report = ErasureReport {
        user: user.as_str().to_owned(),
        ..ErasureReport::default()
    };
    let mut contents: Vec<Blake3> = Vec::new();
    // Their messages with attachments: deleted for everyone as the chat core
    // deletes one (body and attachments gone, an event every member's
    // devices receive live).
    for message in backends.admin.sent_attachments(user).await? {
        match backends
            .chat
            .delete_message(message.conversation_id, message.seq, user)
            .await
        {
            Ok(_) => {
                report.messages_deleted += 1;
                report.attachments_deleted += message.contents.len() as u64;
                contents.extend(message.contents);
                let logged = Event {
                    kind: EventKind::Logged,
                    data: serde_json::Value::Null,
                };
                let _ = backends
                    .progress
                    .publish(&conversation_topic(message.conversation_id), &logged)
                    .await;
            }
            // Deleted meanwhile.
            Err(ChatStoreError::Refused(_)) => {}
            Err(ChatStoreError::Store(e)) => return Err(e.into()),
        }
    }
    let rows = backends.admin.erase_user_rows(user).await?;
    report.media_deleted = rows.media;
    report.sessions_deleted = rows.sessions.len() as u64;
    contents.extend(rows.contents);
    for session in rows.sessions.iter().filter(|s| s.open) {
        let upload = MultipartId(session.multipart_id.clone());
        backends
            .blobs
            .abort_multipart(&session.storage_key, &upload)
            .await?;
        // A completion cut off midway may have joined the parts already.
        backends.blobs.delete(&session.storage_key).await?;
        let _ = backends.progress.forget(&session.upload_id).await;
        report.sessions_aborted += 1;
    }
    contents.sort_by_key(|b| b.0);
    contents.dedup();
    for blake3 in &contents {
        let Some(stored) = backends.admin.stored_content(blake3).await? else {
            continue;
        };
        // The GC's own decision, with no grace: only a content no one
        // references (and not blocked) goes.
        match backends.gc.gc_delete_blob(blake3, i64::MAX).await? {
            Some(variants) => {
                for key in std::iter::once(&stored.storage_key).chain(&variants) {
                    backends.blobs.delete(key).await?;
                }
                report.contents_deleted += 1;
                report.bytes_freed += stored.bytes;
            }
            None if stored.blocked => report.contents_held += 1,
            None => report.contents_kept += 1,
        }
    }
    tracing::info!(user = %user.as_str(), ?report, "user erased");
    Ok(report)
}
