//! Logging and metrics set-up.

use std::sync::OnceLock;
use std::time::Duration;

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use tracing_subscriber::EnvFilter;

use crate::background::First;
use crate::config::LogFormat;

/// Installs the tracing subscriber once; later calls do nothing. `RUST_LOG`
/// filters (default `info`).
pub fn init_tracing(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}

/// Seconds buckets for latency histograms, from 1 ms to 5 min.
const LATENCY_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0,
];

/// The process-wide Prometheus recorder (installed on first use).
pub fn metrics_handle() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new()
                .set_buckets(LATENCY_BUCKETS)
                .map(PrometheusBuilder::build_recorder)
                .unwrap_or_else(|_| PrometheusBuilder::new().build_recorder());
            let handle = recorder.handle();
            // Fails only if another recorder is installed, in which case ours renders empty.
            let _ = metrics::set_global_recorder(recorder);
            handle
        })
        .clone()
}

/// How often [`run_metrics_upkeep`] folds histogram samples into buckets.
const METRICS_UPKEEP_INTERVAL: Duration = Duration::from_secs(5);

/// Folds the recorder's histogram samples into their buckets every few
/// seconds until `stop`. The recorder keeps each recorded value until a
/// render or an upkeep drains it, so a service nobody scrapes would hold
/// every request's latency forever (the soak saw it grow 1.7 MiB a minute).
pub async fn run_metrics_upkeep(
    handle: PrometheusHandle,
    stop: tokio_util::sync::CancellationToken,
) {
    let (first, every) = (First::AfterInterval, METRICS_UPKEEP_INTERVAL);
    crate::background::every("metrics-upkeep", first, every, stop, || async {
        handle.run_upkeep();
    })
    .await;
}
