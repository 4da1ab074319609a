//! The `media-api` command line.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};

use crate::app::Application;
use crate::auth::TokenAuthority;
use crate::backends::Backends;
use crate::config::Settings;
use crate::ids::UserId;
use crate::{processing, shutdown, telemetry};

/// Chunked, resumable, content-addressed media uploads.
#[derive(Debug, Parser)]
#[command(name = "media-api", version, about)]
pub struct Cli {
    /// A TOML configuration file, read after the defaults and before `MEDIA_*` variables.
    #[arg(long, global = true, value_name = "PATH")]
    pub config: Option<PathBuf>,
    /// What to run (default: serve).
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the HTTP API (the default).
    Serve,
    /// Run processing workers only.
    Worker,
    /// Print a bearer token signed with the configured secret (for development).
    Token {
        /// The user id (`sub`).
        #[arg(long)]
        user: String,
        /// Grant the `admin` scope.
        #[arg(long)]
        admin: bool,
        /// How long the token is valid, such as `1h` or `30d`.
        #[arg(long, default_value = "24h", value_parser = humantime::parse_duration)]
        ttl: Duration,
    },
}

/// Runs the command line; the binary's whole job.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    let settings = Settings::load(cli.config.as_deref())?;
    telemetry::init_tracing(settings.log_format);
    match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => {
            let app = Application::build(settings).await?;
            app.run_until(shutdown::signal()).await
        }
        Command::Worker => {
            let backends = Backends::from_settings(&settings).await?;
            let workers = processing::workers_for(&settings, false);
            let stop = tokio_util::sync::CancellationToken::new();
            let pool = tokio::spawn(processing::run(
                backends,
                std::sync::Arc::new(settings),
                workers,
                stop.clone(),
            ));
            shutdown::signal().await;
            stop.cancel();
            pool.await?;
            Ok(())
        }
        Command::Token { user, admin, ttl } => {
            let user =
                UserId::parse(&user).map_err(|why| anyhow::anyhow!("--user {user:?}: {why}"))?;
            let secret = crate::secrets::load_or_create_secret(
                settings.jwt_secret.as_ref(),
                &settings.data_dir,
            )
            .context("while loading the JWT secret")?;
            if ttl > settings.max_token_lifetime {
                anyhow::bail!(
                    "--ttl {}: the service accepts tokens valid for at most {} \
                     (MEDIA_MAX_TOKEN_LIFETIME)",
                    humantime::format_duration(ttl),
                    humantime::format_duration(settings.max_token_lifetime)
                );
            }
            let token = TokenAuthority::new(&secret).mint(&user, admin, ttl)?;
            println!("{token}");
            Ok(())
        }
    }
}
