//! The worker pool: claims processing jobs, fetches the original, runs the
//! transcoder in a child process with resource limits and a wall-clock
//! timeout, stores the variants and records them.
//!
//! Decoding untrusted media happens only in the child (`media-render`),
//! under `ulimit -v` (address space) and `ulimit -t` (CPU seconds). A decoder
//! that crashes, hangs or blows its memory kills the child, which fails that
//! one job (retried with backoff, then dead); the worker goes on. Variant keys
//! are derived from (content, preset, version), so a job run twice (its first
//! worker died after uploading) writes the same objects and one row each.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use bytes::Bytes;
use futures_util::TryStreamExt;
use serde::{Deserialize, Serialize};
use tokio::io::AsyncWriteExt;
use tokio_util::sync::CancellationToken;

use crate::blob_store::BlobKey;
use crate::config::Settings;
use crate::ids::now_ms;
use crate::job_queue::{Job, Processed, ProcessingState, VariantRecord};
use crate::progress_bus::Event;
use crate::state::Backends;
use transcoder::av::{AvLimits, AvPresets};
use transcoder::image_render::{DecodeLimits, ImagePreset, Rendered};
use transcoder::sniff::MediaKind;

/// What the parent asks the `render` child to do.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RenderSpec {
    /// The original, on local disk.
    pub input: PathBuf,
    /// Where derivatives go.
    pub out_dir: PathBuf,
    /// What to make.
    pub job: RenderJob,
}

/// The derivatives of one kind of media.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum RenderJob {
    /// Still (or animated) images.
    Image {
        /// Image presets.
        presets: Vec<ImagePreset>,
        /// Decode limits.
        limits: DecodeLimits,
    },
    /// Video and audio, through FFmpeg.
    Av {
        /// Poster, thumbnail, video and audio presets.
        presets: AvPresets,
        /// Duration and frame-size limits.
        limits: AvLimits,
    },
}

/// What the `render` child answers on stdout.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RenderResult {
    /// What the original is: its upright size, and for video and audio the
    /// container, codecs, duration, rotation and bit rate.
    pub probe: serde_json::Value,
    /// Derivatives written.
    pub rendered: Vec<Rendered>,
}

/// The exit status of a `render` child refusing the media itself (it is
/// undecodable or over a limit): the job is not retried.
pub const EXIT_MEDIA_REFUSED: i32 = 3;

/// Why the `render` child failed.
#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    /// The media: undecodable, or over a limit. Shown to its owner.
    #[error("{0}")]
    Media(String),
    /// Our side: the spec, the disk, an encoder missing.
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

/// The child's whole job: local file in, local files out, JSON on stdout.
pub fn render_child(spec_path: &Path) -> Result<(), RenderError> {
    use transcoder::av::AvError;
    use transcoder::image_render::ImageError;
    let spec: RenderSpec =
        serde_json::from_slice(&std::fs::read(spec_path).context("reading the spec")?)
            .context("parsing the spec")?;
    let result = match &spec.job {
        RenderJob::Image { presets, limits } => {
            match transcoder::image_render::render(&spec.input, &spec.out_dir, presets, *limits) {
                Ok((info, rendered)) => RenderResult {
                    probe: serde_json::json!({ "width": info.width, "height": info.height }),
                    rendered,
                },
                Err(e @ ImageError::Io(..)) => return Err(anyhow::Error::new(e).into()),
                Err(e) => return Err(RenderError::Media(e.to_string())),
            }
        }
        RenderJob::Av { presets, limits } => {
            match transcoder::av::render(&spec.input, &spec.out_dir, presets, *limits) {
                Ok((probe, rendered)) => RenderResult {
                    probe: serde_json::to_value(probe).context("encoding the probe")?,
                    rendered,
                },
                Err(e @ (AvError::Output(_) | AvError::Image(ImageError::Io(..)))) => {
                    return Err(anyhow::Error::new(e).into());
                }
                Err(e) => return Err(RenderError::Media(e.to_string())),
            }
        }
    };
    println!(
        "{}",
        serde_json::to_string(&result).context("encoding the result")?
    );
    Ok(())
}

/// The program each job runs: `jobs.render_program`, or `media-render`
/// installed beside the service's own binary.
fn render_program(settings: &Settings) -> anyhow::Result<PathBuf> {
    match &settings.jobs.render_program {
        Some(program) => Ok(program.clone()),
        None => Ok(std::env::current_exe()
            .context("locating media-api")?
            .with_file_name("media-render")),
    }
}

/// Runs `workers` workers until `stop` is cancelled, then lets running jobs
/// finish for up to the shutdown grace period.
pub async fn run(
    backends: Backends,
    settings: Arc<Settings>,
    workers: usize,
    stop: CancellationToken,
) {
    if workers == 0 {
        return;
    }
    match render_program(&settings) {
        Ok(program) if program.is_file() => {
            tracing::info!(workers, program = %program.display(), "worker pool starting");
        }
        Ok(program) => tracing::error!(
            program = %program.display(),
            "the render program is missing: every processing job will fail until it is \
             installed (build both binaries: cargo build -p media-api --bins) or \
             MEDIA_JOBS__RENDER_PROGRAM names it"
        ),
        Err(e) => tracing::error!(error = %e, "cannot locate the render program"),
    }
    let mut tasks = tokio::task::JoinSet::new();
    for n in 0..workers {
        let worker = Worker {
            id: format!("{}-{}-{n}", hostname(), std::process::id()),
            backends: backends.clone(),
            settings: settings.clone(),
        };
        let stop = stop.clone();
        tasks.spawn(async move { worker.run(stop).await });
    }
    tokio::spawn(report_queue_depth(backends.clone(), stop.clone()));
    stop.cancelled().await;
    let grace = settings.shutdown_grace;
    if tokio::time::timeout(grace, async { while tasks.join_next().await.is_some() {} })
        .await
        .is_err()
    {
        tracing::warn!(
            ?grace,
            "jobs still running at the end of the grace period; their leases will expire"
        );
        tasks.abort_all();
    }
}

fn hostname() -> String {
    std::fs::read_to_string("/etc/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_else(|_| "worker".into())
}

async fn report_queue_depth(backends: Backends, stop: CancellationToken) {
    loop {
        if let Ok(counts) = backends.jobs.counts().await {
            for state in ["queued", "running", "done", "dead"] {
                let n = counts
                    .iter()
                    .find(|(s, _)| s == state)
                    .map_or(0, |(_, n)| *n);
                metrics::gauge!("jobs", "state" => state).set(n as f64);
            }
        }
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(Duration::from_secs(5)) => {}
        }
    }
}

struct Worker {
    id: String,
    backends: Backends,
    settings: Arc<Settings>,
}

impl Worker {
    async fn run(&self, stop: CancellationToken) {
        let jobs = &self.backends.jobs;
        let lease = self.settings.jobs.lease;
        while !stop.is_cancelled() {
            match jobs.claim(&self.id, lease).await {
                Ok(Some(job)) => self.handle(job).await,
                Ok(None) => {
                    tokio::select! {
                        () = stop.cancelled() => return,
                        () = jobs.wait_for_work(self.settings.jobs.poll_interval) => {}
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "could not claim a job");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
    }

    async fn handle(&self, job: Job) {
        let span = tracing::info_span!("job", job = %job.job_id, blake3 = %job.blake3, attempt = job.attempts);
        let _enter = span.enter();
        let started = Instant::now();
        let jobs = &self.backends.jobs;
        if job.attempts > job.max_attempts {
            // Its workers kept dying mid-job (each claim counts).
            let reason = format!("gave up after {} attempts", job.max_attempts);
            let _ = jobs.fail(&job, &self.id, &reason, None).await;
            metrics::counter!("job_failures_total", "reason" => "attempts").increment(1);
            self.announce(
                &job,
                serde_json::json!({ "status": "failed", "reason": reason }),
            )
            .await;
            return;
        }
        // Keep the lease while working.
        let beat = {
            let (jobs, job, id) = (jobs.clone(), job.clone(), self.id.clone());
            let lease = self.settings.jobs.lease;
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(lease / 3).await;
                    if !matches!(jobs.heartbeat(&job, &id, lease).await, Ok(true)) {
                        return;
                    }
                }
            })
        };
        let outcome = self.process(&job).await;
        beat.abort();
        match outcome {
            Ok(processed) => match jobs.complete(&job, &self.id, &processed).await {
                Ok(true) => {
                    metrics::histogram!("job_duration_seconds", "kind" => job.kind.clone())
                        .record(started.elapsed().as_secs_f64());
                    // From enqueue (the upload's completion) to done.
                    metrics::histogram!("job_latency_seconds", "kind" => job.kind.clone())
                        .record((now_ms() - job.created_at).max(0) as f64 / 1000.0);
                    let names: Vec<&str> = processed
                        .variants
                        .iter()
                        .map(|v| v.preset.as_str())
                        .collect();
                    self.announce(
                        &job,
                        serde_json::json!({ "status": "ready", "variants": names }),
                    )
                    .await;
                }
                Ok(false) => tracing::warn!("lost the job's lease before finishing"),
                Err(e) => tracing::error!(error = %e, "could not record a finished job"),
            },
            Err(failure) => {
                let reason = failure.to_string();
                let retry_at =
                    (failure.retryable() && job.attempts < job.max_attempts).then(|| {
                        let shift = job.attempts.saturating_sub(1).min(20);
                        let delay = self
                            .settings
                            .jobs
                            .backoff
                            .saturating_mul(1 << shift)
                            .min(self.settings.jobs.max_backoff);
                        now_ms() + i64::try_from(delay.as_millis()).unwrap_or(i64::MAX / 2)
                    });
                tracing::warn!(error = %reason, retry = retry_at.is_some(), "job failed");
                metrics::counter!("job_failures_total", "reason" => failure.kind()).increment(1);
                match jobs.fail(&job, &self.id, &reason, retry_at).await {
                    Err(e) => tracing::error!(error = %e, "could not record a failed job"),
                    Ok(()) if retry_at.is_none() => {
                        self.announce(
                            &job,
                            serde_json::json!({ "status": "failed", "reason": reason }),
                        )
                        .await;
                    }
                    Ok(()) => {}
                }
            }
        }
    }

    /// Tells the upload's event stream and the `media` topic that processing ended.
    async fn announce(&self, job: &Job, mut data: serde_json::Value) {
        data["blake3"] = job.blake3.to_hex().into();
        let event = Event {
            kind: "processed".into(),
            data,
        };
        let bus = &self.backends.progress;
        if let Some(upload) = job.upload_id {
            let _ = bus
                .publish(&crate::upload_session::topic(upload), &event)
                .await;
        }
        let _ = bus.publish("media", &event).await;
    }

    async fn process(&self, job: &Job) -> Result<Processed, JobFailure> {
        let Some(target) = self
            .backends
            .jobs
            .target(&job.blake3)
            .await
            .map_err(JobFailure::backend)?
        else {
            // Deleted while queued: nothing left to do.
            return Ok(Processed {
                state: ProcessingState::Skipped,
                variants: Vec::new(),
                probe: None,
            });
        };
        if !transcoder::sniff::is_processed(&target.content_type) {
            return Ok(Processed {
                state: ProcessingState::Skipped,
                variants: Vec::new(),
                probe: None,
            });
        }
        let dir = tempfile::tempdir().map_err(JobFailure::backend)?;
        let input = dir.path().join("original");
        let key = BlobKey::parse(&target.storage_key).map_err(JobFailure::backend)?;
        self.download(&key, &input)
            .await
            .map_err(JobFailure::backend)?;
        let out_dir = dir.path().join("out");
        std::fs::create_dir(&out_dir).map_err(JobFailure::backend)?;
        let presets = &self.settings.presets;
        let render = match transcoder::sniff::kind_of(&target.content_type) {
            MediaKind::Image => RenderJob::Image {
                presets: presets.image.clone(),
                limits: DecodeLimits {
                    max_pixels: presets.max_image_pixels,
                    max_alloc: self.settings.jobs.memory.0 / 2,
                },
            },
            _ => RenderJob::Av {
                presets: presets.av.clone(),
                limits: AvLimits {
                    max_duration_ms: u64::try_from(presets.max_duration.as_millis())
                        .unwrap_or(u64::MAX),
                    max_pixels: presets.max_video_pixels,
                },
            },
        };
        let spec = RenderSpec {
            input,
            out_dir,
            job: render,
        };
        let result = self.run_child(dir.path(), &spec).await?;
        let mut variants = Vec::with_capacity(result.rendered.len());
        for r in &result.rendered {
            let key = variant_key(&job.blake3.to_hex(), &r.preset, r.version);
            let bytes = tokio::fs::read(&r.path)
                .await
                .map_err(JobFailure::backend)?;
            self.backends
                .blobs
                .put(&key, Bytes::from(bytes))
                .await
                .map_err(JobFailure::backend)?;
            variants.push(VariantRecord {
                preset: r.preset.clone(),
                version: r.version,
                storage_key: key.as_str().to_owned(),
                content_type: r.content_type.clone(),
                size: r.size,
                width: (r.width > 0).then_some(r.width),
                height: (r.height > 0).then_some(r.height),
                duration_ms: r.duration_ms,
            });
        }
        Ok(Processed {
            state: ProcessingState::Ready,
            variants,
            probe: Some(result.probe),
        })
    }

    async fn download(&self, key: &BlobKey, path: &Path) -> anyhow::Result<()> {
        let body = self.backends.blobs.get(key, None).await?;
        let mut file = tokio::fs::File::create(path).await?;
        let mut stream = body.stream;
        while let Some(chunk) = stream.try_next().await? {
            file.write_all(&chunk).await?;
        }
        file.flush().await?;
        Ok(())
    }

    /// Runs `media-render` under resource limits and a wall-clock timeout.
    async fn run_child(&self, dir: &Path, spec: &RenderSpec) -> Result<RenderResult, JobFailure> {
        let spec_path = dir.join("spec.json");
        std::fs::write(
            &spec_path,
            serde_json::to_vec(spec).map_err(JobFailure::backend)?,
        )
        .map_err(JobFailure::backend)?;
        let exe = render_program(&self.settings).map_err(JobFailure::backend)?;
        let limits = &self.settings.jobs;
        // `ulimit` in a shell that then becomes the child: limits without unsafe pre_exec.
        let script = format!(
            "ulimit -v {} && ulimit -t {} && exec \"$0\" --spec \"$1\"",
            limits.memory.0 / 1024,
            limits.cpu_seconds
        );
        let child = tokio::process::Command::new("/bin/sh")
            .arg("-c")
            .arg(script)
            .arg(exe)
            .arg(&spec_path)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(JobFailure::backend)?;
        let output = match tokio::time::timeout(limits.timeout, child.wait_with_output()).await {
            Ok(output) => output.map_err(JobFailure::backend)?,
            Err(_) => {
                return Err(JobFailure::Media(
                    format!("processing took longer than {:?}", limits.timeout),
                    "timeout",
                ));
            }
        };
        if !output.status.success() {
            let stderr = String::from_utf8_lossy(&output.stderr);
            let message = stderr.lines().last().unwrap_or("").trim();
            let message = message.trim_start_matches("media-api: ").to_owned();
            return Err(match output.status.code() {
                Some(EXIT_MEDIA_REFUSED) => JobFailure::Media(message, "refused"),
                Some(code) => JobFailure::Media(
                    if message.is_empty() {
                        format!("the media processor exited with status {code}")
                    } else {
                        format!("the media processor failed: {message}")
                    },
                    "processor",
                ),
                None => JobFailure::Media(
                    "the media processor crashed (killed by a signal: out of memory, CPU time, or a decoder fault)".to_owned(),
                    "crash",
                ),
            });
        }
        serde_json::from_slice(&output.stdout)
            .map_err(|e| JobFailure::Media(format!("unreadable processor output: {e}"), "crash"))
    }
}

/// The object key of a variant: derived from what it is, so it is written once.
pub fn variant_key(blake3: &str, preset: &str, version: u32) -> BlobKey {
    BlobKey::parse(&format!("v/{}/{blake3}/{preset}-v{version}", &blake3[..2]))
        .unwrap_or_else(|_| BlobKey::generate())
}

/// Why a job failed.
#[derive(Debug)]
enum JobFailure {
    /// The media itself: undecodable, too large, crashed or hung the decoder.
    Media(String, &'static str),
    /// Our side: a backend or the local disk.
    Backend(String),
}

impl JobFailure {
    fn backend(e: impl std::fmt::Display) -> Self {
        Self::Backend(e.to_string())
    }

    fn kind(&self) -> &'static str {
        match self {
            Self::Media(_, kind) => kind,
            Self::Backend(_) => "backend",
        }
    }

    /// A refusal (undecodable, over a limit) comes out the same every time;
    /// a crash, a timeout or a backend error may not.
    fn retryable(&self) -> bool {
        !matches!(self, Self::Media(_, "refused"))
    }
}

impl std::fmt::Display for JobFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Media(reason, _) => f.write_str(reason),
            Self::Backend(reason) => write!(f, "internal error: {reason}"),
        }
    }
}

/// How many workers a command runs.
pub fn workers_for(settings: &Settings, serving: bool) -> usize {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    if serving {
        settings
            .jobs
            .serve_workers
            .unwrap_or(if settings.is_embedded() { cores } else { 0 })
    } else {
        settings.jobs.workers.unwrap_or(cores)
    }
}
