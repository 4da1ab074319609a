//! The HTTP scenarios: ingest, small attachments, dedup, downloads.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::future::BoxFuture;
use futures_util::{FutureExt, StreamExt};
use serde::Serialize;

use crate::http::{EndpointLatency, Target, noise};
use crate::proc_stats::{ServiceUsage, Watch};

const MIB: f64 = 1024.0 * 1024.0;

/// What every scenario has.
#[derive(Debug, clap::Args)]
pub(crate) struct Common {
    /// The service's base URL.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    base: String,
    /// The service's JWT secret (tokens are minted for made-up users).
    #[arg(long, env = "MEDIA_JWT_SECRET", hide_env_values = true)]
    secret: String,
    /// The service's pid: its CPU seconds and peak RSS are read from /proc.
    #[arg(long)]
    service_pid: Option<u32>,
}

impl Common {
    fn target(&self) -> anyhow::Result<Target> {
        Target::new(&self.base, &self.secret)
    }
}

/// A seed unique to this run, so contents never repeat across runs (a repeat
/// would be deduplicated and measure nothing).
fn run_seed() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

/// One scenario's results.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct ScenarioReport {
    pub(crate) scenario: String,
    pub(crate) setup: serde_json::Value,
    pub(crate) seconds: f64,
    /// Headline rates (MB/s, uploads/s, requests/s).
    pub(crate) rates: BTreeMap<String, f64>,
    pub(crate) latency: Vec<EndpointLatency>,
    pub(crate) errors: BTreeMap<String, u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) service: Option<ServiceUsage>,
    /// Extra figures: the baseline's and the ratios.
    pub(crate) derived: BTreeMap<String, f64>,
}

impl ScenarioReport {
    pub(crate) fn table(&self) -> String {
        let mut out = format!(
            "== {} ({:.1} s)\nsetup: {}\n",
            self.scenario, self.seconds, self.setup
        );
        for (k, v) in self.rates.iter().chain(&self.derived) {
            out.push_str(&format!("  {k:<36} {v:>12.3}\n"));
        }
        if let Some(s) = &self.service {
            out.push_str(&format!(
                "  service cpu s {:.2}, peak RSS {:.1} MiB during the run ({:.1} MiB all-time)\n",
                s.cpu_seconds, s.peak_rss_mib, s.lifetime_peak_rss_mib
            ));
        }
        out.push_str(&format!(
            "  {:<28} {:>8} {:>9} {:>9} {:>9} {:>9}\n",
            "endpoint", "count", "p50 ms", "p95 ms", "p99 ms", "max ms"
        ));
        for l in &self.latency {
            out.push_str(&format!(
                "  {:<28} {:>8} {:>9.2} {:>9.2} {:>9.2} {:>9.2}\n",
                l.endpoint, l.count, l.p50_ms, l.p95_ms, l.p99_ms, l.max_ms
            ));
        }
        for (e, n) in &self.errors {
            out.push_str(&format!("  error {e}: {n}\n"));
        }
        out
    }
}

fn finish(
    scenario: &str,
    setup: serde_json::Value,
    target: &Target,
    started: Instant,
    watch: Option<Watch>,
    rates: BTreeMap<String, f64>,
) -> ScenarioReport {
    let (latency, errors) = target.recorder.summary();
    ScenarioReport {
        scenario: scenario.to_owned(),
        setup,
        seconds: started.elapsed().as_secs_f64(),
        rates,
        latency,
        errors,
        service: watch.map(Watch::finish),
        derived: BTreeMap::new(),
    }
}

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

/// Where the baseline writes the same bytes straight to the store.
#[derive(Debug, clap::Args)]
pub(crate) struct BaselineOptions {
    /// Also write the same bytes straight to this S3 location
    /// (`s3://BUCKET/PREFIX`, configured by the AWS_* variables) as the baseline.
    #[arg(long)]
    baseline_s3: Option<String>,
    /// Or straight to files in this directory (the embedded store's baseline).
    #[arg(long)]
    baseline_dir: Option<std::path::PathBuf>,
}

/// The S3 client, bucket and key prefix of a `--baseline-s3` location.
async fn baseline_client(location: &str) -> anyhow::Result<(aws_sdk_s3::Client, String, String)> {
    let location = media_api::config::S3Location::parse(location).map_err(anyhow::Error::msg)?;
    let store = media_api::blob_store::s3::S3BlobStore::from_env(location.clone(), true).await?;
    Ok((
        store.client().clone(),
        location.bucket.clone(),
        format!("{}baseline/{}", location.prefix, std::process::id()),
    ))
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

async fn upload_one(
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

/// Runs `jobs`, `concurrency` at a time: the seconds until all are done,
/// or the first error.
async fn timed<F>(jobs: impl Iterator<Item = F>, concurrency: usize) -> anyhow::Result<f64>
where
    F: std::future::Future<Output = anyhow::Result<()>>,
{
    let started = Instant::now();
    let results = futures_util::stream::iter(jobs)
        .buffer_unordered(concurrency)
        .collect::<Vec<_>>()
        .await;
    let seconds = started.elapsed().as_secs_f64();
    results.into_iter().collect::<anyhow::Result<Vec<()>>>()?;
    Ok(seconds)
}

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
        serde_json::json!({"users": o.users, "size_KiB": o.size_kib, "clients": o.clients, "seconds": o.seconds}),
        &target,
        started,
        watch,
        rates,
    );
    target.clean_up().await;
    Ok(report)
}

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
