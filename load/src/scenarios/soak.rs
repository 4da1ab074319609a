//! `load soak`: mixed traffic for a long while — chunked uploads, small
//! images (each processed into thumbnails), downloads through the signed
//! redirect, messages with and without attachments, history and sync reads,
//! deletes, and WebSockets held open and reopened — while the service's
//! resident memory and open descriptors are sampled. After the warm-up both
//! should stay flat: the report gives each at the end of the warm-up (the
//! baseline), at the end, their ratio, and the memory's slope.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use super::*;
use crate::http::noise;
use crate::proc_stats::{Watch, cpu_seconds, rss_kib};

/// `load soak`.
#[derive(Debug, clap::Args)]
pub(crate) struct SoakOptions {
    #[command(flatten)]
    common: Common,
    /// How long in all, warm-up included (seconds).
    #[arg(long, default_value_t = 600)]
    seconds: u64,
    /// The warm-up, left out of the flatness figures (seconds).
    #[arg(long, default_value_t = 120)]
    warmup: u64,
    /// How often memory and descriptors are sampled (seconds).
    #[arg(long, default_value_t = 5)]
    sample_every: u64,
    /// Clients, each going round the mix of actions.
    #[arg(long, default_value_t = 12)]
    clients: usize,
    /// WebSockets held open; each is closed and opened again after 20–80 s.
    #[arg(long, default_value_t = 48)]
    sockets: usize,
    /// A client's pause between two actions (ms): sets the load.
    #[arg(long, default_value_t = 40)]
    pause_ms: u64,
    /// Largest chunked upload (MiB); each is 1 MiB to this, in 1 MiB chunks.
    #[arg(long, default_value_t = 3)]
    max_upload_mib: usize,
}

/// One sample of the service.
#[derive(Debug, Clone, Copy, serde::Serialize)]
struct Sample {
    second: f64,
    rss_mib: f64,
    fds: usize,
}

fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, Iterator::count)
}

/// What the run did, counted.
#[derive(Default)]
struct Counts {
    uploads: AtomicU64,
    uploaded_bytes: AtomicU64,
    images: AtomicU64,
    downloads: AtomicU64,
    downloaded_bytes: AtomicU64,
    messages: AtomicU64,
    reads: AtomicU64,
    deletes: AtomicU64,
    frames: AtomicU64,
    socket_opens: AtomicU64,
}

/// One client's state: its user, its group, its media.
struct Client {
    target: Target,
    token: String,
    group: String,
    media: Vec<String>,
    seed: u64,
    max_upload: usize,
}

impl Client {
    fn next_seed(&mut self) -> u64 {
        self.seed += 1;
        self.seed
    }

    async fn json(&self, endpoint: &str, request: reqwest::RequestBuilder) -> Option<Value> {
        match self
            .target
            .send(endpoint, request.bearer_auth(&self.token))
            .await
        {
            Some((200..=299, _, body)) => serde_json::from_slice(&body).ok(),
            _ => None,
        }
    }

    /// A chunked upload of 1 MiB to `max_upload`; its media id.
    async fn upload(&mut self, counts: &Counts) -> Option<String> {
        let seed = self.next_seed();
        let size = (1 + seed as usize % self.max_upload) << 20;
        let data = noise(size - (seed as usize % 4096), seed);
        let t = &self.target;
        let session = self
            .json(
                "POST /v1/uploads",
                t.client.post(t.url("/v1/uploads")).json(&json!({
                    "file_name": "soak.bin", "size": data.len(), "chunk_size": 1 << 20,
                })),
            )
            .await?;
        let id = session["upload_id"].as_str()?.to_owned();
        for (i, chunk) in data.chunks(1 << 20).enumerate() {
            let url = t.url(&format!("/v1/uploads/{id}/chunks/{}", i + 1));
            self.json("PUT chunk", t.client.put(url).body(chunk.to_vec()))
                .await?;
        }
        let url = t.url(&format!("/v1/uploads/{id}/complete"));
        let done = self.json("POST complete", t.client.post(url)).await?;
        counts.uploads.fetch_add(1, Ordering::Relaxed);
        counts
            .uploaded_bytes
            .fetch_add(data.len() as u64, Ordering::Relaxed);
        done["media_id"].as_str().map(str::to_owned)
    }

    /// A small PNG in one request (processed into its thumbnails).
    async fn image(&mut self, counts: &Counts) -> Option<String> {
        let seed = self.next_seed();
        let img = image::RgbImage::from_fn(96, 64, |x, y| {
            image::Rgb([(x as u64 ^ seed) as u8, y as u8, (seed >> 3) as u8])
        });
        let mut png = std::io::Cursor::new(Vec::new());
        image::DynamicImage::ImageRgb8(img)
            .write_to(&mut png, image::ImageFormat::Png)
            .ok()?;
        let t = &self.target;
        let done = self
            .json(
                "POST /v1/media",
                t.client
                    .post(t.url("/v1/media?file_name=soak.png"))
                    .header("content-type", "image/png")
                    .body(png.into_inner()),
            )
            .await?;
        counts.images.fetch_add(1, Ordering::Relaxed);
        done["media_id"].as_str().map(str::to_owned)
    }

    /// A media item's bytes, through the signed redirect.
    async fn download(&self, media: &str, counts: &Counts) -> Option<()> {
        let t = &self.target;
        let url = t.url(&format!("/v1/media/{media}/content"));
        let (status, headers, _) = t
            .send("GET content", t.client.get(url).bearer_auth(&self.token))
            .await?;
        if status != 302 {
            return None;
        }
        let location = headers.get("location")?.to_str().ok()?;
        // The embedded store's URLs are the service's own, and may be relative.
        let location = if location.starts_with('/') {
            t.url(location)
        } else {
            location.to_owned()
        };
        let (status, _, body) = t.send("GET signed URL", t.client.get(location)).await?;
        (status == 200).then_some(())?;
        counts.downloads.fetch_add(1, Ordering::Relaxed);
        counts
            .downloaded_bytes
            .fetch_add(body.len() as u64, Ordering::Relaxed);
        Some(())
    }

    async fn message(&mut self, attachment: Option<&str>, counts: &Counts) -> Option<()> {
        let seed = self.next_seed();
        let t = &self.target;
        let mut body = json!({
            "client_message_id": uuid_like(seed),
            "text": "soak",
        });
        if let Some(media) = attachment {
            body["attachments"] = json!([{ "media_id": media }]);
        }
        let url = t.url(&format!("/v1/conversations/{}/messages", self.group));
        self.json("POST message", t.client.post(url).json(&body))
            .await?;
        counts.messages.fetch_add(1, Ordering::Relaxed);
        Some(())
    }

    async fn read(&self, counts: &Counts) -> Option<()> {
        let t = &self.target;
        let history = t.url(&format!(
            "/v1/conversations/{}/messages?limit=50",
            self.group
        ));
        self.json("GET history", t.client.get(history)).await?;
        self.json("GET /v1/sync", t.client.get(t.url("/v1/sync?limit=100")))
            .await?;
        counts.reads.fetch_add(2, Ordering::Relaxed);
        Some(())
    }

    async fn delete(&mut self, counts: &Counts) -> Option<()> {
        let media = self.media.remove(0);
        let t = &self.target;
        let url = t.url(&format!("/v1/media/{media}"));
        let (status, _, _) = t
            .send(
                "DELETE media",
                t.client.delete(url).bearer_auth(&self.token),
            )
            .await?;
        (status == 204).then_some(())?;
        counts.deletes.fetch_add(1, Ordering::Relaxed);
        Some(())
    }

    /// Goes round the mix until `until`.
    async fn run(mut self, until: Instant, pause: Duration, counts: Arc<Counts>) {
        let mut step = 0usize;
        while Instant::now() < until {
            step += 1;
            match step % 8 {
                0 => {
                    if let Some(m) = self.upload(&counts).await {
                        self.media.push(m);
                    }
                }
                1 => {
                    if let Some(m) = self.image(&counts).await {
                        self.media.push(m);
                    }
                }
                2 | 5 => {
                    let _ = self.message(None, &counts).await;
                }
                3 => {
                    let last = self.media.last().cloned();
                    let _ = self.message(last.as_deref(), &counts).await;
                }
                // The image just posted, then the chunked upload before it.
                4 | 7 => {
                    let back = if step % 8 == 4 { 1 } else { 2 };
                    if let Some(m) = self
                        .media
                        .len()
                        .checked_sub(back)
                        .map(|i| self.media[i].clone())
                    {
                        let _ = self.download(&m, &counts).await;
                    }
                }
                _ => {
                    let _ = self.read(&counts).await;
                }
            }
            // The store stays bounded: the oldest items go.
            while self.media.len() > 4 {
                let _ = self.delete(&counts).await;
            }
            tokio::time::sleep(pause).await;
        }
        while !self.media.is_empty() {
            let _ = self.delete(&counts).await;
        }
    }
}

/// A client message id: a UUID (version 4 in form), from the seed and the
/// run's clock.
fn uuid_like(seed: u64) -> String {
    let mut b = [0u8; 16];
    blake3::Hasher::new()
        .update(&seed.to_le_bytes())
        .update(&super::run_seed().to_le_bytes())
        .finalize_xof()
        .fill(&mut b);
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..]
    )
}

/// A socket held open, read until its time is up, then opened again.
async fn socket_loop(base: String, token: String, until: Instant, seed: u64, counts: Arc<Counts>) {
    let url = super::realtime::ws_url(&base);
    let mut round = seed;
    while Instant::now() < until {
        round = round
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let life = Duration::from_secs(20 + (round >> 33) % 60);
        let Ok(mut request) = url.as_str().into_client_request() else {
            return;
        };
        if let Ok(value) = format!("Bearer {token}").parse() {
            request.headers_mut().insert("authorization", value);
        }
        let Ok((mut ws, _)) = tokio_tungstenite::connect_async(request).await else {
            tokio::time::sleep(Duration::from_secs(1)).await;
            continue;
        };
        counts.socket_opens.fetch_add(1, Ordering::Relaxed);
        let close_at = (Instant::now() + life).min(until);
        loop {
            let left = close_at.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            match tokio::time::timeout(left, ws.next()).await {
                Ok(Some(Ok(Message::Text(_)))) => {
                    counts.frames.fetch_add(1, Ordering::Relaxed);
                }
                Ok(Some(Ok(_))) => {}
                Ok(_) => break,
                Err(_) => break,
            }
        }
        let _ = ws.send(Message::Close(None)).await;
    }
}

fn mean(samples: &[Sample], f: impl Fn(&Sample) -> f64) -> f64 {
    samples.iter().map(&f).sum::<f64>() / samples.len().max(1) as f64
}

/// The least-squares slope of RSS over time, MiB per minute.
fn slope_mib_per_minute(samples: &[Sample]) -> f64 {
    let n = samples.len() as f64;
    if n < 2.0 {
        return 0.0;
    }
    let (mx, my) = (mean(samples, |s| s.second), mean(samples, |s| s.rss_mib));
    let (mut num, mut den) = (0.0, 0.0);
    for s in samples {
        num += (s.second - mx) * (s.rss_mib - my);
        den += (s.second - mx).powi(2);
    }
    if den == 0.0 { 0.0 } else { num / den * 60.0 }
}

pub(crate) async fn soak(o: &SoakOptions) -> anyhow::Result<ScenarioReport> {
    let pid = o
        .common
        .service_pid
        .ok_or_else(|| anyhow::anyhow!("--service-pid is needed: the soak samples its memory"))?;
    anyhow::ensure!(
        o.warmup + 60 <= o.seconds,
        "the run must last a minute past the warm-up"
    );
    let target = o.common.target()?;
    let run = run_seed();
    let users: Vec<String> = (0..o.clients)
        .map(|i| format!("soak-{run:x}-{i}"))
        .collect();
    // Each client's group holds it and the next two clients.
    let mut clients = Vec::new();
    for (i, user) in users.iter().enumerate() {
        let token = target.token(user)?;
        let members: Vec<&String> = (1..=2).map(|k| &users[(i + k) % users.len()]).collect();
        let created = target
            .send(
                "POST /v1/conversations",
                target
                    .client
                    .post(target.url("/v1/conversations"))
                    .bearer_auth(&token)
                    .json(&json!({ "kind": "group", "title": "soak", "members": members })),
            )
            .await
            .ok_or_else(|| anyhow::anyhow!("cannot create a conversation"))?;
        let group = serde_json::from_slice::<Value>(&created.2)?["conversation_id"]
            .as_str()
            .ok_or_else(|| anyhow::anyhow!("no conversation: {:?}", created.2))?
            .to_owned();
        clients.push(Client {
            target: target.clone(),
            token,
            group,
            media: Vec::new(),
            seed: run ^ (i as u64) << 40,
            max_upload: o.max_upload_mib.max(1),
        });
    }
    target.recorder.reset();
    let counts = Arc::new(Counts::default());
    let started = Instant::now();
    let until = started + Duration::from_secs(o.seconds);
    let watch = Watch::start(pid);
    let cpu_before = cpu_seconds(&pid.to_string(), true).unwrap_or(0.0);
    let sampler = {
        let every = Duration::from_secs(o.sample_every.max(1));
        tokio::spawn(async move {
            let mut samples = Vec::new();
            while Instant::now() < until {
                samples.push(Sample {
                    second: started.elapsed().as_secs_f64(),
                    rss_mib: rss_kib(pid).unwrap_or(0) as f64 / 1024.0,
                    fds: open_fds(pid),
                });
                tokio::time::sleep(every).await;
            }
            samples
        })
    };
    let mut tasks = Vec::new();
    for i in 0..o.sockets {
        let token = target.token(&users[i % users.len()])?;
        tasks.push(tokio::spawn(socket_loop(
            target.base.clone(),
            token,
            until,
            run ^ i as u64,
            counts.clone(),
        )));
    }
    let pause = Duration::from_millis(o.pause_ms);
    for client in clients {
        tasks.push(tokio::spawn(client.run(until, pause, counts.clone())));
    }
    for task in tasks {
        task.await?;
    }
    let samples = sampler.await?;
    let cpu_with_children = cpu_seconds(&pid.to_string(), true).unwrap_or(0.0) - cpu_before;
    let mut report = finish(
        "soak",
        json!({
            "seconds": o.seconds, "warmup": o.warmup, "clients": o.clients,
            "sockets": o.sockets, "pause_ms": o.pause_ms, "max_upload_mib": o.max_upload_mib,
            "samples": samples.iter().map(|s| (s.second.round(), (s.rss_mib * 10.0).round() / 10.0, s.fds)).collect::<Vec<_>>(),
        }),
        &target,
        started,
        Some(watch),
        BTreeMap::new(),
    );
    let seconds = report.seconds;
    let n = |c: &AtomicU64| c.load(Ordering::Relaxed) as f64;
    let uploaded_gb = n(&counts.uploaded_bytes) / 1e9;
    for (name, value) in [
        ("uploads/s", n(&counts.uploads) / seconds),
        ("upload MB/s", n(&counts.uploaded_bytes) / MIB / seconds),
        ("images/s", n(&counts.images) / seconds),
        ("downloads/s", n(&counts.downloads) / seconds),
        ("download MB/s", n(&counts.downloaded_bytes) / MIB / seconds),
        ("messages/s", n(&counts.messages) / seconds),
        ("reads/s", n(&counts.reads) / seconds),
        ("deletes/s", n(&counts.deletes) / seconds),
        ("socket frames/s", n(&counts.frames) / seconds),
        ("socket opens", n(&counts.socket_opens)),
    ] {
        report.rates.insert(name.to_owned(), value);
    }
    // The baseline: the minute after the warm-up; against it, the last minute.
    let warm = o.warmup as f64;
    let first: Vec<Sample> = samples
        .iter()
        .copied()
        .filter(|s| s.second >= warm && s.second < warm + 60.0)
        .collect();
    let last: Vec<Sample> = samples
        .iter()
        .copied()
        .filter(|s| s.second >= o.seconds as f64 - 60.0)
        .collect();
    let after: Vec<Sample> = samples
        .iter()
        .copied()
        .filter(|s| s.second >= warm)
        .collect();
    let d = &mut report.derived;
    d.insert(
        "rss MiB, minute after warm-up".into(),
        mean(&first, |s| s.rss_mib),
    );
    d.insert("rss MiB, last minute".into(), mean(&last, |s| s.rss_mib));
    d.insert(
        "rss ratio last/after warm-up".into(),
        mean(&last, |s| s.rss_mib) / mean(&first, |s| s.rss_mib).max(f64::MIN_POSITIVE),
    );
    d.insert(
        "rss slope after warm-up, MiB/min".into(),
        slope_mib_per_minute(&after),
    );
    d.insert(
        "fds, minute after warm-up".into(),
        mean(&first, |s| s.fds as f64),
    );
    d.insert("fds, last minute".into(), mean(&last, |s| s.fds as f64));
    d.insert(
        "fds ratio last/after warm-up".into(),
        mean(&last, |s| s.fds as f64) / mean(&first, |s| s.fds as f64).max(1.0),
    );
    d.insert(
        "fds max after warm-up".into(),
        after.iter().map(|s| s.fds).max().unwrap_or(0) as f64,
    );
    if let Some(service) = &report.service {
        d.insert(
            "service cpu s per GB uploaded".into(),
            service.cpu_seconds / uploaded_gb.max(1e-9),
        );
    }
    d.insert(
        "service + render cpu s per GB uploaded".into(),
        cpu_with_children / uploaded_gb.max(1e-9),
    );
    Ok(report)
}
