//! The operators' statements.

use async_trait::async_trait;
use sqlx::Row;

use super::{SqlMetadataStore, get_u64};
use crate::ids::{Blake3, BlobKey, ConversationId, UserId, now_ms};
use crate::metadata_store::MetadataError;
use crate::metadata_store::admin::{
    AdminStore, AuditEntry, Block, ContentReport, ErasedRows, ErasedSession, JobRow,
    SentAttachments, Stats, StoredContent,
};

const JOB_COLUMNS: &str =
    "job_id, kind, blake3, state, priority, attempts, last_error, created_at, updated_at";

#[async_trait]
impl AdminStore for SqlMetadataStore {
    async fn record_audit(&self, entry: &AuditEntry) -> Result<(), MetadataError> {
        sqlx::query(
            "insert into admin_audit (audit_id, at, admin_id, action, request, status) \
             values ($1, $2, $3, $4, $5, $6)",
        )
        .bind(&entry.audit_id)
        .bind(entry.at)
        .bind(&entry.admin)
        .bind(&entry.action)
        .bind(entry.request.as_deref())
        .bind(i64::from(entry.status))
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn audit_log(
        &self,
        before: Option<&str>,
        limit: u32,
    ) -> Result<Vec<AuditEntry>, MetadataError> {
        let sql = format!(
            "select audit_id, at, admin_id, action, request, status from admin_audit{} \
             order by audit_id desc limit $1",
            if before.is_some() {
                " where audit_id < $2"
            } else {
                ""
            }
        );
        let mut query = sqlx::query(&sql).bind(i64::from(limit));
        if let Some(before) = before {
            query = query.bind(before.to_owned());
        }
        query
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(|row| {
                Ok(AuditEntry {
                    audit_id: row.try_get("audit_id")?,
                    at: row.try_get("at")?,
                    admin: row.try_get("admin_id")?,
                    action: row.try_get("action")?,
                    request: row.try_get("request")?,
                    status: u16::try_from(row.try_get::<i64, _>("status")?).unwrap_or(0),
                })
            })
            .collect()
    }

    async fn stats(&self) -> Result<Stats, MetadataError> {
        let totals = sqlx::query(
            "select \
             (select count(*) from (select owner_id from media union \
              select owner_id from uploads) u) as users, \
             (select count(*) from media) as media, \
             (select count(*) from attachments) as attachments, \
             (select count(*) from blobs) as contents, \
             (select cast(coalesce(sum(b.size), 0) as bigint) from media m \
              join blobs b on b.blake3 = m.blake3) as media_bytes, \
             (select cast(coalesce(sum(b.size), 0) as bigint) from attachments a \
              join blobs b on b.blake3 = a.blake3) as attachment_bytes, \
             (select cast(coalesce(sum(size), 0) as bigint) from blobs) as stored_bytes, \
             (select cast(coalesce(sum(size), 0) as bigint) from variants) as variant_bytes",
        )
        .fetch_one(&self.pool)
        .await?;
        let by_type = sqlx::query(
            "select content_type, count(*) as n, cast(coalesce(sum(size), 0) as bigint) as bytes \
             from blobs group by content_type order by bytes desc",
        )
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(|r| {
            Ok((
                r.try_get("content_type")?,
                get_u64(r, "n")?,
                get_u64(r, "bytes")?,
            ))
        })
        .collect::<Result<_, MetadataError>>()?;
        let uploads =
            sqlx::query("select state, count(*) as n from uploads group by state order by state")
                .fetch_all(&self.pool)
                .await?
                .iter()
                .map(|r| Ok((r.try_get("state")?, get_u64(r, "n")?)))
                .collect::<Result<_, MetadataError>>()?;
        let jobs = sqlx::query(
            "select state, kind, count(*) as n from jobs group by state, kind order by state, kind",
        )
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(|r| Ok((r.try_get("state")?, r.try_get("kind")?, get_u64(r, "n")?)))
        .collect::<Result<_, MetadataError>>()?;
        Ok(Stats {
            users: get_u64(&totals, "users")?,
            media: get_u64(&totals, "media")?,
            attachments: get_u64(&totals, "attachments")?,
            contents: get_u64(&totals, "contents")?,
            logical_bytes: get_u64(&totals, "media_bytes")? + get_u64(&totals, "attachment_bytes")?,
            stored_bytes: get_u64(&totals, "stored_bytes")?,
            variant_bytes: get_u64(&totals, "variant_bytes")?,
            by_content_type: by_type,
            uploads_by_state: uploads,
            jobs,
        })
    }

    async fn content(&self, blake3: &Blake3) -> Result<Option<ContentReport>, MetadataError> {
        let hex = blake3.to_hex();
        let Some(blob) = sqlx::query(
            "select size, content_type, processing, created_at, unreferenced_since from blobs \
             where blake3 = $1",
        )
        .bind(&hex)
        .fetch_optional(&self.pool)
        .await?
        else {
            return Ok(None);
        };
        let counted = |sql: &'static str| {
            let hex = hex.clone();
            async move {
                sqlx::query(sql)
                    .bind(hex)
                    .fetch_all(&self.pool)
                    .await?
                    .iter()
                    .map(|r| Ok((r.try_get("who")?, get_u64(r, "n")?)))
                    .collect::<Result<Vec<(String, u64)>, MetadataError>>()
            }
        };
        Ok(Some(ContentReport {
            size: get_u64(&blob, "size")?,
            content_type: blob.try_get("content_type")?,
            processing: blob.try_get("processing")?,
            created_at: blob.try_get("created_at")?,
            unreferenced_since: blob.try_get("unreferenced_since")?,
            media_by_owner: counted(
                "select owner_id as who, count(*) as n from media where blake3 = $1 \
                 group by owner_id order by owner_id",
            )
            .await?,
            attachments_by_conversation: counted(
                "select conversation_id as who, count(*) as n from attachments \
                 where blake3 = $1 group by conversation_id order by conversation_id",
            )
            .await?,
        }))
    }

    async fn jobs_in_state(
        &self,
        state: &str,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<JobRow>, MetadataError> {
        sqlx::query(&format!(
            "select {JOB_COLUMNS} from jobs where state = $1 and job_id > $2 \
             order by job_id limit $3"
        ))
        .bind(state)
        .bind(after.unwrap_or(""))
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(|r| {
            Ok(JobRow {
                job_id: r.try_get("job_id")?,
                kind: r.try_get("kind")?,
                blake3: r.try_get("blake3")?,
                state: r.try_get("state")?,
                priority: r.try_get("priority")?,
                attempts: get_u64(r, "attempts")?,
                last_error: r.try_get("last_error")?,
                created_at: r.try_get("created_at")?,
                updated_at: r.try_get("updated_at")?,
            })
        })
        .collect()
    }

    async fn retry_job(&self, job_id: &str) -> Result<bool, MetadataError> {
        let now = now_ms();
        let mut tx = self.pool.begin().await?;
        let blake3: Option<String> = sqlx::query_scalar(
            "update jobs set state = 'queued', attempts = 0, run_after = $1, lease_until = null, \
             worker_id = null, updated_at = $1 where job_id = $2 and state = 'dead' \
             returning blake3",
        )
        .bind(now)
        .bind(job_id)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(blake3) = blake3 else {
            tx.rollback().await?;
            return Ok(false);
        };
        // Its content shows `processing` again until the job ends.
        sqlx::query(
            "update blobs set processing = 'pending', processing_error = null where blake3 = $1",
        )
        .bind(blake3)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        self.work.notify_waiters();
        Ok(true)
    }

    async fn block(
        &self,
        blake3: &Blake3,
        reason: &str,
        by: &str,
        now: i64,
    ) -> Result<bool, MetadataError> {
        let mut tx = self.pool.begin().await?;
        let added = sqlx::query(
            "insert into blocked_contents (blake3, reason, blocked_by, blocked_at) \
             values ($1, $2, $3, $4) on conflict (blake3) do nothing",
        )
        .bind(blake3.to_hex())
        .bind(reason)
        .bind(by)
        .bind(now)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        // On the content's row too: every read of its media carries it.
        sqlx::query("update blobs set blocked_at = $1 where blake3 = $2 and blocked_at is null")
            .bind(now)
            .bind(blake3.to_hex())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(added == 1)
    }

    async fn unblock(&self, blake3: &Blake3) -> Result<bool, MetadataError> {
        let mut tx = self.pool.begin().await?;
        let removed = sqlx::query("delete from blocked_contents where blake3 = $1")
            .bind(blake3.to_hex())
            .execute(&mut *tx)
            .await?
            .rows_affected();
        let pending: Option<String> = sqlx::query_scalar(
            "update blobs set blocked_at = null where blake3 = $1 returning processing",
        )
        .bind(blake3.to_hex())
        .fetch_optional(&mut *tx)
        .await?;
        let has_job: Option<i64> = sqlx::query_scalar(
            "select 1 from jobs where blake3 = $1 and state in ('queued', 'running', 'paused') \
             limit 1",
        )
        .bind(blake3.to_hex())
        .fetch_optional(&mut *tx)
        .await?;
        if pending.as_deref() == Some("pending") && has_job.is_none() {
            // Its job found it blocked and left it: it is due again.
            super::jobs::enqueue(
                self,
                &mut tx,
                blake3,
                None,
                None,
                crate::metadata_store::jobs::LIVE_PRIORITY,
                now_ms(),
            )
            .await?;
        }
        tx.commit().await?;
        self.work.notify_waiters();
        Ok(removed == 1)
    }

    async fn block_of(&self, blake3: &Blake3) -> Result<Option<Block>, MetadataError> {
        sqlx::query("select reason, blocked_by, blocked_at from blocked_contents where blake3 = $1")
            .bind(blake3.to_hex())
            .fetch_optional(&self.pool)
            .await?
            .map(|r| {
                Ok(Block {
                    reason: r.try_get("reason")?,
                    blocked_by: r.try_get("blocked_by")?,
                    blocked_at: r.try_get("blocked_at")?,
                })
            })
            .transpose()
    }

    async fn object_keys(&self, blake3: &Blake3) -> Result<Vec<BlobKey>, MetadataError> {
        sqlx::query(
            "select storage_key, 0 as n from blobs where blake3 = $1 \
             union all select storage_key, 1 as n from variants where blake3 = $1 \
             order by n, storage_key",
        )
        .bind(blake3.to_hex())
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(|r| super::key_from_row(r, "storage_key"))
        .collect()
    }

    async fn sent_attachments(&self, user: &UserId) -> Result<Vec<SentAttachments>, MetadataError> {
        let rows = sqlx::query(
            "select a.conversation_id, a.message_seq, a.blake3 from attachments a \
             join messages m on m.conversation_id = a.conversation_id and m.seq = a.message_seq \
             where m.sender = $1 and m.deleted_at is null \
             order by a.conversation_id, a.message_seq, a.position",
        )
        .bind(user.as_str())
        .fetch_all(&self.pool)
        .await?;
        let mut sent: Vec<SentAttachments> = Vec::new();
        for row in &rows {
            let id: String = row.try_get("conversation_id")?;
            let conversation_id = ConversationId::parse(&id)
                .ok_or_else(|| MetadataError::Query(format!("bad conversation id {id:?}")))?;
            let seq = get_u64(row, "message_seq")?;
            let blake3: String = row.try_get("blake3")?;
            let blake3 = Blake3::parse(&blake3).map_err(MetadataError::Query)?;
            match sent.last_mut() {
                Some(last) if last.conversation_id == conversation_id && last.seq == seq => {
                    last.contents.push(blake3);
                }
                _ => sent.push(SentAttachments {
                    conversation_id,
                    seq,
                    contents: vec![blake3],
                }),
            }
        }
        Ok(sent)
    }

    async fn erase_user_rows(&self, user: &UserId) -> Result<ErasedRows, MetadataError> {
        let mut tx = self.pool.begin().await?;
        let media: Vec<String> =
            sqlx::query_scalar("delete from media where owner_id = $1 returning blake3")
                .bind(user.as_str())
                .fetch_all(&mut *tx)
                .await?;
        let mut contents: Vec<Blake3> = media
            .iter()
            .map(|b| Blake3::parse(b).map_err(MetadataError::Query))
            .collect::<Result<_, _>>()?;
        contents.sort_by_key(|b| b.0);
        contents.dedup();
        for blake3 in &contents {
            super::chat_log::mark_if_unreferenced(&mut tx, &blake3.to_hex()).await?;
        }
        sqlx::query(
            "delete from upload_chunks where upload_id in (select upload_id from uploads \
             where owner_id = $1)",
        )
        .bind(user.as_str())
        .execute(&mut *tx)
        .await?;
        let sessions = sqlx::query(
            "delete from uploads where owner_id = $1 \
             returning upload_id, storage_key, multipart_id, state",
        )
        .bind(user.as_str())
        .fetch_all(&mut *tx)
        .await?
        .iter()
        .map(|r| {
            let state: String = r.try_get("state")?;
            Ok(ErasedSession {
                upload_id: r.try_get("upload_id")?,
                storage_key: super::key_from_row(r, "storage_key")?,
                multipart_id: r.try_get("multipart_id")?,
                open: state == "receiving" || state == "completing",
            })
        })
        .collect::<Result<Vec<_>, MetadataError>>()?;
        sqlx::query("delete from user_usage where owner_id = $1")
            .bind(user.as_str())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(ErasedRows {
            media: media.len() as u64,
            contents,
            sessions,
        })
    }

    async fn stored_content(
        &self,
        blake3: &Blake3,
    ) -> Result<Option<StoredContent>, MetadataError> {
        sqlx::query(
            "select storage_key, blocked_at, cast(size + coalesce((select sum(v.size) \
             from variants v where v.blake3 = blobs.blake3), 0) as bigint) as bytes \
             from blobs where blake3 = $1",
        )
        .bind(blake3.to_hex())
        .fetch_optional(&self.pool)
        .await?
        .map(|r| {
            Ok(StoredContent {
                storage_key: super::key_from_row(&r, "storage_key")?,
                bytes: get_u64(&r, "bytes")?,
                blocked: r.try_get::<Option<i64>, _>("blocked_at")?.is_some(),
            })
        })
        .transpose()
    }
}
