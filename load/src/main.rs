//! `load`: benchmarks of the service's hot paths, each reported as a ratio
//! against a baseline measured in the same run on the same machine.
//!
//! `load processing` times the worker pool's media work against the tools
//! the field uses: a 12-megapixel JPEG to a 320 px thumbnail against
//! libvips' `vipsthumbnail`, and the `h264_720p` transcode against the
//! `ffmpeg` command line with the same settings. Run it under
//! `taskset -c 1` so both sides get the same single core.

mod measure;
mod processing;

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
    /// Thumbnail and transcode against vipsthumbnail and ffmpeg.
    Processing(processing::Options),
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let report = match cli.command {
        Command::Processing(options) => processing::run(&options)?,
    };
    if cli.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", report.table());
    }
    Ok(())
}
