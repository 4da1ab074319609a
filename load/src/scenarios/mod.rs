//! The HTTP scenarios: ingest, small attachments, dedup, downloads, chat,
//! realtime, batch, tus, and the soak.
//!
//! Each scenario in a file of its own (`ingest`, `small`, `dedup`,
//! `download`, `chat`, `realtime`, `batch`, `tus`, `soak`); what they share (options, the report, timing) is here.

mod batch;
mod chat;
mod dedup;
mod download;
mod ingest;
mod realtime;
mod small;
mod soak;
mod tus;

pub(crate) use batch::{BatchOptions, batch};
pub(crate) use chat::{ChatOptions, chat};
pub(crate) use dedup::{DedupOptions, dedup};
pub(crate) use download::{DownloadOptions, download};
pub(crate) use ingest::{IngestOptions, ingest};
pub(crate) use realtime::{RealtimeOptions, realtime};
pub(crate) use small::{SmallOptions, small};
pub(crate) use soak::{SoakOptions, soak};
pub(crate) use tus::{TusOptions, tus};

use std::collections::BTreeMap;
use std::time::Instant;

use futures_util::StreamExt;
use serde::Serialize;

use crate::http::{EndpointLatency, Target};
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
    /// An endpoint's p99 latency, if it was measured.
    pub(crate) fn p99(&self, endpoint: &str) -> Option<f64> {
        self.latency
            .iter()
            .find(|l| l.endpoint == endpoint)
            .map(|l| l.p99_ms)
    }

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
pub(crate) async fn baseline_client(
    location: &str,
) -> anyhow::Result<(aws_sdk_s3::Client, String, String)> {
    let location = media_api::config::S3Location::parse(location).map_err(anyhow::Error::msg)?;
    let store = media_api::blob_store::s3::S3BlobStore::from_env(location.clone(), true).await?;
    Ok((
        store.client().clone(),
        location.bucket.clone(),
        format!("{}baseline/{}", location.prefix, std::process::id()),
    ))
}
