//! What every handler gets: the services, built once by the composition
//! root (`app`). Handlers call services; the backends are here only for
//! the readiness probe (and for tests that look behind the API).

use std::sync::Arc;

use axum::extract::FromRef;
use metrics_exporter_prometheus::PrometheusHandle;
use tokio_util::sync::CancellationToken;

use crate::auth::TokenAuthority;
use crate::backends::Backends;
use crate::chat::Chat;
use crate::config::Settings;
use crate::downloads::Downloads;
use crate::media::MediaCatalog;
use crate::quotas::QuotaBook;
use crate::realtime::Gateway;
use crate::uploads::UploadService;

/// Shared by every request.
#[derive(Clone, Debug)]
pub struct AppState {
    /// The configuration in force.
    pub settings: Arc<Settings>,
    /// The backends, for the readiness probe and tests.
    pub backends: Backends,
    /// Signs and checks bearer tokens.
    pub tokens: TokenAuthority,
    /// Upload sessions and one-request uploads.
    pub uploads: UploadService,
    /// Media items and who may read them.
    pub media: MediaCatalog,
    /// Conversations, messages, receipts and sync.
    pub chat: Chat,
    /// Download URLs.
    pub downloads: Downloads,
    /// This node's WebSocket connections.
    pub realtime: Gateway,
    /// Each user's quotas and use.
    pub quotas: QuotaBook,
    /// Each user's open event streams and sockets on this node.
    pub streams: super::streams::StreamSlots,
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
