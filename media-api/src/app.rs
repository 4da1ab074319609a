//! The composition root: `Application::build` connects the backends, builds
//! each service once over them, and binds the listener (port 0 in tests); `run_until` serves until the
//! given shutdown future resolves, then drains in-flight requests.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::auth::TokenAuthority;
use crate::backends::Backends;
use crate::chat::Chat;
use crate::config::Settings;
use crate::downloads::Downloads;
use crate::http::{self, AppState};
use crate::media::{self, MediaCatalog};
use crate::quotas::QuotaBook;
use crate::realtime::Gateway;
use crate::telemetry;
use crate::uploads::{self, UploadService};

/// A bound, connected, not yet serving service.
#[derive(Debug)]
pub struct Application {
    listener: TcpListener,
    state: AppState,
}

impl Application {
    /// Connects the backends the settings name and binds the listener.
    pub async fn build(settings: Settings) -> anyhow::Result<Self> {
        let backends = Backends::from_settings(&settings).await?;
        Self::build_with(settings, backends).await
    }

    /// As [`Application::build`], over backends the caller made.
    pub async fn build_with(settings: Settings, backends: Backends) -> anyhow::Result<Self> {
        let secret = crate::secrets::load_or_create_secret(
            settings.jwt_secret.as_ref(),
            &settings.data_dir,
        )?;
        if settings.jwt_secret.is_none() && !settings.is_embedded() {
            tracing::warn!(
                "MEDIA_JWT_SECRET is unset: using a secret generated in the data dir; \
                 every API node must share one secret"
            );
        }
        let listener = TcpListener::bind(settings.listen)
            .await
            .with_context(|| format!("while binding MEDIA_LISTEN={}", settings.listen))?;
        let quotas = QuotaBook::new(
            backends.media.clone(),
            backends.progress.clone(),
            settings.quotas.clone(),
        );
        let uploads = UploadService::new(backends.clone(), settings.limits.clone(), quotas.clone())
            .with_max_image_pixels(settings.presets.max_image_pixels);
        let media = MediaCatalog::new(backends.clone(), settings.limits.max_page_size);
        let chat = Chat::new(
            backends.clone(),
            media.clone(),
            settings.chat.clone(),
            quotas.clone(),
        );
        let downloads = Downloads::new(
            backends.blobs.clone(),
            backends.url_signer.clone(),
            &settings,
        );
        let shutdown = CancellationToken::new();
        let realtime = Gateway::new(
            chat.clone(),
            uploads.clone(),
            media.clone(),
            backends.progress.clone(),
            settings.realtime.clone(),
            shutdown.clone(),
        );
        let streams = http::streams::StreamSlots::new(settings.limits.max_streams_per_user);
        let tokens = TokenAuthority::new(&secret).with_max_lifetime(settings.max_token_lifetime);
        let state = AppState {
            settings: Arc::new(settings),
            backends,
            uploads,
            media,
            chat,
            downloads,
            realtime,
            tokens,
            quotas,
            streams,
            metrics: telemetry::metrics_handle(),
            shutdown,
        };
        Ok(Self { listener, state })
    }

    /// The address actually bound (the port is chosen by the OS for port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .unwrap_or(self.state.settings.listen)
    }

    /// The state handlers see.
    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Serves until `shutdown` resolves, then lets in-flight requests finish
    /// for up to `shutdown_grace`.
    pub async fn run_until(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let Self { listener, state } = self;
        let grace = state.settings.shutdown_grace;
        let stopping = state.shutdown.clone();
        let router = http::router(state.clone());
        tracing::info!(
            addr = %listener.local_addr()?,
            metadata = state.backends.metadata.kind(),
            progress = state.backends.progress.kind(),
            blobs = state.backends.blobs.kind(),
            "media-api serving"
        );
        if state.settings.dev_sign_in() {
            tracing::warn!(
                "DEVELOPMENT SIGN-IN IS ON: anyone who reaches this service can get a token for \
                 any user name from POST /dev/sign-in (the web client's sign-in form). It is \
                 on by default only for the embedded default; set MEDIA_DEV_SIGN_IN=false on a \
                 service anyone else can reach"
            );
        }
        tokio::spawn(uploads::run_janitor(
            state.uploads.clone(),
            state.settings.janitor_interval,
            state.settings.gc_grace,
            stopping.clone(),
        ));
        tokio::spawn(media::gc::run_gc(
            state.backends.clone(),
            state.settings.gc_grace,
            state.settings.gc_interval,
            stopping.clone(),
        ));
        tokio::spawn(state.realtime.clone().run_heartbeat());
        tokio::spawn(telemetry::run_metrics_upkeep(
            state.metrics.clone(),
            stopping.clone(),
        ));
        tokio::spawn(crate::chat::run_retention(
            state.chat.clone(),
            state.settings.gc_interval,
            stopping.clone(),
        ));
        let workers = crate::processing::workers_for(&state.settings, true);
        if workers == 0 {
            tracing::warn!(
                "this process runs no processing workers (MEDIA_JOBS__SERVE_WORKERS=0): uploads \
                 stay `processing` until a `media-api worker` process runs against the same \
                 database; /readyz shows the queue"
            );
        }
        let pool = tokio::spawn(crate::processing::run(
            state.backends.clone(),
            state.settings.clone(),
            workers,
            stopping.clone(),
        ));
        let signalled = stopping.clone();
        tokio::spawn(async move {
            shutdown.await;
            signalled.cancel();
        });
        let limits = http::ConnectionLimits {
            header_read_timeout: state.settings.header_read_timeout,
            max_connections: state.settings.max_connections,
        };
        let serve = http::serve(listener, router, limits, stopping.clone());
        let deadline = async {
            stopping.cancelled().await;
            tokio::time::sleep(grace).await;
        };
        tokio::select! {
            result = serve => result.context("while serving HTTP")?,
            () = deadline => tracing::warn!(?grace, "shutdown grace period over; dropping open requests"),
        }
        let _ = tokio::time::timeout(grace, pool).await;
        tracing::info!("media-api stopped");
        Ok(())
    }
}
