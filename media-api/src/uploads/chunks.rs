//! Taking one chunk: the memory budget, streaming the body through both
//! hashers, the part upload, and recording it durably before the answer.

use std::sync::Arc;

use bytes::Bytes;
use futures_util::{Stream, StreamExt};

use super::chunk_hash::ChunkHasher;
use super::{ChunkPut, ChunkReceipt, INFLIGHT_REPORT_EVERY, UploadError, UploadService};
use crate::blob_store::{MultipartId, PartBody};
use crate::ids::{UploadId, UserId};
use crate::metadata_store::{ChunkRecord, RecordOutcome, UploadRecord, UploadState};
use crate::progress_bus::upload_topic;
use crate::progress_bus::{Event, EventKind};
use crate::quotas::Rate;

impl UploadService {
    /// Takes one chunk: streams it through the hashers into memory (within
    /// the memory budget), verifies it, sends it to the store as its part, and
    /// records it.
    pub async fn put_chunk<S, E>(
        &self,
        owner: &UserId,
        id: UploadId,
        put: ChunkPut,
        body: S,
    ) -> Result<ChunkReceipt, UploadError>
    where
        S: Stream<Item = Result<Bytes, E>> + Send + Unpin,
        E: std::fmt::Display,
    {
        let upload = self.owned(owner, id).await?;
        let number =
            put.number
                .within(upload.total_chunks)
                .ok_or(UploadError::ChunkOutOfRange {
                    number: put.number.get(),
                    total: upload.total_chunks,
                })?;
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
        self.charge(owner, Rate::UploadBytes, expected).await?;
        // Wait for room before reading the body: TCP pushes back on the client.
        let _permit = self.memory.reserve(owner, expected).await?;
        let received = self
            .receive(&upload, number, expected, put.sha256, body, true)
            .await?;
        let data = received.data.unwrap_or_default();
        let key = &upload.storage_key;
        let multipart = MultipartId(upload.multipart_id.clone());
        let etag = match self
            .backends
            .blobs
            .upload_part(key, &multipart, number, data, received.sha256)
            .await
        {
            Ok(etag) => etag,
            Err(e) => {
                // The session may have ended while the body came in (expired
                // and reaped by the janitor, or aborted), its multipart with
                // it: that is the answer, not a store fault.
                if let Ok(now) = self.load_by_id(upload.upload_id).await {
                    if super::is_expired(&now) {
                        return Err(UploadError::Expired);
                    }
                    if now.state == UploadState::Aborted {
                        return Err(UploadError::Aborted);
                    }
                }
                return Err(e.into());
            }
        };
        let record = ChunkRecord {
            number,
            size: expected,
            sha256: received.sha256,
            chaining_value: received.chaining_value,
            etag,
        };
        match self
            .backends
            .uploads
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
                    .uploads
                    .forget_chunk(upload.upload_id, number, &existing.sha256)
                    .await?;
                let _ = self
                    .backends
                    .progress
                    .unmark_chunk(&upload_topic(upload.upload_id), number)
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
            EventKind::Chunk,
            serde_json::json!({ "chunk": number, "size": expected }),
        )
        .await;
        self.receipt(&upload, number, &record).await
    }

    pub(super) async fn recorded(
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
            .uploads
            .chunk(upload.upload_id, number)
            .await?)
    }

    /// Reads a chunk body of exactly `expected` bytes through both hashers,
    /// keeping the bytes when `keep`, and checks `Content-Digest`.
    pub(super) async fn receive<S, E>(
        &self,
        upload: &UploadRecord,
        number: u32,
        expected: u64,
        declared_sha256: Option<[u8; 32]>,
        body: S,
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
        let topic = upload_topic(upload.upload_id);
        // The handler is dropped, not resumed, when the client goes away: once
        // a report was made, the guard clears it whichever way this ends.
        let mut inflight = InflightGuard {
            bus: self.backends.progress.clone(),
            topic: topic.clone(),
            number,
            armed: false,
        };
        let mut body = self.paced(body);
        let outcome: Result<(), UploadError> = async {
            while let Some(frame) = body.next().await {
                let frame = frame?;
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

    pub(super) async fn report_inflight(
        &self,
        topic: &str,
        number: u32,
        bytes: u64,
        expires_at: i64,
    ) {
        let event = Event {
            kind: EventKind::Progress,
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
}

/// Clears a chunk's in-flight report when dropped.
pub(super) struct InflightGuard {
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
pub(super) struct Received {
    sha256: [u8; 32],
    chaining_value: [u8; 32],
    data: Option<PartBody>,
}
