//! The end of a session that does not complete: abort by its owner, expiry
//! by the janitor; either way the multipart upload, the chunk records and the
//! live view go.

use std::time::Duration;

use super::{UploadError, UploadService};
use crate::blob_store::MultipartId;
use crate::ids::{UploadId, UserId, millis, now_ms};
use crate::metadata_store::{UploadRecord, UploadState};
use crate::progress_bus::EventKind;
use crate::progress_bus::upload_topic;

impl UploadService {
    /// Moves a session to a final state and drops everything it held;
    /// answers whether it moved it (another call may have first).
    pub(super) async fn drop_session(
        &self,
        upload: &UploadRecord,
        from: UploadState,
        to: UploadState,
    ) -> bool {
        let id = upload.upload_id;
        let moved = self
            .backends
            .uploads
            .transition(id, &[from], to, None)
            .await;
        if !matches!(moved, Ok(true)) {
            return false;
        }
        {
            let key = &upload.storage_key;
            let multipart = MultipartId(upload.multipart_id.clone());
            if let Err(e) = self.backends.blobs.abort_multipart(key, &multipart).await {
                tracing::warn!(error = %e, upload = %id, "could not abort a multipart upload; the bucket lifecycle rule will");
            }
        }
        if let Err(e) = self.backends.uploads.drop_chunks(id).await {
            tracing::warn!(error = %e, upload = %id, "could not drop chunk records");
        }
        let _ = self.backends.progress.forget(&upload_topic(id)).await;
        true
    }

    /// Aborts a session (`DELETE`). Aborting twice is fine.
    pub async fn abort(&self, owner: &UserId, id: UploadId) -> Result<(), UploadError> {
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
                            EventKind::Aborted,
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
    /// multipart uploads, drops their chunks and live views. Goes on batch
    /// after batch until none is due, however many there are; answers how
    /// many it expired.
    pub async fn expire_due(&self) -> Result<usize, UploadError> {
        const BATCH: u32 = 100;
        let mut expired = 0;
        loop {
            let due = self
                .backends
                .uploads
                .expired_uploads(now_ms(), BATCH)
                .await?;
            let full = due.len() == BATCH as usize;
            let mut moved = 0;
            for upload in due {
                if self
                    .drop_session(&upload, UploadState::Receiving, UploadState::Expired)
                    .await
                {
                    moved += 1;
                    self.publish(
                        upload.upload_id,
                        EventKind::Aborted,
                        serde_json::json!({ "reason": "expired" }),
                    )
                    .await;
                }
            }
            expired += moved;
            // A batch that moved nothing would come back the same: stop.
            if !full || moved == 0 {
                return Ok(expired);
            }
        }
    }
}

impl UploadService {
    /// Finishes the completions that were cut off (a request timeout, a
    /// crashed node) and that no client came back for: each ends completed,
    /// or back to receiving (chunks missing, the store failing) where
    /// expiry takes it in time, or aborted; none stays `completing`.
    /// Answers how many it took.
    pub async fn finish_abandoned(&self) -> Result<usize, UploadError> {
        const BATCH: u32 = 100;
        let mut taken = 0;
        loop {
            let stale = self
                .backends
                .uploads
                .abandoned_completions(self.stale_before(), BATCH)
                .await?;
            let full = stale.len() == BATCH as usize;
            let mut moved = 0;
            for upload in stale {
                if !self.take_over(&upload).await? {
                    continue;
                }
                moved += 1;
                let id = upload.upload_id;
                match self.finish(upload).await {
                    Ok(_) => {
                        tracing::info!(upload = %id, "janitor finished an abandoned completion")
                    }
                    Err(e) => {
                        tracing::info!(upload = %id, outcome = %e, "janitor ended an abandoned completion")
                    }
                }
            }
            taken += moved;
            if !full || moved == 0 {
                return Ok(taken);
            }
        }
    }
}

impl UploadService {
    /// Aborts the multipart uploads the store holds that no session names
    /// and that began more than `grace` ago: a node killed between starting
    /// one and recording its session leaves one behind, holding its parts.
    /// (Within `grace` a session may still be on its way to the database.)
    /// Answers how many it aborted.
    pub async fn abort_orphan_multiparts(&self, grace: Duration) -> Result<usize, UploadError> {
        let before = now_ms() - millis(grace);
        let (_, orphans) = self.backends.orphan_multiparts::<UploadError>().await?;
        let mut aborted = 0;
        for upload in &orphans {
            if self.backends.abort_orphan_if_before(upload, before).await? {
                aborted += 1;
            }
        }
        Ok(aborted)
    }
}

/// Runs the janitor until `stop` is cancelled: every `interval`, expire what
/// is due, end abandoned completions, and abort multipart uploads no session
/// names that are older than `orphan_grace`.
pub async fn run_janitor(
    service: UploadService,
    interval: Duration,
    orphan_grace: Duration,
    stop: tokio_util::sync::CancellationToken,
) {
    let first = crate::background::First::AfterInterval;
    crate::background::every("janitor", first, interval, stop, || async {
        match service.expire_due().await {
            Ok(0) => {}
            Ok(n) => tracing::info!(expired = n, "janitor expired upload sessions"),
            Err(e) => tracing::warn!(error = %e, "janitor run failed"),
        }
        match service.finish_abandoned().await {
            Ok(0) => {}
            Ok(n) => tracing::info!(taken = n, "janitor ended abandoned completions"),
            Err(e) => tracing::warn!(error = %e, "janitor run failed"),
        }
        match service.abort_orphan_multiparts(orphan_grace).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(
                aborted = n,
                "janitor aborted multipart uploads no session names"
            ),
            Err(e) => tracing::warn!(error = %e, "janitor run failed"),
        }
    })
    .await;
}

#[async_trait::async_trait]
impl crate::operators::fsck::Janitor for UploadService {
    async fn end_abandoned(&self) -> Result<usize, String> {
        self.finish_abandoned().await.map_err(|e| e.to_string())
    }
}
