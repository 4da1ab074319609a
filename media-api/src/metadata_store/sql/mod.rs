//! PostgreSQL and SQLite behind one implementation (sqlx `Any`): the pool,
//! the migrations and the row parsers here; each narrow trait's statements
//! in a file of its own (`uploads`, `media`, `gc`, `jobs`), and the
//! transaction step that references a content in `content`.

use std::time::Duration;

use anyhow::Context;
use async_trait::async_trait;
use secrecy::ExposeSecret;
use sqlx::AnyPool;
use sqlx::any::AnyPoolOptions;
use sqlx::any::AnyRow;
use sqlx::migrate::Migrator;
use sqlx::{Any, Row, Transaction};

mod admin;
mod batches;
mod chat;
mod chat_log;
mod chat_members;
mod chat_messages;
mod chat_rows;
mod content;
mod flights;
mod fsck;
mod gc;
mod jobs;
mod media;
mod tus;
mod uploads;

use super::{
    ChunkRecord, Dialect, MediaRecord, MediaStatus, MetadataError, MetadataStore, UploadRecord,
    UploadState,
};
use crate::config::Settings;
use crate::ids::{Blake3, BlobKey, FileName, MediaId, UploadId, UserId, now_ms};

static POSTGRES_MIGRATIONS: Migrator = sqlx::migrate!("../migrations/postgres");
static SQLITE_MIGRATIONS: Migrator = sqlx::migrate!("../migrations/sqlite");

/// The pools' options: a connection is waited for at most 5 s, and no
/// connection is closed for being idle or old. That last keeps sqlx 0.8's
/// pool maintenance task from running at all: its sweep can read a wrapped
/// idle count and spin a core for ever, which showed as a service that
/// logged its stop and never exited, measured after `load soak`
/// (launchbadge/sqlx#3645; fixed upstream after 0.8.6 by #4289).
/// A connection that broke is found when it is next acquired (sqlx pings
/// it first) and replaced.
fn pool_options() -> AnyPoolOptions {
    AnyPoolOptions::new()
        .acquire_timeout(Duration::from_secs(5))
        .idle_timeout(None)
        .max_lifetime(None)
}
/// Set on every SQLite connection: write-ahead log (readers never block the
/// writer), fsync at checkpoints only, enforced foreign keys, and waiting on a
/// lock instead of failing.
const SQLITE_PRAGMAS: &[&str] = &[
    "pragma journal_mode = wal",
    "pragma synchronous = normal",
    "pragma foreign_keys = on",
    "pragma busy_timeout = 5000",
];

/// Connections SQLite reads take besides the one writer.
const SQLITE_READERS: u32 = 4;

/// Set on every SQLite reader connection: it only reads, and waits on a lock
/// instead of failing.
const SQLITE_READER_PRAGMAS: &[&str] = &["pragma query_only = on", "pragma busy_timeout = 5000"];

/// The metadata store over a sqlx pool.
#[derive(Debug, Clone)]
pub struct SqlMetadataStore {
    pub(super) pool: AnyPool,
    /// Where reads that need no transaction go: the same pool on
    /// PostgreSQL; on SQLite, reader connections beside the one writer
    /// (chat reads use it; a read that must see a transaction's writes
    /// stays on `pool`).
    pub(super) reads: AnyPool,
    pub(super) dialect: Dialect,
    /// Wakes waiting workers: on enqueue (SQLite) or on a PostgreSQL notification.
    pub(super) work: std::sync::Arc<tokio::sync::Notify>,
    /// Whether the PostgreSQL `listen` task runs yet.
    pub(super) listening: std::sync::Arc<std::sync::OnceLock<()>>,
    /// The database URL, for the PostgreSQL listener connection.
    pub(super) url: std::sync::Arc<str>,
    /// Claims a job gets before it is dead.
    pub(super) max_attempts: u32,
    /// Reads of the sync log's visibility bound, shared by the readers
    /// that want one at the same moment.
    bounds: std::sync::Arc<flights::Flights<(), (i64, i64)>>,
    /// Reads of a conversation's messages, shared likewise.
    message_reads: std::sync::Arc<
        flights::Flights<
            (crate::ids::ConversationId, u64, u64),
            Vec<crate::metadata_store::chat::MessageRecord>,
        >,
    >,
}

impl SqlMetadataStore {
    /// Opens the pool the settings name and runs pending migrations.
    pub async fn connect(settings: &Settings) -> anyhow::Result<Self> {
        sqlx::any::install_default_drivers();
        let (url, dialect) = match &settings.database_url {
            Some(url) => (url.expose_secret().to_owned(), Dialect::Postgres),
            None => {
                crate::secrets::private_dir(&settings.data_dir)?;
                let path = settings.data_dir.join("media.db");
                crate::secrets::private_file(&path)?;
                (
                    format!("sqlite://{}?mode=rwc", path.display()),
                    Dialect::Sqlite,
                )
            }
        };
        let options = pool_options();
        let pool = match dialect {
            Dialect::Postgres => options.max_connections(settings.database_max_connections),
            // SQLite allows one writer; one connection makes every transaction
            // serialisable without SQLITE_BUSY upgrades between connections.
            Dialect::Sqlite => options.max_connections(1).after_connect(|conn, _meta| {
                Box::pin(async move {
                    for pragma in SQLITE_PRAGMAS {
                        sqlx::Executor::execute(&mut *conn, *pragma).await?;
                    }
                    Ok(())
                })
            }),
        }
        .connect(&url)
        .await
        .with_context(|| match dialect {
            Dialect::Postgres => "while connecting to PostgreSQL (MEDIA_DATABASE_URL)".to_owned(),
            Dialect::Sqlite => format!("while opening SQLite in {}", settings.data_dir.display()),
        })?;
        let migrator = match dialect {
            Dialect::Postgres => &POSTGRES_MIGRATIONS,
            Dialect::Sqlite => &SQLITE_MIGRATIONS,
        };
        migrator
            .run(&pool)
            .await
            .context("while migrating the metadata store")?;
        let reads = match dialect {
            Dialect::Postgres => pool.clone(),
            // In WAL mode readers never wait for the writer nor it for them:
            // reads get connections of their own, so a page of history is
            // not queued behind every post.
            Dialect::Sqlite => pool_options()
                .max_connections(SQLITE_READERS)
                .after_connect(|conn, _meta| {
                    Box::pin(async move {
                        for pragma in SQLITE_READER_PRAGMAS {
                            sqlx::Executor::execute(&mut *conn, *pragma).await?;
                        }
                        Ok(())
                    })
                })
                .connect(&url)
                .await
                .with_context(|| {
                    format!(
                        "while opening SQLite readers in {}",
                        settings.data_dir.display()
                    )
                })?,
        };
        Ok(Self {
            pool,
            reads,
            dialect,
            work: std::sync::Arc::default(),
            listening: std::sync::Arc::default(),
            url: std::sync::Arc::from(url.as_str()),
            max_attempts: settings.jobs.max_attempts,
            bounds: std::sync::Arc::default(),
            message_reads: std::sync::Arc::default(),
        })
    }

    /// Which database this is.
    pub fn dialect(&self) -> Dialect {
        self.dialect
    }

    /// A row-locking clause on PostgreSQL; nothing on SQLite, whose single
    /// writer connection already serialises transactions.
    pub(super) fn lock_clause(&self, clause: &'static str) -> &'static str {
        match self.dialect {
            Dialect::Postgres => clause,
            Dialect::Sqlite => "",
        }
    }

    /// The session's state, share-locked until the transaction ends.
    async fn locked_state(
        &self,
        tx: &mut Transaction<'static, Any>,
        id: UploadId,
    ) -> Result<Option<UploadState>, MetadataError> {
        let state: Option<String> = sqlx::query_scalar(&format!(
            "select state from uploads where upload_id = $1{}",
            self.lock_clause(" for share")
        ))
        .bind(id.to_string())
        .fetch_optional(&mut **tx)
        .await?;
        state.as_deref().map(UploadState::parse).transpose()
    }
}

const UPLOAD_COLUMNS: &str = "upload_id, owner_id, file_name, size, declared_type, \
    declared_blake3, chunk_size, total_chunks, state, storage_key, multipart_id, media_id, \
    created_at, updated_at, expires_at, deduplicated";

const CHUNK_COLUMNS: &str = "chunk_number, size, sha256, chaining_value, etag";

const MEDIA_SELECT: &str = "select m.media_id, m.owner_id, m.blake3, b.size, b.content_type, \
    m.file_name, b.processing, b.processing_error, b.probe, b.header_probe, b.storage_key, b.blocked_at, \
    m.created_at, m.shown_after \
    from media m join blobs b on b.blake3 = m.blake3";
/// The blob's part of a media document ([`media_with_blob`] reads these).
const BLOB_COLUMNS: &str = "size, content_type, processing, processing_error, probe, header_probe, storage_key, blocked_at";
/// [`BLOB_COLUMNS`] qualified by the `b` alias, for queries that join blobs.
static BLOB_COLUMNS_OF_B: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    BLOB_COLUMNS
        .split(", ")
        .map(|c| format!("b.{c}"))
        .collect::<Vec<_>>()
        .join(", ")
});

fn to_i64(n: u64) -> Result<i64, MetadataError> {
    i64::try_from(n).map_err(|_| MetadataError::Query(format!("{n} does not fit a bigint")))
}

fn get_u64(row: &AnyRow, column: &str) -> Result<u64, MetadataError> {
    let v: i64 = row.try_get(column)?;
    u64::try_from(v).map_err(|_| MetadataError::Query(format!("negative {column}")))
}

fn get_u32(row: &AnyRow, column: &str) -> Result<u32, MetadataError> {
    let v: i64 = row.try_get(column)?;
    u32::try_from(v).map_err(|_| MetadataError::Query(format!("{column} out of range")))
}

fn get_hash(row: &AnyRow, column: &str) -> Result<[u8; 32], MetadataError> {
    let text: String = row.try_get(column)?;
    Blake3::parse(&text)
        .map(|b| b.0)
        .map_err(|e| MetadataError::Query(format!("{column}: {e}")))
}

fn bad_id(column: &str) -> MetadataError {
    MetadataError::Query(format!("{column} is not a valid id"))
}

/// An object key from a row; one the service did not make is a fault of
/// the store, not a user's.
fn key_from_row(row: &AnyRow, column: &str) -> Result<BlobKey, MetadataError> {
    BlobKey::parse(&row.try_get::<String, _>(column)?).map_err(MetadataError::Query)
}

fn name_from_row(row: &AnyRow) -> Result<FileName, MetadataError> {
    FileName::parse(&row.try_get::<String, _>("file_name")?).map_err(MetadataError::Query)
}

fn user_from_row(row: &AnyRow) -> Result<UserId, MetadataError> {
    UserId::parse(&row.try_get::<String, _>("owner_id")?).map_err(MetadataError::Query)
}

fn upload_from_row(row: &AnyRow) -> Result<UploadRecord, MetadataError> {
    let upload_id: String = row.try_get("upload_id")?;
    let declared_blake3: Option<String> = row.try_get("declared_blake3")?;
    let media_id: Option<String> = row.try_get("media_id")?;
    let state: String = row.try_get("state")?;
    Ok(UploadRecord {
        upload_id: UploadId::parse(&upload_id).ok_or_else(|| bad_id("upload_id"))?,
        owner: user_from_row(row)?,
        file_name: name_from_row(row)?,
        size: get_u64(row, "size")?,
        declared_type: row.try_get("declared_type")?,
        declared_blake3: declared_blake3
            .map(|b| Blake3::parse(&b).map_err(MetadataError::Query))
            .transpose()?,
        chunk_size: get_u64(row, "chunk_size")?,
        total_chunks: get_u32(row, "total_chunks")?,
        state: UploadState::parse(&state)?,
        storage_key: key_from_row(row, "storage_key")?,
        multipart_id: row.try_get("multipart_id")?,
        media_id: media_id
            .map(|m| MediaId::parse(&m).ok_or_else(|| bad_id("media_id")))
            .transpose()?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
        expires_at: row.try_get("expires_at")?,
        deduplicated: row.try_get::<Option<i64>, _>("deduplicated")? == Some(1),
    })
}

fn chunk_from_row(row: &AnyRow) -> Result<ChunkRecord, MetadataError> {
    Ok(ChunkRecord {
        number: get_u32(row, "chunk_number")?,
        size: get_u64(row, "size")?,
        sha256: get_hash(row, "sha256")?,
        chaining_value: get_hash(row, "chaining_value")?,
        etag: row.try_get("etag")?,
    })
}

fn media_from_row(row: &AnyRow) -> Result<MediaRecord, MetadataError> {
    let media_id: String = row.try_get("media_id")?;
    media_with_blob(
        row,
        MediaId::parse(&media_id).ok_or_else(|| bad_id("media_id"))?,
        user_from_row(row)?,
        Blake3(get_hash(row, "blake3")?),
        name_from_row(row)?,
        row.try_get("created_at")?,
        row.try_get("shown_after")?,
    )
}

/// A media document from its own fields and a row holding [`BLOB_COLUMNS`].
/// Until `shown_after` it shows `processing`, as content new to its owner
/// would (see [`MediaRecord::shown_after`]).
fn media_with_blob(
    blob: &AnyRow,
    media_id: MediaId,
    owner: UserId,
    blake3: Blake3,
    file_name: FileName,
    created_at: i64,
    shown_after: Option<i64>,
) -> Result<MediaRecord, MetadataError> {
    let shown_after = shown_after.filter(|t| *t > now_ms());
    let masked = shown_after.is_some();
    Ok(MediaRecord {
        media_id,
        owner,
        blake3,
        size: get_u64(blob, "size")?,
        content_type: blob.try_get("content_type")?,
        file_name,
        // Processing belongs to the content: every media of it shares the state.
        status: if masked {
            MediaStatus::Processing
        } else {
            MediaStatus::from_processing(&blob.try_get::<String, _>("processing")?)?
        },
        failure: if masked {
            None
        } else {
            blob.try_get("processing_error")?
        },
        probe: blob
            // A copy shown as new content shows what new content shows
            // while it is processed: what its header told, nothing more.
            .try_get::<Option<String>, _>(if masked { "header_probe" } else { "probe" })?
            .and_then(|p| serde_json::from_str(&p).ok()),
        storage_key: key_from_row(blob, "storage_key")?,
        created_at,
        shown_after,
        blocked: blob.try_get::<Option<i64>, _>("blocked_at")?.is_some(),
    })
}

#[async_trait]
impl MetadataStore for SqlMetadataStore {
    fn kind(&self) -> &'static str {
        match self.dialect {
            Dialect::Postgres => "postgres",
            Dialect::Sqlite => "sqlite",
        }
    }

    async fn ping(&self) -> Result<(), MetadataError> {
        let one: i64 = sqlx::query_scalar("select cast(1 as bigint)")
            .fetch_one(&self.pool)
            .await?;
        if one == 1 {
            Ok(())
        } else {
            Err(MetadataError::Query("select 1 did not answer 1".into()))
        }
    }

    async fn applied_migrations(&self) -> Result<Vec<i64>, MetadataError> {
        let rows =
            sqlx::query("select version from _sqlx_migrations where success order by version")
                .fetch_all(&self.pool)
                .await?;
        rows.iter()
            .map(|r| r.try_get::<i64, _>(0).map_err(MetadataError::from))
            .collect()
    }
}
