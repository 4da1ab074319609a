//! The garbage collector's statements.

use async_trait::async_trait;
use sqlx::Row;

use super::{SqlMetadataStore, get_hash, get_u64};
use crate::ids::{Blake3, BlobKey};
use crate::metadata_store::gc::GcCandidate;
use crate::metadata_store::{BlobRecord, GcStore, MetadataError};

#[async_trait]
impl GcStore for SqlMetadataStore {
    async fn gc_candidates(
        &self,
        cutoff: i64,
        after: Option<(i64, Blake3)>,
        limit: u32,
    ) -> Result<Vec<GcCandidate>, MetadataError> {
        let (since, blake3) = after.map_or((i64::MIN, String::new()), |(t, b)| (t, b.to_hex()));
        sqlx::query(
            "select blake3, size, storage_key, unreferenced_since from blobs \
             where unreferenced_since is not null and unreferenced_since < $1 \
             and (unreferenced_since, blake3) > ($2, $3) and blocked_at is null \
             order by unreferenced_since, blake3 limit $4",
        )
        .bind(cutoff)
        .bind(since)
        .bind(blake3)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(|row| {
            Ok(GcCandidate {
                blob: BlobRecord {
                    blake3: Blake3(get_hash(row, "blake3")?),
                    size: get_u64(row, "size")?,
                    storage_key: super::key_from_row(row, "storage_key")?,
                },
                unreferenced_since: row.try_get("unreferenced_since")?,
            })
        })
        .collect()
    }

    async fn gc_delete_blob(
        &self,
        blake3: &Blake3,
        cutoff: i64,
    ) -> Result<Option<Vec<BlobKey>>, MetadataError> {
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
             and blocked_at is null \
             and not exists (select 1 from media where media.blake3 = blobs.blake3) \
             and not exists (select 1 from attachments a where a.blake3 = blobs.blake3)",
        )
        .bind(blake3.to_hex())
        .bind(cutoff)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if deleted != 1 {
            // Referenced after all (a mark a lost race left): clear the mark,
            // so it stops coming back as a candidate.
            sqlx::query(
                "update blobs set unreferenced_since = null where blake3 = $1 \
                 and (exists (select 1 from media where media.blake3 = blobs.blake3) \
                 or exists (select 1 from attachments a where a.blake3 = blobs.blake3))",
            )
            .bind(blake3.to_hex())
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
            return Ok(None);
        }
        tx.commit().await?;
        let keys = variant_keys
            .iter()
            .map(|k| BlobKey::parse(k).map_err(MetadataError::Query))
            .collect::<Result<_, _>>()?;
        Ok(Some(keys))
    }
}
