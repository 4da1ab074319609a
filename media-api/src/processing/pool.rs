//! The worker pool: runs workers until shutdown, lets running jobs finish
//! within the grace period, and publishes the queue's depth.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::child::render_program;
use super::worker::Worker;
use crate::backends::Backends;
use crate::background::First;
use crate::config::Settings;
use crate::metadata_store::jobs::JobState;

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
    super::child::announce_sandbox(settings.jobs.sandbox);
    let mut tasks = tokio::task::JoinSet::new();
    let batch_slots = Arc::new(tokio::sync::Semaphore::new(batch_workers(
        &settings, workers,
    )));
    for n in 0..workers {
        let worker = Worker {
            id: format!("{}-{}-{n}", hostname(), std::process::id()),
            backends: backends.clone(),
            settings: settings.clone(),
            batch_slots: batch_slots.clone(),
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

/// How many of `workers` may run batch work at once: `jobs.batch_workers`,
/// or all but one (so a live upload never waits behind a batch), at least one.
fn batch_workers(settings: &Settings, workers: usize) -> usize {
    settings
        .jobs
        .batch_workers
        .unwrap_or(workers.saturating_sub(1))
        .clamp(1, workers.max(1))
}

fn hostname() -> String {
    std::fs::read_to_string("/etc/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_else(|_| "worker".into())
}

async fn report_queue_depth(backends: Backends, stop: CancellationToken) {
    let (first, every) = (First::Now, Duration::from_secs(5));
    crate::background::every("queue-depth", first, every, stop, || async {
        if let Ok(counts) = backends.jobs.counts().await {
            for state in JobState::ALL {
                let n = counts
                    .iter()
                    .find(|(s, _)| *s == state)
                    .map_or(0, |(_, n)| *n);
                metrics::gauge!("jobs", "state" => state.as_str()).set(n as f64);
            }
        }
    })
    .await;
}

/// How many workers a command runs: `serve` runs `jobs.serve_workers`
/// in-process (one per core unless set), `worker` runs `jobs.workers`.
pub fn workers_for(settings: &Settings, serving: bool) -> usize {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    if serving {
        settings.jobs.serve_workers.unwrap_or(cores)
    } else {
        settings.jobs.workers.unwrap_or(cores)
    }
}
