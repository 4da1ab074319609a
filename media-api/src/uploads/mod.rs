//! Upload sessions: creating them, taking chunks in any order, reporting
//! progress, completing, aborting and expiring them. The HTTP layer
//! (`http::uploads`) only translates; every rule lives here.
//!
//! Invariants kept here:
//! - A chunk is durable in the metadata store before its 200, and nothing is
//!   recorded from a request that fails (bad size, bad digest, disconnect).
//! - No session state lives in process memory: any node takes any chunk.
//! - The metadata store is the truth; the progress bus is rebuilt from it.
//! - Chunk bytes held in memory are bounded by `limits.inflight_memory`;
//!   past it, requests wait for room before their body is read.
//!
//! Where things are: `create` (opening, instant dedup), `chunks` (one chunk
//! from body to durable record, the memory budget), `progress`, `completion`,
//! `expiry` (abort, janitor), `single` (one-request uploads), `events` (the
//! live stream of one upload), `documents` (what the API takes and gives),
//! `error`, and `chunk_hash` (the per-chunk BLAKE3 and SHA-256).

pub mod chunk_hash;
mod chunks;
mod completion;
mod create;
mod documents;
mod error;
pub mod events;
mod expiry;
mod memory;
mod progress;
mod single;
mod tus;

use std::sync::Arc;
use std::time::Duration;

pub use documents::{ChunkPut, ChunkReceipt, Completion, CreateUpload, Opened, Progress};
pub use error::UploadError;
pub use expiry::run_janitor;
pub use tus::{Concat, TusChecksum, TusState};

use crate::backends::Backends;
use crate::config::Limits;
use crate::ids::{UploadId, UserId, now_ms};
use crate::metadata_store::{UploadRecord, UploadState};
use crate::progress_bus::upload_topic;
use crate::progress_bus::{Event, EventKind};
use crate::quotas::{QuotaBook, Rate};

/// S3's most parts in one multipart upload.
pub const MAX_PARTS: u64 = 10_000;
/// One-request bodies up to this size are hashed on the request's own task.
const INLINE_HASH_MAX: usize = 1024 * 1024;
/// How often a streaming chunk reports its bytes.
const INFLIGHT_REPORT_EVERY: u64 = 1024 * 1024;
/// How long a `complete` call waits for a concurrent one before answering.
const COMPLETION_WAIT: Duration = Duration::from_secs(30);

/// Upload sessions over the backends.
#[derive(Clone)]
pub struct UploadService {
    backends: Backends,
    limits: Limits,
    quotas: QuotaBook,
    /// Chunk bytes that may be held in memory, the node's and each user's.
    memory: Arc<memory::MemoryBudget>,
    /// Images stating more pixels are refused at completion.
    max_image_pixels: u64,
}

impl std::fmt::Debug for UploadService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UploadService")
            .field("memory_kib_free", &self.memory.free_kib())
            .finish_non_exhaustive()
    }
}

pub(super) fn kib(bytes: u64) -> u32 {
    u32::try_from(bytes.div_ceil(1024)).unwrap_or(u32::MAX)
}

impl UploadService {
    /// A service over these backends and limits.
    pub fn new(backends: Backends, limits: Limits, quotas: QuotaBook) -> Self {
        let memory = Arc::new(memory::MemoryBudget::new(
            limits.inflight_memory.0,
            limits.inflight_memory_per_user.0,
        ));
        Self {
            backends,
            limits,
            quotas,
            memory,
            max_image_pixels: u64::MAX,
        }
    }

    /// Refuses images whose header states more than `pixels` pixels
    /// (`presets.max_image_pixels`, which processing would refuse anyway):
    /// a decompression bomb is never stored.
    pub fn with_max_image_pixels(mut self, pixels: u64) -> Self {
        self.max_image_pixels = pixels;
        self
    }

    /// What an image's header says against `max_image_pixels`.
    pub(super) fn check_pixels(&self, dimensions: Option<(u32, u32)>) -> Result<(), UploadError> {
        match dimensions.map(|(w, h)| (u64::from(w), u64::from(h))) {
            Some((width, height)) if width * height > self.max_image_pixels => {
                Err(UploadError::TooManyPixels {
                    width,
                    height,
                    limit: self.max_image_pixels,
                })
            }
            _ => Ok(()),
        }
    }

    /// `body` held to `limits.min_body_rate` after `limits.body_grace`.
    fn paced<S>(&self, body: S) -> memory::Paced<S> {
        memory::Paced::new(body, self.limits.min_body_rate.0, self.limits.body_grace)
    }

    /// Unix ms before which a completion not heard from was abandoned.
    pub(super) fn stale_before(&self) -> i64 {
        now_ms()
            - i64::try_from(self.limits.abandoned_completion.as_millis()).unwrap_or(i64::MAX / 2)
    }

    /// Charges `len` sent bytes to the owner's rate and refuses them past
    /// their stored-bytes quota: a one-request body about to be stored.
    pub(super) async fn admit_bytes(&self, owner: &UserId, len: u64) -> Result<(), UploadError> {
        self.charge(owner, Rate::UploadBytes, len).await?;
        let usage = self.quotas.usage(owner).await?;
        Ok(self.quotas.check_stored(&usage, len)?)
    }

    /// Charges the owner's rate.
    pub(super) async fn charge(
        &self,
        owner: &UserId,
        rate: Rate,
        cost: u64,
    ) -> Result<(), UploadError> {
        Ok(self.quotas.charge(owner, rate, cost).await?)
    }

    /// Refuses a content whose type has a lower size limit than its size.
    pub(super) fn check_type_size(&self, content_type: &str, size: u64) -> Result<(), UploadError> {
        let limit = self.limits.max_size_of(content_type);
        if size > limit {
            return Err(UploadError::TooLargeForType {
                content_type: content_type.to_owned(),
                size,
                limit,
            });
        }
        Ok(())
    }

    /// The caller's session, whatever its state. Someone else's is not found.
    pub(super) async fn load(
        &self,
        owner: &UserId,
        id: UploadId,
    ) -> Result<UploadRecord, UploadError> {
        match self.backends.uploads.upload(id).await? {
            Some(u) if u.owner == *owner => Ok(u),
            _ => Err(UploadError::NotFound),
        }
    }

    /// The caller's session, refusing an expired one.
    pub async fn owned(&self, owner: &UserId, id: UploadId) -> Result<UploadRecord, UploadError> {
        let upload = self.load(owner, id).await?;
        if is_expired(&upload) {
            return Err(UploadError::Expired);
        }
        Ok(upload)
    }

    pub(super) async fn load_by_id(&self, id: UploadId) -> Result<UploadRecord, UploadError> {
        self.backends
            .uploads
            .upload(id)
            .await?
            .ok_or(UploadError::NotFound)
    }

    pub(super) async fn publish(&self, id: UploadId, kind: EventKind, data: serde_json::Value) {
        let event = Event { kind, data };
        if let Err(e) = self
            .backends
            .progress
            .publish(&upload_topic(id), &event)
            .await
        {
            tracing::warn!(error = %e, kind = kind.as_str(), "could not publish an upload event");
        }
    }

    /// The caller's sessions still receiving or completing, newest first,
    /// at most `limit`.
    pub async fn open_uploads(
        &self,
        owner: &UserId,
        limit: u32,
    ) -> Result<Vec<UploadId>, UploadError> {
        Ok(self.backends.uploads.open_uploads_of(owner, limit).await?)
    }

    /// The progress bus, for event streams.
    pub fn events(&self) -> &Arc<dyn crate::progress_bus::ProgressBus> {
        &self.backends.progress
    }
}

pub(super) fn is_expired(upload: &UploadRecord) -> bool {
    upload.state == UploadState::Expired
        || (matches!(upload.state, UploadState::Receiving) && now_ms() > upload.expires_at)
}
