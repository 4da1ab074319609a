//! Upload sessions: creating them, taking chunks in any order, reporting
//! progress, completing, aborting and expiring them. The HTTP layer
//! (`routes::uploads`) only translates; every rule lives here.
//!
//! Invariants kept here:
//! - A chunk is durable in the metadata store before its 200, and nothing is
//!   recorded from a request that fails (bad size, bad digest, disconnect).
//! - No session state lives in process memory: any node takes any chunk.
//! - The metadata store is the truth; the progress bus is rebuilt from it.
//! - Chunk bytes held in memory are bounded by `limits.inflight_memory`;
//!   past it, requests wait for room before their body is read.

use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures_util::{Stream, StreamExt};
use serde::Serialize;
use tokio::sync::Semaphore;

use crate::auth::UserId;
use crate::blob_store::{BlobKey, BlobStoreError, ByteRange, CompletedPart, MultipartId, PartBody};
use crate::chunk_hash::{ChunkHasher, merge_root};
use crate::config::Limits;
use crate::ids::{Blake3, FileName, MediaId, UploadId, now_ms, rfc3339};
use crate::metadata_store::{
    ChunkRecord, Created, MediaRecord, MetadataError, NewContent, RecordOutcome, UploadRecord,
    UploadState,
};
use crate::progress_bus::{Event, LiveProgress, ProgressError};
use crate::state::Backends;

/// S3's most parts in one multipart upload.
pub const MAX_PARTS: u64 = 10_000;
/// One-request bodies up to this size are hashed on the request's own task.
const INLINE_HASH_MAX: usize = 1024 * 1024;
/// How often a streaming chunk reports its bytes.
const INFLIGHT_REPORT_EVERY: u64 = 1024 * 1024;
/// A completion not heard from for this long was abandoned (its node died);
/// another `complete` call may take it over.
const COMPLETION_STALE_MS: i64 = 60_000;
/// How long a `complete` call waits for a concurrent one before answering.
const COMPLETION_WAIT: Duration = Duration::from_secs(30);

/// Why an upload request failed. Each maps to one HTTP status and stable code.
#[derive(Debug, thiserror::Error)]
pub enum UploadError {
    /// Unknown, someone else's, or malformed id.
    #[error("no such upload")]
    NotFound,
    /// The session expired.
    #[error("the upload session has expired")]
    Expired,
    /// The session was aborted.
    #[error("the upload session was aborted")]
    Aborted,
    /// The session completed; it takes no more chunks.
    #[error("the upload is already completed")]
    AlreadyCompleted,
    /// Another `complete` call is running.
    #[error("another completion of this upload is in progress")]
    CompletionInProgress,
    /// `size` is not a positive integer.
    #[error("{0}")]
    InvalidSize(String),
    /// `size` is over the configured limit.
    #[error("the file is {size} bytes; the limit is {limit}")]
    FileTooLarge {
        /// Declared size.
        size: u64,
        /// The limit.
        limit: u64,
    },
    /// A bad file name.
    #[error("{0}")]
    InvalidFileName(String),
    /// A malformed `blake3`.
    #[error("{0}")]
    InvalidBlake3(String),
    /// A requested chunk size that breaks the rules.
    #[error("{0}")]
    InvalidChunkSize(String),
    /// A bad `content_type`.
    #[error("{0}")]
    InvalidContentType(String),
    /// Chunk number is not a number.
    #[error("chunk number {0:?} is not a positive integer")]
    InvalidChunkNumber(String),
    /// Chunk number is 0 or past the last.
    #[error("chunk {number} is out of range 1..={total}")]
    ChunkOutOfRange {
        /// The number sent.
        number: u64,
        /// The last chunk.
        total: u32,
    },
    /// The body is longer or shorter than the chunk must be.
    #[error("chunk {number} must be exactly {expected} bytes{}", got.map(|g| format!(", got {g}")).unwrap_or_default())]
    ChunkSizeMismatch {
        /// The chunk.
        number: u32,
        /// Its required size.
        expected: u64,
        /// What was sent, when known.
        got: Option<u64>,
    },
    /// A malformed `Content-Digest`.
    #[error("invalid Content-Digest: {0}")]
    InvalidContentDigest(String),
    /// The body does not match its `Content-Digest`.
    #[error("the chunk's SHA-256 does not match its Content-Digest")]
    ContentDigestMismatch,
    /// The client went away mid-body.
    #[error("the chunk body ended early: {0}")]
    ChunkIncomplete(String),
    /// The chunk was received before with other bytes.
    #[error("chunk {0} was already received with different bytes")]
    ChunkConflict(u32),
    /// `complete` before every chunk arrived.
    #[error("{} chunks are missing", .0.len())]
    ChunksMissing(Vec<u32>),
    /// The content is not what the client declared.
    #[error("the content's BLAKE3 is {actual}, not the declared {declared}")]
    HashMismatch {
        /// What the client declared.
        declared: String,
        /// What the bytes hash to.
        actual: String,
    },
    /// A one-request upload over its limit.
    #[error("the body is over the {limit}-byte limit of a one-request upload")]
    BodyTooLarge {
        /// The limit.
        limit: u64,
    },
    /// A backend failed or is unreachable.
    #[error("{0}")]
    Backend(String),
}

impl From<MetadataError> for UploadError {
    fn from(e: MetadataError) -> Self {
        UploadError::Backend(e.to_string())
    }
}

impl From<BlobStoreError> for UploadError {
    fn from(e: BlobStoreError) -> Self {
        UploadError::Backend(e.to_string())
    }
}

/// What `POST /v1/uploads` asks for.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateUpload {
    /// The file's name.
    pub file_name: String,
    /// Its size in bytes (an integer; signed so negatives get a clear error).
    pub size: i64,
    /// What the client thinks it is (kept; completion sniffs the real type).
    #[serde(default)]
    pub content_type: Option<String>,
    /// The file's BLAKE3, checked at completion.
    #[serde(default)]
    pub blake3: Option<String>,
    /// A chunk size the client prefers.
    #[serde(default)]
    pub chunk_size: Option<u64>,
}

/// Where an upload stands.
#[derive(Debug, Clone, Serialize)]
pub struct Progress {
    /// The session.
    pub upload_id: String,
    /// `receiving`, `completed`, `aborted` or `expired` (`completing` while a
    /// completion runs).
    pub state: &'static str,
    /// File name.
    pub file_name: String,
    /// Declared size.
    pub size: u64,
    /// Bytes per chunk.
    pub chunk_size: u64,
    /// Number of chunks.
    pub total_chunks: u32,
    /// Chunks received, ascending.
    pub received_chunks: Vec<u32>,
    /// Chunks still to send, ascending.
    pub missing_chunks: Vec<u32>,
    /// Bytes received, counting chunks still streaming.
    pub received_bytes: u64,
    /// `received_bytes` as a percentage of `size`.
    pub percent: f64,
    /// When the session dies if not completed.
    pub expires_at: String,
    /// The media, once completed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub media_id: Option<String>,
}

/// The answer to a chunk PUT.
#[derive(Debug, Clone, Serialize)]
pub struct ChunkReceipt {
    /// The chunk number.
    pub chunk: u32,
    /// Its size.
    pub size: u64,
    /// Its SHA-256, hex.
    pub sha256: String,
    /// How many chunks the session has now.
    pub received_chunks: usize,
    /// Bytes received so far.
    pub received_bytes: u64,
}

/// The answer to `complete` and to a one-request upload.
#[derive(Debug, Clone, Serialize)]
pub struct Completion {
    /// The new media.
    pub media_id: String,
    /// The content's BLAKE3.
    pub blake3: String,
    /// Bytes.
    pub size: u64,
    /// Sniffed type.
    pub content_type: String,
    /// File name.
    pub file_name: String,
    /// True when the content was already stored and the new bytes were dropped.
    pub deduplicated: bool,
}

impl Completion {
    fn of(media: &MediaRecord, deduplicated: bool) -> Self {
        Self {
            media_id: media.media_id.to_string(),
            blake3: media.blake3.to_hex(),
            size: media.size,
            content_type: media.content_type.clone(),
            file_name: media.file_name.clone(),
            deduplicated,
        }
    }
}

/// What opening an upload gave.
#[derive(Debug, Clone)]
pub enum Opened {
    /// A new session to send chunks to.
    Session(UploadRecord),
    /// The caller owns this content already: a new media item, no bytes needed.
    Existing(Completion),
}

/// The chunk a PUT carries, as the HTTP layer saw it.
#[derive(Debug, Clone)]
pub struct ChunkPut {
    /// The number as sent in the path.
    pub number: String,
    /// `Content-Length`, if sent.
    pub content_length: Option<u64>,
    /// The SHA-256 from `Content-Digest`, if sent (already parsed).
    pub sha256: Option<[u8; 32]>,
}

/// Upload sessions over the backends.
#[derive(Clone)]
pub struct UploadService {
    backends: Backends,
    limits: Limits,
    /// Permits are KiB of chunk bytes that may be held in memory.
    memory: Arc<Semaphore>,
}

impl std::fmt::Debug for UploadService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UploadService")
            .field("memory_kib_free", &self.memory.available_permits())
            .finish_non_exhaustive()
    }
}

fn kib(bytes: u64) -> u32 {
    u32::try_from(bytes.div_ceil(1024)).unwrap_or(u32::MAX)
}

/// The event topic of an upload.
pub fn topic(id: UploadId) -> String {
    id.to_string()
}

impl UploadService {
    /// A service over these backends and limits.
    pub fn new(backends: Backends, limits: Limits) -> Self {
        let memory = Arc::new(Semaphore::new(kib(limits.inflight_memory.0) as usize));
        Self {
            backends,
            limits,
            memory,
        }
    }

    /// The chunk size for a file: the requested one when it fits the rules,
    /// else the default grown until the file fits in 10,000 parts.
    pub fn choose_chunk_size(&self, size: u64, requested: Option<u64>) -> Result<u64, UploadError> {
        // A power of two never below the store's minimum part size (5 MiB on S3 → 8 MiB).
        let min = self
            .backends
            .blobs
            .min_part_size()
            .next_power_of_two()
            .max(64 * 1024);
        let max = self.limits.max_chunk_size.0;
        if let Some(r) = requested {
            if !r.is_power_of_two() || r < min || r > max {
                return Err(UploadError::InvalidChunkSize(format!(
                    "chunk_size must be a power of two from {min} to {max}"
                )));
            }
            if size.div_ceil(r) > MAX_PARTS {
                return Err(UploadError::InvalidChunkSize(format!(
                    "chunk_size {r} cuts {size} bytes into more than {MAX_PARTS} chunks"
                )));
            }
            return Ok(r);
        }
        let mut chunk = self.limits.default_chunk_size.0.max(min);
        while size.div_ceil(chunk) > MAX_PARTS {
            chunk *= 2;
        }
        if chunk > max {
            return Err(UploadError::FileTooLarge {
                size,
                limit: max * MAX_PARTS,
            });
        }
        Ok(chunk)
    }

    /// Opens a session: checks the request, creates the multipart upload,
    /// stores the session. When the caller already owns content with the
    /// declared BLAKE3 and size, answers with a new media item at once instead
    /// (instant dedup); content anyone else owns makes no difference here.
    pub async fn create(
        &self,
        owner: &UserId,
        request: CreateUpload,
    ) -> Result<Opened, UploadError> {
        let file_name =
            FileName::parse(&request.file_name).map_err(UploadError::InvalidFileName)?;
        let size = u64::try_from(request.size)
            .ok()
            .filter(|s| *s > 0)
            .ok_or_else(|| {
                UploadError::InvalidSize(
                    "size must be a positive number of bytes; send empty files with POST /v1/media"
                        .into(),
                )
            })?;
        if size > self.limits.max_file_size.0 {
            return Err(UploadError::FileTooLarge {
                size,
                limit: self.limits.max_file_size.0,
            });
        }
        let declared_blake3 = request
            .blake3
            .as_deref()
            .map(Blake3::parse)
            .transpose()
            .map_err(UploadError::InvalidBlake3)?;
        if let Some(t) = &request.content_type
            && (t.len() > 255 || t.chars().any(char::is_control) || !t.contains('/'))
        {
            return Err(UploadError::InvalidContentType(
                "content_type must be a MIME type such as image/jpeg".into(),
            ));
        }
        let chunk_size = self.choose_chunk_size(size, request.chunk_size)?;
        if let Some(blake3) = &declared_blake3
            && let Some(media) = self
                .backends
                .metadata
                .create_media_if_owned(
                    owner.as_str(),
                    file_name.as_str(),
                    blake3,
                    size,
                    MediaId::generate(),
                )
                .await?
        {
            metrics::counter!("dedup_hits_total", "kind" => "instant").increment(1);
            metrics::counter!("dedup_bytes_saved_total").increment(size);
            return Ok(Opened::Existing(Completion::of(&media, true)));
        }
        let total_chunks = u32::try_from(size.div_ceil(chunk_size)).unwrap_or(u32::MAX);
        let key = BlobKey::generate();
        let multipart = self.backends.blobs.create_multipart(&key).await?;
        let now = now_ms();
        let expires_at =
            now + i64::try_from(self.limits.upload_expiry.as_millis()).unwrap_or(i64::MAX / 2);
        let record = UploadRecord {
            upload_id: UploadId::generate(),
            owner: owner.as_str().to_owned(),
            file_name: file_name.as_str().to_owned(),
            size,
            declared_type: request.content_type,
            declared_blake3,
            chunk_size,
            total_chunks,
            state: UploadState::Receiving,
            storage_key: key.as_str().to_owned(),
            multipart_id: multipart.0.clone(),
            media_id: None,
            created_at: now,
            updated_at: now,
            expires_at,
        };
        if let Err(e) = self.backends.metadata.create_upload(&record).await {
            // Leave nothing behind in the store for a session that does not exist.
            let _ = self.backends.blobs.abort_multipart(&key, &multipart).await;
            return Err(e.into());
        }
        if let Err(e) = self
            .backends
            .progress
            .seed(&topic(record.upload_id), &[], expires_at)
            .await
        {
            tracing::warn!(error = %e, "progress bus unavailable; progress will be rebuilt");
        }
        Ok(Opened::Session(record))
    }

    /// The caller's session, whatever its state. Someone else's is not found.
    async fn load(&self, owner: &UserId, id: &str) -> Result<UploadRecord, UploadError> {
        let id = UploadId::parse(id).ok_or(UploadError::NotFound)?;
        match self.backends.metadata.upload(id).await? {
            Some(u) if u.owner == owner.as_str() => Ok(u),
            _ => Err(UploadError::NotFound),
        }
    }

    /// The caller's session, refusing an expired one.
    pub async fn owned(&self, owner: &UserId, id: &str) -> Result<UploadRecord, UploadError> {
        let upload = self.load(owner, id).await?;
        if is_expired(&upload) {
            return Err(UploadError::Expired);
        }
        Ok(upload)
    }

    /// The live view, rebuilt from the metadata store when the bus lost it
    /// (and read from the store alone while the bus is down).
    async fn live(&self, upload: &UploadRecord) -> Result<LiveProgress, UploadError> {
        let topic = topic(upload.upload_id);
        match self.backends.progress.live(&topic).await {
            Ok(Some(live)) => return Ok(live),
            Ok(None) => {}
            Err(e) => tracing::warn!(error = %e, "progress bus unavailable; reading the store"),
        }
        let chunks: Vec<u32> = self
            .backends
            .metadata
            .chunks(upload.upload_id)
            .await?
            .iter()
            .map(|c| c.number)
            .collect();
        if upload.state == UploadState::Receiving
            && let Err(e) = self
                .backends
                .progress
                .seed(&topic, &chunks, upload.expires_at)
                .await
        {
            tracing::debug!(error = %e, "could not re-seed progress");
        }
        Ok(LiveProgress {
            chunks,
            inflight: Vec::new(),
        })
    }

    /// Where a session stands.
    pub async fn progress(&self, upload: &UploadRecord) -> Result<Progress, UploadError> {
        let all = || (1..=upload.total_chunks).collect::<Vec<u32>>();
        let (received_chunks, inflight) = match upload.state {
            UploadState::Completed => (all(), Vec::new()),
            UploadState::Aborted | UploadState::Expired => (Vec::new(), Vec::new()),
            UploadState::Receiving | UploadState::Completing => {
                let live = self.live(upload).await?;
                (live.chunks, live.inflight)
            }
        };
        let received: std::collections::BTreeSet<u32> = received_chunks
            .iter()
            .copied()
            .filter(|n| (1..=upload.total_chunks).contains(n))
            .collect();
        let streaming: u64 = inflight
            .iter()
            .filter(|(n, _)| !received.contains(n) && (1..=upload.total_chunks).contains(n))
            .map(|(n, b)| (*b).min(upload.chunk_len(*n)))
            .sum();
        let received_bytes = (received.iter().map(|n| upload.chunk_len(*n)).sum::<u64>()
            + streaming)
            .min(upload.size);
        let percent = (received_bytes as f64 * 10_000.0 / upload.size as f64).round() / 100.0;
        Ok(Progress {
            upload_id: upload.upload_id.to_string(),
            state: if is_expired(upload) {
                "expired"
            } else {
                upload.state.as_str()
            },
            file_name: upload.file_name.clone(),
            size: upload.size,
            chunk_size: upload.chunk_size,
            total_chunks: upload.total_chunks,
            missing_chunks: (1..=upload.total_chunks)
                .filter(|n| !received.contains(n))
                .collect(),
            received_chunks: received.into_iter().collect(),
            received_bytes,
            percent,
            expires_at: rfc3339(upload.expires_at),
            media_id: upload.media_id.map(|m| m.to_string()),
        })
    }

    /// Takes one chunk: streams it through the hashers into memory (within
    /// the memory budget), verifies it, sends it to the store as its part, and
    /// records it.
    pub async fn put_chunk<S, E>(
        &self,
        owner: &UserId,
        id: &str,
        put: ChunkPut,
        body: S,
    ) -> Result<ChunkReceipt, UploadError>
    where
        S: Stream<Item = Result<Bytes, E>> + Send + Unpin,
        E: std::fmt::Display,
    {
        let upload = self.owned(owner, id).await?;
        let number = parse_chunk_number(&put.number, upload.total_chunks)?;
        match upload.state {
            UploadState::Aborted => return Err(UploadError::Aborted),
            UploadState::Expired => return Err(UploadError::Expired),
            _ => {}
        }
        let expected = upload.chunk_len(number);
        if let Some(len) = put.content_length
            && len != expected
        {
            return Err(UploadError::ChunkSizeMismatch {
                number,
                expected,
                got: Some(len),
            });
        }
        // A chunk sent again: compare, without touching the store.
        if let Some(existing) = self.recorded(&upload, number).await? {
            let digests = self
                .receive(&upload, number, expected, put.sha256, body, false)
                .await?;
            return if digests.sha256 == existing.sha256 {
                self.mark(&upload, number).await;
                self.receipt(&upload, number, &existing).await
            } else {
                Err(UploadError::ChunkConflict(number))
            };
        }
        if upload.state != UploadState::Receiving {
            return Err(match upload.state {
                UploadState::Completing => UploadError::CompletionInProgress,
                _ => UploadError::AlreadyCompleted,
            });
        }
        // Wait for room before reading the body: TCP pushes back on the client.
        let _permit = self.reserve_memory(expected).await?;
        let received = self
            .receive(&upload, number, expected, put.sha256, body, true)
            .await?;
        let data = received.data.unwrap_or_default();
        let key = BlobKey::parse(&upload.storage_key)?;
        let multipart = MultipartId(upload.multipart_id.clone());
        let etag = self
            .backends
            .blobs
            .upload_part(&key, &multipart, number, data, received.sha256)
            .await?;
        let record = ChunkRecord {
            number,
            size: expected,
            sha256: received.sha256,
            chaining_value: received.chaining_value,
            etag,
        };
        match self
            .backends
            .metadata
            .record_chunk(upload.upload_id, &record)
            .await?
        {
            RecordOutcome::Recorded => {}
            RecordOutcome::AlreadyRecorded(existing) if existing.sha256 == record.sha256 => {}
            RecordOutcome::AlreadyRecorded(existing) => {
                // A racing PUT with other bytes recorded first, and our part
                // may have replaced its part in the store: the chunk is no
                // longer trustworthy, so forget it and let the client resend.
                self.backends
                    .metadata
                    .forget_chunk(upload.upload_id, number, &existing.sha256)
                    .await?;
                let _ = self
                    .backends
                    .progress
                    .unmark_chunk(&topic(upload.upload_id), number)
                    .await;
                return Err(UploadError::ChunkConflict(number));
            }
            RecordOutcome::NotReceiving(state) => {
                return Err(match state {
                    UploadState::Aborted => UploadError::Aborted,
                    UploadState::Expired => UploadError::Expired,
                    UploadState::Completing => UploadError::CompletionInProgress,
                    _ => UploadError::AlreadyCompleted,
                });
            }
        }
        metrics::counter!("upload_chunks_received_total").increment(1);
        metrics::counter!("upload_bytes_received_total").increment(expected);
        self.mark(&upload, number).await;
        self.publish(
            upload.upload_id,
            "chunk",
            serde_json::json!({ "chunk": number, "size": expected }),
        )
        .await;
        self.receipt(&upload, number, &record).await
    }

    /// Holds `bytes` of the in-flight memory budget until the permit drops,
    /// waiting while the budget is spent.
    async fn reserve_memory(&self, bytes: u64) -> Result<MemoryReservation, UploadError> {
        let permits = kib(bytes);
        let permit = match self.memory.clone().try_acquire_many_owned(permits) {
            Ok(p) => p,
            Err(_) => {
                metrics::counter!("upload_memory_waits_total").increment(1);
                self.memory
                    .clone()
                    .acquire_many_owned(permits)
                    .await
                    .map_err(|_| UploadError::Backend("shutting down".into()))?
            }
        };
        metrics::gauge!("upload_memory_reserved_bytes").increment(f64::from(permits) * 1024.0);
        Ok(MemoryReservation { _permit: permit })
    }

    async fn recorded(
        &self,
        upload: &UploadRecord,
        number: u32,
    ) -> Result<Option<ChunkRecord>, UploadError> {
        if upload.state == UploadState::Completed {
            // Chunk rows go at completion; every chunk was received.
            return Err(UploadError::AlreadyCompleted);
        }
        Ok(self
            .backends
            .metadata
            .chunk(upload.upload_id, number)
            .await?)
    }

    async fn mark(&self, upload: &UploadRecord, number: u32) {
        if let Err(e) = self
            .backends
            .progress
            .mark_chunk(&topic(upload.upload_id), number, upload.expires_at)
            .await
        {
            tracing::warn!(error = %e, "progress bus unavailable; progress will be rebuilt");
        }
    }

    async fn receipt(
        &self,
        upload: &UploadRecord,
        number: u32,
        record: &ChunkRecord,
    ) -> Result<ChunkReceipt, UploadError> {
        let progress = self.progress(upload).await?;
        Ok(ChunkReceipt {
            chunk: number,
            size: record.size,
            sha256: hex::encode(record.sha256),
            received_chunks: progress.received_chunks.len(),
            received_bytes: progress
                .received_chunks
                .iter()
                .map(|n| upload.chunk_len(*n))
                .sum(),
        })
    }

    /// Reads a chunk body of exactly `expected` bytes through both hashers,
    /// keeping the bytes when `keep`, and checks `Content-Digest`.
    async fn receive<S, E>(
        &self,
        upload: &UploadRecord,
        number: u32,
        expected: u64,
        declared_sha256: Option<[u8; 32]>,
        mut body: S,
        keep: bool,
    ) -> Result<Received, UploadError>
    where
        S: Stream<Item = Result<Bytes, E>> + Send + Unpin,
        E: std::fmt::Display,
    {
        let mut hasher = ChunkHasher::new(number, upload.chunk_size, upload.total_chunks);
        // The frames are hashed as they arrive and kept as they are: no copy.
        let mut part = PartBody::default();
        let mut total: u64 = 0;
        let mut next_report = INFLIGHT_REPORT_EVERY;
        let topic = topic(upload.upload_id);
        // The handler is dropped, not resumed, when the client goes away: once
        // a report was made, the guard clears it whichever way this ends.
        let mut inflight = InflightGuard {
            bus: self.backends.progress.clone(),
            topic: topic.clone(),
            number,
            armed: false,
        };
        let outcome: Result<(), UploadError> = async {
            while let Some(frame) = body.next().await {
                let frame = frame.map_err(|e| UploadError::ChunkIncomplete(e.to_string()))?;
                total += frame.len() as u64;
                if total > expected {
                    return Err(UploadError::ChunkSizeMismatch {
                        number,
                        expected,
                        got: None,
                    });
                }
                hasher.update(&frame);
                if keep {
                    part.push(frame);
                }
                if keep && total >= next_report {
                    next_report += INFLIGHT_REPORT_EVERY;
                    inflight.armed = true;
                    self.report_inflight(&topic, number, total, upload.expires_at)
                        .await;
                }
            }
            Ok(())
        }
        .await;
        outcome?;
        if total != expected {
            return Err(UploadError::ChunkSizeMismatch {
                number,
                expected,
                got: Some(total),
            });
        }
        let digests = hasher.finish();
        if let Some(declared) = declared_sha256
            && declared != digests.sha256
        {
            return Err(UploadError::ContentDigestMismatch);
        }
        Ok(Received {
            sha256: digests.sha256,
            chaining_value: digests.chaining_value,
            data: keep.then(|| part.hashed_to(digests.sha256)),
        })
    }

    async fn report_inflight(&self, topic: &str, number: u32, bytes: u64, expires_at: i64) {
        let event = Event {
            kind: "progress".into(),
            data: serde_json::json!({ "chunk": number, "chunk_received_bytes": bytes }),
        };
        let result = self
            .backends
            .progress
            .report_inflight(topic, number, bytes, expires_at, &event)
            .await;
        if let Err(e) = result {
            tracing::debug!(error = %e, "could not report in-flight bytes");
        }
    }

    async fn publish(&self, id: UploadId, kind: &str, data: serde_json::Value) {
        let event = Event {
            kind: kind.to_owned(),
            data,
        };
        if let Err(e) = self.backends.progress.publish(&topic(id), &event).await {
            tracing::warn!(error = %e, kind, "could not publish an upload event");
        }
    }

    /// Completes a session: checks every chunk is there, merges the BLAKE3,
    /// joins the parts, sniffs the type and creates the media. Idempotent:
    /// calling it again returns the same media.
    pub async fn complete(&self, owner: &UserId, id: &str) -> Result<Completion, UploadError> {
        let started = tokio::time::Instant::now();
        loop {
            let upload = self.load(owner, id).await?;
            match upload.state {
                UploadState::Completed => return self.completed(&upload).await,
                UploadState::Aborted => return Err(UploadError::Aborted),
                UploadState::Expired => return Err(UploadError::Expired),
                _ if is_expired(&upload) => return Err(UploadError::Expired),
                UploadState::Receiving => {
                    if self
                        .backends
                        .metadata
                        .transition(
                            upload.upload_id,
                            &[UploadState::Receiving],
                            UploadState::Completing,
                            None,
                        )
                        .await?
                    {
                        return self.finish(upload).await;
                    }
                }
                UploadState::Completing => {
                    let stale_before = now_ms() - COMPLETION_STALE_MS;
                    if upload.updated_at < stale_before
                        && self
                            .backends
                            .metadata
                            .transition(
                                upload.upload_id,
                                &[UploadState::Completing],
                                UploadState::Completing,
                                Some(stale_before),
                            )
                            .await?
                    {
                        tracing::warn!(upload = %upload.upload_id, "taking over an abandoned completion");
                        return self.finish(upload).await;
                    }
                    if started.elapsed() > COMPLETION_WAIT {
                        return Err(UploadError::CompletionInProgress);
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    }

    async fn completed(&self, upload: &UploadRecord) -> Result<Completion, UploadError> {
        let media_id = upload
            .media_id
            .ok_or_else(|| UploadError::Backend("completed upload without media".into()))?;
        let media = self
            .backends
            .metadata
            .media(media_id)
            .await?
            .ok_or_else(|| UploadError::Backend("completed upload's media is gone".into()))?;
        Ok(Completion::of(&media, false))
    }

    /// Puts a session back to receiving after a completion that could not finish.
    async fn reopen(&self, upload: &UploadRecord) {
        if let Err(e) = self
            .backends
            .metadata
            .transition(
                upload.upload_id,
                &[UploadState::Completing],
                UploadState::Receiving,
                None,
            )
            .await
        {
            tracing::error!(error = %e, upload = %upload.upload_id, "could not reopen an upload");
        }
    }

    /// The completion proper; the caller holds the session in `completing`.
    async fn finish(&self, upload: UploadRecord) -> Result<Completion, UploadError> {
        let meta = &self.backends.metadata;
        let blobs = &self.backends.blobs;
        let chunks = match meta.chunks(upload.upload_id).await {
            Ok(c) => c,
            Err(e) => {
                self.reopen(&upload).await;
                return Err(e.into());
            }
        };
        let have: std::collections::BTreeSet<u32> = chunks.iter().map(|c| c.number).collect();
        let missing: Vec<u32> = (1..=upload.total_chunks)
            .filter(|n| !have.contains(n))
            .collect();
        if !missing.is_empty() {
            self.reopen(&upload).await;
            return Err(UploadError::ChunksMissing(missing));
        }
        let cvs: Vec<[u8; 32]> = chunks.iter().map(|c| c.chaining_value).collect();
        let root = Blake3::from(merge_root(&cvs, upload.chunk_size, upload.size));
        let key = BlobKey::parse(&upload.storage_key)?;
        let multipart = MultipartId(upload.multipart_id.clone());
        if let Some(declared) = upload.declared_blake3
            && declared != root
        {
            // Not what the client meant to send: store nothing.
            self.drop_session(&upload, UploadState::Completing, UploadState::Aborted)
                .await;
            self.publish(
                upload.upload_id,
                "aborted",
                serde_json::json!({ "reason": "hash-mismatch" }),
            )
            .await;
            return Err(UploadError::HashMismatch {
                declared: declared.to_hex(),
                actual: root.to_hex(),
            });
        }
        let parts: Vec<CompletedPart> = chunks
            .iter()
            .map(|c| CompletedPart {
                number: c.number,
                etag: c.etag.clone(),
                sha256: c.sha256,
            })
            .collect();
        match blobs.complete_multipart(&key, &multipart, &parts).await {
            Ok(()) => {}
            Err(BlobStoreError::InvalidPart { .. }) => {
                // A part was replaced after it was recorded (a racing PUT with
                // other bytes): forget every chunk whose part is not what we
                // recorded, and ask for those again.
                let stored = blobs.list_parts(&key, &multipart).await.unwrap_or_default();
                self.reopen(&upload).await;
                let mut bad = Vec::new();
                for chunk in &chunks {
                    let same = stored
                        .iter()
                        .any(|(n, etag)| *n == chunk.number && *etag == chunk.etag);
                    if !same {
                        meta.forget_chunk(upload.upload_id, chunk.number, &chunk.sha256)
                            .await?;
                        let _ = self
                            .backends
                            .progress
                            .unmark_chunk(&topic(upload.upload_id), chunk.number)
                            .await;
                        bad.push(chunk.number);
                    }
                }
                return Err(if bad.is_empty() {
                    UploadError::Backend("the store refused the parts; try again".into())
                } else {
                    UploadError::ChunksMissing(bad)
                });
            }
            Err(BlobStoreError::NoSuchUpload) if blobs.head(&key).await?.is_some() => {
                // An earlier, abandoned completion joined the parts already.
            }
            Err(BlobStoreError::NoSuchUpload) => {
                // The store dropped the parts (its lifecycle rule): nothing to complete.
                self.drop_session(&upload, UploadState::Completing, UploadState::Expired)
                    .await;
                return Err(UploadError::Expired);
            }
            Err(e) => {
                self.reopen(&upload).await;
                return Err(e.into());
            }
        }
        let head = blobs
            .get(
                &key,
                Some(ByteRange {
                    start: 0,
                    end: Some(transcoder::sniff::SNIFF_LEN as u64 - 1),
                }),
            )
            .await?
            .collect()
            .await
            .map_err(|e| UploadError::Backend(format!("while sniffing: {e}")))?;
        let content = NewContent {
            blake3: root,
            size: upload.size,
            content_type: transcoder::sniff::sniff(&head).mime.to_owned(),
            storage_key: upload.storage_key.clone(),
            origin: Some(upload.upload_id),
            claimed_media: transcoder::sniff::claims_media(
                upload.declared_type.as_deref(),
                &upload.file_name,
            ),
        };
        let Some(created) = meta
            .finish_upload(upload.upload_id, &content, MediaId::generate())
            .await?
        else {
            // Someone else finished it meanwhile (a takeover): answer theirs.
            let upload = self.load_by_id(upload.upload_id).await?;
            return self.completed(&upload).await;
        };
        self.after_create(&content, &created).await;
        let _ = self
            .backends
            .progress
            .forget(&topic(upload.upload_id))
            .await;
        let completion = Completion::of(&created.media, created.deduplicated);
        metrics::counter!("uploads_completed_total", "kind" => "chunked").increment(1);
        self.publish(
            upload.upload_id,
            "completed",
            serde_json::to_value(&completion).unwrap_or_default(),
        )
        .await;
        Ok(completion)
    }

    async fn load_by_id(&self, id: UploadId) -> Result<UploadRecord, UploadError> {
        self.backends
            .metadata
            .upload(id)
            .await?
            .ok_or(UploadError::NotFound)
    }

    /// After a media was created: when the content was stored already, the
    /// bytes just written are redundant and go.
    async fn after_create(&self, content: &NewContent, created: &Created) {
        if created.deduplicated {
            metrics::counter!("dedup_hits_total", "kind" => "completion").increment(1);
            metrics::counter!("dedup_bytes_saved_total").increment(content.size);
        }
        if created.deduplicated
            && created.media.storage_key != content.storage_key
            && let Ok(key) = BlobKey::parse(&content.storage_key)
            && let Err(e) = self.backends.blobs.delete(&key).await
        {
            tracing::error!(error = %e, key = %key, "could not delete a redundant object");
        }
    }

    /// Moves a session to a final state and drops everything it held.
    async fn drop_session(&self, upload: &UploadRecord, from: UploadState, to: UploadState) {
        let id = upload.upload_id;
        let moved = self
            .backends
            .metadata
            .transition(id, &[from], to, None)
            .await;
        if !matches!(moved, Ok(true)) {
            return;
        }
        if let Ok(key) = BlobKey::parse(&upload.storage_key) {
            let multipart = MultipartId(upload.multipart_id.clone());
            if let Err(e) = self.backends.blobs.abort_multipart(&key, &multipart).await {
                tracing::warn!(error = %e, upload = %id, "could not abort a multipart upload; the bucket lifecycle rule will");
            }
        }
        if let Err(e) = self.backends.metadata.drop_chunks(id).await {
            tracing::warn!(error = %e, upload = %id, "could not drop chunk records");
        }
        let _ = self.backends.progress.forget(&topic(id)).await;
    }

    /// Aborts a session (`DELETE`). Aborting twice is fine.
    pub async fn abort(&self, owner: &UserId, id: &str) -> Result<(), UploadError> {
        let upload = self.owned(owner, id).await?;
        match upload.state {
            UploadState::Aborted => Ok(()),
            UploadState::Expired => Err(UploadError::Expired),
            UploadState::Completed => Err(UploadError::AlreadyCompleted),
            UploadState::Completing => Err(UploadError::CompletionInProgress),
            UploadState::Receiving => {
                self.drop_session(&upload, UploadState::Receiving, UploadState::Aborted)
                    .await;
                let now = self.load_by_id(upload.upload_id).await?;
                match now.state {
                    UploadState::Aborted => {
                        self.publish(
                            upload.upload_id,
                            "aborted",
                            serde_json::json!({ "reason": "deleted" }),
                        )
                        .await;
                        Ok(())
                    }
                    UploadState::Completed => Err(UploadError::AlreadyCompleted),
                    _ => Err(UploadError::CompletionInProgress),
                }
            }
        }
    }

    /// Expires sessions past their expiry (the janitor's step): aborts their
    /// multipart uploads, drops their chunks and live views. Returns how many.
    pub async fn expire_due(&self) -> Result<usize, UploadError> {
        let due = self
            .backends
            .metadata
            .expired_uploads(now_ms(), 100)
            .await?;
        let count = due.len();
        for upload in due {
            self.drop_session(&upload, UploadState::Receiving, UploadState::Expired)
                .await;
            self.publish(
                upload.upload_id,
                "aborted",
                serde_json::json!({ "reason": "expired" }),
            )
            .await;
        }
        Ok(count)
    }

    /// A one-request upload of a small file.
    pub async fn upload_small<S, E>(
        &self,
        owner: &UserId,
        file_name: &str,
        declared_type: Option<&str>,
        content_length: Option<u64>,
        body: S,
    ) -> Result<Completion, UploadError>
    where
        S: Stream<Item = Result<Bytes, E>> + Send + Unpin,
        E: std::fmt::Display,
    {
        let file_name = FileName::parse(file_name).map_err(UploadError::InvalidFileName)?;
        let limit = self.limits.max_single_upload.0;
        if content_length.is_some_and(|len| len > limit) {
            return Err(UploadError::BodyTooLarge { limit });
        }
        // A declared length reserves what it needs; a chunked body, the limit.
        let expected = content_length.unwrap_or(limit);
        let _permit = self
            .reserve_memory(expected.min(self.limits.inflight_memory.0))
            .await?;
        let mut body = body;
        let mut buffer = BytesMut::with_capacity(usize::try_from(expected).unwrap_or(0));
        while let Some(frame) = body.next().await {
            let frame = frame.map_err(|e| UploadError::ChunkIncomplete(e.to_string()))?;
            if (buffer.len() + frame.len()) as u64 > limit {
                return Err(UploadError::BodyTooLarge { limit });
            }
            buffer.extend_from_slice(&frame);
        }
        let data = buffer.freeze();
        // Hashing a small body takes less time than handing it to another
        // thread and back (a 100 KB body hashes in about 30 µs); large ones
        // go to the blocking pool so the runtime's workers stay responsive.
        let root = if data.len() <= INLINE_HASH_MAX {
            Blake3::from(blake3::hash(&data))
        } else {
            let hashed = data.clone();
            tokio::task::spawn_blocking(move || Blake3::from(blake3::hash(&hashed)))
                .await
                .map_err(|e| UploadError::Backend(e.to_string()))?
        };
        let key = BlobKey::generate();
        let content = NewContent {
            blake3: root,
            size: data.len() as u64,
            content_type: transcoder::sniff::sniff(
                &data[..data.len().min(transcoder::sniff::SNIFF_LEN)],
            )
            .mime
            .to_owned(),
            storage_key: key.as_str().to_owned(),
            origin: None,
            claimed_media: transcoder::sniff::claims_media(declared_type, file_name.as_str()),
        };
        self.backends.blobs.put(&key, data).await?;
        let created = match self
            .backends
            .metadata
            .create_media(
                owner.as_str(),
                file_name.as_str(),
                &content,
                MediaId::generate(),
            )
            .await
        {
            Ok(c) => c,
            Err(e) => {
                let _ = self.backends.blobs.delete(&key).await;
                return Err(e.into());
            }
        };
        self.after_create(&content, &created).await;
        metrics::counter!("uploads_completed_total", "kind" => "single").increment(1);
        Ok(Completion::of(&created.media, created.deduplicated))
    }

    /// A media item the caller may read.
    pub async fn media(
        &self,
        caller: &UserId,
        id: &str,
    ) -> Result<Option<MediaRecord>, UploadError> {
        let Some(id) = MediaId::parse(id) else {
            return Ok(None);
        };
        Ok(self
            .backends
            .metadata
            .media(id)
            .await?
            .filter(|m| chat_core::may_read(&m.owner, caller.as_str())))
    }

    /// The progress bus, for event streams.
    pub fn events(&self) -> &Arc<dyn crate::progress_bus::ProgressBus> {
        &self.backends.progress
    }
}

/// Part of the in-flight memory budget, given back on drop.
struct MemoryReservation {
    _permit: tokio::sync::OwnedSemaphorePermit,
}

impl Drop for MemoryReservation {
    fn drop(&mut self) {
        let bytes =
            f64::from(u32::try_from(self._permit.num_permits()).unwrap_or(u32::MAX)) * 1024.0;
        metrics::gauge!("upload_memory_reserved_bytes").decrement(bytes);
    }
}

/// Clears a chunk's in-flight report when dropped.
struct InflightGuard {
    bus: Arc<dyn crate::progress_bus::ProgressBus>,
    topic: String,
    number: u32,
    armed: bool,
}

impl Drop for InflightGuard {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let (bus, topic, number) = (
            self.bus.clone(),
            std::mem::take(&mut self.topic),
            self.number,
        );
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                let _ = bus.clear_inflight(&topic, number).await;
            });
        }
    }
}

/// What a chunk body hashed to, and its bytes when kept.
struct Received {
    sha256: [u8; 32],
    chaining_value: [u8; 32],
    data: Option<PartBody>,
}

fn is_expired(upload: &UploadRecord) -> bool {
    upload.state == UploadState::Expired
        || (matches!(upload.state, UploadState::Receiving) && now_ms() > upload.expires_at)
}

fn parse_chunk_number(value: &str, total: u32) -> Result<u32, UploadError> {
    let n: u64 = value
        .parse()
        .map_err(|_| UploadError::InvalidChunkNumber(value.chars().take(32).collect()))?;
    if n == 0 || n > u64::from(total) {
        return Err(UploadError::ChunkOutOfRange { number: n, total });
    }
    Ok(n as u32)
}

/// Runs the janitor until `stop` is cancelled: every `interval`, expire what is due.
pub async fn run_janitor(
    service: UploadService,
    interval: Duration,
    stop: tokio_util::sync::CancellationToken,
) {
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(interval) => {}
        }
        match service.expire_due().await {
            Ok(0) => {}
            Ok(n) => tracing::info!(expired = n, "janitor expired upload sessions"),
            Err(e) => tracing::warn!(error = %e, "janitor run failed"),
        }
    }
}

impl From<ProgressError> for UploadError {
    fn from(e: ProgressError) -> Self {
        UploadError::Backend(e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunk_numbers_at_their_edges() {
        assert_eq!(parse_chunk_number("1", 3).ok(), Some(1));
        assert_eq!(parse_chunk_number("3", 3).ok(), Some(3));
        assert!(matches!(
            parse_chunk_number("0", 3),
            Err(UploadError::ChunkOutOfRange { .. })
        ));
        assert!(matches!(
            parse_chunk_number("4", 3),
            Err(UploadError::ChunkOutOfRange { .. })
        ));
        assert!(matches!(
            parse_chunk_number("x", 3),
            Err(UploadError::InvalidChunkNumber(_))
        ));
        assert!(matches!(
            parse_chunk_number("-1", 3),
            Err(UploadError::InvalidChunkNumber(_))
        ));
        assert!(matches!(
            parse_chunk_number("99999999999999999999999", 3),
            Err(UploadError::InvalidChunkNumber(_))
        ));
    }
}
