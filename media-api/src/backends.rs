//! The three seams, connected once at start-up from the configuration (the
//! implementation of each is chosen here and nowhere else). Services hold
//! them; HTTP handlers never do.

use std::collections::HashSet;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use crate::blob_store::{self, BlobStore, PendingMultipart};
use crate::config::Settings;
use crate::ids::BlobKey;
use crate::metadata_store::jobs::JobState;
use crate::metadata_store::{
    self, ChatStore, GcStore, JobQueue, MediaStore, MetadataStore, UploadStore,
};
use crate::progress_bus::{self, ProgressBus};

/// The three seams.
#[derive(Clone)]
pub struct Backends {
    /// The metadata store as a whole (readiness, schema).
    pub metadata: Arc<dyn MetadataStore>,
    /// Upload sessions and chunks (the same database).
    pub uploads: Arc<dyn UploadStore>,
    /// Media items and contents (the same database).
    pub media: Arc<dyn MediaStore>,
    /// The garbage collector's queries (the same database).
    pub gc: Arc<dyn GcStore>,
    /// The processing queue (the same database).
    pub jobs: Arc<dyn JobQueue>,
    /// Conversations, messages and the sync log (the same database).
    pub chat: Arc<dyn ChatStore>,
    /// The operators' queries.
    pub admin: Arc<dyn crate::metadata_store::admin::AdminStore>,
    /// The operators' batches.
    pub batches: Arc<dyn crate::metadata_store::batches::BatchStore>,
    /// The consistency check's queries.
    pub fsck: Arc<dyn crate::metadata_store::fsck::FsckStore>,
    /// tus sessions' lock and tail.
    pub tus: Arc<dyn crate::metadata_store::tus::TusStore>,
    /// Live progress and events.
    pub progress: Arc<dyn ProgressBus>,
    /// Content bytes.
    pub blobs: Arc<dyn BlobStore>,
    /// Checks the filesystem store's download URLs (None on S3, which checks its own).
    pub url_signer: Option<blob_store::signed_url::UrlSigner>,
}

impl std::fmt::Debug for Backends {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Backends")
            .field("metadata", &self.metadata.kind())
            .field("progress", &self.progress.kind())
            .field("blobs", &self.blobs.kind())
            .finish()
    }
}

/// One backend's answer to a readiness probe.
#[derive(Debug, Clone)]
pub struct Readiness {
    /// `metadata`, `progress` or `blobs`.
    pub seam: &'static str,
    /// The implementation, such as `postgres`.
    pub kind: &'static str,
    /// Why it is not ready.
    pub error: Option<String>,
}

/// How long one backend gets to answer a readiness probe.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

async fn probe<E: std::fmt::Display>(
    seam: &'static str,
    kind: &'static str,
    check: impl Future<Output = Result<(), E>>,
) -> Readiness {
    let error = match tokio::time::timeout(PROBE_TIMEOUT, check).await {
        Ok(Ok(())) => None,
        Ok(Err(e)) => Some(e.to_string()),
        Err(_) => Some(format!("no answer within {PROBE_TIMEOUT:?}")),
    };
    Readiness { seam, kind, error }
}

impl Backends {
    /// Connects every backend the settings name.
    pub async fn from_settings(settings: &Settings) -> anyhow::Result<Self> {
        let (stores, progress, (blobs, url_signer)) = tokio::try_join!(
            metadata_store::from_settings(settings),
            progress_bus::from_settings(settings),
            blob_store::from_settings(settings),
        )?;
        Ok(Self {
            metadata: stores.metadata,
            uploads: stores.uploads,
            media: stores.media,
            gc: stores.gc,
            jobs: stores.jobs,
            chat: stores.chat,
            admin: stores.admin,
            batches: stores.batches,
            fsck: stores.fsck,
            tus: stores.tus,
            progress,
            blobs,
            url_signer,
        })
    }

    /// How many processing jobs are in each state (`queued`, `running`,
    /// `done`, `dead`); `None` when the store does not answer in time.
    pub async fn job_counts(&self) -> Option<Vec<(JobState, u64)>> {
        tokio::time::timeout(PROBE_TIMEOUT, self.jobs.counts())
            .await
            .ok()?
            .ok()
    }

    /// Asks every backend whether it answers, each within a short deadline.
    pub async fn readiness(&self) -> [Readiness; 3] {
        let (metadata, progress, blobs) = tokio::join!(
            probe("metadata", self.metadata.kind(), self.metadata.ping()),
            probe("progress", self.progress.kind(), self.progress.ping()),
            probe("blobs", self.blobs.kind(), self.blobs.ping()),
        );
        [metadata, progress, blobs]
    }

    /// The multipart uploads the store holds that no upload session names
    /// (a node killed between starting one and recording its session leaves
    /// one), and how many the store holds in all.
    pub async fn orphan_multiparts<E>(&self) -> Result<(usize, Vec<PendingMultipart>), E>
    where
        E: From<blob_store::BlobStoreError> + From<metadata_store::MetadataError>,
    {
        let pending = self.blobs.list_multipart().await?;
        let ids: Vec<String> = pending.iter().map(|p| p.id.0.clone()).collect();
        let owned: HashSet<String> = self
            .fsck
            .owned_multiparts(&ids)
            .await?
            .into_iter()
            .collect();
        let scanned = pending.len();
        let orphans = pending
            .into_iter()
            .filter(|p| !owned.contains(&p.id.0))
            .collect();
        Ok((scanned, orphans))
    }

    /// Aborts `upload` (one of [`Backends::orphan_multiparts`]) if it began
    /// before `before` (Unix ms); answers whether it did.
    pub async fn abort_orphan_if_before(
        &self,
        upload: &PendingMultipart,
        before: i64,
    ) -> Result<bool, blob_store::BlobStoreError> {
        let old = upload.initiated_ms.is_some_and(|t| t < before);
        match (old, BlobKey::parse(&upload.key)) {
            (true, Ok(key)) => {
                self.blobs.abort_multipart(&key, &upload.id).await?;
                Ok(true)
            }
            _ => Ok(false),
        }
    }
}
