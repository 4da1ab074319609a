//! `load download`: redirects to presigned URLs, and fetching them.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;

use super::*;
use crate::http::{Target, noise};
use crate::proc_stats::Watch;

/// `load download`.
#[derive(Debug, clap::Args)]
pub(crate) struct DownloadOptions {
    #[command(flatten)]
    common: Common,
    /// Media items to create first.
    #[arg(long, default_value_t = 200)]
    media: usize,
    /// Their size, in KiB.
    #[arg(long, default_value_t = 64)]
    size_kib: usize,
    /// Concurrent clients.
    #[arg(long, default_value_t = 64)]
    clients: usize,
    /// Seconds of redirects, then as long of fetches.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
}

pub(crate) async fn download(o: &DownloadOptions) -> anyhow::Result<ScenarioReport> {
    let target = o.common.target()?;
    let token = target.token("load-download")?;
    let seed = run_seed();
    let ids: Vec<String> = futures_util::stream::iter(0..o.media)
        .map(|i| {
            let (target, token) = (target.clone(), token.clone());
            let body = noise(o.size_kib << 10, seed.wrapping_add(i as u64));
            async move {
                let post = target
                    .client
                    .post(target.url(&format!("/v1/media?file_name=d-{i}.bin")))
                    .bearer_auth(token)
                    .body(body);
                let (_, _, body) = target.send("setup", post).await?;
                let v: serde_json::Value = serde_json::from_slice(&body).ok()?;
                v["media_id"].as_str().map(str::to_owned)
            }
        })
        .buffer_unordered(16)
        .filter_map(|id| async move { id })
        .collect()
        .await;
    anyhow::ensure!(!ids.is_empty(), "could not create any media to download");
    target.recorder.reset();
    let ids = Arc::new(ids);
    let watch = o.common.service_pid.map(Watch::start);
    let started = Instant::now();
    let t = Instant::now();
    let redirects: u64 = drive(&target, &token, &ids, o.clients, o.seconds, false)
        .await
        .iter()
        .map(|(n, _)| n)
        .sum();
    let redirect_s = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let fetched = drive(&target, &token, &ids, o.clients, o.seconds, true).await;
    let fetch_s = t.elapsed().as_secs_f64();
    let mut rates = BTreeMap::new();
    rates.insert("redirects/s".into(), redirects as f64 / redirect_s);
    rates.insert(
        "redirect+fetch/s".into(),
        fetched.iter().map(|(n, _)| n).sum::<u64>() as f64 / fetch_s,
    );
    rates.insert(
        "fetched MB/s".into(),
        fetched.iter().map(|(_, b)| b).sum::<u64>() as f64 / MIB / fetch_s,
    );
    let report = finish(
        "download",
        serde_json::json!({"media": ids.len(), "size_KiB": o.size_kib, "clients": o.clients, "seconds": o.seconds}),
        &target,
        started,
        watch,
        rates,
    );
    target.clean_up().await;
    Ok(report)
}

/// `clients` loops of redirects (and with `fetch`, the fetch each points
/// at) for `seconds`: (redirects, bytes fetched) per client.
async fn drive(
    target: &Target,
    token: &str,
    ids: &Arc<Vec<String>>,
    clients: usize,
    seconds: u64,
    fetch: bool,
) -> Vec<(u64, u64)> {
    let deadline = Instant::now() + Duration::from_secs(seconds);
    futures_util::stream::iter(0..clients)
        .map(|c| async move {
            let (mut n, mut bytes, mut i) = (0u64, 0u64, c);
            while Instant::now() < deadline {
                let id = &ids[i % ids.len()];
                i += 7;
                let get = target
                    .client
                    .get(target.url(&format!("/v1/media/{id}/content")))
                    .bearer_auth(token);
                let Some((302, headers, _)) = target.send("GET content (302)", get).await else {
                    continue;
                };
                n += 1;
                if fetch {
                    let location = headers
                        .get("location")
                        .and_then(|l| l.to_str().ok())
                        .unwrap_or_default();
                    let url = if location.starts_with('/') {
                        target.url(location)
                    } else {
                        location.to_owned()
                    };
                    if let Some((200, _, body)) = target
                        .send("GET presigned URL", target.client.get(url))
                        .await
                    {
                        bytes += body.len() as u64;
                    }
                }
            }
            (n, bytes)
        })
        .buffer_unordered(clients)
        .collect()
        .await
}
