//! `load small`: one-request uploads against a direct-to-store baseline.

use std::collections::BTreeMap;
use std::time::Instant;

use futures_util::future::BoxFuture;
use futures_util::{FutureExt, StreamExt};

use super::*;
use crate::http::{EndpointLatency, noise};
use crate::proc_stats::Watch;

/// `load small`.
#[derive(Debug, clap::Args)]
pub(crate) struct SmallOptions {
    #[command(flatten)]
    common: Common,
    /// Concurrent clients.
    #[arg(long, default_value_t = 32)]
    clients: usize,
    /// Attachments in all.
    #[arg(long, default_value_t = 3000)]
    count: usize,
    /// Bytes per attachment, in KiB.
    #[arg(long, default_value_t = 100)]
    size_kib: usize,
    #[command(flatten)]
    baseline: BaselineOptions,
}

pub(crate) async fn small(o: &SmallOptions) -> anyhow::Result<ScenarioReport> {
    let target = o.common.target()?;
    let seed = run_seed();
    let bodies: Vec<bytes::Bytes> = (0..o.count)
        .map(|i| bytes::Bytes::from(noise(o.size_kib << 10, seed.wrapping_add(i as u64))))
        .collect();
    let tokens: Vec<String> = (0..o.clients)
        .map(|c| target.token(&format!("load-small-{c}")))
        .collect::<anyhow::Result<_>>()?;
    let watch = o.common.service_pid.map(Watch::start);
    let started = Instant::now();
    futures_util::stream::iter(bodies.iter().cloned().enumerate())
        .map(|(i, body)| {
            let target = target.clone();
            let token = tokens[i % tokens.len()].clone();
            async move {
                let post = target
                    .client
                    .post(target.url(&format!("/v1/media?file_name=note-{i}.bin")))
                    .bearer_auth(token)
                    .body(body);
                target.send("POST /v1/media", post).await;
            }
        })
        .buffer_unordered(o.clients)
        .collect::<Vec<()>>()
        .await;
    let seconds = started.elapsed().as_secs_f64();
    let mut rates = BTreeMap::new();
    rates.insert("uploads/s".into(), o.count as f64 / seconds);
    rates.insert(
        "MB/s".into(),
        (o.count * (o.size_kib << 10)) as f64 / MIB / seconds,
    );
    let mut report = finish(
        "small",
        serde_json::json!({"clients": o.clients, "count": o.count, "size_KiB": o.size_kib}),
        &target,
        started,
        watch,
        rates,
    );
    if let Some((seconds, latency)) = small_baseline(&o.baseline, &bodies, o.clients).await? {
        let per_s = o.count as f64 / seconds;
        report.derived.insert("baseline uploads/s".into(), per_s);
        report.derived.insert(
            "service / baseline".into(),
            report.rates["uploads/s"] / per_s,
        );
        report.latency.extend(latency);
    }
    target.clean_up().await;
    Ok(report)
}

/// The same bodies written straight to the store, one object (or file) each,
/// `clients` at a time: the seconds it took and the write latencies.
async fn small_baseline(
    options: &BaselineOptions,
    bodies: &[bytes::Bytes],
    clients: usize,
) -> anyhow::Result<Option<(f64, Vec<EndpointLatency>)>> {
    let recorder = crate::http::Recorder::default();
    let timed_write = |endpoint: &'static str, write: BoxFuture<'static, anyhow::Result<()>>| {
        let recorder = recorder.clone();
        async move {
            let start = Instant::now();
            write.await?;
            recorder.latency(endpoint, start.elapsed());
            anyhow::Ok(())
        }
    };
    let seconds = if let Some(location) = &options.baseline_s3 {
        let (client, bucket, prefix) = baseline_client(location).await?;
        let key = |i: usize| format!("{prefix}-small-{i}");
        let writes = bodies.iter().enumerate().map(|(i, body)| {
            let put = client
                .put_object()
                .bucket(&bucket)
                .key(key(i))
                .body(body.clone().into())
                .send();
            timed_write(
                "baseline: S3 PutObject",
                async move { put.await.map(drop).map_err(anyhow::Error::from) }.boxed(),
            )
        });
        let seconds = timed(writes, clients).await?;
        let deletes = (0..bodies.len()).map(|i| {
            let delete = client.delete_object().bucket(&bucket).key(key(i)).send();
            async move { delete.await.map(drop).map_err(anyhow::Error::from) }
        });
        timed(deletes, clients).await?;
        seconds
    } else if let Some(dir) = &options.baseline_dir {
        let dir = dir.join(format!("small-{}", std::process::id()));
        tokio::fs::create_dir_all(&dir).await?;
        // What any durable writer does: write a temporary file, sync, rename.
        let writes = bodies.iter().enumerate().map(|(i, body)| {
            let (tmp, dest, body) = (
                dir.join(format!("{i}.tmp")),
                dir.join(i.to_string()),
                body.clone(),
            );
            let write = tokio::task::spawn_blocking(move || {
                use std::io::Write;
                let mut file = std::fs::File::create(&tmp)?;
                file.write_all(&body)?;
                file.sync_data()?;
                std::fs::rename(&tmp, &dest)
            });
            timed_write(
                "baseline: file write+fsync",
                async move { Ok(write.await??) }.boxed(),
            )
        });
        let seconds = timed(writes, clients).await?;
        tokio::fs::remove_dir_all(&dir).await?;
        seconds
    } else {
        return Ok(None);
    };
    Ok(Some((seconds, recorder.summary().0)))
}
