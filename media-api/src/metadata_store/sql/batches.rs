//! The batches' statements: a selector becomes one `where` over `blobs`,
//! and a reprocessing batch one `insert … select` of its jobs.

use async_trait::async_trait;
use sqlx::any::{AnyArguments, AnyRow};
use sqlx::query::Query;
use sqlx::{Any, Row};

use super::{SqlMetadataStore, get_u64};
use crate::ids::now_ms;
use crate::metadata_store::MetadataError;
use crate::metadata_store::batches::{
    Batch, BatchAction, BatchStore, ContentFilter, Matched, NewBatch, SampleContent,
};
use crate::metadata_store::jobs::BATCH_PRIORITY;

/// A value bound to a numbered parameter.
#[derive(Debug, Clone)]
enum Arg {
    Text(String),
    Int(i64),
}

/// A `where` clause being built, with its arguments numbered from `first`.
#[derive(Debug)]
struct Clause {
    sql: String,
    args: Vec<Arg>,
    first: usize,
}

impl Clause {
    fn new(first: usize) -> Self {
        Self {
            sql: String::new(),
            args: Vec::new(),
            first,
        }
    }

    /// `$n` for a new argument.
    fn arg(&mut self, arg: Arg) -> String {
        self.args.push(arg);
        format!("${}", self.first + self.args.len() - 1)
    }

    /// `($a, $b, …)` for a list of texts.
    fn list<'a>(&mut self, items: impl IntoIterator<Item = &'a String>) -> String {
        let params: Vec<String> = items
            .into_iter()
            .map(|t| self.arg(Arg::Text(t.clone())))
            .collect();
        format!("({})", params.join(", "))
    }

    fn and(&mut self, condition: &str) {
        self.sql.push_str(" and ");
        self.sql.push_str(condition);
    }

    fn bind<'q>(
        &self,
        mut query: Query<'q, Any, AnyArguments<'q>>,
    ) -> Query<'q, Any, AnyArguments<'q>> {
        for arg in &self.args {
            query = match arg {
                Arg::Text(t) => query.bind(t.clone()),
                Arg::Int(n) => query.bind(*n),
            };
        }
        query
    }
}

/// The contents `filter` matches, as a condition on `blobs b`: stored and
/// referenced, of a processed type, with no job of theirs unfinished.
fn content_clause(filter: &ContentFilter, first: usize) -> Clause {
    let mut c = Clause::new(first);
    c.sql.push_str("b.unreferenced_since is null");
    let types = c.list(&filter.types);
    c.and(&format!("b.content_type in {types}"));
    c.and(
        "not exists (select 1 from jobs j where j.blake3 = b.blake3 \
         and j.state in ('queued', 'running', 'paused'))",
    );
    c.and("b.blocked_at is null");
    if let Some(after) = filter.created_after {
        let p = c.arg(Arg::Int(after));
        c.and(&format!("b.created_at >= {p}"));
    }
    if let Some(before) = filter.created_before {
        let p = c.arg(Arg::Int(before));
        c.and(&format!("b.created_at < {p}"));
    }
    if let Some(owner) = &filter.owner {
        let p = c.arg(Arg::Text(owner.clone()));
        c.and(&format!(
            "exists (select 1 from media m where m.blake3 = b.blake3 and m.owner_id = {p})"
        ));
    }
    if !filter.blake3.is_empty() {
        let list = c.list(&filter.blake3);
        c.and(&format!("b.blake3 in {list}"));
    }
    if let Some(status) = &filter.status {
        let p = c.arg(Arg::Text(status.clone()));
        c.and(&format!("b.processing = {p}"));
    }
    if !filter.stale.is_empty() {
        let mut stale = Vec::with_capacity(filter.stale.len());
        for s in &filter.stale {
            let types = c.list(&s.types);
            let name = c.arg(Arg::Text(s.preset.clone()));
            let version = c.arg(Arg::Int(i64::from(s.version)));
            stale.push(format!(
                "(b.content_type in {types} and v.preset = {name} and v.version <> {version})"
            ));
        }
        c.and(&format!(
            "exists (select 1 from variants v where v.blake3 = b.blake3 and ({}))",
            stale.join(" or ")
        ));
    }
    c
}

const BATCH_COLUMNS: &str = "batch_id, kind, state, selector, interval_ms, matched, enqueued, \
    bytes, created_by, started_at, finished_at, report";

fn batch_from_row(row: &AnyRow) -> Result<Batch, MetadataError> {
    Ok(Batch {
        batch_id: row.try_get("batch_id")?,
        kind: row.try_get("kind")?,
        state: row.try_get("state")?,
        selector: row.try_get("selector")?,
        interval_ms: row.try_get("interval_ms")?,
        matched: get_u64(row, "matched")?,
        bytes: get_u64(row, "bytes")?,
        enqueued: get_u64(row, "enqueued")?,
        done: 0,
        failed: 0,
        cancelled: 0,
        created_by: row.try_get("created_by")?,
        started_at: row.try_get("started_at")?,
        finished_at: row.try_get("finished_at")?,
        report: row.try_get("report")?,
    })
}

impl SqlMetadataStore {
    /// Fills in a batch's job counts, and ends a running reprocessing batch
    /// whose jobs have all finished.
    async fn with_progress(&self, mut batch: Batch) -> Result<Batch, MetadataError> {
        if batch.kind != "reprocess" {
            return Ok(batch);
        }
        let rows = sqlx::query(
            "select state, count(*) as n, max(updated_at) as last from jobs \
             where batch_id = $1 group by state",
        )
        .bind(&batch.batch_id)
        .fetch_all(&self.reads)
        .await?;
        let mut open = 0;
        let mut last = batch.started_at;
        for row in &rows {
            let state: String = row.try_get("state")?;
            let n = get_u64(row, "n")?;
            let at: Option<i64> = row.try_get("last")?;
            last = last.max(at.unwrap_or(0));
            match state.as_str() {
                "done" => batch.done = n,
                "dead" => batch.failed = n,
                _ => open += n,
            }
        }
        batch.cancelled = batch
            .enqueued
            .saturating_sub(batch.done + batch.failed + open);
        if batch.state == "running" && open == 0 {
            sqlx::query(
                "update batches set state = 'done', finished_at = $1 \
                 where batch_id = $2 and state = 'running'",
            )
            .bind(last)
            .bind(&batch.batch_id)
            .execute(&self.pool)
            .await?;
            batch.state = "done".into();
            batch.finished_at = Some(last);
        }
        Ok(batch)
    }

    async fn batch_row(&self, batch_id: &str) -> Result<Option<Batch>, MetadataError> {
        sqlx::query(&format!(
            "select {BATCH_COLUMNS} from batches where batch_id = $1"
        ))
        .bind(batch_id)
        .fetch_optional(&self.pool)
        .await?
        .as_ref()
        .map(batch_from_row)
        .transpose()
    }
}

#[async_trait]
impl BatchStore for SqlMetadataStore {
    async fn match_contents(
        &self,
        filter: &ContentFilter,
        sample: u32,
    ) -> Result<Matched, MetadataError> {
        let clause = content_clause(filter, 1);
        let sql = format!(
            "select count(*) as n, cast(coalesce(sum(b.size), 0) as bigint) as bytes \
             from blobs b where {}",
            clause.sql
        );
        let row = clause
            .bind(sqlx::query(&sql))
            .fetch_one(&self.reads)
            .await?;
        let clause = content_clause(filter, 2);
        let sql = format!(
            "select b.blake3, b.content_type, b.size, b.processing from blobs b where {} \
             order by b.blake3 limit $1",
            clause.sql
        );
        let sample = clause
            .bind(sqlx::query(&sql).bind(i64::from(sample)))
            .fetch_all(&self.reads)
            .await?
            .iter()
            .map(|row| {
                Ok(SampleContent {
                    blake3: row.try_get("blake3")?,
                    content_type: row.try_get("content_type")?,
                    size: get_u64(row, "size")?,
                    processing: row.try_get("processing")?,
                })
            })
            .collect::<Result<_, MetadataError>>()?;
        Ok(Matched {
            matched: get_u64(&row, "n")?,
            bytes: get_u64(&row, "bytes")?,
            sample,
        })
    }

    async fn start_reprocess(
        &self,
        batch: &NewBatch,
        filter: &ContentFilter,
    ) -> Result<Batch, MetadataError> {
        let mut tx = self.pool.begin().await?;
        // $1 batch id, $2 priority, $3 max attempts, $4 now, $5 interval,
        // $6 presets; the selector's arguments follow.
        let clause = content_clause(filter, 7);
        let sql = format!(
            "insert into jobs (job_id, kind, blake3, upload_id, priority, state, attempts, \
             max_attempts, run_after, created_at, updated_at, owner_id, fair_rank, batch_id, \
             presets) \
             select $1 || '-' || cast(n as text), 'process', blake3, null, $2, 'queued', 0, $3, \
             $4 + (n - 1) * $5, $4, $4, null, 0, $1, $6 \
             from (select b.blake3, row_number() over (order by b.blake3) as n \
                   from blobs b where {}) matched",
            clause.sql
        );
        let enqueued = clause
            .bind(
                sqlx::query(&sql)
                    .bind(&batch.batch_id)
                    .bind(BATCH_PRIORITY)
                    .bind(i64::from(self.max_attempts))
                    .bind(batch.now)
                    .bind(batch.interval_ms)
                    .bind(batch.presets.as_ref().map(|p| p.join(","))),
            )
            .execute(&mut *tx)
            .await?
            .rows_affected();
        let bytes: i64 = sqlx::query_scalar(
            "select cast(coalesce(sum(b.size), 0) as bigint) from jobs j \
             join blobs b on b.blake3 = j.blake3 where j.batch_id = $1",
        )
        .bind(&batch.batch_id)
        .fetch_one(&mut *tx)
        .await?;
        let enqueued = i64::try_from(enqueued).unwrap_or(i64::MAX);
        sqlx::query(
            "insert into batches (batch_id, kind, state, selector, interval_ms, matched, \
             enqueued, bytes, created_by, started_at) \
             values ($1, 'reprocess', 'running', $2, $3, $4, $4, $5, $6, $7)",
        )
        .bind(&batch.batch_id)
        .bind(&batch.selector)
        .bind(batch.interval_ms)
        .bind(enqueued)
        .bind(bytes)
        .bind(&batch.created_by)
        .bind(batch.now)
        .execute(&mut *tx)
        .await?;
        super::jobs::notify_workers(self, &mut tx).await?;
        tx.commit().await?;
        self.work.notify_waiters();
        let batch = self
            .batch_row(&batch.batch_id)
            .await?
            .ok_or_else(|| MetadataError::Query("a batch vanished as it was started".into()))?;
        self.with_progress(batch).await
    }

    async fn start_batch(&self, batch: &NewBatch, kind: &str) -> Result<Batch, MetadataError> {
        sqlx::query(
            "insert into batches (batch_id, kind, state, selector, interval_ms, matched, \
             enqueued, bytes, created_by, started_at) \
             values ($1, $2, 'running', $3, 0, 0, 0, 0, $4, $5)",
        )
        .bind(&batch.batch_id)
        .bind(kind)
        .bind(&batch.selector)
        .bind(&batch.created_by)
        .bind(batch.now)
        .execute(&self.pool)
        .await?;
        self.batch_row(&batch.batch_id)
            .await?
            .ok_or_else(|| MetadataError::Query("a batch vanished as it was started".into()))
    }

    async fn report_batch(
        &self,
        batch_id: &str,
        report: &str,
        finished: bool,
    ) -> Result<(), MetadataError> {
        let sql = if finished {
            "update batches set report = $1, state = case when state = 'cancelled' \
             then state else 'done' end, finished_at = coalesce(finished_at, $2) \
             where batch_id = $3"
        } else {
            "update batches set report = $1 where batch_id = $3 and $2 >= 0"
        };
        sqlx::query(sql)
            .bind(report)
            .bind(now_ms())
            .bind(batch_id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn batch(&self, batch_id: &str) -> Result<Option<Batch>, MetadataError> {
        match self.batch_row(batch_id).await? {
            Some(batch) => Ok(Some(self.with_progress(batch).await?)),
            None => Ok(None),
        }
    }

    async fn batches(&self, before: Option<&str>, limit: u32) -> Result<Vec<Batch>, MetadataError> {
        let sql = format!(
            "select {BATCH_COLUMNS} from batches{} order by batch_id desc limit $1",
            if before.is_some() {
                " where batch_id < $2"
            } else {
                ""
            }
        );
        let mut query = sqlx::query(&sql).bind(i64::from(limit));
        if let Some(before) = before {
            query = query.bind(before.to_owned());
        }
        let rows = query.fetch_all(&self.pool).await?;
        let mut batches = Vec::with_capacity(rows.len());
        for row in &rows {
            batches.push(self.with_progress(batch_from_row(row)?).await?);
        }
        Ok(batches)
    }

    async fn act_on_batch(
        &self,
        batch_id: &str,
        action: BatchAction,
    ) -> Result<Option<Batch>, MetadataError> {
        let now = now_ms();
        let mut tx = self.pool.begin().await?;
        let row: Option<(String, String, Option<i64>)> = sqlx::query_as(&format!(
            "select state, kind, paused_at from batches where batch_id = $1{}",
            self.lock_clause(" for update")
        ))
        .bind(batch_id)
        .fetch_optional(&mut *tx)
        .await?;
        let Some((state, kind, paused_at)) = row else {
            return Ok(None);
        };
        let reprocess = kind == "reprocess";
        match (action, state.as_str()) {
            (BatchAction::Pause, "running") if reprocess => {
                sqlx::query(
                    "update batches set state = 'paused', paused_at = $1 where batch_id = $2",
                )
                .bind(now)
                .bind(batch_id)
                .execute(&mut *tx)
                .await?;
                sqlx::query(
                    "update jobs set state = 'paused', updated_at = $1 \
                     where batch_id = $2 and state = 'queued'",
                )
                .bind(now)
                .bind(batch_id)
                .execute(&mut *tx)
                .await?;
            }
            (BatchAction::Resume, "paused") => {
                sqlx::query(
                    "update batches set state = 'running', paused_at = null where batch_id = $1",
                )
                .bind(batch_id)
                .execute(&mut *tx)
                .await?;
                // The pause shifts what was left by its length: the pacing holds.
                sqlx::query(
                    "update jobs set state = 'queued', run_after = run_after + $1, \
                     updated_at = $2 where batch_id = $3 and state = 'paused'",
                )
                .bind((now - paused_at.unwrap_or(now)).max(0))
                .bind(now)
                .bind(batch_id)
                .execute(&mut *tx)
                .await?;
                super::jobs::notify_workers(self, &mut tx).await?;
            }
            (BatchAction::Cancel, "running" | "paused") => {
                sqlx::query(
                    "update batches set state = 'cancelled', finished_at = $1, paused_at = null \
                     where batch_id = $2",
                )
                .bind(now)
                .bind(batch_id)
                .execute(&mut *tx)
                .await?;
                sqlx::query(
                    "delete from jobs where batch_id = $1 and state in ('queued', 'paused')",
                )
                .bind(batch_id)
                .execute(&mut *tx)
                .await?;
            }
            _ => {}
        }
        tx.commit().await?;
        self.work.notify_waiters();
        self.batch(batch_id).await
    }
}
