//! tus's lock and tail.

use async_trait::async_trait;

use super::SqlMetadataStore;
use crate::ids::UploadId;
use crate::metadata_store::MetadataError;
use crate::metadata_store::tus::TusStore;

#[async_trait]
impl TusStore for SqlMetadataStore {
    async fn tus_create(&self, id: UploadId, concat: Option<&str>) -> Result<(), MetadataError> {
        sqlx::query(
            "insert into tus_uploads (upload_id, concat) values ($1, $2) on conflict do nothing",
        )
        .bind(id.to_string())
        .bind(concat)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn tus_concat(&self, id: UploadId) -> Result<Option<String>, MetadataError> {
        let found: Option<Option<String>> =
            sqlx::query_scalar("select concat from tus_uploads where upload_id = $1")
                .bind(id.to_string())
                .fetch_optional(&self.pool)
                .await?;
        Ok(found.flatten())
    }

    async fn tus_lock(
        &self,
        id: UploadId,
        token: &str,
        until: i64,
        now: i64,
    ) -> Result<bool, MetadataError> {
        let n = sqlx::query(
            "update tus_uploads set lock_token = $2, lock_until = $3 where upload_id = $1 \
             and (lock_until is null or lock_until < $4 or lock_token = $2)",
        )
        .bind(id.to_string())
        .bind(token)
        .bind(until)
        .bind(now)
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(n == 1)
    }

    async fn tus_unlock(&self, id: UploadId, token: &str) -> Result<(), MetadataError> {
        sqlx::query(
            "update tus_uploads set lock_token = null, lock_until = null \
             where upload_id = $1 and lock_token = $2",
        )
        .bind(id.to_string())
        .bind(token)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn tus_tail(&self, id: UploadId) -> Result<(Vec<u8>, u32), MetadataError> {
        let tail: Option<(Vec<u8>, i64)> =
            sqlx::query_as("select tail, tail_part from tus_uploads where upload_id = $1")
                .bind(id.to_string())
                .fetch_optional(&self.pool)
                .await?;
        Ok(tail
            .map(|(tail, part)| (tail, u32::try_from(part).unwrap_or(0)))
            .unwrap_or_default())
    }

    async fn tus_set_tail(
        &self,
        id: UploadId,
        token: &str,
        tail: &[u8],
        part: u32,
    ) -> Result<bool, MetadataError> {
        let n = sqlx::query(
            "update tus_uploads set tail = $3, tail_part = $4 \
             where upload_id = $1 and lock_token = $2",
        )
        .bind(id.to_string())
        .bind(token)
        .bind(tail.to_vec())
        .bind(i64::from(part))
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(n == 1)
    }
}
