//! `load batch`: does a running reprocessing batch delay a live upload's
//! thumbnail? Live images are uploaded one at a time and timed from the
//! upload to `ready`, first with the workers idle (the baseline), then while
//! a batch remakes every variant of a pool of images, in the same run.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde_json::json;

use super::*;

/// `load batch`.
#[derive(Debug, clap::Args)]
pub(crate) struct BatchOptions {
    #[command(flatten)]
    common: Common,
    /// Images the batch reprocesses.
    #[arg(long, default_value_t = 120)]
    pool: usize,
    /// Live uploads timed on each side.
    #[arg(long, default_value_t = 20)]
    live: usize,
    /// Image edge, pixels (4:3).
    #[arg(long, default_value_t = 1600)]
    width: u32,
}

/// A photo-like JPEG no other run has made.
fn image(width: u32, seed: u64) -> anyhow::Result<Vec<u8>> {
    let height = width * 3 / 4;
    // splitmix64: every seed its own noise (never zero for xorshift).
    let mut state = {
        let mut z = seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        (z ^ (z >> 31)) | 1
    };
    let img = image::RgbImage::from_fn(width, height, |x, y| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let noise = (state & 0x1f) as i32 - 16;
        let base = [(x * 255 / width) as i32, (y * 255 / height) as i32, 128];
        image::Rgb(base.map(|c| (c + noise).clamp(0, 255) as u8))
    });
    let mut out = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 85).encode_image(&img)?;
    Ok(out)
}

/// Uploads one image and waits until it is no longer `processing`;
/// answers the seconds from the upload to then.
async fn upload_until_ready(
    target: &Target,
    token: &str,
    name: &str,
    body: Vec<u8>,
) -> anyhow::Result<f64> {
    let started = Instant::now();
    let r = target
        .client
        .post(target.url(&format!("/v1/media?file_name={name}")))
        .bearer_auth(token)
        .header("content-type", "image/jpeg")
        .body(body)
        .send()
        .await?;
    anyhow::ensure!(r.status() == 201, "upload: {}", r.status());
    let media: serde_json::Value = r.json().await?;
    let id = media["media_id"].as_str().unwrap_or_default().to_owned();
    loop {
        let m: serde_json::Value = target
            .client
            .get(target.url(&format!("/v1/media/{id}")))
            .bearer_auth(token)
            .send()
            .await?
            .json()
            .await?;
        if m["status"] != "processing" {
            anyhow::ensure!(m["status"] == "ready", "processing ended {}", m["status"]);
            return Ok(started.elapsed().as_secs_f64());
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn percentiles(seconds: &[f64]) -> (f64, f64) {
    let mut h = Histogram::<u64>::new(3).expect("histogram");
    for s in seconds {
        let _ = h.record((s * 1e6) as u64);
    }
    (
        h.value_at_quantile(0.5) as f64 / 1000.0,
        h.value_at_quantile(0.95) as f64 / 1000.0,
    )
}

pub(crate) async fn batch(o: &BatchOptions) -> anyhow::Result<ScenarioReport> {
    let target = o.common.target()?;
    let seed = run_seed();
    let pool_user = format!("load-batch-pool-{seed}");
    let pool_token = target.token(&pool_user)?;
    let live_token = target.token("load-batch-live")?;
    let admin = target.admin_token("load-batch-operator")?;
    // The pool, processed once.
    for i in 0..o.pool {
        let body = image(o.width, seed.wrapping_add(i as u64))?;
        upload_until_ready(&target, &pool_token, &format!("pool-{i}.jpg"), body).await?;
    }
    let mut live_seed = seed.wrapping_add(1 << 40);
    let mut live = |n: usize| -> anyhow::Result<Vec<Vec<u8>>> {
        (0..n)
            .map(|_| {
                live_seed += 1;
                image(o.width, live_seed)
            })
            .collect()
    };
    let idle_bodies = live(o.live)?;
    let busy_bodies = live(o.live)?;
    let watch = o.common.service_pid.map(Watch::start);
    let started = Instant::now();
    let mut idle = Vec::new();
    for (i, body) in idle_bodies.into_iter().enumerate() {
        idle.push(upload_until_ready(&target, &live_token, &format!("idle-{i}.jpg"), body).await?);
    }
    // The batch: every variant of every pool image, as fast as it goes.
    let r = target
        .client
        .post(target.url("/v1/admin/reprocess"))
        .bearer_auth(&admin)
        .json(&json!({"selector": {"owner": pool_user}}))
        .send()
        .await?;
    anyhow::ensure!(r.status() == 202, "reprocess: {}", r.status());
    let started_batch = r.json::<serde_json::Value>().await?;
    let batch_id = started_batch["batch_id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let matched = started_batch["matched"].as_u64().unwrap_or(0);
    anyhow::ensure!(
        matched == o.pool as u64,
        "the batch matched {matched} of {}",
        o.pool
    );
    let batch_started = Instant::now();
    let state = || async {
        target
            .client
            .get(target.url(&format!("/v1/admin/batches/{batch_id}")))
            .bearer_auth(&admin)
            .send()
            .await?
            .json::<serde_json::Value>()
            .await
            .map_err(anyhow::Error::from)
    };
    let mut busy = Vec::new();
    for (i, body) in busy_bodies.into_iter().enumerate() {
        busy.push(upload_until_ready(&target, &live_token, &format!("busy-{i}.jpg"), body).await?);
    }
    let during = state().await?;
    let running_throughout = during["state"] == "running";
    loop {
        let b = state().await?;
        if b["state"] == "done" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let batch_seconds = batch_started.elapsed().as_secs_f64();
    let (idle_p50, idle_p95) = percentiles(&idle);
    let (busy_p50, busy_p95) = percentiles(&busy);
    let mut rates = BTreeMap::new();
    rates.insert("batch jobs/s".into(), matched as f64 / batch_seconds);
    let mut report = finish(
        "batch",
        json!({
            "pool": o.pool, "live": o.live, "image": format!("{}x{} JPEG", o.width, o.width * 3 / 4),
            "batch_running_throughout": running_throughout,
            "batch_jobs_done_when_live_ended": during["done"],
        }),
        &target,
        started,
        watch,
        rates,
    );
    for (k, v) in [
        ("live ms p50, workers idle (baseline)", idle_p50),
        ("live ms p95, workers idle (baseline)", idle_p95),
        ("live ms p50, batch running", busy_p50),
        ("live ms p95, batch running", busy_p95),
        ("live p50 ratio (batch / idle)", busy_p50 / idle_p50),
        ("live p95 ratio (batch / idle)", busy_p95 / idle_p95),
    ] {
        report.derived.insert(k.into(), v);
    }
    Ok(report)
}
