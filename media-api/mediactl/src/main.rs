//! `mediactl`: the media service from a terminal. Uploads (chunked, in
//! parallel, resumable) and downloads (resumable) as a client app does, and
//! the operators' tools: reprocessing batches, erasure, the consistency
//! check, moderation, statistics and jobs.
//!
//! Exit codes: 0 done, 1 a local failure (a file, the state file), 2 a usage
//! error, 3 the service refused (a 4xx problem), 4 the service is
//! unavailable (a 5xx, or no answer), 130 interrupted.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

mod admin;
mod client;
mod download;
mod output;
mod upload;

use client::{Api, Failure};

/// The media service from a terminal.
#[derive(Debug, Parser)]
#[command(name = "mediactl", version, about, long_about = None)]
struct Cli {
    /// The service's base URL.
    #[arg(
        long,
        env = "MEDIA_URL",
        default_value = "http://127.0.0.1:8080",
        global = true
    )]
    url: String,
    /// A bearer token (`media-api token --user USER [--admin]` mints one).
    #[arg(long, env = "MEDIA_TOKEN", hide_env_values = true, global = true)]
    token: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Uploads files in chunks, several at once; run again after an
    /// interruption, it sends only what the service is missing.
    Upload(upload::UploadArgs),
    /// Downloads a media item or one of its variants, resuming a partial file.
    Download(download::DownloadArgs),
    /// Lists your media, newest first.
    Ls(LsArgs),
    /// Deletes media items.
    Rm {
        /// The media ids.
        #[arg(required = true)]
        media_ids: Vec<String>,
    },
    /// The operators' tools (a token with the admin scope).
    #[command(subcommand)]
    Admin(admin::AdminCommand),
}

/// `mediactl ls`.
#[derive(Debug, Args)]
struct LsArgs {
    /// Items per page.
    #[arg(long, default_value_t = 50)]
    limit: u32,
    /// Continue after this cursor (printed under a full page).
    #[arg(long)]
    cursor: Option<String>,
    /// The service's JSON, for scripts.
    #[arg(long)]
    json: bool,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start: {e}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            eprintln!("error: {failure}");
            ExitCode::from(failure.exit_code())
        }
    }
}

async fn run(cli: Cli) -> Result<(), Failure> {
    let api = Api::new(&cli.url, cli.token.clone())?;
    match cli.command {
        Command::Upload(args) => upload::run(&api, args).await,
        Command::Download(args) => download::run(&api, args).await,
        Command::Ls(args) => ls(&api, args).await,
        Command::Rm { media_ids } => {
            for id in media_ids {
                api.send(api.delete(&format!("/v1/media/{id}"))).await?;
                println!("deleted {id}");
            }
            Ok(())
        }
        Command::Admin(command) => admin::run(&api, command).await,
    }
}

async fn ls(api: &Api, args: LsArgs) -> Result<(), Failure> {
    let mut path = format!("/v1/media?limit={}", args.limit);
    if let Some(cursor) = &args.cursor {
        path.push_str(&format!("&cursor={cursor}"));
    }
    let page = api.json(api.get(&path)).await?;
    if args.json {
        println!("{page:#}");
        return Ok(());
    }
    let rows = output::rows(&page["items"], |m| {
        vec![
            output::text(&m["media_id"]),
            output::text(&m["file_name"]),
            output::bytes(m["size"].as_u64().unwrap_or(0)),
            output::text(&m["content_type"]),
            output::text(&m["status"]),
            output::text(&m["created_at"]),
        ]
    });
    output::table(
        &["MEDIA ID", "NAME", "SIZE", "TYPE", "STATUS", "CREATED"],
        &rows,
    );
    if let Some(next) = page["next_cursor"].as_str() {
        println!("more: mediactl ls --cursor {next}");
    }
    Ok(())
}

/// Where mediactl keeps what it must remember between runs.
fn state_dir() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_STATE_HOME")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/state")))?;
    Some(base.join("mediactl"))
}
