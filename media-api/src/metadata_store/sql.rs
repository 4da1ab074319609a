//! PostgreSQL and SQLite behind one implementation (sqlx `Any`).

use std::time::Duration;

use anyhow::Context;
use async_trait::async_trait;
use secrecy::ExposeSecret;
use sqlx::AnyPool;
use sqlx::any::AnyPoolOptions;
use sqlx::any::AnyRow;
use sqlx::migrate::Migrator;
use sqlx::{Any, Row, Transaction};

use super::{
    BlobRecord, ChunkRecord, Created, Dialect, MediaRecord, MetadataError, MetadataStore,
    NewContent, Processing, RecordOutcome, UploadRecord, UploadState,
};
use crate::config::Settings;
use crate::ids::{Blake3, MediaId, UploadId, now_ms};

static POSTGRES_MIGRATIONS: Migrator = sqlx::migrate!("../migrations/postgres");
static SQLITE_MIGRATIONS: Migrator = sqlx::migrate!("../migrations/sqlite");

/// Set on every SQLite connection: write-ahead log (readers never block the
/// writer), fsync at checkpoints only, enforced foreign keys, and waiting on a
/// lock instead of failing.
const SQLITE_PRAGMAS: &[&str] = &[
    "pragma journal_mode = wal",
    "pragma synchronous = normal",
    "pragma foreign_keys = on",
    "pragma busy_timeout = 5000",
];

/// The metadata store over a sqlx pool.
#[derive(Debug, Clone)]
pub struct SqlMetadataStore {
    pub(super) pool: AnyPool,
    pub(super) dialect: Dialect,
    /// Wakes waiting workers: on enqueue (SQLite) or on a PostgreSQL notification.
    pub(super) work: std::sync::Arc<tokio::sync::Notify>,
    /// Whether the PostgreSQL `listen` task runs yet.
    pub(super) listening: std::sync::Arc<std::sync::OnceLock<()>>,
    /// The database URL, for the PostgreSQL listener connection.
    pub(super) url: std::sync::Arc<str>,
    /// Claims a job gets before it is dead.
    pub(super) max_attempts: u32,
}

impl SqlMetadataStore {
    /// Opens the pool the settings name and runs pending migrations.
    pub async fn connect(settings: &Settings) -> anyhow::Result<Self> {
        sqlx::any::install_default_drivers();
        let (url, dialect) = match &settings.database_url {
            Some(url) => (url.expose_secret().to_owned(), Dialect::Postgres),
            None => {
                std::fs::create_dir_all(&settings.data_dir).with_context(|| {
                    format!("while creating data dir {}", settings.data_dir.display())
                })?;
                let path = settings.data_dir.join("media.db");
                (
                    format!("sqlite://{}?mode=rwc", path.display()),
                    Dialect::Sqlite,
                )
            }
        };
        let options = AnyPoolOptions::new().acquire_timeout(Duration::from_secs(5));
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
        Ok(Self {
            pool,
            dialect,
            work: std::sync::Arc::default(),
            listening: std::sync::Arc::default(),
            url: std::sync::Arc::from(url.as_str()),
            max_attempts: settings.jobs.max_attempts,
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
    created_at, updated_at, expires_at";

const CHUNK_COLUMNS: &str = "chunk_number, size, sha256, chaining_value, etag";

const MEDIA_SELECT: &str = "select m.media_id, m.owner_id, m.blake3, b.size, b.content_type, \
    m.file_name, b.processing, b.processing_error, b.probe, b.storage_key, m.created_at \
    from media m join blobs b on b.blake3 = m.blake3";
/// The blob's part of a media document ([`media_with_blob`] reads these).
const BLOB_COLUMNS: &str = "size, content_type, processing, processing_error, probe, storage_key";
/// [`BLOB_COLUMNS`] qualified by the `b` alias, for queries that join blobs.
static BLOB_COLUMNS_OF_B: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    BLOB_COLUMNS
        .split(", ")
        .map(|c| format!("b.{c}"))
        .collect::<Vec<_>>()
        .join(", ")
});

/// References a content in an open transaction: inserts its blob unless one
/// with that BLAKE3 exists (the unique key settles races), then the media.
async fn reference_content(
    store: &SqlMetadataStore,
    tx: &mut Transaction<'static, Any>,
    owner: &str,
    file_name: &str,
    content: &NewContent,
    media_id: MediaId,
) -> Result<Created, MetadataError> {
    let now = now_ms();
    let (processing, processing_error) = match &content.processing {
        Processing::Pending => ("pending", None),
        Processing::Skipped => ("skipped", None),
        Processing::Failed(reason) => ("failed", Some(reason.as_str())),
    };
    // Insert the blob, or touch the existing row: the update locks it (a GC
    // delete waits, then finds it referenced again) and ends any grace period.
    // Storage keys are unique per upload, so ours coming back means ours won.
    // The blob's columns come back with it: the media document is built from
    // them and what we insert, with no query after the inserts.
    let blob = sqlx::query(&format!(
        "insert into blobs (blake3, size, content_type, storage_key, created_at, processing, \
         processing_error) values ($1, $2, $3, $4, $5, $6, $7) \
         on conflict (blake3) do update set unreferenced_since = null \
         returning {BLOB_COLUMNS}"
    ))
    .bind(content.blake3.to_hex())
    .bind(to_i64(content.size)?)
    .bind(&content.content_type)
    .bind(&content.storage_key)
    .bind(now)
    .bind(processing)
    .bind(processing_error)
    .fetch_one(&mut **tx)
    .await?;
    let inserted = blob.try_get::<String, _>("storage_key")? == content.storage_key;
    if inserted && content.processing == Processing::Pending {
        // A new content: its processing job commits with it, or not at all.
        super::sql_jobs::enqueue(
            store,
            tx,
            &content.blake3,
            content.origin,
            super::jobs::LIVE_PRIORITY,
            now,
        )
        .await?;
    }
    insert_media(tx, media_id, owner, &content.blake3, file_name, now).await?;
    let media = media_with_blob(
        &blob,
        media_id,
        owner.to_owned(),
        content.blake3,
        file_name.to_owned(),
        now,
    )?;
    Ok(Created {
        media,
        deduplicated: !inserted,
    })
}

async fn insert_media(
    tx: &mut Transaction<'static, Any>,
    media_id: MediaId,
    owner: &str,
    blake3: &Blake3,
    file_name: &str,
    now: i64,
) -> Result<(), MetadataError> {
    sqlx::query(
        "insert into media (media_id, owner_id, blake3, file_name, status, created_at, \
         updated_at) values ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(media_id.to_string())
    .bind(owner)
    .bind(blake3.to_hex())
    .bind(file_name)
    .bind("ready")
    .bind(now)
    .bind(now)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

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

fn upload_from_row(row: &AnyRow) -> Result<UploadRecord, MetadataError> {
    let upload_id: String = row.try_get("upload_id")?;
    let declared_blake3: Option<String> = row.try_get("declared_blake3")?;
    let media_id: Option<String> = row.try_get("media_id")?;
    let state: String = row.try_get("state")?;
    Ok(UploadRecord {
        upload_id: UploadId::parse(&upload_id).ok_or_else(|| bad_id("upload_id"))?,
        owner: row.try_get("owner_id")?,
        file_name: row.try_get("file_name")?,
        size: get_u64(row, "size")?,
        declared_type: row.try_get("declared_type")?,
        declared_blake3: declared_blake3
            .map(|b| Blake3::parse(&b).map_err(MetadataError::Query))
            .transpose()?,
        chunk_size: get_u64(row, "chunk_size")?,
        total_chunks: get_u32(row, "total_chunks")?,
        state: UploadState::parse(&state)?,
        storage_key: row.try_get("storage_key")?,
        multipart_id: row.try_get("multipart_id")?,
        media_id: media_id
            .map(|m| MediaId::parse(&m).ok_or_else(|| bad_id("media_id")))
            .transpose()?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
        expires_at: row.try_get("expires_at")?,
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
        row.try_get("owner_id")?,
        Blake3(get_hash(row, "blake3")?),
        row.try_get("file_name")?,
        row.try_get("created_at")?,
    )
}

/// A media document from its own fields and a row holding [`BLOB_COLUMNS`].
fn media_with_blob(
    blob: &AnyRow,
    media_id: MediaId,
    owner: String,
    blake3: Blake3,
    file_name: String,
    created_at: i64,
) -> Result<MediaRecord, MetadataError> {
    Ok(MediaRecord {
        media_id,
        owner,
        blake3,
        size: get_u64(blob, "size")?,
        content_type: blob.try_get("content_type")?,
        file_name,
        // Processing belongs to the content: every media of it shares the state.
        status: match blob.try_get::<String, _>("processing")?.as_str() {
            "ready" | "skipped" => "ready",
            "failed" => "failed",
            _ => "processing",
        }
        .to_owned(),
        failure: blob.try_get("processing_error")?,
        probe: blob
            .try_get::<Option<String>, _>("probe")?
            .and_then(|p| serde_json::from_str(&p).ok()),
        storage_key: blob.try_get("storage_key")?,
        created_at,
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

    async fn create_upload(&self, u: &UploadRecord) -> Result<(), MetadataError> {
        sqlx::query(
            "insert into uploads (upload_id, owner_id, file_name, size, declared_type, \
             declared_blake3, chunk_size, total_chunks, state, storage_key, multipart_id, \
             media_id, created_at, updated_at, expires_at) \
             values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)",
        )
        .bind(u.upload_id.to_string())
        .bind(&u.owner)
        .bind(&u.file_name)
        .bind(to_i64(u.size)?)
        .bind(u.declared_type.clone())
        .bind(u.declared_blake3.map(|b| b.to_hex()))
        .bind(to_i64(u.chunk_size)?)
        .bind(i64::from(u.total_chunks))
        .bind(u.state.as_str())
        .bind(&u.storage_key)
        .bind(&u.multipart_id)
        .bind(u.media_id.map(|m| m.to_string()))
        .bind(u.created_at)
        .bind(u.updated_at)
        .bind(u.expires_at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn upload(&self, id: UploadId) -> Result<Option<UploadRecord>, MetadataError> {
        sqlx::query(&format!(
            "select {UPLOAD_COLUMNS} from uploads where upload_id = $1"
        ))
        .bind(id.to_string())
        .fetch_optional(&self.pool)
        .await?
        .map(|row| upload_from_row(&row))
        .transpose()
    }

    async fn chunks(&self, id: UploadId) -> Result<Vec<ChunkRecord>, MetadataError> {
        sqlx::query(&format!(
            "select {CHUNK_COLUMNS} from upload_chunks where upload_id = $1 order by chunk_number"
        ))
        .bind(id.to_string())
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(chunk_from_row)
        .collect()
    }

    async fn chunk(&self, id: UploadId, number: u32) -> Result<Option<ChunkRecord>, MetadataError> {
        sqlx::query(&format!(
            "select {CHUNK_COLUMNS} from upload_chunks where upload_id = $1 and chunk_number = $2"
        ))
        .bind(id.to_string())
        .bind(i64::from(number))
        .fetch_optional(&self.pool)
        .await?
        .as_ref()
        .map(chunk_from_row)
        .transpose()
    }

    async fn record_chunk(
        &self,
        id: UploadId,
        chunk: &ChunkRecord,
    ) -> Result<RecordOutcome, MetadataError> {
        let mut tx = self.pool.begin().await?;
        let state = self.locked_state(&mut tx, id).await?;
        if state != Some(UploadState::Receiving) {
            tx.rollback().await?;
            return Ok(RecordOutcome::NotReceiving(
                state.unwrap_or(UploadState::Aborted),
            ));
        }
        let inserted = sqlx::query(
            "insert into upload_chunks (upload_id, chunk_number, size, sha256, chaining_value, \
             etag, created_at) values ($1, $2, $3, $4, $5, $6, $7) \
             on conflict (upload_id, chunk_number) do nothing",
        )
        .bind(id.to_string())
        .bind(i64::from(chunk.number))
        .bind(to_i64(chunk.size)?)
        .bind(hex::encode(chunk.sha256))
        .bind(hex::encode(chunk.chaining_value))
        .bind(&chunk.etag)
        .bind(now_ms())
        .execute(&mut *tx)
        .await?
        .rows_affected();
        let outcome = if inserted == 1 {
            RecordOutcome::Recorded
        } else {
            let row = sqlx::query(&format!(
                "select {CHUNK_COLUMNS} from upload_chunks \
                 where upload_id = $1 and chunk_number = $2"
            ))
            .bind(id.to_string())
            .bind(i64::from(chunk.number))
            .fetch_one(&mut *tx)
            .await?;
            RecordOutcome::AlreadyRecorded(chunk_from_row(&row)?)
        };
        tx.commit().await?;
        Ok(outcome)
    }

    async fn forget_chunk(
        &self,
        id: UploadId,
        number: u32,
        sha256: &[u8; 32],
    ) -> Result<bool, MetadataError> {
        let mut tx = self.pool.begin().await?;
        if self.locked_state(&mut tx, id).await? != Some(UploadState::Receiving) {
            tx.rollback().await?;
            return Ok(false);
        }
        let n = sqlx::query(
            "delete from upload_chunks where upload_id = $1 and chunk_number = $2 and sha256 = $3",
        )
        .bind(id.to_string())
        .bind(i64::from(number))
        .bind(hex::encode(sha256))
        .execute(&mut *tx)
        .await?
        .rows_affected();
        tx.commit().await?;
        Ok(n == 1)
    }

    async fn transition(
        &self,
        id: UploadId,
        from: &[UploadState],
        to: UploadState,
        stale_before: Option<i64>,
    ) -> Result<bool, MetadataError> {
        // A handful of states at most: spell them as parameters.
        let placeholders: Vec<String> = (0..from.len()).map(|i| format!("${}", i + 4)).collect();
        let sql = format!(
            "update uploads set state = $1, updated_at = $2 where upload_id = $3 \
             and state in ({}){}",
            placeholders.join(", "),
            if stale_before.is_some() {
                format!(" and updated_at < ${}", from.len() + 4)
            } else {
                String::new()
            }
        );
        let mut query = sqlx::query(&sql)
            .bind(to.as_str())
            .bind(now_ms())
            .bind(id.to_string());
        for state in from {
            query = query.bind(state.as_str());
        }
        if let Some(before) = stale_before {
            query = query.bind(before);
        }
        Ok(query.execute(&self.pool).await?.rows_affected() == 1)
    }

    async fn drop_chunks(&self, id: UploadId) -> Result<(), MetadataError> {
        sqlx::query("delete from upload_chunks where upload_id = $1")
            .bind(id.to_string())
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn finish_upload(
        &self,
        id: UploadId,
        content: &NewContent,
        media_id: MediaId,
    ) -> Result<Option<Created>, MetadataError> {
        let mut tx = self.pool.begin().await?;
        let Some(upload) = sqlx::query(&format!(
            "select {UPLOAD_COLUMNS} from uploads where upload_id = $1{}",
            self.lock_clause(" for update")
        ))
        .bind(id.to_string())
        .fetch_optional(&mut *tx)
        .await?
        .map(|row| upload_from_row(&row))
        .transpose()?
        else {
            return Ok(None);
        };
        if upload.state != UploadState::Completing {
            tx.rollback().await?;
            return Ok(None);
        }
        let created = reference_content(
            self,
            &mut tx,
            &upload.owner,
            &upload.file_name,
            content,
            media_id,
        )
        .await?;
        sqlx::query(
            "update uploads set state = $1, media_id = $2, updated_at = $3 where upload_id = $4",
        )
        .bind(UploadState::Completed.as_str())
        .bind(media_id.to_string())
        .bind(now_ms())
        .bind(id.to_string())
        .execute(&mut *tx)
        .await?;
        sqlx::query("delete from upload_chunks where upload_id = $1")
            .bind(id.to_string())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        if !created.deduplicated {
            self.work.notify_waiters();
        }
        Ok(Some(created))
    }

    async fn create_media(
        &self,
        owner: &str,
        file_name: &str,
        content: &NewContent,
        media_id: MediaId,
    ) -> Result<Created, MetadataError> {
        let mut tx = self.pool.begin().await?;
        let created = reference_content(self, &mut tx, owner, file_name, content, media_id).await?;
        tx.commit().await?;
        if !created.deduplicated {
            self.work.notify_waiters();
        }
        Ok(created)
    }

    async fn media(&self, id: MediaId) -> Result<Option<MediaRecord>, MetadataError> {
        sqlx::query(&format!("{MEDIA_SELECT} where m.media_id = $1"))
            .bind(id.to_string())
            .fetch_optional(&self.pool)
            .await?
            .as_ref()
            .map(media_from_row)
            .transpose()
    }

    async fn expired_uploads(
        &self,
        now: i64,
        limit: u32,
    ) -> Result<Vec<UploadRecord>, MetadataError> {
        sqlx::query(&format!(
            "select {UPLOAD_COLUMNS} from uploads where state = 'receiving' and expires_at < $1 \
             order by expires_at limit $2"
        ))
        .bind(now)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(upload_from_row)
        .collect()
    }

    async fn create_media_if_owned(
        &self,
        owner: &str,
        file_name: &str,
        blake3: &Blake3,
        size: u64,
        media_id: MediaId,
    ) -> Result<Option<MediaRecord>, MetadataError> {
        let mut tx = self.pool.begin().await?;
        // Share-lock the blob row: a concurrent delete of the owner's last
        // media item (which marks the blob unreferenced, an update) waits for
        // us, or we see it; other attachers of the same content share the
        // lock and do not queue behind each other. Driven from the owner's
        // own media (the (owner, blake3) index), so neither the cost nor the
        // answer depends on anyone else's media.
        let owned = sqlx::query(&format!(
            "select {} from media m join blobs b on b.blake3 = m.blake3 \
             where m.owner_id = $3 and m.blake3 = $1 and b.size = $2 limit 1{}",
            *BLOB_COLUMNS_OF_B,
            self.lock_clause(" for share of b")
        ))
        .bind(blake3.to_hex())
        .bind(to_i64(size)?)
        .bind(owner)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(blob) = owned else {
            tx.rollback().await?;
            return Ok(None);
        };
        let now = now_ms();
        insert_media(&mut tx, media_id, owner, blake3, file_name, now).await?;
        tx.commit().await?;
        let media = media_with_blob(
            &blob,
            media_id,
            owner.to_owned(),
            *blake3,
            file_name.to_owned(),
            now,
        )?;
        Ok(Some(media))
    }

    async fn list_media(
        &self,
        owner: &str,
        after: Option<(i64, MediaId)>,
        limit: u32,
    ) -> Result<Vec<MediaRecord>, MetadataError> {
        // Row-value comparison: both databases walk the (owner, created_at, media_id) index.
        let sql = format!(
            "{MEDIA_SELECT} where m.owner_id = $1{} \
             order by m.created_at desc, m.media_id desc limit $2",
            if after.is_some() {
                " and (m.created_at, m.media_id) < ($3, $4)"
            } else {
                ""
            }
        );
        let mut query = sqlx::query(&sql)
            .bind(owner.to_owned())
            .bind(i64::from(limit));
        if let Some((created_at, id)) = after {
            query = query.bind(created_at).bind(id.to_string());
        }
        query
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(media_from_row)
            .collect()
    }

    async fn delete_media(&self, owner: &str, id: MediaId) -> Result<bool, MetadataError> {
        let mut tx = self.pool.begin().await?;
        let blake3: Option<String> = sqlx::query_scalar(
            "delete from media where media_id = $1 and owner_id = $2 returning blake3",
        )
        .bind(id.to_string())
        .bind(owner)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(blake3) = blake3 else {
            tx.rollback().await?;
            return Ok(false);
        };
        sqlx::query(
            "update blobs set unreferenced_since = $2 where blake3 = $1 \
             and unreferenced_since is null \
             and not exists (select 1 from media where media.blake3 = blobs.blake3)",
        )
        .bind(&blake3)
        .bind(now_ms())
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn gc_candidates(
        &self,
        cutoff: i64,
        limit: u32,
    ) -> Result<Vec<BlobRecord>, MetadataError> {
        sqlx::query(
            "select blake3, size, storage_key from blobs \
             where unreferenced_since is not null and unreferenced_since < $1 \
             order by unreferenced_since limit $2",
        )
        .bind(cutoff)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(|row| {
            Ok(BlobRecord {
                blake3: Blake3(get_hash(row, "blake3")?),
                size: get_u64(row, "size")?,
                storage_key: row.try_get("storage_key")?,
            })
        })
        .collect()
    }

    async fn gc_delete_blob(
        &self,
        blake3: &Blake3,
        cutoff: i64,
    ) -> Result<Option<Vec<String>>, MetadataError> {
        let mut tx = self.pool.begin().await?;
        // The variants go with their content, in the same transaction: if the
        // blob stays, so do they.
        let variant_keys: Vec<String> =
            sqlx::query_scalar("delete from variants where blake3 = $1 returning storage_key")
                .bind(blake3.to_hex())
                .fetch_all(&mut *tx)
                .await?;
        let deleted = sqlx::query(
            "delete from blobs where blake3 = $1 \
             and unreferenced_since is not null and unreferenced_since < $2 \
             and not exists (select 1 from media where media.blake3 = blobs.blake3)",
        )
        .bind(blake3.to_hex())
        .bind(cutoff)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if deleted != 1 {
            tx.rollback().await?;
            return Ok(None);
        }
        tx.commit().await?;
        Ok(Some(variant_keys))
    }

    async fn blob_totals(&self) -> Result<(u64, u64), MetadataError> {
        let row = sqlx::query(
            "select count(*) as blobs, cast(coalesce(sum(size), 0) as bigint) as bytes from blobs",
        )
        .fetch_one(&self.pool)
        .await?;
        Ok((get_u64(&row, "blobs")?, get_u64(&row, "bytes")?))
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
