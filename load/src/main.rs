//! `load`: the service measured against baselines in the same run.
//!
//! - `load ingest | small | dedup | download | chat | realtime` drive a running service over
//!   HTTP with many concurrent simulated clients (see load/README.md);
//!   `ingest` also writes the same bytes straight to the store as its
//!   baseline.
//! - `load hash` times the chunk hashing pipeline against `b3sum` and
//!   `sha256sum`.
//! - `load processing` times thumbnails and transcodes against
//!   `vipsthumbnail` and `ffmpeg`.

mod hashing;
mod http;
mod measure;
mod proc_stats;
mod processing;
mod scenarios;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Print JSON instead of a table.
    #[arg(long, global = true)]
    json: bool,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// K concurrent chunked uploads of S bytes, P chunks in flight each.
    Ingest(scenarios::IngestOptions),
    /// Many small attachments through the one-request upload.
    Small(scenarios::SmallOptions),
    /// Many users, one content; then the owner's instant dedup at full rate.
    Dedup(scenarios::DedupOptions),
    /// Presigned-URL redirects, then fetching through them.
    Download(scenarios::DownloadOptions),
    /// Messages from concurrent senders: direct, a big group, one shared group; history and sync.
    Chat(scenarios::ChatOptions),
    /// The same files through tus (a stock client's defaults) and the native chunked API.
    Tus(scenarios::TusOptions),
    /// A live upload's thumbnail while a reprocessing batch runs, against idle workers.
    Batch(scenarios::BatchOptions),
    /// WebSocket delivery: direct, a connected group over two nodes; memory per idle socket.
    Realtime(scenarios::RealtimeOptions),
    /// Mixed traffic for minutes: memory and descriptors after the warm-up against the end.
    Soak(scenarios::SoakOptions),
    /// The chunk hashing pipeline against b3sum and sha256sum.
    Hash(hashing::HashOptions),
    /// Thumbnail and transcode against vipsthumbnail and ffmpeg.
    Processing(processing::Options),
}

fn print<T: serde::Serialize>(
    json: bool,
    report: &T,
    table: impl FnOnce(&T) -> String,
) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(report)?);
    } else {
        print!("{}", table(report));
    }
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let runtime = tokio::runtime::Runtime::new()?;
    match &cli.command {
        Command::Ingest(o) => print(cli.json, &runtime.block_on(scenarios::ingest(o))?, |r| {
            r.table()
        }),
        Command::Small(o) => print(cli.json, &runtime.block_on(scenarios::small(o))?, |r| {
            r.table()
        }),
        Command::Dedup(o) => print(cli.json, &runtime.block_on(scenarios::dedup(o))?, |r| {
            r.table()
        }),
        Command::Download(o) => print(cli.json, &runtime.block_on(scenarios::download(o))?, |r| {
            r.table()
        }),
        Command::Chat(o) => print(cli.json, &runtime.block_on(scenarios::chat(o))?, |r| {
            r.table()
        }),
        Command::Tus(o) => print(cli.json, &runtime.block_on(scenarios::tus(o))?, |r| {
            r.table()
        }),
        Command::Batch(o) => print(cli.json, &runtime.block_on(scenarios::batch(o))?, |r| {
            r.table()
        }),
        Command::Realtime(o) => print(cli.json, &runtime.block_on(scenarios::realtime(o))?, |r| {
            r.table()
        }),
        Command::Soak(o) => print(cli.json, &runtime.block_on(scenarios::soak(o))?, |r| {
            r.table()
        }),
        Command::Hash(o) => print(cli.json, &hashing::run(o)?, |r| r.table()),
        Command::Processing(o) => print(cli.json, &processing::run(o)?, |r| r.table()),
    }
}
