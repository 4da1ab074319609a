//! `load dedup`: instant dedup by hash for an owner.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use futures_util::StreamExt;

use super::*;
use crate::http::noise;
use crate::proc_stats::Watch;

/// `load dedup`.
#[derive(Debug, clap::Args)]
pub(crate) struct DedupOptions {
    #[command(flatten)]
    common: Common,
    /// Users uploading the same content.
    #[arg(long, default_value_t = 64)]
    users: usize,
    /// Its size, in KiB.
    #[arg(long, default_value_t = 1024)]
    size_kib: usize,
    /// Concurrent clients.
    #[arg(long, default_value_t = 32)]
    clients: usize,
    /// How long to hammer the owner's instant dedup, in seconds.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Uploads, one at a time, of new content and of someone else's content
    /// (each by a user who never held it), interleaved: what the dedup side
    /// channel's timing is, in the latencies of the two labels.
    #[arg(long, default_value_t = 200)]
    timing: usize,
}

pub(crate) async fn dedup(o: &DedupOptions) -> anyhow::Result<ScenarioReport> {
    let target = o.common.target()?;
    let seed = run_seed();
    let content = bytes::Bytes::from(noise(o.size_kib << 10, seed));
    let hash = blake3::hash(&content).to_hex().to_string();
    let watch = o.common.service_pid.map(Watch::start);
    let started = Instant::now();
    // Phase 1: many users, one content, each sending the bytes.
    futures_util::stream::iter(0..o.users)
        .map(|u| {
            let (target, body) = (target.clone(), content.clone());
            async move {
                let Ok(token) = target.token(&format!("load-dedup-{u}")) else {
                    return;
                };
                let post = target
                    .client
                    .post(target.url("/v1/media?file_name=same.bin"))
                    .bearer_auth(token)
                    .body(body);
                target.send("POST /v1/media (same)", post).await;
            }
        })
        .buffer_unordered(o.clients)
        .collect::<Vec<()>>()
        .await;
    let shared_seconds = started.elapsed().as_secs_f64();
    // Phase 2: the owner re-attaches content it has, naming it by hash only.
    let owner = target.token("load-dedup-0")?;
    let deadline = Instant::now() + Duration::from_secs(o.seconds);
    let instant_started = Instant::now();
    let counts = futures_util::stream::iter(0..o.clients)
        .map(|_| {
            let (target, owner, hash) = (target.clone(), owner.clone(), hash.clone());
            let size = content.len();
            async move {
                let mut n = 0u64;
                while Instant::now() < deadline {
                    let post = target
                        .client
                        .post(target.url("/v1/uploads"))
                        .bearer_auth(&owner)
                        .json(&serde_json::json!({
                            "file_name": "again.bin", "size": size, "blake3": hash,
                        }));
                    target.send("POST /v1/uploads (instant dedup)", post).await;
                    n += 1;
                }
                n
            }
        })
        .buffer_unordered(o.clients)
        .collect::<Vec<u64>>()
        .await;
    let instant_seconds = instant_started.elapsed().as_secs_f64();
    // Phase 3: what a user who does not hold a content sees of whether
    // anyone else does, one request at a time so nothing else interferes.
    for i in 0..o.timing {
        let fresh = bytes::Bytes::from(noise(o.size_kib << 10, seed ^ (i as u64 + 1)));
        for (label, user, body) in [
            (
                "POST /v1/media (new content)",
                format!("load-new-{i}"),
                fresh,
            ),
            (
                "POST /v1/media (someone else's content)",
                format!("load-copy-{i}"),
                content.clone(),
            ),
        ] {
            let token = target.token(&user)?;
            let post = target
                .client
                .post(target.url("/v1/media?file_name=timing.bin"))
                .bearer_auth(token)
                .body(body);
            target.send(label, post).await;
        }
    }
    let mut rates = BTreeMap::new();
    rates.insert(
        "same-content uploads/s".into(),
        o.users as f64 / shared_seconds,
    );
    rates.insert(
        "instant dedup requests/s".into(),
        counts.iter().sum::<u64>() as f64 / instant_seconds,
    );
    let report = finish(
        "dedup",
        serde_json::json!({"users": o.users, "size_KiB": o.size_kib, "clients": o.clients, "seconds": o.seconds, "timing": o.timing}),
        &target,
        started,
        watch,
        rates,
    );
    target.clean_up().await;
    Ok(report)
}
