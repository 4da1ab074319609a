//! The consistency check's statements.

use async_trait::async_trait;
use sqlx::Row;

use super::{SqlMetadataStore, get_u64};
use crate::ids::Blake3;
use crate::metadata_store::fsck::{Expected, ExpectedObject, FsckStore};
use crate::metadata_store::{Dialect, MetadataError};

#[async_trait]
impl FsckStore for SqlMetadataStore {
    async fn expected_objects(
        &self,
        after: &str,
        limit: u32,
    ) -> Result<Vec<ExpectedObject>, MetadataError> {
        // Byte order on both: PostgreSQL's "C" collation (the indexes'),
        // SQLite's own. Each branch reads at most `limit` keys in index
        // order; the page is the first `limit` of their union.
        let c = match self.dialect {
            Dialect::Postgres => " collate \"C\"",
            Dialect::Sqlite => "",
        };
        let branch = |select: &str, key: &str, from: &str| {
            format!(
                "select * from (select {key}{c} as k, {select} from {from} and {key}{c} > $1 \
                 order by {key}{c} limit $2) as b"
            )
        };
        let sql = [
            branch(
                "'original' as what, blake3 as id, cast(null as text) as preset, \
                 cast(case when missing_at is null then 0 else 1 end as bigint) as marked",
                "storage_key",
                "blobs where blocked_at is null",
            ),
            branch(
                "'variant' as what, v.blake3 as id, v.preset as preset, cast(0 as bigint) as marked",
                "v.storage_key",
                "variants v join blobs b on b.blake3 = v.blake3 where b.blocked_at is null",
            ),
            branch(
                "'session' as what, upload_id as id, cast(null as text) as preset, \
                 cast(0 as bigint) as marked",
                "storage_key",
                "uploads where state in ('receiving', 'completing')",
            ),
            // A blocked content's objects wait under quarantine/ (few rows).
            branch(
                "'original' as what, blake3 as id, cast(null as text) as preset, \
                 cast(case when missing_at is null then 0 else 1 end as bigint) as marked",
                "('quarantine/' || storage_key)",
                "blobs where blocked_at is not null",
            ),
            branch(
                "'variant' as what, v.blake3 as id, v.preset as preset, cast(0 as bigint) as marked",
                "('quarantine/' || v.storage_key)",
                "variants v join blobs b on b.blake3 = v.blake3 where b.blocked_at is not null",
            ),
        ]
        .join(" union all ")
            + " order by 1 limit $2";
        sqlx::query(&sql)
            .bind(after)
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(|row| {
                let id: String = row.try_get("id")?;
                let hash = || Blake3::parse(&id).map_err(MetadataError::Query);
                let what = match row.try_get::<String, _>("what")?.as_str() {
                    "original" => {
                        Expected::Original(hash()?, row.try_get::<i64, _>("marked")? == 1)
                    }
                    "variant" => Expected::Variant(hash()?, row.try_get("preset")?),
                    _ => Expected::Session,
                };
                Ok(ExpectedObject {
                    key: row.try_get("k")?,
                    what,
                })
            })
            .collect()
    }

    async fn owned_multiparts(&self, ids: &[String]) -> Result<Vec<String>, MetadataError> {
        let mut owned = Vec::new();
        for chunk in ids.chunks(500) {
            let params: Vec<String> = (1..=chunk.len()).map(|i| format!("${i}")).collect();
            let sql = format!(
                "select multipart_id from uploads where state in ('receiving', 'completing') \
                 and multipart_id in ({})",
                params.join(", ")
            );
            let mut query = sqlx::query_scalar::<_, String>(&sql);
            for id in chunk {
                query = query.bind(id.clone());
            }
            owned.extend(query.fetch_all(&self.pool).await?);
        }
        Ok(owned)
    }

    async fn stuck_completing(
        &self,
        before: i64,
        sample: u32,
    ) -> Result<(u64, Vec<String>), MetadataError> {
        let count = sqlx::query(
            "select count(*) as n from uploads where state = 'completing' and updated_at < $1",
        )
        .bind(before)
        .fetch_one(&self.pool)
        .await?;
        let ids = sqlx::query_scalar(
            "select upload_id from uploads where state = 'completing' and updated_at < $1 \
             order by upload_id limit $2",
        )
        .bind(before)
        .bind(i64::from(sample))
        .fetch_all(&self.pool)
        .await?;
        Ok((get_u64(&count, "n")?, ids))
    }

    async fn mark_original_missing(&self, blake3: &Blake3) -> Result<(), MetadataError> {
        sqlx::query(
            "update blobs set processing = 'failed', missing_at = $2, \
             processing_error = 'the original is missing from the store' where blake3 = $1",
        )
        .bind(blake3.to_hex())
        .bind(crate::ids::now_ms())
        .execute(&self.pool)
        .await?;
        Ok(())
    }
}
