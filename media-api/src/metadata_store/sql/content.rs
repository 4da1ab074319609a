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
         processing_error, probe, header_probe) values ($1, $2, $3, $4, $5, $6, $7, $8, $8) \
         on conflict (blake3) do update set unreferenced_since = null \
         returning {BLOB_COLUMNS}, cast(case when exists (select 1 from blocked_contents k \
         where k.blake3 = $1) then 1 else 0 end as bigint) as blocked"
    ))
    .bind(content.blake3.to_hex())
    .bind(to_i64(content.size)?)
    .bind(&content.content_type)
    .bind(content.storage_key.as_str())
    .bind(now)
    .bind(processing)
    .bind(processing_error)
    .bind(content.probe.as_ref().map(|p| p.to_string()))
    .fetch_one(&mut **tx)
    .await?;
    if blob.try_get::<i64, _>("blocked")? == 1 {
        // Refused; the caller's transaction rolls back, nothing is kept.
        return Err(MetadataError::ContentBlocked);
    }
    let inserted = blob.try_get::<String, _>("storage_key")? == content.storage_key.as_str();
    if inserted && content.processing == Processing::Pending {
        // A new content: its processing job commits with it, or not at all.
        super::jobs::enqueue(
            store,
            tx,
            &content.blake3,
            content.origin,
            Some(owner),
            crate::metadata_store::jobs::LIVE_PRIORITY,
            now,
        )
        .await?;
    }
    // Dedup is private: only content the owner held already may be told of.
    // Content someone else stored is shown going through `processing` for
    // as long as its own processing took, as if it were new.
    let owned_before = !inserted && holds(tx, owner, &content.blake3).await?;
    let shown_after = if inserted || owned_before {
        None
    } else {
        match blob.try_get::<String, _>("processing")?.as_str() {
            "pending" => None,
            _ => Some(now + processing_time(tx, &content.blake3).await?),
        }
    };
    insert_media(
        tx,
        media_id,
        owner,
        (&content.blake3, content.size),
        file_name,
        now,
        shown_after,
    )
    .await?;
    let media = media_with_blob(
        &blob,
        media_id,
        owner.clone(),
        content.blake3,
        file_name.clone(),
        now,
        shown_after,
    )?;
    Ok(Created {
        media,
        deduplicated: !inserted,
        owned_before,
    })
}

/// Whether `owner` has a media item of this content.
async fn holds(
    tx: &mut Transaction<'static, Any>,
    owner: &UserId,
    blake3: &Blake3,
) -> Result<bool, MetadataError> {
    let found: Option<i64> =
        sqlx::query_scalar("select 1 from media where owner_id = $1 and blake3 = $2 limit 1")
            .bind(owner.as_str())
            .bind(blake3.to_hex())
            .fetch_optional(&mut **tx)
            .await?;
    Ok(found.is_some())
}

/// Longest a content's processing is made to look: a content stuck
/// somewhere odd must not keep a new media item `processing` for days.
const MAX_SHOWN_PROCESSING_MS: i64 = 15 * 60 * 1000;

/// How long processing this content took, queue wait included (its last
/// finished job's enqueue to its end); 0 for content never processed
/// (a type that is not, whose media are `ready` at once for anyone).
async fn processing_time(
    tx: &mut Transaction<'static, Any>,
    blake3: &Blake3,
) -> Result<i64, MetadataError> {
    let took: Option<i64> = sqlx::query_scalar(
        "select updated_at - created_at from jobs where blake3 = $1 \
         and state in ('done', 'dead') order by updated_at desc limit 1",
    )
    .bind(blake3.to_hex())
    .fetch_optional(&mut **tx)
    .await?;
    Ok(took.unwrap_or(0).clamp(0, MAX_SHOWN_PROCESSING_MS))
}

/// Inserts a media row of `(blake3, size)` content and counts it in the
/// owner's usage.
pub(super) async fn insert_media(
    tx: &mut Transaction<'static, Any>,
    media_id: MediaId,
    owner: &UserId,
    (blake3, size): (&Blake3, u64),
    file_name: &FileName,
    now: i64,
    shown_after: Option<i64>,
) -> Result<(), MetadataError> {
    sqlx::query(
        "insert into user_usage (owner_id, media, media_bytes) values ($1, 1, $2) \
         on conflict (owner_id) do update set media = user_usage.media + 1, \
         media_bytes = user_usage.media_bytes + excluded.media_bytes",
    )
    .bind(owner.as_str())
    .bind(to_i64(size)?)
    .execute(&mut **tx)
    .await?;
    sqlx::query(
        "insert into media (media_id, owner_id, blake3, file_name, status, created_at, \
         updated_at, shown_after) values ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(media_id.to_string())
    .bind(owner.as_str())
    .bind(blake3.to_hex())
    .bind(file_name.as_str())
    .bind("ready")
    .bind(now)
    .bind(now)
    .bind(shown_after)
    .execute(&mut **tx)
    .await?;
    Ok(())
}
