//! The metadata store seam: the source of truth for uploads, chunks, blobs,
//! media and jobs.
//!
//! One implementation, [`sql::SqlMetadataStore`], serves PostgreSQL and SQLite
//! through sqlx's `Any` driver: the SQL is written once in the dialect both
//! share (`$n` parameters, `on conflict`, `returning`, bigint milliseconds for
//! time), and the few statements that must differ are picked by [`Dialect`].

pub mod sql;

use std::sync::Arc;

use async_trait::async_trait;

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

/// The durable record of everything.
#[async_trait]
pub trait MetadataStore: Send + Sync + 'static {
    /// `postgres` or `sqlite`.
    fn kind(&self) -> &'static str;

    /// Answers when the database is reachable.
    async fn ping(&self) -> Result<(), MetadataError>;

    /// Versions of the migrations applied, oldest first.
    async fn applied_migrations(&self) -> Result<Vec<i64>, MetadataError>;
}

/// Connects to the store the settings name and brings its schema up to date.
pub async fn from_settings(settings: &Settings) -> anyhow::Result<Arc<dyn MetadataStore>> {
    Ok(Arc::new(sql::SqlMetadataStore::connect(settings).await?))
}
