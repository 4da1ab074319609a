//! The job queue's SQL, next to the store it lives in.

use std::time::Duration;

use async_trait::async_trait;
use sqlx::any::AnyRow;
use sqlx::{Any, Row, Transaction};

use super::SqlMetadataStore;
use crate::ids::{Blake3, BlobKey, UploadId, UserId, millis as ms, now_ms};
use crate::metadata_store::jobs::{
    BATCH_PRIORITY, Job, JobQueue, JobState, Processed, ProcessingTarget, VariantRecord,
};
use crate::metadata_store::{Dialect, MetadataError};

/// The PostgreSQL channel workers listen on.
const CHANNEL: &str = "media_jobs";

/// Enqueues processing of a new content inside the transaction that creates it.
pub(super) async fn enqueue(
    store: &SqlMetadataStore,
    tx: &mut Transaction<'static, Any>,
    blake3: &Blake3,
    origin: Option<UploadId>,
    owner: Option<&UserId>,
    priority: i64,
    now: i64,
) -> Result<(), MetadataError> {
    // Its rank among its owner's queued jobs: workers take rank 0 of every
    // owner before anyone's rank 1 (within a priority).
    sqlx::query(
        "insert into jobs (job_id, kind, blake3, upload_id, priority, state, attempts, \
         max_attempts, run_after, created_at, updated_at, owner_id, fair_rank) \
         values ($1, 'process', $2, $3, $4, 'queued', 0, $5, $6, $6, $6, $7, \
         (select count(*) from jobs where owner_id = $7 and state = 'queued'))",
    )
    .bind(uuid::Uuid::now_v7().to_string())
    .bind(blake3.to_hex())
    .bind(origin.map(|u| u.to_string()))
    .bind(priority)
    .bind(i64::from(store.max_attempts))
    .bind(now)
    .bind(owner.map(UserId::as_str))
    .execute(&mut **tx)
    .await?;
    notify_workers(store, tx).await
}

/// Wakes the workers of every node once `tx` commits (PostgreSQL; on SQLite
/// the caller's node wakes its own, there being one).
pub(super) async fn notify_workers(
    store: &SqlMetadataStore,
    tx: &mut Transaction<'static, Any>,
) -> Result<(), MetadataError> {
    if store.dialect == Dialect::Postgres {
        // Delivered when the transaction commits, never before.
        sqlx::query("select pg_notify($1, '')")
            .bind(CHANNEL)
            .execute(&mut **tx)
            .await?;
    }
    Ok(())
}

fn job_from_row(row: &AnyRow) -> Result<Job, MetadataError> {
    let blake3: String = row.try_get("blake3")?;
    let upload_id: Option<String> = row.try_get("upload_id")?;
    let attempts: i64 = row.try_get("attempts")?;
    let max_attempts: i64 = row.try_get("max_attempts")?;
    let presets: Option<String> = row.try_get("presets")?;
    Ok(Job {
        job_id: row.try_get("job_id")?,
        kind: row.try_get("kind")?,
        blake3: Blake3::parse(&blake3).map_err(MetadataError::Query)?,
        upload_id: upload_id.as_deref().and_then(UploadId::parse),
        priority: row.try_get("priority")?,
        attempts: u32::try_from(attempts).unwrap_or(u32::MAX),
        max_attempts: u32::try_from(max_attempts).unwrap_or(u32::MAX),
        created_at: row.try_get("created_at")?,
        batch_id: row.try_get("batch_id")?,
        presets: presets.map(|p| p.split(',').map(str::to_owned).collect()),
    })
}

fn opt_u32(row: &AnyRow, column: &str) -> Result<Option<u32>, MetadataError> {
    let v: Option<i64> = row.try_get(column)?;
    Ok(v.and_then(|v| u32::try_from(v).ok()))
}

#[async_trait]
impl JobQueue for SqlMetadataStore {
    async fn reprocess(&self, blake3: &Blake3, priority: i64) -> Result<(), MetadataError> {
        let mut tx = self.pool.begin().await?;
        enqueue(self, &mut tx, blake3, None, None, priority, now_ms()).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn claim(
        &self,
        worker: &str,
        lease: Duration,
        batch: bool,
    ) -> Result<Option<Job>, MetadataError> {
        let now = now_ms();
        let below = if batch { i64::MAX } else { BATCH_PRIORITY };
        let row = sqlx::query(&format!(
            "update jobs set state = 'running', attempts = attempts + 1, lease_until = $1, \
             worker_id = $2, updated_at = $3 \
             where job_id = (select job_id from jobs \
                 where ((state = 'queued' and run_after <= $3) \
                    or (state = 'running' and lease_until < $3)) and priority < $4 \
                 order by priority, fair_rank, run_after limit 1{}) \
             returning job_id, kind, blake3, upload_id, priority, attempts, max_attempts, \
             created_at, batch_id, presets",
            self.lock_clause(" for update skip locked")
        ))
        .bind(now + ms(lease))
        .bind(worker)
        .bind(now)
        .bind(below)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(job_from_row).transpose()
    }

    async fn heartbeat(
        &self,
        job: &Job,
        worker: &str,
        lease: Duration,
    ) -> Result<bool, MetadataError> {
        let now = now_ms();
        let n = sqlx::query(
            "update jobs set lease_until = $1, updated_at = $2 \
             where job_id = $3 and worker_id = $4 and state = 'running'",
        )
        .bind(now + ms(lease))
        .bind(now)
        .bind(&job.job_id)
        .bind(worker)
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(n == 1)
    }

    async fn complete(
        &self,
        job: &Job,
        worker: &str,
        processed: &Processed,
    ) -> Result<Option<Vec<BlobKey>>, MetadataError> {
        let now = now_ms();
        let mut tx = self.pool.begin().await?;
        let held = sqlx::query(
            "update jobs set state = 'done', lease_until = null, updated_at = $1 \
             where job_id = $2 and worker_id = $3 and state = 'running'",
        )
        .bind(now)
        .bind(&job.job_id)
        .bind(worker)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if held != 1 {
            tx.rollback().await?;
            return Ok(None);
        }
        let mut replaced = Vec::new();
        for v in &processed.variants {
            // Older versions of the preset: the new one serves from this
            // transaction's commit, their objects go after it.
            let old = sqlx::query(
                "delete from variants where blake3 = $1 and preset = $2 and version <> $3 \
                 returning storage_key",
            )
            .bind(job.blake3.to_hex())
            .bind(&v.preset)
            .bind(i64::from(v.version))
            .fetch_all(&mut *tx)
            .await?;
            for row in &old {
                replaced.push(super::key_from_row(row, "storage_key")?);
            }
            sqlx::query(
                "insert into variants (blake3, preset, version, storage_key, content_type, size, \
                 width, height, duration_ms, created_at) \
                 values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) \
                 on conflict (blake3, preset, version) do update set storage_key = $4, \
                 content_type = $5, size = $6, width = $7, height = $8, duration_ms = $9",
            )
            .bind(job.blake3.to_hex())
            .bind(&v.preset)
            .bind(i64::from(v.version))
            .bind(v.storage_key.as_str())
            .bind(&v.content_type)
            .bind(i64::try_from(v.size).unwrap_or(i64::MAX))
            .bind(v.width.map(i64::from))
            .bind(v.height.map(i64::from))
            .bind(v.duration_ms.and_then(|d| i64::try_from(d).ok()))
            .bind(now)
            .execute(&mut *tx)
            .await?;
        }
        sqlx::query(
            "update blobs set processing = $1, processing_error = null, probe = $2 \
             where blake3 = $3 and blocked_at is null",
        )
        .bind(processed.state.as_str())
        .bind(processed.probe.as_ref().map(|p| p.to_string()))
        .bind(job.blake3.to_hex())
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(Some(replaced))
    }

    async fn fail(
        &self,
        job: &Job,
        worker: &str,
        error: &str,
        shown: &str,
        retry_at: Option<i64>,
    ) -> Result<(), MetadataError> {
        let now = now_ms();
        let mut tx = self.pool.begin().await?;
        let (state, run_after) = match retry_at {
            Some(at) => (JobState::Queued.as_str(), at),
            None => (JobState::Dead.as_str(), now),
        };
        let held = sqlx::query(
            "update jobs set state = $1, run_after = $2, last_error = $3, lease_until = null, \
             worker_id = null, updated_at = $4 \
             where job_id = $5 and worker_id = $6 and state = 'running'",
        )
        .bind(state)
        .bind(run_after)
        .bind(error)
        .bind(now)
        .bind(&job.job_id)
        .bind(worker)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        // A batch's job that fails leaves its content as it was: the
        // variants it had still serve; the batch counts the failure.
        if held == 1 && retry_at.is_none() && job.batch_id.is_none() {
            sqlx::query(
                "update blobs set processing = 'failed', processing_error = $1 where blake3 = $2",
            )
            .bind(shown)
            .bind(job.blake3.to_hex())
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn target(&self, blake3: &Blake3) -> Result<Option<ProcessingTarget>, MetadataError> {
        let row = sqlx::query(
            "select blake3, storage_key, content_type, size from blobs \
             where blake3 = $1 and blocked_at is null",
        )
        .bind(blake3.to_hex())
        .fetch_optional(&self.pool)
        .await?;
        row.map(|row| {
            let size: i64 = row.try_get("size")?;
            Ok(ProcessingTarget {
                blake3: *blake3,
                storage_key: super::key_from_row(&row, "storage_key")?,
                content_type: row.try_get("content_type")?,
                size: u64::try_from(size).unwrap_or(0),
            })
        })
        .transpose()
    }

    async fn variants(&self, blake3: &Blake3) -> Result<Vec<VariantRecord>, MetadataError> {
        sqlx::query(
            "select preset, version, storage_key, content_type, size, width, height, duration_ms \
             from variants where blake3 = $1 order by preset, version",
        )
        .bind(blake3.to_hex())
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(|row| {
            let size: i64 = row.try_get("size")?;
            let duration: Option<i64> = row.try_get("duration_ms")?;
            Ok(VariantRecord {
                preset: row.try_get("preset")?,
                version: opt_u32(row, "version")?.unwrap_or(0),
                storage_key: super::key_from_row(row, "storage_key")?,
                content_type: row.try_get("content_type")?,
                size: u64::try_from(size).unwrap_or(0),
                width: opt_u32(row, "width")?,
                height: opt_u32(row, "height")?,
                duration_ms: duration.and_then(|d| u64::try_from(d).ok()),
            })
        })
        .collect()
    }

    async fn counts(&self) -> Result<Vec<(JobState, u64)>, MetadataError> {
        sqlx::query("select state, count(*) as n from jobs group by state")
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(|row| {
                let n: i64 = row.try_get("n")?;
                let state: String = row.try_get("state")?;
                Ok((JobState::parse(&state)?, u64::try_from(n).unwrap_or(0)))
            })
            .collect()
    }

    async fn wait_for_work(&self, timeout: Duration) {
        if self.dialect == Dialect::Postgres && self.listening.set(()).is_ok() {
            tokio::spawn(listen(self.url.clone(), self.work.clone()));
        }
        let _ = tokio::time::timeout(timeout, self.work.notified()).await;
    }
}

/// Forwards PostgreSQL notifications on the jobs channel to waiting workers,
/// reconnecting whenever the connection drops.
async fn listen(url: std::sync::Arc<str>, work: std::sync::Arc<tokio::sync::Notify>) {
    loop {
        match sqlx::postgres::PgListener::connect(&url).await {
            Ok(mut listener) => {
                if let Err(e) = listener.listen(CHANNEL).await {
                    tracing::warn!(error = %e, "could not listen for jobs");
                } else {
                    while listener.recv().await.is_ok() {
                        work.notify_waiters();
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, "job listener cannot connect"),
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}
