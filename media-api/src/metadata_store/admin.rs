//! What the operators' API reads and writes: the audit log, the service's
//! statistics, and the processing jobs by state.

use async_trait::async_trait;
use serde::Serialize;

use super::MetadataError;
use crate::ids::{Blake3, BlobKey, ConversationId, UserId};

/// One call to the admin API.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AuditEntry {
    /// Its id (a UUIDv7: entries sort by it in time).
    pub audit_id: String,
    /// Unix ms.
    pub at: i64,
    /// Who called (the token's user; `-` when no valid token was sent).
    pub admin: String,
    /// `METHOD /path?query`.
    pub action: String,
    /// The request's body (its selector), when it had one.
    pub request: Option<String>,
    /// The answer's status.
    pub status: u16,
}

/// Counts over the whole service.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Stats {
    /// Users who own media or upload sessions.
    pub users: u64,
    /// Media items.
    pub media: u64,
    /// Attachments in conversations.
    pub attachments: u64,
    /// Distinct contents stored.
    pub contents: u64,
    /// Bytes as the users see them: every media item and attachment counts
    /// its content's size.
    pub logical_bytes: u64,
    /// Bytes of the distinct contents stored.
    pub stored_bytes: u64,
    /// Bytes of the variants stored.
    pub variant_bytes: u64,
    /// Per sniffed type: contents and their bytes.
    pub by_content_type: Vec<(String, u64, u64)>,
    /// Upload sessions per state.
    pub uploads_by_state: Vec<(String, u64)>,
    /// Jobs per state and kind.
    pub jobs: Vec<(String, String, u64)>,
}

/// A processing job as the operators see it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct JobRow {
    /// Its id.
    pub job_id: String,
    /// Its kind (`process`).
    pub kind: String,
    /// The content it is about.
    pub blake3: String,
    /// `queued`, `running`, `done` or `dead`.
    pub state: String,
    /// 0 for live uploads, 100 for batch work.
    pub priority: i64,
    /// Claims so far.
    pub attempts: u64,
    /// Its last error, as logged (internal detail included: operators only).
    pub last_error: Option<String>,
    /// Unix ms.
    pub created_at: i64,
    /// Unix ms.
    pub updated_at: i64,
}

/// One content as the operators see it: what it is and who references it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ContentReport {
    /// Bytes.
    pub size: u64,
    /// Sniffed type.
    pub content_type: String,
    /// `pending`, `ready`, `failed` or `skipped`.
    pub processing: String,
    /// Unix ms it was first stored.
    pub created_at: i64,
    /// Unix ms it lost its last reference, while it waits for the GC.
    pub unreferenced_since: Option<i64>,
    /// Media items per owner.
    pub media_by_owner: Vec<(String, u64)>,
    /// Attachments per conversation.
    pub attachments_by_conversation: Vec<(String, u64)>,
}

/// Why and by whom a content is blocked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Block {
    /// The operator's reason.
    pub reason: String,
    /// Who blocked it.
    pub blocked_by: String,
    /// Unix ms.
    pub blocked_at: i64,
}

/// A message a user sent with attachments: erasing the user deletes it for
/// everyone, the chat core's own way.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SentAttachments {
    /// Its conversation.
    pub conversation_id: ConversationId,
    /// Its sequence number.
    pub seq: u64,
    /// The contents it carries.
    pub contents: Vec<Blake3>,
}

/// An upload session of an erased user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErasedSession {
    /// Its id.
    pub upload_id: String,
    /// Its object's key.
    pub storage_key: BlobKey,
    /// Its multipart upload in the store.
    pub multipart_id: String,
    /// Still open (receiving or completing): its parts are to be aborted.
    pub open: bool,
}

/// What erasing a user's rows removed, in one transaction.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ErasedRows {
    /// Media items deleted.
    pub media: u64,
    /// Contents those referenced (some others may still hold).
    pub contents: Vec<Blake3>,
    /// Upload sessions deleted.
    pub sessions: Vec<ErasedSession>,
}

/// A stored content as its deletion needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredContent {
    /// Its original's key.
    pub storage_key: BlobKey,
    /// Bytes of the original and its variants.
    pub bytes: u64,
    /// Blocked: kept while it is (moderation holds it).
    pub blocked: bool,
}

/// The operators' queries.
#[async_trait]
pub trait AdminStore: Send + Sync + 'static {
    /// Writes one entry to the audit log.
    async fn record_audit(&self, entry: &AuditEntry) -> Result<(), MetadataError>;

    /// The audit log, newest first, strictly before `before` (an entry id), at most `limit`.
    async fn audit_log(
        &self,
        before: Option<&str>,
        limit: u32,
    ) -> Result<Vec<AuditEntry>, MetadataError>;

    /// Counts over the whole service.
    async fn stats(&self) -> Result<Stats, MetadataError>;

    /// One content and its references; `None` when it is not stored.
    async fn content(&self, blake3: &Blake3) -> Result<Option<ContentReport>, MetadataError>;

    /// Jobs in `state`, by id, strictly after `after`, at most `limit`.
    async fn jobs_in_state(
        &self,
        state: &str,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<JobRow>, MetadataError>;

    /// Queues a dead job again, with its attempts reset; false when there
    /// is no dead job with that id.
    async fn retry_job(&self, job_id: &str) -> Result<bool, MetadataError>;

    /// Blocks a content, stored or not (a known hash can be blocked before
    /// anyone uploads it): from now on it is served to no one and stored
    /// for no one. False when it was blocked already (the first block stays).
    async fn block(
        &self,
        blake3: &Blake3,
        reason: &str,
        by: &str,
        now: i64,
    ) -> Result<bool, MetadataError>;

    /// Lifts a block; false when the content was not blocked. A content
    /// whose processing was still to come gets its job again.
    async fn unblock(&self, blake3: &Blake3) -> Result<bool, MetadataError>;

    /// A content's block, when it is blocked.
    async fn block_of(&self, blake3: &Blake3) -> Result<Option<Block>, MetadataError>;

    /// The objects a content is stored as: its original, then its
    /// variants; none when it is not stored.
    async fn object_keys(&self, blake3: &Blake3) -> Result<Vec<BlobKey>, MetadataError>;

    /// The messages `user` sent that carry attachments and are not deleted.
    async fn sent_attachments(&self, user: &UserId) -> Result<Vec<SentAttachments>, MetadataError>;

    /// Deletes `user`'s media items, upload sessions (with their chunks) and
    /// usage row in one transaction, marking the contents no one references
    /// any more; answers what went. Repeating it finds nothing.
    async fn erase_user_rows(&self, user: &UserId) -> Result<ErasedRows, MetadataError>;

    /// A stored content's original key and bytes; `None` when not stored.
    async fn stored_content(&self, blake3: &Blake3)
    -> Result<Option<StoredContent>, MetadataError>;
}
