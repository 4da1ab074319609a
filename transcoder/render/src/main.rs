//! `media-render`: processes one media file, the child every processing job
//! runs under resource limits (`ulimit -v`, `ulimit -t`, a wall-clock
//! timeout). Not for people: the worker writes the job's specification and
//! reads the result (the protocol is `transcoder::render`).
//!
//! It is a binary of its own, in a package of its own, so that the decoders
//! (FFmpeg and the ~170 shared libraries it pulls in, libjpeg-turbo,
//! libwebp) are linked only here and never into the serving process, and so
//! that this child links no web server, database driver or S3 client. It
//! starts no async runtime: it is short-lived and on the clock (every job
//! pays its start-up).
//!
//! Usage: `media-render --spec PATH`. Exit 0 with the result as JSON on
//! stdout; exit `EXIT_MEDIA_REFUSED` when the media itself is refused; exit 1
//! on our own failure. Either way the reason is the last line on stderr.

use std::process::ExitCode;

use transcoder::render::{self, EXIT_MEDIA_REFUSED, RenderError};

const USAGE: &str = "usage: media-render --spec PATH (run by the service's workers)";

fn main() -> ExitCode {
    let args: Vec<std::ffi::OsString> = std::env::args_os().skip(1).collect();
    let spec = match args.as_slice() {
        [flag, path] if flag == "--spec" => std::path::PathBuf::from(path),
        [flag] if flag == "--version" || flag == "-V" => {
            println!("media-render {}", env!("CARGO_PKG_VERSION"));
            return ExitCode::SUCCESS;
        }
        _ => {
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    match render::run(&spec).and_then(|result| {
        serde_json::to_string(&result)
            .map_err(|e| RenderError::Internal(format!("encoding the result: {e}")))
    }) {
        Ok(json) => {
            println!("{json}");
            ExitCode::SUCCESS
        }
        Err(RenderError::Media(reason)) => {
            eprintln!("media-render: {reason}");
            ExitCode::from(EXIT_MEDIA_REFUSED as u8)
        }
        Err(RenderError::Internal(reason)) => {
            eprintln!("media-render: {reason}");
            ExitCode::FAILURE
        }
    }
}
