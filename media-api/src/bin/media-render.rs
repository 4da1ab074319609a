//! `media-render`: processes one media file, the child every processing job
//! runs under resource limits (`ulimit -v`, `ulimit -t`, a wall-clock
//! timeout). Not for people: the worker writes the job's specification and
//! reads the result.
//!
//! It is a binary of its own so that the decoders (FFmpeg and the ~170
//! shared libraries it pulls in, libjpeg-turbo, libwebp) are loaded only
//! here and never into the serving process. It starts no async runtime:
//! it is short-lived and on the clock (every job pays its start-up).

use clap::Parser;

/// The processing child's command line.
#[derive(Debug, Parser)]
#[command(
    name = "media-render",
    version,
    about = "Process one media file (run by workers)"
)]
struct Args {
    /// The job's specification (JSON).
    #[arg(long)]
    spec: std::path::PathBuf,
}

fn main() -> std::process::ExitCode {
    let args = Args::parse();
    match media_api::cli::render(&args.spec) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("media-render: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
