//! The upload sessions' statements.

use async_trait::async_trait;

use super::content::reference_content;
use super::{
    CHUNK_COLUMNS, SqlMetadataStore, UPLOAD_COLUMNS, chunk_from_row, to_i64, upload_from_row,
};
use crate::ids::{MediaId, UploadId, UserId, now_ms};
use crate::metadata_store::{
    ChunkRecord, Created, MetadataError, NewContent, RecordOutcome, UploadRecord, UploadState,
    UploadStore,
};

#[async_trait]
impl UploadStore for SqlMetadataStore {
    async fn create_upload(&self, u: &UploadRecord) -> Result<(), MetadataError> {
        sqlx::query(
            "insert into uploads (upload_id, owner_id, file_name, size, declared_type, \
             declared_blake3, chunk_size, total_chunks, state, storage_key, multipart_id, \
             media_id, created_at, updated_at, expires_at) \
             values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)",
        )
        .bind(u.upload_id.to_string())
        .bind(u.owner.as_str())
        .bind(u.file_name.as_str())
        .bind(to_i64(u.size)?)
        .bind(u.declared_type.clone())
        .bind(u.declared_blake3.map(|b| b.to_hex()))
        .bind(to_i64(u.chunk_size)?)
        .bind(i64::from(u.total_chunks))
        .bind(u.state.as_str())
        .bind(u.storage_key.as_str())
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
            "update uploads set state = $1, media_id = $2, updated_at = $3, deduplicated = $5 \
             where upload_id = $4",
        )
        .bind(UploadState::Completed.as_str())
        .bind(media_id.to_string())
        .bind(now_ms())
        .bind(id.to_string())
        .bind(i64::from(created.owned_before))
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

    async fn open_uploads_of(
        &self,
        owner: &UserId,
        limit: u32,
    ) -> Result<Vec<UploadId>, MetadataError> {
        let ids: Vec<String> = sqlx::query_scalar(
            "select upload_id from uploads where owner_id = $1 \
             and state in ('receiving', 'completing') order by created_at desc limit $2",
        )
        .bind(owner.as_str())
        .bind(i64::from(limit))
        .fetch_all(&self.reads)
        .await?;
        Ok(ids.iter().filter_map(|id| UploadId::parse(id)).collect())
    }

    async fn expired_uploads(
        &self,
        now: i64,
        limit: u32,
    ) -> Result<Vec<UploadRecord>, MetadataError> {
        self.oldest_in("receiving", "expires_at", now, limit).await
    }

    async fn abandoned_completions(
        &self,
        stale_before: i64,
        limit: u32,
    ) -> Result<Vec<UploadRecord>, MetadataError> {
        self.oldest_in("completing", "updated_at", stale_before, limit)
            .await
    }
}

impl SqlMetadataStore {
    /// Sessions in `state` whose `clock` column is before `before`, oldest
    /// first, at most `limit` (each pair has its partial index).
    async fn oldest_in(
        &self,
        state: &'static str,
        clock: &'static str,
        before: i64,
        limit: u32,
    ) -> Result<Vec<UploadRecord>, MetadataError> {
        sqlx::query(&format!(
            "select {UPLOAD_COLUMNS} from uploads where state = '{state}' and {clock} < $1 \
             order by {clock} limit $2"
        ))
        .bind(before)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(upload_from_row)
        .collect()
    }
}
