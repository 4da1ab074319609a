//! `load tus`: the same files through tus as a stock client sends them by
//! default (one creation, then the whole file in one PATCH, as
//! tus-js-client's `chunkSize: Infinity` does) against the native chunked
//! API (8 MiB chunks, 4 in flight), rounds interleaved in one run.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use super::*;
use crate::http::noise;

/// Writes the page cache's dirty bytes out (`sync`), so that a side is not
/// charged for the writeback of the one before it.
fn settle() {
    let _ = std::process::Command::new("sync").status();
}

/// `load tus`.
#[derive(Debug, clap::Args)]
pub(crate) struct TusOptions {
    #[command(flatten)]
    common: Common,
    /// Uploads per side per round.
    #[arg(long, default_value_t = 8)]
    uploads: usize,
    /// Uploads at once.
    #[arg(long, default_value_t = 4)]
    concurrency: usize,
    /// Bytes per upload, in MiB.
    #[arg(long, default_value_t = 64)]
    size_mib: usize,
    /// Rounds (both sides each round, in alternating order).
    #[arg(long, default_value_t = 4)]
    rounds: usize,
}

async fn tus_one(target: &Target, token: &str, i: usize, data: Arc<Vec<u8>>) {
    let create = target
        .client
        .post(target.url("/v1/tus/"))
        .bearer_auth(token)
        .header("tus-resumable", "1.0.0")
        .header("upload-length", data.len().to_string())
        .header("upload-metadata", "filename bG9hZC5iaW4=");
    let Some((201, headers, _)) = target.send("POST /v1/tus/", create).await else {
        return;
    };
    let Some(location) = headers.get("location").and_then(|v| v.to_str().ok()) else {
        return;
    };
    let patch = target
        .client
        .patch(target.url(location))
        .bearer_auth(token)
        .header("tus-resumable", "1.0.0")
        .header("upload-offset", "0")
        .header("content-type", "application/offset+octet-stream")
        .body(bytes::Bytes::copy_from_slice(&data));
    let _ = i;
    target.send("PATCH /v1/tus/{id}", patch).await;
}

pub(crate) async fn tus(o: &TusOptions) -> anyhow::Result<ScenarioReport> {
    let target = o.common.target()?;
    let size = o.size_mib << 20;
    let seed = run_seed();
    let token = target.token("load-tus")?;
    let watch = o.common.service_pid.map(Watch::start);
    let started = Instant::now();
    let (mut native_s, mut tus_s) = (0.0, 0.0);
    for round in 0..o.rounds {
        // Fresh contents per side and round: nothing deduplicates.
        let make = |side: u64| -> Vec<Arc<Vec<u8>>> {
            (0..o.uploads)
                .map(|i| {
                    let n = seed
                        .wrapping_add((round * 1000 + i) as u64)
                        .wrapping_add(side << 32);
                    Arc::new(noise(size, n))
                })
                .collect()
        };
        let (native, tus_files) = (make(1), make(2));
        // Each side starts with the page cache's dirty bytes written out
        // (the other side's writes would otherwise be flushed on its time),
        // and the order changes every round.
        let native_side = || async {
            settle();
            let t = Instant::now();
            futures_util::stream::iter(native.iter().cloned().enumerate())
                .map(|(i, data)| {
                    let (target, token) = (target.clone(), token.clone());
                    async move {
                        super::ingest::upload_one(&target, &token, i, &data, 8 << 20, 4).await
                    }
                })
                .buffer_unordered(o.concurrency)
                .collect::<Vec<()>>()
                .await;
            t.elapsed().as_secs_f64()
        };
        let tus_side = || async {
            settle();
            let t = Instant::now();
            futures_util::stream::iter(tus_files.iter().cloned().enumerate())
                .map(|(i, data)| {
                    let (target, token) = (target.clone(), token.clone());
                    async move { tus_one(&target, &token, i, data).await }
                })
                .buffer_unordered(o.concurrency)
                .collect::<Vec<()>>()
                .await;
            t.elapsed().as_secs_f64()
        };
        if round % 2 == 0 {
            native_s += native_side().await;
            tus_s += tus_side().await;
        } else {
            tus_s += tus_side().await;
            native_s += native_side().await;
        }
    }
    let side_bytes = (size * o.uploads * o.rounds) as f64;
    let mut rates = BTreeMap::new();
    rates.insert("tus MB/s".into(), side_bytes / MIB / tus_s);
    let mut report = finish(
        "tus",
        serde_json::json!({
            "uploads_per_side_per_round": o.uploads, "concurrency": o.concurrency,
            "S_MiB": o.size_mib, "rounds": o.rounds,
            "tus": "one creation + the whole file in one PATCH (tus-js-client's default)",
            "order": "native first in even rounds, tus first in odd ones; sync before each side",
            "native": "8 MiB chunks, 4 in flight",
        }),
        &target,
        started,
        watch,
        rates,
    );
    report
        .derived
        .insert("native MB/s (baseline)".into(), side_bytes / MIB / native_s);
    report
        .derived
        .insert("tus / native".into(), native_s / tus_s);
    Ok(report)
}
