//! The application state every handler gets: the backends, chosen once at
//! start-up from the configuration, and the shared services.

use std::sync::Arc;

use axum::extract::FromRef;
use metrics_exporter_prometheus::PrometheusHandle;
use tokio_util::sync::CancellationToken;

use crate::auth::TokenAuthority;
use crate::blob_store::{self, BlobStore};
use crate::config::Settings;
use crate::job_queue::JobQueue;
use crate::metadata_store::{self, MetadataStore};
use crate::progress_bus::{self, ProgressBus};
use crate::upload_session::UploadService;

/// The three seams.
#[derive(Clone)]
pub struct Backends {
    /// Uploads, chunks, blobs, media.
    pub metadata: Arc<dyn MetadataStore>,
    /// The processing queue (the same database).
    pub jobs: Arc<dyn JobQueue>,
    /// Live progress and events.
    pub progress: Arc<dyn ProgressBus>,
    /// Content bytes.
    pub blobs: Arc<dyn BlobStore>,
    /// Checks the filesystem store's download URLs (None on S3, which checks its own).
    pub url_signer: Option<crate::blob_store::fs::UrlSigner>,
    /// Download URLs already signed in the current window.
    pub presigned: Arc<crate::downloads::PresignCache>,
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

impl Backends {
    /// Connects every backend the settings name.
    pub async fn from_settings(settings: &Settings) -> anyhow::Result<Self> {
        let ((metadata, jobs), progress, (blobs, url_signer)) = tokio::try_join!(
            metadata_store::with_queue(settings),
            progress_bus::from_settings(settings),
            blob_store::from_settings(settings),
        )?;
        Ok(Self {
            metadata,
            jobs,
            progress,
            blobs,
            url_signer,
            presigned: Arc::default(),
        })
    }
}

/// Shared by every request.
#[derive(Clone, Debug)]
pub struct AppState {
    /// The configuration in force.
    pub settings: Arc<Settings>,
    /// The backends.
    pub backends: Backends,
    /// Signs and checks bearer tokens.
    pub tokens: TokenAuthority,
    /// Upload sessions and one-request uploads.
    pub uploads: UploadService,
    /// Renders `/metrics`.
    pub metrics: PrometheusHandle,
    /// Cancelled when the service begins to shut down, so long-lived
    /// responses (event streams) end and let the server drain.
    pub shutdown: CancellationToken,
}

impl FromRef<AppState> for TokenAuthority {
    fn from_ref(state: &AppState) -> Self {
        state.tokens.clone()
    }
}
