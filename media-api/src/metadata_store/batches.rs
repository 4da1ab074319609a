//! The operators' batch work: which contents a selector matches, and
//! reprocessing batches with their progress, pause, resume and cancel.
//!
//! A reprocessing batch is ordinary jobs carrying its id, enqueued in one
//! statement from the selector's query and paced by `run_after` (one job
//! every `interval_ms`), so a million contents are never read into memory
//! and the batch needs no process of its own: any node's workers run it,
//! below live uploads ([`super::jobs::BATCH_PRIORITY`]).

use async_trait::async_trait;
use serde::Serialize;

use super::MetadataError;

/// Which contents a batch is about, resolved from the operator's selector
/// against the configuration (store-agnostic: the SQL builds from it).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ContentFilter {
    /// The exact sniffed types considered (never empty).
    pub types: Vec<String>,
    /// When not empty, only contents with a variant that one of these made
    /// at another version than the configured one (`stale_only`).
    pub stale: Vec<StalePreset>,
    /// First stored at or after (Unix ms).
    pub created_after: Option<i64>,
    /// First stored before (Unix ms).
    pub created_before: Option<i64>,
    /// Only contents this user holds as media.
    pub owner: Option<String>,
    /// Only these contents (hex BLAKE3).
    pub blake3: Vec<String>,
    /// Only contents in this processing state.
    pub status: Option<String>,
}

/// A preset as configured for some types: a variant of it at another
/// version is stale.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StalePreset {
    /// The types it is made for.
    pub types: Vec<String>,
    /// Its name.
    pub preset: String,
    /// Its configured version.
    pub version: u32,
}

/// What a selector matches.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Matched {
    /// Contents.
    pub matched: u64,
    /// Their bytes.
    pub bytes: u64,
    /// The first few, by BLAKE3.
    pub sample: Vec<SampleContent>,
}

/// One matched content.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SampleContent {
    /// Its BLAKE3.
    pub blake3: String,
    /// Its sniffed type.
    pub content_type: String,
    /// Bytes.
    pub size: u64,
    /// Its processing state.
    pub processing: String,
}

/// A batch to start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewBatch {
    /// Its id (a UUIDv7).
    pub batch_id: String,
    /// The selector as the operator sent it (JSON), kept for the record.
    pub selector: String,
    /// Milliseconds between two jobs' starts; 0 for no pacing.
    pub interval_ms: i64,
    /// Only these presets are remade; all when `None`.
    pub presets: Option<Vec<String>>,
    /// Who started it.
    pub created_by: String,
    /// Unix ms.
    pub now: i64,
}

/// A batch and its progress.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Batch {
    /// Its id.
    pub batch_id: String,
    /// `reprocess` or `fsck`.
    pub kind: String,
    /// `running`, `paused`, `cancelled` or `done`.
    pub state: String,
    /// The selector (JSON).
    pub selector: String,
    /// Milliseconds between two jobs' starts.
    pub interval_ms: i64,
    /// Contents matched when it started.
    pub matched: u64,
    /// Their bytes.
    pub bytes: u64,
    /// Jobs enqueued.
    pub enqueued: u64,
    /// Jobs finished.
    pub done: u64,
    /// Jobs dead.
    pub failed: u64,
    /// Jobs dropped by a cancel.
    pub cancelled: u64,
    /// Who started it.
    pub created_by: String,
    /// Unix ms.
    pub started_at: i64,
    /// Unix ms, once done or cancelled.
    pub finished_at: Option<i64>,
    /// An fsck's findings (JSON).
    pub report: Option<String>,
}

/// What an operator does to a running batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BatchAction {
    /// Park its queued jobs.
    Pause,
    /// Queue them again, keeping their pacing.
    Resume,
    /// Drop its queued jobs; finished ones stay.
    Cancel,
}

/// The batches' queries.
#[async_trait]
pub trait BatchStore: Send + Sync + 'static {
    /// What `filter` matches now, with the first `sample` contents.
    async fn match_contents(
        &self,
        filter: &ContentFilter,
        sample: u32,
    ) -> Result<Matched, MetadataError>;

    /// Starts a reprocessing batch: one job per content `filter` matches,
    /// in one transaction. Contents with a job not yet finished are left
    /// out (they are being made already).
    async fn start_reprocess(
        &self,
        batch: &NewBatch,
        filter: &ContentFilter,
    ) -> Result<Batch, MetadataError>;

    /// Records a batch of another kind (an fsck), running.
    async fn start_batch(&self, batch: &NewBatch, kind: &str) -> Result<Batch, MetadataError>;

    /// Updates an fsck batch's findings, and ends it when `finished`.
    async fn report_batch(
        &self,
        batch_id: &str,
        report: &str,
        finished: bool,
    ) -> Result<(), MetadataError>;

    /// One batch with its progress; `None` when there is none.
    async fn batch(&self, batch_id: &str) -> Result<Option<Batch>, MetadataError>;

    /// Batches, newest first, strictly before `before` (a batch id).
    async fn batches(&self, before: Option<&str>, limit: u32) -> Result<Vec<Batch>, MetadataError>;

    /// Pauses, resumes or cancels a batch. `None` when there is no such
    /// batch; the batch unchanged when the action does not apply to its state.
    async fn act_on_batch(
        &self,
        batch_id: &str,
        action: BatchAction,
    ) -> Result<Option<Batch>, MetadataError>;
}
