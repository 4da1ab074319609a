//! The durable job queue, a narrow seam of the metadata store (implemented
//! by the same SQL store, in `sql_jobs`).
//!
//! Jobs are enqueued in the same transaction as the completion that creates a
//! new content (see `metadata_store::sql`), so a committed content always has
//! its job and a rolled-back one never does. Workers claim with `for update
//! skip locked` on PostgreSQL (SQLite has one writer), hold a lease they renew
//! while working, and a job whose worker died is claimed again once its lease
//! runs out. Failures are retried with exponential backoff; after
//! `max_attempts` the job is dead, its last error kept on the content.

use std::time::Duration;

use async_trait::async_trait;

use super::MetadataError;
use crate::ids::{Blake3, BlobKey, UploadId};

/// Priority of the jobs live uploads enqueue: they run first.
pub const LIVE_PRIORITY: i64 = 0;
/// Priority of batch reprocessing: it runs when no live upload waits.
pub const BATCH_PRIORITY: i64 = 100;

/// Where a job is in its life (`jobs.state`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum JobState {
    /// Waiting to be claimed (at `run_after`).
    Queued,
    /// Claimed by a worker holding a lease.
    Running,
    /// Finished; its results are recorded.
    Done,
    /// Failed `max_attempts` times, or refused: its content is `failed`.
    Dead,
    /// A paused batch's job: not claimed until the batch resumes.
    Paused,
}

impl JobState {
    /// Every state, in the order of a job's life.
    pub const ALL: [JobState; 5] = [
        Self::Queued,
        Self::Running,
        Self::Done,
        Self::Dead,
        Self::Paused,
    ];

    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Running => "running",
            Self::Done => "done",
            Self::Dead => "dead",
            Self::Paused => "paused",
        }
    }

    /// Reads the stored name.
    pub fn parse(value: &str) -> Result<Self, MetadataError> {
        Self::ALL
            .into_iter()
            .find(|s| s.as_str() == value)
            .ok_or_else(|| MetadataError::Query(format!("unknown job state {value:?}")))
    }
}

/// A claimed job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Job {
    /// Its id.
    pub job_id: String,
    /// What to do (`process`).
    pub kind: String,
    /// The content it is about.
    pub blake3: Blake3,
    /// The upload whose completion enqueued it.
    pub upload_id: Option<UploadId>,
    /// Lower runs first.
    pub priority: i64,
    /// Claims so far, this one included.
    pub attempts: u32,
    /// Claims allowed before the job is dead.
    pub max_attempts: u32,
    /// When it was enqueued (Unix ms).
    pub created_at: i64,
    /// The operators' batch it belongs to.
    pub batch_id: Option<String>,
    /// Only these presets; all of them when `None`.
    pub presets: Option<Vec<String>>,
}

impl Job {
    /// Whether it is batch work (runs below live uploads).
    pub fn is_batch(&self) -> bool {
        self.priority >= BATCH_PRIORITY
    }
}

/// A content to process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessingTarget {
    /// Its BLAKE3.
    pub blake3: Blake3,
    /// Where its bytes are.
    pub storage_key: BlobKey,
    /// Sniffed MIME type.
    pub content_type: String,
    /// Bytes.
    pub size: u64,
}

/// A variant as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VariantRecord {
    /// Preset name.
    pub preset: String,
    /// Preset version.
    pub version: u32,
    /// Where its bytes are.
    pub storage_key: BlobKey,
    /// MIME type.
    pub content_type: String,
    /// Bytes.
    pub size: u64,
    /// Pixels wide, for images and video.
    pub width: Option<u32>,
    /// Pixels high, for images and video.
    pub height: Option<u32>,
    /// Length, for video and audio.
    pub duration_ms: Option<u64>,
}

/// How a processed content ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProcessingState {
    /// Variants made.
    Ready,
    /// Not a type we process; the original is all there is.
    Skipped,
}

impl ProcessingState {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ready => "ready",
            Self::Skipped => "skipped",
        }
    }
}

/// What a finished job records, in one transaction.
#[derive(Debug, Clone, PartialEq)]
pub struct Processed {
    /// The content's final state.
    pub state: ProcessingState,
    /// The variants made.
    pub variants: Vec<VariantRecord>,
    /// What probing found (JSON).
    pub probe: Option<serde_json::Value>,
}

/// The queue.
#[async_trait]
pub trait JobQueue: Send + Sync + 'static {
    /// Claims the most urgent runnable job (queued and due, or running with an
    /// expired lease) for `worker`, leased for `lease`; batch work only when
    /// `batch` allows it.
    async fn claim(
        &self,
        worker: &str,
        lease: Duration,
        batch: bool,
    ) -> Result<Option<Job>, MetadataError>;

    /// Extends a lease this worker still holds. False when it lost the job.
    async fn heartbeat(
        &self,
        job: &Job,
        worker: &str,
        lease: Duration,
    ) -> Result<bool, MetadataError>;

    /// Marks the job done and records its results, if this worker still
    /// holds it; `None` when it lost the job (another worker finishes it).
    /// A variant made at a new version replaces the older ones of its preset
    /// in the same transaction: their objects, answered, are the caller's to
    /// delete.
    async fn complete(
        &self,
        job: &Job,
        worker: &str,
        processed: &Processed,
    ) -> Result<Option<Vec<BlobKey>>, MetadataError>;

    /// Gives the job back to run again at `retry_at` (Unix ms), or with
    /// `None` marks it dead and the content failed (a batch's job leaves
    /// its content as it was: its variants still serve). `error` is the job's
    /// record for operators; `shown` is the content's failure reason, what
    /// its readers see.
    async fn fail(
        &self,
        job: &Job,
        worker: &str,
        error: &str,
        shown: &str,
        retry_at: Option<i64>,
    ) -> Result<(), MetadataError>;

    /// Queues a stored content to be processed again (batch reprocessing,
    /// say when presets change) at `priority`.
    async fn reprocess(&self, blake3: &Blake3, priority: i64) -> Result<(), MetadataError>;

    /// The content a job is about; `None` when it was deleted meanwhile.
    async fn target(&self, blake3: &Blake3) -> Result<Option<ProcessingTarget>, MetadataError>;

    /// A content's variants.
    async fn variants(&self, blake3: &Blake3) -> Result<Vec<VariantRecord>, MetadataError>;

    /// How many jobs are in each state.
    async fn counts(&self) -> Result<Vec<(JobState, u64)>, MetadataError>;

    /// Resolves when work may have arrived (a notification on PostgreSQL, an
    /// in-process signal on SQLite) or after `timeout`, whichever is first.
    async fn wait_for_work(&self, timeout: Duration);
}
