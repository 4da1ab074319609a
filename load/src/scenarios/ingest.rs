//! `load ingest`: large chunked uploads against a direct-to-store baseline.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use futures_util::StreamExt;

use super::*;
use crate::http::{Target, noise};
use crate::proc_stats::Watch;

/// `load ingest`.
#[derive(Debug, clap::Args)]
pub(crate) struct IngestOptions {
    #[command(flatten)]
    common: Common,
    /// Uploads in all.
    #[arg(long, default_value_t = 16)]
    uploads: usize,
    /// Uploads at once (K).
    #[arg(long, default_value_t = 8)]
    concurrency: usize,
    /// Bytes per upload (S), in MiB.
    #[arg(long, default_value_t = 64)]
    size_mib: usize,
    /// Chunks in flight per upload (P).
    #[arg(long, default_value_t = 4)]
    parallel: usize,
    /// Chunk (and baseline part) size, in MiB.
    #[arg(long, default_value_t = 8)]
    chunk_mib: usize,
    #[command(flatten)]
    baseline: BaselineOptions,
}

/// The same bytes, split the same way, shuffled the same way.
fn chunk_order(total: usize, seed: u64) -> Vec<usize> {
    let mut order: Vec<usize> = (1..=total).collect();
    let noise = noise(total * 8, seed ^ 0x5eed);
    for i in (1..total).rev() {
        let r = u64::from_le_bytes(noise[i * 8..i * 8 + 8].try_into().unwrap_or([0; 8]));
        order.swap(i, (r % (i as u64 + 1)) as usize);
    }
    order
}

pub(crate) async fn ingest(o: &IngestOptions) -> anyhow::Result<ScenarioReport> {
    let target = o.common.target()?;
    let size = o.size_mib << 20;
    let chunk = o.chunk_mib << 20;
    let run_seed = run_seed();
    // Contents made before the clock starts: neither side pays for them.
    let contents: Vec<Arc<Vec<u8>>> = (0..o.uploads)
        .map(|i| Arc::new(noise(size, run_seed.wrapping_add(i as u64))))
        .collect();
    let total_bytes = (size * o.uploads) as f64;
    let token = target.token("load-ingest")?;
    let watch = o.common.service_pid.map(Watch::start);
    let started = Instant::now();
    futures_util::stream::iter(contents.iter().cloned().enumerate())
        .map(|(i, data)| {
            let (target, token) = (target.clone(), token.clone());
            async move { upload_one(&target, &token, i, &data, chunk, o.parallel).await }
        })
        .buffer_unordered(o.concurrency)
        .collect::<Vec<()>>()
        .await;
    let seconds = started.elapsed().as_secs_f64();
    let mut rates = BTreeMap::new();
    rates.insert("MB/s".into(), total_bytes / MIB / seconds);
    rates.insert("uploads/s".into(), o.uploads as f64 / seconds);
    let mut report = finish(
        "ingest",
        serde_json::json!({
            "uploads": o.uploads, "K": o.concurrency, "S_MiB": o.size_mib,
            "P": o.parallel, "chunk_MiB": o.chunk_mib,
        }),
        &target,
        started,
        watch,
        rates,
    );
    if let Some(service) = &report.service {
        report.derived.insert(
            "service cpu s per GB".into(),
            service.cpu_seconds / (total_bytes / 1e9),
        );
    }
    let baseline = if let Some(location) = &o.baseline.baseline_s3 {
        Some(baseline_s3(location, &contents, chunk, o.concurrency, o.parallel).await?)
    } else if let Some(dir) = &o.baseline.baseline_dir {
        Some(baseline_dir(dir, &contents, chunk, o.concurrency, o.parallel).await?)
    } else {
        None
    };
    if let Some(seconds) = baseline {
        let mb_s = total_bytes / MIB / seconds;
        report.derived.insert("baseline MB/s".into(), mb_s);
        report
            .derived
            .insert("service / baseline".into(), report.rates["MB/s"] / mb_s);
    }
    target.clean_up().await;
    Ok(report)
}

pub(super) async fn upload_one(
    target: &Target,
    token: &str,
    i: usize,
    data: &[u8],
    chunk: usize,
    parallel: usize,
) {
    let create = target
        .client
        .post(target.url("/v1/uploads"))
        .bearer_auth(token)
        .json(&serde_json::json!({
            "file_name": format!("load-{i}.bin"), "size": data.len(), "chunk_size": chunk,
        }));
    let Some((201, _, body)) = target.send("POST /v1/uploads", create).await else {
        return;
    };
    let Ok(session) = serde_json::from_slice::<serde_json::Value>(&body) else {
        return;
    };
    let Some(id) = session["upload_id"].as_str() else {
        return;
    };
    let total = data.len().div_ceil(chunk);
    futures_util::stream::iter(chunk_order(total, i as u64))
        .map(|n| {
            let body =
                bytes::Bytes::copy_from_slice(&data[(n - 1) * chunk..(n * chunk).min(data.len())]);
            let put = target
                .client
                .put(target.url(&format!("/v1/uploads/{id}/chunks/{n}")))
                .bearer_auth(token)
                .body(body);
            async move {
                target.send("PUT chunk", put).await;
            }
        })
        .buffer_unordered(parallel)
        .collect::<Vec<()>>()
        .await;
    let complete = target
        .client
        .post(target.url(&format!("/v1/uploads/{id}/complete")))
        .bearer_auth(token);
    target.send("POST complete", complete).await;
}

/// Seconds to write `contents` straight to S3 as multipart uploads with the
/// same part size and parallelism.
async fn baseline_s3(
    location: &str,
    contents: &[Arc<Vec<u8>>],
    part: usize,
    concurrency: usize,
    parallel: usize,
) -> anyhow::Result<f64> {
    let (client, bucket, prefix) = baseline_client(location).await?;
    timed(
        contents.iter().cloned().enumerate().map(|(i, data)| {
            let (client, bucket) = (client.clone(), bucket.clone());
            let key = format!("{prefix}-{i}");
            async move {
                let mpu = client
                    .create_multipart_upload()
                    .bucket(&bucket)
                    .key(&key)
                    .send()
                    .await?;
                let upload_id = mpu.upload_id().unwrap_or_default().to_owned();
                let total = data.len().div_ceil(part);
                let mut parts = futures_util::stream::iter(chunk_order(total, i as u64))
                    .map(|n| {
                        let body = bytes::Bytes::copy_from_slice(
                            &data[(n - 1) * part..(n * part).min(data.len())],
                        );
                        let (client, bucket, key, upload_id) = (
                            client.clone(),
                            bucket.clone(),
                            key.clone(),
                            upload_id.clone(),
                        );
                        async move {
                            let out = client
                                .upload_part()
                                .bucket(bucket)
                                .key(key)
                                .upload_id(upload_id)
                                .part_number(n as i32)
                                .body(body.into())
                                .send()
                                .await?;
                            anyhow::Ok(
                                aws_sdk_s3::types::CompletedPart::builder()
                                    .part_number(n as i32)
                                    .set_e_tag(out.e_tag().map(str::to_owned))
                                    .build(),
                            )
                        }
                    })
                    .buffer_unordered(parallel)
                    .collect::<Vec<_>>()
                    .await
                    .into_iter()
                    .collect::<anyhow::Result<Vec<_>>>()?;
                parts.sort_by_key(|p| p.part_number());
                client
                    .complete_multipart_upload()
                    .bucket(&bucket)
                    .key(&key)
                    .upload_id(upload_id)
                    .multipart_upload(
                        aws_sdk_s3::types::CompletedMultipartUpload::builder()
                            .set_parts(Some(parts))
                            .build(),
                    )
                    .send()
                    .await?;
                client
                    .delete_object()
                    .bucket(&bucket)
                    .key(&key)
                    .send()
                    .await?;
                anyhow::Ok(())
            }
        }),
        concurrency,
    )
    .await
}

/// Seconds to write `contents` to files, `parallel` parts of each at once.
async fn baseline_dir(
    dir: &std::path::Path,
    contents: &[Arc<Vec<u8>>],
    part: usize,
    concurrency: usize,
    parallel: usize,
) -> anyhow::Result<f64> {
    use tokio::io::{AsyncSeekExt, AsyncWriteExt};
    tokio::fs::create_dir_all(dir).await?;
    timed(
        contents.iter().cloned().enumerate().map(|(i, data)| {
            let path = dir.join(format!("baseline-{}-{i}", std::process::id()));
            async move {
                tokio::fs::File::create(&path)
                    .await?
                    .set_len(data.len() as u64)
                    .await?;
                let total = data.len().div_ceil(part);
                let writes = futures_util::stream::iter(chunk_order(total, i as u64))
                    .map(|n| {
                        let (path, data) = (path.clone(), data.clone());
                        async move {
                            let mut f = tokio::fs::OpenOptions::new()
                                .write(true)
                                .open(&path)
                                .await?;
                            f.seek(std::io::SeekFrom::Start(((n - 1) * part) as u64))
                                .await?;
                            f.write_all(&data[(n - 1) * part..(n * part).min(data.len())])
                                .await?;
                            f.sync_data().await?;
                            anyhow::Ok(())
                        }
                    })
                    .buffer_unordered(parallel)
                    .collect::<Vec<_>>()
                    .await;
                writes.into_iter().collect::<anyhow::Result<Vec<()>>>()?;
                tokio::fs::remove_file(&path).await?;
                anyhow::Ok(())
            }
        }),
        concurrency,
    )
    .await
}
