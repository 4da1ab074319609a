//! Where a session stands: the live view from the progress bus, rebuilt
//! from the metadata store when the bus lost it.

use super::{ChunkReceipt, Progress, UploadError, UploadService, is_expired};
use crate::ids::rfc3339;
use crate::metadata_store::{ChunkRecord, UploadRecord, UploadState};
use crate::progress_bus::LiveProgress;
use crate::progress_bus::upload_topic;

impl UploadService {
    /// The numbers of the chunks the store has recorded.
    pub(super) async fn recorded_numbers(
        &self,
        upload: &UploadRecord,
    ) -> Result<Vec<u32>, UploadError> {
        Ok(self
            .backends
            .uploads
            .chunks(upload.upload_id)
            .await?
            .iter()
            .map(|c| c.number)
            .collect())
    }

    /// The live view, rebuilt from the metadata store when the bus lost it
    /// (and read from the store alone while the bus is down).
    pub(super) async fn live(&self, upload: &UploadRecord) -> Result<LiveProgress, UploadError> {
        let topic = upload_topic(upload.upload_id);
        match self.backends.progress.live(&topic).await {
            Ok(Some(live)) => return Ok(live),
            Ok(None) => {}
            Err(e) => tracing::warn!(error = %e, "progress bus unavailable; reading the store"),
        }
        let chunks = self.recorded_numbers(upload).await?;
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

    pub(super) async fn mark(&self, upload: &UploadRecord, number: u32) {
        if let Err(e) = self
            .backends
            .progress
            .mark_chunk(&upload_topic(upload.upload_id), number, upload.expires_at)
            .await
        {
            tracing::warn!(error = %e, "progress bus unavailable; progress will be rebuilt");
        }
    }

    pub(super) async fn receipt(
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
}
