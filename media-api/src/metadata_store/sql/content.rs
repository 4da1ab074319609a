//! Referencing a content inside a transaction: its blob row (inserted, or
//! the existing one locked and revived), its processing job when it is new,
//! and the media row.

use sqlx::{Any, Row, Transaction};

use super::{BLOB_COLUMNS, SqlMetadataStore, media_with_blob, to_i64};
use crate::ids::{Blake3, FileName, MediaId, UserId, now_ms};
use crate::metadata_store::{Created, MetadataError, NewContent, Processing};

/// References a content in an open transaction: inserts its blob unless one
/// with that BLAKE3 exists (the unique key settles races), then the media.
pub(super) async fn reference_content(
    store: &SqlMetadataStore,
    tx: &mut Transaction<'static, Any>,
    owner: &UserId,
    file_name: &FileName,
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
    .bind(content.storage_key.as_str())
    .bind(now)
    .bind(processing)
    .bind(processing_error)
    .fetch_one(&mut **tx)
    .await?;
    let inserted = blob.try_get::<String, _>("storage_key")? == content.storage_key.as_str();
    if inserted && content.processing == Processing::Pending {
        // A new content: its processing job commits with it, or not at all.
        super::jobs::enqueue(
            store,
            tx,
            &content.blake3,
            content.origin,
            crate::metadata_store::jobs::LIVE_PRIORITY,
            now,
        )
        .await?;
    }
    insert_media(tx, media_id, owner, &content.blake3, file_name, now).await?;
    let media = media_with_blob(
        &blob,
        media_id,
        owner.clone(),
        content.blake3,
        file_name.clone(),
        now,
    )?;
    Ok(Created {
        media,
        deduplicated: !inserted,
    })
}

pub(super) async fn insert_media(
    tx: &mut Transaction<'static, Any>,
    media_id: MediaId,
    owner: &UserId,
    blake3: &Blake3,
    file_name: &FileName,
    now: i64,
) -> Result<(), MetadataError> {
    sqlx::query(
        "insert into media (media_id, owner_id, blake3, file_name, status, created_at, \
         updated_at) values ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(media_id.to_string())
    .bind(owner.as_str())
    .bind(blake3.to_hex())
    .bind(file_name.as_str())
    .bind("ready")
    .bind(now)
    .bind(now)
    .execute(&mut **tx)
    .await?;
    Ok(())
}
