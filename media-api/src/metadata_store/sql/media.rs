//! The media items' statements.

use async_trait::async_trait;

use super::content::{insert_media, reference_content};
use super::{
    BLOB_COLUMNS_OF_B, MEDIA_SELECT, SqlMetadataStore, get_u64, media_from_row, media_with_blob,
    to_i64,
};
use crate::ids::{Blake3, FileName, MediaId, UserId, now_ms};
use crate::metadata_store::{Created, MediaRecord, MediaStore, MetadataError, NewContent, Usage};

#[async_trait]
impl MediaStore for SqlMetadataStore {
    async fn create_media(
        &self,
        owner: &UserId,
        file_name: &FileName,
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

    async fn create_media_if_owned(
        &self,
        owner: &UserId,
        file_name: &FileName,
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
             where m.owner_id = $3 and m.blake3 = $1 and b.size = $2 \
             and b.blocked_at is null limit 1{}",
            *BLOB_COLUMNS_OF_B,
            self.lock_clause(" for share of b")
        ))
        .bind(blake3.to_hex())
        .bind(to_i64(size)?)
        .bind(owner.as_str())
        .fetch_optional(&mut *tx)
        .await?;
        let Some(blob) = owned else {
            tx.rollback().await?;
            return Ok(None);
        };
        let now = now_ms();
        insert_media(
            &mut tx,
            media_id,
            owner,
            (blake3, size),
            file_name,
            now,
            None,
        )
        .await?;
        tx.commit().await?;
        let media = media_with_blob(
            &blob,
            media_id,
            owner.to_owned(),
            *blake3,
            file_name.clone(),
            now,
            None,
        )?;
        Ok(Some(media))
    }

    async fn list_media(
        &self,
        owner: &UserId,
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
            .bind(owner.as_str().to_owned())
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

    async fn delete_media(&self, owner: &UserId, id: MediaId) -> Result<bool, MetadataError> {
        let mut tx = self.pool.begin().await?;
        let blake3: Option<String> = sqlx::query_scalar(
            "delete from media where media_id = $1 and owner_id = $2 returning blake3",
        )
        .bind(id.to_string())
        .bind(owner.as_str())
        .fetch_optional(&mut *tx)
        .await?;
        let Some(blake3) = blake3 else {
            tx.rollback().await?;
            return Ok(false);
        };
        sqlx::query(
            "update user_usage set media = media - 1, \
             media_bytes = media_bytes - (select size from blobs where blake3 = $2) \
             where owner_id = $1",
        )
        .bind(owner.as_str())
        .bind(&blake3)
        .execute(&mut *tx)
        .await?;
        super::chat_log::mark_if_unreferenced(&mut tx, &blake3).await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn usage_of(&self, owner: &UserId) -> Result<Usage, MetadataError> {
        // The media from the counter kept with them; the open sessions
        // (at most `quotas.open_uploads` of them) by their index.
        let row = sqlx::query(
            "select coalesce((select media from user_usage where owner_id = $1), 0) as media, \
             coalesce((select media_bytes from user_usage where owner_id = $1), 0) \
              as media_bytes, \
             (select count(*) from uploads where owner_id = $1 \
              and state in ('receiving', 'completing')) as open_uploads, \
             (select cast(coalesce(sum(size), 0) as bigint) from uploads where owner_id = $1 \
              and state in ('receiving', 'completing')) as open_upload_bytes",
        )
        .bind(owner.as_str())
        .fetch_one(&self.pool)
        .await?;
        Ok(Usage {
            media: get_u64(&row, "media")?,
            media_bytes: get_u64(&row, "media_bytes")?,
            open_uploads: get_u64(&row, "open_uploads")?,
            open_upload_bytes: get_u64(&row, "open_upload_bytes")?,
        })
    }

    async fn blob_totals(&self) -> Result<(u64, u64), MetadataError> {
        let row = sqlx::query(
            "select count(*) as blobs, cast(coalesce(sum(size), 0) as bigint) as bytes from blobs",
        )
        .fetch_one(&self.pool)
        .await?;
        Ok((get_u64(&row, "blobs")?, get_u64(&row, "bytes")?))
    }
}
