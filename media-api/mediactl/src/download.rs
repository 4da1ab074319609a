//! `mediactl download`: the service hands out a download URL; the bytes
//! come from it into `NAME.part`, which a later run continues with a Range
//! request, and which becomes `NAME` once whole.

use std::path::PathBuf;

use clap::Args;
use futures_util::StreamExt;
use serde_json::Value;
use tokio::io::AsyncWriteExt;

use crate::client::{Api, Failure, checked};
use crate::output::{self, Bars};

/// `mediactl download`.
#[derive(Debug, Args)]
pub(crate) struct DownloadArgs {
    /// The media id (yours, or an attachment of a conversation you are in).
    media_id: String,
    /// Where to write it (default: its name, in the current directory).
    #[arg(short, long)]
    output: Option<PathBuf>,
    /// A variant instead of the original (`thumb`, `preview`, `poster`, …).
    #[arg(long)]
    variant: Option<String>,
}

/// The name a download gets by default: the media's, or for a variant
/// `photo-thumb.webp`.
fn default_name(media: &Value, variant: Option<&str>) -> String {
    let name = media["file_name"].as_str().unwrap_or("download");
    let name = match variant {
        None => name.to_owned(),
        Some(v) => {
            let stem = name.rsplit_once('.').map_or(name, |(s, _)| s);
            let variant = media["variants"]
                .as_array()
                .and_then(|all| all.iter().find(|x| x["name"] == v));
            let ext = variant
                .and_then(|x| x["content_type"].as_str())
                .and_then(|t| t.rsplit('/').next())
                .unwrap_or("bin");
            format!("{stem}-{v}.{ext}")
        }
    };
    // Never a path: only its last component.
    name.rsplit('/').next().unwrap_or("download").to_owned()
}

/// Runs `mediactl download`.
pub(crate) async fn run(api: &Api, args: DownloadArgs) -> Result<(), Failure> {
    let media = api
        .json(api.get(&format!("/v1/media/{}", args.media_id)))
        .await?;
    let out = args
        .output
        .clone()
        .unwrap_or_else(|| PathBuf::from(default_name(&media, args.variant.as_deref())));
    let mut path = format!("/v1/media/{}/content?redirect=false", args.media_id);
    if let Some(v) = &args.variant {
        path.push_str(&format!("&variant={v}"));
    }
    let grant = api.json(api.get(&path)).await?;
    let url = grant["url"]
        .as_str()
        .ok_or_else(|| Failure::Unavailable("the service gave no download URL".into()))?;
    let mut part = out.clone().into_os_string();
    part.push(".part");
    let part = PathBuf::from(part);
    let have = tokio::fs::metadata(&part).await.map_or(0, |m| m.len());
    let mut request = api.fetch(url);
    if have > 0 {
        request = request.header("range", format!("bytes={have}-"));
    }
    let response = request
        .send()
        .await
        .map_err(|e| Failure::Unavailable(e.to_string()))?;
    let (mut file, start) = match response.status().as_u16() {
        206 => (
            tokio::fs::OpenOptions::new()
                .append(true)
                .open(&part)
                .await?,
            have,
        ),
        // The partial file was whole already.
        416 if have > 0 => (
            tokio::fs::OpenOptions::new()
                .append(true)
                .open(&part)
                .await?,
            have,
        ),
        _ => (tokio::fs::File::create(&part).await?, 0),
    };
    let status = response.status().as_u16();
    let response = if status == 416 {
        None
    } else {
        Some(checked(response).await?)
    };
    let total = start
        + response
            .as_ref()
            .and_then(reqwest::Response::content_length)
            .unwrap_or(0);
    let bars = Bars::new();
    let bar = bars.bytes(&default_name(&media, args.variant.as_deref()), total);
    bar.set_position(start);
    if start > 0 {
        bars.println(&format!("resuming after {}", output::bytes(start)));
    }
    if let Some(response) = response {
        let mut body = response.bytes_stream();
        let copy = async {
            while let Some(chunk) = body.next().await {
                let chunk = chunk.map_err(|e| Failure::Unavailable(e.to_string()))?;
                file.write_all(&chunk).await?;
                bar.inc(chunk.len() as u64);
            }
            file.flush().await?;
            Ok::<(), Failure>(())
        };
        tokio::select! {
            outcome = copy => outcome?,
            _ = tokio::signal::ctrl_c() => {
                let _ = file.flush().await;
                bar.abandon();
                return Err(Failure::Interrupted(
                    "interrupted: run the same command again to continue".into(),
                ));
            }
        }
    }
    drop(file);
    tokio::fs::rename(&part, &out).await?;
    bar.finish_and_clear();
    let size = tokio::fs::metadata(&out).await?.len();
    bars.println(&format!("{}  {}", out.display(), output::bytes(size)));
    Ok(())
}
