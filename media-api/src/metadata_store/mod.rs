//! The metadata store seam: the source of truth for uploads, chunks, blobs,
//! media, jobs and chat, split into narrow traits (`UploadStore`, `MediaStore`,
//! `GcStore`, `JobQueue`, `ChatStore`) so each domain depends on the piece it uses.
//!
//! One implementation, [`sql::SqlMetadataStore`], serves PostgreSQL and SQLite
//! through sqlx's `Any` driver: the SQL is written once in the dialect both
//! share (`$n` parameters, `on conflict`, `returning`, bigint milliseconds for
//! time), and the few statements that must differ are picked by [`Dialect`].

pub mod admin;
pub mod batches;
pub mod chat;
pub mod fsck;
pub mod gc;
pub mod jobs;
pub mod media;
mod records;
pub mod sql;
pub mod tus;
pub mod uploads;

use std::sync::Arc;

use async_trait::async_trait;

pub use chat::ChatStore;
pub use gc::GcStore;
pub use jobs::JobQueue;
pub use media::MediaStore;
pub use records::{
    BlobRecord, ChunkRecord, Created, MediaRecord, MediaStatus, NewContent, Processing,
    RecordOutcome, UploadRecord, UploadState, Usage,
};
pub use uploads::UploadStore;

use crate::config::Settings;

/// Which database is behind the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// PostgreSQL: many writers, `for update skip locked`, `listen/notify`.
    Postgres,
    /// SQLite: one writer, the embedded default.
    Sqlite,
}

/// What can go wrong in the metadata store.
#[derive(Debug, thiserror::Error)]
pub enum MetadataError {
    /// The database could not be reached or timed out.
    #[error("metadata store unavailable: {0}")]
    Unavailable(String),
    /// A query failed.
    #[error("metadata store error: {0}")]
    Query(String),
    /// The content is blocked by the operators: nothing was stored.
    #[error("the content is blocked")]
    ContentBlocked,
}

impl From<sqlx::Error> for MetadataError {
    fn from(e: sqlx::Error) -> Self {
        match e {
            sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::Io(_)
            | sqlx::Error::Tls(_) => MetadataError::Unavailable(e.to_string()),
            other => MetadataError::Query(other.to_string()),
        }
    }
}

/// The store as a whole: what it is, whether it answers, and its schema.
#[async_trait]
pub trait MetadataStore: Send + Sync + 'static {
    /// `postgres` or `sqlite`.
    fn kind(&self) -> &'static str;

    /// Answers when the database is reachable.
    async fn ping(&self) -> Result<(), MetadataError>;

    /// Versions of the migrations applied, oldest first.
    async fn applied_migrations(&self) -> Result<Vec<i64>, MetadataError>;
}

/// Every narrow piece of one store, each as its own seam.
#[derive(Clone)]
pub struct Stores {
    /// The store as a whole.
    pub metadata: Arc<dyn MetadataStore>,
    /// Upload sessions and chunks.
    pub uploads: Arc<dyn UploadStore>,
    /// Media items and contents.
    pub media: Arc<dyn MediaStore>,
    /// The garbage collector's queries.
    pub gc: Arc<dyn GcStore>,
    /// The processing queue.
    pub jobs: Arc<dyn JobQueue>,
    /// Conversations, messages, receipts and the sync log.
    pub chat: Arc<dyn ChatStore>,
    /// The operators' queries.
    pub admin: Arc<dyn admin::AdminStore>,
    /// The operators' batches.
    pub batches: Arc<dyn batches::BatchStore>,
    /// The consistency check's queries.
    pub fsck: Arc<dyn fsck::FsckStore>,
    /// tus sessions' lock and tail.
    pub tus: Arc<dyn tus::TusStore>,
}

impl std::fmt::Debug for Stores {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stores")
            .field("kind", &self.metadata.kind())
            .finish_non_exhaustive()
    }
}

/// Connects to the store the settings name, brings its schema up to date,
/// and hands out each of its seams.
pub async fn from_settings(settings: &Settings) -> anyhow::Result<Stores> {
    let store = Arc::new(sql::SqlMetadataStore::connect(settings).await?);
    Ok(Stores {
        metadata: store.clone(),
        uploads: store.clone(),
        media: store.clone(),
        gc: store.clone(),
        jobs: store.clone(),
        chat: store.clone(),
        admin: store.clone(),
        batches: store.clone(),
        fsck: store.clone(),
        tus: store,
    })
}
