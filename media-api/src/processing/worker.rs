//! One worker: claims a job, keeps its lease with a heartbeat, fetches the
//! original, has the render child make the derivatives, stores them and
//! records the outcome (done, retried with backoff, or dead).

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::TryStreamExt;
use tokio::io::AsyncWriteExt;
use tokio_util::sync::CancellationToken;
use tokio_util::task::AbortOnDropHandle;
use tracing::Instrument;
use transcoder::preset::{AvLimits, DecodeLimits};
use transcoder::render::{RenderJob, RenderSpec};
use transcoder::sniff::MediaKind;

use super::child::{FailureKind, JobFailure, run_render};
use crate::backends::Backends;
use crate::blob_store::BlobKey;
use crate::config::Settings;
use crate::ids::now_ms;
use crate::metadata_store::jobs::{Job, Processed, ProcessingState, VariantRecord};

pub(super) struct Worker {
    /// Names this worker in leases and logs.
    pub(super) id: String,
    /// The seams.
    pub(super) backends: Backends,
    /// Limits, presets, leases.
    pub(super) settings: Arc<Settings>,
    /// The node's workers that may run batch work at once: the others stay
    /// free for live uploads.
    pub(super) batch_slots: Arc<tokio::sync::Semaphore>,
}

impl Worker {
    /// Claims and runs jobs until `stop` is cancelled.
    pub(super) async fn run(&self, stop: CancellationToken) {
        let jobs = &self.backends.jobs;
        let lease = self.settings.jobs.lease;
        while !stop.is_cancelled() {
            let slot = self.batch_slots.clone().try_acquire_owned().ok();
            match jobs.claim(&self.id, lease, slot.is_some()).await {
                Ok(Some(job)) => {
                    // Held while a batch job runs; a live one needs none.
                    let _slot = slot.filter(|_| job.is_batch());
                    // A job that panics is left to its lease: it runs again
                    // (the claim counts an attempt) until `max_attempts`,
                    // and this worker goes on to the next.
                    crate::background::survive("job", self.handle(job)).await;
                }
                Ok(None) => {
                    drop(slot);
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

    /// Does one job, everything it logs inside the job's span (the future is
    /// instrumented: a span entered across an `.await` would leak into the
    /// other tasks of its thread).
    async fn handle(&self, job: Job) {
        let span = tracing::info_span!("job", job = %job.job_id, blake3 = %job.blake3, attempt = job.attempts);
        self.handle_in_span(job).instrument(span).await;
    }

    async fn handle_in_span(&self, job: Job) {
        let started = Instant::now();
        let jobs = &self.backends.jobs;
        if job.attempts > job.max_attempts {
            // Its workers kept dying mid-job (each claim counts).
            let reason = format!("gave up after {} attempts", job.max_attempts);
            let _ = jobs.fail(&job, &self.id, &reason, &reason, None).await;
            metrics::counter!("job_failures_total", "reason" => FailureKind::Attempts.as_str())
                .increment(1);
            self.announce(
                &job,
                serde_json::json!({ "status": "failed", "reason": reason }),
            )
            .await;
            return;
        }
        // Keep the lease while working; a lease lost stops the work (another
        // worker has the job now).
        let lost = CancellationToken::new();
        // Aborted when dropped too: a job that panics must not keep its
        // lease, or it would never run again.
        let beat = AbortOnDropHandle::new(tokio::spawn(
            keep_lease(
                jobs.clone(),
                job.clone(),
                self.id.clone(),
                self.settings.jobs.lease,
                lost.clone(),
            )
            .in_current_span(),
        ));
        let outcome = tokio::select! {
            outcome = self.process(&job) => outcome,
            // The child is killed as the work is dropped.
            () = lost.cancelled() => {
                tracing::warn!("lost the job's lease; stopped working on it");
                return;
            }
        };
        beat.abort();
        match outcome {
            Ok(processed) => match jobs.complete(&job, &self.id, &processed).await {
                Ok(Some(replaced)) => {
                    // The new versions serve now; the old objects can go.
                    for key in &replaced {
                        if let Err(e) = self.backends.blobs.delete(key).await {
                            tracing::warn!(error = %e, %key, "could not delete a replaced variant");
                        }
                    }
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
                Ok(None) => tracing::warn!("lost the job's lease before finishing"),
                Err(e) => tracing::error!(error = %e, "could not record a finished job"),
            },
            Err(failure) => {
                let reason = failure.to_string();
                let retry_at =
                    (failure.kind.retryable() && job.attempts < job.max_attempts).then(|| {
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
                metrics::counter!("job_failures_total", "reason" => failure.kind.as_str())
                    .increment(1);
                let shown = failure.shown();
                match jobs.fail(&job, &self.id, &reason, &shown, retry_at).await {
                    Err(e) => tracing::error!(error = %e, "could not record a failed job"),
                    Ok(()) if retry_at.is_none() && job.batch_id.is_none() => {
                        self.announce(
                            &job,
                            serde_json::json!({ "status": "failed", "reason": shown }),
                        )
                        .await;
                    }
                    Ok(()) => {}
                }
            }
        }
    }

    /// Tells the upload's event stream, the `media` topic and every
    /// conversation holding the content that processing ended.
    async fn announce(&self, job: &Job, data: serde_json::Value) {
        super::announce(&self.backends, &job.blake3, job.upload_id, data, None).await;
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
        self.download(&target.storage_key, &input)
            .await
            .map_err(JobFailure::backend)?;
        let out_dir = dir.path().join("out");
        std::fs::create_dir(&out_dir).map_err(JobFailure::backend)?;
        let presets = &self.settings.presets;
        // A batch may remake some presets only; a live job makes them all.
        let wanted = |name: &str| {
            job.presets
                .as_ref()
                .is_none_or(|p| p.iter().any(|n| n == name))
        };
        let render = match transcoder::sniff::kind_of(&target.content_type) {
            MediaKind::Image => RenderJob::Image {
                presets: presets
                    .image
                    .iter()
                    .filter(|p| wanted(&p.name))
                    .cloned()
                    .collect(),
                limits: DecodeLimits {
                    max_pixels: presets.max_image_pixels,
                    max_alloc: self.settings.jobs.memory.0 / 2,
                },
                strip: wanted(transcoder::render::STRIPPED).then(|| target.content_type.clone()),
            },
            _ => RenderJob::Av {
                presets: presets.av.clone(),
                limits: AvLimits {
                    max_duration_ms: u64::try_from(presets.max_duration.as_millis())
                        .unwrap_or(u64::MAX),
                    max_pixels: presets.max_video_pixels,
                },
                content_type: target.content_type.clone(),
                only: job.presets.clone(),
            },
        };
        let spec = RenderSpec {
            input,
            out_dir,
            job: render,
        };
        let result = run_render(&self.settings, dir.path(), &spec).await?;
        let mut variants = Vec::with_capacity(result.rendered.len());
        for r in &result.rendered {
            let key = super::variant_key(&job.blake3.to_hex(), &r.preset, r.version);
            // Streamed from the child's file: a transcode is never held whole.
            self.backends
                .blobs
                .put_file(&key, &r.path)
                .await
                .map_err(JobFailure::backend)?;
            variants.push(VariantRecord {
                preset: r.preset.clone(),
                version: r.version,
                storage_key: key,
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
}

/// Beats the job's lease every third of it until aborted. A beat that fails
/// (the database slow or briefly gone) is tried again every 200 ms, for as
/// long as the lease it last renewed still holds: one late or failed beat
/// does not lose the job. Cancels `lost` when the lease is gone (another
/// worker claimed the job, or it ran out while the beats failed).
async fn keep_lease(
    jobs: Arc<dyn crate::metadata_store::JobQueue>,
    job: Job,
    worker: String,
    lease: Duration,
    lost: CancellationToken,
) {
    let mut held_until = Instant::now() + lease;
    loop {
        tokio::time::sleep(lease / 3).await;
        loop {
            // A beat that hangs past the lease is as good as failed.
            let left = held_until.saturating_duration_since(Instant::now());
            let beat = tokio::time::timeout(left, jobs.heartbeat(&job, &worker, lease)).await;
            match beat {
                Ok(Ok(true)) => {
                    held_until = Instant::now() + lease;
                    break;
                }
                Ok(Ok(false)) => {
                    lost.cancel();
                    return;
                }
                Ok(Err(e)) if Instant::now() < held_until => {
                    tracing::warn!(error = %e, "a heartbeat failed; trying again");
                    metrics::counter!("job_heartbeat_retries_total").increment(1);
                    tokio::time::sleep(Duration::from_millis(200).min(lease / 10)).await;
                }
                Ok(Err(_)) | Err(_) => {
                    lost.cancel();
                    return;
                }
            }
        }
    }
}
