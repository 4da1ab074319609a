//! `media-api`: parses the command line and hands over to the library.

use clap::Parser;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = media_api::cli::Cli::parse();
    match media_api::cli::run(cli).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("media-api: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
