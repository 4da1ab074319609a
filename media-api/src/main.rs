//! `media-api`: parses the command line and hands over to the library.

use clap::Parser;

/// jemalloc, not glibc's malloc: under a download-heavy mix glibc kept the
/// memory the service had freed (resident memory grew 12 MiB a minute with a
/// live heap under 20 MB); jemalloc gives freed pages back after its decay
/// time, its background threads purging even while the service is idle
/// (load/RESULTS.md, the soak). `_RJEM_MALLOC_CONF` tunes it.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> std::process::ExitCode {
    let cli = media_api::cli::Cli::parse();
    let outcome = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(anyhow::Error::from)
        .and_then(|runtime| {
            let outcome = runtime.block_on(media_api::cli::run(cli));
            // The service has drained and stopped; a task still running
            // (a library's background loop) must not keep the process alive.
            runtime.shutdown_timeout(std::time::Duration::from_secs(5));
            outcome
        });
    match outcome {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("media-api: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
